"""The ``s3_server`` fixture: moto's S3-compatible server on 127.0.0.1, in its own process.

moto runs as ``python -m moto.server`` (a subprocess, so it does not share the tests' GIL) on a
free port, for the whole session. Buckets persist across tests: make your own with
``create_bucket()`` (a fresh unique name by default).

Usage::

    def test_read(s3_server, tmp_path):
        bucket = s3_server.create_bucket()
        keys = s3_server.upload_directory(tmp_path, bucket, prefix="tiles")
        with s3_server.rasterio_env(), rasterio.open(f"/vsis3/{bucket}/tiles/a.tif") as dataset:
                ...
        fs = s3fs.S3FileSystem(**s3_server.storage_options())
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import ServerStartError, free_port, stop_process, wait_for_http

STARTUP_TIMEOUT = 60.0


@dataclass
class S3Server:
    """A running moto S3 server and the credentials to use with it.

    moto accepts any credentials; these are fixed so that every client in a test agrees.
    """

    endpoint_url: str
    """``http://127.0.0.1:<port>``."""
    port: int
    log: Path
    """The server's output (one line per request)."""
    access_key: str = "cloudfree-test-key"
    secret_key: str = "cloudfree-test-secret"
    region: str = "eu-central-1"
    _client: Any = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, the form GDAL's ``AWS_S3_ENDPOINT`` takes."""
        return f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (created once, thread-safe)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique ``test-…`` name if none is given); return its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:16]}"
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": self.region},
            )
        return bucket

    def upload_directory(
        self, local: str | os.PathLike[str], bucket: str, prefix: str = ""
    ) -> list[str]:
        """Upload every file below ``local`` to ``bucket`` under ``prefix``; return the keys.

        Keys are ``<prefix>/<path relative to local>`` with ``/`` separators, sorted.
        """
        root = Path(local)
        base = prefix.strip("/")
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            key = f"{base}/{relative}" if base else relative
            self.client().upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def upload_file(self, local: str | os.PathLike[str], bucket: str, key: str) -> str:
        """Upload one file to ``bucket/key``; return the key."""
        self.client().upload_file(str(local), bucket, key)
        return key

    def gdal_options(self, credentials: bool = True) -> dict[str, str]:
        """GDAL configuration options for ``/vsis3/`` against this server.

        ``rasterio.Env`` refuses ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` among its
        options (``EnvError``: credentials must come from a session), so for rasterio use
        :meth:`rasterio_env`, or ``gdal_options(credentials=False)`` plus a session.
        """
        options = {
            "AWS_S3_ENDPOINT": self.host,
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": self.region,
        }
        if credentials:
            options["AWS_ACCESS_KEY_ID"] = self.access_key
            options["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return options

    def rasterio_session(self) -> Any:
        """A ``rasterio.session.AWSSession`` with this server's credentials, region, endpoint."""
        from rasterio.session import AWSSession

        return AWSSession(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            endpoint_url=self.host,
        )

    def rasterio_env(self, **options: Any) -> Any:
        """A ``rasterio.Env`` reading ``/vsis3/`` from this server (plus any GDAL ``options``)."""
        import rasterio

        return rasterio.Env(
            session=self.rasterio_session(), **self.gdal_options(credentials=False), **options
        )

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (or fsspec ``storage_options``)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }


def start_moto(workdir: Path, attempts: int = 3) -> tuple[S3Server, subprocess.Popen[bytes]]:
    """Start ``moto.server`` on a free port (retrying if the port was taken meanwhile)."""
    error: ServerStartError | None = None
    for attempt in range(attempts):
        port = free_port()
        log = workdir / f"moto-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        try:
            wait_for_http(
                f"http://127.0.0.1:{port}/moto-api/", process, log, STARTUP_TIMEOUT, "moto server"
            )
        except ServerStartError as exc:
            stop_process(process)
            error = exc
            continue
        return S3Server(endpoint_url=f"http://127.0.0.1:{port}", port=port, log=log), process
    assert error is not None
    raise error


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server (moto) on 127.0.0.1 for the whole session."""
    try:
        server, process = start_moto(tmp_path_factory.mktemp("moto"))
    except ServerStartError as exc:
        pytest.fail(f"could not start the moto S3 server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        stop_process(process)
