"""Shared pieces of the kernel tests: a realistic stack and the thread-count check."""

from __future__ import annotations

import numba
import numpy as np

I16_NODATA = -32768


def realistic_stack(seed=0, t=12, nb=3, ny=40, nx=300):
    """int16 reflectance-like values with nodata, haze and a masked corner, and a validity mask."""
    rng = np.random.default_rng(seed)
    base = rng.integers(200, 4000, (1, nb, ny, nx))
    data = (base + rng.normal(0, 60, (t, nb, ny, nx))).astype(np.int16)
    data[rng.random((t, nb, ny, nx)) < 0.02] = I16_NODATA
    data[rng.random((t, 1, ny, nx)).repeat(nb, axis=1) < 0.1] += 3000  # haze
    valid = rng.random((t, ny, nx)) < 0.6
    valid[:, :3, :5] = False
    return data, valid


def with_one_and_two_threads(kernel, *args):
    """``kernel(*args)`` run with one numba thread and with two."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernel(*args)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = kernel(*args)
    finally:
        numba.set_num_threads(before)
    return one, two
