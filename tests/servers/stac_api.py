"""The ``stac_api`` fixture: stac-fastapi-pgstac on a throwaway PostgreSQL 15 + PostGIS cluster.

Per session (per xdist worker): ``initdb`` a cluster in a temporary directory, start it on a free
port of 127.0.0.1 (fsync off, unix socket in that directory), ``pypgstac migrate`` it, and run
``uvicorn stac_fastapi.pgstac.app:create_app --factory`` with the transactions extension on
another free port. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` system user (``runuser -u postgres --``); otherwise to the current user.

The PostgreSQL 15 server and PostGIS 3 come from Debian packages that ``make test`` installs.
If they are missing the fixture fails saying so; it skips only when they are missing and the
tests do not run as root (nothing could install them).

Usage::

    def test_search(stac_api):
        stac_api.load([collection], [item1, item2])  # dicts, upserted
        client = pystac_client.Client.open(stac_api.url)
        ...
        stac_api.clear()  # the instance is shared by the session: remove what you loaded
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import ServerStartError, free_port, stop_process, tail, wait_for_http

PG_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
DEB_PACKAGES = ("postgresql-15", "postgresql-15-postgis-3")
STARTUP_TIMEOUT = 60.0


@dataclass
class StacApiServer:
    """A running STAC API backed by pgSTAC.

    Attributes
    ----------
    url
        The API root, ``http://127.0.0.1:<port>`` (landing page at ``url + "/"``).
    dsn
        libpq URL of the database (user ``postgres``, trust authentication).
    startup_seconds
        How long the cluster, migration and API took to come up.

    """

    url: str
    dsn: str
    workdir: Path
    startup_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def load(
        self,
        collections: Sequence[Mapping[str, Any]],
        items: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Upsert collection and item dicts (collections first) with pypgstac's loader."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            if collections:
                loader.load_collections(iter([dict(c) for c in collections]), Methods.upsert)
            if items:
                loader.load_items(iter([dict(i) for i in items]), Methods.upsert)

    def clear(self) -> None:
        """Delete every collection and its items."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.collections")]
            for collection_id in ids:
                conn.execute("SELECT pgstac.delete_collection(%s)", (collection_id,))


def _missing_packages() -> list[str]:
    """Name the Debian packages whose files the fixture needs but cannot find."""
    missing = []
    if not all((PG_BIN / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
        missing.append(DEB_PACKAGES[0])
    if not POSTGIS_CONTROL.is_file():
        missing.append(DEB_PACKAGES[1])
    return missing


def _check_installed() -> None:
    """Fail (root) or skip (not root) when the PostgreSQL server or PostGIS is missing."""
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.skip(
            f"Debian packages {', '.join(missing)} are not installed and the tests do not run "
            "as root to install them (run `make test` as root, or apt-get install them)"
        )
    pytest.fail(
        f"the stac_api fixture needs Debian packages {', '.join(missing)} "
        f"(looked for {PG_BIN}/initdb and {POSTGIS_CONTROL}): run `make test`, which installs "
        "them",
        pytrace=False,
    )


class _Cluster:
    """A PostgreSQL cluster in a directory, run as ``postgres`` when we are root."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.port = 0
        self.running = False
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "running as root, PostgreSQL needs the `postgres` system user, which the "
                    f"{DEB_PACKAGES[0]} package creates: run `make test`",
                    pytrace=False,
                )
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            self.prefix = [runuser, "-u", "postgres", "--"]
            os.chown(workdir, owner.pw_uid, owner.pw_gid)

    def _run(self, *args: str | Path, log: Path) -> None:
        with log.open("ab") as out:
            result = subprocess.run(
                [*self.prefix, *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                check=False,
            )
        if result.returncode != 0:
            raise ServerStartError(
                f"{Path(args[0]).name} failed with code {result.returncode}; output:\n{tail(log)}"
            )

    def initdb(self) -> None:
        self._run(
            PG_BIN / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
            log=self.workdir / "initdb.log",
        )

    def start(self, attempts: int = 3) -> None:
        """Start on a free port, retrying with another port if it was taken meanwhile."""
        error: ServerStartError | None = None
        for _ in range(attempts):
            self.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.workdir}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=50",
                ]
            )
            try:
                self._run(
                    PG_BIN / "pg_ctl",
                    "start",
                    "-D",
                    self.data,
                    "-l",
                    self.log,
                    "-w",
                    "-t",
                    str(int(STARTUP_TIMEOUT)),
                    "-o",
                    options,
                    log=self.workdir / "pg_ctl.log",
                )
            except ServerStartError as exc:
                error = ServerStartError(f"{exc}\nserver log:\n{tail(self.log)}")
                continue
            self.running = True
            return
        assert error is not None
        raise error

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(ServerStartError):
                self._run(
                    PG_BIN / "pg_ctl",
                    "stop",
                    "-D",
                    self.data,
                    "-m",
                    "immediate",
                    log=self.workdir / "pg_ctl.log",
                )
            self.running = False

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _migrate(dsn: str) -> None:
    """Install the pgSTAC schema of the installed pypgstac."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with PgstacDB(dsn=dsn) as db:
        Migrate(db).run_migration()


def _api_env(cluster: _Cluster) -> dict[str, str]:
    """Environment for stac-fastapi-pgstac 7 (``PG*`` connection settings, transactions on)."""
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGUSER": "postgres",
        "PGPASSWORD": "unused-trust-auth",
        "PGDATABASE": "postgres",
        "ENABLE_TRANSACTIONS_EXTENSIONS": "TRUE",
        "STAC_FASTAPI_TITLE": "cloudfree test STAC API",
        "STAC_FASTAPI_DESCRIPTION": "stac-fastapi-pgstac on a throwaway cluster for the tests",
        "STAC_FASTAPI_LANDING_ID": "cloudfree-test",
        "STAC_FASTAPI_VERSION": "0.0.0",
        "DB_MIN_CONN_SIZE": "1",
        "DB_MAX_CONN_SIZE": "4",
    }


def _spawn_api(cluster: _Cluster, attempt: int) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Start uvicorn with stac-fastapi-pgstac on a free port; return URL, process and log."""
    port = free_port()
    log = cluster.workdir / f"uvicorn-{attempt}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "stac_fastapi.pgstac.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_api_env(cluster),
            # the settings read a .env file from the working directory: use one without
            cwd=cluster.workdir,
        )
    return f"http://127.0.0.1:{port}", process, log


@contextlib.contextmanager
def run_stac_api() -> Iterator[StacApiServer]:
    """Run a cluster, migrate it and serve it until the block ends; clean up everything."""
    _check_installed()
    timings: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="cloudfree-stac-api-"))
    process: subprocess.Popen[bytes] | None = None
    cluster: _Cluster | None = None
    try:
        cluster = _Cluster(workdir)
        mark = time.perf_counter()
        cluster.initdb()
        timings["initdb"] = time.perf_counter() - mark
        mark = time.perf_counter()
        cluster.start()
        timings["postgres"] = time.perf_counter() - mark
        # uvicorn imports for as long as the migration runs: start it first, wait for it after
        mark = time.perf_counter()
        url, process, log = _spawn_api(cluster, 0)
        _migrate(cluster.dsn)
        timings["migrate"] = time.perf_counter() - mark
        for attempt in range(1, 4):
            try:
                wait_for_http(url + "/", process, log, STARTUP_TIMEOUT, "stac-fastapi-pgstac")
                break
            except ServerStartError:
                stop_process(process)
                if attempt == 3:  # the port was taken meanwhile, three times: give up
                    raise
                url, process, log = _spawn_api(cluster, attempt)
        timings["api"] = time.perf_counter() - mark - timings["migrate"]
        yield StacApiServer(
            url=url,
            dsn=cluster.dsn,
            workdir=workdir,
            startup_seconds=sum(timings.values()),
            timings=timings,
        )
    finally:
        if process is not None:
            stop_process(process)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stac_api() -> Iterator[StacApiServer]:
    """A STAC API (stac-fastapi-pgstac, transactions on) over pgSTAC, for the whole session."""
    try:
        with run_stac_api() as server:
            yield server
    except ServerStartError as exc:
        pytest.fail(f"could not start the STAC API test server: {exc}", pytrace=False)
