"""Tests of the synthetic Sentinel-2 L2A archive (cloudfree.testing)."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, shape

from cloudfree.bands import SclClass
from cloudfree.errors import InvalidInputError, OutputExistsError, SourceError
from cloudfree.sources.stac import scene_from_item
from cloudfree.testing import SyntheticArchive, SyntheticScene, make_archive
from cloudfree.testing.evaluate import mask_scores, stack_contamination

TILE_SIZE = 256
N_DATES = 12
REFLECTANCE = ("B02", "B03", "B04", "B08")
CLEAR = (SclClass.VEGETATION, SclClass.NOT_VEGETATED, SclClass.WATER)
EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> SyntheticArchive:
    return make_archive(tmp_path_factory.mktemp("synthetic"), seed=42, tile_size=TILE_SIZE)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def scl_at_10m(scene: SyntheticScene) -> np.ndarray:
    return read(scene.band_path("SCL")).repeat(2, axis=0).repeat(2, axis=1)


def scene_on(archive: SyntheticArchive, tile_id: str, day: str) -> SyntheticScene:
    (scene,) = [
        s for s in archive.scenes if s.tile_id == tile_id and s.datetime.date().isoformat() == day
    ]
    return scene


def clear_error(archive: SyntheticArchive, scene: SyntheticScene, offset: int) -> float:
    """Mean |(DN - offset) / 10000 - truth| of B04 over clear pixels of a scene."""
    dn = read(scene.band_path("B04")).astype(np.float64)
    clear = np.isin(scl_at_10m(scene), CLEAR) & (dn > 0)
    assert clear.mean() > 0.2
    truth = archive.truth(archive.tile(scene.tile_id).geobox(), "B04")
    return float(np.mean(np.abs((dn[clear] - offset) / 10000.0 - truth[clear])))


def test_layout_and_counts(archive: SyntheticArchive) -> None:
    assert archive.catalog == archive.root / "catalog.json"
    assert archive.catalog.is_file()
    assert (archive.root / "archive.json").is_file()
    assert archive.collection_id == "sentinel-2-l2a"
    assert len(archive.scenes) == 2 * N_DATES
    for scene in archive.scenes:
        assert scene.item_path.is_file()
        assert scene.item_path.parent.parent.name == "sentinel-2-l2a"
        for band in (*REFLECTANCE, "SCL", "CLD"):
            assert scene.band_path(band).is_file()
    for band in REFLECTANCE:
        assert archive.truth_path(band) == archive.root / "truth" / f"{band}.tif"
        assert archive.truth_path(band).is_file()


def test_cogs_validate(archive: SyntheticArchive) -> None:
    scene_paths = [s.band_path(b) for s in archive.scenes for b in (*REFLECTANCE, "SCL", "CLD")]
    for path in [*scene_paths, *(archive.truth_path(b) for b in REFLECTANCE)]:
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, (path, errors)
        with rasterio.open(path) as ds:
            assert ds.compression == rasterio.enums.Compression.deflate
            assert ds.overviews(1), path
            if path in scene_paths:
                assert ds.block_shapes[0] == (128, 128)


def test_dtype_nodata_and_resolution(archive: SyntheticArchive) -> None:
    scene = archive.scenes[0]
    tile = archive.tile(scene.tile_id)
    with rasterio.open(scene.band_path("B04")) as ds:
        assert ds.dtypes == ("uint16",)
        assert ds.nodata == 0
        assert ds.res == (10.0, 10.0)
        assert ds.shape == (TILE_SIZE, TILE_SIZE)
        assert ds.crs.to_string() == tile.crs
        assert tuple(ds.transform)[:6] == tile.transform
        bounds10 = ds.bounds
    with rasterio.open(scene.band_path("SCL")) as ds:
        assert ds.dtypes == ("uint8",)
        assert ds.nodata == 0
        assert ds.res == (20.0, 20.0)
        assert ds.shape == (TILE_SIZE // 2, TILE_SIZE // 2)
        assert ds.bounds == bounds10
    with rasterio.open(scene.band_path("CLD")) as ds:
        assert ds.dtypes == ("uint8",)
        assert ds.nodata == 255
        assert ds.res == (20.0, 20.0)
        assert ds.shape == (TILE_SIZE // 2, TILE_SIZE // 2)
        assert ds.bounds == bounds10
    with rasterio.open(archive.truth_path("B08")) as ds:
        assert ds.dtypes == ("float32",)
        assert ds.crs.to_string() == "EPSG:32629"
        assert ds.res == (10.0, 10.0)


def test_tiles_straddle_the_zone_boundary(archive: SyntheticArchive) -> None:
    by_id = {t.id: t for t in archive.tiles}
    assert by_id["29UPV"].crs == "EPSG:32629"
    assert by_id["30UUE"].crs == "EPSG:32630"
    for tile in archive.tiles:
        assert tile.shape == (TILE_SIZE, TILE_SIZE)
        assert tile.transform[2] % 20 == 0 and tile.transform[5] % 20 == 0
    west, east = by_id["29UPV"].bbox_lonlat, by_id["30UUE"].bbox_lonlat
    assert west[0] < -6.0 < west[2]
    assert east[0] < -6.0 < east[2]
    assert west[0] < east[0] and west[2] < east[2]
    overlap = archive.overlap_bbox()
    assert overlap[0] < -6.0 < overlap[2]
    overlap_box = box(*overlap)
    for tile in archive.tiles:
        assert tile.footprint().covers(overlap_box)
    width_overlap = overlap[2] - overlap[0]
    assert 0.3 < width_overlap / (west[2] - west[0]) < 0.6
    assert archive.bbox == (west[0], min(west[1], east[1]), east[2], max(west[3], east[3]))


def test_acquisitions_shared_by_both_tiles(archive: SyntheticArchive) -> None:
    per_time = Counter(s.datetime for s in archive.scenes)
    assert len(per_time) == N_DATES
    assert set(per_time.values()) == {2}
    times = sorted(per_time)
    assert times[0] == datetime(2021, 11, 3, 11, 45, 21, tzinfo=UTC)
    assert all((b - a).days == 15 for a, b in itertools.pairwise(times))
    for when in times:
        flags = {(s.almost_cloudy, s.snow) for s in archive.scenes if s.datetime == when}
        assert len(flags) == 1


def test_processing_baselines(archive: SyntheticArchive) -> None:
    cutoff = datetime(2022, 1, 25, tzinfo=UTC)
    for scene in archive.scenes:
        if scene.processing_baseline == "05.00":
            continue
        expected = ("04.00", True) if scene.datetime >= cutoff else ("03.01", False)
        assert (scene.processing_baseline, scene.offset_applied) == expected
    reprocessed = scene_on(archive, "30UUE", "2021-11-18")
    assert reprocessed.processing_baseline == "05.00"
    assert reprocessed.offset_applied
    assert "_N0500_" in reprocessed.id
    sibling = scene_on(archive, "29UPV", "2021-11-18")
    assert (sibling.processing_baseline, sibling.offset_applied) == ("03.01", False)
    assert [s for s in archive.scenes if s.processing_baseline == "05.00"] == [reprocessed]


@pytest.mark.parametrize(
    ("tile_id", "day"),
    [
        ("29UPV", "2021-11-18"),
        ("30UUE", "2021-11-18"),
        ("29UPV", "2022-03-03"),
        ("30UUE", "2021-11-03"),
    ],
)
def test_dn_matches_truth_after_baseline_offset(
    archive: SyntheticArchive, tile_id: str, day: str
) -> None:
    scene = scene_on(archive, tile_id, day)
    right = 1000 if scene.offset_applied else 0
    wrong = 0 if scene.offset_applied else 1000
    assert clear_error(archive, scene, right) < 0.01
    assert clear_error(archive, scene, wrong) > 0.09


def test_scl_classes(archive: SyntheticArchive) -> None:
    present: set[int] = set()
    for scene in archive.scenes:
        scl = read(scene.band_path("SCL"))
        present |= set(np.unique(scl).tolist())
        valid = scl != SclClass.NO_DATA
        cloudy = np.isin(
            scl,
            [
                SclClass.CLOUD_MEDIUM_PROBABILITY,
                SclClass.CLOUD_HIGH_PROBABILITY,
                SclClass.THIN_CIRRUS,
            ],
        )
        assert scene.cloud_fraction == pytest.approx(cloudy.sum() / valid.sum(), abs=1e-6)
        if scene.snow and not scene.almost_cloudy:
            assert (scl == SclClass.SNOW).any()
        if not scene.swath_edge:
            assert valid.all()
    required = {
        SclClass.NO_DATA,
        SclClass.CLOUD_SHADOWS,
        SclClass.VEGETATION,
        SclClass.NOT_VEGETATED,
        SclClass.WATER,
        SclClass.CLOUD_MEDIUM_PROBABILITY,
        SclClass.CLOUD_HIGH_PROBABILITY,
        SclClass.THIN_CIRRUS,
        SclClass.SNOW,
    }
    assert required <= present


def test_scene_roles(archive: SyntheticArchive) -> None:
    cloudy = [s for s in archive.scenes if s.almost_cloudy]
    assert len(cloudy) == 4
    assert all(s.cloud_fraction > 0.9 for s in cloudy)
    typical = [s.cloud_fraction for s in archive.scenes if not s.almost_cloudy]
    assert 0.1 < float(np.median(typical)) < 0.5
    assert max(typical) < 0.9
    assert any(s.snow for s in archive.scenes)
    swath = [s for s in archive.scenes if s.swath_edge]
    assert 2 <= len({s.datetime for s in swath}) <= 3
    for scene in swath:
        dn = read(scene.band_path("B02"))
        scl = scl_at_10m(scene)
        assert 0.05 < (dn == 0).mean() < 0.95
        # DN 0 only beyond the edge, where SCL is NO_DATA too (up to the 20 m edge pixels).
        assert ((dn == 0) & (scl != SclClass.NO_DATA)).mean() < 0.02


def test_truth_on_other_grids(archive: SyntheticArchive) -> None:
    lon0, lat0, lon1, lat1 = archive.overlap_bbox()
    geographic = GeoBox.from_bbox((lon0, lat0, lon1, lat1), "EPSG:4326", shape=(120, 160))
    irish = GeoBox.from_bbox((714000, 733000, 716500, 735000), "EPSG:2157", resolution=25)
    for geobox in (geographic, irish):
        for band in REFLECTANCE:
            values = archive.truth(geobox, band)
            assert values.dtype == np.float32
            assert values.shape == geobox.shape
            assert np.isfinite(values).all()
            assert values.min() > 0.0 and values.max() < 1.0
        red, nir = archive.truth(geobox, "red"), archive.truth(geobox, "nir")
        assert np.mean(nir) > 2 * np.mean(red)
        np.testing.assert_array_equal(red, archive.truth(geobox, "B04"))


def test_truth_matches_saved_cog(archive: SyntheticArchive) -> None:
    tile = archive.tile("29UPV")
    geobox = tile.geobox()
    with rasterio.open(archive.truth_path("B08")) as ds:
        window = from_bounds(*geobox.boundingbox, transform=ds.transform)
        saved = ds.read(1, window=window)
        offset_grid = GeoBox(
            (50, 70), ds.transform @ Affine.translation(33, 17), ds.crs.to_string()
        )
        saved_offset = ds.read(1, window=((17, 67), (33, 103)))
    np.testing.assert_array_equal(archive.truth(geobox, "B08"), saved)
    np.testing.assert_array_equal(archive.truth(offset_grid, "nir"), saved_offset)


def test_truth_consistent_across_crs(archive: SyntheticArchive) -> None:
    # The same ground point seen through a UTM 30 pixel and a tiny lon/lat pixel.
    tile = archive.tile("30UUE")
    x, y = tile.transform[2] + 1005.0, tile.transform[5] - 1005.0
    one_pixel = GeoBox((1, 1), Affine(10, 0, x - 5, 0, -10, y + 5), tile.crs)
    lon, lat = Transformer.from_crs(tile.crs, "EPSG:4326", always_xy=True).transform(x, y)
    tiny = GeoBox((1, 1), Affine(2e-8, 0, lon - 1e-8, 0, -2e-8, lat + 1e-8), "EPSG:4326")
    for band in REFLECTANCE:
        a = archive.truth(one_pixel, band)[0, 0]
        b = archive.truth(tiny, band)[0, 0]
        assert a == pytest.approx(b, abs=1e-4)


def test_truth_rejects_unknown_band(archive: SyntheticArchive) -> None:
    with pytest.raises(InvalidInputError):
        archive.truth(archive.tiles[0].geobox(), "B11")
    with pytest.raises(InvalidInputError):
        archive.truth_path("SCL")


def test_reopen(archive: SyntheticArchive) -> None:
    reopened = SyntheticArchive.open(archive.root)
    assert reopened == archive
    geobox = archive.tiles[1].geobox(20)
    np.testing.assert_array_equal(reopened.truth(geobox, "B03"), archive.truth(geobox, "B03"))
    with pytest.raises(SourceError):
        SyntheticArchive.open(archive.root / "sentinel-2-l2a")


def test_stac_catalog(archive: SyntheticArchive) -> None:
    catalog = pystac.Catalog.from_file(str(archive.catalog))
    collection = catalog.get_child("sentinel-2-l2a")
    assert isinstance(collection, pystac.Collection)
    items = list(collection.get_items())
    assert len(items) == 2 * N_DATES
    raw_catalog = json.loads(archive.catalog.read_text())
    assert raw_catalog["stac_version"] == "1.1.0"
    by_id = {s.id: s for s in archive.scenes}
    for item in items:
        scene = by_id[item.id]
        props = item.properties
        tile = archive.tile(scene.tile_id)
        assert set(item.stac_extensions) >= EXTENSIONS
        assert props["constellation"] == "sentinel-2"
        assert props["instruments"] == ["msi"]
        assert props["platform"] in {"sentinel-2a", "sentinel-2b"}
        assert props["s2:processing_baseline"] == scene.processing_baseline
        assert props["eo:cloud_cover"] == pytest.approx(100 * scene.cloud_fraction, abs=1e-3)
        assert props["grid:code"] == f"MGRS-{tile.id}"
        assert props["mgrs:utm_zone"] == int(tile.id[:2])
        assert props["proj:code"] == tile.crs
        assert item.datetime == scene.datetime
        assert shape(item.geometry).buffer(1e-9).covers(box(*archive.overlap_bbox()))
        assert item.bbox == pytest.approx(list(tile.bbox_lonlat))
        keys = {b: scene.asset_key(b) for b in (*REFLECTANCE, "SCL")}
        if scene.convention == "stac11-bands":
            assert re.fullmatch(r"S2[AB]_29UPV_\d{8}_0_L2A", item.id)
            assert set(item.assets) == {"blue", "green", "red", "nir", "scl", "cloud"}
        else:
            assert re.fullmatch(
                r"S2[AB]_MSIL2A_\d{8}T\d{6}_N\d{4}_R080_T30UUE_\d{8}T\d{6}", item.id
            )
            assert set(item.assets) == {"B02", "B03", "B04", "B08", "SCL", "CLD_20m"}
        for band, key in keys.items():
            asset = item.assets[key]
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset.roles == ["data"]
            assert Path(asset.get_absolute_href()) == scene.band_path(band)
            extra = asset.extra_fields
            (entry,) = extra["bands"]
            assert entry["name"] == band
            assert extra["nodata"] == 0
            size = TILE_SIZE // 2 if band == "SCL" else TILE_SIZE
            assert extra["proj:shape"] == [size, size]
            assert extra["gsd"] == (20 if band == "SCL" else 10)
            assert extra["data_type"] == ("uint8" if band == "SCL" else "uint16")
            has_scale = scene.convention == "stac11-bands" and band != "SCL"
            assert ("raster:scale" in entry) == has_scale
            if has_scale:
                assert entry["raster:scale"] == 0.0001
                assert entry["raster:offset"] == (-0.1 if scene.offset_applied else 0.0)
        assert "raster:offset" not in json.dumps(item.properties)
    red = items[0].assets.get("red") or items[0].assets["B04"]
    assert red.extra_fields["bands"][0]["eo:common_name"] == "red"
    assert red.extra_fields["bands"][0]["eo:center_wavelength"] == 0.665
    # Self-contained: only items.json carries absolute paths.
    for path in archive.root.rglob("*.json"):
        if path.name != "items.json":
            assert str(archive.root) not in path.read_text(), path


def test_item_collection(archive: SyntheticArchive) -> None:
    items = pystac.ItemCollection.from_file(str(archive.root / "items.json"))
    assert len(items) == 2 * N_DATES
    for item in items:
        for asset in item.assets.values():
            assert Path(asset.href).is_absolute()
            assert Path(asset.href).is_file()


def test_determinism_and_seed(tmp_path: Path) -> None:
    first = make_archive(tmp_path / "a", seed=7, tile_size=64, n_dates=3)
    second = make_archive(tmp_path / "b", seed=7, tile_size=64, n_dates=3)
    other = make_archive(tmp_path / "c", seed=8, tile_size=64, n_dates=3)
    for one, two in zip(first.scenes, second.scenes, strict=True):
        for band in ("B04", "SCL", "CLD"):
            assert one.band_path(band).read_bytes() == two.band_path(band).read_bytes()
        assert one.item_path.read_bytes() == two.item_path.read_bytes()
    assert first.catalog.read_bytes() == second.catalog.read_bytes()
    assert [s.id for s in first.scenes] == [s.id for s in other.scenes]
    differs = [
        not np.array_equal(read(a.band_path("SCL")), read(b.band_path("SCL")))
        for a, b in zip(first.scenes, other.scenes, strict=True)
    ]
    assert all(differs)


def test_regenerate_and_refuse_foreign_directory(tmp_path: Path) -> None:
    make_archive(tmp_path / "a", seed=1, tile_size=64, n_dates=2)
    again = make_archive(tmp_path / "a", seed=1, tile_size=64, n_dates=1)
    item_dirs = [p for p in (tmp_path / "a" / "sentinel-2-l2a").iterdir() if p.is_dir()]
    assert len(item_dirs) == len(again.scenes) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        make_archive(foreign, tile_size=64, n_dates=1)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_one_tile_archive(tmp_path: Path) -> None:
    """``tiles=``: only that tile's scenes, one per date, consistent with its own record."""
    one = make_archive(tmp_path / "one", seed=7, tile_size=64, n_dates=3, tiles=["29UPV"])
    assert [t.id for t in one.tiles] == ["29UPV"]
    assert [s.tile_id for s in one.scenes] == ["29UPV"] * 3
    assert len({s.datetime for s in one.scenes}) == 3
    reopened = SyntheticArchive.open(one.root)
    assert [s.id for s in reopened.scenes] == [s.id for s in one.scenes]
    assert read(one.scenes[0].band_path("B04")).shape == (64, 64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tile_size": 100},
        {"tile_size": 32},
        {"n_dates": 0},
        {"seed": -1},
        {"tiles": ["31UAB"]},
        {"tiles": []},
        {"tiles": "29UPV"},
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        make_archive(tmp_path / "x", **kwargs)


def test_cloud_probability_asset(archive: SyntheticArchive) -> None:
    catalog = pystac.Catalog.from_file(str(archive.catalog))
    items = {item.id: item for item in catalog.get_items(recursive=True)}
    for scene in archive.scenes:
        item = items[scene.id]
        key = "cloud" if scene.convention == "stac11-bands" else "CLD_20m"
        assert scene.asset_key("CLD") == key
        asset = item.assets[key]
        assert Path(asset.get_absolute_href()) == scene.band_path("CLD")
        assert asset.roles == ["data", "cloud"]
        extra = asset.extra_fields
        assert (extra["nodata"], extra["data_type"], extra["gsd"]) == (255, "uint8", 20)
        assert extra["proj:shape"] == [TILE_SIZE // 2, TILE_SIZE // 2]
        (entry,) = extra["bands"]
        assert entry == {"name": "CLD", "unit": "%"}
        resolved = scene_from_item(item).bands["CLD"]
        assert Path(resolved.href) == scene.band_path("CLD")
        assert (resolved.scale, resolved.offset, resolved.nodata) == (1.0, 0.0, 255.0)
        assert resolved.resolution == 20


def test_cloud_probability_follows_the_sky(archive: SyntheticArchive) -> None:
    thick_values, clear_values = [], []
    for scene in archive.scenes:
        geobox = archive.tile(scene.tile_id).geobox(20)
        probability = read(scene.band_path("CLD"))
        conditions = archive.conditions(geobox, scene)
        truth = archive.contaminated(geobox, scene)
        np.testing.assert_array_equal(probability == 255, conditions.nodata)
        assert probability[~conditions.nodata].max() <= 100
        thick_values.append(probability[(conditions.opacity > 0.6) & ~conditions.nodata])
        clear_values.append(probability[truth["clear"]])
    thick, clear = np.concatenate(thick_values), np.concatenate(clear_values)
    assert thick.size > 10_000 and clear.size > 10_000
    assert thick.min() >= 80
    assert np.median(thick) >= 99
    # low but not zero on clear ground, with noise
    assert 2.0 < clear.mean() < 8.0
    assert np.percentile(clear, 99) < 20
    assert 0.5 < (clear > 0).mean() < 0.95


def test_scl_agrees_with_the_contamination_truth(archive: SyntheticArchive) -> None:
    truths, scls = [], []
    for scene in archive.scenes:
        geobox = archive.tile(scene.tile_id).geobox(20)
        scl = read(scene.band_path("SCL"))
        conditions = archive.conditions(geobox, scene)
        truth = archive.contaminated(geobox, scene)
        # the rebuilt sky is the one the scene was rendered with
        high = (conditions.opacity > 0.6) & ~conditions.nodata
        np.testing.assert_array_equal(scl == SclClass.CLOUD_HIGH_PROBABILITY, high)
        np.testing.assert_array_equal(scl == SclClass.NO_DATA, truth["nodata"])
        cloud = np.isin(scl, [SclClass.CLOUD_MEDIUM_PROBABILITY, SclClass.CLOUD_HIGH_PROBABILITY])
        assert not (cloud & ~truth["cloud"]).any()
        assert not ((scl == SclClass.THIN_CIRRUS) & ~truth["cirrus"]).any()
        assert not ((scl == SclClass.CLOUD_SHADOWS) & ~truth["shadow"]).any()
        assert not ((scl == SclClass.SNOW) & ~truth["snow"]).any()
        assert not ((scl == SclClass.UNCLASSIFIED) & ~truth["cloud"]).any()
        clear = truth["clear"]
        np.testing.assert_array_equal(
            clear,
            ~(truth["cloud"] | truth["shadow"] | truth["cirrus"] | truth["snow"])
            & ~truth["nodata"],
        )
        truths.append(truth)
        scls.append(scl)
    stacked = stack_contamination(truths)
    scl_valid = np.isin(np.stack(scls), [*CLEAR, SclClass.DARK_AREA_PIXELS])
    scores = mask_scores(scl_valid, stacked)
    # every truly clear pixel is in a clear SCL class; SCL misses the haze fringe, faint
    # cirrus and shadow edges, as Sen2Cor does
    assert scores.rejected == 0
    assert 0.01 < scores.omission < 0.15
    assert scores.kinds["cloud"].missed > 0
    assert scores.kinds["cirrus"].omission > scores.kinds["cloud"].omission
    assert scores.kinds["snow"].missed == 0
    assert 0.2 < scores.contaminated / scores.observations < 0.8


def test_contamination_on_any_grid(archive: SyntheticArchive) -> None:
    lon0, lat0, lon1, lat1 = archive.overlap_bbox()
    geographic = GeoBox.from_bbox((lon0, lat0, lon1, lat1), "EPSG:4326", shape=(90, 120))
    west = next(s for s in archive.scenes if s.tile_id == "29UPV" and not s.almost_cloudy)
    east = next(s for s in archive.scenes if s.tile_id == "30UUE" and s.datetime == west.datetime)
    truth = archive.contaminated(geographic, west)
    assert set(truth) == {"cloud", "shadow", "cirrus", "snow", "nodata", "clear"}
    for mask in truth.values():
        assert mask.dtype == bool
        assert mask.shape == geographic.shape
    assert 0.0 < truth["clear"].mean() < 1.0
    assert truth["cloud"].any()
    # both tiles of an acquisition share its sky; dates and times name it too
    for same in (east, west.datetime, west.datetime.date(), west.datetime.date().isoformat()):
        other = archive.contaminated(geographic, same)
        for key, mask in truth.items():
            np.testing.assert_array_equal(mask, other[key])
    conditions = archive.conditions(geographic, west)
    for field in (conditions.opacity, conditions.shadow, conditions.cirrus):
        assert field.shape == geographic.shape
        assert np.isfinite(field).all()
        assert field.min() >= 0.0 and field.max() <= 1.0
    # the same ground point through a UTM pixel and a tiny lon/lat pixel
    tile = archive.tile("30UUE")
    for dx, dy in ((1005.0, 1005.0), (1705.0, 905.0), (805.0, 2205.0)):
        x, y = tile.transform[2] + dx, tile.transform[5] - dy
        one_pixel = GeoBox((1, 1), Affine(10, 0, x - 5, 0, -10, y + 5), tile.crs)
        lon, lat = Transformer.from_crs(tile.crs, "EPSG:4326", always_xy=True).transform(x, y)
        tiny = GeoBox((1, 1), Affine(2e-8, 0, lon - 1e-8, 0, -2e-8, lat + 1e-8), "EPSG:4326")
        a = archive.conditions(one_pixel, west)
        b = archive.conditions(tiny, west)
        assert a.opacity[0, 0] == pytest.approx(b.opacity[0, 0], abs=1e-4)
        assert a.shadow[0, 0] == pytest.approx(b.shadow[0, 0], abs=1e-4)
    # a re-opened archive rebuilds the same skies from archive.json
    reopened = SyntheticArchive.open(archive.root)
    np.testing.assert_array_equal(reopened.conditions(geographic, west).opacity, conditions.opacity)


def test_contamination_rejects_unknown_dates(archive: SyntheticArchive) -> None:
    geobox = archive.tiles[0].geobox(20)
    with pytest.raises(InvalidInputError, match="no acquisition"):
        archive.contaminated(geobox, "2021-11-04")
    with pytest.raises(InvalidInputError, match="no acquisition"):
        archive.conditions(geobox, datetime(2021, 11, 3, 12, tzinfo=UTC))
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        archive.conditions(geobox, "3 Nov 2021")


def test_mask_scores_by_hand() -> None:
    # one date, 2 x 4 pixels; kinds overlap at [0, 1] (cloud and shadow)
    cloud = np.array([[[1, 1, 0, 0], [0, 0, 0, 0]]], dtype=bool)
    shadow = np.array([[[0, 1, 1, 0], [0, 0, 0, 0]]], dtype=bool)
    cirrus = np.array([[[0, 0, 0, 0], [1, 0, 0, 0]]], dtype=bool)
    snow = np.array([[[0, 0, 0, 0], [0, 1, 0, 0]]], dtype=bool)
    nodata = np.array([[[0, 0, 0, 1], [0, 0, 0, 0]]], dtype=bool)
    truth = {"cloud": cloud, "shadow": shadow, "cirrus": cirrus, "snow": snow, "nodata": nodata}
    # contaminated: [0,0] [0,1] [0,2] [1,0] [1,1]; clear: [1,2] [1,3]; [0,3] has no data
    clear_pred = np.array([[[0, 1, 0, 1], [1, 0, 0, 1]]], dtype=bool)
    scores = mask_scores(clear_pred, truth)
    assert scores.observations == 7
    assert (scores.contaminated, scores.missed) == (5, 2)  # [0,1] and [1,0] leak
    assert (scores.clear, scores.rejected) == (2, 1)  # [1,2] is lost
    assert scores.omission == pytest.approx(2 / 5)
    assert scores.commission == pytest.approx(1 / 2)
    by_kind = {k: (v.contaminated, v.missed) for k, v in scores.kinds.items()}
    assert by_kind == {"cloud": (2, 1), "shadow": (2, 1), "cirrus": (1, 1), "snow": (1, 0)}
    assert scores.kinds["shadow"].omission == pytest.approx(0.5)
    assert scores.kinds["snow"].omission == 0.0
    # the same over two dates, the second all clear and all called clear
    two = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in truth.items()}
    both = mask_scores(np.concatenate([clear_pred, np.ones_like(clear_pred)]), two)
    assert (both.observations, both.contaminated, both.missed) == (15, 5, 2)
    assert (both.clear, both.rejected) == (10, 1)
    assert both.commission == pytest.approx(0.1)


def test_mask_scores_edge_cases() -> None:
    nothing = {k: np.zeros((1, 2, 2), bool) for k in ("cloud", "shadow", "cirrus", "snow")}
    truth = {**nothing, "nodata": np.zeros((1, 2, 2), bool)}
    scores = mask_scores(np.ones((1, 2, 2), bool), truth)
    assert np.isnan(scores.omission)
    assert scores.commission == 0.0
    with pytest.raises(InvalidInputError, match="nodata"):
        mask_scores(np.ones((1, 2, 2), bool), nothing)
    with pytest.raises(InvalidInputError, match="shape"):
        mask_scores(np.ones((2, 2), bool), truth)
