"""Small EOPF-structured Sentinel-1 GRD products and their STAC items.

No real EOPF Sentinel-1 hierarchy is in the shared real material, so the layout follows the
public EOPF Sentinel-1 GRD samples as far as they are known here: one group per polarisation
(``S01SIWGRD_<start>_<stop>_<orbit>_<datatake>_VV``...) holding ``measurements/grd`` (uint16
amplitude, fill 0) on ``azimuth_time`` x ``ground_range`` with ``line``/``pixel`` indices, and
``conditions/gcp`` (``latitude``/``longitude``/``height`` tie points): radar geometry.

``map_grid=True`` writes the same measurement on a UTM grid instead (``x``/``y`` pixel centres,
``proj:*`` attributes as EOPF's Sentinel-2 layers carry them). This is an assumption standing
for a terrain-corrected GRD, which EOPF does not distribute; it exercises the one Sentinel-1
case ``cloudfree convert`` supports.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pystac
import zarr
from zarr.storage import LocalStore

from cloudfree.testing.eopf import COMPRESSOR, ZARR_MEDIA_TYPE

S1_PRODUCT_TYPE = "S01SIWGRD"
POLARISATIONS = ("VV", "VH")


def write_s1_grd_product(
    path: str | os.PathLike[str],
    *,
    map_grid: bool,
    shape: tuple[int, int] = (96, 128),
    crs_epsg: int = 32631,
    origin: tuple[float, float] = (600000.0, 5700000.0),
    pixel: float = 10.0,
    seed: int = 3,
) -> pystac.Item:
    """Write a GRD product at ``path`` (``<id>.zarr``) and return its EOPF-style STAC item."""
    target = Path(path).resolve()
    product_id = target.name.removesuffix(".zarr")
    start = datetime(2024, 2, 1, 17, 24, 4, tzinfo=UTC)
    rng = np.random.default_rng(seed)
    root = zarr.open_group(
        LocalStore(target),
        mode="w",
        zarr_format=2,
        attributes={
            "stac_discovery": {
                "id": product_id,
                "properties": {
                    "product:type": S1_PRODUCT_TYPE,
                    "sar:instrument_mode": "IW",
                    "sar:polarizations": list(POLARISATIONS),
                    "start_datetime": start.isoformat(),
                },
            },
            "other_metadata": {"eopf_category": "eoproduct"},
        },
    )
    ny, nx = shape
    for pol in POLARISATIONS:
        group = root.require_group(f"{S1_PRODUCT_TYPE}_20240201T172404_052345_{pol}")
        grd = rng.integers(20, 900, size=shape, dtype=np.uint16)
        grd[:, :5] = 0  # no-data margin, as GRD swaths have
        measurements = group.require_group("measurements")
        if map_grid:
            x = origin[0] + pixel * (np.arange(nx) + 0.5)
            y = origin[1] - pixel * (np.arange(ny) + 0.5)
            dims = ["y", "x"]
            _array(measurements, "x", x, {"_ARRAY_DIMENSIONS": ["x"]}, None)
            _array(measurements, "y", y, {"_ARRAY_DIMENSIONS": ["y"]}, None)
            extra = {
                "proj:epsg": crs_epsg,
                "proj:shape": [ny, nx],
                "proj:transform": [pixel, 0.0, origin[0], 0.0, -pixel, origin[1], 0, 0, 1],
            }
        else:
            azimuth = (np.arange(ny) * 1_500_000 + 1_706_808_244_000_000_000).astype("<i8")
            dims = ["azimuth_time", "ground_range"]
            _array(
                measurements,
                "azimuth_time",
                azimuth,
                {"_ARRAY_DIMENSIONS": ["azimuth_time"], "units": "nanoseconds since 1970-01-01"},
                None,
            )
            _array(
                measurements,
                "ground_range",
                np.arange(nx) * pixel,
                {"_ARRAY_DIMENSIONS": ["ground_range"], "units": "m"},
                None,
            )
            _array(
                measurements, "line", np.arange(ny), {"_ARRAY_DIMENSIONS": ["azimuth_time"]}, None
            )
            _array(
                measurements, "pixel", np.arange(nx), {"_ARRAY_DIMENSIONS": ["ground_range"]}, None
            )
            gcp = group.require_group("conditions/gcp")
            tie = np.linspace(51.3, 51.4, 4 * 5).reshape(4, 5)
            for name, values in (("latitude", tie), ("longitude", tie - 47.0), ("height", tie * 0)):
                _array(
                    gcp, name, values, {"_ARRAY_DIMENSIONS": ["azimuth_time", "ground_range"]}, None
                )
            extra = {}
        _array(
            measurements,
            "grd",
            grd,
            {
                "_ARRAY_DIMENSIONS": dims,
                "long_name": f"measurement of {pol} backscatter amplitude (digital number)",
                "fill_value": 0,
                **extra,
            },
            0,
        )
    zarr.consolidate_metadata(LocalStore(target), zarr_format=2)
    lon, lat = 4.43, 51.43
    item = pystac.Item(
        id=product_id,
        geometry={
            "type": "Polygon",
            "coordinates": [
                [
                    [lon, lat],
                    [lon + 0.02, lat],
                    [lon + 0.02, lat - 0.01],
                    [lon, lat - 0.01],
                    [lon, lat],
                ]
            ],
        },
        bbox=[lon, lat - 0.01, lon + 0.02, lat],
        datetime=start + timedelta(seconds=12),
        properties={
            "platform": "sentinel-1a",
            "constellation": "sentinel-1",
            "product:type": S1_PRODUCT_TYPE,
            "sar:product_type": "GRD",
            "sar:instrument_mode": "IW",
            "sar:polarizations": list(POLARISATIONS),
            "proj:code": f"EPSG:{crs_epsg}",
        },
    )
    item.add_asset(
        "product",
        pystac.Asset(href=str(target), media_type=ZARR_MEDIA_TYPE, roles=["data", "metadata"]),
    )
    return item


def _array(group: zarr.Group, name: str, data: np.ndarray, attrs: dict, fill: int | None) -> None:
    array = group.create_array(
        name,
        shape=data.shape,
        chunks=data.shape,
        dtype=data.dtype,
        fill_value=fill,
        compressors=COMPRESSOR,
        attributes=attrs,
    )
    array[...] = data
