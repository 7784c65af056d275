"""Output locations: local paths or fsspec URLs, checked and cleared the same way."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import fsspec

from cloudfree.errors import OutputExistsError


def sha256_multihash(digest: hashlib._Hash) -> str:
    """STAC ``file:checksum`` of a finished sha256 digest: the sha2-256 multihash in hex."""
    return "1220" + digest.hexdigest()


def is_remote(url: str) -> bool:
    """Whether ``url`` names an object store or other non-local location."""
    scheme = urlparse(str(url)).scheme
    return len(scheme) > 1 and scheme != "file"


def local_path(url: str) -> Path:
    """The filesystem path of a local location (plain path or ``file://`` URL)."""
    parsed = urlparse(str(url))
    return Path(parsed.path if parsed.scheme == "file" else str(url))


def absolute(url: str) -> str:
    """A local path made absolute (``~`` expanded); URLs are returned unchanged."""
    if is_remote(url):
        return url
    return str(local_path(url).expanduser().resolve())


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether anything is stored at ``url`` (``storage_options``: fsspec options of a URL)."""
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        return bool(fs.exists(path))
    return local_path(url).exists()


def check_writable(
    url: str, *, overwrite: bool, what: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Refuse an existing output unless ``overwrite``; nothing is deleted here."""
    if exists(url, storage_options) and not overwrite:
        raise OutputExistsError(
            f"{what} {url} already exists; choose another location or pass --overwrite "
            "to replace it."
        )


def remove(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete whatever is stored at ``url`` (only called for an explicit overwrite)."""
    if not exists(url, storage_options):
        return
    fs, path = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    fs.rm(path, recursive=True)


def write_bytes(url: str, payload: bytes) -> None:
    """Write a small file (JSON, PNG) to a local path or URL, creating parent folders."""
    if not is_remote(url):
        target = local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        return
    with fsspec.open(url, "wb") as handle:
        handle.write(payload)


def create_exclusive(url: str, payload: bytes) -> bool:
    """Write a small file only if nothing is at ``url``; ``False`` if something already is.

    Atomic where the storage offers it: a hard link on a local disk, a conditional put
    (``If-None-Match: *``) on S3 and S3-compatible stores. Elsewhere it is check-then-write.
    """
    if not is_remote(url):
        target = local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        # written aside, then hard-linked into place: the link fails if the file exists, and a
        # reader never sees it half-written
        aside = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        aside.write_bytes(payload)
        try:
            os.link(aside, target)
        except FileExistsError:
            return False
        finally:
            aside.unlink(missing_ok=True)
        return True
    fs, path = fsspec.core.url_to_fs(url)
    if fs.protocol and "s3" in fs.protocol:
        try:
            fs.pipe_file(path, payload, mode="create")
        except FileExistsError:
            return False
        return True
    if fs.exists(path):
        return False
    fs.pipe_file(path, payload)
    return True


def join(base: str, *parts: str) -> str:
    """Join path segments onto a local path or URL."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(local_path(base).joinpath(*parts))
