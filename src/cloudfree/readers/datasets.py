"""Open GDAL datasets kept per thread, so a file is opened once per thread, not once per tile.

A tile reads every scene's band files; the next tile reads the same files again. Opening a COG
over HTTP or S3 costs a header request and the parsing of its IFDs (a few milliseconds each, about
a third of a mosaic's read time when every tile reopened every file). Each thread keeps its
datasets open in a bounded least-recently-used cache: rasterio datasets are not shared between
threads, and a thread reads one tile at a time.

What keeps a handle correct:

- the key is the href GDAL opens (signed URLs change when their token is renewed, so a renewed
  token opens a new handle) and the overview level;
- a local file's key also holds its size and modification time, so a file rewritten in place is
  opened again;
- a failed read drops the handle (:func:`forget`) before it is retried;
- handles are opened with GDAL's per-handle ``VSI_CACHE`` off (``config.GDAL_DEFAULTS``): a cache
  per open file would grow with every tile read through it. /vsicurl/ keeps its own bounded
  process-wide cache of file regions.

Threads of the thread engine end with their run, closing their handles; Dask worker threads live
on, bounded by :data:`MAX_OPEN`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import rasterio
from odc.geo.geobox import GeoBox
from rasterio.io import DatasetReader

MAX_OPEN = 512
"""Datasets each thread keeps open: more than one tile reads (scenes x bands), so the files of a
tile are not evicted before the next tile reads them again."""

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


class _Open(threading.local):
    def __init__(self) -> None:
        self.rasters: OrderedDict[_Key, OpenRaster] = OrderedDict()


_open = _Open()


def _local_stamp(href: str) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a local file; ``None`` for URLs and GDAL virtual paths."""
    if "://" in href or href.startswith("/vsi"):
        return None
    try:
        stat = os.stat(href)
    except OSError:
        return None  # rasterio.open reports it
    return stat.st_size, stat.st_mtime_ns


def open_raster(href: str, overview_level: int | None = None) -> OpenRaster:
    """The open dataset of ``href`` (at ``overview_level``) for this thread; opened on first use.

    Do not close it: it stays open for the thread's next reads.
    """
    key = (href, overview_level, _local_stamp(href))
    rasters = _open.rasters
    found = rasters.get(key)
    if found is not None and not found.dataset.closed:
        rasters.move_to_end(key)
        return found
    if overview_level is None:
        dataset = rasterio.open(href)
    else:
        dataset = rasterio.open(href, overview_level=overview_level)
    try:
        raster = OpenRaster(dataset)
    except Exception:
        dataset.close()
        raise
    rasters[key] = raster
    while len(rasters) > MAX_OPEN:
        _, oldest = rasters.popitem(last=False)
        oldest.dataset.close()
    return raster


def forget(href: str) -> None:
    """Close and drop this thread's handles of ``href``, signed or not (after a failed read).

    The query string is ignored: a signed href's token may have been renewed since it was opened.
    """
    path = href.split("?", 1)[0]
    rasters = _open.rasters
    for key in [k for k in rasters if k[0].split("?", 1)[0] == path]:
        rasters.pop(key).dataset.close()


def close_all() -> None:
    """Close every dataset this thread keeps open."""
    rasters = _open.rasters
    while rasters:
        rasters.popitem()[1].dataset.close()
