"""One-pass statistics over time of each band's usable observations: count, mean, min, max.

Definitions: ``count`` is the number of usable observations (valid and not the band's nodata);
``mean`` is their arithmetic mean, summed exactly in int64 and divided in float64, then rounded to
the nearest integer with halves to even (``numpy.rint``), i.e. bit-identical to
``numpy.rint(numpy.mean(valid_values))``; ``min`` and ``max`` are observations themselves. A
pixel without a usable observation gets ``nodata`` (``count`` gives 0).

Each kernel reads the stack once, row by row, accumulating whole rows at a time so the inner loops
compile to SIMD; rows run in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

from cloudfree.composite.kernels import check_stack

#: The statistics :func:`masked_statistic` computes.
STATISTICS = ("count", "mean", "min", "max")


def masked_statistic(
    data: np.ndarray, valid: np.ndarray, statistic: str, nodata: int
) -> np.ndarray:
    """One of :data:`STATISTICS` over time, per band; returns ``(band, y, x)``.

    ``count`` is uint16; the others are in ``data``'s type.
    """
    check_stack(data, valid, nodata)
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; use one of {', '.join(STATISTICS)}")
    _, nb, ny, nx = data.shape
    kind = STATISTICS.index(statistic)
    dtype = np.uint16 if statistic == "count" else data.dtype
    out = np.empty((nb, ny, nx), dtype=dtype)
    _statistic(data, valid, data.dtype.type(nodata), kind, out)
    return out


@numba.njit(parallel=True, cache=True)
def _statistic(data, valid, nodata, kind, out):
    t, nbands, ny, nx = data.shape
    lowest = np.iinfo(data.dtype).min
    highest = np.iinfo(data.dtype).max
    for task in numba.prange(nbands * ny):
        band = task // ny
        y = task % ny
        count = np.zeros(nx, dtype=np.uint16)
        total = np.zeros(nx, dtype=np.int64)
        low = np.full(nx, highest, dtype=data.dtype)
        high = np.full(nx, lowest, dtype=data.dtype)
        for i in range(t):
            row = data[i, band, y]
            clear = valid[i, y]
            for x in range(nx):
                v = row[x]
                ok = clear[x] & (v != nodata)
                count[x] += np.uint16(ok)
                if kind == 1:
                    total[x] += v if ok else 0
                elif kind == 2:
                    low[x] = min(low[x], v) if ok else low[x]
                elif kind == 3:
                    high[x] = max(high[x], v) if ok else high[x]
        target = out[band, y]
        for x in range(nx):
            n = count[x]
            if kind == 0:
                target[x] = n
            elif n == 0:
                target[x] = nodata
            elif kind == 1:
                target[x] = np.rint(total[x] / np.float64(n))
            elif kind == 2:
                target[x] = low[x]
            else:
                target[x] = high[x]


def count_valid(valid: np.ndarray) -> np.ndarray:
    """``(y, x)`` uint16: the number of valid observations over time of ``(time, y, x)``."""
    if valid.ndim != 3 or valid.dtype != np.bool_:
        raise ValueError(f"valid must be (time, y, x) bool, got {valid.shape} {valid.dtype}")
    out = np.empty(valid.shape[1:], dtype=np.uint16)
    _count_valid(valid, out)
    return out


@numba.njit(parallel=True, cache=True)
def _count_valid(valid, out):
    t, ny, nx = valid.shape
    for y in numba.prange(ny):
        row = out[y]
        for x in range(nx):
            row[x] = 0
        for i in range(t):
            clear = valid[i, y]
            for x in range(nx):
                row[x] += np.uint16(clear[x])
