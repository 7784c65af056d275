"""A run started from the command line, killed with SIGKILL mid-way and resumed, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` (a ``cloudfree`` run) with single-threaded kernels, so it is slow."""
    return subprocess.Popen(list(command), env={**os.environ, "NUMBA_NUM_THREADS": "1"})


def wait_for_units(run: subprocess.Popen[bytes], out: Path, units: int) -> None:
    """Until ``out``'s manifest records ``units`` finished, or ``run`` ends (4 minutes at most)."""
    done = out / "_cloudfree" / "done"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if done.exists() and len(list(done.iterdir())) >= units:
            return
        time.sleep(0.05)


def kill_9_and_resume(
    run: subprocess.Popen[bytes], command: Sequence[str], out: Path, units: int, total: int
) -> None:
    """Kill ``run`` once ``units`` are finished, check what it left, and resume it to the end."""
    wait_for_units(run, out, units)
    assert run.poll() is None, "the run finished before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    finished = len(list((out / "_cloudfree" / "done").iterdir()))
    assert units <= finished < total
    assert (out / "_cloudfree" / "lock.json").exists()  # left behind by the killed run
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
