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
from collections.abc import Callable, Iterator
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


class _Idle:
    """Handles not lent out, by key, least recently returned first (used under :data:`_lock`)."""

    def __init__(self) -> None:
        self._handles: OrderedDict[_Key, list[OpenRaster]] = OrderedDict()
        self._count = 0

    def take(self, key: _Key) -> OpenRaster | None:
        """An idle handle of ``key``, no longer idle; ``None`` if there is none."""
        handles = self._handles.get(key)
        if not handles:
            return None
        self._count -= 1
        raster = handles.pop()
        if not handles:
            del self._handles[key]
        return raster

    def give(self, key: _Key, raster: OpenRaster) -> list[OpenRaster]:
        """Keep ``raster`` idle; return the least recently used beyond :data:`MAX_OPEN`."""
        self._handles.setdefault(key, []).append(raster)
        self._handles.move_to_end(key)
        self._count += 1
        excess = []
        while self._count > MAX_OPEN:
            oldest, handles = next(iter(self._handles.items()))
            excess.append(handles.pop(0))
            if not handles:
                del self._handles[oldest]
            self._count -= 1
        return excess

    def drop(self, matches: Callable[[_Key], bool] = lambda key: True) -> list[OpenRaster]:
        """Remove and return the handles whose key ``matches``."""
        keys = [key for key in self._handles if matches(key)]
        dropped = [raster for key in keys for raster in self._handles.pop(key)]
        self._count -= len(dropped)
        return dropped


_lock = threading.Lock()
_idle = _Idle()


def _forked() -> None:
    """A forked child must not share the parent's GDAL handles (nor its lock's holder)."""
    global _lock, _idle
    _lock = threading.Lock()
    _idle = _Idle()


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
    with _lock:
        raster = _idle.take(key)
    if raster is None or raster.dataset.closed:
        raster = _open(href, overview_level)
    try:
        yield raster
    except BaseException:
        raster.dataset.close()
        raise
    with _lock:
        excess = _idle.give(key, raster)
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


def forget(href: str) -> None:
    """Close the idle handles of ``href``, signed or not (after a failed read).

    The query string is ignored: a signed href's token may have been renewed since it was opened.
    """
    path = href.split("?", 1)[0]
    with _lock:
        closing = _idle.drop(lambda key: key[0].split("?", 1)[0] == path)
    for raster in closing:
        raster.dataset.close()


def close_all() -> None:
    """Close every idle dataset."""
    with _lock:
        closing = _idle.drop()
    for raster in closing:
        raster.dataset.close()
