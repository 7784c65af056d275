"""Compiled per-pixel reductions over time: numpy arrays in, numpy arrays out.

No xarray, no Dask, no CRS: each kernel takes ``(time, band, y, x)`` (or ``(time, y, x)``) values in
their stored integer type (int16 or uint16), a ``(time, y, x)`` validity mask and the bands' nodata
value, and is parallel over rows with numba. An observation counts for a band only where it is valid
*and* that band holds data (is not ``nodata``); multi-band methods use an observation only where
every band holds data. Pixels without any usable observation get ``nodata``.
"""

from __future__ import annotations

import numpy as np


def check_stack(data: np.ndarray, valid: np.ndarray, nodata: int | None = None) -> None:
    """Raise unless ``data`` and ``valid`` are a stack and its mask in the kernels' types.

    ``data`` is ``(time, band, y, x)`` int16 or uint16, ``valid`` ``(time, y, x)`` bool, and
    ``nodata`` (when given) a value of ``data``'s type.
    """
    if data.ndim != 4:
        raise ValueError(f"data must be (time, band, y, x), got shape {data.shape}.")
    if data.dtype not in (np.int16, np.uint16):
        raise TypeError(f"data must be int16 or uint16, got {data.dtype}.")
    t, _, ny, nx = data.shape
    if valid.shape != (t, ny, nx):
        raise ValueError(f"valid {valid.shape} does not match data {data.shape} (time, y, x).")
    if valid.dtype != np.bool_:
        raise TypeError(f"valid must be bool, got {valid.dtype}.")
    if nodata is not None:
        info = np.iinfo(data.dtype)
        if not info.min <= nodata <= info.max:
            raise ValueError(f"nodata {nodata} is not a {data.dtype} value.")
