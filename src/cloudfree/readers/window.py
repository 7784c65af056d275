"""The last step of every band read: a source window placed on the output grid."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo, compute_reproject_roi
from odc.geo.roi import roi_is_empty
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
    roi: ReprojectInfo | AlignedRead,
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
        Source pixels of :func:`source_window` ``(roi)``.
    src_gbox
        The whole source grid.
    geobox
        The output grid.
    roi
        ``compute_reproject_roi(src_gbox, geobox, ...)``, or an :class:`AlignedRead`
        (:func:`how_to_read` gives one or the other).
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
    roi: ReprojectInfo | AlignedRead,
    resampling: str,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray | Pasted:
    """:func:`place_window`, except that a window on the output's own grid is not copied.

    An :class:`AlignedRead` is pasted or repeated (:meth:`AlignedRead.place`); a window odc-geo
    calls paste-able comes back as :class:`Pasted` too (source type, where it goes); anything
    else is warped.
    """
    if isinstance(roi, AlignedRead):
        return roi.place(block, geobox, categorical=categorical, src_nodata=src_nodata)
    method = "nearest" if categorical else resampling
    if roi.paste_ok and roi.read_shrink == 1:
        rows, cols = _slices(roi.roi_dst)
        return Pasted(block, rows, cols, src_nodata)
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


def how_to_read(
    src_gbox: GeoBox, geobox: GeoBox, method: str
) -> AlignedRead | ReprojectInfo | None:
    """How to read ``geobox`` from ``src_gbox``; ``None`` where they do not overlap.

    An :class:`AlignedRead` where the output lies on the source's pixel lattice, else odc-geo's
    window padded for the warp's neighbours (:func:`padded_roi`). ``method``: the resampling
    (``"nearest"`` for classes). Both are cached by grids: the dates and bands of a tile ask
    odc-geo nothing new.
    """
    aligned = aligned_read(src_gbox, geobox, method)
    if aligned is not None:
        return None if aligned.window is None else aligned
    roi = padded_roi(src_gbox, geobox)
    return None if roi_is_empty(roi.roi_dst) or roi_is_empty(roi.roi_src) else roi


def source_window(how: AlignedRead | ReprojectInfo) -> tuple[slice, slice]:
    """The source rows and columns a read of :func:`how_to_read` takes."""
    if isinstance(how, AlignedRead):
        if how.window is None:
            raise ValueError("the output does not overlap the source: nothing to read")
        return how.window
    return _slices(how.roi_src)


@dataclass(frozen=True)
class AlignedRead:
    """A read whose output pixels lie on the source's own pixel lattice, worked out in integers.

    Same CRS, no rotation, source pixel sides whole multiples of the output's (1 for a 10 m band
    on a 10 m grid, 2 for the 20 m SCL) and the output's origin on the lattice; nearest, or
    bilinear at the same pixel size: every output pixel is one source pixel, pasted or repeated.
    That is the warp's result: nearest and bilinear (:mod:`cloudfree.readers.warp`) sample
    exactly at source pixel centres at the same pixel size, and at whole factors the centre of
    every output pixel lies at least a quarter of a source pixel inside the source pixel nearest
    picks (20 m SCL onto a 10 m grid). odc-geo's read window is padded for a warp's neighbours;
    this one holds exactly the source pixels under the output, so GDAL decodes no extra row and
    column of blocks around a tile (2.25x the blocks of a 1024 px tile in 256 px blocks).
    """

    window: tuple[slice, slice] | None
    """Source rows and columns to read; ``None``: the output does not overlap the source."""
    factors: tuple[int, int, int, int]
    """``(fy, fx, oy, ox)``: output pixel ``(i, j)`` is window pixel
    ``((oy + i) // fy, (ox + j) // fx)``."""

    def place(
        self, block: np.ndarray, geobox: GeoBox, *, categorical: bool, src_nodata: float
    ) -> np.ndarray | Pasted:
        """The window read (``block``) on ``geobox``, as :func:`place_window_raw` gives it."""
        return _placed(block, geobox, self.factors, categorical, src_nodata)


def _lattice_factors(
    src_gbox: GeoBox, geobox: GeoBox, method: str
) -> tuple[int, int, int, int] | None:
    """:func:`_upsampling_factors`, where ``method`` repeats source pixels.

    Nearest at any whole factor; bilinear only at the source's own pixel size.
    """
    if method not in ("nearest", "bilinear"):
        return None
    factors = _upsampling_factors(src_gbox, geobox)
    if factors is None or (method == "bilinear" and factors[:2] != (1, 1)):
        return None
    return factors


def _placed(
    block: np.ndarray,
    geobox: GeoBox,
    factors: tuple[int, int, int, int],
    categorical: bool,
    src_nodata: float,
) -> np.ndarray | Pasted:
    """A window on the output's lattice (``factors`` as :class:`AlignedRead` has them) placed."""
    fy, fx, oy, ox = factors
    if (fy, fx) == (1, 1):
        return _pasted(block, geobox, oy, ox, src_nodata)
    return _upsample(block, geobox, factors, categorical, src_nodata)


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


@cached_by_grids
def padded_roi(src_gbox: GeoBox, geobox: GeoBox) -> ReprojectInfo:
    """odc-geo's read window of ``src_gbox`` for ``geobox``, padded for the warp's neighbours.

    Cached (:func:`cached_by_grids`): the scenes of one tile grid share their grids, so every
    date and band of a tile asks for the same few windows.
    """
    return compute_reproject_roi(src_gbox, geobox, padding=2)


@cached_by_grids
def aligned_read(src_gbox: GeoBox, geobox: GeoBox, method: str) -> AlignedRead | None:
    """How to read ``geobox`` from ``src_gbox`` without a warp; ``None`` if it needs one.

    ``method``: the resampling (``"nearest"`` for classes). Cached by grids
    (:func:`cached_by_grids`): the dates and bands of a tile ask odc-geo nothing.
    """
    factors = _lattice_factors(src_gbox, geobox, method)
    if factors is None:
        return None
    fy, fx, oy, ox = factors
    sy, sx = src_gbox.shape.yx
    ny, nx = geobox.shape.yx
    # the output pixels over the source: (o + i) // f in [0, size)
    y0, x0 = max(0, -oy), max(0, -ox)
    y1, x1 = min(ny, sy * fy - oy), min(nx, sx * fx - ox)
    if y1 <= y0 or x1 <= x0:
        return AlignedRead(None, factors)
    first_row, first_col = (oy + y0) // fy, (ox + x0) // fx
    rows = slice(first_row, (oy + y1 - 1) // fy + 1)
    cols = slice(first_col, (ox + x1 - 1) // fx + 1)
    return AlignedRead((rows, cols), (fy, fx, oy - first_row * fy, ox - first_col * fx))


def _upsampling_factors(src_gbox: GeoBox, geobox: GeoBox) -> tuple[int, int, int, int] | None:
    """``(fy, fx, oy, ox)`` when output pixels subdivide the source's pixels exactly.

    Same CRS, no rotation, source pixel sides whole multiples (``fy``, ``fx`` >= 1) of the
    output's with the same signs, and the output grid's origin on the fine lattice anchored at
    the source's top-left corner (``oy``, ``ox``: the output origin's offset on it, in output
    pixels). Anything else returns ``None`` and is warped.
    """
    if src_gbox.crs != geobox.crs or src_gbox.crs is None:
        return None
    src = src_gbox.affine
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
