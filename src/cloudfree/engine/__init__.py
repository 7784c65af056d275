"""Running work units: in-process threads by default, or a Dask cluster.

Units are independent and idempotent (each writes exactly its own region and records itself in
the store's manifest). Every engine behaves the same way: a failure stops new units from starting,
lets running ones finish, and is raised as :class:`~cloudfree.errors.RunFailedError` naming the
unit, so a failed run never reports success.

- :class:`ThreadEngine` (default): a thread pool in this process (GDAL reads, numba kernels and
  numpy release the GIL).
- :class:`~cloudfree.engine.dask_engine.DaskEngine`: units as ``distributed`` tasks on a local
  process cluster (``--workers N``), an existing scheduler (``--dask-scheduler``), dask-gateway or
  Coiled (:mod:`cloudfree.engine.clusters`, optional extras). Imported only when asked for.

:class:`EngineSpec` says which; :func:`open_engine` starts or connects to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from cloudfree.config import tune_allocator
from cloudfree.errors import CloudfreeError, InvalidInputError, RunFailedError

log = logging.getLogger(__name__)

U = TypeVar("U")
ProgressCallback = Callable[[int, int], None]
"""Called with (finished units, total units) after each unit."""
UnitFinished = Callable[[Any], None]
"""Called in the calling process with each unit that finished, as it finishes (so the caller
can start on what it wrote while the other units run)."""
Notify = Callable[[str], None]
"""Receives messages for the user (a cluster's dashboard link)."""


class Engine(Protocol):
    """Something that runs work units."""

    @property
    def threads_per_worker(self) -> int:
        """Units that run at the same time in one process (what a process's memory must hold)."""
        ...

    @property
    def memory_limit(self) -> int | None:
        """Memory limit of one worker process in bytes, where the engine has one."""
        ...

    @property
    def in_process(self) -> bool:
        """Whether units run in this process (sharing its cores and memory)."""
        ...

    def map(
        self,
        units: Sequence[U],
        run_unit: Callable[[U], None],
        *,
        key: Callable[[U], str],
        progress: ProgressCallback | None = None,
        finished: UnitFinished | None = None,
    ) -> None:
        """Run ``run_unit`` on every unit; raise :class:`RunFailedError` if one fails."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    """Where work units run: at most one of the fields below is set; none means threads."""

    workers: int | None = None
    """A local cluster of this many worker processes (``--workers``); on dask-gateway or Coiled,
    the number of workers to ask for."""
    threads_per_worker: int | None = None
    """Threads of each local worker (``--threads`` with ``--workers``; default: CPUs / workers)."""
    scheduler: str | None = None
    """Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786`` (``--dask-scheduler``)."""
    gateway: str | None = None
    """URL of a dask-gateway server; a cluster is created there (``--dask-gateway``)."""
    coiled: bool = False
    """A Coiled cluster from the user's Coiled account and configuration (``--coiled``)."""

    @property
    def kind(self) -> str:
        """``threads``, ``local``, ``scheduler``, ``gateway`` or ``coiled``."""
        if self.scheduler:
            return "scheduler"
        if self.gateway:
            return "gateway"
        if self.coiled:
            return "coiled"
        return "local" if self.workers else "threads"

    @property
    def uses_dask(self) -> bool:
        """Whether units run as Dask tasks (in other processes)."""
        return self.kind != "threads"


def engine_spec(
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    dask_gateway: str | None = None,
    coiled: bool = False,
    threads: int | None = None,
) -> EngineSpec:
    """Validate the engine options (they exclude one another) into an :class:`EngineSpec`."""
    chosen = [
        name
        for name, given in (
            ("--dask-scheduler", dask_scheduler),
            ("--dask-gateway", dask_gateway),
            ("--coiled", coiled),
        )
        if given
    ]
    if len(chosen) > 1:
        raise InvalidInputError(
            f"{' and '.join(chosen)} each name where the work runs; give only one of them."
        )
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be at least 1 process, got {workers}.")
    if dask_scheduler and workers is not None:
        raise InvalidInputError(
            "--workers starts a local cluster and --dask-scheduler uses a running one; the "
            "running cluster's size is set where its workers start (`dask worker`). Drop one."
        )
    if threads is not None and chosen:
        raise InvalidInputError(
            f"--threads sizes this machine's engine; with {chosen[0]} each worker's threads "
            "are set where the workers start. Drop --threads."
        )
    if dask_scheduler and "://" not in dask_scheduler and ":" not in dask_scheduler:
        raise InvalidInputError(
            f"--dask-scheduler {dask_scheduler!r} is not an address; give it as "
            "tcp://HOST:PORT (what `dask scheduler` prints)."
        )
    if dask_gateway or coiled:
        from cloudfree.engine.clusters import check_installed

        check_installed("gateway" if dask_gateway else "coiled")
    elif workers is not None or dask_scheduler:
        check_distributed()
    return EngineSpec(
        workers=workers,
        threads_per_worker=threads if workers is not None else None,
        scheduler=dask_scheduler,
        gateway=dask_gateway,
        coiled=coiled,
    )


def check_distributed() -> None:
    """Raise a clear error if ``distributed`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise InvalidInputError(
            "Running on Dask needs the distributed package; install it with "
            "pip install 'dask[distributed]'."
        )


def local_cluster_threads(workers: int, cpus: int | None = None) -> int:
    """Threads per worker of a local cluster: the CPUs shared out, at least one each."""
    import os

    return max((cpus or os.cpu_count() or 1) // workers, 1)


class ThreadEngine:
    """Units on a thread pool in this process, at most ``threads`` at a time."""

    def __init__(self, threads: int) -> None:
        self.threads = max(threads, 1)

    @property
    def threads_per_worker(self) -> int:
        """All units run in this one process."""
        return self.threads

    @property
    def memory_limit(self) -> int | None:
        """No limit of its own (the machine's memory is the limit)."""
        return None

    @property
    def in_process(self) -> bool:
        """Units run on this process's threads."""
        return True

    def map(
        self,
        units: Sequence[U],
        run_unit: Callable[[U], None],
        *,
        key: Callable[[U], str],
        progress: ProgressCallback | None = None,
        finished: UnitFinished | None = None,
    ) -> None:
        """Run ``run_unit`` on every unit with at most ``threads`` in flight."""
        tune_allocator()
        total = len(units)
        done = 0
        if progress:
            progress(0, total)
        pending = iter(units)
        running: dict[Future[None], U] = {}
        failure: tuple[U, BaseException] | None = None
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="cloudfree") as pool:

            def submit_next() -> None:
                unit = next(pending, None)
                if unit is not None:
                    running[pool.submit(run_unit, unit)] = unit

            for _ in range(self.threads * 2):
                submit_next()
            while running:
                ended, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in ended:
                    unit = running.pop(future)
                    error = future.exception()
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
        if failure is not None:
            raise_failure(key(failure[0]), failure[1])


def raise_failure(unit_key: str, error: BaseException) -> None:
    """Raise the :class:`RunFailedError` of a run whose unit ``unit_key`` failed."""
    message = f"Work unit {unit_key} failed: {error}"
    if not isinstance(error, CloudfreeError):
        message += " (an unexpected error; please report it)"
    failed = RunFailedError(message)
    failed.unit_key = unit_key
    raise failed from error


@contextmanager
def open_engine(
    spec: EngineSpec,
    *,
    threads: int,
    memory_limit: int | None = None,
    notify: Notify | None = None,
) -> Iterator[Engine]:
    """Start (or connect to) the engine ``spec`` names; close what was started on exit.

    ``threads`` sizes the thread engine; ``memory_limit`` (bytes) is the memory limit of each
    worker of a local cluster. ``notify`` receives the dashboard link of a cluster.
    """
    if not spec.uses_dask:
        yield ThreadEngine(threads)
        return
    from cloudfree.engine.dask_engine import dask_engine

    with dask_engine(spec, memory_limit=memory_limit, notify=notify) as engine:
        yield engine


class ShippedUnitTask:
    """Base of what an engine runs for every unit: picklable without the read settings.

    Subclasses hold ``request`` (a frozen dataclass with ``settings`` and ``source`` fields) and
    ``job`` (a frozen plan with ``units`` and ``scenes``). A Dask worker gets it once: the request
    without its read settings, which may hold secrets (an HTTP header in ``CLOUDFREE_GDAL_*``),
    and without its source (a STAC API's URL or headers may hold a token), and the plan without
    its units and scenes, which each unit brings. The worker reads its own
    settings, set by the engine's worker plugin (:mod:`cloudfree.engine.dask_engine`).
    """

    request: Any
    job: Any

    def __getstate__(self) -> dict[str, object]:
        from cloudfree.config import ReadSettings
        from cloudfree.sources.base import SearchedElsewhere

        # without its source either: a STAC API's URL or headers may hold a token
        return {
            "request": replace(self.request, settings=ReadSettings(), source=SearchedElsewhere()),
            "job": replace(self.job, units=(), scenes=()),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        from cloudfree.config import read_settings

        self.request = replace(state["request"], settings=read_settings())
        self.job = state["job"]
        self.reopened()

    def reopened(self) -> None:
        """Called after unpickling in a worker; reset per-process state here."""


def run_units(
    units: Sequence[U],
    run_unit: Callable[[U], None],
    *,
    threads: int | None = None,
    key: Callable[[U], str],
    progress: ProgressCallback | None = None,
    engine: Engine | None = None,
    finished: UnitFinished | None = None,
) -> None:
    """Run ``run_unit`` on every unit on ``engine`` (default: ``threads`` threads here)."""
    if engine is None:
        engine = ThreadEngine(threads or 1)
    engine.map(units, run_unit, key=key, progress=progress, finished=finished)
