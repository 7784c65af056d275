"""The store lock is taken exclusively: of two runs starting together, exactly one writes."""

from __future__ import annotations

import threading

import fsspec
import pytest

from cloudfree.errors import StoreLockedError
from cloudfree.store import location
from cloudfree.store.manifest import Manifest


def race(store_url: str, runs: int = 8) -> tuple[int, int]:
    """Start ``runs`` acquirers together; count (winners, refused)."""
    barrier = threading.Barrier(runs)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            Manifest(store_url).acquire()
            outcomes.append("won")
        except StoreLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes.count("won"), outcomes.count("refused")


def test_create_exclusive_refuses_an_existing_file(tmp_path):
    url = str(tmp_path / "a" / "lock.json")
    assert location.create_exclusive(url, b"first")
    assert not location.create_exclusive(url, b"second")
    assert (tmp_path / "a" / "lock.json").read_bytes() == b"first"


def test_one_of_many_simultaneous_runs_gets_a_local_lock(tmp_path):
    assert race(str(tmp_path / "store.zarr")) == (1, 7)


def test_one_of_many_simultaneous_runs_gets_an_s3_lock(s3_server, monkeypatch):
    """A conditional put (If-None-Match) on a real S3-compatible server on loopback."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_DEFAULT_REGION": s3_server.region,
    }.items():
        monkeypatch.setenv(name, value)
    fsspec.config.conf.pop("s3", None)
    fsspec.filesystem("s3").clear_instance_cache()
    bucket = s3_server.create_bucket()
    url = f"s3://{bucket}/store.zarr"
    probe = f"s3://{bucket}/probe.json"
    assert location.create_exclusive(probe, b"first")
    assert not location.create_exclusive(probe, b"second")
    assert race(url) == (1, 7)
    manifest = Manifest(url)
    with pytest.raises(StoreLockedError, match="being written by another run"):
        manifest.ensure_unlocked()
