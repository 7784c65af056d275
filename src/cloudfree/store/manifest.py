"""What a store's run has done, and who is writing it: ``<store>/_cloudfree/``.

- ``plan.json``: the job's fingerprint (grid, periods, bands, method, scenes, unit keys). A
  resumed run must have the same plan, so its units fill the same regions with the same values.
- ``done/<unit key>.json``: one small object per finished unit, written *after* its region,
  with a sha256 of the values it wrote. A unit killed halfway has no record and is redone whole;
  every unit writes exactly its own region, so redoing it is harmless.
- ``failed/<unit key>.json``: the reason a unit failed (removed when it later succeeds).
- ``lock.json``: the run writing the store (host, process id, start time), created exclusively
  (a hard link on disk, a conditional put on S3). A second run is refused while that process
  lives; the lock of a process that no longer exists on this host (``kill -9``) is taken over.

One object per record, never a shared file, so units finishing at the same time (or on other
machines) never contend. zarr and xarray ignore the folder: it holds no ``zarr.json``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import fsspec

from cloudfree.errors import StoreLockedError
from cloudfree.store import location

FOLDER = "_cloudfree"


class Manifest:
    """The records of one store."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.root = location.join(store_url, FOLDER)

    def _url(self, *parts: str) -> str:
        return location.join(self.root, *parts)

    def _read(self, url: str) -> dict[str, Any] | None:
        if not location.exists(url):
            return None
        with fsspec.open(url, "rb") as handle:
            data: dict[str, Any] = json.loads(handle.read())
        return data

    def _write(self, url: str, record: Mapping[str, Any]) -> None:
        location.write_bytes(url, json.dumps(record, sort_keys=True, indent=1).encode())

    def _listing(self, folder: str) -> list[str]:
        url = self._url(folder)
        if not location.exists(url):
            return []
        fs, path = fsspec.core.url_to_fs(url)
        return [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]

    # -- plan ----------------------------------------------------------------------------------

    def save_plan(self, fingerprint: Mapping[str, Any]) -> None:
        """Record the job this store belongs to."""
        self._write(self._url("plan.json"), fingerprint)

    def plan(self) -> dict[str, Any] | None:
        """The recorded job, or ``None`` for a store made before manifests."""
        return self._read(self._url("plan.json"))

    # -- units ---------------------------------------------------------------------------------

    def finished(self) -> dict[str, dict[str, Any]]:
        """Records of the finished units by key."""
        return self._records("done")

    def failures(self) -> dict[str, dict[str, Any]]:
        """Records of the units whose last attempt failed, by key."""
        return self._records("failed")

    def _records(self, folder: str) -> dict[str, dict[str, Any]]:
        records = {}
        for name in self._listing(folder):
            record = self._read(self._url(folder, name))
            if record is not None:
                records[record["key"]] = record
        return records

    def record_done(self, key: str, checksum: str) -> None:
        """A unit's region is written (call after the write)."""
        self._write(
            self._url("done", _file_name(key)),
            {"key": key, "sha256": checksum, "finished": _now()},
        )
        failed = self._url("failed", _file_name(key))
        if location.exists(failed):
            location.remove(failed)

    def record_failure(self, key: str, reason: str) -> None:
        """A unit failed; ``reason`` is the error message (already free of secrets)."""
        self._write(
            self._url("failed", _file_name(key)), {"key": key, "reason": reason, "at": _now()}
        )

    # -- lock ----------------------------------------------------------------------------------

    def acquire(self) -> dict[str, Any]:
        """Take the store's lock, or raise :class:`StoreLockedError` naming its holder.

        The lock is created exclusively (a hard link locally, a conditional put on S3), so of two
        runs starting together exactly one gets it. A dead holder's lock on this host is removed
        and the creation tried once more; a run taking it over at the same moment loses then.
        """
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "started": _now()}
        url = self._url("lock.json")
        payload = json.dumps(mine, sort_keys=True, indent=1).encode()
        for _ in range(2):
            if location.create_exclusive(url, payload):
                return mine
            holder = self._read(url)
            if holder is not None:
                self._refuse_if_alive(holder)
                if self._read(url) == holder:
                    location.remove(url)
        raise StoreLockedError(
            f"{self.store_url}: another run took the lock at the same moment; rerun with --resume."
        )

    def ensure_unlocked(self) -> None:
        """Raise :class:`StoreLockedError` while a live run holds the store's lock."""
        holder = self._read(self._url("lock.json"))
        if holder is not None:
            self._refuse_if_alive(holder)

    def _refuse_if_alive(self, holder: Mapping[str, Any]) -> None:
        if _alive(holder):
            raise StoreLockedError(
                f"{self.store_url} is being written by another run (process {holder['pid']} on "
                f"{holder['host']}, since {holder['started']}); wait for it to finish. If that "
                f"run is gone on another machine, delete {self._url('lock.json')} and rerun "
                "with --resume."
            )

    def release(self, mine: Mapping[str, Any]) -> None:
        """Drop the lock if it is still ours."""
        url = self._url("lock.json")
        if self._read(url) == dict(mine):
            location.remove(url)


def _alive(holder: Mapping[str, Any]) -> bool:
    """Whether a lock holder may still be running: always, unless it was on this host and died."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def _file_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key) + ".json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
