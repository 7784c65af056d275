"""Source DNs to the stack's int16 reflectance in one pass, written where they belong.

The arithmetic is :func:`cloudfree.load.to_reflectance`'s, in the same float32 operations and
order (``rint(dn * factor + shift)``, clipped, nodata for missing), so the values are identical;
what changes is that a pasted window goes from the decoded integers straight into its place in
the stack: no float32 copy of the tile, no NaN pass, no temporary int16 tile.
"""

from __future__ import annotations

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

    One pass over the bands instead of a boolean temporary per band.
    """
    nb, ny, nx = values.shape
    everywhere = True
    for y in range(ny):
        for x in range(nx):
            here = True
            for b in range(nb):
                if values[b, y, x] == nodata:
                    here = False
                    break
            present[y, x] = here
            everywhere &= here
    return everywhere


@numba.njit(cache=True, nogil=True)
def blank_into(values: np.ndarray, present: np.ndarray, nodata: int) -> None:
    """``values[:, y, x] = nodata`` wherever ``present[y, x]`` is false (``(band, y, x)``)."""
    nb, ny, nx = values.shape
    for y in range(ny):
        for x in range(nx):
            if not present[y, x]:
                for b in range(nb):
                    values[b, y, x] = nodata
