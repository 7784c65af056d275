"""GeoZarr convention attributes (``proj:``, ``spatial:``) for a GeoBox."""

from __future__ import annotations

from typing import Any

from odc.geo.geobox import GeoBox

from cloudfree.grid import geobox_crs

PROJ_CONVENTION = {
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION = {
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "name": "spatial:",
    "description": "Spatial coordinate information",
}


def geozarr_attributes(geobox: GeoBox, *, dims: tuple[str, str] = ("y", "x")) -> dict[str, Any]:
    """Group attributes for the grid, in the GeoZarr ``proj:`` and ``spatial:`` conventions."""
    a = geobox.affine
    bbox = geobox.extent.boundingbox
    attrs: dict[str, Any] = {
        "zarr_conventions": [PROJ_CONVENTION, SPATIAL_CONVENTION],
        "spatial:dimensions": list(dims),
        "spatial:transform": [a.a, a.b, a.c, a.d, a.e, a.f],
        "spatial:shape": [geobox.shape.y, geobox.shape.x],
        "spatial:bbox": [bbox.left, bbox.bottom, bbox.right, bbox.top],
        "spatial:registration": "pixel",
    }
    crs = geobox_crs(geobox)
    if crs.epsg is not None:
        attrs["proj:code"] = f"EPSG:{crs.epsg}"
    else:
        attrs["proj:wkt2"] = crs.to_wkt()
    return attrs


MULTISCALES_CONVENTION = {
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
    "name": "multiscales",
    "description": "Multiscale layout of zarr datasets",
}


def cf_grid_mapping(geobox: GeoBox) -> dict[str, Any]:
    """Attributes of a CF ``spatial_ref`` grid-mapping variable, as rioxarray writes them.

    ``crs_wkt`` is CF's, ``spatial_ref`` the WKT GDAL reads, ``GeoTransform`` GDAL's order
    (``c a b f d e``), plus pyproj's CF projection parameters.
    """
    crs = geobox_crs(geobox)
    wkt = crs.to_wkt()
    attrs: dict[str, Any] = dict(crs.proj.to_cf())
    a = geobox.affine
    attrs.update(
        crs_wkt=wkt,
        spatial_ref=wkt,
        GeoTransform=" ".join(repr(float(v)) for v in (a.c, a.a, a.b, a.f, a.d, a.e)),
    )
    return attrs
