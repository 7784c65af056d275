"""The medoid over time: the usable observation nearest the multi-band median.

Definition
----------
For one pixel, the usable observations are those valid in the cloud mask that hold data (not
``nodata``) in *every* band. Their multi-band median ``med`` is, band by band, numpy's ``"linear"``
median of the usable values: the middle value for an odd count, the mean of the two middle values
for an even count, *not* rounded. The medoid is the usable observation ``i`` nearest to ``med``
in Euclidean distance over the bands, in DN, computed in float64::

    i* = argmin_i sqrt(sum_b (x[i, b] - med[b]) ** 2)

with ties going to the earliest time index. All bands of the result come from that one
observation, and its time index is returned with it (-1, and ``nodata`` in every band, where no
observation is usable).

Exactness: the values are integers of at most 16 bits and the median a multiple of 1/2, so every
squared distance is computed exactly in float64; comparing squared distances therefore gives the
same choice, ties included, as comparing the float64 distances.

How it is fast
--------------
The work goes by blocks of 512 pixels of a row, first copied out of the stack (one read of the
data; the rest runs in cache). For each band, the usable values go into a ``(time, pixel)``
buffer, unusable ones replaced by the type's largest value so they sort last, and a sorting network
pruned to the middle ranks (:func:`cloudfree.composite.kernels.quantiles.selection_network`) sorts
every column at once with SIMD ``min``/``max``. The distance scan and the final pick are loops
over the block's pixels, one time step at a time, which the compiler vectorises too. Blocks run in
parallel; every pixel's result depends on its own observations only, so it does not depend on
tiling or thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from cloudfree.composite.kernels import check_stack
from cloudfree.composite.kernels.quantiles import selection_network, sort_columns

#: Pixels per block: a band's ``time x BLOCK`` buffer stays in the core's L1/L2 cache.
BLOCK = 512


def medoid(data: np.ndarray, valid: np.ndarray, nodata: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the usable observation nearest the multi-band median (module docstring).

    Parameters
    ----------
    data
        ``(time, band, y, x)`` int16 or uint16 values as stored (DN).
    valid
        ``(time, y, x)`` bool: the cloud mask calls the observation clear.
    nodata
        The bands' nodata value; an observation with it in any band is not used.

    Returns
    -------
    values : numpy.ndarray
        ``(band, y, x)`` in ``data``'s type: every band of the chosen observation; ``nodata``
        where no observation is usable.
    index : numpy.ndarray
        ``(y, x)`` int16: the chosen time index, -1 where no observation is usable.

    Notes
    -----
    Arrays that are not C-contiguous are copied first.

    """
    check_stack(data, valid, nodata)
    t, nb, ny, nx = data.shape
    if t > np.iinfo(np.int16).max:
        raise ValueError(f"At most 32767 time steps fit an int16 index, got {t}.")
    values = np.empty((nb, ny, nx), dtype=data.dtype)
    index = np.full((ny, nx), -1, dtype=np.int16)
    if t == 0 or nb == 0:
        values[...] = nodata
        return values, index
    network = selection_network(t, t // 2)
    _medoid(
        np.ascontiguousarray(data),
        np.ascontiguousarray(valid),
        data.dtype.type(nodata),
        network,
        values,
        index,
    )
    return values, index


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _medoid(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: np.int16 | np.uint16,
    network: np.ndarray,
    values: np.ndarray,
    index: np.ndarray,
) -> None:  # pragma: no cover - numba
    t, nb, ny, nx = data.shape
    nblocks = (nx + BLOCK - 1) // BLOCK
    last = np.iinfo(data.dtype).max
    for task in numba.prange(ny * nblocks):
        y = task // nblocks
        x0 = (task % nblocks) * BLOCK
        width = min(BLOCK, nx - x0)
        blk = np.empty((t * nb, width), dtype=data.dtype)
        ok = np.empty((t, width), dtype=np.bool_)
        count = np.zeros(width, dtype=np.int64)
        buf = np.empty((t, width), dtype=data.dtype)
        med = np.empty((nb, width), dtype=np.float64)
        dist2 = np.empty(width, dtype=np.float64)
        best = np.full(width, np.inf)
        chosen = np.full(width, -1, dtype=np.int64)
        for i in range(t):
            for x in range(width):
                ok[i, x] = valid[i, y, x0 + x]
            for b in range(nb):
                for x in range(width):
                    v = data[i, b, y, x0 + x]
                    blk[i * nb + b, x] = v
                    ok[i, x] &= v != nodata
            for x in range(width):
                count[x] += ok[i, x]
        for b in range(nb):
            for i in range(t):
                for x in range(width):
                    buf[i, x] = blk[i * nb + b, x] if ok[i, x] else last
            sort_columns(network, buf, width)
            for x in range(width):
                n = count[x]
                if n > 0:
                    med[b, x] = (float(buf[(n - 1) // 2, x]) + float(buf[n // 2, x])) / 2.0
                else:
                    med[b, x] = 0.0
        for i in range(t):
            for x in range(width):
                d = float(blk[i * nb, x]) - med[0, x]
                dist2[x] = d * d
            for b in range(1, nb):
                for x in range(width):
                    d = float(blk[i * nb + b, x]) - med[b, x]
                    dist2[x] += d * d
            for x in range(width):
                closer = ok[i, x] & (dist2[x] < best[x])
                best[x] = dist2[x] if closer else best[x]
                chosen[x] = i if closer else chosen[x]
        for x in range(width):
            index[y, x0 + x] = chosen[x]
        for b in range(nb):
            for x in range(width):
                values[b, y, x0 + x] = nodata
            for i in range(t):
                for x in range(width):
                    v = blk[i * nb + b, x]
                    values[b, y, x0 + x] = v if chosen[x] == i else values[b, y, x0 + x]
