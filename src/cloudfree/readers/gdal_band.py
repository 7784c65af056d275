"""Windowed reads of rasters GDAL opens (COG, JPEG 2000; local, HTTP, S3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo, compute_reproject_roi
from odc.geo.roi import roi_is_empty
from odc.geo.types import NormalizedSlice
from rasterio.windows import Window

from cloudfree.readers.datasets import OpenRaster, borrowed_raster
from cloudfree.readers.window import Pasted, aligned_read, cached_by_grids, place_window_raw


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

    See :func:`cloudfree.readers.window.place_window_raw`. A window on the source's own pixel
    lattice (:func:`~cloudfree.readers.window.aligned_read`) is read exactly, without odc-geo.
    """
    src_nodata = 0 if nodata is None else nodata
    method = "nearest" if categorical else resampling
    with borrowed_raster(href) as src:
        aligned = aligned_read(src.geobox, geobox, method)
        if aligned is not None:
            if aligned.window is None:
                return None
            block = src.dataset.read(1, window=_rio_window(*aligned.window))
            return aligned.place(block, geobox, categorical=categorical, src_nodata=src_nodata)
        roi = _roi(src.geobox, geobox)
        if roi_is_empty(roi.roi_dst) or roi_is_empty(roi.roi_src):
            return None
        level = _overview_level(src.overviews, roi.read_shrink)
        if level is None:
            return _read_level(src, geobox, roi, resampling, categorical, src_nodata)
    with borrowed_raster(href, level) as src:
        roi = _roi(src.geobox, geobox)
        if roi_is_empty(roi.roi_dst) or roi_is_empty(roi.roi_src):
            return None
        return _read_level(src, geobox, roi, resampling, categorical, src_nodata)


@cached_by_grids
def _roi(src_gbox: GeoBox, geobox: GeoBox) -> ReprojectInfo:
    """odc-geo's read window of ``src_gbox`` for ``geobox``, padded for the warp's neighbours.

    Cached (:func:`~cloudfree.readers.window.cached_by_grids`): the scenes of one tile grid
    share their grids, so every date and band of a tile asks for the same few windows.
    """
    return compute_reproject_roi(src_gbox, geobox, padding=2)


def _overview_level(factors: Sequence[int], shrink: int) -> int | None:
    """Index of the coarsest overview whose decimation does not exceed ``shrink``."""
    best = None
    for index, factor in enumerate(factors):
        if factor <= shrink:
            best = index
    return best


def _read_level(
    src: OpenRaster,
    geobox: GeoBox,
    roi: ReprojectInfo,
    resampling: str,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray | Pasted:
    block = src.dataset.read(1, window=_rio_window(*roi.roi_src))
    return place_window_raw(
        block, src.geobox, geobox, roi, resampling, categorical=categorical, src_nodata=src_nodata
    )


def _rio_window(ys: slice | NormalizedSlice, xs: slice | NormalizedSlice) -> Window:
    return Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
