"""Windowed reads of rasters GDAL opens (COG, JPEG 2000; local, HTTP, S3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo
from rasterio.windows import Window

from cloudfree.readers.datasets import OpenRaster, borrowed_raster
from cloudfree.readers.window import (
    AlignedRead,
    Pasted,
    how_to_read,
    place_window_raw,
    source_window,
)


def read_window(
    href: str, geobox: GeoBox, resampling: str, *, categorical: bool, nodata: float | None
) -> np.ndarray | None:
    """Read the part of a raster GDAL opens (COG, JPEG 2000) covering ``geobox``.

    The window comes from the coarsest overview that still resolves ``geobox``. Returns float32
    DNs with NaN for nodata (uint8 classes with 0 for nodata when ``categorical``), or ``None``
    when the raster does not overlap ``geobox``.
    """
    placed = read_window_raw(href, geobox, resampling, categorical=categorical, nodata=nodata)
    if isinstance(placed, Pasted):
        return placed.materialise(geobox, categorical=categorical)
    return placed


def read_window_raw(
    href: str, geobox: GeoBox, resampling: str, *, categorical: bool, nodata: float | None
) -> np.ndarray | Pasted | None:
    """:func:`read_window`, but a window on the output's own grid comes back unconverted.

    See :func:`cloudfree.readers.window.place_window_raw`. Where the output lies on the pixel
    lattice of the level read (:func:`~cloudfree.readers.window.how_to_read`), exactly its
    source pixels are read, without odc-geo's padding.
    """
    src_nodata = 0 if nodata is None else nodata
    method = "nearest" if categorical else resampling
    with borrowed_raster(href) as src:
        how = how_to_read(src.geobox, geobox, method)
        level = (
            _overview_level(src.overviews, how.read_shrink)
            if isinstance(how, ReprojectInfo)
            else None
        )
        if level is None:
            return _read_level(src, how, geobox, resampling, categorical, src_nodata)
    with borrowed_raster(href, level) as src:
        how = how_to_read(src.geobox, geobox, method)
        return _read_level(src, how, geobox, resampling, categorical, src_nodata)


def _overview_level(factors: Sequence[int], shrink: int) -> int | None:
    """Index of the coarsest overview whose decimation does not exceed ``shrink``."""
    best = None
    for index, factor in enumerate(factors):
        if factor <= shrink:
            best = index
    return best


def _read_level(
    src: OpenRaster,
    how: AlignedRead | ReprojectInfo | None,
    geobox: GeoBox,
    resampling: str,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray | Pasted | None:
    if how is None:
        return None
    ys, xs = source_window(how)
    block = src.dataset.read(
        1, window=Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
    )
    return place_window_raw(
        block, src.geobox, geobox, how, resampling, categorical=categorical, src_nodata=src_nodata
    )
