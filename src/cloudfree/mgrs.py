"""Sentinel-2 tiles: MGRS tile ids and the UTM grids they stand for.

A Sentinel-2 tile id such as ``29UPV`` is an MGRS 100 km square: UTM zone ``29``, latitude band
``U`` and the square letters ``PV``. The tile is 109.8 km square (10980 pixels of 10 m) in the
zone's WGS 84 / UTM CRS (EPSG:326zz north of the equator, bands N-X; EPSG:327zz south, bands C-M).

Grid rules, each checked against real tile origins (``tests/test_mgrs.py``):

* Column letters repeat every three zones (``ABCDEFGH``, ``JKLMNPQR``, ``STUVWXYZ``), one per
  100 km of easting starting at 100 km.
* Row letters ``ABCDEFGHJKLMNPQRSTUV`` cycle every 2000 km of northing (false northing included
  in the south), starting at the equator in odd zones and five letters later in even zones. The
  latitude band decides which 2000 km cycle is meant.
* The tile's upper-left corner is the square's north-west corner moved outwards onto a 60 m
  lattice: ``ULX = floor(E / 60) * 60`` (e.g. 400000 -> 399960) and ``ULY = ceil(N / 60) * 60``
  with N counted from the equator (e.g. 8900000 -> 8900040 in the north, 8900020 in the south).
  The tile therefore covers its square plus about 9.8 km to the east and south, so neighbouring
  tiles overlap.

Where :func:`tiles_for` has to decide which tiles exist, it follows rules inferred from real tile
ids, not from ESA's tiling-grid KML (which is not vendored):

* A 100 km square straddling a latitude band boundary is one tile, named after the band that
  holds the square's centre (ESA names the square at 32 deg N, lon -103 ``13SFR``, not ``13RFR``;
  real ``35MNM`` and ``59VNC`` straddle band boundaries the same way).
* A square is a tile of a zone when it overlaps the zone's grid-zone areas, *including* the
  Norway (32V spans 3-12 deg E) and Svalbard (31X, 33X, 35X, 37X widened; no 32X, 34X, 36X)
  exceptions: real products exist for ``32VKN`` (west of 6 deg E) and ``35XQA`` (east of
  30 deg E), which only the exceptions allow. The exceptions change which squares exist, never a
  tile's CRS: a zone-32 tile is always in EPSG:32632.

These rules can disagree with the KML for a few squares at zone or band corners; every tile they
name has the exact grid :func:`tile_geobox` gives.

Tile ids are accepted with or without the ``T`` prefix ESA uses in file names, in any case, and
with a one-digit zone (``9UPV`` is ``09UPV``), as MGRS itself writes zones without zero padding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import PreparedGeometry, prep

from cloudfree.errors import InvalidInputError

__all__ = ["TILE_EXTENT_M", "MgrsTile", "parse_tile_id", "tile_geobox", "tiles_for"]

LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"
"""Latitude bands from 80 deg S, 8 deg each (X is 12 deg, up to 84 deg N)."""
COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
"""Column letters of zones 1, 4, 7...; 2, 5, 8...; 3, 6, 9..."""
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
SQUARE_M = 100_000
TILE_EXTENT_M = 109_800
"""Side of a Sentinel-2 tile in metres."""
ORIGIN_STEP_M = 60
"""Tile origins lie on a 60 m lattice (counted from the equator in both hemispheres)."""
SOUTH_FALSE_NORTHING = 10_000_000
MIN_LAT, MAX_LAT = -80.0, 84.0
BAND_TOLERANCE_M = 50_000
"""How far outside its band (measured at the central meridian) a square may lie."""
WGS84 = "EPSG:4326"

_TILE_ID = re.compile(r"^T?(\d{1,2})([A-Z])([A-Z])([A-Z])$")
_TILE_ID_HELP = (
    "A Sentinel-2 tile id is a UTM zone 1-60, a latitude band letter C-X (not I or O) and two "
    "100 km square letters, e.g. '29UPV' (a leading 'T', as in 'T29UPV', is accepted)."
)
# Grid-zone longitude ranges that differ from the regular 6 degrees: {band: {zone: (west, east)}};
# None means the zone does not exist in that band.
_EXCEPTIONS: dict[str, dict[int, tuple[float, float] | None]] = {
    "V": {31: (0.0, 3.0), 32: (3.0, 12.0)},
    "X": {
        31: (0.0, 9.0),
        32: None,
        33: (9.0, 21.0),
        34: None,
        35: (21.0, 33.0),
        36: None,
        37: (33.0, 42.0),
    },
}
_REACH_M = 2 * TILE_EXTENT_M
"""Generous bound on how far a zone's tiles reach beyond its widest grid-zone area."""


@dataclass(frozen=True)
class MgrsTile:
    """A parsed Sentinel-2 tile id.

    Attributes
    ----------
    zone
        UTM zone, 1-60.
    band
        Latitude band letter, ``C``-``X``.
    square
        The two 100 km square letters (column, row).

    """

    zone: int
    band: str
    square: str

    @property
    def id(self) -> str:
        """The canonical id, e.g. ``"29UPV"`` (zone zero-padded, no ``T``)."""
        return f"{self.zone:02d}{self.band}{self.square}"

    @property
    def north(self) -> bool:
        """Whether the tile is in the northern hemisphere's CRS (bands N-X)."""
        return self.band >= "N"

    @property
    def epsg(self) -> int:
        """EPSG code of the tile's WGS 84 / UTM CRS."""
        return (32600 if self.north else 32700) + self.zone

    @property
    def crs(self) -> str:
        """The tile's CRS, e.g. ``"EPSG:32629"``."""
        return f"EPSG:{self.epsg}"

    def __str__(self) -> str:
        """The canonical id."""
        return self.id


def _invalid(text: str, reason: str) -> InvalidInputError:
    """An error for a malformed tile id."""
    return InvalidInputError(f"{text!r} is not a Sentinel-2 tile id: {reason}. {_TILE_ID_HELP}")


def parse_tile_id(text: str | MgrsTile) -> MgrsTile:
    """Parse a Sentinel-2 tile id.

    Parameters
    ----------
    text
        ``"29UPV"``, ``"T29UPV"``, ``"t29upv"`` or ``"9UPV"`` style ids (or a parsed tile).

    Returns
    -------
    MgrsTile
        The tile; ``parse_tile_id(x).id`` is the canonical spelling.

    Raises
    ------
    InvalidInputError
        If the id is malformed, names a zone, band or column letter that does not exist, or a
        square that does not lie in its latitude band.

    """
    if isinstance(text, MgrsTile):
        return text
    match = _TILE_ID.match(str(text).strip().upper())
    if not match:
        raise _invalid(str(text), "it does not have the form zone + band + two letters")
    zone, band, column, row = int(match[1]), match[2], match[3], match[4]
    if not 1 <= zone <= 60:
        raise _invalid(text, f"zone {zone} is not between 1 and 60")
    if band not in LATITUDE_BANDS:
        raise _invalid(text, f"latitude band {band!r} is not one of {LATITUDE_BANDS}")
    columns = _columns(zone)
    if column not in columns:
        raise _invalid(text, f"column letter {column!r} is not used in zone {zone} ({columns})")
    if row not in ROW_LETTERS:
        raise _invalid(text, f"row letter {row!r} is not one of {ROW_LETTERS}")
    tile = MgrsTile(zone, band, column + row)
    _square_index(tile, text)
    return tile


def tile_geobox(tile_id: str | MgrsTile, resolution: float = 10) -> GeoBox:
    """Return the pixel grid of a Sentinel-2 tile.

    Parameters
    ----------
    tile_id
        Tile id (see :func:`parse_tile_id`).
    resolution
        Pixel size in metres; 109800 m must be a whole number of pixels (10, 20 and 60 are the
        Sentinel-2 grids).

    Returns
    -------
    odc.geo.geobox.GeoBox
        North-up grid in the tile's UTM CRS, e.g. 10980 x 10980 pixels at 10 m.

    Raises
    ------
    InvalidInputError
        If the id is invalid or the resolution does not divide the tile.

    """
    tile = parse_tile_id(tile_id)
    size = TILE_EXTENT_M / resolution if resolution > 0 else math.nan
    if not math.isfinite(size) or abs(size - round(size)) > 1e-9:
        raise InvalidInputError(
            f"Resolution {resolution} m does not divide the {TILE_EXTENT_M} m tile; use e.g. "
            "10, 20 or 60."
        )
    ulx, uly = _tile_origin(tile)
    pixels = round(size)
    affine = Affine(resolution, 0.0, ulx, 0.0, -resolution, uly)
    return GeoBox((pixels, pixels), affine, tile.crs)


def tiles_for(geometry: BaseGeometry | Geometry) -> list[str]:
    """Return the ids of the Sentinel-2 tiles whose footprints intersect a geometry.

    Every UTM zone whose tiles can reach the geometry is considered, in both hemispheres; the
    geometry is projected into each zone's CRS and intersected with the exact tile footprints, so
    a point within the ~9.8 km overlap of neighbouring tiles yields all of them, including tiles
    of the neighbouring zone.

    Parameters
    ----------
    geometry
        A shapely geometry in lon/lat (EPSG:4326), or an odc-geo geometry in any CRS.
        Longitudes lie in -180..180; parts beyond 80 deg S or 84 deg N have no tiles.

    Returns
    -------
    list of str
        Sorted canonical tile ids (possibly empty, e.g. for the poles).

    Raises
    ------
    InvalidInputError
        If the geometry is empty or not in lon/lat range.

    """
    shape = _lonlat_shape(geometry)
    found: set[str] = set()
    for zone, piece in _zone_pieces(shape):
        for north in (True, False):
            found.update(_zone_tiles(zone, north, piece))
    return sorted(found)


def _columns(zone: int) -> str:
    """Column letters of a zone."""
    return COLUMN_SETS[(zone - 1) % 3]


def _row_offset(zone: int) -> int:
    """Row-letter shift of a zone: even zones start five letters later."""
    return 5 if zone % 2 == 0 else 0


def _band_latitudes(band: str) -> tuple[float, float]:
    """Southern and northern latitude of a band."""
    south = MIN_LAT + 8.0 * LATITUDE_BANDS.index(band)
    return south, (MAX_LAT if band == "X" else south + 8.0)


def _band_at(lat: float) -> str:
    """The band holding a latitude (clamped to C..X)."""
    index = math.floor((lat - MIN_LAT) / 8.0)
    return LATITUDE_BANDS[min(max(index, 0), len(LATITUDE_BANDS) - 1)]


def _central_meridian(zone: int) -> float:
    """Central meridian of a zone in degrees."""
    return -183.0 + 6.0 * zone


def _false_northing(north: bool) -> int:
    """False northing of the northern or southern UTM CRS."""
    return 0 if north else SOUTH_FALSE_NORTHING


@lru_cache(maxsize=256)
def _to_utm(zone: int, north: bool) -> pyproj.Transformer:
    """Transformer from lon/lat to a zone's UTM CRS."""
    epsg = (32600 if north else 32700) + zone
    return pyproj.Transformer.from_crs(WGS84, f"EPSG:{epsg}", always_xy=True)


@lru_cache(maxsize=256)
def _to_lonlat(zone: int, north: bool) -> pyproj.Transformer:
    """Transformer from a zone's UTM CRS to lon/lat."""
    epsg = (32600 if north else 32700) + zone
    return pyproj.Transformer.from_crs(f"EPSG:{epsg}", WGS84, always_xy=True)


def _square_index(tile: MgrsTile, text: object) -> tuple[int, int]:
    """Return the 100 km square indices ``(easting // 1e5, northing // 1e5)`` of a tile.

    The row letter fixes the northing modulo 2000 km; the latitude band picks the cycle.
    Southern northings include the false northing.
    """
    column = _columns(tile.zone).index(tile.square[0]) + 1
    row = (ROW_LETTERS.index(tile.square[1]) - _row_offset(tile.zone)) % len(ROW_LETTERS)
    south_lat, north_lat = _band_latitudes(tile.band)
    cm = _central_meridian(tile.zone)
    _, (y_south, y_north) = _to_utm(tile.zone, tile.north).transform(
        [cm, cm], [south_lat, north_lat]
    )
    middle = (y_south + y_north) / 2.0 / SQUARE_M - 0.5
    northing = row + len(ROW_LETTERS) * round((middle - row) / len(ROW_LETTERS))
    bottom, top = northing * SQUARE_M, (northing + 1) * SQUARE_M
    in_hemisphere = northing >= 0 if tile.north else top <= SOUTH_FALSE_NORTHING
    if not in_hemisphere or top < y_south - BAND_TOLERANCE_M or bottom > y_north + BAND_TOLERANCE_M:
        raise _invalid(
            str(text),
            f"square {tile.square} of zone {tile.zone} does not lie in latitude band {tile.band}",
        )
    return column, northing


def _tile_origin(tile: MgrsTile) -> tuple[int, int]:
    """Upper-left corner of a tile: its square's north-west corner moved out to the 60 m lattice."""
    column, northing = _square_index(tile, tile.id)
    return _origin(column, northing, tile.north)


def _origin(column: int, northing: int, north: bool) -> tuple[int, int]:
    """Tile origin of the square with indices ``(column, northing)``."""
    ulx = column * SQUARE_M // ORIGIN_STEP_M * ORIGIN_STEP_M
    top = (northing + 1) * SQUARE_M - _false_northing(north)
    uly = -(-top // ORIGIN_STEP_M) * ORIGIN_STEP_M + _false_northing(north)
    return ulx, uly


def _lonlat_shape(geometry: BaseGeometry | Geometry) -> BaseGeometry:
    """Validate an input geometry and return it as a lon/lat shapely geometry."""
    if isinstance(geometry, Geometry):
        if geometry.crs is not None and not geometry.crs.geographic:
            geometry = geometry.to_crs(WGS84)
        geometry = geometry.geom
    if not isinstance(geometry, BaseGeometry) or geometry.is_empty:
        raise InvalidInputError("tiles_for needs a non-empty geometry in lon/lat (EPSG:4326).")
    minx, miny, maxx, maxy = geometry.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidInputError(
            f"Geometry bounds {geometry.bounds} are not lon/lat degrees; tiles_for needs "
            "EPSG:4326 coordinates with longitudes in -180..180."
        )
    return geometry


def _zone_pieces(shape: BaseGeometry) -> Iterator[tuple[int, BaseGeometry]]:
    """Yield ``(zone, part of shape)`` for zones whose tiles may reach it.

    Each part is the shape clipped to a longitude window around the zone's central meridian,
    with longitudes shifted by 360 degrees where the window crosses the antimeridian.
    """
    shape = shape.intersection(box(-180.0, MIN_LAT - 1.0, 180.0, MAX_LAT + 1.0))
    if shape.is_empty:
        return
    max_lat = min(max(abs(shape.bounds[1]), abs(shape.bounds[3])), MAX_LAT + 1.0)
    reach = 6.0 + math.degrees(_REACH_M / (6_378_137.0 * math.cos(math.radians(max_lat))))
    for zone in range(1, 61):
        cm = _central_meridian(zone)
        parts = []
        for shift in (-360.0, 0.0, 360.0):
            window = box(cm - reach + shift, -90.0, cm + reach + shift, 90.0)
            piece = shape.intersection(window)
            if not piece.is_empty:
                parts.append(shapely.transform(piece, lambda xy, s=shift: xy - [s, 0.0]))
        if parts:
            yield zone, shapely.union_all(parts)


def _project(geometry: BaseGeometry, transformer: pyproj.Transformer) -> BaseGeometry:
    """Project a lon/lat geometry, densified so its edges stay true."""
    dense = shapely.segmentize(geometry, 0.01)

    def forward(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(dense, forward)


def _zone_tiles(zone: int, north: bool, piece: BaseGeometry) -> Iterator[str]:
    """Yield the tiles of one zone and hemisphere whose footprints intersect ``piece``."""
    target = _project(piece, _to_utm(zone, north))
    if target.is_empty:
        return
    minx, miny, maxx, maxy = target.bounds
    region = _zone_region(zone, north)
    # a tile reaches ~9.8 km east and south of its square: widen the candidate ranges by a square
    columns = range(max(1, math.floor((minx - TILE_EXTENT_M) / SQUARE_M)), 9)
    last_row = math.floor((maxy + TILE_EXTENT_M) / SQUARE_M)
    if not north:
        last_row = min(last_row, SOUTH_FALSE_NORTHING // SQUARE_M - 1)
    rows = range(max(0, math.floor(miny / SQUARE_M) - 1), last_row + 1)
    for column in columns:
        if column * SQUARE_M - ORIGIN_STEP_M > maxx:
            break
        for northing in rows:
            tile_id = _existing_tile(zone, north, column, northing, region)
            if tile_id is None:
                continue
            ulx, uly = _origin(column, northing, north)
            footprint = box(ulx, uly - TILE_EXTENT_M, ulx + TILE_EXTENT_M, uly)
            if footprint.intersects(target):
                yield tile_id


def _existing_tile(
    zone: int, north: bool, column: int, northing: int, region: PreparedGeometry
) -> str | None:
    """The id of square ``(column, northing)`` of a zone, or None when it is not a tile."""
    square = box(
        column * SQUARE_M, northing * SQUARE_M, (column + 1) * SQUARE_M, (northing + 1) * SQUARE_M
    )
    if not region.intersects(square):
        return None
    centre_x, centre_y = (column + 0.5) * SQUARE_M, (northing + 0.5) * SQUARE_M
    _, lat = _to_lonlat(zone, north).transform(centre_x, centre_y)
    band = _band_at(float(lat))
    row = ROW_LETTERS[(northing + _row_offset(zone)) % len(ROW_LETTERS)]
    return f"{zone:02d}{band}{_columns(zone)[column - 1]}{row}"


@lru_cache(maxsize=128)
def _zone_region(zone: int, north: bool) -> PreparedGeometry:
    """The zone's grid-zone areas (with the Norway/Svalbard exceptions) in its UTM CRS."""
    west = -180.0 + 6.0 * (zone - 1)
    boxes = []
    for band in LATITUDE_BANDS:
        extent = _EXCEPTIONS.get(band, {}).get(zone, (west, west + 6.0))
        if extent is not None:
            south, northern = _band_latitudes(band)
            boxes.append(box(extent[0], south, extent[1], northern))
    region = shapely.union_all(boxes)
    return prep(_project(region, _to_utm(zone, north)))
