"""Binary morphology with disks, for cleaning cloud masks: exact, fast, and tile-invariant.

A disk of radius ``r`` pixels holds the offsets ``(dy, dx)`` with ``dy**2 + dx**2 <= r**2``.
Dilation marks every pixel within ``r`` of a marked one; erosion is the dilation of the
complement; opening (erosion, then dilation) removes marked patches narrower than the disk
(speckle) and keeps the rest unchanged.

The kernels work on ``(time, y, x)`` bool arrays layer by layer. For each pixel they first find
the horizontal distance to the nearest marked pixel of each row (two linear passes), then look
``r`` rows up and down: O(pixels x (2r + 1)) integer compares, compiled with numba and parallel
over rows, so a 2048 x 2048 layer with a 10 px disk takes tens of milliseconds. Pixels beyond
the array edge count as unmarked for dilation (and as marked for erosion, so an edge does not
erode): a tile is loaded with a halo of :func:`halo_pixels` so these edge rules never reach the
pixels that are kept.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cloudfree.parallel import KERNEL_LOCK


def radius_pixels(metres: float, pixel_size_m: float) -> float:
    """A distance in metres as a (fractional) radius in pixels of ``pixel_size_m``."""
    if metres < 0:
        raise ValueError(f"A morphology radius cannot be negative, got {metres} m.")
    return metres / pixel_size_m


def reach(radius: float) -> int:
    """How many whole pixels a disk of ``radius`` pixels reaches from its centre."""
    return math.floor(radius + 1e-9)


def halo_pixels(opening: float, dilation: float) -> int:
    """Context a tile needs, in pixels, for an opening then a dilation (radii in pixels)."""
    return 2 * reach(opening) + reach(dilation)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate each ``(y, x)`` layer of a bool array by a disk of ``radius`` pixels."""
    r = reach(radius)
    if r == 0:
        return mask.copy()
    widths = disk_half_widths(radius)
    with KERNEL_LOCK:
        return _dilate(_layers(mask), widths).reshape(mask.shape)


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erode each layer by a disk: the complement of the dilated complement."""
    return ~dilate(~mask, radius)


def opening(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erosion then dilation by the same disk: drops patches the disk does not fit in."""
    if reach(radius) == 0:
        return mask.copy()
    return dilate(erode(mask, radius), radius)


def disk_half_widths(radius: float) -> np.ndarray:
    """Half-width of the disk on each row offset ``dy = -r..r``."""
    r = reach(radius)
    dy = np.arange(-r, r + 1)
    return np.floor(np.sqrt(np.maximum(radius * radius - dy * dy, 0.0)) + 1e-9).astype(np.int64)


def _layers(mask: np.ndarray) -> np.ndarray:
    """View any ``(..., y, x)`` bool array as ``(layers, y, x)``."""
    if mask.ndim < 2:
        raise ValueError("Morphology needs arrays of at least two dimensions (y, x).")
    return np.ascontiguousarray(mask, dtype=np.bool_).reshape((-1, *mask.shape[-2:]))


@numba.njit(parallel=True, cache=True)
def _dilate(mask: np.ndarray, widths: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    layers, ny, nx = mask.shape
    r = (widths.shape[0] - 1) // 2
    far = r + 1
    out = np.zeros_like(mask)
    for t in range(layers):
        near = np.empty((ny, nx), dtype=np.int32)
        for y in numba.prange(ny):
            # horizontal distance to the nearest marked pixel in this row, capped at r + 1
            last = -far - 1
            for x in range(nx):
                if mask[t, y, x]:
                    last = x
                near[y, x] = min(x - last, far)
            last = nx + far + 1
            for x in range(nx - 1, -1, -1):
                if mask[t, y, x]:
                    last = x
                near[y, x] = min(near[y, x], last - x)
        for y in numba.prange(ny):
            for k in range(2 * r + 1):
                yy = y + k - r
                if 0 <= yy < ny:
                    w = widths[k]
                    for x in range(nx):
                        out[t, y, x] |= near[yy, x] <= w
    return out
