"""The mosaic store: Zarr v3, one data variable per band ``(time, y, x)``, one chunk per tile.

The layout is written once from an xarray template (so xarray, rioxarray and GDAL read the CF
``spatial_ref`` grid mapping and decode ``scale_factor``/``add_offset``/``_FillValue``); each work
unit then writes exactly one chunk region with zarr, so tiles never race.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from odc.geo.xr import xr_coords
from zarr.codecs import BloscCodec, BloscShuffle

from cloudfree.composite.base import NO_DATE, PROVENANCE_LAYERS
from cloudfree.composite.observations import Composite
from cloudfree.grid import Plan, WorkUnit
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store.geozarr import geozarr_attributes

OBSERVATIONS = "observations"

COMPRESSORS = (BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle),)
"""Every data array's codec (the mosaic's and the cube's). Bit-shuffled int16 reflectance
compresses both smaller and faster than zarr's default (plain zstd, level 3): on composites
measured 1.74x against 1.54x at about 3x the speed (415 against 148 MB/s on one core), what the
writes of a 4096 x 4096 x 4-band mosaic spent a second of CPU on. EOPF stores its Sentinel-2
bands with the same codec."""

#: How each provenance layer is stored: dtype, fill value and extra attributes.
PROVENANCE_STORAGE: dict[str, tuple[str, object, dict[str, str]]] = {
    "date": ("int32", int(NO_DATE), {"units": "days since 1970-01-01", "calendar": "standard"}),
    "score": ("float32", float("nan"), {"units": "1"}),
}


def create_store(
    url: str,
    plan: Plan,
    band_names: Sequence[str],
    *,
    attrs: Mapping[str, Any],
    encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
    provenance: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write the store's metadata and coordinates; every data chunk starts as nodata.

    ``encoding`` says how band values are stored; ``provenance`` names the provenance layers
    (keys of :data:`~cloudfree.composite.base.PROVENANCE_LAYERS`) to add beside ``observations``.
    """
    chunk = plan.chunk_size
    shape = plan.shape
    chunks = (1, min(chunk, shape[1]), min(chunk, shape[2]))
    coords = xr_coords(plan.geobox, crs_coord_name="spatial_ref")
    # ("y", "x"), or ("latitude", "longitude") on geographic grids: the names of the coordinates
    spatial_dims = (str(plan.geobox.dimensions[0]), str(plan.geobox.dimensions[1]))
    dims = ("time", *spatial_dims)
    times = pd.DatetimeIndex([pd.Timestamp(p.start) for p in plan.periods])
    variables: dict[str, xr.DataArray] = {}
    for name in band_names:
        scaled = encoding.nodata is not None
        var = xr.DataArray(
            da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
            if scaled
            else da.zeros(shape, dtype=encoding.dtype, chunks=chunks),
            dims=dims,
            attrs={
                "grid_mapping": "spatial_ref",
                "long_name": encoding.long_name.format(band=name),
                "units": "1",
            },
        )
        var.encoding = {
            "dtype": encoding.dtype,
            "_FillValue": encoding.nodata,
            "fill_value": encoding.fill,
            "chunks": chunks,
            "compressors": COMPRESSORS,
        }
        if scaled:
            var.encoding |= {"scale_factor": encoding.scale, "add_offset": encoding.offset}
        variables[name] = var
    obs = xr.DataArray(
        da.zeros(shape, dtype=np.uint16, chunks=chunks),
        dims=dims,
        attrs={
            "grid_mapping": "spatial_ref",
            "long_name": "number of clear observations (distinct solar days)",
            "units": "1",
        },
    )
    obs.encoding = {
        "dtype": "uint16",
        "_FillValue": None,
        "fill_value": 0,
        "chunks": chunks,
        "compressors": COMPRESSORS,
    }
    variables[OBSERVATIONS] = obs
    for layer in provenance:
        dtype, fill, extra = PROVENANCE_STORAGE[layer]
        prov = xr.DataArray(
            da.full(shape, fill, dtype=dtype, chunks=chunks),
            dims=dims,
            # CF units on the stored integers: xarray decodes ``date`` to datetime64 (NaT fill).
            attrs={"grid_mapping": "spatial_ref", "long_name": PROVENANCE_LAYERS[layer], **extra},
        )
        prov.encoding = {
            "dtype": dtype,
            "_FillValue": fill,
            "fill_value": fill,
            "chunks": chunks,
            "compressors": COMPRESSORS,
        }
        variables[layer] = prov
    ds = xr.Dataset(variables, coords={"time": times, **coords})
    ds["time"].encoding = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    ds.attrs.update(geozarr_attributes(plan.geobox, dims=spatial_dims))
    ds.attrs.update(attrs)
    with warnings.catch_warnings():
        # Consolidated metadata is a zarr-python extension to v3 that xarray and GDAL read; the
        # store stays valid for readers that ignore it.
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        _write_template(ds, url, storage_options)


def _write_template(ds: xr.Dataset, url: str, storage_options: Mapping[str, Any] | None) -> None:
    ds.to_zarr(
        url,
        mode="w-",
        compute=False,
        zarr_format=3,
        consolidated=True,
        storage_options=dict(storage_options) if storage_options else None,
    )


class MosaicStore:
    """Region writes into a store made by :func:`create_store`."""

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self._group = zarr.open_group(
            url, mode="r+", storage_options=dict(storage_options) if storage_options else None
        )

    def write(
        self, plan: Plan, unit: WorkUnit, band_names: Sequence[str], composite: Composite
    ) -> None:
        """Write one unit's composite into exactly its tile region."""
        ys, xs = plan.tiles.roi[unit.tile]
        t = unit.period_index
        for i, name in enumerate(band_names):
            self._array(name)[t, ys, xs] = composite.values[i]
        self._array(OBSERVATIONS)[t, ys, xs] = composite.observations
        for layer, values in composite.provenance.items():
            if layer in self._group:
                self._array(layer)[t, ys, xs] = values

    def read_period(self, name: str, period_index: int, ys: slice, xs: slice) -> np.ndarray:
        """Raw stored values of one variable for one period and region."""
        return np.asarray(self._array(name)[period_index, ys, xs])

    def _array(self, name: str) -> zarr.Array:
        node = self._group[name]
        if not isinstance(node, zarr.Array):
            raise TypeError(f"{self.url}/{name} is a group, not an array")
        return node

    def finish(self) -> None:
        """Consolidate metadata so readers open the store with one request."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
            # the run's manifest folder (store/manifest.py) is not part of the hierarchy
            warnings.filterwarnings("ignore", "Object at _cloudfree", UserWarning)
            zarr.consolidate_metadata(self._group.store)
