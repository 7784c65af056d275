"""Downsampling kernels and the level plan of a multiscale pyramid.

Kernels are plain numpy on one block of rows and never see xarray or zarr:

- :func:`block_mean` for reflectance: the mean of the valid DNs of each ``f`` x ``f`` block,
  rounded half to even, nodata where a block has none (nodata never drags a mean down);
- :func:`block_mode` for classes (SCL, masks): the most frequent valid class of each block, the
  smaller class on a tie, nodata where a block has none. Classes are never averaged.

Edge blocks that stick out of the array are partial: only the pixels that exist count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from cloudfree.errors import InvalidInputError

OVERVIEW_STEPS = (2, 3, 2)
"""Factors of the levels added below the product's coarsest group, as the EOPF Explorer's
converter adds them (60 m -> 120 m -> 360 m -> 720 m); further levels halve again."""
MIN_LEVEL_SIZE = 256
"""No level is added once the coarsest one fits in one 256 px web-map tile."""


def _padded_blocks(values: np.ndarray, factor: int, nodata: float) -> np.ndarray:
    """``values`` padded with ``nodata`` to whole blocks, viewed as ``(ny, f, nx, f)``."""
    ny, nx = (math.ceil(n / factor) for n in values.shape)
    if values.shape != (ny * factor, nx * factor):
        padded = np.full((ny * factor, nx * factor), nodata, dtype=values.dtype)
        padded[: values.shape[0], : values.shape[1]] = values
        values = padded
    return values.reshape(ny, factor, nx, factor)


def block_mean(values: np.ndarray, factor: int, nodata: float) -> np.ndarray:
    """Mean of the valid values of each ``factor`` x ``factor`` block, in the input dtype.

    Integers are rounded half to even; a block without a valid value is ``nodata``.
    """
    if factor == 1:
        return values
    blocks = _padded_blocks(values, factor, nodata)
    valid = blocks != nodata
    if np.issubdtype(values.dtype, np.floating):
        valid &= ~np.isnan(blocks)
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return np.where(count > 0, mean, nodata).astype(values.dtype)


def block_mode(values: np.ndarray, factor: int, nodata: int) -> np.ndarray:
    """Most frequent valid class of each block (smallest class on ties); ``nodata`` if none."""
    if factor == 1:
        return values
    blocks = _padded_blocks(values, factor, nodata)
    best = np.full(blocks.shape[::2], nodata, dtype=values.dtype)
    best_count = np.zeros(best.shape, dtype=np.int64)
    for cls in np.unique(blocks):
        if cls == nodata:
            continue
        count = (blocks == cls).sum(axis=(1, 3))
        better = count > best_count  # classes come in ascending order: ties keep the smaller
        best[better] = cls
        best_count[better] = count[better]
    return best


@dataclass(frozen=True)
class Level:
    """One level of a pyramid.

    Attributes
    ----------
    name
        Its group name (``r10m``, ``r120m``...).
    geobox
        Its grid.
    derived_from
        The level it is computed from (``None`` for the base level).
    factor
        Pixel size relative to ``derived_from`` (an integer).
    source_bands
        Bands the product itself holds at this level (copied, not recomputed).

    """

    name: str
    geobox: GeoBox
    derived_from: str | None
    factor: int
    source_bands: tuple[str, ...]


def level_name(metres: float) -> str:
    """``r10m``, ``r120m``: EOPF's resolution group names."""
    return f"r{round(metres)}m"


def downsampled(geobox: GeoBox, factor: int) -> GeoBox:
    """The grid ``factor`` times coarser: same origin, partial edge pixels kept."""
    ny, nx = geobox.shape.yx
    shape = (math.ceil(ny / factor), math.ceil(nx / factor))
    return GeoBox(shape, geobox.affine * Affine.scale(factor), geobox.crs)


def plan_levels(
    sources: list[tuple[GeoBox, tuple[str, ...]]], *, min_size: int = MIN_LEVEL_SIZE
) -> list[Level]:
    """The levels of one multiscale group: the product's own, then coarser ones.

    ``sources`` are the product's resolution groups (grid, bands), finest first. Product levels
    derive from the finest; added levels from the one before, by :data:`OVERVIEW_STEPS` then 2,
    until the coarsest fits ``min_size``.
    """
    base_geobox = sources[0][0]
    base_res = abs(base_geobox.affine.a)
    base = level_name(base_res)
    levels: list[Level] = []
    for geobox, bands in sources:
        res = abs(geobox.affine.a)
        factor = round(res / base_res)
        aligned = math.isclose(geobox.affine.c, base_geobox.affine.c) and math.isclose(
            geobox.affine.f, base_geobox.affine.f
        )
        if factor < 1 or not math.isclose(res, factor * base_res) or not aligned:
            raise InvalidInputError(
                f"Resolution group {level_name(res)} ({res} m, origin {geobox.affine.c}, "
                f"{geobox.affine.f}) is not an integer multiple of {base} aligned with it; "
                "it cannot be a level of one pyramid."
            )
        levels.append(Level(level_name(res), geobox, None if not levels else base, factor, bands))
    step = 0
    while max(levels[-1].geobox.shape.yx) > min_size:
        factor = OVERVIEW_STEPS[step] if step < len(OVERVIEW_STEPS) else 2
        previous = levels[-1]
        geobox = downsampled(previous.geobox, factor)
        res = abs(geobox.affine.a)
        levels.append(Level(level_name(res), geobox, previous.name, factor, ()))
        step += 1
    return levels
