import json

import numpy as np
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer

from cloudfree.aoi import aoi_from_bbox, aoi_from_file
from cloudfree.errors import InvalidInputError


def test_swapped_bbox_says_which_side():
    with pytest.raises(InvalidInputError, match=r"swapped \(MINX -5.9 >= MAXX -6.1\)"):
        aoi_from_bbox([-5.9, 53.3, -6.1, 53.4])


def test_lat_lon_order_is_detected():
    with pytest.raises(InvalidInputError, match="lat/lon order"):
        aoi_from_bbox([53.3, -6.1, 53.4, 130.0])


def test_out_of_range_bbox():
    with pytest.raises(InvalidInputError, match="outside"):
        aoi_from_bbox([-200, 0, 10, 10])


def test_bbox_needs_four_numbers():
    with pytest.raises(InvalidInputError, match="4 numbers"):
        aoi_from_bbox([1, 2, 3])


def test_bbox_area_is_not_clipped():
    aoi = aoi_from_bbox([-6.1, 53.3, -5.9, 53.4])
    assert aoi.bbox == pytest.approx((-6.1, 53.3, -5.9, 53.4))
    assert not aoi.clip


TRIANGLE = shapely.Polygon([(-6.05, 53.30), (-5.95, 53.30), (-6.0, 53.38)])


def test_geojson_polygon(tmp_path):
    path = tmp_path / "area.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": shapely.geometry.mapping(TRIANGLE),
                    }
                ],
            }
        )
    )
    aoi = aoi_from_file(path)
    assert aoi.clip
    assert aoi.bbox == pytest.approx(TRIANGLE.bounds)


@pytest.mark.parametrize(("suffix", "driver"), [(".gpkg", "GPKG"), (".shp", "ESRI Shapefile")])
def test_projected_geometry_files_are_reprojected(tmp_path, suffix, driver):
    to_itm = Transformer.from_crs("EPSG:4326", "EPSG:2157", always_xy=True)
    projected = shapely.transform(
        TRIANGLE, lambda xy: np.column_stack(to_itm.transform(xy[:, 0], xy[:, 1]))
    )
    path = tmp_path / f"area{suffix}"
    pyogrio.raw.write(
        path,
        geometry=np.array([shapely.to_wkb(projected)], dtype=object),
        field_data=[],
        fields=[],
        crs="EPSG:2157",
        driver=driver,
        geometry_type="Polygon",
    )
    aoi = aoi_from_file(path)
    assert aoi.bbox == pytest.approx(TRIANGLE.bounds, abs=1e-6)


def test_geometry_file_without_polygons(tmp_path):
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps({"type": "Point", "coordinates": [-6.0, 53.3]}))
    with pytest.raises(InvalidInputError, match="no polygons"):
        aoi_from_file(path)


def test_missing_and_unsupported_geometry_files(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        aoi_from_file(tmp_path / "nope.geojson")
    with pytest.raises(InvalidInputError, match="unsupported type"):
        aoi_from_file(tmp_path / "area.kml")


def test_corrupt_geometry_file(tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_text("{ not json")
    with pytest.raises(InvalidInputError, match="Cannot read geometry file"):
        aoi_from_file(path)


@pytest.mark.parametrize("crs", ["EPSG:32629", "EPSG:4326"])
def test_inside_is_odc_geos_rasterize(tmp_path, crs):
    """The pixels whose centres lie in the area, as odc-geo rasterizes them, on any grid."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import rasterize

    path = tmp_path / "area.geojson"
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(TRIANGLE)}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    aoi = aoi_from_file(path)
    if crs == "EPSG:4326":
        west, south, east, north = aoi.bbox
        geobox = GeoBox.from_bbox((west - 0.01, south - 0.01, east, north), crs, shape=(97, 131))
    else:
        box = aoi.geometry.to_crs(crs).boundingbox
        transform = Affine(37.0, 0, box.left - 500, 0, -23.0, box.top + 300)
        geobox = GeoBox((180, 150), transform, crs)
    inside = aoi.inside(geobox)
    expected = np.asarray(rasterize(aoi.geometry, geobox).values, dtype=bool)
    assert inside.dtype == bool and inside.shape == geobox.shape.yx
    assert 0 < inside.sum() < inside.size  # the triangle's edge crosses the grid
    np.testing.assert_array_equal(inside, expected)
