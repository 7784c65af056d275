"""Work units as Dask ``distributed`` tasks: a local process cluster, a scheduler, or a service.

One task per work unit, a bounded number in flight (twice the cluster's threads), progress from
the futures as they complete. The function every task runs (the pipeline's unit runner: the
request and the plan, no secrets) is itself one task that the unit tasks depend on, so it
travels to each worker once and is recomputed if the worker holding it dies.

A worker killed mid-unit is no loss: the scheduler reruns its units elsewhere (up to
``distributed.scheduler.allowed-failures`` times, default 3), and every unit is idempotent (it
writes exactly its region, then records itself in the store's manifest).

Environment variables do not travel with tasks. :class:`WorkerSetup`, a worker plugin
registered with the client, sets on every worker (also on workers that join later) the
variables that configure reads (``CLOUDFREE_*`` retries and GDAL options, ``GDAL_*``, ``AWS_*``,
each object store's endpoint and credentials, resolved here from the environment or a profile).
So the task graph never holds a credential; the plugin does, once, and its ``repr`` shows only
variable names. Use a ``tls://`` scheduler address on networks you do not trust
(dask-gateway and Coiled use TLS).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

from distributed import Client, KilledWorker, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from cloudfree.config import forwarded_environment, tune_allocator
from cloudfree.engine import (
    EngineSpec,
    Notify,
    ProgressCallback,
    UnitFinished,
    local_cluster_threads,
    raise_failure,
)
from cloudfree.errors import CloudfreeError, EngineError, RunFailedError
from cloudfree.sources import providers

log = logging.getLogger(__name__)

U = TypeVar("U")

PLUGIN_NAME = "cloudfree-setup"
CONNECT_TIMEOUT = "20s"
STALL_SECONDS = 300.0
"""With no unit finished for this long, the workers running units are asked whether they answer."""
PING_SECONDS = 60.0
"""How long a worker has to answer; one that does not is restarted by its nanny."""


def worker_environment() -> dict[str, str]:
    """The variables a worker needs to read and write as this process does (with secrets)."""
    environment = forwarded_environment()
    for store in providers.STORES.values():
        environment.update(store.worker_environment())
    return environment


class WorkerSetup(WorkerPlugin):
    """Sets cloudfree's environment on a worker; restores the previous one on teardown."""

    name = PLUGIN_NAME

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._environment = dict(environment)
        self._previous: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"WorkerSetup(variables={sorted(self._environment)})"

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the variables set on workers (never their values)."""
        return tuple(sorted(self._environment))

    def setup(self, worker: Any) -> None:
        """Apply the environment (a worker that joins later gets it too)."""
        self._previous = {name: os.environ.get(name) for name in self._environment}
        os.environ.update(self._environment)
        _forget_resolved_environment()
        tune_allocator()

    def teardown(self, worker: Any) -> None:
        """Put the worker's own environment back."""
        for name, value in self._previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_resolved_environment()


def _forget_resolved_environment() -> None:
    """Drop what was resolved from the old environment (signers read their key once)."""
    providers.signer.cache_clear()


def _hold(value: object) -> object:
    return value


def _run(run_unit: Callable[[U], None], unit: U) -> None:
    try:
        run_unit(unit)
    except CloudfreeError as exc:
        # cloudfree's messages already name their cause; the chained library error (a GDAL
        # error from rasterio, say) may not unpickle on the client, which would turn this
        # error into a bare Exception there
        exc.__cause__ = exc.__context__ = None
        raise


class DaskEngine:
    """Work units as tasks on the cluster behind ``client``."""

    def __init__(self, client: Client, *, in_flight_per_thread: int = 2) -> None:
        self.client = client
        self.in_flight_per_thread = in_flight_per_thread

    def _workers(self) -> dict[str, dict[str, Any]]:
        workers: dict[str, dict[str, Any]] = self.client.scheduler_info().get("workers", {})
        return workers

    @property
    def threads_per_worker(self) -> int:
        """The most threads any worker has (units running at once in one process)."""
        return max((int(w.get("nthreads", 1)) for w in self._workers().values()), default=1)

    @property
    def memory_limit(self) -> int | None:
        """The smallest worker memory limit, or ``None`` when workers have none."""
        limits = [int(w.get("memory_limit") or 0) for w in self._workers().values()]
        limits = [limit for limit in limits if limit > 0]
        return min(limits) if limits else None

    @property
    def in_process(self) -> bool:
        """Units run in the cluster's worker processes."""
        return False

    def map(
        self,
        units: Sequence[U],
        run_unit: Callable[[U], None],
        *,
        key: Callable[[U], str],
        progress: ProgressCallback | None = None,
        finished: UnitFinished | None = None,
    ) -> None:
        """Run ``run_unit`` on every unit as one task each; raise if one fails."""
        total = len(units)
        if progress:
            progress(0, total)
        if not units:
            return
        token = uuid.uuid4().hex[:12]
        runner = self.client.submit(_hold, run_unit, key=f"cloudfree-runner-{token}", pure=False)
        threads = sum(int(w.get("nthreads", 1)) for w in self._workers().values())
        in_flight = max(threads, 1) * self.in_flight_per_thread
        pending = iter(units)
        running: dict[object, U] = {}
        completed = as_completed()
        failure: tuple[U, BaseException] | None = None
        done = 0

        def submit_next() -> None:
            unit = next(pending, None)
            if unit is None:
                return
            future = self.client.submit(
                _run, runner, unit, key=f"cloudfree-{key(unit)}-{token}", pure=False
            )
            running[future.key] = unit
            completed.add(future)

        try:
            for _ in range(in_flight):
                submit_next()
            for future in self._each_completed(completed, running):
                unit = running.pop(future.key)
                error = future.exception() if future.status == "error" else None
                future.release()
                if error is not None:
                    if failure is None:
                        failure = (unit, error)
                    log.error("work unit %s failed: %s", key(unit), error)
                    continue
                done += 1
                if progress:
                    progress(done, total)
                if finished:
                    finished(unit)
                if failure is None:
                    submit_next()
        finally:
            runner.release()
        if failure is not None:
            unit, error = failure
            if isinstance(error, KilledWorker):
                lost = RunFailedError(
                    f"Work unit {key(unit)} was running when a worker died "
                    f"({self._allowed_failures() + 1} time(s)); it may need more memory than a "
                    "worker has. Lower --chunk-size or give the workers more memory "
                    "(--memory-limit), then rerun with --resume."
                )
                lost.unit_key = key(unit)
                raise lost from error
            raise_failure(key(unit), error)

    def _each_completed(
        self, completed: as_completed, running: Mapping[object, object]
    ) -> Iterator[Any]:
        """The futures of ``completed`` as they finish, a stalled worker restarted on the way.

        A worker process can hang without dying (a stuck read, a deadlocked library): its units
        stay "processing" and nothing else would end the run. After :data:`STALL_SECONDS`
        without a finished unit, each worker running one is pinged; one that does not answer
        within :data:`PING_SECONDS` is restarted by its nanny, and the scheduler reruns its
        units elsewhere (every unit is idempotent). A worker that answers is left alone,
        however long its units take.
        """
        last = time.monotonic()
        while not completed.is_empty():
            batch = completed.next_batch(block=False)
            if batch:
                last = time.monotonic()
                yield from batch
                continue
            if time.monotonic() - last > STALL_SECONDS:
                self._restart_unresponsive(running)
                last = time.monotonic()
            time.sleep(0.05)

    def _restart_unresponsive(self, running: Mapping[object, object]) -> None:
        """Restart the workers running one of the ``running`` keys that do not answer a ping."""
        try:
            processing = self.client.processing()
        except Exception as error:  # the scheduler itself: nothing to do from here
            log.warning("could not ask the scheduler what runs where: %s", error)
            return
        for address, keys in processing.items():
            if not any(k in running for k in keys) or _answers(self.client, address):
                continue
            log.warning(
                "worker %s has not answered for %.0f s while running units; restarting it "
                "(its units run again elsewhere)",
                address,
                PING_SECONDS,
            )
            try:
                self.client.restart_workers([address], raise_for_error=False)
            except Exception as error:  # no nanny: the scheduler's worker-ttl is left
                log.warning("could not restart worker %s: %s", address, error)

    def _allowed_failures(self) -> int:
        import dask.config

        return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


def _alive() -> bool:
    return True


def _answers(client: Client, address: str) -> bool:
    """Whether the worker at ``address`` runs a trivial function within :data:`PING_SECONDS`."""
    answer: list[object] = []

    def ping() -> None:
        try:
            answer.append(client.run(_alive, workers=[address], on_error="return"))
        except Exception as error:  # the call itself failed: no answer
            answer.append(error)

    thread = threading.Thread(target=ping, name="cloudfree-ping", daemon=True)
    thread.start()
    thread.join(PING_SECONDS)
    return bool(answer) and isinstance(answer[0], dict) and answer[0].get(address) is True


def _dashboard(client: Client) -> str | None:
    """The dashboard link, when the scheduler runs a dashboard (it needs bokeh)."""
    services = client.scheduler_info().get("services", {})
    return client.dashboard_link if "dashboard" in services else None


@contextmanager
def dask_engine(
    spec: EngineSpec,
    *,
    memory_limit: int | None = None,
    notify: Notify | None = None,
) -> Iterator[DaskEngine]:
    """A connected :class:`DaskEngine` for ``spec``; what it started is closed on exit."""
    ours = logging.getLogger("cloudfree").getEffectiveLevel()
    # distributed logs every connection at INFO; its messages show when cloudfree logs debug
    logging.getLogger("distributed").setLevel(
        max(ours, logging.WARNING) if ours > logging.DEBUG else ours
    )
    with ExitStack() as stack:
        client = _connect(spec, memory_limit, stack)
        client.register_plugin(WorkerSetup(worker_environment()), name=PLUGIN_NAME)
        link = _dashboard(client)
        workers = len(client.scheduler_info().get("workers", {}))
        log.info(
            "Dask cluster (%s): %d workers, scheduler %s", spec.kind, workers, client.scheduler
        )
        if link:
            log.info("Dask dashboard: %s", link)
            if notify:
                notify(f"Dask dashboard: {link}")
        try:
            yield DaskEngine(client)
        finally:
            if spec.kind in ("scheduler", "gateway", "coiled"):
                # a cluster we did not start keeps running: leave its workers as we found them
                try:
                    client.unregister_worker_plugin(PLUGIN_NAME)
                except Exception as exc:  # a cluster going away; nothing left to restore
                    log.debug("could not remove the worker plugin: %s", exc)


def _connect(spec: EngineSpec, memory_limit: int | None, stack: ExitStack) -> Client:
    if spec.kind == "local":
        assert spec.workers is not None
        threads = spec.threads_per_worker or local_cluster_threads(spec.workers)
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=spec.workers,
                threads_per_worker=threads,
                processes=True,
                memory_limit=memory_limit if memory_limit else "auto",
                dashboard_address=":0",
                # numba's parallel kernels take NUMBA_NUM_THREADS threads at import; with one
                # kernel at a time per process (KERNEL_LOCK), workers x threads <= CPUs
                env={"NUMBA_NUM_THREADS": str(threads)},
            )
        )
        return stack.enter_context(Client(cluster))
    if spec.kind == "scheduler":
        assert spec.scheduler is not None
        try:
            client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise EngineError(
                f"Could not reach the Dask scheduler at {spec.scheduler} ({exc}); start it with "
                "`dask scheduler` and give the address it prints."
            ) from None
        return stack.enter_context(client)
    from cloudfree.engine import clusters

    if spec.kind == "gateway":
        assert spec.gateway is not None
        return clusters.gateway_client(spec.gateway, spec.workers, stack)
    return clusters.coiled_client(spec.workers, stack)
