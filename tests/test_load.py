"""Reading scenes into a tile: radiometry once, nearest SCL, same-day merge, failures reported."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from cloudfree.access import redact_href
from cloudfree.bands import BANDS
from cloudfree.config import ReadSettings
from cloudfree.errors import InvalidInputError, ReadError
from cloudfree.load import LoadOptions, load_stack, read_pool, reused_stack_memory, to_reflectance
from cloudfree.readers.encode import blank_absent, settle_into
from cloudfree.scene import BandAsset, Scene
from cloudfree.stack import NODATA

CRS = "EPSG:32629"
GRID = GeoBox.from_bbox((600_000, 5_900_000, 600_640, 5_900_640), CRS, resolution=10)


def write(path, data, resolution, nodata=0):
    gbox = GeoBox.from_bbox((600_000, 5_900_000, 600_640, 5_900_640), CRS, resolution=resolution)
    profile = dict(
        driver="GTiff",
        width=gbox.shape.x,
        height=gbox.shape.y,
        count=1,
        dtype=data.dtype.name,
        crs=CRS,
        transform=gbox.affine,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def scene(
    tmp_path, name, dn, scl, offset, cloud_cover=10.0, when=datetime(2022, 3, 1, 11, 45, tzinfo=UTC)
):
    b04 = write(tmp_path / f"{name}_B04.tif", dn, 10)
    scl_path = write(tmp_path / f"{name}_SCL.tif", scl, 20)
    footprint = GRID.extent.to_crs("EPSG:4326")
    return Scene(
        id=name,
        datetime=when,
        footprint=footprint,
        bands={
            "B04": BandAsset(b04, 1e-4, offset, 0, 10),
            "SCL": BandAsset(scl_path, 1.0, 0.0, 0, 20),
        },
        crs=CRS,
        tile=None,
        cloud_cover=cloud_cover,
        processing_baseline=None,
        provider="test",
    )


def test_offset_applied_once_and_negative_reflectance_kept():
    asset = BandAsset("x", 1e-4, -0.1, 0, 10)
    dn = np.array([[np.nan, 1000, 1500, 500]], dtype=np.float32)
    assert to_reflectance(dn, asset).tolist() == [[int(NODATA), 0, 500, -500]]


def test_scl_is_read_with_nearest_and_days_are_merged(tmp_path):
    dn = np.full((64, 64), 1500, np.uint16)
    scl = np.full((32, 32), 4, np.uint8)
    scl[:, 16:] = 9  # right half cloudy at 20 m
    left = dn.copy()
    left[:, 32:] = 0  # a swath edge: this scene only covers the left half
    a = scene(tmp_path, "a", left, scl, offset=-0.1, cloud_cover=5)
    b = scene(tmp_path, "b", dn + 1100, scl, offset=-0.2, cloud_cover=50)
    stack = load_stack(
        GRID, [a, b], LoadOptions((BANDS["B04"],), mask_layers=(BANDS["SCL"],)), ReadSettings()
    )
    assert len(stack.days) == 1  # same solar day, merged
    assert set(np.unique(stack.scl)) == {4, 9}  # nearest: no interpolated class values
    # left half from scene a (lower cloud cover), right half filled from scene b
    assert stack.data[0, 0, 10, 5] == 500
    assert stack.data[0, 0, 10, 50] == 600
    assert np.all(stack.data != NODATA)


def test_mask_layers_are_kept_where_the_bands_have_no_value(tmp_path):
    """A mask judges by its own layers: the merge keeps them where no scene has data."""
    dn = np.full((64, 64), 1500, np.uint16)
    dn[:, :16] = 0  # neither scene has B04 in the first 16 columns
    scl_a = np.full((32, 32), 9, np.uint8)
    scl_a[:, :4] = 0  # scene a has no class in the first 8 columns (10 m) either
    a = scene(tmp_path, "a", dn, scl_a, offset=0.0, cloud_cover=5)
    b_dn = np.where(dn == 0, 0, dn + 7).astype(np.uint16)
    b = scene(tmp_path, "b", b_dn, np.full((32, 32), 4, np.uint8), 0.0, cloud_cover=50)
    options = LoadOptions((BANDS["B04"],), mask_layers=(BANDS["SCL"],))
    merged = load_stack(GRID, [a, b], options, ReadSettings())
    assert np.all(merged.data[0, 0, :, :16] == NODATA) and not merged.has_data[0, :, :16].any()
    assert np.all(merged.scl[0, :, :8] == 4)  # from b, the only scene with a class there
    assert np.all(merged.scl[0, :, 8:] == 9)  # from a: first by cloud cover, data or not
    assert np.all(merged.data[0, 0, :, 16:] == 1500)
    alone = load_stack(GRID, [a], options, ReadSettings())
    assert np.all(alone.scl[0, :, 8:] == 9) and np.all(alone.scl[0, :, :8] == 0)
    np.testing.assert_array_equal(alone.for_mask().has_data[0], alone.scl[0] != 0)


def test_same_day_rule_latest_takes_the_newest_scene_first(tmp_path):
    dn = np.full((64, 64), 1500, np.uint16)
    scl = np.full((32, 32), 4, np.uint8)
    early = scene(tmp_path, "early", dn, scl, offset=0.0, cloud_cover=1)
    late = scene(
        tmp_path, "late", dn + 7, scl, 0.0, cloud_cover=90,
        when=datetime(2022, 3, 1, 11, 55, tzinfo=UTC),
    )  # fmt: skip
    bands = (BANDS["B04"],)
    cloudy_last = load_stack(GRID, [late, early], LoadOptions(bands), ReadSettings())
    newest = load_stack(GRID, [early, late], LoadOptions(bands, same_day="latest"), ReadSettings())
    assert cloudy_last.data[0, 0, 5, 5] == 1500 and newest.data[0, 0, 5, 5] == 1507
    with pytest.raises(InvalidInputError, match="same-day rule"):
        LoadOptions(bands, same_day="first")


def test_a_failing_read_is_retried_then_reported(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="cloudfree")  # whatever an earlier CLI run set
    good = scene(
        tmp_path, "good", np.full((64, 64), 1500, np.uint16), np.full((32, 32), 4, np.uint8), 0.0
    )
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 definitely not a tiff")
    bands = dict(good.bands)
    bands["B04"] = BandAsset(str(corrupt), 1e-4, 0.0, 0, 10)
    broken = Scene(**{**good.__dict__, "id": "broken", "bands": bands})
    with pytest.raises(ReadError, match=r"band B04 of scene 'broken'.*after 2 attempts"):
        load_stack(
            GRID,
            [broken],
            LoadOptions((BANDS["B04"],)),
            ReadSettings(retries=2, retry_backoff=0.0),
        )
    assert "retrying" in caplog.text


def test_hrefs_in_messages_lose_signatures_and_credentials():
    href = "https://user:secret@example.com/a/B04.tif?se=2030&sig=abc%3D"
    assert redact_href(href) == "https://example.com/a/B04.tif"


@pytest.mark.parametrize("output_crs", [CRS, "EPSG:2157"])  # pasted, and warped
def test_cloud_probability_keeps_zero_percent_without_declared_nodata(tmp_path, output_crs):
    """Sen2Cor's 0 % is clear ground, not missing (Earth Search declares nodata 0 on it)."""
    dn = np.full((64, 64), 1500, np.uint16)
    prob = np.zeros((32, 32), np.uint8)
    prob[:, 16:] = 90
    s = scene(tmp_path, "p", dn, np.full((32, 32), 4, np.uint8), offset=0.0)
    cld = write(tmp_path / "p_CLD.tif", prob, 20, nodata=None)
    s = Scene(**{**s.__dict__, "bands": {**s.bands, "CLD": BandAsset(cld, 1.0, 0.0, None, 20)}})
    grid = GRID if output_crs == CRS else GRID.to_crs(output_crs).pad(-3)
    options = LoadOptions((BANDS["B04"],), mask_layers=(BANDS["CLD"],))
    stack = load_stack(grid, [s], options, ReadSettings())
    values = stack.layers["CLD"][0]
    assert set(np.unique(values)) == {0, 90}
    assert (values == 0).mean() > 0.4


def _days(tmp_path):
    """Five days of one scene each; the third has no pixel in the tile (all nodata)."""
    rng = np.random.default_rng(5)
    scenes = []
    for k in range(5):
        dn = rng.integers(500, 3000, (64, 64)).astype(np.uint16)
        dn[rng.random((64, 64)) < 0.1] = 0
        if k == 2:
            dn[:] = 0
        scl = rng.integers(1, 12, (32, 32)).astype(np.uint8)
        when = datetime(2022, 3, 1 + k, 11, 45, tzinfo=UTC)
        scenes.append(scene(tmp_path, f"d{k}", dn, scl, offset=-0.1, when=when))
    return scenes


def test_days_read_concurrently_give_the_stack_read_one_by_one(tmp_path):
    scenes = _days(tmp_path)
    options = LoadOptions((BANDS["B04"],), mask_layers=(BANDS["SCL"],))
    serial = load_stack(GRID, scenes, options, ReadSettings(concurrency=1))
    parallel = load_stack(GRID, scenes, options, ReadSettings(concurrency=4))
    assert len(serial.days) == 4 and 2 not in [d.day - 1 for d in serial.days]  # moved down
    assert parallel.days == serial.days
    np.testing.assert_array_equal(parallel.data, serial.data)
    np.testing.assert_array_equal(parallel.layers["SCL"], serial.layers["SCL"])
    # the presence the loader hands over is what the stack's values say
    np.testing.assert_array_equal(parallel.has_values, parallel.data[:, 0] != NODATA)
    assert not (parallel.has_values & (parallel.layers["SCL"] == 0)).any()


def test_stack_memory_is_reused_only_inside_the_context(tmp_path):
    scenes = _days(tmp_path)
    options = LoadOptions((BANDS["B04"],), mask_layers=(BANDS["SCL"],))
    first = load_stack(GRID, scenes, options, ReadSettings())
    second = load_stack(GRID, scenes, options, ReadSettings())
    assert not np.shares_memory(first.data, second.data)  # a library call keeps its stack
    with reused_stack_memory():
        third = load_stack(GRID, scenes, options, ReadSettings())
        np.testing.assert_array_equal(third.data, first.data)
        fourth = load_stack(GRID, scenes[3:], options, ReadSettings())
        assert np.shares_memory(third.data, fourth.data)  # one tile after the other
        np.testing.assert_array_equal(fourth.data, first.data[2:])
    after = load_stack(GRID, scenes, options, ReadSettings())
    assert not np.shares_memory(after.data, fourth.data)
    with reused_stack_memory():  # the next unit on this thread: the same memory again
        fifth = load_stack(GRID, scenes, options, ReadSettings())
        assert np.shares_memory(fifth.data, third.data)
        np.testing.assert_array_equal(fifth.data, first.data)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_reader_pool():
    read_pool(2).submit(int).result()  # the parent's pool has threads now
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are gone, a new pool must still work
        ok = False
        try:
            ok = read_pool(2).submit(lambda: 41 + 1).result(timeout=10) == 42
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("with_layers", [True, False])
def test_settle_keeps_pixels_with_every_band_and_layer_and_blanks_the_others(with_layers):
    rng = np.random.default_rng(11)
    values = rng.integers(0, 3000, (4, 37, 53)).astype(np.int16)
    values[rng.random(values.shape) < 0.05] = NODATA  # a band without a value here and there
    layers_ok = rng.random((37, 53)) > 0.1 if with_layers else np.empty((0, 0), dtype=bool)
    expected = np.all(values != NODATA, axis=0)
    if with_layers:
        expected &= layers_ok
    before = values.copy()
    present = np.empty((37, 53), dtype=bool)
    settle_into(values, layers_ok, int(NODATA), present)
    np.testing.assert_array_equal(present, expected)
    np.testing.assert_array_equal(values, np.where(expected, before, NODATA))
    # the bands' presence kept as they were read, then the layers and the blanking: the same
    values = before.copy()
    present = np.all(values != NODATA, axis=0)
    blank_absent(values, layers_ok, int(NODATA), present)
    np.testing.assert_array_equal(present, expected)
    np.testing.assert_array_equal(values, np.where(expected, before, NODATA))
