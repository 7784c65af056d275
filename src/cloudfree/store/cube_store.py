"""The data cube store: Zarr v3, one ``(time, y, x)`` array per band and per mask layer.

Like the mosaic store, the layout is written once from an xarray template (CF ``spatial_ref``,
``scale_factor``/``_FillValue`` of reflectance, a CF ``time`` coordinate, GeoZarr attributes),
then filled by region writes. Each work unit writes exactly one region: ``time_shard`` layers
by one ``chunk`` x ``chunk`` tile, which is one shard (or one chunk when not sharded) of every
array, so no unit ever reads, modifies and writes a chunk or shard another unit writes.

What a cube holds is described in the group attribute ``cloudfree:cube`` (:class:`CubeInfo`), so
``mosaic --from-cube`` knows its grid, solar days, variables and how it was loaded.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.xr import xr_coords

from cloudfree.aoi import Aoi
from cloudfree.bands import BANDS, Band
from cloudfree.errors import InvalidInputError
from cloudfree.grid import geobox_crs
from cloudfree.stack import REFLECTANCE_SCALE, layer_dtype, missing_value
from cloudfree.store.geozarr import geozarr_attributes
from cloudfree.store.zarr_store import COMPRESSORS

CUBE_ATTRIBUTE = "cloudfree:cube"

#: The mask's verdict per observation (``cloudfree cube --validity``): its variable name, the
#: id it has among the cube's layers (no band of the registry), and its values.
VALID, VALID_BAND = "valid", "VALID"
VALID_REJECTED, VALID_CLEAR, VALID_NODATA = 0, 1, 255


def storage_dtype(band: Band) -> str:
    """int16 reflectance * 10000, uint8 classes and percentages (as in a :class:`Stack`)."""
    return np.dtype(layer_dtype(band)).name


@dataclass(frozen=True)
class CubeVariable:
    """One array of the cube."""

    name: str
    """Variable name in the store (the requested band name, ``scl``, ``cld``, ...)."""
    band: str
    """Canonical band id (``B04``, ``SCL``)."""

    @property
    def spec(self) -> Band:
        """The band's registry entry (SCL's for ``valid``: uint8 classes, never scaled)."""
        return BANDS["SCL" if self.band == VALID_BAND else self.band]


@dataclass(frozen=True)
class CubeInfo:
    """What a cube holds and how it was made: the ``cloudfree:cube`` attribute."""

    geobox: GeoBox
    """The cube's grid: the area's grid padded by ``margin`` pixels."""
    margin: int
    """Pixels of context stored around the area's grid on each side."""
    days: tuple[date, ...]
    """The solar day of each time layer, ascending."""
    first_times: tuple[datetime, ...]
    """UTC acquisition time of the first scene of each solar day."""
    footprints: tuple[Geometry, ...]
    """Union of the footprints (EPSG:4326) of each day's scenes."""
    bands: tuple[CubeVariable, ...]
    """Reflectance variables, in request order."""
    layers: tuple[CubeVariable, ...]
    """Mask layers (``SCL``, ``CLD``, extra bands) stored beside the bands."""
    aoi: Aoi
    start: date
    end: date
    resampling: str
    same_day: str
    chunk: int
    time_chunk: int
    time_shard: int
    """Time layers of one shard (one work unit); ``time_chunk`` when not sharded."""

    @property
    def area_geobox(self) -> GeoBox:
        """The area's grid: the cube's grid without its margin."""
        if not self.margin:
            return self.geobox
        window = (slice(self.margin, -self.margin), slice(self.margin, -self.margin))
        return self.geobox[window]

    def variable_for(self, band_id: str) -> str | None:
        """The variable holding a band or layer (bands first), or ``None``."""
        for var in (*self.bands, *self.layers):
            if var.band == band_id:
                return var.name
        return None

    def to_json(self) -> dict[str, Any]:
        """The attribute's JSON value."""
        return {
            "crs": geobox_crs(self.geobox).to_wkt(),
            "transform": list(self.geobox.affine)[:6],
            "shape": [self.geobox.shape.y, self.geobox.shape.x],
            "margin": self.margin,
            "days": [d.isoformat() for d in self.days],
            "first_times": [t.isoformat() for t in self.first_times],
            "footprints": [f.json for f in self.footprints],
            "bands": [[v.name, v.band] for v in self.bands],
            "layers": [[v.name, v.band] for v in self.layers],
            "aoi": {
                "geometry": self.aoi.geometry.json,
                "clip": self.aoi.clip,
                "description": self.aoi.description,
            },
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "resampling": self.resampling,
            "same_day": self.same_day,
            "chunk": self.chunk,
            "time_chunk": self.time_chunk,
            "time_shard": self.time_shard,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CubeInfo:
        """Read the attribute back."""
        from affine import Affine

        geobox = GeoBox(tuple(data["shape"]), Affine(*data["transform"]), data["crs"])
        aoi = data["aoi"]
        return cls(
            geobox=geobox,
            margin=int(data["margin"]),
            days=tuple(date.fromisoformat(d) for d in data["days"]),
            first_times=tuple(datetime.fromisoformat(t) for t in data["first_times"]),
            footprints=tuple(Geometry(f, "EPSG:4326") for f in data["footprints"]),
            bands=tuple(CubeVariable(n, b) for n, b in data["bands"]),
            layers=tuple(CubeVariable(n, b) for n, b in data["layers"]),
            aoi=Aoi(Geometry(aoi["geometry"], "EPSG:4326"), bool(aoi["clip"]), aoi["description"]),
            start=date.fromisoformat(data["start"]),
            end=date.fromisoformat(data["end"]),
            resampling=data["resampling"],
            same_day=data["same_day"],
            chunk=int(data["chunk"]),
            time_chunk=int(data["time_chunk"]),
            time_shard=int(data["time_shard"]),
        )


def create_cube(url: str, info: CubeInfo, *, attrs: Mapping[str, Any]) -> None:
    """Write the cube's metadata and coordinates; every chunk starts as "no data".

    The store may already hold the run's ``_cloudfree`` folder (its lock), so the template is
    written in append mode; the caller has checked that no other store is there.
    """
    ny, nx = info.geobox.shape.yx
    shape = (len(info.days), ny, nx)
    spatial = (min(info.chunk, ny), min(info.chunk, nx))
    chunks = (info.time_chunk, *spatial)
    unit = (info.time_shard, *spatial)
    coords = xr_coords(info.geobox, crs_coord_name="spatial_ref")
    # ("y", "x"), or ("latitude", "longitude") on geographic grids: the names of the coordinates
    spatial_dims = (str(info.geobox.dimensions[0]), str(info.geobox.dimensions[1]))
    dims = ("time", *spatial_dims)
    times = pd.DatetimeIndex([pd.Timestamp(d) for d in info.days])
    variables: dict[str, xr.DataArray] = {}
    for var in (*info.bands, *info.layers):
        band = var.spec
        fill = VALID_NODATA if var.band == VALID_BAND else missing_value(band)
        attrs_: dict[str, Any] = {"grid_mapping": "spatial_ref", "cloudfree:band": var.band}
        encoding: dict[str, Any] = {
            "dtype": storage_dtype(band),
            "fill_value": fill,
            "chunks": chunks,
            "compressors": COMPRESSORS,
        }
        if info.time_shard != info.time_chunk:
            encoding["shards"] = unit
        if var.band == VALID_BAND:
            template = da.full(shape, VALID_NODATA, dtype=np.uint8, chunks=unit)
            attrs_ |= {
                "long_name": "clear according to the cloud mask (255: no data)",
                "flag_values": [VALID_REJECTED, VALID_CLEAR],
                "flag_meanings": "rejected clear",
            }
            encoding["_FillValue"] = None
        elif band.is_reflectance:
            template = da.full(shape, np.nan, dtype=np.float32, chunks=unit)
            attrs_ |= {"long_name": f"{var.name} surface reflectance", "units": "1"}
            encoding |= {
                "_FillValue": fill,
                "scale_factor": REFLECTANCE_SCALE,
                "add_offset": 0.0,
            }
        elif band.categorical:
            template = da.zeros(shape, dtype=np.uint8, chunks=unit)
            attrs_ |= {"long_name": f"{band.id} classes (0: no data)"}
            encoding["_FillValue"] = None
        else:
            template = da.full(shape, np.nan, dtype=np.float32, chunks=unit)
            attrs_ |= {"long_name": f"{band.id} probability", "units": "%"}
            encoding["_FillValue"] = fill
        array = xr.DataArray(template, dims=dims, attrs=attrs_)
        array.encoding = encoding
        variables[var.name] = array
    ds = xr.Dataset(variables, coords={"time": times, **coords})
    ds["time"].attrs["long_name"] = "solar day of the acquisitions"
    ds["time"].encoding = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    ds.attrs.update(geozarr_attributes(info.geobox, dims=spatial_dims))
    ds.attrs.update(attrs)
    ds.attrs[CUBE_ATTRIBUTE] = json.dumps(info.to_json())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        warnings.filterwarnings("ignore", "Object at _cloudfree", UserWarning)
        ds.to_zarr(url, mode="a", compute=False, zarr_format=3, consolidated=True)


def read_info(url: str) -> CubeInfo:
    """The description of the cube at ``url``, or a clear error when it is not a cube."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Object at _cloudfree", UserWarning)
            group = zarr.open_group(url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"There is no Zarr store at {url} ({exc}); make one with `cloudfree cube`."
        ) from None
    text = group.attrs.get(CUBE_ATTRIBUTE)
    if not isinstance(text, str):
        raise InvalidInputError(
            f"{url} is a Zarr store but not a cloudfree cube (no {CUBE_ATTRIBUTE} attribute); "
            "make one with `cloudfree cube`."
        )
    return CubeInfo.from_json(json.loads(text))


class CubeStore:
    """Region reads and writes of a cube made by :func:`create_cube`."""

    def __init__(self, url: str, *, mode: str = "r+") -> None:
        self.url = url
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Object at _cloudfree", UserWarning)
            self._group = zarr.open_group(url, mode=mode)  # type: ignore[arg-type]

    def write(self, times: slice, ys: slice, xs: slice, values: Mapping[str, np.ndarray]) -> None:
        """Write ``(time, y, x)`` blocks of several variables into one region."""
        for name, block in values.items():
            self._array(name)[times, ys, xs] = block

    def read(self, name: str, times: slice, ys: slice, xs: slice) -> np.ndarray:
        """Stored values of one variable in a region."""
        return np.asarray(self._array(name)[times, ys, xs])

    def names(self) -> Sequence[str]:
        """The store's arrays."""
        return sorted(self._group.array_keys())

    def _array(self, name: str) -> zarr.Array:
        node = self._group[name]
        if not isinstance(node, zarr.Array):
            raise TypeError(f"{self.url}/{name} is a group, not an array")
        return node
