"""Open GDAL datasets shared by the reader threads, so a file is opened about once per process.

A tile reads every scene's band files; the next tile reads the same files again. Opening a COG
over HTTP or S3 costs a header request and the parsing of its IFDs (a few milliseconds each, about
a third of a mosaic's read time when every tile reopened every file). A GDAL dataset may be used
by one thread at a time, from any thread: :func:`borrowed_raster` lends an idle handle of the
file (or opens one) to the calling thread for one read and takes it back after. Handles kept
per thread instead, each reader thread ended up with its own handle of every file (four times the
handles with four readers; each holds a few hundred kilobytes of decoder state once read).

What keeps a handle correct:

- the key is the href GDAL opens (signed URLs change when their token is renewed, so a renewed
  token opens a new handle) and the overview level;
- a local file's key also holds its size and modification time, so a file rewritten in place is
  opened again;
- a read that fails closes its handle instead of returning it, and :func:`forget` closes the
  file's idle handles, before it is retried;
- handles are opened with GDAL's per-handle ``VSI_CACHE`` off (``config.GDAL_DEFAULTS``): a cache
  per open file would grow with every tile read through it. /vsicurl/ keeps its own bounded
  process-wide cache of file regions.

At most :data:`MAX_OPEN` idle handles are kept, least recently used closed first.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import rasterio
from odc.geo.geobox import GeoBox
from rasterio.io import DatasetReader

MAX_OPEN = 512
"""Idle datasets kept open: more than one tile reads (scenes x bands), so the files of a tile are
not closed before the next tile reads them again."""

_Key = tuple[str, int | None, tuple[int, int] | None]


@dataclass(frozen=True)
class OpenRaster:
    """An open dataset with what every read asks of it, worked out once."""

    dataset: DatasetReader
    geobox: GeoBox = field(init=False)
    """Its pixel grid."""
    overviews: tuple[int, ...] = field(init=False)
    """Decimation factors of its overviews (of band 1)."""

    def __post_init__(self) -> None:
        src = self.dataset
        object.__setattr__(self, "geobox", GeoBox(src.shape, src.transform, src.crs))
        object.__setattr__(self, "overviews", tuple(src.overviews(1)))


_lock = threading.Lock()
_idle: OrderedDict[_Key, list[OpenRaster]] = OrderedDict()
"""Handles not lent out, by key, least recently returned first."""


def _forked() -> None:
    """A forked child must not share the parent's GDAL handles (nor its lock's holder)."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forked)


def _local_stamp(href: str) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a local file; ``None`` for URLs and GDAL virtual paths."""
    if "://" in href or href.startswith("/vsi"):
        return None
    try:
        stat = os.stat(href)
    except OSError:
        return None  # rasterio.open reports it
    return stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def borrowed_raster(href: str, overview_level: int | None = None) -> Iterator[OpenRaster]:
    """An open dataset of ``href`` (at ``overview_level``), this thread's alone within the block.

    An idle handle of the file is lent if there is one, else one is opened. It goes back to the
    idle handles afterwards, or is closed if the block raised (the next read opens it afresh).
    Do not keep it, or anything that reads through it, past the block.
    """
    key = (href, overview_level, _local_stamp(href))
    raster = None
    with _lock:
        handles = _idle.get(key)
        if handles:
            raster = handles.pop()
            if not handles:
                del _idle[key]
    if raster is None or raster.dataset.closed:
        raster = _open(href, overview_level)
    try:
        yield raster
    except BaseException:
        raster.dataset.close()
        raise
    with _lock:
        _idle.setdefault(key, []).append(raster)
        _idle.move_to_end(key)
        excess = _excess()
    for old in excess:
        old.dataset.close()


def _open(href: str, overview_level: int | None) -> OpenRaster:
    if overview_level is None:
        dataset = rasterio.open(href)
    else:
        dataset = rasterio.open(href, overview_level=overview_level)
    try:
        return OpenRaster(dataset)
    except Exception:
        dataset.close()
        raise


def _excess() -> list[OpenRaster]:
    """Take the least recently used idle handles beyond :data:`MAX_OPEN` (under the lock)."""
    count = sum(len(handles) for handles in _idle.values())
    excess = []
    while count > MAX_OPEN:
        key, handles = next(iter(_idle.items()))
        excess.append(handles.pop(0))
        if not handles:
            del _idle[key]
        count -= 1
    return excess


def forget(href: str) -> None:
    """Close the idle handles of ``href``, signed or not (after a failed read).

    The query string is ignored: a signed href's token may have been renewed since it was opened.
    """
    path = href.split("?", 1)[0]
    with _lock:
        keys = [k for k in _idle if k[0].split("?", 1)[0] == path]
        closing = [raster for key in keys for raster in _idle.pop(key)]
    for raster in closing:
        raster.dataset.close()


def close_all() -> None:
    """Close every idle dataset."""
    with _lock:
        closing = [raster for handles in _idle.values() for raster in handles]
        _idle.clear()
    for raster in closing:
        raster.dataset.close()
