"""A COG's reduced-resolution levels, computed tile by tile as GDAL's COG driver would.

GDAL's ``AVERAGE`` overviews of an integer image with nodata are made level from level: each
pixel of a level is the mean of the valid pixels of the 2 x 2 block under it in the level
before, rounded half away from zero, or nodata where none is valid (checked against GDAL 3.10 on
random data with negatives and nodata, in ``tests/test_cog_overviews.py``). Where the image and
its tiles divide evenly by the coarsest factor, every tile's levels are its own: they are
computed while the tile is staged, and the COG driver copies them instead of reading the whole
image once more to make them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numba
import numpy as np


def overview_factors(shape_yx: tuple[int, int], blocksize: int) -> list[int]:
    """The decimation factors of the levels GDAL's COG driver makes.

    2, 4, ... until one block holds the whole level.
    """
    ny, nx = shape_yx
    factors: list[int] = []
    factor = 1
    while -(-ny // factor) > blocksize or -(-nx // factor) > blocksize:
        factor *= 2
        factors.append(factor)
    return factors


def tiles_divide(
    shape_yx: tuple[int, int], tiles: Iterable[tuple[slice, slice]], factor: int
) -> bool:
    """Whether the image and every tile's bounds divide by ``factor``.

    The tiles' levels are then exactly the image's.
    """
    if any(side % factor for side in shape_yx):
        return False
    return all(
        edge % factor == 0 for ys, xs in tiles for edge in (ys.start, ys.stop, xs.start, xs.stop)
    )


def tile_levels(block: np.ndarray, nodata: int, count: int) -> list[np.ndarray]:
    """``count`` successive 2 x 2 averages of ``(band, y, x)`` ``block`` (even at every level)."""
    levels = []
    for _ in range(count):
        nb, ny, nx = block.shape
        half = np.empty((nb, ny // 2, nx // 2), dtype=block.dtype)
        _halve(block, nodata, half)
        levels.append(half)
        block = half
    return levels


@numba.njit(cache=True, nogil=True)
def _halve(block: np.ndarray, nodata: int, out: np.ndarray) -> None:
    """Mean of the valid pixels of each 2 x 2 block, rounded half away from zero (GDAL's)."""
    nb, ny, nx = out.shape
    for b in range(nb):
        for y in range(ny):
            top = block[b, 2 * y]
            bottom = block[b, 2 * y + 1]
            for x in range(nx):
                total = 0
                count = 0
                for v in (top[2 * x], top[2 * x + 1], bottom[2 * x], bottom[2 * x + 1]):
                    if v != nodata:
                        total += v
                        count += 1
                if count == 0:
                    out[b, y, x] = nodata
                elif total >= 0:
                    out[b, y, x] = (2 * total + count) // (2 * count)
                else:
                    out[b, y, x] = -((-2 * total + count) // (2 * count))
