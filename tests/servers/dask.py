"""The ``dask_cluster`` fixture: a real ``dask scheduler`` and two ``dask worker`` processes.

All on 127.0.0.1, for the whole session. Each worker runs under a nanny (as ``dask worker`` does
by default), so a worker process killed with SIGKILL is restarted, as on a real cluster. The
workers start with an environment stripped of every variable cloudfree forwards
(``cloudfree.config.FORWARDED_PREFIXES``: ``AWS_*``, ``CLOUDFREE_*``, ``GDAL_*`` ...): what they
know of credentials and settings comes from the client's worker plugin, as on a remote cluster.

Usage::

    def test_run(dask_cluster):
        cloudfree.mosaic(..., dask_scheduler=dask_cluster.address)
        pids = dask_cluster.worker_pids()      # {worker address: process id}
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps

from . import ServerStartError, free_port, stop_process, tail

STARTUP_TIMEOUT = 90.0
WORKERS = 2
REPO = Path(__file__).resolve().parents[2]


@dataclass
class DaskCluster:
    """A running scheduler and its workers."""

    address: str
    """``tcp://127.0.0.1:<port>``."""
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    logs: Path
    worker_environment: dict[str, str] = field(repr=False, default_factory=dict)

    def client(self) -> Any:
        """A new ``distributed.Client`` (close it when done)."""
        from distributed import Client

        return Client(self.address, timeout="30s")

    def worker_pids(self) -> dict[str, int]:
        """Process id of each worker (not of its nanny), by worker address."""
        with self.client() as client:
            return dict(client.run(os.getpid))

    def wait_for_workers(self, count: int = WORKERS, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until ``count`` workers are connected (after a restart, say)."""
        with self.client() as client:
            client.wait_for_workers(count, timeout=timeout)


class TaskSpecRecorder(SchedulerPlugin):
    """A scheduler plugin keeping every task the scheduler receives, pickled, for inspection.

    Register it with ``client.register_plugin(TaskSpecRecorder())``; read what it kept with
    ``client.run_on_scheduler(recorded)``.
    """

    name = "cloudfree-test-recorder"

    def __init__(self) -> None:
        self.specs: list[bytes] = []

    def update_graph(self, scheduler: Any, *, keys: Any = (), **kwargs: Any) -> None:
        for key in {*keys, *kwargs.get("tasks", ())}:
            task = scheduler.tasks.get(key)
            if task is not None and task.run_spec is not None:
                self.specs.append(dumps(task.run_spec))


def recorded(dask_scheduler: Any) -> bytes:
    """Every task spec the recorder kept, concatenated (run with ``client.run_on_scheduler``)."""
    return b"".join(dask_scheduler.plugins[TaskSpecRecorder.name].specs)


def _clean_environment() -> dict[str, str]:
    from cloudfree.config import FORWARDED_PREFIXES

    env = {k: v for k, v in os.environ.items() if not k.startswith(FORWARDED_PREFIXES)}
    for name in ("CDSE_S3_ACCESS_KEY", "CDSE_S3_SECRET_KEY", "CDSE_S3_PROFILE"):
        env.pop(name, None)
    paths = [str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["NUMBA_NUM_THREADS"] = "1"  # two single-thread workers on a shared machine
    return env


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"dask scheduler exited; its output:\n{tail(log)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise ServerStartError(f"dask scheduler did not listen on {port}; its output:\n{tail(log)}")


def start_cluster(logs: Path) -> DaskCluster:
    """Start a scheduler and :data:`WORKERS` workers, and wait until all are connected."""
    env = _clean_environment()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler_log = logs / "scheduler.log"
    with scheduler_log.open("wb") as out:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--no-dashboard"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=logs,
        )  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    cluster = DaskCluster(address, scheduler, workers, logs, env)
    try:
        _wait_for_port(port, scheduler, scheduler_log)
        for index in range(WORKERS):
            command = [
                sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
                "127.0.0.1", "--nthreads", "1", "--memory-limit", "2GiB", "--no-dashboard",
                "--name", f"worker-{index}",
            ]  # fmt: skip
            with (logs / f"worker-{index}.log").open("wb") as out:
                workers.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=logs,
                    )
                )
        cluster.wait_for_workers()
        with cluster.client() as client:  # imports and numba's cache, once, not in a test
            client.run(importlib.import_module, "cloudfree.pipeline")
    except Exception:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: DaskCluster) -> None:
    """Stop the workers, then the scheduler."""
    for process in cluster.workers:
        stop_process(process)
    stop_process(cluster.scheduler)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A Dask scheduler and two single-thread workers on 127.0.0.1, for the whole session."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("dask"))
    except (ServerStartError, OSError, TimeoutError) as exc:
        pytest.fail(f"could not start the Dask cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


__all__ = ["DaskCluster", "TaskSpecRecorder", "dask_cluster", "recorded"]
