"""MGRS tile ids and Sentinel-2 tile grids, checked against real tile origins and footprints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geom import Geometry
from pyproj import Transformer
from shapely.geometry import Point, Polygon, shape

from cloudfree.errors import InvalidInputError
from cloudfree.mgrs import parse_tile_id, tile_geobox, tiles_for
from cloudfree.testing.geo import TILE_SPECS, footprint_lonlat, tile_transform

TILE_IN_ID = re.compile(r"_T?(\d{2}[C-X][A-Z]{2})_")


def to_lonlat(crs: str, x: float, y: float) -> Point:
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return Point(lon, lat)


def contains(tile_id: str, point: Point) -> bool:
    """Whether a tile's footprint contains a lon/lat point (edges included, 1 mm slack)."""
    geobox = tile_geobox(tile_id)
    x, y = Transformer.from_crs("EPSG:4326", geobox.crs, always_xy=True).transform(point.x, point.y)
    left, bottom, right, top = geobox.extent.boundingbox
    return left - 1e-3 <= x <= right + 1e-3 and bottom - 1e-3 <= y <= top + 1e-3


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("29UPV", "29UPV"),
        ("T29UPV", "29UPV"),
        ("t29upv", "29UPV"),
        (" 33XWJ ", "33XWJ"),
        ("1KAB", "01KAB"),
        ("T1KAB", "01KAB"),
        ("60CWS", "60CWS"),
    ],
)
def test_parse_tile_id(text: str, canonical: str) -> None:
    tile = parse_tile_id(text)
    assert tile.id == canonical == str(tile)
    assert parse_tile_id(tile) is tile


def test_tile_crs_follows_zone_and_hemisphere() -> None:
    assert parse_tile_id("29UPV").crs == "EPSG:32629"
    assert parse_tile_id("35MNM").crs == "EPSG:32735"  # band M: south
    assert parse_tile_id("31NBJ").crs == "EPSG:32631"  # band N: north
    assert parse_tile_id("60CWS").epsg == 32760
    assert (parse_tile_id("07HFE").zone, parse_tile_id("07HFE").band) == (7, "H")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "does not have the form"),
        ("29UP", "does not have the form"),
        ("T29UPV1", "does not have the form"),
        ("29-UPV", "does not have the form"),
        ("61UPV", "zone 61 is not between 1 and 60"),
        ("00UPV", "zone 0 is not between 1 and 60"),
        ("29IPV", "latitude band 'I'"),
        ("29APV", "latitude band 'A'"),  # polar UPS zones have no Sentinel-2 tiles
        ("29UAV", "column letter 'A' is not used in zone 29"),
        ("9UPV", "column letter 'P' is not used in zone 9"),
        ("29UPW", "row letter 'W'"),
        ("29UPK", "square PK of zone 29 does not lie in latitude band U"),
        ("35MNA", "does not lie in latitude band M"),  # would be north of the equator
    ],
)
def test_bad_tile_ids_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(reason)) as info:
        parse_tile_id(text)
    assert "A Sentinel-2 tile id is a UTM zone" in str(info.value)


# -- grids ----------------------------------------------------------------------------------------


def test_tile_geobox_shapes() -> None:
    for resolution, pixels in ((10, 10980), (20, 5490), (60, 1830), (100, 1098)):
        geobox = tile_geobox("29UPV", resolution)
        assert geobox.shape == (pixels, pixels)
        assert geobox.crs == "EPSG:32629"
        assert (geobox.affine.c, geobox.affine.f) == (600000, 6000000)
        assert geobox.resolution.x == resolution and geobox.resolution.y == -resolution
    for resolution in (7, 0, -10):
        with pytest.raises(InvalidInputError, match="does not divide"):
            tile_geobox("29UPV", resolution)


def test_origins_snap_outwards_to_the_60_m_lattice() -> None:
    """Values from real metadata: tileInfo.json, MTD_TL.xml and STAC items (see below)."""
    assert tile_geobox("19UDP").affine[2:6:3] == (399960, 5400000)  # 400000 -> 399960
    assert tile_geobox("33XWJ").affine[2:6:3] == (499980, 8900040)  # north: 8900000 -> +40
    assert tile_geobox("34LBP").affine[2:6:3] == (199980, 8900020)  # south: 8900000 -> +20
    assert tile_geobox("60CWS").affine[2:6:3] == (499980, 1200040)


def real_items(realdata: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every real STAC item that names a tile and has a 10 m ``proj:transform``."""
    for path in sorted((realdata / "stac_items").rglob("*.*json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("features", [data])
        for feature in data:
            if feature.get("type") != "Feature" or not TILE_IN_ID.search(feature["id"]):
                continue
            if any(_ten_metre(asset) for asset in feature.get("assets", {}).values()):
                yield f"{path.name}:{feature['id']}", feature


def _ten_metre(asset: dict[str, Any]) -> bool:
    transform = asset.get("proj:transform")
    return bool(transform) and transform[0] == 10


def _item_epsg(feature: dict[str, Any], asset: dict[str, Any]) -> int:
    props = feature["properties"]
    code = (
        asset.get("proj:epsg")
        or asset.get("proj:code")
        or props.get("proj:epsg")
        or props.get("proj:code")
    )
    return int(str(code).removeprefix("EPSG:"))


@pytest.mark.realdata
def test_tile_geobox_matches_every_real_item(realdata: Path) -> None:
    checked = set()
    for name, feature in real_items(realdata):
        tile = TILE_IN_ID.search(feature["id"]).group(1)  # type: ignore[union-attr]
        asset = next(a for a in feature["assets"].values() if _ten_metre(a))
        geobox = tile_geobox(tile)
        assert tuple(asset["proj:transform"][:6]) == tuple(geobox.affine)[:6], name
        assert tuple(asset["proj:shape"]) == (10980, 10980), name
        assert geobox.crs.epsg == _item_epsg(feature, asset), name
        checked.add(tile)
    # every tile the brief names, plus the Kamchatka, Zambia, Svalbard and Arctic ones
    assert {"29RKH", "13TDE", "24MWV", "28QCH", "06VVN", "35MNM", "31NBJ", "17SPR", "42TUM"} <= (
        checked
    )
    assert {"13VEK", "35XQA", "47XML", "46XER", "59VNC", "53NKG", "37MGP"} <= checked
    assert len(checked) >= 50


@pytest.mark.realdata
def test_tile_geobox_matches_real_decimated_pixels(realdata: Path) -> None:
    folder = realdata / "pixels" / "rio-tiler-pds_S2A_29RKH_20200219_0_L2A"
    for band, resolution in (("B02", 100), ("B11", 200), ("SCL", 200)):
        with rasterio.open(folder / f"{band}.tif") as dataset:
            geobox = tile_geobox("29RKH", resolution)
            assert dataset.transform == geobox.affine
            assert dataset.shape == geobox.shape
            assert dataset.crs.to_epsg() == geobox.crs.epsg


# -- tiles_for ------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_tiles_for_finds_every_real_item_by_its_footprint(realdata: Path) -> None:
    """Naming (the band of the square's centre) and existence (zone areas with the Norway and
    Svalbard exceptions) reproduce every real tile id, e.g. 35MNM and 59VNC straddle bands."""
    for name, feature in real_items(realdata):
        tile = TILE_IN_ID.search(feature["id"]).group(1)  # type: ignore[union-attr]
        assert tile in tiles_for(shape(feature["geometry"])), name


@pytest.mark.realdata
def test_tiles_for_real_product_footprints(realdata: Path) -> None:
    """Points inside the EXT_POS_LIST footprints of two real MTD_MSIL2A.xml files."""
    assert "33XWJ" in tiles_for(Point(16.0, 80.13))
    assert "01KAB" in tiles_for(Point(179.5, -16.8))  # the tile crosses the antimeridian
    assert "01KAB" in tiles_for(Point(-179.8, -16.8))


def test_band_straddling_square_is_named_after_its_centre() -> None:
    # gis.stackexchange 241614: ESA calls this place (lat 31.96, band R) 13SFR, not 13RFR
    found = tiles_for(Point(-103.004715, 31.96212))
    assert "13SFR" in found and "13RFR" not in found


def test_norway_and_svalbard_exceptions_decide_which_zone_has_tiles() -> None:
    assert tiles_for(Point(5.32, 60.39)) == ["32VKN"]  # Bergen: zone 32 from 3 deg E
    found = tiles_for(Point(10.0, 75.0))
    assert found and not any(t.startswith("32X") for t in found)  # no zone 32 in band X


def test_point_in_overlap_yields_both_tiles() -> None:
    # 2 km east of the square boundary between 29UPV and 29UQV: in both (PV reaches 9.8 km east)
    near = to_lonlat("EPSG:32629", 702_000, 5_950_000)
    assert {"29UPV", "29UQV"} <= set(tiles_for(near))
    far = to_lonlat("EPSG:32629", 720_000, 5_950_000)
    assert "29UQV" in tiles_for(far) and "29UPV" not in tiles_for(far)
    # 5 km south of 29UPV's square: 29UPV reaches 9.8 km south, into 29UPU
    south = to_lonlat("EPSG:32629", 650_000, 5_895_000)
    assert {"29UPU", "29UPV"} <= set(tiles_for(south))


def test_southern_hemisphere_overlap_of_two_real_tiles() -> None:
    # 35MNM (ULY 9200020) and 35LNL (ULY 9100000) are both real Planetary Computer items
    point = to_lonlat("EPSG:32735", 550_000, 9_095_000)
    assert {"35LNL", "35MNM"} <= set(tiles_for(point))


def test_zone_boundary_of_the_synthetic_archive() -> None:
    """The synthetic tiles sit where their namesakes do (lon -6 is the zone 29/30 boundary)."""
    for spec in TILE_SPECS:
        footprint = footprint_lonlat(f"EPSG:{spec.epsg}", tile_transform(spec, 256), (256, 256))
        assert spec.id in tiles_for(footprint)
    assert {"29UPV", "30UUE"} <= set(tiles_for(Point(-5.999, 53.35)))


def test_tiles_for_polygons_and_odc_geometries() -> None:
    area = Polygon([(-6.5, 53.0), (-5.5, 53.0), (-5.5, 53.6), (-6.5, 53.6)])
    expected = ["29UPU", "29UPV", "29UQU", "29UQV", "30UTD", "30UTE", "30UUD", "30UUE"]
    assert tiles_for(area) == expected
    utm = Geometry(area, "EPSG:4326").to_crs("EPSG:32629")
    assert set(tiles_for(utm)) >= {"29UPV", "30UUE"}


def test_no_tiles_at_the_poles_and_bad_geometries() -> None:
    assert tiles_for(Point(0.0, 89.0)) == []
    assert tiles_for(Point(0.0, -85.0)) == []
    with pytest.raises(InvalidInputError, match="non-empty geometry"):
        tiles_for(Polygon())
    with pytest.raises(InvalidInputError, match="not lon/lat"):
        tiles_for(Point(500_000.0, 5_900_000.0))


@settings(max_examples=60, deadline=None)
@given(
    lon=st.floats(-180.0, 180.0, allow_nan=False),
    lat=st.floats(-79.9, 83.9, allow_nan=False),
)
def test_every_point_has_a_tile_containing_it(lon: float, lat: float) -> None:
    point = Point(lon, lat)
    found = tiles_for(point)
    assert found
    for tile_id in found:
        assert parse_tile_id(tile_id).id == tile_id
        assert parse_tile_id("T" + tile_id.lower()).id == tile_id
        assert contains(tile_id, point), tile_id
