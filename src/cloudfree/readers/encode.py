"""Source DNs to the stack's int16 reflectance in one pass, written where they belong.

The arithmetic is :func:`cloudfree.load.to_reflectance`'s, in the same float32 operations and
order (``rint(dn * factor + shift)``, clipped, nodata for missing), so the values are identical;
what changes is that a pasted window goes from the decoded integers straight into its place in
the stack: no float32 copy of the tile, no NaN pass, no temporary int16 tile.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def reflectance_into(
    block: np.ndarray,
    src_nodata: float,
    factor: np.float32,
    shift: np.float32,
    low: int,
    high: int,
    nodata: int,
    out: np.ndarray,
) -> None:
    """``out[:] = rint(block * factor + shift)``, clipped to ``[low, high]``, or ``nodata``.

    ``block`` holds source DNs (any integer or float type); a DN equal to ``src_nodata``, or NaN,
    is missing. ``factor``, ``shift`` are float32, the operations float32 as in numpy.
    """
    ny, nx = block.shape
    for y in range(ny):
        for x in range(nx):
            raw = block[y, x]
            if raw == src_nodata:
                out[y, x] = nodata
                continue
            value = np.rint(np.float32(raw) * factor + shift)
            if np.isnan(value):
                out[y, x] = nodata
            elif value < low:
                out[y, x] = low
            elif value > high:
                out[y, x] = high
            else:
                out[y, x] = np.int16(value)


@numba.njit(cache=True, nogil=True)
def classes_into(block: np.ndarray, src_nodata: float, out: np.ndarray) -> None:
    """uint8 classes: ``out[:] = block``, 0 where ``block`` is ``src_nodata``."""
    ny, nx = block.shape
    for y in range(ny):
        for x in range(nx):
            raw = block[y, x]
            out[y, x] = 0 if raw == src_nodata else np.uint8(raw)


@numba.njit(cache=True, nogil=True)
def upsample_into(
    block: np.ndarray, factor_y: int, factor_x: int, first_y: int, first_x: int, out: np.ndarray
) -> None:
    """Nearest upsampling by whole factors: ``out[y, x] = block[(first_y + y) // fy, ...]``.

    ``first_y``, ``first_x`` are the output window's offsets on the fine lattice anchored at the
    block's top-left corner.
    """
    ny, nx = out.shape
    for y in range(ny):
        row = (first_y + y) // factor_y
        for x in range(nx):
            out[y, x] = block[row, (first_x + x) // factor_x]


@numba.njit(cache=True, nogil=True)
def complete_into(values: np.ndarray, nodata: int, present: np.ndarray) -> bool:
    """``present[y, x]``: every band of ``values`` (``(band, y, x)``) has a value; whether all do.

    Band by band over contiguous rows (vectorised), no boolean temporary per band.
    """
    nb, ny, nx = values.shape
    present[:] = True
    for b in range(nb):
        for y in range(ny):
            for x in range(nx):
                present[y, x] &= values[b, y, x] != nodata
    for y in range(ny):
        for x in range(nx):
            if not present[y, x]:
                return False
    return True


@numba.njit(cache=True, nogil=True)
def blank_into(values: np.ndarray, present: np.ndarray, nodata: int) -> None:
    """``values[:, y, x] = nodata`` wherever ``present[y, x]`` is false (``(band, y, x)``)."""
    nb, ny, nx = values.shape
    for y in range(ny):
        for x in range(nx):
            if not present[y, x]:
                for b in range(nb):
                    values[b, y, x] = nodata


@numba.njit(cache=True, nogil=True)
def lookup_into(block: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """``out[y, x] = table[block[y, x]]`` (unsigned integer DNs indexing a table)."""
    ny, nx = block.shape
    for y in range(ny):
        for x in range(nx):
            out[y, x] = table[block[y, x]]


@lru_cache(maxsize=256)
def reflectance_table(
    dtype: str, src_nodata: float, factor: np.float32, shift: np.float32, low: int, high: int
) -> np.ndarray:
    """:func:`reflectance_into` of every value of an unsigned 8 or 16 bit type, as a table.

    Made by :func:`reflectance_into` itself, so looking a DN up gives exactly what converting it
    gives; a gather instead of a multiply, a round and two comparisons per pixel.
    """
    from cloudfree.stack import NODATA

    every = np.arange(np.iinfo(dtype).max + 1, dtype=dtype).reshape(1, -1)
    table = np.empty(every.shape, dtype=np.int16)
    reflectance_into(every, src_nodata, factor, shift, low, high, int(NODATA), table)
    table.flags.writeable = False
    return table[0]
