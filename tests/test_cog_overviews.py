"""COG overview levels made tile by tile equal GDAL's, and the COG they give is the same."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from odc.geo.geobox import GeoBox, GeoboxTiles
from rio_cogeo.cogeo import cog_validate

from cloudfree.stack import ENCODINGS, Output
from cloudfree.store import cog
from cloudfree.store.cog import write_period_cog
from cloudfree.store.overviews import overview_factors, tile_levels, tiles_divide

NODATA = int(ENCODINGS[Output.REFLECTANCE].nodata)


def reflectance(shape, seed=1):
    """int16 values around zero (negative reflectance), nodata in a corner and scattered."""
    rng = np.random.default_rng(seed)
    data = rng.integers(-40, 40, size=shape).astype(np.int16)
    data[rng.random(shape) < 0.3] = NODATA
    data[..., :64, :64] = NODATA
    return data


def test_levels_equal_gdals_average_overviews(tmp_path):
    data = reflectance((2, 1024, 1024))
    profile = dict(
        driver="GTiff", width=1024, height=1024, count=2, dtype="int16", nodata=NODATA,
        crs="EPSG:32629", transform=Affine(10, 0, 0, 0, -10, 0), tiled=True,
        blockxsize=256, blockysize=256,
    )  # fmt: skip
    with rasterio.open(tmp_path / "image.tif", "w", **profile) as dst:
        dst.write(data)
    rasterio.shutil.copy(
        tmp_path / "image.tif", tmp_path / "cog.tif", driver="COG", BLOCKSIZE="256",
        OVERVIEW_RESAMPLING="AVERAGE",
    )  # fmt: skip
    factors = overview_factors((1024, 1024), 256)
    assert factors == [2, 4]
    ours = tile_levels(data, NODATA, len(factors))
    for level, mine in enumerate(ours):
        with rasterio.open(tmp_path / "cog.tif", overview_level=level) as src:
            np.testing.assert_array_equal(src.read(), mine)
    # a mean of -2.5 is -3 (away from zero), of 2.5 is 3, of -0.75 is -1; nothing valid: nodata
    n = NODATA
    block = np.array([[[-2, -3, 2, 3, 0, -1, n, n], [n, n, n, n, -1, -1, n, n]]], np.int16)
    np.testing.assert_array_equal(tile_levels(block, NODATA, 1)[0], [[[-3, 3, -1, NODATA]]])


def test_factors_and_divisibility():
    assert overview_factors((4096, 4096), 512) == [2, 4, 8]
    assert overview_factors((512, 300), 512) == []
    assert overview_factors((513, 300), 512) == [2]
    tiles = [(slice(0, 1024), slice(0, 1024)), (slice(1024, 2048), slice(0, 1024))]
    assert tiles_divide((2048, 1024), tiles, 8)
    assert not tiles_divide((2048, 1020), tiles, 8)
    assert not tiles_divide((2048, 1024), [(slice(0, 1020), slice(0, 1024))], 8)


class ArrayStore:
    """What write_period_cog reads of a mosaic store: one period's bands."""

    def __init__(self, bands):
        self.bands = bands

    def read_period(self, name, period_index, ys, xs):
        return self.bands[name][ys, xs]


@pytest.mark.parametrize(
    ("side", "tiles_made"),
    [(1536, 9), (1000, 4), (1002, 0)],  # 1002 does not divide by 4: GDAL makes the levels
)
def test_a_cog_with_its_own_levels_is_gdals(tmp_path, monkeypatch, side, tiles_made):
    geobox = GeoBox((side, side), Affine(10, 0, 600000, 0, -10, 5900000), "EPSG:32629")
    plan = SimpleNamespace(geobox=geobox, tiles=GeoboxTiles(geobox, (512, 512)))
    data = reflectance((2, side, side), seed=2)
    store = ArrayStore({"B04": data[0], "B08": data[1]})
    made = []
    monkeypatch.setattr(cog, "tile_levels", lambda *a: made.append(a) or tile_levels(*a))
    written = {}
    for own in (True, False):
        url = str(tmp_path / f"{own}.tif")
        write_period_cog(store, plan, ["B04", "B08"], 0, url, precompute_overviews=own)
        with rasterio.open(url) as src:
            written[own] = {
                "profile": src.profile,
                "tags": src.tags(),
                "descriptions": src.descriptions,
                "scales": src.scales,
                "offsets": src.offsets,
                "overviews": src.overviews(1),
                "levels": [src.read()]
                + [
                    rasterio.open(url, overview_level=i).read()
                    for i in range(len(src.overviews(1)))
                ],
            }
    mine, gdals = written[True], written[False]
    assert len(made) == tiles_made
    assert cog_validate(str(tmp_path / "True.tif"))[0]
    assert mine["overviews"] == [2, 4]
    for key in ("profile", "tags", "descriptions", "scales", "offsets", "overviews"):
        assert mine[key] == gdals[key], key
    for a, b in zip(mine["levels"], gdals["levels"], strict=True):
        np.testing.assert_array_equal(a, b)


class PeriodsStore:
    """What RunCogs reads of a mosaic store, with a count of the tiles read."""

    def __init__(self, bands):
        self.bands = bands  # name -> (period, y, x)
        self.reads = []

    def read_period(self, name, period_index, ys, xs):
        self.reads.append((name, period_index, ys.start, xs.start))
        return self.bands[name][period_index, ys, xs]


def two_period_plan():
    geobox = GeoBox((1024, 1024), Affine(10, 0, 600000, 0, -10, 5900000), "EPSG:32629")
    tiles = GeoboxTiles(geobox, (512, 512))
    units = [
        SimpleNamespace(key=f"p{p}-y{y}-x{x}", period_index=p, tile=(y, x))
        for p in range(2)
        for y, x in np.ndindex(2, 2)
    ]
    return SimpleNamespace(geobox=geobox, tiles=tiles, units=units)


def pixels(url):
    with rasterio.open(url) as src:
        return src.read()


def test_a_period_cog_is_written_when_its_units_are_done_and_equals_one_made_at_once(tmp_path):
    plan = two_period_plan()
    store = PeriodsStore(
        {"B04": reflectance((2, 1024, 1024), 3), "B08": reflectance((2, 1024, 1024), 4)}
    )
    urls = [str(tmp_path / "run" / f"{p}.tif") for p in range(2)]
    before = {"p1-y0-x0"}  # finished by the run this one resumes
    staged = cog.RunCogs(store, plan, ["B04", "B08"], urls, finished_before=before)
    try:
        period0 = [u for u in plan.units if u.period_index == 0]
        for unit in reversed(period0):
            # a unit run in this process hands over what it wrote: the store is not read
            ys, xs = plan.tiles.roi[unit.tile]
            values = np.stack([store.bands[name][0, ys, xs] for name in ("B04", "B08")])
            staged.unit_finished(unit, values)
        deadline = time.monotonic() + 60
        while not Path(urls[0]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # period 0 is written in the background while period 1 still has units to run
        assert Path(urls[0]).exists()
        assert not Path(urls[1]).exists()
        for unit in plan.units:
            if unit.period_index == 1 and unit.key not in before:
                staged.unit_finished(unit)
        written = staged.results()
    finally:
        staged.discard()
    # period 1's tiles of every band read once (staged once, never re-read); period 0's not
    assert sorted(store.reads) == sorted(set(store.reads))
    assert {period for _, period, _, _ in store.reads} == {1}
    assert len(store.reads) == 2 * 4
    for p, url in enumerate(urls):
        at_once = str(tmp_path / "at-once" / f"{p}.tif")
        checksum, size = write_period_cog(store, plan, ["B04", "B08"], p, at_once)
        assert written[p] == (checksum, size)
        np.testing.assert_array_equal(pixels(url), pixels(at_once))
        assert cog_validate(url)[0]


def test_discarded_staging_leaves_no_files(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    plan = two_period_plan()
    store = PeriodsStore({"B04": reflectance((2, 1024, 1024), 5)})
    urls = [str(tmp_path / f"{p}.tif") for p in range(2)]
    staged = cog.RunCogs(store, plan, ["B04"], urls)
    staged.unit_finished(plan.units[0])
    staged.unit_finished(plan.units[5])
    staged.discard()
    assert store.reads  # something was staged
    assert list(scratch.iterdir()) == []
    assert not any(Path(url).exists() for url in urls)
