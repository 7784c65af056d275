"""Quantiles over time by sorting networks, vectorised across the pixels of a row.

Definition (one, used everywhere)
---------------------------------
Over the usable observations ``x_(0) <= ... <= x_(n-1)`` of a pixel (valid, and not the band's
nodata), the ``q`` quantile is numpy's ``"linear"`` method (Hyndman & Fan type 7), computed the way
numpy computes it, then rounded to the nearest integer with halves to even (``numpy.rint``)::

    h = (n - 1) * q;  j = floor(h);  g = h - j;  a = x_(j);  b = x_(min(j + 1, n - 1))
    Q = a + (b - a) * g      if g < 0.5
    Q = b - (b - a) * (1 - g) otherwise

so the result is bit-identical to ``numpy.rint(numpy.quantile(valid_values, q))``. The median is
``q = 0.5``. A pixel with no usable observation gets the nodata value; one usable observation gives
that value.

The CDSE-L3 first quartile (:func:`order_statistics`) is the published algorithm's own rule: sort
the valid observations and take ``x_(floor(n / 4))``, an observation itself, never interpolated.

How it is fast
--------------
Per row of a tile, the time series of every pixel go into a ``(time, width)`` buffer in the stored
integer type, unusable observations replaced by the type's largest value so they sort last. A
sorting network (Batcher's odd-even merge sort, pruned to the ranks the quantiles can need) then
sorts all columns at once: each comparator is a ``min``/``max`` of two buffer rows, which the
compiler turns into SIMD instructions over 16-32 pixels at a time. Rows run in parallel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numba
import numpy as np

from cloudfree.composite.kernels import check_stack

#: Pixels per block: a block of ``time x BLOCK`` values stays in the core's L1/L2 cache.
BLOCK = 512
#: Blocks per parallel task: scratch buffers are allocated once per task.
CHUNK = 16


@functools.cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` inputs.

    Built for the next power of two and pruned of comparators touching positions ``>= n``: those
    positions act as ``+inf`` padding, so such comparators never move anything.
    """
    size = 1 << max(0, math.ceil(math.log2(max(n, 1))))
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and a < n and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


@functools.cache
def selection_network(n: int, top_rank: int) -> np.ndarray:
    """The comparators of :func:`sorting_network` that ranks ``0..top_rank`` depend on.

    Walks the network backwards keeping a comparator when it writes a position still needed, and
    then needs both its inputs. Returns an ``(m, 2)`` int64 array.
    """
    needed = set(range(min(top_rank, n - 1) + 1))
    kept: list[tuple[int, int]] = []
    for a, b in reversed(sorting_network(n)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def masked_quantiles(
    data: np.ndarray, valid: np.ndarray, qs: Sequence[float], nodata: int
) -> np.ndarray:
    """Quantiles over time of each band's usable observations, one sort for all ``qs``.

    ``data`` is ``(time, band, y, x)`` int16 or uint16 and ``valid`` ``(time, y, x)`` bool; an
    observation is usable in a band where valid and not ``nodata`` there. Returns
    ``(len(qs), band, y, x)`` in ``data``'s type (see the module docstring for the definition).
    """
    q = [float(x) for x in qs]
    if any(not 0.0 <= x <= 1.0 for x in q):
        raise ValueError(f"quantiles must be between 0 and 1, got {list(qs)}")
    t = data.shape[0]
    lo = np.zeros((len(q), t + 1), dtype=np.uint16)
    hi = np.zeros((len(q), t + 1), dtype=np.uint16)
    weight = np.zeros((len(q), t + 1), dtype=np.float64)
    for k, quantile in enumerate(q):
        for n in range(1, t + 1):
            h = (n - 1) * quantile  # numpy's virtual index for "linear", in the same float64
            j = math.floor(h)
            lo[k, n], hi[k, n], weight[k, n] = j, min(j + 1, n - 1), h - j
    return _select(data, valid, nodata, lo, hi, weight)


def order_statistic(
    data: np.ndarray, valid: np.ndarray, numerator: int, denominator: int, nodata: int
) -> np.ndarray:
    """``x_(floor(n * numerator / denominator))`` of each band's sorted usable observations.

    With ``numerator=1, denominator=4`` this is the CDSE-L3 first quartile. ``n`` counts the
    usable observations; a pixel with none gets ``nodata``. Returns ``(band, y, x)``.
    """
    if not 0 <= numerator < denominator:
        raise ValueError(f"need 0 <= numerator < denominator, got {numerator}/{denominator}")
    rank = (np.arange(data.shape[0] + 1) * numerator // denominator).astype(np.uint16)[None]
    return _select(data, valid, nodata, rank, rank, np.zeros(rank.shape))[0]


def _select(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: int,
    lo: np.ndarray,
    hi: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:
    """Sort each pixel's usable observations and interpolate between two ranks per count.

    ``lo``, ``hi`` and ``weight`` are ``(k, time + 1)`` tables indexed by the usable count ``n``:
    result ``k`` is ``x_(lo) + (x_(hi) - x_(lo)) * weight`` (numpy's ``_lerp``), rounded half to
    even. Returns ``(k, band, y, x)``.
    """
    check_stack(data, valid, nodata)
    t, nb, ny, nx = data.shape
    out = np.empty((lo.shape[0], nb, ny, nx), dtype=data.dtype)
    if t == 0 or lo.shape[0] == 0:
        out[...] = nodata
        return out
    top = int(max(lo.max(), hi.max()))
    network = selection_network(t, top)
    _sort_and_pick(data, valid, data.dtype.type(nodata), lo, hi, weight, top, network, out)
    return out


@numba.njit(cache=True, inline="always")
def _fill_block(data, valid, nodata, band, y, x0, width, buf, count):
    """Copy one block of a row into ``buf``, unusable observations as the type's maximum.

    Written without branches (``&`` of the two tests, a uint16 count) so it compiles to SIMD.
    """
    last = np.iinfo(buf.dtype).max
    for x in range(width):
        count[x] = 0
    for i in range(data.shape[0]):
        row = data[i, band, y, x0 : x0 + width]
        clear = valid[i, y, x0 : x0 + width]
        for x in range(width):
            v = row[x]
            ok = clear[x] & (v != nodata)
            buf[i, x] = v if ok else last
            count[x] += np.uint16(ok)


@numba.njit(cache=True, inline="always")
def sort_columns(network, buf, width):
    """Apply the comparators to the first ``width`` columns of ``buf`` at once (SIMD)."""
    for c in range(network.shape[0]):
        a = network[c, 0]
        b = network[c, 1]
        for x in range(width):
            lo = buf[a, x]
            hi = buf[b, x]
            buf[a, x] = min(lo, hi)
            buf[b, x] = max(lo, hi)


@numba.njit(cache=True)
def _interpolate(buf, count, lo_rank, hi_rank, weight, top, nodata, out, a, b, ra, rb):
    """One quantile of a sorted block into ``out`` (1-D), from per-count ranks and weights.

    The two order statistics are picked with ``top + 1`` vectorised selects rather than a
    per-pixel gather; the interpolation is numpy's ``_lerp``.
    """
    width = out.shape[0]
    for x in range(width):
        ra[x] = lo_rank[count[x]]
        rb[x] = hi_rank[count[x]]
        a[x] = 0
        b[x] = 0
    for r in range(top + 1):
        rank = np.uint16(r)
        row = buf[r]
        for x in range(width):
            v = row[x]
            a[x] = v if ra[x] == rank else a[x]
            b[x] = v if rb[x] == rank else b[x]
    for x in range(width):
        g = weight[count[x]]
        lo = np.float64(a[x])
        hi = np.float64(b[x])
        diff = hi - lo
        value = lo + diff * g if g < 0.5 else hi - diff * (1.0 - g)
        out[x] = np.rint(value) if count[x] else nodata


@numba.njit(parallel=True, cache=True)
def _sort_and_pick(data, valid, nodata, lo_rank, hi_rank, weight, top, network, out):
    t, nbands, ny, nx = data.shape
    nblocks = (nx + BLOCK - 1) // BLOCK
    tasks = nbands * ny * nblocks
    for chunk in numba.prange((tasks + CHUNK - 1) // CHUNK):
        buf = np.empty((t, BLOCK), dtype=data.dtype)
        count = np.empty(BLOCK, dtype=np.uint16)
        a = np.empty(BLOCK, dtype=data.dtype)
        b = np.empty(BLOCK, dtype=data.dtype)
        ra = np.empty(BLOCK, dtype=np.uint16)
        rb = np.empty(BLOCK, dtype=np.uint16)
        for task in range(chunk * CHUNK, min(tasks, (chunk + 1) * CHUNK)):
            band = task // (ny * nblocks)
            y = (task // nblocks) % ny
            x0 = (task % nblocks) * BLOCK
            width = min(BLOCK, nx - x0)
            _fill_block(data, valid, nodata, band, y, x0, width, buf, count)
            sort_columns(network, buf, width)
            for k in range(lo_rank.shape[0]):
                _interpolate(
                    buf, count, lo_rank[k], hi_rank[k], weight[k], top, nodata,
                    out[k, band, y, x0 : x0 + width], a, b, ra, rb,
                )  # fmt: skip
