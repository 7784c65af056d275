"""Geometry of the synthetic world: local metres, pixel centres, tile grids and footprints.

The world is defined in *local metres* around a fixed origin near Dublin (lon -6.0, the UTM zone
29/30 boundary, lat 53.35). Every raster, whatever its CRS, is evaluated by converting its pixel
centres to lon/lat with pyproj and then to local metres, so all grids see the same world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely
from shapely.geometry import Polygon, box

LON0 = -6.0
"""Longitude of the local origin: the UTM zone 29/30 boundary."""
LAT0 = 53.35
"""Latitude of the local origin."""
M_PER_DEG_LON = 111320.0 * math.cos(math.radians(LAT0))
"""Metres per degree of longitude at ``LAT0`` (local east axis scale)."""
M_PER_DEG_LAT = 110540.0
"""Metres per degree of latitude (local north axis scale)."""
GRID_SNAP = 20.0
"""Tile origins are whole multiples of this many metres, so 10 m and 20 m grids nest."""
WGS84 = "EPSG:4326"

Transform6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class TileSpec:
    """Where a synthetic MGRS-like tile sits.

    Attributes
    ----------
    id
        MGRS tile id, e.g. ``"29UPV"``.
    epsg
        EPSG code of the tile's UTM zone.
    centre_fraction
        Local-metre x of the tile centre, as a fraction of the tile extent.

    """

    id: str
    epsg: int
    centre_fraction: float


TILE_SPECS: tuple[TileSpec, ...] = (
    TileSpec("29UPV", 32629, -0.375),
    TileSpec("30UUE", 32630, 0.125),
)
"""The two tiles: they overlap by half a tile, across lon -6 (local x = 0)."""


@dataclass(frozen=True)
class LocalPoints:
    """Points in local metres (east ``x``, north ``y``), any array shape."""

    x: np.ndarray
    y: np.ndarray


def lonlat_to_local(lon: np.ndarray, lat: np.ndarray) -> LocalPoints:
    """Convert lon/lat degrees to local metres.

    Parameters
    ----------
    lon, lat
        Longitudes and latitudes in degrees (broadcastable arrays).

    Returns
    -------
    LocalPoints
        East/north distances in metres from (``LON0``, ``LAT0``).

    """
    x = (np.asarray(lon, dtype=np.float64) - LON0) * M_PER_DEG_LON
    y = (np.asarray(lat, dtype=np.float64) - LAT0) * M_PER_DEG_LAT
    return LocalPoints(x, y)


def local_to_lonlat(x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Convert local metres back to lon/lat degrees.

    Parameters
    ----------
    x, y
        East/north distances in metres from the local origin.

    Returns
    -------
    tuple of numpy.ndarray
        Longitudes and latitudes in degrees.

    """
    lon = np.asarray(x, dtype=np.float64) / M_PER_DEG_LON + LON0
    lat = np.asarray(y, dtype=np.float64) / M_PER_DEG_LAT + LAT0
    return lon, lat


def pixel_centres(transform: Transform6, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the CRS coordinates of every pixel centre of a grid.

    Parameters
    ----------
    transform
        Affine coefficients ``(a, b, c, d, e, f)`` mapping (col, row) to CRS coordinates.
    shape
        Grid shape ``(height, width)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(X, Y)`` float64 arrays of shape ``shape``.

    """
    a, b, c, d, e, f = (float(v) for v in transform)
    cols = np.arange(shape[1], dtype=np.float64)[np.newaxis, :] + 0.5
    rows = np.arange(shape[0], dtype=np.float64)[:, np.newaxis] + 0.5
    xs = a * cols + b * rows + c
    ys = d * cols + e * rows + f
    return xs, ys


def to_lonlat(
    crs: pyproj.CRS | str, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transform CRS coordinates to lon/lat degrees (always x=lon, y=lat).

    Parameters
    ----------
    crs
        Source coordinate reference system.
    xs, ys
        Coordinates in ``crs``.

    Returns
    -------
    tuple of numpy.ndarray
        Longitudes and latitudes.

    """
    transformer = pyproj.Transformer.from_crs(pyproj.CRS(crs), WGS84, always_xy=True)
    lon, lat = transformer.transform(np.asarray(xs), np.asarray(ys))
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def from_lonlat(
    crs: pyproj.CRS | str, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transform lon/lat degrees to a CRS.

    Parameters
    ----------
    crs
        Target coordinate reference system.
    lon, lat
        Longitudes and latitudes in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        Coordinates in ``crs``.

    """
    transformer = pyproj.Transformer.from_crs(WGS84, pyproj.CRS(crs), always_xy=True)
    xs, ys = transformer.transform(np.asarray(lon), np.asarray(lat))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def grid_local_points(
    crs: pyproj.CRS | str, transform: Transform6, shape: tuple[int, int]
) -> LocalPoints:
    """Local-metre coordinates of the pixel centres of a grid.

    This is the single path from any grid to the world's coordinates: scenes, the reference
    truth grid and ``SyntheticArchive.truth`` all use it, so identical grids give identical
    values.

    Parameters
    ----------
    crs
        The grid's CRS.
    transform
        The grid's affine coefficients ``(a, b, c, d, e, f)``.
    shape
        The grid's ``(height, width)``.

    Returns
    -------
    LocalPoints
        Local metres of each pixel centre, arrays of shape ``shape``.

    """
    xs, ys = pixel_centres(transform, shape)
    lon, lat = to_lonlat(crs, xs, ys)
    return lonlat_to_local(lon, lat)


def tile_extent_m(tile_size: int) -> float:
    """Side length in metres of a tile of ``tile_size`` 10 m pixels."""
    return tile_size * 10.0


def snap(value: float, step: float = GRID_SNAP) -> float:
    """Round a coordinate to the nearest multiple of ``step``."""
    return float(round(value / step) * step)


def tile_transform(spec: TileSpec, tile_size: int) -> Transform6:
    """Return the 10 m affine coefficients of a tile, origin snapped to 20 m.

    Parameters
    ----------
    spec
        The tile's placement.
    tile_size
        Tile width and height in 10 m pixels.

    Returns
    -------
    tuple of float
        ``(10, 0, x0, 0, -10, y0)`` with ``x0``, ``y0`` multiples of 20 m.

    """
    extent = tile_extent_m(tile_size)
    lon, lat = local_to_lonlat(spec.centre_fraction * extent, 0.0)
    east, north = from_lonlat(f"EPSG:{spec.epsg}", lon, lat)
    x0 = snap(float(east) - extent / 2.0)
    y0 = snap(float(north) + extent / 2.0)
    return (10.0, 0.0, x0, 0.0, -10.0, y0)


def grid_bounds(transform: Transform6, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Return ``(minx, miny, maxx, maxy)`` of a north-up grid in its CRS."""
    a, _, c, _, e, f = transform
    x1, y1 = c + a * shape[1], f + e * shape[0]
    return (min(c, x1), min(f, y1), max(c, x1), max(f, y1))


def densified_ring(bounds: tuple[float, float, float, float], per_side: int = 16) -> np.ndarray:
    """Return a closed counter-clockwise ring along a rectangle, ``per_side`` points per edge.

    Parameters
    ----------
    bounds
        ``(minx, miny, maxx, maxy)``.
    per_side
        Number of segments on each edge.

    Returns
    -------
    numpy.ndarray
        ``(4 * per_side + 1, 2)`` array of vertices, first == last.

    """
    minx, miny, maxx, maxy = bounds
    t = np.linspace(0.0, 1.0, per_side, endpoint=False)
    bottom = np.column_stack([minx + t * (maxx - minx), np.full_like(t, miny)])
    right = np.column_stack([np.full_like(t, maxx), miny + t * (maxy - miny)])
    top = np.column_stack([maxx - t * (maxx - minx), np.full_like(t, maxy)])
    left = np.column_stack([np.full_like(t, minx), maxy - t * (maxy - miny)])
    ring = np.concatenate([bottom, right, top, left])
    return np.concatenate([ring, ring[:1]])


def footprint_lonlat(crs: str, transform: Transform6, shape: tuple[int, int]) -> Polygon:
    """Return a grid's footprint as a densified lon/lat polygon.

    Parameters
    ----------
    crs
        The grid's CRS.
    transform
        The grid's affine coefficients.
    shape
        The grid's ``(height, width)``.

    Returns
    -------
    shapely.geometry.Polygon
        Counter-clockwise polygon, coordinates rounded to 1e-9 degree.

    """
    ring = densified_ring(grid_bounds(transform, shape))
    lon, lat = to_lonlat(crs, ring[:, 0], ring[:, 1])
    return Polygon(np.column_stack([np.round(lon, 9), np.round(lat, 9)]))


def inscribed_box(polygon: Polygon, iterations: int = 40) -> tuple[float, float, float, float]:
    """Return an axis-aligned box around the centroid that lies inside ``polygon``.

    The box keeps the aspect ratio of the polygon's bounds and is the largest such box found by
    bisection on its scale, so every point of it is inside the polygon.

    Parameters
    ----------
    polygon
        A convex-ish polygon.
    iterations
        Bisection steps.

    Returns
    -------
    tuple of float
        ``(minx, miny, maxx, maxy)``.

    """
    minx, miny, maxx, maxy = polygon.bounds
    cx, cy = polygon.centroid.x, polygon.centroid.y
    hx, hy = (maxx - minx) / 2.0, (maxy - miny) / 2.0
    low, high = 0.0, 1.0
    for _ in range(iterations):
        mid = (low + high) / 2.0
        candidate = box(cx - mid * hx, cy - mid * hy, cx + mid * hx, cy + mid * hy)
        if shapely.covers(polygon, candidate):
            low = mid
        else:
            high = mid
    return (cx - low * hx, cy - low * hy, cx + low * hx, cy + low * hy)


def reference_grid(
    crs: str, footprints: tuple[Polygon, ...], resolution: float = 10.0
) -> tuple[Transform6, tuple[int, int]]:
    """Return a north-up grid in ``crs`` covering the union of lon/lat footprints.

    Parameters
    ----------
    crs
        CRS of the grid.
    footprints
        Lon/lat polygons to cover.
    resolution
        Pixel size in CRS units.

    Returns
    -------
    tuple
        ``(transform, (height, width))``, origin snapped outwards to ``GRID_SNAP``.

    """
    coords = np.concatenate([np.asarray(fp.exterior.coords) for fp in footprints])
    xs, ys = from_lonlat(crs, coords[:, 0], coords[:, 1])
    x0 = math.floor(xs.min() / GRID_SNAP) * GRID_SNAP
    y1 = math.ceil(ys.max() / GRID_SNAP) * GRID_SNAP
    x1 = math.ceil(xs.max() / GRID_SNAP) * GRID_SNAP
    y0 = math.floor(ys.min() / GRID_SNAP) * GRID_SNAP
    shape = (round((y1 - y0) / resolution), round((x1 - x0) / resolution))
    return (resolution, 0.0, float(x0), 0.0, -resolution, float(y1)), shape


def local_bounds(footprints: tuple[Polygon, ...]) -> tuple[float, float, float, float]:
    """Return the local-metre bounds ``(minx, miny, maxx, maxy)`` of lon/lat footprints."""
    coords = np.concatenate([np.asarray(fp.exterior.coords) for fp in footprints])
    pts = lonlat_to_local(coords[:, 0], coords[:, 1])
    return (float(pts.x.min()), float(pts.y.min()), float(pts.x.max()), float(pts.y.max()))
