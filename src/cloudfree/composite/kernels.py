"""Numpy kernels for per-pixel reductions over time. No xarray, no Dask.

Quantile definition (one, used everywhere): over the valid observations ``x_(0) <= ... <=
x_(n-1)`` of a pixel, the ``q`` quantile is numpy's ``"linear"`` method (Hyndman & Fan type 7):
``h = (n - 1) * q``, ``Q = x_(floor h) + (h - floor h) * (x_(floor h + 1) - x_(floor h))``,
rounded to the nearest integer, halves to even (``numpy.rint``). The median is ``q = 0.5``. A
pixel with no valid observation gets the nodata value; one valid observation gives that value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SORT_LAST = np.iinfo(np.int16).max


def masked_quantiles(
    values: np.ndarray, valid: np.ndarray, qs: Sequence[float], nodata: int
) -> list[np.ndarray]:
    """Quantiles over axis 0 of int16 ``values`` where ``valid``, for each ``q`` in ``qs``.

    ``values`` is ``(time, y, x)`` int16, ``valid`` the same shape, bool. Returns one int16
    ``(y, x)`` array per quantile.
    """
    if values.shape != valid.shape:
        raise ValueError(f"values {values.shape} and valid {valid.shape} differ in shape")
    if values.dtype != np.int16:
        raise TypeError(f"values must be int16, got {values.dtype}")
    count = valid.sum(axis=0, dtype=np.int32)
    if values.shape[0] == 0:
        return [np.full(values.shape[1:], nodata, dtype=np.int16) for _ in qs]
    # Invalid observations sort after every valid one; only the first ``count`` are used.
    ordered = np.sort(np.where(valid, values, np.int16(_SORT_LAST)), axis=0)
    last = np.maximum(count - 1, 0)
    results = []
    for q in qs:
        h = last * float(q)
        lo = np.floor(h).astype(np.intp)
        hi = np.minimum(lo + 1, last)
        frac = h - lo
        a = np.take_along_axis(ordered, lo[np.newaxis], axis=0)[0].astype(np.float64)
        b = np.take_along_axis(ordered, hi[np.newaxis], axis=0)[0].astype(np.float64)
        value = np.rint(a + (b - a) * frac)
        out = value.astype(np.int16)
        out[count == 0] = nodata
        results.append(out)
    return results
