"""Distance to the nearest rejected (cloud, shadow, cirrus) pixel: exact, capped, tile-invariant.

Best-available-pixel scoring (:mod:`.best_pixel`) prefers observations far from clouds. FORCE
stores that distance as a Level-2 product (``DST``: metres from each pixel to the nearest cloud,
cloud shadow or snow pixel of the same acquisition); here it is computed from the ``rejected``
mask of each time layer.

Definition
----------
For every pixel centre of a ``(y, x)`` layer, the Euclidean distance in metres to the nearest
pixel centre of the same layer that is ``rejected``, capped at ``max_distance_m``::

    d(y, x) = min(pixel_size_m * min{ sqrt((y - y')**2 + (x - x')**2) : rejected[y', x'] },
                  max_distance_m)

A rejected pixel has distance 0; a layer without rejected pixels is ``max_distance_m``
everywhere. The result is float32: the float64 value ``sqrt(D2) * pixel_size_m`` (``D2`` the
exact integer squared pixel distance), capped, then rounded once -- the same number
``scipy.ndimage.distance_transform_edt(~rejected) * pixel_size_m`` gives (the tests compare them
bit for bit; scipy is a test dependency only).

Algorithm
---------
The separable exact squared Euclidean distance transform of Felzenszwalb & Huttenlocher
("Distance Transforms of Sampled Functions", Theory of Computing 8, 2012):

1. **Columns.** The distance ``g`` along each column to the nearest rejected pixel, from a
   downward and an upward sweep. Columns are processed in blocks of :data:`COLUMN_BLOCK`, so each
   sweep reads and writes contiguous runs of a row. Distances beyond the cap's reach
   (``floor(max_distance_m / pixel_size_m)`` pixels) are stored as "none": such a pixel can only
   lead to distances above the cap.
2. **Rows.** ``D2(y, x) = min_x' ((x - x')**2 + g(y, x')**2)`` is the lower envelope of one
   parabola per column that has a rejected pixel within reach; the envelope is built left to
   right and then read off left to right, O(width) per row.

Both passes are parallel (numba ``prange`` over layers x column blocks, then over layers x
rows); every output pixel is computed from the same integers whatever the thread count, so the
result does not depend on it. The column pass writes ``g`` into the output array, which the row
pass then overwrites row by row, so the only memory beyond the input is the float32 output.

Tile invariance
---------------
A pixel's capped distance depends only on the rejected pixels within ``max_distance_m`` of it,
that is within :func:`cloudfree.grid.context_pixels` pixels (rows and columns). A window
padded by that many pixels on each side therefore gives, on its interior, exactly the values
the whole array gives (``tests/test_cloud_distance.py`` checks it). Pixels outside the array are
taken as not rejected: the edge of a window is never mistaken for a cloud.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["COLUMN_BLOCK", "cloud_distance"]

COLUMN_BLOCK = 64
"""Columns swept together in the column pass: 64 float32 values, four cache lines per row."""


def cloud_distance(rejected: np.ndarray, pixel_size_m: float, max_distance_m: float) -> np.ndarray:
    """Metres from each pixel to the nearest rejected pixel of its layer, capped.

    Parameters
    ----------
    rejected
        ``(time, y, x)`` bool: the observation has data but the cloud mask rejected it. Any
        ``(..., y, x)`` shape works; every ``(y, x)`` layer is transformed on its own.
    pixel_size_m
        The pixel size in metres (square pixels).
    max_distance_m
        The cap: larger distances, and layers without a rejected pixel, get this value.

    Returns
    -------
    numpy.ndarray
        float32 of ``rejected``'s shape: the exact Euclidean distance between pixel centres in
        metres, at most ``max_distance_m`` (see the module docstring).

    """
    _check_lengths(pixel_size_m, max_distance_m)
    if rejected.ndim < 2:
        raise ValueError(
            f"cloud_distance needs an array of (time, y, x) layers, got shape {rejected.shape}."
        )
    if rejected.dtype != np.bool_:
        raise TypeError(f"rejected must be a bool mask, got {rejected.dtype}.")
    if rejected.size == 0:
        return np.empty(rejected.shape, dtype=np.float32)
    layers = np.ascontiguousarray(rejected).reshape((-1, *rejected.shape[-2:]))
    out = np.empty(layers.shape, dtype=np.float32)
    reach = math.floor(max_distance_m / pixel_size_m + 1e-9)
    _column_pass(layers, reach, out)
    _row_pass(out, float(pixel_size_m), float(max_distance_m))
    return out.reshape(rejected.shape)


def _check_lengths(pixel_size_m: float, max_distance_m: float) -> None:
    if not (math.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise ValueError(f"The pixel size must be a positive number of metres, got {pixel_size_m}.")
    if not (math.isfinite(max_distance_m) and max_distance_m > 0):
        raise ValueError(
            f"The distance cap must be a positive, finite number of metres, got {max_distance_m}."
        )


@numba.njit(parallel=True, cache=True)
def _column_pass(
    rejected: np.ndarray, reach: int, out: np.ndarray
) -> None:  # pragma: no cover - numba
    """``out[t, y, x]``: rows to the nearest rejected pixel of column ``x``, or ``inf``."""
    layers, ny, nx = rejected.shape
    blocks = (nx + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    none = np.float32(np.inf)
    for task in numba.prange(layers * blocks):
        t = task // blocks
        x0 = (task % blocks) * COLUMN_BLOCK
        width = min(COLUMN_BLOCK, nx - x0)
        last = np.empty(width, dtype=np.int64)
        # Downward: rows since the last rejected pixel above (or none). The loops over a block's
        # columns are branch-free selects, which the compiler turns into SIMD.
        for i in range(width):
            last[i] = -(reach + 1) - 1
        for y in range(ny):
            mask = rejected[t, y, x0 : x0 + width]
            row = out[t, y, x0 : x0 + width]
            for i in range(width):
                last[i] = y if mask[i] else last[i]
            for i in range(width):
                d = y - last[i]
                row[i] = np.float32(d) if d <= reach else none
        # upward: rows to the next rejected pixel below, where nearer
        for i in range(width):
            last[i] = ny + reach + 1
        for y in range(ny - 1, -1, -1):
            mask = rejected[t, y, x0 : x0 + width]
            row = out[t, y, x0 : x0 + width]
            for i in range(width):
                last[i] = y if mask[i] else last[i]
            for i in range(width):
                d = last[i] - y
                row[i] = min(row[i], np.float32(d) if d <= reach else none)


@numba.njit(parallel=True, cache=True)
def _row_pass(out: np.ndarray, pixel_size: float, cap: float) -> None:  # pragma: no cover - numba
    """Replace each row's column distances by the capped Euclidean distance in metres."""
    layers, ny, nx = out.shape
    capped = np.float32(cap)
    for task in numba.prange(layers * ny):
        t = task // ny
        y = task % ny
        row = out[t, y]
        site = np.empty(nx, dtype=np.int64)  # columns whose parabola is on the envelope
        height = np.empty(nx, dtype=np.float64)  # their g**2
        start = np.empty(nx + 1, dtype=np.float64)  # where each one starts being lowest
        k = -1
        for q in range(nx):
            g = row[q]
            if g == np.inf:
                continue
            f = np.float64(g) * np.float64(g)
            if k < 0:
                k = 0
                site[0] = q
                height[0] = f
                start[0] = -np.inf
                start[1] = np.inf
                continue
            # intersection with the last envelope parabola; pop those it hides
            p = site[k]
            s = ((f + q * q) - (height[k] + p * p)) / (2.0 * (q - p))
            while s <= start[k]:
                k -= 1
                p = site[k]
                s = ((f + q * q) - (height[k] + p * p)) / (2.0 * (q - p))
            k += 1
            site[k] = q
            height[k] = f
            start[k] = s
            start[k + 1] = np.inf
        if k < 0:
            for x in range(nx):
                row[x] = capped
        else:
            j = 0
            for x in range(nx):
                while start[j + 1] < x:
                    j += 1
                dx = x - site[j]
                metres = math.sqrt(dx * dx + height[j]) * pixel_size
                row[x] = np.float32(metres) if metres < cap else capped
