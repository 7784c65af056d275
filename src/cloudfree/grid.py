"""The output grid (an odc-geo GeoBox), its tiles, and the work units of a run.

One GeoBox travels everywhere; tiles come from :class:`odc.geo.geobox.GeoboxTiles` and each work
unit is one tile for one period, with a stable key so runs can be resumed and compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import Geometry
from pyproj.exceptions import CRSError

from cloudfree.aoi import Aoi
from cloudfree.errors import InvalidInputError
from cloudfree.scene import Scene
from cloudfree.timeframe import Period

DEFAULT_RESOLUTION_METRES = 10.0
DEFAULT_CHUNK_SIZE = 1024


def geobox_crs(geobox: GeoBox) -> CRS:
    """The CRS of a grid (cloudfree never builds grids without one)."""
    if geobox.crs is None:
        raise InvalidInputError("The output grid has no CRS; pass --crs.")
    return geobox.crs


def parse_crs(text: str) -> CRS:
    """Parse a CRS (``EPSG:2157``, ``epsg:4326``, WKT, PROJ string) or say why not."""
    try:
        return CRS(text.strip())
    except (CRSError, ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"Unknown CRS {text!r}; use an authority code such as EPSG:32629 or EPSG:4326 ({exc})."
        ) from None


def utm_crs_for(aoi: Aoi) -> CRS:
    """The WGS 84 / UTM zone CRS of an area's centre (the default output CRS)."""
    lon, lat = aoi.geometry.centroid.coords[0]
    zone = min(int((lon + 180) // 6) + 1, 60)
    return CRS(f"EPSG:{(32600 if lat >= 0 else 32700) + zone}")


def check_resolution(crs: CRS, resolution: float) -> float:
    """Validate a resolution in the CRS's units (metres, or degrees for geographic CRSs)."""
    if not math.isfinite(resolution) or resolution <= 0:
        raise InvalidInputError(f"Resolution must be a positive number, got {resolution}.")
    if crs.geographic and resolution > 1:
        raise InvalidInputError(
            f"Resolution {resolution} is in degrees for the geographic CRS {crs}; "
            "10 m is about 0.0001 degrees."
        )
    if not crs.geographic and resolution < 0.01:
        raise InvalidInputError(
            f"Resolution {resolution} is in {crs.units[0]} for {crs}; it looks like degrees. "
            "Give it in the CRS's units, e.g. 10 for 10 m."
        )
    return float(resolution)


def output_geobox(aoi: Aoi, crs: CRS, resolution: float) -> GeoBox:
    """The grid covering the area, pixel edges aligned to whole multiples of the resolution."""
    extent = aoi.geometry.to_crs(crs)
    gbox = GeoBox.from_bbox(extent.boundingbox, crs, resolution=resolution)
    if gbox.shape.x == 0 or gbox.shape.y == 0:
        raise InvalidInputError(
            f"The area ({aoi.description}) is smaller than one {resolution} pixel in {crs}."
        )
    return gbox


def area_geobox(aoi: Aoi, crs: CRS | None, resolution: float | None) -> GeoBox:
    """The output grid of an area, in ``crs`` at ``resolution``.

    ``crs`` defaults to the UTM zone of the area's centre and ``resolution`` to 10 m; a
    geographic CRS needs a resolution in degrees.
    """
    crs = crs or utm_crs_for(aoi)
    if resolution is None:
        if crs.geographic:
            raise InvalidInputError(
                f"{crs} is geographic: give --resolution in degrees (10 m is about 0.0001)."
            )
        resolution = DEFAULT_RESOLUTION_METRES
    return output_geobox(aoi, crs, resolution)


@dataclass(frozen=True)
class WorkUnit:
    """One output tile for one period: the scenes that touch it, and where it goes."""

    key: str
    """Stable id, ``p<period>-y<row>-x<col>``."""
    period_index: int
    tile: tuple[int, int]
    """Tile index (row, column) in :attr:`Plan.tiles`."""
    geobox: GeoBox
    """The tile's grid (a crop of the output grid)."""
    scenes: tuple[Scene, ...]

    @property
    def solar_days(self) -> int:
        """Time layers of the unit's stack: its scenes' distinct solar days."""
        return len({scene.solar_day for scene in self.scenes})


@dataclass(frozen=True)
class Plan:
    """Everything a run will do, known before any pixel is read."""

    geobox: GeoBox
    tiles: GeoboxTiles
    chunk_size: int
    periods: tuple[Period, ...]
    units: tuple[WorkUnit, ...]
    scenes: tuple[Scene, ...]
    halo: int = 0
    """Pixels loaded around each tile: the cloud mask's halo plus the method's margin."""
    block_rows: int | None = None
    """Height of the sources' blocks on the output grid, when known: a tile composited in row
    strips cuts none (:func:`cloudfree.budget.strip_rows`)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """Output shape ``(time, y, x)``."""
        return (len(self.periods), self.geobox.shape.y, self.geobox.shape.x)


def make_plan(
    *,
    aoi: Aoi,
    geobox: GeoBox,
    periods: Sequence[Period],
    scenes: Sequence[Scene],
    chunk_size: int,
    halo: int = 0,
) -> Plan:
    """Split the grid into tiles and pair each tile and period with the scenes that touch it.

    ``halo`` pixels around each tile count as touching, so a mask that looks at neighbouring
    pixels sees every scene there. Tiles outside the area (for geometry inputs) or touched by no
    scene get no work unit; their pixels stay nodata.
    """
    tiles = GeoboxTiles(geobox, (chunk_size, chunk_size))
    area = aoi.geometry
    units: list[WorkUnit] = []
    tile_extents: dict[tuple[int, int], tuple[GeoBox, Geometry]] = {}
    ny, nx = tiles.shape.y, tiles.shape.x
    for iy in range(ny):
        for ix in range(nx):
            tile_box = cast(GeoBox, tiles[iy, ix])
            if aoi.clip and not tile_box.extent.to_crs("EPSG:4326").intersects(area):
                continue
            tile_extents[(iy, ix)] = (tile_box, tile_box.pad(halo).extent.to_crs("EPSG:4326"))
    for p_index, period in enumerate(periods):
        in_period = [s for s in scenes if period.contains(s.datetime)]
        for (iy, ix), (tile_box, extent) in tile_extents.items():
            touching = tuple(s for s in in_period if s.footprint.intersects(extent))
            if touching:
                units.append(
                    WorkUnit(
                        key=f"p{p_index:03d}-y{iy:04d}-x{ix:04d}",
                        period_index=p_index,
                        tile=(iy, ix),
                        geobox=tile_box,
                        scenes=touching,
                    )
                )
    return Plan(
        geobox=geobox,
        tiles=tiles,
        chunk_size=chunk_size,
        periods=tuple(periods),
        units=tuple(units),
        scenes=tuple(scenes),
        halo=halo,
    )


def context_pixels(metres: float, pixel_size_m: float) -> int:
    """``metres`` of context around a tile in whole pixels: ``ceil(metres / pixel_size_m)``.

    A mask's clean-up or a method's distance to clouds reaches that many rows and columns, so a
    tile loaded with that margin gives, inside, what the whole grid would.
    """
    # 1e-9 absorbs the binary rounding of exact ratios (3000 m / 10 m must stay 300 pixels)
    return math.ceil(metres / pixel_size_m - 1e-9)


def pixel_size_metres(geobox: GeoBox) -> float:
    """The side of a pixel in metres: the resolution, or for degrees its size at the centre.

    One value per grid (not per tile), so metric mask radii become the same pixel radii
    everywhere in a run.
    """
    crs = geobox_crs(geobox)
    res = geobox.resolution
    size = (abs(res.x) + abs(res.y)) / 2
    if not crs.geographic:
        return size * crs.proj.axis_info[0].unit_conversion_factor
    lat = math.radians(geobox.extent.centroid.coords[0][1])
    metres_per_degree = (math.pi / 180) * 6_371_008.8
    return abs(res.y) * metres_per_degree * (1 + math.cos(lat) * abs(res.x) / abs(res.y)) / 2


def check_chunk_size(chunk_size: int) -> None:
    """A tile (chunk) size cloudfree can work with: 64 to 8192 pixels."""
    if chunk_size < 64 or chunk_size > 8192:
        raise InvalidInputError(
            f"--chunk-size must be between 64 and 8192 pixels, got {chunk_size}."
        )
