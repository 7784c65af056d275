"""Real provider items resolve to the right 10 m band and SCL hrefs and the right scale/offset.

The expectations are written from the files and the providers' documented conventions (see
``cloudfree.radiometry``), not computed by the code under test.
"""

import json
import warnings
from datetime import datetime

import pystac
import pytest

from cloudfree.errors import RadiometryWarning, SourceError
from cloudfree.radiometry import (
    Convention,
    baseline_from_product_id,
    decide_radiometry,
    offset_for_baseline,
    parse_baseline,
)
from cloudfree.sources.providers import detect_provider, get_provider, provider_for_url
from cloudfree.sources.stac import is_sentinel2_l2a, scene_from_item

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pystac")

BANDS_10M = ("B02", "B03", "B04", "B08")


def _features(path):
    document = json.loads(path.read_text())
    if isinstance(document, list):
        return document
    if document.get("type") == "FeatureCollection":
        return document["features"]
    return [document]


# file -> (provider, crs, tile, baseline, offset, B04 href suffix, SCL href suffix) of its first
# Sentinel-2 L2A item
SINGLE = {
    "planetary_computer/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.pc.json": (
        "planetary-computer",
        "EPSG:32606",
        "06VVN",
        "02.12",
        0.0,
        "sentinel2-l2/06/V/VN/2019/06/29/S2B_MSIL2A_20190629T212529_N0212_R043_T06VVN_"
        "20201006T080531.SAFE/GRANULE/L2A_T06VVN_A012081_20190629T212530/IMG_DATA/R10m/"
        "T06VVN_20190629T212529_B04_10m.tif",
        "IMG_DATA/R20m/T06VVN_20190629T212529_SCL_20m.tif",
    ),
    # the same item with raster:bands added by hand: Planetary Computer DNs are ESA's, so the
    # baseline decides whatever was added
    "planetary_computer/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.pc_raster_ext"
    ".json": (
        "planetary-computer",
        "EPSG:32606",
        "06VVN",
        "02.12",
        0.0,
        "IMG_DATA/R10m/T06VVN_20190629T212529_B04_10m.tif",
        "IMG_DATA/R20m/T06VVN_20190629T212529_SCL_20m.tif",
    ),
    # no raster metadata, baseline 04.00: the offset comes from the baseline
    "planetary_computer/S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251.pc.json": (
        "planetary-computer",
        "EPSG:32624",
        "24XWR",
        "04.00",
        -0.1,
        "IMG_DATA/R10m/T24XWR_20220612T182919_B04_10m.tif",
        "IMG_DATA/R20m/T24XWR_20220612T182919_SCL_20m.tif",
    ),
    "planetary_computer/S2A_MSIL2A_20150704T101006_R022_T35XQA_20210411T133707.pc.json": (
        "planetary-computer",
        "EPSG:32635",
        "35XQA",
        "02.12",
        0.0,
        "IMG_DATA/R10m/T35XQA_20150704T101006_B04_10m.tif",
        "IMG_DATA/R20m/T35XQA_20150704T101006_SCL_20m.tif",
    ),
    # Collection-1 reprocessing of a 2022-02 acquisition, offset on the asset; B04_10m is chosen
    # over B04_20m/B04_60m, SCL_20m over SCL_60m; JP2 on the CDSE S3 endpoint
    "cdse/S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.cdse.json": (
        "cdse",
        "EPSG:32613",
        "13VEK",
        "05.10",
        -0.1,
        "s3://eodata/Sentinel-2/MSI/L2A_N0500/2022/02/17/S2A_MSIL2A_20220217T183431_N0510_R027_"
        "T13VEK_20240516T022440.SAFE/GRANULE/L2A_T13VEK_A034773_20220217T183428/IMG_DATA/R10m/"
        "T13VEK_20220217T183431_B04_10m.jp2",
        "R20m/T13VEK_20220217T183431_SCL_20m.jp2",
    ),
    # Earth Search v1 sentinel-2-l2a, baseline 02.14, flag false: offset 0; COG over -jp2
    "earth_search_v1/S2A_29RKH_20200219_0_L2A.es_v1_sentinel-2-l2a.json": (
        "earth-search",
        "EPSG:32629",
        "29RKH",
        "02.14",
        0.0,
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/"
        "S2A_29RKH_20200219_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/SCL.tif",
    ),
    "earth_search_v1/S2A_28QCH_20200714_0_L2A.es_v1_sentinel-2-l2a.json": (
        "earth-search",
        "EPSG:32628",
        "28QCH",
        "02.14",
        0.0,
        "sentinel-s2-l2a-cogs/28/Q/CH/2020/7/S2A_28QCH_20200714_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/28/Q/CH/2020/7/S2A_28QCH_20200714_0_L2A/SCL.tif",
    ),
    # flagged boa_offset_applied: Element 84 shifted the DNs back, so no offset although the
    # item's raster:bands say -0.1 (applying it would subtract 0.1 twice)
    "earth_search_v1/S2A_13TDE_20231008_0_L2A.es_v1_sentinel-2-l2a.json": (
        "earth-search",
        "EPSG:32613",
        "13TDE",
        "05.09",
        0.0,
        "sentinel-s2-l2a-cogs/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A/SCL.tif",
    ),
    "earth_search_v1/S2B_24MWV_20250731_0_L2A.es_v1_sentinel-2-l2a.json": (
        "earth-search",
        "EPSG:32724",
        "24MWV",
        "05.11",
        0.0,
        "sentinel-s2-l2a-cogs/24/M/WV/2025/7/S2B_24MWV_20250731_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/24/M/WV/2025/7/S2B_24MWV_20250731_0_L2A/SCL.tif",
    ),
    # Collection-1: ESA's DNs, uniform offset -0.1
    "earth_search_v1/S2B_T24MWV_20250731T130245_L2A.es_v1_sentinel-2-c1-l2a.json": (
        "earth-search",
        "EPSG:32724",
        "24MWV",
        "05.11",
        -0.1,
        "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/sentinel-2-c1-l2a/24/M/"
        "WV/2025/7/S2B_T24MWV_20250731T130245_L2A/B04.tif",
        "24/M/WV/2025/7/S2B_T24MWV_20250731T130245_L2A/SCL.tif",
    ),
    # Earth Search v0: pre-04.00 items carry no baseline property; it is in the product id
    "earth_search_v0/S2B_42TUM_20220107_0_L2A.es_v0.json": (
        "earth-search-v0",
        "EPSG:32642",
        "42TUM",
        "03.01",
        0.0,
        "sentinel-s2-l2a-cogs/42/T/UM/2022/1/S2B_42TUM_20220107_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/42/T/UM/2022/1/S2B_42TUM_20220107_0_L2A/SCL.tif",
    ),
    "earth_search_v0/S2A_31NBJ_20190524_0_L2A.es_v0.json": (
        "earth-search-v0",
        "EPSG:32631",
        "31NBJ",
        "02.12",
        0.0,
        "sentinel-s2-l2a-cogs/31/N/BJ/2019/5/S2A_31NBJ_20190524_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/31/N/BJ/2019/5/S2A_31NBJ_20190524_0_L2A/SCL.tif",
    ),
    "earth_search_v0/S2A_28QCH_20200714_0_L2A.odc-stac.json": (
        "earth-search-v0",
        "EPSG:32628",
        "28QCH",
        "02.14",
        0.0,
        "sentinel-s2-l2a-cogs/2020/S2A_28QCH_20200714_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/2020/S2A_28QCH_20200714_0_L2A/SCL.tif",
    ),
    # v0 after 04.00, flagged: DNs harmonised by Element 84, no further offset
    "earth_search_v0/S2A_17SPR_20221106_0_L2A.es_v0.json": (
        "earth-search-v0",
        "EPSG:32617",
        "17SPR",
        "04.00",
        0.0,
        "sentinel-s2-l2a-cogs/17/S/PR/2022/11/S2A_17SPR_20221106_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/17/S/PR/2022/11/S2A_17SPR_20221106_0_L2A/SCL.tif",
    ),
    "earth_search_v0/es_v0_search_S2B_20EPT_20250731.featurecollection.json": (
        "earth-search-v0",
        "EPSG:32720",
        "20EPT",
        "05.11",
        0.0,
        "sentinel-s2-l2a-cogs/20/E/PT/2025/7/S2B_20EPT_20250731_0_L2A/B04.tif",
        "sentinel-s2-l2a-cogs/20/E/PT/2025/7/S2B_20EPT_20250731_0_L2A/SCL.tif",
    ),
    # EOPF: Zarr arrays inside the product, offset declared on the asset
    "eopf/S2A_MSIL2A_20251113T102311_N0511_R065_T32TNQ_20251113T142515.eopf_stac.json": (
        "eopf",
        "EPSG:32632",
        "32TNQ",
        "05.11",
        -0.1,
        "S2A_MSIL2A_20251113T102311_N0511_R065_T32TNQ_20251113T142515.zarr/measurements/"
        "reflectance/r10m/b04",
        "S2A_MSIL2A_20251113T102311_N0511_R065_T32TNQ_20251113T142515.zarr/conditions/mask/"
        "l2a_classification/r20m/scl",
    ),
    # a third party's copy of an Earth Search Collection-1 item (it keeps earthsearch:
    # properties, so Earth Search's conventions apply): declared -0.1
    "other/S2B_T37MGP_20240710T073012_L2A.deafrica_copy_of_es_c1.json": (
        "earth-search",
        "EPSG:32737",
        "37MGP",
        "05.10",
        -0.1,
        "s3://deafrica-sentinel-2-l2a-c1-dev/sentinel-2-c1-l2a/37/M/GP/2024/7/"
        "S2B_T37MGP_20240710T073012_L2A/B04.tif",
        "S2B_T37MGP_20240710T073012_L2A/SCL.tif",
    ),
    # stactools output: relative hrefs resolved against the item file
    "other/stactools_S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE.stactools_expected.json": (
        "stac",
        "EPSG:32707",
        "07HFE",
        "02.12",
        0.0,
        "GRANULE/L2A_T07HFE_A019029_20190212T192646/IMG_DATA/R10m/T07HFE_20190212T192651_B04_10m.tif",
        "IMG_DATA/R20m/T07HFE_20190212T192651_SCL_20m.tif",
    ),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(SINGLE))
def test_real_items_resolve(realdata, name):
    provider, crs, tile, baseline, offset, b04, scl = SINGLE[name]
    path = realdata / "stac_items" / name
    document = next(f for f in _features(path) if f.get("collection") != "landsat-c2-l2")
    item = pystac.Item.from_dict(document)
    item.set_self_href(str(path))
    scene = scene_from_item(item)
    assert scene.provider == provider
    assert (scene.crs, scene.tile, scene.processing_baseline) == (crs, tile, baseline)
    for band in BANDS_10M:
        asset = scene.bands[band]
        assert asset.scale == pytest.approx(1e-4)
        assert asset.offset == pytest.approx(offset, abs=1e-12)
        assert asset.nodata == 0
        assert asset.resolution == 10
    assert scene.bands["B04"].href.endswith(b04)
    assert scene.bands["B02"].href.endswith(b04.replace("B04", "B02").replace("b04", "b02"))
    assert scene.bands["SCL"].href.endswith(scl)
    assert scene.bands["SCL"].resolution == 20
    assert (scene.bands["SCL"].scale, scene.bands["SCL"].offset) == (1.0, 0.0)


@pytest.mark.realdata
def test_earth_search_cloud_probability_resolves_to_cld(realdata):
    """The c1 item's ``cloud`` asset is CLD, a percentage: no reflectance scaling, 0 is a value."""
    name = "earth_search_v1/S2B_T24MWV_20250731T130245_L2A.es_v1_sentinel-2-c1-l2a.json"
    path = realdata / "stac_items" / name
    item = pystac.Item.from_dict(json.loads(path.read_text()))
    item.set_self_href(str(path))
    scene = scene_from_item(item)
    base = (
        "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/sentinel-2-c1-l2a/"
        "24/M/WV/2025/7/S2B_T24MWV_20250731T130245_L2A/"
    )
    cloud = scene.bands["CLD"]
    assert cloud.href == base + "CLD_20m.tif"
    assert (cloud.scale, cloud.offset) == (1.0, 0.0)
    # the item declares nodata 0, but 0 % is Sen2Cor's value for clear ground
    assert cloud.nodata is None
    assert cloud.resolution == 20
    snow = scene.bands["SNW"]
    assert snow.href == base + "SNW_20m.tif"
    assert (snow.scale, snow.offset, snow.nodata) == (1.0, 0.0, None)
    # reflectance is resolved as before
    red = scene.bands["B04"]
    assert red.href == base + "B04.tif"
    assert (red.scale, red.offset, red.nodata) == (pytest.approx(1e-4), pytest.approx(-0.1), 0)
    assert (scene.bands["SCL"].href, scene.bands["SCL"].nodata) == (base + "SCL.tif", 0)
    assert set(scene.bands) == {
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
        "SCL", "CLD", "SNW",
    }  # fmt: skip


@pytest.mark.realdata
def test_earth_search_l2a_cloud_probability_is_the_jp2(realdata):
    """The older sentinel-2-l2a collection only links Sen2Cor's JPEG 2000 quality masks."""
    name = "earth_search_v1/S2B_24MWV_20250731_0_L2A.es_v1_sentinel-2-l2a.json"
    item = pystac.Item.from_dict(json.loads((realdata / "stac_items" / name).read_text()))
    scene = scene_from_item(item)
    assert (
        scene.bands["CLD"].href == "s3://sentinel-s2-l2a/tiles/24/M/WV/2025/7/31/0/qi/CLD_20m.jp2"
    )
    assert (scene.bands["CLD"].scale, scene.bands["CLD"].offset) == (1.0, 0.0)
    assert scene.bands["B04"].offset == 0.0  # harmonised collection: unchanged


# file -> (provider, baseline, offset) shared by every Sentinel-2 L2A item of a search result
COLLECTIONS = {
    "planetary_computer/pc_35MNM_2020-06_07_timeseries.featurecollection.geojson": (
        "planetary-computer",
        "02.12",
        0.0,
        13,
    ),
    "planetary_computer/pc_20200606_tall_strip_35L-35M.featurecollection.geojson": (
        "planetary-computer",
        "02.12",
        0.0,
        9,
    ),
    "planetary_computer/pc_search_2019-01-01_33items_zones58-60.featurecollection.json": (
        "planetary-computer",
        "02.12",
        0.0,
        33,
    ),
    "planetary_computer/pc_4items_20240419_zones46-47.list.json": (
        "planetary-computer",
        "05.10",
        -0.1,
        4,
    ),
    "planetary_computer/pc_items_limit1_S2B_MSIL2A_20250312T014549_R074_T53NKG"
    ".featurecollection.json": ("planetary-computer", "05.11", -0.1, 1),
    "earth_search_v1/es_v1_search_S2A_13TDE_20231008_plus_landsat.featurecollection.json": (
        "earth-search",
        "05.09",
        0.0,
        1,
    ),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_real_search_results_resolve(realdata, name):
    provider, baseline, offset, count = COLLECTIONS[name]
    items = [pystac.Item.from_dict(f) for f in _features(realdata / "stac_items" / name)]
    scenes = [scene_from_item(i) for i in items if is_sentinel2_l2a(i)]
    assert len(scenes) == count
    for scene in scenes:
        assert (scene.provider, scene.processing_baseline) == (provider, baseline)
        tile, stamp = scene.tile, scene.id.split("_")[2]
        for band in BANDS_10M:
            asset = scene.bands[band]
            assert (asset.scale, asset.offset) == (pytest.approx(1e-4), pytest.approx(offset))
            if provider == "planetary-computer":
                assert asset.href.endswith(f"R10m/T{tile}_{stamp}_{band}_10m.tif")
                assert asset.signer == "planetary-computer"
        assert scene.bands["SCL"].href.endswith(("SCL_20m.tif", "SCL.tif"))


@pytest.mark.realdata
def test_earth_search_page_mixes_collections_of_one_acquisition(realdata):
    """The same 24MWV product in sentinel-2-l2a (harmonised) and c1 (ESA DNs): one reflectance."""
    name = "earth_search_v1/es_v1_search_page_20250731_l2a_c1l2a_l1c.featurecollection.json"
    items = [pystac.Item.from_dict(f) for f in _features(realdata / "stac_items" / name)]
    l2a = [i for i in items if is_sentinel2_l2a(i)]
    assert {i.collection_id for i in l2a} == {"sentinel-2-l2a", "sentinel-2-c1-l2a"}
    assert not any("L1C" in i.id for i in l2a)
    scenes = {i.id: scene_from_item(i) for i in l2a}
    old, c1 = scenes["S2B_24MWV_20250731_0_L2A"], scenes["S2B_T24MWV_20250731T130245_L2A"]
    # harmonised DN = ESA DN - 1000, so both give DN_esa * 1e-4 - 0.1
    dn_esa = 2345.0
    old_reflectance = (dn_esa - 1000) * old.bands["B04"].scale + old.bands["B04"].offset
    c1_reflectance = dn_esa * c1.bands["B04"].scale + c1.bands["B04"].offset
    assert old_reflectance == pytest.approx(c1_reflectance)
    assert old.solar_day == c1.solar_day


@pytest.mark.realdata
def test_items_without_pixels_are_not_scenes(realdata):
    fields_only = "earth_search_v1/es_v1_search_c1l2a_13TDE_fields_noassets.featurecollection.json"
    for feature in _features(realdata / "stac_items" / fields_only):
        with pytest.raises(SourceError, match="no geometry"):
            scene_from_item(pystac.Item.from_dict(feature))
    template = realdata / "stac_items/eopf/titiler-eopf_geozarr_item_template.json"
    scene = scene_from_item(pystac.Item.from_dict(json.loads(template.read_text())))
    assert scene.bands == {}  # one multiscale group asset, no per-band arrays


@pytest.mark.realdata
def test_landsat_and_l1c_items_are_not_sentinel2_l2a(realdata):
    name = "earth_search_v1/es_v1_search_S2A_13TDE_20231008_plus_landsat.featurecollection.json"
    items = [pystac.Item.from_dict(f) for f in _features(realdata / "stac_items" / name)]
    assert [is_sentinel2_l2a(i) for i in items] == [True, False]


def test_unflagged_earth_search_item_after_04_warns():
    with pytest.warns(RadiometryWarning, match="sentinel-2-c1-l2a"):
        decided = decide_radiometry(
            declared_scale=1e-4,
            declared_offset=-0.1,
            baseline="04.00",
            scene_id="S2B_52SFA_20220126_0_L2A",
            convention=Convention.HARMONISED_WHEN_FLAGGED,
            harmonised=False,
        )
    assert decided.offset == -0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flagged = decide_radiometry(
            declared_scale=1e-4,
            declared_offset=-0.1,
            baseline="04.00",
            scene_id="x",
            convention=Convention.HARMONISED_WHEN_FLAGGED,
            harmonised=True,
        )
    assert (flagged.offset, flagged.source) == (0.0, "harmonised by provider")


def test_provider_registry_knows_its_apis():
    for name in ("earth-search", "earth-search-v0", "planetary-computer", "cdse", "eopf"):
        provider = get_provider(name)
        assert provider.stac_url and provider_for_url(provider.stac_url + "/") is provider
    assert get_provider("earth-search").convention_for("sentinel-2-l2a") is (
        Convention.HARMONISED_WHEN_FLAGGED
    )
    assert get_provider("earth-search").convention_for("sentinel-2-c1-l2a") is Convention.DECLARED


def test_unknown_provider_lists_the_known_ones():
    from cloudfree.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="earth-search, earth-search-v0"):
        get_provider("landsatlook")


def test_provider_detection_from_a_bare_item():
    item = pystac.Item("x", None, None, datetime(2024, 1, 1), {})
    assert detect_provider(item).name == "stac"


@pytest.mark.parametrize(
    ("product_id", "baseline"),
    [
        ("S2B_MSIL2A_20220107T063239_N0301_R077_T42TUM_20220107T084202", "03.01"),
        ("S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.SAFE", "05.10"),
        ("S2A_13TDE_20231008_0_L2A", None),
    ],
)
def test_baseline_from_product_id(product_id, baseline):
    assert baseline_from_product_id(product_id) == baseline


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
