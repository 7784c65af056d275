"""End-to-end mosaics of the synthetic archive, measured against its truth."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from odc.geo.xr import ODCExtension  # noqa: F401 - registers .odc

import cloudfree
from cloudfree.catalog.validation import validate_stac_tree
from cloudfree.errors import InvalidInputError
from cloudfree.testing.evaluate import composite_errors

START, END = "2021-11-01", "2022-04-30"


def run(archive, tmp_path, name="m", **options):
    defaults = dict(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date=START,
        end_date=END,
        bands=["red", "green", "blue", "nir"],
        crs="EPSG:2157",
        resolution=10.0,
        chunk_size=128,
        out=str(tmp_path / f"{name}.zarr"),
    )
    defaults.update(options)
    return cloudfree.mosaic(**defaults)


@pytest.fixture(scope="module")
def scl_median(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scl")
    result = run(archive, tmp, cloud_mask="scl", method="median", cog_dir=str(tmp / "cogs"))
    return result, tmp


def test_output_contract(scl_median):
    result, _ = scl_median
    ds = xr.open_zarr(result.out)
    assert set(ds.data_vars) == {"red", "green", "blue", "nir", "observations"}
    for name in ("red", "green", "blue", "nir"):
        var = ds[name]
        assert var.dims == ("time", "y", "x")
        assert var.dtype == np.float64 or var.dtype == np.float32
        enc = var.encoding
        assert enc["dtype"] == np.int16
        assert enc["scale_factor"] == pytest.approx(1e-4)
        assert enc["add_offset"] == 0
        assert enc["_FillValue"] == -32768
        assert var.attrs["grid_mapping"] == "spatial_ref"
    assert ds.observations.dtype == np.uint16
    assert ds.time.values[0] == np.datetime64("2021-11-01")
    assert ds.odc.crs == "EPSG:2157"
    assert "crs_wkt" in ds.spatial_ref.attrs
    # GeoZarr attributes agree with the CF grid
    a = ds.odc.geobox.affine
    assert ds.attrs["proj:code"] == "EPSG:2157"
    assert ds.attrs["spatial:transform"] == pytest.approx([a.a, a.b, a.c, a.d, a.e, a.f])
    assert ds.attrs["spatial:shape"] == list(ds.odc.geobox.shape.yx)
    names = {c["name"] for c in ds.attrs["zarr_conventions"]}
    assert names == {"proj:", "spatial:"}
    values = ds.red.isel(time=0).values
    assert np.nanmin(values) >= -0.1 and np.nanmax(values) < 1.0


def test_scl_median_is_close_to_truth_and_mask_matters(scl_median, archive, tmp_path):
    result, _ = scl_median
    masked = composite_errors(result.out, archive)
    unmasked = composite_errors(run(archive, tmp_path, cloud_mask="none").out, archive)
    for band in ("red", "green", "blue", "nir"):
        assert masked[band].pixels > 40_000
        # measured: MAE 0.002-0.004 reflectance, the archive's noise is 0.003
        assert masked[band].mae < 0.006, masked[band]
        assert abs(masked[band].bias) < 0.004, masked[band]
        assert unmasked[band].mae > 5 * masked[band].mae, (band, unmasked[band], masked[band])


def test_same_solar_day_is_counted_once(archive, tmp_path):
    """Over the overlap of the two tiles, each date is one observation, not two."""
    result = run(archive, tmp_path, bbox=archive.overlap_bbox(), cloud_mask="none", bands=["red"])
    ds = xr.open_zarr(result.out)
    observations = ds.observations.isel(time=0).values
    dates = {s.datetime.date() for s in archive.scenes}
    edge_dates = {s.datetime.date() for s in archive.scenes if s.swath_edge}
    assert observations.max() == len(dates)
    assert observations.min() >= len(dates) - len(edge_dates)


def test_no_gap_or_seam_across_the_utm_zones(archive, tmp_path):
    result = run(archive, tmp_path, bbox=archive.overlap_bbox(), resolution=10.0, bands=["red"])
    ds = xr.open_zarr(result.out)
    red = ds.red.isel(time=0)
    assert int(red.isnull().sum()) == 0, "nodata inside the area both tiles cover"
    truth = archive.truth(ds.odc.geobox, "red")
    error = np.abs(red.values - truth)
    # no column (the zone boundary at lon -6 runs through this area) is worse than the rest
    per_column = np.median(error, axis=0)
    assert per_column.max() < 0.01
    assert np.median(error) < 0.004


def test_offsets_follow_the_baseline_not_the_date(archive, tmp_path):
    """2021-11-18: 29UPV is baseline 03.01 (no offset), 30UUE is 05.00 (DN + 1000).

    One day only, so each pixel is that day's value; a misapplied offset would put a 0.1 step
    between the two tiles' areas.
    """
    day = "2021-11-18"
    result = run(archive, tmp_path, start_date=day, end_date=day, bands=["red", "nir"])
    ds = xr.open_zarr(result.out)
    assert int(ds.observations.max()) == 1
    gbox = ds.odc.geobox
    tiles = {t.id: t for t in archive.tiles}
    x_lon = gbox.extent.to_crs("EPSG:4326")
    assert x_lon.boundingbox.left < tiles["29UPV"].bbox_lonlat[0] + 0.01
    for band in ("red", "nir"):
        diff = ds[band].isel(time=0).values - archive.truth(gbox, band)
        lon = _pixel_longitudes(gbox)
        west = np.isfinite(diff) & (lon < tiles["30UUE"].bbox_lonlat[0])  # 29UPV only
        east = np.isfinite(diff) & (lon > tiles["29UPV"].bbox_lonlat[2])  # 30UUE only
        assert west.sum() > 1000 and east.sum() > 1000
        west_error, east_error = np.median(diff[west]), np.median(diff[east])
        # the day's own radiometric gain (+-2%) is shared by both tiles; an offset error is 0.1
        assert abs(west_error) < 0.015 and abs(east_error) < 0.015, (band, west_error, east_error)
        assert abs(west_error - east_error) < 0.005, (band, west_error, east_error)


def _pixel_longitudes(gbox):
    from pyproj import Transformer

    coords = gbox.coordinates
    xs, ys = np.meshgrid(coords["x"].values, coords["y"].values)
    lon, _ = Transformer.from_crs(gbox.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return lon


def test_tile_size_does_not_change_the_result(archive, tmp_path):
    """Tiles of 128 and 512 px give the same mosaic, bit for bit (cloudfree.readers.warp)."""
    a = xr.open_zarr(run(archive, tmp_path, name="a", chunk_size=128, bands=["red"]).out)
    b = xr.open_zarr(run(archive, tmp_path, name="b", chunk_size=512, bands=["red"]).out)
    assert set(a.data_vars) == set(b.data_vars) == {"red", "observations"}
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_cog_per_period_in_request_order(archive, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    cogs = tmp_path / "cogs"
    result = run(archive, tmp_path, period="quarter", bands=["nir", "red"], cog_dir=str(cogs))
    assert [p.label for p in result.periods] == ["2021-10-01", "2022-01-01", "2022-04-01"]
    assert sorted(p.name for p in cogs.iterdir()) == [
        "2021-10-01.tif",
        "2022-01-01.tif",
        "2022-04-01.tif",
    ]
    ds = xr.open_zarr(result.out)
    for index, period in enumerate(result.periods):
        path = cogs / f"{period.label}.tif"
        valid, errors, _ = cog_validate(str(path))
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.descriptions == ("nir", "red")
            assert src.dtypes == ("int16", "int16")
            assert src.nodata == -32768
            assert src.scales == (1e-4, 1e-4)
            assert src.crs.to_epsg() == 2157
            assert src.overviews(1)
            nir = src.read(1)
        stored = ds.nir.isel(time=index).values
        decoded = np.where(nir == -32768, np.nan, nir * 1e-4)
        np.testing.assert_allclose(decoded, stored, equal_nan=True)


def test_cog_compression_is_a_choice_with_the_same_pixels(archive, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    pixels = {}
    for codec in ("deflate", "zstd"):
        cogs = tmp_path / codec
        run(archive, tmp_path, name=codec, bands=["red"], cog_dir=str(cogs), cog_compression=codec)
        (path,) = cogs.iterdir()
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as src:
            assert src.compression.name == codec and src.overviews(1)
            assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
            pixels[codec] = src.read()
    np.testing.assert_array_equal(pixels["deflate"], pixels["zstd"])
    with pytest.raises(InvalidInputError, match=r"--cog-compression .lzma. .*deflate, zstd"):
        run(archive, tmp_path, name="lzma", cog_dir=str(tmp_path / "x"), cog_compression="lzma")


def test_stac_output_validates_and_points_at_the_outputs(scl_median):
    result, tmp = scl_median
    assert result.catalog == str(tmp / "m.stac" / "collection.json")
    assert validate_stac_tree(result.catalog) == 2
    import json

    item = json.loads((tmp / "m.stac" / "m-2021-11-01" / "m-2021-11-01.json").read_text())
    assert item["properties"]["proj:code"] == "EPSG:2157"
    assert item["properties"]["start_datetime"] == "2021-11-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2022-04-30T23:59:59Z"
    cog = (tmp / "m.stac" / "m-2021-11-01" / item["assets"]["cog"]["href"]).resolve()
    assert cog == (tmp / "cogs" / "2021-11-01.tif").resolve()
    assert [b["name"] for b in item["assets"]["cog"]["bands"]] == ["red", "green", "blue", "nir"]
    assert item["assets"]["cog"]["raster:bands"][0]["scale"] == pytest.approx(1e-4)
    thumb = tmp / "m.stac" / "m-2021-11-01" / item["assets"]["thumbnail"]["href"]
    assert thumb.name == "thumbnail.png"
    import hashlib

    assert (
        item["assets"]["thumbnail"]["file:checksum"]
        == "1220" + hashlib.sha256(thumb.read_bytes()).hexdigest()
    )
    from PIL import Image

    with Image.open(thumb) as image:
        assert image.mode == "RGBA"
        assert image.size == (
            xr.open_zarr(result.out).sizes["x"],
            xr.open_zarr(result.out).sizes["y"],
        )


def test_cdse_l3_preset(archive, tmp_path):
    result = run(archive, tmp_path, name="l3", preset="cdse-l3", bands=["red"])
    assert [p.label for p in result.periods] == ["2021-10-01", "2022-01-01", "2022-04-01"]
    manual = run(
        archive,
        tmp_path,
        name="manual",
        method="cdse-l3",
        same_day="latest",
        mask_options={
            "valid_classes": "dark_area_pixels,vegetation,not_vegetated,water,snow",
            "opening_m": 0,
            "dilation_m": 0,
        },
        period="quarter",
        bands=["red"],
    )
    a, b = xr.open_zarr(result.out), xr.open_zarr(manual.out)
    np.testing.assert_array_equal(a.red.values, b.red.values, strict=True)
    assert a.red.encoding["_FillValue"] == -32768 and a.red.encoding["dtype"] == np.int16
    assert "observations" in a
    # the observation at floor(n/4) is not numpy's interpolated first quartile, and never above
    # the median
    q25 = xr.open_zarr(
        run(
            archive,
            tmp_path,
            name="q25",
            method="quantile",
            quantile=0.25,
            period="quarter",
            bands=["red"],
            mask_options={"preset": "cdse-l3", "opening_m": 0, "dilation_m": 0},
        ).out
    )
    both = np.isfinite(a.red.values) & np.isfinite(q25.red.values)
    assert np.any(a.red.values[both] != q25.red.values[both])
    median = xr.open_zarr(
        run(
            archive,
            tmp_path,
            name="med",
            period="quarter",
            same_day="latest",
            bands=["red"],
            mask_options={"preset": "cdse-l3", "opening_m": 0, "dilation_m": 0},
        ).out
    )
    both = np.isfinite(a.red.values) & np.isfinite(median.red.values)
    assert np.all(a.red.values[both] <= median.red.values[both] + 1e-9)


def test_geographic_grid_in_degrees(archive, tmp_path):
    result = run(
        archive,
        tmp_path,
        crs="EPSG:4326",
        resolution=0.0002,
        bbox=archive.overlap_bbox(),
        bands=["red"],
    )
    ds = xr.open_zarr(result.out)
    assert ds.odc.crs == "EPSG:4326"
    assert ds.odc.geobox.resolution.x == pytest.approx(0.0002)
    errors = composite_errors(result.out, archive)
    assert errors["red"].mae < 0.01


def test_geometry_file_clips_the_mosaic(archive, tmp_path):
    import json

    minx, miny, maxx, maxy = archive.overlap_bbox()
    triangle = [[minx, miny], [maxx, miny], [(minx + maxx) / 2, maxy], [minx, miny]]
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [triangle]}))
    result = run(archive, tmp_path, bbox=None, geometry_file=str(path), bands=["red"])
    ds = xr.open_zarr(result.out)
    red = ds.red.isel(time=0).values
    ny, nx = red.shape
    # top corners are outside the triangle, bottom centre inside
    assert np.isnan(red[1, 1]) and np.isnan(red[1, nx - 2])
    assert np.isfinite(red[ny - 3, nx // 2])
    assert ds.observations.isel(time=0).values[1, 1] == 0


def test_outputs_to_an_fsspec_url(archive):
    """Store, COG, quick-look and STAC go through fsspec for any URL (memory:// here)."""
    import fsspec

    root = "memory://cloudfree-test"
    result = cloudfree.mosaic(
        stac=str(archive.catalog),
        bbox=archive.overlap_bbox(),
        start_date=START,
        end_date=END,
        bands=["red"],
        crs="EPSG:2157",
        resolution=20.0,
        chunk_size=128,
        out=f"{root}/m.zarr",
        cog_dir=f"{root}/cogs",
    )
    fs = fsspec.filesystem("memory")
    assert result.catalog == f"{root}/m.stac/collection.json"
    assert fs.exists("/cloudfree-test/cogs/2021-11-01.tif")
    assert fs.exists("/cloudfree-test/m.stac/m-2021-11-01/thumbnail.png")
    ds = xr.open_zarr(f"{root}/m.zarr")
    assert float(ds.red.notnull().mean()) > 0.95
    fs.rm("/cloudfree-test", recursive=True)


def test_thread_count_does_not_change_the_result(archive, tmp_path):
    one = xr.open_zarr(run(archive, tmp_path, name="t1", threads=1, bands=["red", "nir"]).out)
    two = xr.open_zarr(run(archive, tmp_path, name="t2", threads=2, bands=["red", "nir"]).out)
    xr.testing.assert_identical(one.load(), two.load())
