"""The last step of every band read: a source window placed on the output grid."""

from __future__ import annotations

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo
from odc.geo.types import NormalizedSlice
from odc.geo.warp import rio_reproject
from rasterio.enums import Resampling

from cloudfree.readers.warp import is_tile_invariant, warp_window


def place_window(
    block: np.ndarray,
    src_gbox: GeoBox,
    geobox: GeoBox,
    roi: ReprojectInfo,
    resampling: str,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray:
    """Put a source window onto the output grid: pasted when aligned, else warped.

    Shared by every reader: GeoTIFF/JPEG 2000 windows and Zarr arrays land the same way. Nearest
    and bilinear warps give every output pixel a value that depends only on its position, never on
    the tile (:mod:`cloudfree.readers.warp`); ``cubic``, ``average`` and output grids with rotation
    or shear are warped by GDAL, whose values can differ slightly between tiles.

    Parameters
    ----------
    block
        Source pixels of ``src_gbox[roi.roi_src]``.
    src_gbox
        The whole source grid.
    geobox
        The output grid.
    roi
        ``compute_reproject_roi(src_gbox, geobox, ...)``.
    resampling
        Resampling name for non-categorical data; categorical data always uses nearest.
    categorical
        Class data: uint8 output with 0 for nodata.
    src_nodata
        The source value meaning "no data".

    Returns
    -------
    numpy.ndarray
        float32 with NaN for nodata, or uint8 with 0, of ``geobox.shape``.

    """
    method = "nearest" if categorical else resampling
    if roi.paste_ok and roi.read_shrink == 1:
        return _paste(block, geobox, roi, categorical=categorical, src_nodata=src_nodata)
    if is_tile_invariant(geobox, method):
        return warp_window(
            block,
            src_gbox,
            _slices(roi.roi_src),
            geobox,
            method,
            categorical=categorical,
            src_nodata=src_nodata,
        )
    return _gdal_warp(
        block, src_gbox, geobox, roi, method, categorical=categorical, src_nodata=src_nodata
    )


def _slices(roi: tuple[NormalizedSlice, NormalizedSlice]) -> tuple[slice, slice]:
    """odc-geo's ``(rows, cols)`` ROI as plain slices."""
    rows, cols = roi
    return slice(rows.start, rows.stop), slice(cols.start, cols.stop)


def _empty(geobox: GeoBox, *, categorical: bool) -> np.ndarray:
    """An all-nodata output: uint8 zeros for classes, float32 NaN otherwise."""
    if categorical:
        return np.zeros(geobox.shape.yx, dtype=np.uint8)
    return np.full(geobox.shape.yx, np.nan, dtype=np.float32)


def _paste(
    block: np.ndarray,
    geobox: GeoBox,
    roi: ReprojectInfo,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray:
    """Copy a window of the same grid into place (exact)."""
    out = _empty(geobox, categorical=categorical)
    piece = block.astype(out.dtype)
    if not categorical:
        piece[block == src_nodata] = np.nan
    out[_slices(roi.roi_dst)] = piece
    return out


def _gdal_warp(
    block: np.ndarray,
    src_gbox: GeoBox,
    geobox: GeoBox,
    roi: ReprojectInfo,
    method: str,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray:
    """Warp with GDAL (``cubic``, ``average``, rotated grids): not tile-invariant.

    GDAL approximates the transform linearly between exactly transformed points of each chunk's
    rows (up to 0.125 px off; rasterio 1.4 does not pass ``tolerance`` on as GDAL's error
    threshold), so values depend on the window.
    """
    out = _empty(geobox, categorical=categorical)
    dst_nodata: float = 0 if categorical else np.nan
    dst_roi = _slices(roi.roi_dst)
    dst = np.ascontiguousarray(out[dst_roi])
    rio_reproject(
        block,
        dst,
        src_gbox[roi.roi_src],
        geobox[roi.roi_dst],
        Resampling[method],
        src_nodata=src_nodata,
        dst_nodata=dst_nodata,
    )
    out[dst_roi] = dst
    return out
