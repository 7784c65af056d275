"""Real servers on 127.0.0.1 for the tests, as pytest fixtures (no mocks).

- ``http_server`` (``tests/servers/http.py``): static files with byte ranges, fault injection and
  a request log (:mod:`cloudfree.testing.http_server`); function scope, a factory.
- ``s3_server`` (``tests/servers/s3.py``): moto's S3-compatible server in a subprocess; session.
- ``stac_api`` (``tests/servers/stac_api.py``): stac-fastapi-pgstac on a throwaway PostgreSQL 15 +
  PostGIS cluster with pgSTAC; session.
- ``dask_cluster`` (``tests/servers/dask.py``): a ``dask scheduler`` and two ``dask worker``
  processes (with nannies) whose environment holds no credentials or cloudfree settings; session.

``tests/conftest.py`` registers the four modules as plugins, so every test can ask for them.
Under pytest-xdist each worker starts its own session servers, on its own ports and directories.
Everything they need is installed by ``make test`` (Debian packages and the ``test`` extra).

This module holds the helpers the fixtures share.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ServerStartError", "free_port", "stop_process", "tail", "wait_for_http"]


class ServerStartError(RuntimeError):
    """A test server did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, limit: int = 4000) -> str:
    """Return the end of a log file (or a note that it is missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return text[-limit:] if text.strip() else "(empty log)"


def wait_for_http(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    what: str,
) -> None:
    """Poll ``url`` until it answers (any HTTP status); fail if ``process`` exits or time runs out.

    Raises
    ------
    ServerStartError
        With the process's log, if it exited or did not answer within ``timeout`` seconds.

    """
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServerStartError(f"{what} exited with code {code}; its output:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{what} did not answer {url} within {timeout:.0f} s; its output:\n{tail(log)}"
            )
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate a process, killing it if it is still alive after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=grace)
