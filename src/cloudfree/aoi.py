"""Areas of interest: a lon/lat bbox or a geometry file, validated and normalised to EPSG:4326."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from rasterio.features import geometry_mask

from cloudfree.errors import InvalidInputError

GEOMETRY_SUFFIXES = (".geojson", ".json", ".shp", ".gpkg")


@dataclass(frozen=True)
class Aoi:
    """An area of interest, always held in EPSG:4326."""

    geometry: Geometry
    """The area (polygon or multipolygon) in EPSG:4326."""
    clip: bool
    """Whether pixels outside ``geometry`` (but inside its bbox) are set to nodata."""
    description: str
    """How the user named the area, for messages."""

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Lon/lat bounds ``(minx, miny, maxx, maxy)``."""
        b = self.geometry.boundingbox
        return (b.left, b.bottom, b.right, b.top)

    def inside(self, geobox: GeoBox) -> np.ndarray:
        """``(y, x)`` bool: the pixels of ``geobox`` whose centres lie in the area.

        odc-geo's ``rasterize``, without the xarray array it wraps the mask in (coordinates
        and all, made and dropped for every strip of every tile).
        """
        area = self.geometry
        if geobox.crs is not None and area.crs != geobox.crs:
            area = area.to_crs(geobox.crs)
        return geometry_mask([area.geom], geobox.shape.yx, geobox.affine, invert=True)


def aoi_from_bbox(bbox: tuple[float, float, float, float] | list[float]) -> Aoi:
    """Validate a lon/lat bbox ``(minx, miny, maxx, maxy)`` and return it as an area."""
    if len(bbox) != 4:
        raise InvalidInputError(
            f"A bbox needs 4 numbers MINX MINY MAXX MAXY (lon/lat), got {len(bbox)}."
        )
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise InvalidInputError(f"bbox {list(bbox)} holds a value that is not a finite number.")
    for name, value, limit in (
        ("MINX", minx, 180),
        ("MAXX", maxx, 180),
        ("MINY", miny, 90),
        ("MAXY", maxy, 90),
    ):
        if abs(value) > limit:
            hint = (
                " It looks like lat/lon order; pass lon/lat: MINX MINY MAXX MAXY."
                if limit == 90 and abs(value) <= 180
                else " The bbox must be in longitude/latitude degrees (EPSG:4326)."
            )
            raise InvalidInputError(f"bbox {name}={value} is outside [-{limit}, {limit}].{hint}")
    if minx >= maxx or miny >= maxy:
        swapped = []
        if minx >= maxx:
            swapped.append(f"MINX {minx} >= MAXX {maxx}")
        if miny >= maxy:
            swapped.append(f"MINY {miny} >= MAXY {maxy}")
        raise InvalidInputError(
            "bbox is empty or swapped (" + ", ".join(swapped) + "). "
            "Give it as MINX MINY MAXX MAXY in lon/lat, e.g. --bbox -6.1 53.3 -5.9 53.4."
        )
    return Aoi(box(minx, miny, maxx, maxy, "EPSG:4326"), clip=False, description=f"bbox {bbox}")


def aoi_from_file(path: str | Path) -> Aoi:
    """Read every feature of a GeoJSON, shapefile or GeoPackage as one area (their union).

    The file's own CRS is honoured and the area is reprojected to EPSG:4326. Pixels outside the
    geometry are set to nodata in the outputs.
    """
    import pyogrio

    p = Path(path)
    if p.suffix.lower() not in GEOMETRY_SUFFIXES:
        raise InvalidInputError(
            f"Geometry file {str(p)!r} has an unsupported type; use one of "
            + ", ".join(GEOMETRY_SUFFIXES)
            + "."
        )
    if not p.exists():
        raise InvalidInputError(f"Geometry file {str(p)!r} does not exist.")
    try:
        meta, _, wkb, _ = pyogrio.raw.read(p, read_geometry=True)
    except Exception as exc:  # pyogrio raises several GDAL error types
        raise InvalidInputError(f"Cannot read geometry file {str(p)!r}: {exc}") from exc
    if wkb is None or len(wkb) == 0:
        raise InvalidInputError(f"Geometry file {str(p)!r} holds no features.")
    shapes = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    polygons = [g for g in shapes if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        kinds = sorted({g.geom_type for g in shapes}) or ["none"]
        raise InvalidInputError(
            f"Geometry file {str(p)!r} holds no polygons (found: {', '.join(kinds)}); "
            "an area of interest must be a polygon or multipolygon."
        )
    union = shapely.make_valid(shapely.union_all(polygons))
    crs = meta.get("crs") or "EPSG:4326"
    geometry = Geometry(union, crs).to_crs("EPSG:4326")
    minx, miny, maxx, maxy = geometry.boundingbox
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InvalidInputError(
            f"Geometry file {str(p)!r} reprojects outside lon/lat bounds; check its CRS ({crs})."
        )
    return Aoi(geometry, clip=True, description=f"geometry file {p.name}")
