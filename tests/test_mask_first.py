"""Bands read after the cloud mask, only where it keeps a pixel: the same mosaics, less decoded."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from odc.geo.geobox import GeoBox
from tests.job_options import mosaic_options

import cloudfree
from cloudfree import load, pipeline
from cloudfree.bands import BANDS
from cloudfree.config import ReadSettings
from cloudfree.load import (
    LoadOptions,
    clear_windows,
    fill_outside,
    load_mask_first,
    load_stack,
)
from cloudfree.masks.scl import SclMask
from cloudfree.pipeline import build_request, reads_bands_where_clear
from cloudfree.scene import BandAsset, Scene
from cloudfree.stack import NODATA, Stack

CRS = "EPSG:32629"
BOUNDS = (600_000, 5_900_000, 603_840, 5_902_560)  # 384 x 256 px at 10 m
GRID = GeoBox.from_bbox(BOUNDS, CRS, resolution=10)
OPTIONS = LoadOptions((BANDS["B04"], BANDS["B08"]), mask_layers=(BANDS["SCL"],))


def write(path, data, resolution):
    gbox = GeoBox.from_bbox(BOUNDS, CRS, resolution=resolution)
    profile = dict(
        driver="GTiff", width=gbox.shape.x, height=gbox.shape.y, count=1,
        dtype=data.dtype.name, crs=CRS, transform=gbox.affine, nodata=0,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def scene(tmp_path, name, day, scl, *, bands_exist=True):
    """A scene whose SCL is ``scl`` (20 m); its bands are missing files unless ``bands_exist``."""
    rng = np.random.default_rng(day)
    assets = {"SCL": BandAsset(write(tmp_path / f"{name}_SCL.tif", scl, 20), 1.0, 0.0, 0, 20)}
    for band in ("B04", "B08"):
        path = tmp_path / f"{name}_{band}.tif"
        if bands_exist:
            write(path, rng.integers(1000, 5000, GRID.shape.yx, dtype=np.uint16), 10)
        assets[band] = BandAsset(str(path), 1e-4, -0.1, 0, 10)
    return Scene(
        id=name, datetime=datetime(2022, 3, day, 11, 45, tzinfo=UTC),
        footprint=GRID.extent.to_crs("EPSG:4326"), bands=assets, crs=CRS, tile=None,
        cloud_cover=10.0, processing_baseline=None, provider="test",
    )  # fmt: skip


def scl_mask(stack: Stack) -> np.ndarray:
    return SclMask(opening_m=0, dilation_m=0)(stack, 10.0)


def test_a_day_without_a_clear_pixel_has_its_bands_never_opened(tmp_path):
    cloudy = scene(tmp_path, "cloudy", 2, np.full((128, 192), 9, np.uint8), bands_exist=False)
    clear = scene(tmp_path, "clear", 3, np.full((128, 192), 4, np.uint8))
    # the cloudy day's band files do not exist: reading them would raise a ReadError
    stack, verdict = load_mask_first(GRID, [cloudy, clear], OPTIONS, ReadSettings(), scl_mask)
    assert stack.days == (cloudy.solar_day, clear.solar_day)
    assert not verdict[0].any() and verdict[1].all()
    assert np.all(stack.data[0] == NODATA) and not stack.has_values[0].any()
    whole = load_stack(GRID, [clear], OPTIONS, ReadSettings())
    np.testing.assert_array_equal(stack.data[1], whole.data[0])
    np.testing.assert_array_equal(stack.has_values[1], whole.has_values[0])


@pytest.mark.parametrize("halo", [0, 5])
def test_bands_are_read_in_the_blocks_with_a_clear_pixel_only(tmp_path, monkeypatch, halo):
    monkeypatch.setattr(load, "SKIP_BLOCK", 64)
    scl = np.full((128, 192), 9, np.uint8)
    scl[40, 100] = 4  # one clear 20 m pixel: rows 80-81, columns 200-201 at 10 m
    scl[100:110, 10:20] = 5  # rows 200-219, columns 20-39
    day = scene(tmp_path, "patchy", 2, scl)
    stack, verdict = load_mask_first(GRID, [day], OPTIONS, ReadSettings(), scl_mask, halo)
    whole = load_stack(GRID, [day], OPTIONS, ReadSettings())
    read = stack.data[0, 0] != NODATA
    # the 64 px blocks (from the halo's inner corner) of the clear pixels, and nothing else
    expected = np.zeros(GRID.shape.yx, dtype=bool)
    y0, x0 = halo + 64, halo + 192
    expected[y0 : y0 + 64, x0 : x0 + 64] = True
    expected[halo + 192 : halo + 256, halo : halo + 64] = True
    expected[:halo] = expected[GRID.shape.y - halo :] = False
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_array_equal(stack.data[0][:, read], whole.data[0][:, read])
    # where the day has data: as read whole inside the windows, nowhere else
    np.testing.assert_array_equal(stack.has_values[0], whole.has_values[0] & read)
    np.testing.assert_array_equal(verdict, scl_mask(whole.for_mask()))


@pytest.mark.parametrize(
    ("dtype", "scale", "offset"),
    [
        ("uint16", 1e-4, -0.1),  # DN - 1000 in integers, presence kept as the band is written
        ("uint16", 2.5e-5, 0.0),  # a lookup table
        ("float32", 1e-4, 0.0),  # float DNs, converted one by one
    ],
)
def test_presence_is_a_whole_reads_inside_the_windows_on_every_conversion(
    tmp_path, monkeypatch, dtype, scale, offset
):
    """Bands missing here and there, and a tile reaching past the scenes: as read whole."""
    monkeypatch.setattr(load, "SKIP_BLOCK", 64)
    rng = np.random.default_rng(5)
    days = []
    for day in (2, 3):
        scl = rng.choice(np.array([4, 5, 9], np.uint8), (128, 192))
        scl[:10] = 0  # no SCL there
        assets = {"SCL": BandAsset(write(tmp_path / f"{day}_SCL.tif", scl, 20), 1.0, 0.0, 0, 20)}
        for b, band in enumerate(("B04", "B08")):
            data = rng.integers(500, 9000, GRID.shape.yx).astype(dtype)
            data[rng.random(data.shape) < 0.03] = 0  # this band has no value here
            data[100 + 20 * b : 140 + 20 * b, 50:90] = 0
            path = write(tmp_path / f"{day}_{band}.tif", data, 10)
            if b == day - 2:  # day 2's first band, day 3's second, ends 64 px short of the SCL
                with rasterio.open(path) as src:
                    profile = src.profile | {"width": src.width - 64}
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(data[:, :-64], 1)
            assets[band] = BandAsset(path, scale, offset, 0, 10)
        when = datetime(2022, 3, day, 11, 45, tzinfo=UTC)
        footprint = GRID.extent.to_crs("EPSG:4326")
        days.append(
            Scene(
                id=f"d{day}",
                datetime=when,
                footprint=footprint,
                bands=assets,
                crs=CRS,
                tile=None,
                cloud_cover=10.0,
                processing_baseline=None,
                provider="test",
            )
        )
    # the tile reaches 40 px past the scenes' east edge and 24 px past their north edge
    tile = GeoBox((200, 300), GRID.affine * Affine.translation(124, -24), CRS)
    stack, verdict = load_mask_first(tile, days, OPTIONS, ReadSettings(), scl_mask)
    whole = load_stack(tile, days, OPTIONS, ReadSettings())
    read = stack.data[:, 0] != NODATA
    assert read.any() and not read.all()
    np.testing.assert_array_equal(stack.has_values, whole.has_values & read)
    np.testing.assert_array_equal(
        np.where(stack.has_values[:, None], stack.data, 0),
        np.where(stack.has_values[:, None], whole.data, 0),
    )
    # absent pixels hold no value in any band
    assert (stack.data.transpose(1, 0, 2, 3)[:, ~stack.has_values] == NODATA).all()
    np.testing.assert_array_equal(verdict, scl_mask(whole.for_mask()))


def test_several_scenes_of_a_day_are_read_whole_and_merged(tmp_path):
    left = np.full((128, 192), 4, np.uint8)
    left[:, 96:] = 0  # this scene ends half way: the other fills the right half
    a = scene(tmp_path, "a", 2, left)
    b = scene(tmp_path, "b", 2, np.full((128, 192), 9, np.uint8))
    stack, verdict = load_mask_first(GRID, [a, b], OPTIONS, ReadSettings(), scl_mask)
    whole = load_stack(GRID, [a, b], OPTIONS, ReadSettings())
    np.testing.assert_array_equal(stack.data, whole.data)
    np.testing.assert_array_equal(stack.scl, whole.scl)
    assert verdict[0, :, :192].all() and not verdict[0, :, 192:].any()


def test_a_mask_judges_by_its_own_layers():
    """A cloud where a band has no value still buffers its neighbours, whatever the bands."""
    data = np.full((1, 1, 40, 40), 1000, np.int16)
    data[0, 0, :, :20] = NODATA  # the band ends at column 20 ...
    scl = np.full((1, 40, 40), 4, np.uint8)
    scl[0, 15:25, 10:19] = 9  # ... and a cloud lies just before it
    stack = Stack(
        geobox=GeoBox.from_bbox((0, 0, 400, 400), CRS, resolution=10), days=(None,) * 1,
        bands=("B04",), data=data, layers={"SCL": scl},
    )  # fmt: skip
    mask = SclMask(opening_m=0, dilation_m=30)
    clear = mask(stack.for_mask(), 10.0)
    assert not clear[0, 20, 20]  # 2 px from the cloud, inside the buffer
    assert clear[0, 20, 30] and clear[0, 5, 5]  # beyond it; and where the band has no value
    bandless = Stack(stack.geobox, stack.days, (), data[:, :0], {"SCL": scl}).for_mask()
    np.testing.assert_array_equal(mask(bandless, 10.0), clear)


@settings(max_examples=150, deadline=None)
@given(
    clear=arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    halo=st.integers(0, 4),
    block=st.integers(1, 9),
)
def test_windows_cover_every_clear_block_and_only_rows_of_blocks_with_one(clear, halo, block):
    ny, nx = clear.shape
    windows = clear_windows(clear, halo, block)
    covered = np.zeros(clear.shape, dtype=int)
    for rows, cols in windows:
        assert halo <= rows.start < rows.stop <= ny - halo
        assert halo <= cols.start < cols.stop <= nx - halo
        covered[rows, cols] += 1
        # rows and columns start and end on the block grid (or the inner edge)
        assert (rows.start - halo) % block == 0 and (cols.start - halo) % block == 0
        for y in range(rows.start, rows.stop, block):
            assert clear[y : min(y + block, rows.stop), cols].any()  # no row of blocks for nothing
    inner = np.zeros(clear.shape, dtype=bool)
    inner[halo : ny - halo, halo : nx - halo] = True
    assert covered.max(initial=0) <= 1
    assert np.all(covered[clear & inner] == 1)
    # what the windows' reads do not write is "no data", and nothing they write is touched
    values = np.full((2, ny, nx), 7, dtype=np.int16)
    fill_outside(values, windows, NODATA)
    np.testing.assert_array_equal(values[1], np.where(covered == 1, 7, NODATA))
    np.testing.assert_array_equal(values[0], values[1])


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("median", {}),  # warped onto the Irish grid, SCL clean-up with a halo
        ("medoid", {"provenance": True}),
        ("geomedian", {}),
        ("quantile", {"quantile": 0.25}),
        ("median", {"crs": "EPSG:32629", "resolution": 10.0, "chunk_size": 96}),  # pasted
        ("mean", {"cloud_mask": "scl", "mask_options": {"opening_m": 0, "dilation_m": 0}}),
    ],
)
def test_mosaics_equal_those_read_whole(archive, tmp_path, monkeypatch, method, extra):
    monkeypatch.setattr(load, "SKIP_BLOCK", 16)  # the archive's tiles are small
    options = dict(method=method, **extra)
    request = build_request(**mosaic_options(archive, tmp_path / "first.zarr", **options))
    assert reads_bands_where_clear(request, grid_of(request))
    first = cloudfree.mosaic(**mosaic_options(archive, tmp_path / "first.zarr", **options))
    monkeypatch.setattr(pipeline, "reads_bands_where_clear", lambda request, geobox: False)
    whole = cloudfree.mosaic(**mosaic_options(archive, tmp_path / "whole.zarr", **options))
    a = xr.open_zarr(first.out, mask_and_scale=False, decode_times=False).load()
    b = xr.open_zarr(whole.out, mask_and_scale=False, decode_times=False).load()
    assert float((a["observations"] > 0).mean()) > 0.5
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def grid_of(request):
    """The output grid of a request."""
    return pipeline.plan(request, pipeline.search(request)).geobox


def test_methods_and_options_that_need_every_observation_read_everything(archive, tmp_path):
    def request(**options):
        built = build_request(**mosaic_options(archive, tmp_path / "x.zarr", **options))
        return reads_bands_where_clear(built, grid_of(built))

    assert request(method="median")
    assert not request(method="best-pixel", bands=["blue", "red", "nir"])  # cloud distance
    assert not request(method="median", min_clear_fraction=0.3)  # counts them
    assert not request(method="median", resampling="cubic")  # a window is not a tile there
    assert not request(method="median", cloud_mask="none")  # no layers to judge first
