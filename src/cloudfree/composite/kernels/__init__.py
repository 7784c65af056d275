"""Compiled per-pixel reductions over time: numpy arrays in, numpy arrays out.

No xarray, no Dask, no CRS: each kernel takes ``(time, band, y, x)`` (or ``(time, y, x)``) values in
their stored integer type (int16 or uint16), a ``(time, y, x)`` validity mask and the bands' nodata
value, and is parallel over rows with numba. An observation counts for a band only where it is valid
*and* that band holds data (is not ``nodata``); multi-band methods use an observation only where
every band holds data. Pixels without any usable observation get ``nodata``.
"""
