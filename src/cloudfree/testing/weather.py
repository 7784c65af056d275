"""Per-acquisition conditions: dates, clouds, cirrus, shadows, snow and swath edges.

Cloud and cirrus opacity are sums of seeded gaussian blobs in local metres, tabulated once per
acquisition on a coarse local-metre grid and interpolated bilinearly at pixel centres. Both
tiles of an acquisition sample the same tables, so they see the same sky. :meth:`Weather.plan`
rebuilds every sky of an archive from its seed, world and tiles; the generator and
``SyntheticArchive.conditions`` both go through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from shapely.geometry import Polygon

from cloudfree.testing.fields import FourierField, World
from cloudfree.testing.geo import LocalPoints, local_bounds

FIRST_ACQUISITION = datetime(2021, 11, 3, 11, 45, 21, tzinfo=UTC)
"""Sensing time of the first acquisition."""
REVISIT = timedelta(days=15)
"""Spacing between acquisitions."""
WINTER_MONTHS = (12, 1, 2)

# Purpose codes that keep independent random streams apart.
STREAM_WORLD = 1
STREAM_PLAN = 2
STREAM_SKY = 3
STREAM_NOISE = 4
STREAM_SPECKS = 5
STREAM_CLOUD_PROBABILITY = 6


def stream(seed: int, *keys: int) -> np.random.Generator:
    """Return an independent, reproducible random generator for ``(seed, *keys)``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


@dataclass(frozen=True)
class SwathEdge:
    """A straight swath edge in local metres; pixels on one side of it have no data.

    Attributes
    ----------
    x0, y0
        A point on the line.
    heading
        Direction of the line, radians clockwise from north.
    side
        ``+1`` to blank the side to the right of the heading (east-ish), ``-1`` the left.

    """

    x0: float
    y0: float
    heading: float
    side: int

    def nodata(self, points: LocalPoints) -> np.ndarray:
        """Return a boolean mask of points beyond the edge."""
        across = (points.x - self.x0) * math.cos(self.heading)
        across -= (points.y - self.y0) * math.sin(self.heading)
        return self.side * across > 0.0


@dataclass(frozen=True)
class Acquisition:
    """One acquisition (solar day), shared by both tiles.

    Attributes
    ----------
    index
        Position in the time series.
    datetime
        Sensing time (UTC).
    platform
        ``"sentinel-2a"`` or ``"sentinel-2b"``.
    almost_cloudy, snow
        Role flags.
    swath
        Swath edge, or ``None`` when the whole area was imaged.
    gain
        Per-date radiometric gain on the surface (about 1 +- 2 %).
    cloud_fraction, thick_fraction
        Target fraction of the area under cloud (opacity > 0.3) and thick cloud (> 0.6).
    cirrus_fraction
        Target fraction under flagged cirrus (before clouds take precedence).
    snow_fraction
        Target fraction of the area under snow on snow dates.
    cloud_brightness
        Scale of the cloud-top reflectance.
    shadow_shift
        ``(dx, dy)`` in metres from a cloud to its shadow.
    shadow_factor
        Reflectance multiplier in full shadow.

    """

    index: int
    datetime: datetime
    platform: str
    almost_cloudy: bool
    snow: bool
    swath: SwathEdge | None
    gain: float
    cloud_fraction: float
    thick_fraction: float
    cirrus_fraction: float
    snow_fraction: float
    cloud_brightness: float
    shadow_shift: tuple[float, float]
    shadow_factor: float


def _pick(rng: np.random.Generator, candidates: list[int], count: int) -> frozenset[int]:
    """Pick ``count`` distinct candidates (fewer if there are not enough)."""
    count = min(count, len(candidates))
    if count <= 0:
        return frozenset()
    return frozenset(int(v) for v in rng.choice(candidates, size=count, replace=False))


def _swath_edge(rng: np.random.Generator, extent: float) -> SwathEdge:
    """Draw a slanted swath edge crossing the tiles' overlap (local x in -0.2..-0.05 extent)."""
    return SwathEdge(
        x0=float(rng.uniform(-0.2, -0.05) * extent),
        y0=0.0,
        heading=math.radians(float(rng.uniform(-16.0, -8.0))),
        side=int(rng.choice([-1, 1])),
    )


def plan_acquisitions(seed: int, n_dates: int, extent: float) -> tuple[Acquisition, ...]:
    """Plan the time series: dates, platforms and each date's role and weather parameters.

    Two dates (not snowy, not the second date) are almost fully cloudy, one or two winter dates
    are snowy, and about three dates that are not almost cloudy end at a swath edge.

    Parameters
    ----------
    seed
        Archive seed.
    n_dates
        Number of acquisitions.
    extent
        Tile side in metres (sets the scale of swath offsets and shadow shifts).

    Returns
    -------
    tuple of Acquisition
        One per date, in time order.

    """
    rng = stream(seed, STREAM_PLAN)
    dates = [FIRST_ACQUISITION + i * REVISIT for i in range(n_dates)]
    winter = [i for i, d in enumerate(dates) if d.month in WINTER_MONTHS]
    snow = _pick(rng, winter, 2 if n_dates >= 6 else 1)
    cloudy_candidates = [i for i in range(n_dates) if i not in snow and i != 1]
    almost_cloudy = _pick(rng, cloudy_candidates, 2 if n_dates >= 6 else n_dates // 3)
    swath_candidates = [i for i in range(n_dates) if i not in almost_cloudy]
    swath = _pick(rng, swath_candidates, 3 if n_dates >= 8 else n_dates // 3)
    acquisitions = []
    for i, when in enumerate(dates):
        cloudy = i in almost_cloudy
        cloud = 0.975 if cloudy else float(rng.uniform(0.08, 0.35))
        if i in snow:
            cloud = float(rng.uniform(0.08, 0.2))
        acquisitions.append(
            Acquisition(
                index=i,
                datetime=when,
                platform="sentinel-2a" if i % 2 == 0 else "sentinel-2b",
                almost_cloudy=cloudy,
                snow=i in snow,
                swath=_swath_edge(rng, extent) if i in swath else None,
                gain=float(rng.uniform(0.98, 1.02)),
                cloud_fraction=cloud,
                thick_fraction=cloud * (0.88 if cloudy else float(rng.uniform(0.45, 0.7))),
                cirrus_fraction=0.0 if cloudy else float(rng.uniform(0.03, 0.1)),
                snow_fraction=float(rng.uniform(0.3, 0.5)),
                cloud_brightness=float(rng.uniform(0.9, 1.1)),
                shadow_shift=(
                    float(rng.uniform(-0.04, 0.01) * extent),
                    float(rng.uniform(0.05, 0.11) * extent),
                ),
                shadow_factor=float(rng.uniform(0.35, 0.5)),
            )
        )
    return tuple(acquisitions)


@dataclass(frozen=True)
class Stencil:
    """Bilinear interpolation weights of some points on a :class:`Lattice`.

    Attributes
    ----------
    corners
        Flat table indices of the four surrounding nodes (``00``, ``01``, ``10``, ``11``).
    tx, ty
        float32 fractional positions between the nodes.

    """

    corners: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    tx: np.ndarray
    ty: np.ndarray

    def sample(self, table: np.ndarray) -> np.ndarray:
        """Interpolate a table defined on the stencil's lattice; returns float32."""
        flat = table.ravel()
        v00, v01, v10, v11 = (np.take(flat, corner) for corner in self.corners)
        top = v00 + (v01 - v00) * self.tx
        bottom = v10 + (v11 - v10) * self.tx
        return top + (bottom - top) * self.ty


@dataclass(frozen=True)
class Lattice:
    """A regular local-metre grid on which sky fields are tabulated.

    Attributes
    ----------
    x0, y0
        Local metres of node ``[0, 0]``.
    step
        Node spacing in metres (x increases with column, y with row).
    shape
        ``(rows, columns)``.

    """

    x0: float
    y0: float
    step: float
    shape: tuple[int, int]

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``(X, Y)`` local metres of every node."""
        xs = self.x0 + self.step * np.arange(self.shape[1], dtype=np.float64)
        ys = self.y0 + self.step * np.arange(self.shape[0], dtype=np.float64)
        gx, gy = np.meshgrid(xs, ys)
        return gx, gy

    def stencil(self, x: np.ndarray, y: np.ndarray) -> Stencil:
        """Return the bilinear stencil of local-metre points (clamped at the lattice edge)."""
        ny, nx = self.shape
        fx = np.clip((x - self.x0) / self.step, 0.0, nx - 1.000001)
        fy = np.clip((y - self.y0) / self.step, 0.0, ny - 1.000001)
        ix = fx.astype(np.int32)
        iy = fy.astype(np.int32)
        base = iy * np.int32(nx) + ix
        corners = (base, base + 1, base + nx, base + nx + 1)
        return Stencil(corners, (fx - ix).astype(np.float32), (fy - iy).astype(np.float32))


@dataclass(frozen=True)
class Region:
    """The local-metre area the archive covers, and a margin-padded coarse grid around it.

    Attributes
    ----------
    bounds
        ``(minx, miny, maxx, maxy)`` of the union of the tiles (calibration area).
    extent
        Tile side in metres (the length scale of clouds).
    margin
        Padding in metres (room for shadow shifts).
    step
        Coarse grid spacing in metres.

    """

    bounds: tuple[float, float, float, float]
    extent: float
    margin: float
    step: float

    def lattice(self) -> Lattice:
        """Return the coarse lattice covering ``bounds`` plus ``margin``."""
        minx, miny, maxx, maxy = self.bounds
        x0, y0 = minx - self.margin, miny - self.margin
        nx = math.ceil((maxx + self.margin - x0) / self.step) + 1
        ny = math.ceil((maxy + self.margin - y0) / self.step) + 1
        return Lattice(x0, y0, self.step, (ny, nx))

    def inner(self, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        """Return a mask of coarse nodes inside ``bounds``."""
        minx, miny, maxx, maxy = self.bounds
        return (gx >= minx) & (gx <= maxx) & (gy >= miny) & (gy <= maxy)


@dataclass(frozen=True)
class Sky:
    """An acquisition's tabulated cloud and cirrus opacity and its snow line.

    Attributes
    ----------
    cloud
        float32 table of cloud opacity 0..1 on the region's lattice (SCL medium cloud above
        0.3, thick above 0.6).
    cirrus
        float32 table of cirrus strength 0..1 (flagged above 0.5).
    snow_line
        Elevation above which there is snow, or ``None`` on snow-free dates.

    """

    cloud: np.ndarray
    cirrus: np.ndarray
    snow_line: float | None


def _blobs(
    rng: np.random.Generator,
    gx: np.ndarray,
    gy: np.ndarray,
    region: Region,
    count: int,
    sigma: tuple[float, float],
    aspect: tuple[float, float],
) -> np.ndarray:
    """Sum ``count`` random anisotropic gaussian blobs on the coarse grid nodes."""
    minx, miny, maxx, maxy = region.bounds
    pad = region.margin
    total = np.zeros_like(gx)
    for _ in range(count):
        cx = rng.uniform(minx - pad, maxx + pad)
        cy = rng.uniform(miny - pad, maxy + pad)
        major = rng.uniform(*sigma)
        minor = major / rng.uniform(*aspect)
        angle = rng.uniform(0.0, math.pi)
        weight = rng.uniform(0.5, 1.5)
        dx, dy = gx - cx, gy - cy
        u = (dx * math.cos(angle) + dy * math.sin(angle)) / major
        v = (-dx * math.sin(angle) + dy * math.cos(angle)) / minor
        total += weight * np.exp(-0.5 * (u * u + v * v))
    return total


def _calibrate(
    raw: np.ndarray, inner: np.ndarray, fractions: tuple[float, ...], levels: tuple[float, ...]
) -> np.ndarray:
    """Map a raw blob field to opacity so that given area fractions exceed given levels.

    The field is mapped piecewise-linearly through knots at the quantiles that leave
    ``fractions[i]`` of the inner area above ``levels[i]``; below half the first knot the sky is
    clear, a thin haze fringe (SCL misses it, as Sen2Cor does) leads up to the first knot, and
    the last segment saturates at 1.
    """
    first = float(np.quantile(raw[inner], 1.0 - fractions[0]))
    knots_x = [0.0, 0.5 * first, 0.8 * first]
    knots_y = [0.0, 0.0, 0.15 * levels[0]]
    previous = 0.8 * first
    for fraction, level in zip(fractions, levels, strict=True):
        value = max(float(np.quantile(raw[inner], 1.0 - fraction)), previous * 1.0001 + 1e-9)
        knots_x.append(value)
        knots_y.append(level)
        previous = value
    knots_x.append(previous + max(1.5 * (previous - first), 0.6 * first) + 1e-9)
    knots_y.append(1.0)
    return np.interp(raw, knots_x, knots_y)


def make_sky(seed: int, acquisition: Acquisition, world: World, region: Region) -> Sky:
    """Tabulate an acquisition's clouds and cirrus, and fix its snow line.

    Parameters
    ----------
    seed
        Archive seed.
    acquisition
        The acquisition.
    world
        The static world (for the snow line's elevation quantile).
    region
        Area and coarse grid.

    Returns
    -------
    Sky
        The tabulated sky.

    """
    rng = stream(seed, STREAM_SKY, acquisition.index)
    extent = region.extent
    gx, gy = region.lattice().nodes()
    inner = region.inner(gx, gy)
    if acquisition.almost_cloudy:
        raw = _blobs(rng, gx, gy, region, 12, (0.3 * extent, 0.6 * extent), (1.0, 1.8))
        roughness = 0.1
    else:
        count = int(rng.integers(6, 15))
        raw = _blobs(rng, gx, gy, region, count, (0.03 * extent, 0.14 * extent), (1.0, 2.5))
        roughness = 0.35
    texture = FourierField.random(rng, 8, 0.04 * extent, 0.2 * extent)
    raw = raw * np.clip(1.0 + roughness * texture.evaluate(gx, gy), 0.2, None) + 1e-6
    cloud = _calibrate(
        raw, inner, (acquisition.cloud_fraction, acquisition.thick_fraction), (0.3, 0.6)
    )
    n_streaks = int(rng.integers(3, 8))
    streaks = _blobs(rng, gx, gy, region, n_streaks, (0.08 * extent, 0.3 * extent), (3.0, 6.0))
    streaks += 1e-6
    if acquisition.cirrus_fraction > 0.0:
        cirrus = _calibrate(streaks, inner, (acquisition.cirrus_fraction,), (0.5,))
    else:
        cirrus = np.zeros_like(streaks)
    snow_line = None
    if acquisition.snow:
        elevation = world.elevation.evaluate(gx[inner], gy[inner])
        snow_line = float(np.quantile(elevation, 1.0 - acquisition.snow_fraction))
    return Sky(
        cloud=cloud.astype(np.float32),
        cirrus=cirrus.astype(np.float32),
        snow_line=snow_line,
    )


@dataclass(frozen=True)
class Conditions:
    """An acquisition's conditions at some points.

    Attributes
    ----------
    opacity
        Cloud opacity 0..1.
    shadow
        Opacity of the cloud casting a shadow onto each point, 0..1.
    cirrus
        Cirrus strength 0..1.
    nodata
        Beyond the swath edge.
    snow
        Snow-covered ground.

    """

    opacity: np.ndarray
    shadow: np.ndarray
    cirrus: np.ndarray
    nodata: np.ndarray
    snow: np.ndarray


def conditions_at(
    acquisition: Acquisition,
    sky: Sky,
    lattice: Lattice,
    points: LocalPoints,
    stencil: Stencil,
    elevation: np.ndarray,
    water: np.ndarray,
) -> Conditions:
    """Evaluate an acquisition's conditions at points.

    Parameters
    ----------
    acquisition
        The acquisition.
    sky
        Its tabulated sky.
    lattice
        The lattice the sky is tabulated on.
    points
        Local-metre coordinates.
    stencil
        ``lattice.stencil(points.x, points.y)``, shared by every acquisition.
    elevation
        The world's elevation field at ``points``.
    water
        Lake mask at ``points`` (lakes stay snow-free).

    Returns
    -------
    Conditions
        Opacity, shadow, cirrus, nodata and snow at ``points``.

    """
    dx, dy = acquisition.shadow_shift
    if acquisition.swath is None:
        nodata = np.zeros(np.shape(points.x), dtype=bool)
    else:
        nodata = acquisition.swath.nodata(points)
    if sky.snow_line is None:
        snow = np.zeros(np.shape(points.x), dtype=bool)
    else:
        snow = (elevation > sky.snow_line) & ~water
    return Conditions(
        opacity=stencil.sample(sky.cloud),
        shadow=lattice.stencil(points.x - dx, points.y - dy).sample(sky.cloud),
        cirrus=stencil.sample(sky.cirrus),
        nodata=nodata,
        snow=snow,
    )


def sky_region(footprints: Sequence[Polygon], extent: float) -> Region:
    """Return the area the skies are tabulated over: the tiles' union plus a quarter tile.

    Parameters
    ----------
    footprints
        Lon/lat footprints of the archive's tiles.
    extent
        Tile side in metres.

    Returns
    -------
    Region
        Bounds of the footprints in local metres, a margin of ``extent / 4`` (room for shadow
        shifts) and a lattice step of ``extent / 128``.

    """
    return Region(local_bounds(tuple(footprints)), extent, margin=0.25 * extent, step=extent / 128)


@dataclass(frozen=True)
class Weather:
    """Every acquisition of an archive with its tabulated sky: all that changes from date to date.

    Attributes
    ----------
    acquisitions
        The acquisitions, in time order.
    skies
        Their skies, in the same order.
    lattice
        The lattice the skies are tabulated on.

    """

    acquisitions: tuple[Acquisition, ...]
    skies: tuple[Sky, ...]
    lattice: Lattice

    @classmethod
    def plan(
        cls,
        seed: int,
        n_dates: int,
        world: World,
        footprints: Sequence[Polygon],
        extent: float,
    ) -> Weather:
        """Plan the acquisitions and tabulate their skies, deterministically from the seed.

        This is the one path from an archive's parameters to its skies: the generator renders
        from it and ``SyntheticArchive.conditions`` rebuilds the same skies with it.

        Parameters
        ----------
        seed
            Archive seed.
        n_dates
            Number of acquisitions.
        world
            The static world (snow lines follow its elevation).
        footprints
            Lon/lat footprints of the tiles (they fix the tabulated region).
        extent
            Tile side in metres.

        Returns
        -------
        Weather
            The acquisitions and their skies.

        """
        acquisitions = plan_acquisitions(seed, n_dates, extent)
        region = sky_region(footprints, extent)
        skies = tuple(make_sky(seed, acq, world, region) for acq in acquisitions)
        return cls(acquisitions, skies, region.lattice())

    def conditions(
        self,
        index: int,
        points: LocalPoints,
        elevation: np.ndarray,
        water: np.ndarray,
        stencil: Stencil | None = None,
    ) -> Conditions:
        """Evaluate acquisition ``index``'s conditions at points (see :func:`conditions_at`).

        ``stencil`` may be passed when it is shared by several acquisitions; it is computed
        from ``points`` otherwise.
        """
        if stencil is None:
            stencil = self.lattice.stencil(points.x, points.y)
        return conditions_at(
            self.acquisitions[index],
            self.skies[index],
            self.lattice,
            points,
            stencil,
            elevation,
            water,
        )
