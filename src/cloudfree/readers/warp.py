"""A tile-invariant warp of a source window onto an output grid (nearest and bilinear).

A mosaic must not depend on how its grid is cut into tiles: an output pixel has to get the same
value whether it is read as part of a 256 or a 2048 pixel tile. GDAL's warper does not promise
that: its approximate transformer computes source coordinates exactly only at the ends of each
output row of the chunk it is handed and interpolates linearly in between (splitting the row when
the error at its middle exceeds 0.125 px), so a pixel's coordinates depend on the extent of its
row in that tile (measured: a parabola along each row, up to 0.006 px off on 700 px rows between
UTM zones; up to 4 DN on noisy data, and 1-2% of mosaic pixels changed between 128 and 512 pixel
tiles). This module computes every output pixel from its *global* position only:

1. **A lattice independent of the tile.** An output pixel ``j`` of a tile whose affine has origin
   ``c`` and step ``a`` has the global index ``J = j + floor(c / a)`` on the lattice of the output
   CRS (rows likewise with ``f`` and ``e``), and the lattice's sub-pixel phase
   ``c / a - floor(c / a)`` is rounded to ``1e-6`` pixel, so that the last-bit differences between
   the affines of different tiles of one grid (odc-geo derives them by affine arithmetic) vanish.
   The pixel centre is then ``x = (J + 0.5 + phase) * a``: the same floats in every tile.
2. **Exact coordinates at nodes, interpolated between them.** Source coordinates are computed
   exactly (:class:`pyproj.Transformer`) at the nodes ``J % 16 == 0, I % 16 == 0`` of that
   lattice and interpolated bilinearly in between; the interpolation error is below ``1e-3``
   source pixels (measured: at most ``3e-5``) for neighbouring UTM zones, UTM -> EPSG:2157,
   EPSG:4326 at 0.0001 degree and EPSG:3857 (``tests/test_warp.py``). Interpolating from
   identical nodes with identical weights gives identical floats whatever tile a pixel is in.
3. **The whole raster's pixel frame.** Source coordinates are pixel coordinates of the whole
   source raster (the file or overview level), never of the window that was read; the integer
   window offset is subtracted only when indexing, so the same output pixel samples the same source
   pixels with the same weights whatever window was read.
4. **A numba kernel** samples each output pixel independently (parallel over rows, so the thread
   count cannot change results), with GDAL's conventions. An output pixel has no value when the
   source pixel containing its centre's coordinate is outside the raster or nodata (for both
   methods, as GDAL's warp kernel does). ``nearest`` takes that pixel's value; ``bilinear`` weighs
   the four source pixel centres around the coordinate (pixel centres at ``+0.5``), drops
   neighbours that are nodata or outside the raster and renormalises the remaining weights. (The
   containing pixel always carries at least a quarter of the weight, so GDAL's rule that less
   than ``1e-5`` of valid weight gives no value never applies.)

A neighbour inside the raster but outside the window that was read would make the result depend
on the window; the kernel counts such pixels and :func:`warp_window` raises :class:`ReadError`
instead of returning a tile-dependent value (the readers pad their windows by 2 source pixels,
which the tests check is enough).

Not tile-invariant, and left to GDAL (:func:`odc.geo.warp.rio_reproject`):

* ``cubic`` and ``average`` resampling: their kernels (a 4 x 4 cubic; an average over each output
  pixel's footprint) are not reimplemented here, and GDAL computes their source coordinates with
  the approximate transformer above, per window, so their values can differ slightly between
  tiles;
* output grids with rotation or shear, which have no per-axis lattice.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numba
import numpy as np
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from cloudfree.errors import ReadError
from cloudfree.parallel import KERNEL_LOCK

__all__ = [
    "NODE_SPACING",
    "TILE_INVARIANT_RESAMPLING",
    "NodeGrid",
    "is_tile_invariant",
    "node_grid",
    "source_coordinates",
    "warp_window",
]

NODE_SPACING = 16
"""Output pixels between two nodes where source coordinates are computed exactly."""

PHASE_DECIMALS = 6
"""Decimals of a pixel kept of the output lattice's sub-pixel phase (``1e-6`` pixel)."""

TILE_INVARIANT_RESAMPLING = ("nearest", "bilinear")
"""Resampling methods this module implements; others are left to GDAL."""

Window = tuple[slice, slice]


@dataclass(frozen=True)
class NodeGrid:
    """Exact source pixel coordinates at the lattice nodes covering one output tile."""

    u: np.ndarray
    """Source column coordinate (whole-raster frame, pixel ``i`` spans ``[i, i + 1)``) per node."""
    v: np.ndarray
    """Source row coordinate per node, like ``u``."""
    row_offset: int
    """Global row of the tile's first row minus that of the first node row (``0..15``)."""
    col_offset: int
    """Global column of the tile's first column minus that of the first node column."""


def is_tile_invariant(geobox: GeoBox, resampling: str) -> bool:
    """Whether :func:`warp_window` handles this output grid and resampling.

    Parameters
    ----------
    geobox
        The output grid: it must have neither rotation nor shear.
    resampling
        ``"nearest"`` or ``"bilinear"``.

    Returns
    -------
    bool
        ``True`` when the warp is tile-invariant; otherwise the caller should use GDAL.

    """
    affine = geobox.affine
    return resampling in TILE_INVARIANT_RESAMPLING and affine.b == 0 and affine.d == 0


def warp_window(
    block: np.ndarray,
    src_gbox: GeoBox,
    window: Window,
    geobox: GeoBox,
    resampling: str,
    *,
    categorical: bool,
    src_nodata: float,
) -> np.ndarray:
    """Warp a source window onto ``geobox``, each pixel's value depending only on its position.

    Parameters
    ----------
    block
        Source pixels of ``src_gbox[window]``.
    src_gbox
        The whole source grid (file or overview level) the window was read from.
    window
        The ``(rows, cols)`` slices of ``src_gbox`` that ``block`` holds.
    geobox
        The output grid; rotation-free (see :func:`is_tile_invariant`).
    resampling
        ``"nearest"`` or ``"bilinear"``.
    categorical
        Class data: uint8 output with 0 for nodata (use ``"nearest"``).
    src_nodata
        The source value meaning "no data" (NaN source values are nodata too).

    Returns
    -------
    numpy.ndarray
        float32 with NaN for nodata, or uint8 with 0 when ``categorical``, of ``geobox.shape``.

    Raises
    ------
    ReadError
        If a needed source pixel lies inside the raster but outside ``window``: the window was
        computed too tight, and using it would make the result depend on the tile.

    """
    if not is_tile_invariant(geobox, resampling):
        raise ValueError(
            f"warp_window handles rotation-free output grids with nearest or bilinear "
            f"resampling, not {resampling!r} on {geobox.affine!r}; use GDAL for those."
        )
    rows, cols = window
    if block.shape != (rows.stop - rows.start, cols.stop - cols.start):
        raise ValueError(f"A block of shape {block.shape} does not match the window {window}.")
    nodes = node_grid(src_gbox, geobox)
    height, width = src_gbox.shape.yx
    if categorical:
        out = np.zeros(geobox.shape.yx, dtype=np.uint8)
    else:
        out = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
    with KERNEL_LOCK:
        missing = _resample(
            np.ascontiguousarray(block),
            float(src_nodata),
            rows.start,
            cols.start,
            height,
            width,
            nodes.u,
            nodes.v,
            nodes.row_offset,
            nodes.col_offset,
            resampling == "bilinear",
            out,
        )
    if missing:
        raise ReadError(
            f"{missing} output pixels of {geobox!r} need source pixels outside the window "
            f"{window} read from a {height} x {width} raster; results would depend on the tile. "
            "This is a bug in the window computation: please report it (a larger padding in "
            "compute_reproject_roi avoids it)."
        )
    return out


def node_grid(src_gbox: GeoBox, geobox: GeoBox) -> NodeGrid:
    """Exact source pixel coordinates at the output lattice nodes covering ``geobox``.

    Parameters
    ----------
    src_gbox
        The whole source grid; coordinates are in its pixel frame.
    geobox
        The output tile; rotation-free.

    Returns
    -------
    NodeGrid
        Nodes from the last node at or before the tile's first pixel to past its last pixel.

    """
    ny, nx = geobox.shape.yx
    affine = geobox.affine
    row0, row_phase = lattice_origin(affine.f, affine.e)
    col0, col_phase = lattice_origin(affine.c, affine.a)
    node_rows, row_offset = _node_indices(row0, ny)
    node_cols, col_offset = _node_indices(col0, nx)
    y = (node_rows + 0.5 + row_phase) * affine.e
    x = (node_cols + 0.5 + col_phase) * affine.a
    xx, yy = np.meshgrid(x, y)
    if src_gbox.crs != geobox.crs:
        if src_gbox.crs is None or geobox.crs is None:
            raise ValueError(
                f"Cannot warp between a grid with a CRS and one without: {src_gbox!r} and "
                f"{geobox!r}; give both grids a CRS."
            )
        xx, yy = _transformer(geobox.crs, src_gbox.crs).transform(xx, yy)
    inverse = ~src_gbox.affine
    u = inverse.a * xx + inverse.b * yy + inverse.c
    v = inverse.d * xx + inverse.e * yy + inverse.f
    return NodeGrid(np.ascontiguousarray(u), np.ascontiguousarray(v), row_offset, col_offset)


def lattice_origin(origin: float, step: float) -> tuple[int, float]:
    """Global lattice index of a tile's first pixel and the lattice's sub-pixel phase.

    The phase is rounded to ``1e-6`` pixel and normalised to ``[0, 1)`` *after* rounding, so
    that tiles of one grid, whose origins differ from exact multiples of ``step`` by a few ulps,
    all get the same phase and consistent indices.

    Parameters
    ----------
    origin
        The tile affine's offset (``c`` for columns, ``f`` for rows).
    step
        The tile affine's pixel step (``a`` or ``e``, possibly negative).

    Returns
    -------
    tuple of int and float
        ``(index, phase)`` with ``origin == (index + phase) * step`` to ``1e-6`` pixel.

    """
    position = origin / step
    index = math.floor(position)
    phase = round(position - index, PHASE_DECIMALS)
    if phase >= 1.0:
        return index + 1, 0.0
    return index, phase


def source_coordinates(src_gbox: GeoBox, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel coordinates of every output pixel centre, as :func:`warp_window` samples.

    Parameters
    ----------
    src_gbox
        The whole source grid.
    geobox
        The output tile; rotation-free.

    Returns
    -------
    tuple of numpy.ndarray
        ``(u, v)``: float64 column and row coordinates in the whole source raster's pixel frame.

    """
    nodes = node_grid(src_gbox, geobox)
    u = np.empty(geobox.shape.yx, dtype=np.float64)
    v = np.empty(geobox.shape.yx, dtype=np.float64)
    with KERNEL_LOCK:
        _fill_coordinates(nodes.u, nodes.v, nodes.row_offset, nodes.col_offset, u, v)
    return u, v


def _node_indices(first: int, size: int) -> tuple[np.ndarray, int]:
    """Global lattice indices of the nodes covering ``size`` pixels from index ``first``.

    One node past the last pixel is included so every pixel has a node on both sides.
    """
    start = (first // NODE_SPACING) * NODE_SPACING
    count = (first + size - 1 - start) // NODE_SPACING + 2
    indices = start + NODE_SPACING * np.arange(count, dtype=np.int64)
    return indices.astype(np.float64), first - start


_local = threading.local()


def _transformer(src: CRS, dst: CRS) -> Transformer:
    """A ``src -> dst`` transformer (x/y order), cached per thread: they are not thread-safe."""
    cache: dict[tuple[CRS, CRS], Transformer] | None = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (src, dst)
    if key not in cache:
        cache[key] = Transformer.from_crs(src.proj, dst.proj, always_xy=True)
    return cache[key]


@numba.njit(cache=True)
def _node_row(nodes: np.ndarray, row: int, row_offset: int) -> np.ndarray:
    """Node values interpolated between node rows to one output row of the tile."""
    r = row + row_offset
    node = r // NODE_SPACING
    t = (r - node * NODE_SPACING) / NODE_SPACING
    out = np.empty(nodes.shape[1], dtype=np.float64)
    for k in range(nodes.shape[1]):
        out[k] = nodes[node, k] + t * (nodes[node + 1, k] - nodes[node, k])
    return out


@numba.njit(inline="always", cache=True)
def _along_row(row_nodes: np.ndarray, col: int, col_offset: int) -> float:
    """A row of node values (:func:`_node_row`) interpolated to one output column."""
    c = col + col_offset
    node = c // NODE_SPACING
    t = (c - node * NODE_SPACING) / NODE_SPACING
    left = row_nodes[node]
    return left + t * (row_nodes[node + 1] - left)


@numba.njit(parallel=True, cache=True)
def _fill_coordinates(
    node_u: np.ndarray,
    node_v: np.ndarray,
    row_offset: int,
    col_offset: int,
    u: np.ndarray,
    v: np.ndarray,
) -> None:
    ny, nx = u.shape
    for i in numba.prange(ny):
        row_u = _node_row(node_u, i, row_offset)
        row_v = _node_row(node_v, i, row_offset)
        for j in range(nx):
            u[i, j] = _along_row(row_u, j, col_offset)
            v[i, j] = _along_row(row_v, j, col_offset)


@numba.njit(parallel=True, cache=True)
def _resample(
    block: np.ndarray,
    nodata: float,
    row0: int,
    col0: int,
    height: int,
    width: int,
    node_u: np.ndarray,
    node_v: np.ndarray,
    row_offset: int,
    col_offset: int,
    bilinear: bool,
    out: np.ndarray,
) -> int:
    """Nearest or GDAL's 2 x 2 bilinear; returns pixels that needed a source pixel off the block.

    Nearest takes the source pixel containing the coordinate; bilinear drops nodata neighbours
    and renormalises the remaining weights.
    """
    ny, nx = out.shape
    bh, bw = block.shape
    missing = np.zeros(ny, dtype=np.int64)
    for i in numba.prange(ny):
        row_u = _node_row(node_u, i, row_offset)
        row_v = _node_row(node_v, i, row_offset)
        row_missing = 0
        for j in range(nx):
            u = _along_row(row_u, j, col_offset)
            v = _along_row(row_v, j, col_offset)
            if not (0.0 <= u < width and 0.0 <= v < height):
                continue
            br = math.floor(v) - row0
            bc = math.floor(u) - col0
            if not (0 <= br < bh and 0 <= bc < bw):
                row_missing += 1
                continue
            # the pixel containing the centre: the nearest value, and GDAL's bilinear gives no
            # value where it is nodata
            centre = block[br, bc]
            if centre == nodata or centre != centre:
                continue
            if not bilinear:
                out[i, j] = centre
                continue
            value, outside = _bilinear_sample(
                block, nodata, row0, col0, height, width, u - 0.5, v - 0.5
            )
            row_missing += outside
            out[i, j] = value
        missing[i] = row_missing
    return missing.sum()


@numba.njit(inline="always", cache=True)
def _bilinear_sample(
    block: np.ndarray,
    nodata: float,
    row0: int,
    col0: int,
    height: int,
    width: int,
    x: float,
    y: float,
) -> tuple[float, int]:
    """``(value, outside)`` at pixel-centre coordinates ``x, y`` of the whole raster.

    The caller checked that the pixel containing the point is valid: it carries at least a quarter
    of the weight, so the valid weight never falls below GDAL's ``1e-5`` minimum.

    Both paths add the same products in the same order, so a pixel gets the same floats whether
    or not its neighbours are all inside the block.
    """
    left = math.floor(x)
    top = math.floor(y)
    fx = x - left
    fy = y - top
    br = top - row0
    bc = left - col0
    bh, bw = block.shape
    if br >= 0 and br + 1 < bh and bc >= 0 and bc + 1 < bw:
        v00 = float(block[br, bc])
        v01 = float(block[br, bc + 1])
        v10 = float(block[br + 1, bc])
        v11 = float(block[br + 1, bc + 1])
        if not (
            v00 == nodata
            or v01 == nodata
            or v10 == nodata
            or v11 == nodata
            or v00 != v00
            or v01 != v01
            or v10 != v10
            or v11 != v11
        ):
            w00 = (1.0 - fy) * (1.0 - fx)
            w01 = (1.0 - fy) * fx
            w10 = fy * (1.0 - fx)
            w11 = fy * fx
            weight = w00 + w01 + w10 + w11
            return (w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11) / weight, 0
    total = 0.0
    weight = 0.0
    outside = 0
    for dr in range(2):
        row = top + dr
        wy = fy if dr else 1.0 - fy
        for dc in range(2):
            col = left + dc
            w = wy * (fx if dc else 1.0 - fx)
            if w <= 0.0 or not (0 <= row < height and 0 <= col < width):
                continue
            if not (0 <= row - row0 < bh and 0 <= col - col0 < bw):
                outside = 1
                continue
            value = float(block[row - row0, col - col0])
            if value == nodata or value != value:
                continue
            total += w * value
            weight += w
    return total / weight, outside
