"""The last step of every band read: a source window placed on the output grid."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo
from odc.geo.types import NormalizedSlice
from odc.geo.warp import rio_reproject
from rasterio.enums import Resampling

from cloudfree.readers.encode import classes_into, upsample_into
from cloudfree.readers.warp import is_tile_invariant, warp_window


@dataclass(frozen=True)
class Pasted:
    """A source window that lands on the output grid pixel for pixel: no resampling needed.

    The loader converts ``block`` straight into its place in the stack; :meth:`materialise`
    gives what :func:`place_window` returns.
    """

    block: np.ndarray
    """Source pixels, in the source's type."""
    rows: slice
    """Where ``block`` goes on the output grid."""
    cols: slice
    src_nodata: float
    """The source value meaning "no data"."""

    def covers(self, shape: tuple[int, ...]) -> bool:
        """Whether the block fills the whole output of ``(y, x)`` ``shape``."""
        ny, nx = shape
        return (self.rows.start, self.rows.stop, self.cols.start, self.cols.stop) == (0, ny, 0, nx)

    def materialise(self, geobox: GeoBox, *, categorical: bool) -> np.ndarray:
        """float32 with NaN for nodata (uint8 with 0 when ``categorical``) of ``geobox.shape``."""
        out = _empty(geobox, categorical=categorical)
        piece = self.block.astype(out.dtype)
        if categorical:  # as pasted before: the class values as they are
            out[self.rows, self.cols] = piece
            return out
        piece[self.block == self.src_nodata] = np.nan
        out[self.rows, self.cols] = piece
        return out


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
    placed = place_window_raw(
        block, src_gbox, geobox, roi, resampling, categorical=categorical, src_nodata=src_nodata
    )
    if isinstance(placed, Pasted):
        return placed.materialise(geobox, categorical=categorical)
    return placed


def place_window_raw(
    block: np.ndarray,
    src_gbox: GeoBox,
    geobox: GeoBox,
    roi: ReprojectInfo,
    resampling: str,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray | Pasted:
    """:func:`place_window`, except that a window on the output's own grid is not copied.

    Windows whose pixels map one to one onto output pixels (same CRS and pixel size, whole-pixel
    offset) come back as :class:`Pasted` (source type, where they go) for nearest and bilinear,
    whose warp (:mod:`cloudfree.readers.warp`) samples exactly at source pixel centres there and
    so returns the pixels themselves. Nearest upsampling by whole factors on the same CRS (20 m
    SCL onto a 10 m grid) is a repeat of each source pixel, computed as such: the centre of every
    output pixel lies at least a quarter of a source pixel inside the source pixel the warp would
    pick, so the result is the warp's.
    """
    method = "nearest" if categorical else resampling
    if roi.paste_ok and roi.read_shrink == 1:
        rows, cols = _slices(roi.roi_dst)
        return Pasted(block, rows, cols, src_nodata)
    # odc-geo does not call a padded window paste-able: look for the same grid ourselves
    factors = _whole_upsampling(src_gbox, geobox, roi)
    if factors is not None and factors[:2] == (1, 1) and method in ("nearest", "bilinear"):
        return _pasted(block, geobox, factors[2], factors[3], src_nodata)
    if factors is not None and method == "nearest":
        return _upsample(block, geobox, roi, factors, categorical, src_nodata)
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


def tight_window(
    src_gbox: GeoBox, geobox: GeoBox, roi: ReprojectInfo, resampling: str, *, categorical: bool
) -> ReprojectInfo:
    """``roi`` with its source window cut to the pixels a paste or a whole-factor upsampling uses.

    odc-geo pads every window (by 2 pixels here) for the warp's neighbours; a window that is
    pasted or repeated needs none, and the padding would make GDAL decode a whole extra row and
    column of COG blocks on every side of a tile (2.25x the blocks of a 1024 px tile in 256 px
    blocks). Other windows are returned unchanged.
    """
    method = "nearest" if categorical else resampling
    factors = _whole_upsampling(src_gbox, geobox, roi)
    if roi.paste_ok or factors is None:
        return roi
    fy, fx, oy, ox = factors
    if not (method == "nearest" or ((fy, fx) == (1, 1) and method == "bilinear")):
        return roi
    rows, cols = _slices(roi.roi_src)
    ny, nx = geobox.shape.yx
    y0, x0 = max(0, -oy), max(0, -ox)
    y1 = min(ny, (rows.stop - rows.start) * fy - oy)
    x1 = min(nx, (cols.stop - cols.start) * fx - ox)
    if y1 <= y0 or x1 <= x0:
        return roi
    first_row, last_row = (oy + y0) // fy, (oy + y1 - 1) // fy
    first_col, last_col = (ox + x0) // fx, (ox + x1 - 1) // fx
    return replace(
        roi,
        roi_src=(
            slice(rows.start + first_row, rows.start + last_row + 1),
            slice(cols.start + first_col, cols.start + last_col + 1),
        ),
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


P = ParamSpec("P")
R = TypeVar("R")


def cached_by_grids(
    function: Callable[Concatenate[GeoBox, GeoBox, P], R],
) -> Callable[Concatenate[GeoBox, GeoBox, P], R]:
    """Memoise a function of two grids (and hashable arguments) by what the grids are.

    A GeoBox's own hash goes through pyproj's WKT of its CRS, slower than most of what is
    cached here; the key is the grid's shape, affine and CRS string instead. The scenes of one
    tile grid share their grids, so every date and band of a tile asks the same questions.
    """
    cache: dict[Hashable, R] = {}

    @wraps(function)
    def cached(src: GeoBox, dst: GeoBox, *args: P.args, **kwargs: P.kwargs) -> R:
        key = (_grid_key(src), _grid_key(dst), args, tuple(sorted(kwargs.items())))
        try:
            return cache[key]
        except KeyError:
            pass
        value = function(src, dst, *args, **kwargs)
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = value
        return value

    return cached


def _grid_key(gbox: GeoBox) -> Hashable:
    return gbox.shape.yx, tuple(gbox.affine)[:6], str(gbox.crs)


def _whole_upsampling(
    src_gbox: GeoBox, geobox: GeoBox, roi: ReprojectInfo
) -> tuple[int, int, int, int] | None:
    """``(fy, fx, oy, ox)`` when output pixels subdivide the window's pixels exactly.

    Same CRS, no rotation, source pixel sides whole multiples (``fy``, ``fx`` >= 1) of the
    output's with the same signs, and the output grid's origin on the fine lattice anchored at
    the window's top-left corner (``oy``, ``ox``: the output origin's offset on it, in output
    pixels). Anything else returns ``None`` and is warped.
    """
    rows, cols = roi.roi_src
    return _upsampling_factors(src_gbox, geobox, rows.start, cols.start)


@cached_by_grids
def _upsampling_factors(
    src_gbox: GeoBox, geobox: GeoBox, row: int, col: int
) -> tuple[int, int, int, int] | None:
    """:func:`_whole_upsampling` of the window whose top-left pixel is ``(row, col)``.

    Cached (:func:`cached_by_grids`).
    """
    if src_gbox.crs != geobox.crs or src_gbox.crs is None:
        return None
    src = src_gbox.affine * Affine.translation(col, row)
    dst = geobox.affine
    if src.b or src.d or dst.b or dst.d or src.a * dst.a <= 0 or src.e * dst.e <= 0:
        return None
    fx = src.a / dst.a
    fy = src.e / dst.e
    if not (fx >= 1 and fy >= 1 and fx == round(fx) and fy == round(fy)):
        return None
    ox = (dst.c - src.c) / dst.a
    oy = (dst.f - src.f) / dst.e
    # the origin must sit on the lattice (up to binary round-off of the affines)
    if abs(ox - round(ox)) > 1e-6 or abs(oy - round(oy)) > 1e-6:
        return None
    return round(fy), round(fx), round(oy), round(ox)


def _pasted(block: np.ndarray, geobox: GeoBox, oy: int, ox: int, src_nodata: float) -> Pasted:
    """The part of a window on the output's own grid that covers it, and where it goes.

    Output pixel ``(i, j)`` is window pixel ``(oy + i, ox + j)``.
    """
    ny, nx = geobox.shape.yx
    y0, x0 = max(0, -oy), max(0, -ox)
    y1 = max(y0, min(ny, block.shape[0] - oy))
    x1 = max(x0, min(nx, block.shape[1] - ox))
    piece = block[oy + y0 : oy + y1, ox + x0 : ox + x1]
    return Pasted(piece, slice(y0, y1), slice(x0, x1), src_nodata)


def _upsample(
    block: np.ndarray,
    geobox: GeoBox,
    roi: ReprojectInfo,
    factors: tuple[int, int, int, int],
    categorical: bool,
    src_nodata: float,
) -> np.ndarray:
    """Nearest upsampling of the window by whole factors onto the output pixels it covers."""
    fy, fx, oy, ox = factors
    ny, nx = geobox.shape.yx
    # output rows/cols whose centres fall inside the window: (o + i + 0.5) / f in [0, size)
    y0 = max(0, -oy)
    x0 = max(0, -ox)
    y1 = min(ny, block.shape[0] * fy - oy)
    x1 = min(nx, block.shape[1] * fx - ox)
    out = _empty(geobox, categorical=categorical)
    if y1 <= y0 or x1 <= x0:
        return out
    if categorical:  # classes on the source pixels, then spread straight into place
        classes = np.empty(block.shape, dtype=np.uint8)
        classes_into(block, src_nodata, classes)
        upsample_into(classes, fy, fx, oy + y0, ox + x0, out[y0:y1, x0:x1])
        return out
    piece = np.empty((y1 - y0, x1 - x0), dtype=block.dtype)
    upsample_into(block, fy, fx, oy + y0, ox + x0, piece)
    values = piece.astype(np.float32)
    values[piece == src_nodata] = np.nan
    out[y0:y1, x0:x1] = values
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
