"""The last step of every band read: a source window placed on the output grid."""

from __future__ import annotations

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo
from odc.geo.warp import rio_reproject
from rasterio.enums import Resampling


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
    """Put a source window onto the output grid: pasted when aligned, else warped with GDAL.

    Shared by every reader: GeoTIFF/JPEG 2000 windows and Zarr arrays land the same way.

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
    ny, nx = geobox.shape.yx
    dy, dx = roi.roi_dst
    dst_roi = (slice(dy.start, dy.stop), slice(dx.start, dx.stop))
    out: np.ndarray
    if categorical:
        out = np.zeros((ny, nx), dtype=np.uint8)
        dst_nodata: float = 0
        method = "nearest"
    else:
        out = np.full((ny, nx), np.nan, dtype=np.float32)
        dst_nodata = np.nan
        method = resampling
    if roi.paste_ok and roi.read_shrink == 1:
        piece = block.astype(out.dtype)
        if not categorical:
            piece[block == src_nodata] = np.nan
        out[dst_roi] = piece
        return out
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
