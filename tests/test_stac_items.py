"""Real provider items resolve to the right 10 m band and SCL hrefs and the right scale/offset."""

import pystac
import pytest

from cloudfree.errors import SourceError
from cloudfree.radiometry import decide_radiometry, offset_for_baseline, parse_baseline
from cloudfree.sources.stac import scene_from_item

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pystac")

# file, crs, tile, baseline, expected offset, suffix of the B04 href, suffix of the SCL href
CASES = [
    (
        "planetary_computer/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.pc.json",
        "EPSG:32606",
        "06VVN",
        "02.12",
        0.0,
        "IMG_DATA/R10m/T06VVN_20190629T212529_B04_10m.tif",
        "IMG_DATA/R20m/T06VVN_20190629T212529_SCL_20m.tif",
    ),
    (
        # Planetary Computer: no raster metadata, baseline 04.00 -> offset from the baseline
        "planetary_computer/S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251.pc.json",
        "EPSG:32624",
        "24XWR",
        "04.00",
        -0.1,
        "IMG_DATA/R10m/T24XWR_20220612T182919_B04_10m.tif",
        "IMG_DATA/R20m/T24XWR_20220612T182919_SCL_20m.tif",
    ),
    (
        # CDSE: Collection-1 reprocessing of a 2022-02 acquisition, offset on the asset; B04_10m
        # is chosen over B04_20m/B04_60m, SCL_20m over SCL_60m
        "cdse/S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.cdse.json",
        "EPSG:32613",
        "13VEK",
        "05.10",
        -0.1,
        "R10m/T13VEK_20220217T183431_B04_10m.jp2",
        "R20m/T13VEK_20220217T183431_SCL_20m.jp2",
    ),
    (
        # Earth Search v1, baseline 02.14: raster:bands offset 0; COG chosen over the -jp2 alternate
        "earth_search_v1/S2A_29RKH_20200219_0_L2A.es_v1_sentinel-2-l2a.json",
        "EPSG:32629",
        "29RKH",
        "02.14",
        0.0,
        "sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/SCL.tif",
    ),
    (
        # Earth Search Collection-1: uniform offset -0.1
        "earth_search_v1/S2B_T24MWV_20250731T130245_L2A.es_v1_sentinel-2-c1-l2a.json",
        "EPSG:32724",
        "24MWV",
        "05.11",
        -0.1,
        "24/M/WV/2025/7/S2B_T24MWV_20250731T130245_L2A/B04.tif",
        "24/M/WV/2025/7/S2B_T24MWV_20250731T130245_L2A/SCL.tif",
    ),
]


@pytest.mark.parametrize(("name", "crs", "tile", "baseline", "offset", "b04", "scl"), CASES)
def test_real_items_resolve(realdata, name, crs, tile, baseline, offset, b04, scl):
    scene = scene_from_item(pystac.Item.from_file(realdata / "stac_items" / name))
    assert (scene.crs, scene.tile, scene.processing_baseline) == (crs, tile, baseline)
    for band in ("B02", "B03", "B04", "B08"):
        asset = scene.bands[band]
        assert asset.scale == pytest.approx(1e-4)
        assert asset.offset == pytest.approx(offset)
        assert asset.nodata == 0
        assert asset.resolution == 10
    assert scene.bands["B04"].href.endswith(b04)
    assert scene.bands["SCL"].href.endswith(scl)
    assert scene.bands["SCL"].resolution == 20
    assert (scene.bands["SCL"].scale, scene.bands["SCL"].offset) == (1.0, 0.0)


def test_same_acquisition_on_two_tiles_shares_a_solar_day(realdata):
    path = realdata / "stac_items/planetary_computer/pc_4items_20240419_zones46-47.list.json"
    import json

    items = [pystac.Item.from_dict(d) for d in json.loads(path.read_text())]
    scenes = [scene_from_item(i) for i in items]
    assert {s.crs for s in scenes} == {"EPSG:32646", "EPSG:32647"}
    assert len({s.solar_day for s in scenes}) == 1
    assert all(s.bands["B04"].offset == pytest.approx(-0.1) for s in scenes)


@pytest.mark.parametrize(
    ("text", "parsed", "offset"),
    [
        ("02.14", (2, 14), 0.0),
        ("03.01", (3, 1), 0.0),
        ("04.00", (4, 0), -0.1),
        ("N0510", (5, 10), -0.1),
        ("5.11", (5, 11), -0.1),
    ],
)
def test_baselines(text, parsed, offset):
    assert parse_baseline(text) == parsed
    assert offset_for_baseline(text) == offset


def test_declared_metadata_wins_over_the_baseline():
    decided = decide_radiometry(
        declared_scale=1e-4, declared_offset=0.0, baseline="05.00", scene_id="x"
    )
    assert (decided.offset, decided.source) == (0.0, "asset metadata")


def test_no_metadata_and_no_baseline_is_an_error_not_a_guess():
    with pytest.raises(SourceError, match="neither a scale/offset nor a processing baseline"):
        decide_radiometry(declared_scale=None, declared_offset=None, baseline=None, scene_id="S2X")
