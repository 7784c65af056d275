"""Sentinel-2 metadata parsers against every real MTD_MSIL2A.xml, MTD_TL.xml and tileInfo.json.

Expected values were read from the files by eye, not computed by the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from cloudfree.errors import SourceError
from cloudfree.mgrs import tile_geobox
from cloudfree.sources.s2_metadata import (
    parse_product_metadata,
    parse_tile_info,
    parse_tile_metadata,
)

SAFE = "metadata/safe_mtd"
AWS = "metadata/aws_sentinel-s2-l2a_layout"
ALL_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
)  # fmt: skip


@dataclass(frozen=True)
class Product:
    product_id: str
    baseline: str
    start: datetime
    spacecraft: str
    add_offset: float
    cloud_cover: float
    tile: str


PRODUCTS = {
    f"{SAFE}/S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857.MTD_MSIL2A.xml": Product(
        "S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857",
        "02.12",
        datetime(2019, 2, 12, 19, 26, 51, 24000, tzinfo=UTC),
        "Sentinel-2A",
        0.0,
        51.580326,
        "07HFE",
    ),
    f"{SAFE}/S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.MTD_MSIL2A.xml": Product(
        "S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500",
        "02.14",
        datetime(2021, 1, 22, 13, 32, 29, 24000, tzinfo=UTC),
        "Sentinel-2B",
        0.0,
        0.447807,
        "22HBD",
    ),
    f"{SAFE}/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.MTD_MSIL2A.xml": Product(
        "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126",
        "04.00",
        datetime(2022, 4, 13, 15, 7, 59, 24000, tzinfo=UTC),
        "Sentinel-2B",
        -1000.0,
        98.944211,
        "33XWJ",
    ),
    f"{SAFE}/S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825.MTD_MSIL2A.xml": Product(
        "S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825",
        "05.09",
        datetime(2023, 8, 21, 22, 19, 41, 24000, tzinfo=UTC),
        "Sentinel-2A",
        -1000.0,
        59.050727,
        "01KAB",
    ),
    # stactools' T34LBQ fixture: BOA_ADD_OFFSET -7000 in every band is the fixture authors' edit
    # (real 04.00 products say -1000); the parser reports what the file says.
    f"{AWS}/tiles_34_L_BQ_2022_4_1_0.product_metadata.xml": Product(
        "S2A_MSIL2A_20220401T083601_N0400_R064_T34LBQ_20220401T110010",
        "04.00",
        datetime(2022, 4, 1, 8, 36, 1, 24000, tzinfo=UTC),
        "Sentinel-2A",
        -7000.0,
        92.696983,
        "34LBQ",
    ),
}


@dataclass(frozen=True)
class Tile:
    tile: str
    crs: str
    sensing: datetime
    ulx: float
    uly: float
    cloud_cover: float


TILES = {
    f"{SAFE}/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.GRANULE.MTD_TL.xml": Tile(
        "33XWJ",
        "EPSG:32633",
        datetime(2022, 4, 13, 15, 8, 7, 846358, tzinfo=UTC),
        499980.0,
        8900040.0,
        98.944211,
    ),
    # The T34LBQ fixture's geoposition is that of T34LBP (an edited copy, see PRODUCTS above).
    f"{AWS}/tiles_34_L_BQ_2022_4_1_0.metadata.xml": Tile(
        "34LBQ",
        "EPSG:32734",
        datetime(2022, 4, 1, 9, 3, 19, 283082, tzinfo=UTC),
        199980.0,
        8900020.0,
        92.696983,
    ),
}


@dataclass(frozen=True)
class Info:
    path: str
    tile: str
    timestamp: datetime
    product: str
    baseline: str
    coverage: float
    cloud: float
    crs: str
    bounds: tuple[float, float, float, float]


TILE_INFOS = {
    f"{AWS}/tiles_19_U_DP_2017_7_29_0.tileInfo.json": Info(
        "tiles/19/U/DP/2017/7/29/0",
        "19UDP",
        datetime(2017, 7, 29, 15, 35, 57, 455000, tzinfo=UTC),
        "S2A_MSIL2A_20170729T153601_N0001_R111_T19UDP_20200401T051009",
        "00.01",
        62.07,
        0.0,
        "EPSG:32619",
        (399960.0, 5290200.0, 509760.0, 5400000.0),
    ),
    f"{AWS}/l1c_tiles_19_U_DP_2017_7_29_0.tileInfo.json": Info(
        "tiles/19/U/DP/2017/7/29/0",
        "19UDP",
        datetime(2017, 7, 29, 15, 35, 57, 455000, tzinfo=UTC),
        "S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557",
        "02.05",
        62.13,
        24.48,
        "EPSG:32619",
        (399960.0, 5290200.0, 509760.0, 5400000.0),
    ),
    f"{AWS}/tiles_10_S_DG_2018_12_31_0.tileInfo.json": Info(
        "tiles/10/S/DG/2018/12/31/0",
        "10SDG",
        datetime(2018, 12, 31, 19, 4, 6, 567000, tzinfo=UTC),
        "S2A_MSIL2A_20181231T185801_N0211_R113_T10SDG_20181231T210250",
        "02.11",
        59.57,
        0.0,
        "EPSG:32610",
        (399960.0, 4090200.0, 509760.0, 4200000.0),
    ),
    f"{AWS}/tiles_34_L_BP_2022_4_1_0.tileInfo.json": Info(
        "tiles/34/L/BP/2022/4/1/0",
        "34LBP",
        datetime(2022, 4, 1, 9, 3, 19, 283000, tzinfo=UTC),
        "S2A_MSIL2A_20220401T083601_N0400_R064_T34LBP_20220401T110010",
        "04.00",
        2.85,
        0.0,
        "EPSG:32734",
        (199980.0, 8790220.0, 309780.0, 8900020.0),
    ),
    f"{AWS}/tiles_60_C_WS_2024_1_9_2.tileInfo.json": Info(
        "tiles/60/C/WS/2024/1/9/2",
        "60CWS",
        datetime(2024, 1, 9, 18, 47, 54, 430000, tzinfo=UTC),
        "S2A_MSIL2A_20240109T184751_N0510_R041_T60CWS_20240109T203651",
        "05.10",
        51.92,
        0.0,
        "EPSG:32760",
        (499980.0, 1090240.0, 609780.0, 1200040.0),
    ),
}


def relative(realdata: Path, pattern: str) -> set[str]:
    return {path.relative_to(realdata).as_posix() for path in realdata.glob(pattern)}


@pytest.mark.realdata
def test_every_real_metadata_file_is_covered(realdata: Path) -> None:
    assert relative(realdata, f"{SAFE}/*MTD_MSIL2A.xml") | relative(
        realdata, f"{AWS}/*product_metadata.xml"
    ) == set(PRODUCTS)
    assert relative(realdata, f"{SAFE}/*MTD_TL.xml") | relative(
        realdata, f"{AWS}/*[0-9].metadata.xml"
    ) == set(TILES)
    assert relative(realdata, f"{AWS}/*tileInfo.json") == set(TILE_INFOS)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_real_product_metadata(realdata: Path, name: str) -> None:
    expected = PRODUCTS[name]
    meta = parse_product_metadata((realdata / name).read_bytes(), name=name)
    assert meta.product_id == expected.product_id
    assert meta.processing_baseline == expected.baseline
    assert meta.sensing_start == expected.start
    assert meta.sensing_start.tzinfo is not None
    assert meta.spacecraft == expected.spacecraft
    assert meta.quantification_value == 10000
    assert meta.scale == 1e-4
    assert set(meta.add_offsets) == set(ALL_BANDS)
    assert all(value == expected.add_offset for value in meta.add_offsets.values())
    assert dict(meta.offsets) == {band: expected.add_offset / 10000 for band in ALL_BANDS}
    assert meta.cloud_cover == expected.cloud_cover
    assert meta.tile_id == expected.tile
    assert len(meta.scl_classes) == 12
    assert meta.scl_classes[4] == "SC_VEGETATION"
    assert meta.scl_classes[9] == "SC_CLOUD_HIGH_PROBA"
    for band in ("B04", "red", "B8A", "nir08"):
        radiometry = meta.radiometry(band)
        assert (radiometry.scale, radiometry.offset) == (1e-4, expected.add_offset / 10000)


@pytest.mark.realdata
def test_offset_is_minus_point_one_from_baseline_04(realdata: Path) -> None:
    found = {}
    for name in PRODUCTS:
        if name.startswith(SAFE):
            meta = parse_product_metadata((realdata / name).read_bytes())
            found[meta.processing_baseline] = meta.radiometry("B02")
    assert {baseline: (r.scale, r.offset) for baseline, r in found.items()} == {
        "02.12": (1e-4, 0.0),
        "02.14": (1e-4, 0.0),
        "04.00": (1e-4, -0.1),
        "05.09": (1e-4, -0.1),
    }


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(TILES))
def test_real_tile_metadata(realdata: Path, name: str) -> None:
    expected = TILES[name]
    meta = parse_tile_metadata((realdata / name).read_bytes(), name=name)
    assert meta.tile_id == expected.tile
    assert meta.crs == expected.crs
    assert meta.sensing_time == expected.sensing
    assert meta.cloud_cover == expected.cloud_cover
    assert meta.processing_baseline == "04.00"
    assert sorted(meta.grids) == [10, 20, 60]
    for resolution, pixels in ((10, 10980), (20, 5490), (60, 1830)):
        grid = meta.grids[resolution]
        assert (grid.ulx, grid.uly) == (expected.ulx, expected.uly)
        assert grid.shape == (pixels, pixels)
        assert (grid.xdim, grid.ydim) == (resolution, -resolution)
        geobox = meta.geobox(resolution)
        assert geobox.shape == (pixels, pixels)
        assert geobox.crs == expected.crs
        assert geobox.affine.c == expected.ulx and geobox.affine.f == expected.uly


@pytest.mark.realdata
def test_tile_metadata_of_33xwj_matches_the_mgrs_grid(realdata: Path) -> None:
    name = f"{SAFE}/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.GRANULE.MTD_TL.xml"
    meta = parse_tile_metadata((realdata / name).read_bytes())
    for resolution in (10, 20, 60):
        assert meta.geobox(resolution) == tile_geobox("33XWJ", resolution)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(TILE_INFOS))
def test_real_tile_info(realdata: Path, name: str) -> None:
    expected = TILE_INFOS[name]
    info = parse_tile_info((realdata / name).read_text(encoding="utf-8"), name=name)
    assert info.path == expected.path
    assert info.tile_id == expected.tile
    assert info.timestamp == expected.timestamp
    assert info.product_name == expected.product
    year, month, day = expected.path.split("/")[4:7]
    assert info.product_path == f"products/{year}/{month}/{day}/{expected.product}"
    assert info.processing_baseline == expected.baseline
    assert info.data_coverage == expected.coverage
    assert info.cloud_cover == expected.cloud
    assert info.crs == expected.crs
    assert info.tile_geometry.crs == expected.crs
    assert info.tile_geometry.boundingbox == pytest.approx(expected.bounds)
    assert tuple(tile_geobox(expected.tile).extent.boundingbox) == expected.bounds
    assert info.data_geometry is not None
    # dataCoveragePercentage is the data polygon's share of the tile: the geometry parsed right
    share = 100 * info.data_geometry.area / info.tile_geometry.area
    assert share == pytest.approx(expected.coverage, abs=0.01)
    footprint = info.data_footprint()
    assert footprint.crs == "EPSG:4326"
    assert footprint.geom.is_valid and footprint.geom.area > 0


@pytest.mark.realdata
def test_data_footprint_in_lonlat(realdata: Path) -> None:
    info = parse_tile_info(
        (realdata / f"{AWS}/tiles_34_L_BP_2022_4_1_0.tileInfo.json").read_bytes()
    )
    footprint = info.data_footprint().geom
    # the data sit along the tile's northern edge, about lon 18.84..19.26, lat -10.05..-9.94
    assert box(18.8, -10.1, 19.3, -9.9).contains(footprint)
    antimeridian = parse_tile_info(
        (realdata / f"{AWS}/tiles_60_C_WS_2024_1_9_2.tileInfo.json").read_bytes()
    )
    parts = antimeridian.data_footprint().geom
    assert parts.geom_type == "MultiPolygon"  # split at 180 degrees
    assert parts.bounds[1] > -80.3 and parts.bounds[3] < -79.2


@pytest.mark.realdata
def test_files_of_another_kind_are_rejected(realdata: Path) -> None:
    product = (realdata / next(iter(PRODUCTS))).read_bytes()
    tile = (realdata / next(iter(TILES))).read_bytes()
    manifest = next((realdata / SAFE).glob("*manifest.safe")).read_bytes()
    with pytest.raises(SourceError, match="not Sentinel-2 tile metadata"):
        parse_tile_metadata(product)
    with pytest.raises(SourceError, match="not Sentinel-2 product metadata"):
        parse_product_metadata(tile)
    with pytest.raises(SourceError, match="root element 'XFDU'"):
        parse_product_metadata(manifest, name="manifest.safe")


MINIMAL_PRODUCT = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://example.invalid/other-schema-version.xsd">
  <n1:General_Info><Product_Info>
    <PRODUCT_START_TIME>2022-04-13T15:07:59.024Z</PRODUCT_START_TIME>
    {uri}
    <PROCESSING_BASELINE>4.00</PROCESSING_BASELINE>
    <Datatake><SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME></Datatake>
  </Product_Info>
  <Product_Image_Characteristics>
    <QUANTIFICATION_VALUES_LIST>
      <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
    </QUANTIFICATION_VALUES_LIST>
    <BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id="{offset_band}">-1000</BOA_ADD_OFFSET>
    </BOA_ADD_OFFSET_VALUES_LIST>
    <Spectral_Information_List>
      <Spectral_Information bandId="0" physicalBand="B4"/>
      <Spectral_Information bandId="1" physicalBand="B8A"/>
    </Spectral_Information_List>
  </Product_Image_Characteristics></n1:General_Info>
</n1:Level-2A_User_Product>
"""
URI = "<PRODUCT_URI>S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE</PRODUCT_URI>"


def test_offsets_follow_the_spectral_list_not_the_band_order() -> None:
    meta = parse_product_metadata(MINIMAL_PRODUCT.format(uri=URI, offset_band="1"))
    assert meta.processing_baseline == "04.00"
    assert dict(meta.add_offsets) == {"B04": 0.0, "B8A": -1000.0}
    assert meta.scl_classes == {}
    assert meta.cloud_cover is None
    with pytest.raises(SourceError, match="lists no band 'B02'"):
        meta.radiometry("B02")


def test_product_metadata_errors_name_the_file_and_the_element() -> None:
    with pytest.raises(SourceError, match=r"product metadata X\.xml has no PRODUCT_URI"):
        parse_product_metadata(MINIMAL_PRODUCT.format(uri="", offset_band="0"), name="X.xml")
    with pytest.raises(SourceError, match="band_id='7' has no Spectral_Information"):
        parse_product_metadata(MINIMAL_PRODUCT.format(uri=URI, offset_band="7"))
    with pytest.raises(SourceError, match="not well-formed XML"):
        parse_product_metadata(b"<n1:Level-2A_User_Product", name="broken.xml")


def test_tile_info_errors() -> None:
    base = {
        "path": "tiles/29/U/PV/2022/2/1/0",
        "timestamp": "2022-02-01T11:45:21.000Z",
        "utmZone": 29,
        "latitudeBand": "U",
        "gridSquare": "PV",
        "productName": "S2A_USER_PRD_MSIL2A_PDMC_20160310T041843_R138_V20160308T131142",
        "tileGeometry": {
            "type": "Polygon",
            "crs": {"type": "name", "properties": {"name": "EPSG:32629"}},
            "coordinates": [[[600000, 6000000], [709800, 6000000], [709800, 5890200],
                             [600000, 5890200], [600000, 6000000]]],
        },
    }  # fmt: skip
    info = parse_tile_info(json.dumps(base))
    assert info.processing_baseline is None  # old product names have no _Nxxyy_ field
    assert info.data_geometry is None
    assert info.data_footprint().crs == "EPSG:4326"
    with pytest.raises(SourceError, match="has no 'productName'"):
        parse_tile_info(json.dumps({k: v for k, v in base.items() if k != "productName"}))
    bad_crs = {**base, "tileGeometry": {**base["tileGeometry"], "crs": {}}}
    with pytest.raises(SourceError, match="tileGeometry has no EPSG crs name"):
        parse_tile_info(json.dumps(bad_crs))
    with pytest.raises(SourceError, match="gridSquare"):
        parse_tile_info(json.dumps({**base, "gridSquare": "PK"}))
    with pytest.raises(SourceError, match="not valid JSON"):
        parse_tile_info("{", name="tileInfo.json")
