"""Best-available-pixel (BAP) compositing, scored the way FORCE scores observations.

Each pixel takes *all* bands from the one observation with the highest score, so the composite
is a real, spectrally consistent observation. The scores, their defaults and the selection
follow FORCE (David Frantz, github.com/davidfrantz/force; read at commit ``f5b8027``):
``src/higher-level/bap-hl.c`` (``target_function``, ``compile_target_static``,
``parametric_score``, ``haze_stats``, ``bap_compositing``), ``src/higher-level/param-hl.c``
(``register_bap`` for the parameter names; ``parse_param_higher`` for the weight sum and the
choice of the DOY function), ``src/aux-level/param-aux.c`` (``write_par_hl_bap``: the defaults
``force-parameter`` writes) and ``src/lower-level/atmo-ll.c`` (``compile_l2_hot``: the haze
index). Parameter names below are FORCE's.

Scores of one usable observation
--------------------------------
**Day of year** (``DOY_STATIC = p0 p1 p2``, default ``120 180 240``; ``DOY_SCORE = s0 s1 s2``,
default ``0.01 0.99 0.01``). FORCE anchors the three points in continuous time (``365 * year +
doy``, leap days ignored); ``p0 > p1`` puts ``p0`` in the previous year and ``p2 < p1`` puts
``p2`` in the next (a winter target: ``330 30 90``). With ``o0 = p0 - p1`` (``- 365`` if
``p0 > p1``) and ``o2 = p2 - p1`` (``+ 365`` if ``p2 < p1``), and an acquisition ``dt`` days
from the *nearest* occurrence of ``p1`` (FORCE takes the target year whose ``p1`` is closest)::

    dt = ((doy - p1 + 182) mod 365) - 182          in [-182, 182]; doy 366 counts as 1

the score is, by the shape of ``s0 s1 s2``:

* Gaussian (``s0 < s1 > s2``, the default)::

      d = s1 * exp(dt**2 / (-2 * sa**2))   if dt < 0,   sa = |o0| / sqrt(-2 ln(s0 / s1))
      d = s1 * exp(dt**2 / (-2 * sb**2))   otherwise,   sb = |o2| / sqrt(-2 ln(s2 / s1))

  so ``d(o0) = s0``, ``d(0) = s1``, ``d(o2) = s2`` exactly.
* Descending sigmoid (``s0 > s1 > s2``): ``d = 0`` before ``o0``, else
  ``s0 / (1 + exp(a * dt + b))``; ascending (``s0 < s1 < s2``): ``d = 0`` after ``o2``, else
  ``s2 / (1 + exp(a * dt + b))``. FORCE fits ``a, b`` to the three points by least squares
  (GSL's Nelder-Mead simplex, stopped at a simplex size of ``1e-2`` or 100 iterations); here the
  same least-squares problem is solved to convergence (:func:`fit_sigmoid`), so the curve is the
  one FORCE aims at, not bit-identical to its early-stopped fit.

**Cloud distance** (``DREQ``, default 3000 m; ``dst`` the distance in metres to the nearest
rejected pixel, :func:`cloud_distance`)::

    c = 1 / (1 + exp((-10 / DREQ) * (dst - DREQ / 2)))      c(DREQ / 2) = 0.5, c(DREQ) = 0.9933

**Haze.** FORCE's Level 2 ``HOT`` product is the haze optimized transform on top-of-atmosphere
reflectance, ``HOT = blue - 0.5 * red - 800`` on the x10000 scale (stored truncated to int16),
and its score is ``1 / (1 + exp((10 / 200) * (HOT + 150)))``. In reflectance units, with
``haze_midpoint = -0.015`` and ``haze_width = 0.02`` (FORCE's -150 and 200)::

    HOT = blue - 0.5 * red - 0.08
    h = 1 / (1 + exp((10 / haze_width) * (HOT - haze_midpoint)))     h(haze_midpoint) = 0.5

where ``blue``, ``red`` are reflectances, ``stored * reflectance_scale + reflectance_offset``.
cloudfree composites surface reflectance (Level 2A), so HOT is computed on it, not on TOA as in
FORCE, and is not truncated.

**Total** (``COMBINE_SCORES``): only scores whose weight is above 0 take part. ``ADD`` (FORCE's
weighted mean, the default)::

    total = (w_doy * d + w_cloud * c + w_haze * h) / (sum of the weights above 0)

``MUL``: ``total = product of (w * score)`` over the weights above 0, as FORCE computes it.
Weights (``SCORE_DOY_WEIGHT`` 1.0, ``SCORE_CLOUD_WEIGHT`` 0.4, ``SCORE_HAZE_WEIGHT`` 0.3) lie in
``[0, 1]`` and not all may be 0. A score with weight 0 is 0, as in FORCE.

Selection (``bap_compositing``)
-------------------------------
An observation is usable where ``valid`` and every band holds data (not ``nodata``). Of the
usable observations FORCE drops

* those with ``d < 0.01``, unless ``OFF_SEASON`` (default ``FALSE``);
* with a haze weight above 0 and ``USE_HAZY`` false: those with ``h < 0.01``, but only where the
  pixel is not always hazy -- the mean *and* the sample standard deviation of ``h`` over the
  pixel's usable in-season observations both exceed 0.01 (fewer than two such observations: no
  haze filter);
* with a cloud weight above 0 and ``USE_CLOUDY`` false: those with ``c < 0.01``, i.e. closer
  than ``DREQ * (1/2 - ln(99) / 10)`` (121 m for 3000 m) to a rejected pixel.

The remaining observation with the highest total wins; ties go to the earliest time index (FORCE
keeps the first maximum). A pixel where none remains gets ``nodata`` in every band, index -1 and
a NaN score. The defaults of ``USE_CLOUDY``/``USE_HAZY`` could not be confirmed (the switches
are newer than the parameter-file skeleton read); ``False`` keeps FORCE's behaviour from before
them.

What is left out, and why
-------------------------
* **Year score** (``SCORE_YEAR_WEIGHT``, ``YEAR_TARGET``, ``YEAR_NUM``, ``Y_FACTOR``): within one
  target year every observation has the same year score, which shifts FORCE's weighted mean by
  the same affine map for all of them (and scales the product by a constant), so the choice is
  unchanged; only the reported total differs: FORCE's ``ADD`` total is
  ``(W * total + w_year * y0) / (W + w_year)`` with ``W`` the weights used here and ``y0`` the
  constant year score (``s1`` for the Gaussian).
* **Correlation score** (``SCORE_CORREL_WEIGHT``, default 0): needs every pair of a pixel's
  observations; **view zenith score** (``SCORE_VZEN_WEIGHT``, ``VREQ``, default weight 0): needs
  per-pixel view angles, which the loader does not carry.
* **Phenology-adaptive targets** (``LSP_DO``): need a land-surface-phenology product.
* **Water pixels**: FORCE switches pixels flagged water in >90% of observations to a
  low-SWIR2 rule using its QAI water bit; the cloud masks here carry no water class.
* **Weighted averaging** (``SELECT = FALSE``): this module selects one observation.
* A DOY weight of 0: FORCE then zeroes ``d`` and, without ``OFF_SEASON``, drops every
  observation; here the season filter uses the DOY function itself, whatever its weight.
* The distance cap: FORCE's ``DST`` is capped only by int16 (32767 m); here the caller caps it
  (``max_distance_m`` of :func:`.distance.cloud_distance`) to bound the tile halo. With the cap
  at ``DREQ``, observations farther than ``DREQ`` from any cloud all get ``c(DREQ) = 0.9933``
  where FORCE would give up to 1 -- a difference below 0.0067 of the cloud score.
* FORCE stores ``a``/``b``/sigmas as float32 and the scores as ``short(score * 10000)``; here
  everything is float64 until the float32 output.

Implementation
--------------
The DOY score depends on the layer only and is computed once per layer in Python. The kernel
(numba) splits the tile into runs of :data:`BLOCK` pixels of a row, in parallel; for each run it
scores the observations layer by layer (contiguous reads), then applies the haze statistics, the
filters and the maximum layer by layer too, with no Python per pixel. Each pixel is computed
alone, so the result depends neither on the thread count nor on how a grid is cut into tiles
(given a tile-invariant ``distance``, see :func:`cloudfree.grid.context_pixels`). The tests
compare every output bit for bit with a one-pixel-at-a-time Python transcription of the
formulas above.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from cloudfree.errors import InvalidInputError

__all__ = [
    "HOT_OFFSET",
    "HOT_RED_WEIGHT",
    "SCORE_FLOOR",
    "BapParameters",
    "Combine",
    "DoyShape",
    "ObservationScores",
    "best_pixel",
    "day_offsets",
    "fit_sigmoid",
    "observation_scores",
]

HOT_RED_WEIGHT = 0.5
"""Slope of the clear-sky line in the haze optimized transform ``blue - 0.5 * red - 0.08``."""
HOT_OFFSET = 0.08
"""Intercept of that line in reflectance (FORCE: 800 on its x10000 scale)."""
SCORE_FLOOR = 0.01
"""FORCE drops observations whose DOY, haze or cloud score is below this (see the filters)."""
STEEPNESS = 10.0
"""FORCE's logistic scores are ``1 / (1 + exp(+-10 / width * (x - midpoint)))``."""
HALF_YEAR = 182
"""Largest day offset from the target: offsets are taken on a 365-day circle."""
BLOCK = 256
"""Pixels of a row scored together: their ``time x BLOCK`` scores stay in the core's cache."""


class DoyShape(enum.StrEnum):
    """The DOY function FORCE picks from the three ``DOY_SCORE`` values."""

    GAUSSIAN = "gaussian"
    """``s0 < s1 > s2``: two half-Gaussians meeting at ``p1``."""
    DESCENDING = "descending"
    """``s0 > s1 > s2``: a falling sigmoid, 0 before ``p0``."""
    ASCENDING = "ascending"
    """``s0 < s1 < s2``: a rising sigmoid, 0 after ``p2``."""


class Combine(enum.StrEnum):
    """How the scores make the total (FORCE's ``COMBINE_SCORES``)."""

    ADD = "add"
    """Weighted mean of the scores whose weight is above 0 (FORCE ``ADD``, the default)."""
    MULTIPLY = "multiply"
    """Product of ``weight * score`` over the weights above 0 (FORCE ``MUL``)."""


@dataclass(frozen=True)
class BapParameters:
    """Scoring parameters, with FORCE's defaults (see the module docstring for the formulas)."""

    doy_points: tuple[int, int, int] = (120, 180, 240)
    """``DOY_STATIC``: days of year ``p0 p1 p2`` (1..365); ``p1`` is the target. ``p0 > p1``
    puts ``p0`` in the previous year, ``p2 < p1`` puts ``p2`` in the next."""
    doy_scores: tuple[float, float, float] = (0.01, 0.99, 0.01)
    """``DOY_SCORE``: the score at each point, each in ``]0, 1[``; their order picks the shape."""
    doy_weight: float = 1.0
    """``SCORE_DOY_WEIGHT`` in ``[0, 1]``."""
    cloud_weight: float = 0.4
    """``SCORE_CLOUD_WEIGHT`` in ``[0, 1]``."""
    haze_weight: float = 0.3
    """``SCORE_HAZE_WEIGHT`` in ``[0, 1]``; above 0 it needs the blue and red bands."""
    dreq_m: float = 3000.0
    """``DREQ``: distance to a cloud in metres at which the cloud score reaches 0.9933 (0.5 at
    half of it). Also a good cap for :func:`.distance.cloud_distance`."""
    haze_midpoint: float = -0.015
    """HOT (reflectance) at which the haze score is 0.5 (FORCE: -150 on its x10000 scale)."""
    haze_width: float = 0.02
    """HOT range (reflectance) of the haze score's fall: 0.9933 at ``midpoint - width / 2``,
    0.0067 at ``midpoint + width / 2`` (FORCE: 200)."""
    combine: Combine = Combine.ADD
    """``COMBINE_SCORES``: weighted mean (``add``) or product (``multiply``)."""
    off_season: bool = False
    """``OFF_SEASON``: keep observations whose DOY score is below 0.01."""
    use_cloudy: bool = False
    """``USE_CLOUDY``: keep observations whose cloud score is below 0.01."""
    use_hazy: bool = False
    """``USE_HAZY``: keep observations whose haze score is below 0.01."""
    _curve: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        points = tuple(self.doy_points)
        scores = tuple(float(s) for s in self.doy_scores)
        if len(points) != 3 or len(scores) != 3:
            raise InvalidInputError(
                f"doy_points and doy_scores need three values each (FORCE's DOY_STATIC and "
                f"DOY_SCORE), got {self.doy_points} and {self.doy_scores}."
            )
        if not all(isinstance(p, int | np.integer) and 1 <= p <= 365 for p in points):
            raise InvalidInputError(
                f"doy_points must be whole days of year in 1..365, got {self.doy_points}."
            )
        if points[0] == points[1] or points[2] == points[1]:
            raise InvalidInputError(
                f"doy_points {self.doy_points}: p0 and p2 must differ from the target p1, "
                f"otherwise the DOY function has no width on that side."
            )
        if not all(0.0 < s < 1.0 for s in scores):
            raise InvalidInputError(
                f"doy_scores must each lie strictly between 0 and 1 (FORCE's ]0,1[), "
                f"got {self.doy_scores}."
            )
        object.__setattr__(self, "doy_points", tuple(int(p) for p in points))
        object.__setattr__(self, "doy_scores", scores)
        _ = self.shape  # raises on s0 == s2 with s1 not above both
        for name in ("doy_weight", "cloud_weight", "haze_weight"):
            w = float(getattr(self, name))
            if not (0.0 <= w <= 1.0):
                raise InvalidInputError(f"{name} must lie in [0, 1] (as in FORCE), got {w}.")
            object.__setattr__(self, name, w)
        if self.total_weight == 0.0:
            raise InvalidInputError(
                "All score weights are 0; give at least the DOY score a weight above 0."
            )
        for name in ("dreq_m", "haze_width"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise InvalidInputError(f"{name} must be a positive number, got {v}.")
            object.__setattr__(self, name, v)
        if not math.isfinite(float(self.haze_midpoint)):
            raise InvalidInputError(f"haze_midpoint must be finite, got {self.haze_midpoint}.")
        object.__setattr__(self, "haze_midpoint", float(self.haze_midpoint))
        try:
            object.__setattr__(self, "combine", Combine(self.combine))
        except ValueError:
            raise InvalidInputError(
                f"combine must be one of add, multiply (FORCE's COMBINE_SCORES = ADD, MUL), "
                f"got {self.combine!r}."
            ) from None
        object.__setattr__(self, "_curve", self._fit_curve())

    @property
    def shape(self) -> DoyShape:
        """The DOY function FORCE chooses from ``doy_scores``."""
        s0, s1, s2 = self.doy_scores
        if s1 > s0 and s1 > s2:
            return DoyShape.GAUSSIAN
        if s0 > s2 and s0 > s1 > s2:
            return DoyShape.DESCENDING
        if s2 > s0 and s0 < s1 < s2:
            return DoyShape.ASCENDING
        raise InvalidInputError(
            f"doy_scores {self.doy_scores} fit none of FORCE's DOY functions: use s0 < s1 > s2 "
            f"(Gaussian), s0 > s1 > s2 (descending) or s0 < s1 < s2 (ascending)."
        )

    @property
    def offsets(self) -> tuple[int, int, int]:
        """``(o0, 0, o2)``: the points in days from the target ``p1``, across the year end."""
        p0, p1, p2 = self.doy_points
        o0 = p0 - p1 - (365 if p0 > p1 else 0)
        o2 = p2 - p1 + (365 if p2 < p1 else 0)
        return (o0, 0, o2)

    @property
    def total_weight(self) -> float:
        """Sum of the weights above 0 (the divisor of the ``add`` total)."""
        total = 0.0
        for w in (self.doy_weight, self.cloud_weight, self.haze_weight):
            if w > 0:
                total += w
        return total

    @property
    def curve(self) -> tuple[float, float]:
        """The DOY function's parameters: Gaussian ``(sa, sb)``, sigmoid ``(a, b)``."""
        return self._curve

    def doy_score(self, doy: Sequence[int] | np.ndarray) -> np.ndarray:
        """The DOY score of acquisitions on these days of year (float64, one per day)."""
        return np.array([self._doy_score(int(o)) for o in day_offsets(doy, self.doy_points[1])])

    def _doy_score(self, dt: int) -> float:
        s0, s1, s2 = self.doy_scores
        o0, _, o2 = self.offsets
        a, b = self._curve
        shape = self.shape
        if shape is DoyShape.GAUSSIAN:
            sigma = a if dt < 0 else b
            return s1 * math.exp(dt * dt / (-2.0 * sigma * sigma))
        if shape is DoyShape.DESCENDING:
            return 0.0 if dt < o0 else s0 / (1.0 + math.exp(a * dt + b))
        return 0.0 if dt > o2 else s2 / (1.0 + math.exp(a * dt + b))

    def _fit_curve(self) -> tuple[float, float]:
        s0, s1, s2 = self.doy_scores
        o0, _, o2 = self.offsets
        shape = self.shape
        if shape is DoyShape.GAUSSIAN:
            return (
                abs(o0) / math.sqrt(-2.0 * math.log(s0 / s1)),
                abs(o2) / math.sqrt(-2.0 * math.log(s2 / s1)),
            )
        top = s0 if shape is DoyShape.DESCENDING else s2
        return fit_sigmoid((float(o0), 0.0, float(o2)), self.doy_scores, top)


def day_offsets(doy: Sequence[int] | np.ndarray, target: int) -> np.ndarray:
    """Signed days from the nearest occurrence of ``target`` on a 365-day year, in -182..182.

    Day 366 of a leap year counts as day 1, as in FORCE's ``365 * year + doy`` time.
    """
    days = np.asarray(doy)
    if days.ndim != 1 or not np.issubdtype(days.dtype, np.integer):
        raise InvalidInputError(f"doy must be a 1-D array of whole days, got {days!r}.")
    if days.size and (days.min() < 1 or days.max() > 366):
        raise InvalidInputError(f"Days of year must lie in 1..366, got {days.min()}..{days.max()}.")
    offset: np.ndarray = (days.astype(np.int64) - target + HALF_YEAR) % 365 - HALF_YEAR
    return offset


def fit_sigmoid(x: Sequence[float], y: Sequence[float], top: float) -> tuple[float, float]:
    """Least-squares ``a, b`` of ``top / (1 + exp(a * x + b))`` through three points.

    FORCE's ``optimize_logistic_target`` minimises the RMSE with a Nelder-Mead simplex from
    ``(0, 0)`` with steps ``(0.01, 1)``; this runs the same simplex to convergence and restarts
    it from its result until the cost no longer falls, so the answer does not depend on the
    stopping rule.
    """
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]

    def cost(p: tuple[float, float]) -> float:
        total = 0.0
        for xi, yi in zip(xs, ys, strict=True):
            z = p[0] * xi + p[1]
            model = 0.0 if z > 700.0 else top / (1.0 + math.exp(z))
            total += (yi - model) ** 2
        return math.sqrt(total / len(xs))

    best = (0.0, 0.0)
    best_cost = cost(best)
    steps = (0.01, 1.0)
    for _ in range(20):
        found = _nelder_mead(cost, best, steps)
        found_cost = cost(found)
        if found_cost >= best_cost - 1e-15:
            break
        best, best_cost = found, found_cost
        steps = (max(abs(best[0]) * 0.1, 1e-4), max(abs(best[1]) * 0.1, 1e-2))
    return best


def _nelder_mead(
    cost: Callable[[tuple[float, float]], float],
    start: tuple[float, float],
    steps: tuple[float, float],
) -> tuple[float, float]:
    """Minimise ``cost`` over two parameters: standard Nelder-Mead, down to a tiny simplex."""
    simplex = [start, (start[0] + steps[0], start[1]), (start[0], start[1] + steps[1])]
    values = [cost(p) for p in simplex]
    for _ in range(5000):
        order = sorted(range(3), key=lambda i: values[i])
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        size = max(
            abs(simplex[i][k] - simplex[0][k]) / max(1.0, abs(simplex[0][k]))
            for i in (1, 2)
            for k in (0, 1)
        )
        if size < 1e-13:
            break
        # points on the line from the worst vertex through the centroid of the other two
        cx = (simplex[0][0] + simplex[1][0]) / 2.0
        cy = (simplex[0][1] + simplex[1][1]) / 2.0
        wx, wy = simplex[2]
        line = [(cx + t * (wx - cx), cy + t * (wy - cy)) for t in (-1.0, -2.0, -0.5, 0.5)]
        reflected, expanded, outside, inside = line
        fr = cost(reflected)
        if fr < values[0]:
            fe = cost(expanded)
            simplex[2], values[2] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[1]:
            simplex[2], values[2] = reflected, fr
        else:
            contracted = outside if fr < values[2] else inside
            fc = cost(contracted)
            if fc < min(fr, values[2]):
                simplex[2], values[2] = contracted, fc
            else:  # shrink towards the best vertex
                bx, by = simplex[0]
                for i in (1, 2):
                    simplex[i] = ((simplex[i][0] + bx) / 2.0, (simplex[i][1] + by) / 2.0)
                    values[i] = cost(simplex[i])
    return simplex[int(np.argmin(values))]


@dataclass(frozen=True)
class ObservationScores:
    """Every observation's scores, for inspection (what FORCE's score output shows per pixel)."""

    doy: np.ndarray
    """``(time,)`` float64: the DOY score of each layer (before its weight)."""
    cloud: np.ndarray
    """``(time, y, x)`` float32 cloud-distance score; 0 when its weight is 0, NaN where the
    observation is not usable."""
    haze: np.ndarray
    """``(time, y, x)`` float32 haze score; 0 when its weight is 0, NaN where not usable."""
    total: np.ndarray
    """``(time, y, x)`` float32 total score; NaN where not usable."""
    eligible: np.ndarray
    """``(time, y, x)`` bool: usable and kept by FORCE's filters (a candidate for the pixel)."""


def observation_scores(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: int,
    doy: Sequence[int] | np.ndarray,
    distance: np.ndarray,
    params: BapParameters,
    *,
    blue: int | None,
    red: int | None,
    reflectance_scale: float = 1e-4,
    reflectance_offset: float = 0.0,
) -> ObservationScores:
    """The scores of every observation, and which ones :func:`best_pixel` may choose.

    Takes the arguments of :func:`best_pixel`; see there. :func:`best_pixel` picks, per pixel,
    the eligible observation with the highest ``total`` (the earliest on ties).
    """
    inputs = _prepare(
        data, valid, nodata, doy, distance, params, blue, red, reflectance_scale, reflectance_offset
    )
    t, _, ny, nx = data.shape
    cloud = np.empty((t, ny, nx), dtype=np.float32)
    haze = np.empty((t, ny, nx), dtype=np.float32)
    total = np.empty((t, ny, nx), dtype=np.float32)
    eligible = np.empty((t, ny, nx), dtype=np.bool_)
    no_values = np.empty((0, 0, 0), dtype=data.dtype)
    no_index = np.empty((0, 0), dtype=np.int16)
    no_score = np.empty((0, 0), dtype=np.float32)
    _composite(*inputs, no_values, no_index, no_score, cloud, haze, total, eligible)
    return ObservationScores(inputs[3].copy(), cloud, haze, total, eligible)


def best_pixel(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: int,
    doy: Sequence[int] | np.ndarray,
    distance: np.ndarray,
    params: BapParameters,
    *,
    blue: int | None,
    red: int | None,
    reflectance_scale: float = 1e-4,
    reflectance_offset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, all bands of the one best-scoring observation (FORCE's BAP selection).

    Parameters
    ----------
    data
        ``(time, band, y, x)`` int16 or uint16 values as stored.
    valid
        ``(time, y, x)`` bool: the cloud mask calls the observation clear.
    nodata
        The bands' nodata value; an observation is usable only where every band differs from it.
    doy
        ``(time,)`` integer day of year (1..366) of each layer.
    distance
        ``(time, y, x)`` float32 metres to the nearest rejected pixel of the layer
        (:func:`.distance.cloud_distance`, capped at, say, ``params.dreq_m``).
    params
        The scoring parameters.
    blue, red
        Indices of the blue (B02) and red (B04) bands in ``data``, for the haze score; ``None``
        is allowed only with ``params.haze_weight == 0``.
    reflectance_scale, reflectance_offset
        Reflectance is ``stored * reflectance_scale + reflectance_offset`` (for the haze index,
        whose constants are reflectances). The defaults fit int16 reflectance x10000.

    Returns
    -------
    values
        ``(band, y, x)`` in ``data``'s type: the chosen observation's bands; ``nodata`` where no
        observation was eligible.
    index
        ``(y, x)`` int16: the chosen time index, -1 where none.
    score
        ``(y, x)`` float32: the chosen observation's total score, NaN where none.

    Raises
    ------
    InvalidInputError
        On shapes or types that do not fit together, a day of year outside 1..366, a band index
        out of range, or a haze weight above 0 without ``blue`` and ``red``.

    """
    inputs = _prepare(
        data, valid, nodata, doy, distance, params, blue, red, reflectance_scale, reflectance_offset
    )
    _, nb, ny, nx = data.shape
    values = np.empty((nb, ny, nx), dtype=data.dtype)
    index = np.empty((ny, nx), dtype=np.int16)
    score = np.empty((ny, nx), dtype=np.float32)
    no_layer = np.empty((0, 0, 0), dtype=np.float32)
    no_flags = np.empty((0, 0, 0), dtype=np.bool_)
    _composite(*inputs, values, index, score, no_layer, no_layer, no_layer, no_flags)
    return values, index, score


_Inputs = tuple[
    np.ndarray,  # data
    np.ndarray,  # valid
    np.integer,  # nodata in data's type
    np.ndarray,  # DOY score per layer
    np.ndarray,  # layer in season (or off_season)
    np.ndarray,  # distance, float32
    np.ndarray,  # coefficients (positions below)
    int,  # blue band, -1 for none
    int,  # red band, -1 for none
    bool,  # multiply the scores
    bool,  # use_cloudy
    bool,  # use_hazy
]


def _prepare(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: int,
    doy: Sequence[int] | np.ndarray,
    distance: np.ndarray,
    params: BapParameters,
    blue: int | None,
    red: int | None,
    scale: float,
    offset: float,
) -> _Inputs:
    """Check the arguments and put them in the kernels' form."""
    if data.ndim != 4:
        raise InvalidInputError(f"data must be (time, band, y, x), got shape {data.shape}.")
    if data.dtype not in (np.int16, np.uint16):
        raise InvalidInputError(f"data must be int16 or uint16, got {data.dtype}.")
    t, nb, ny, nx = data.shape
    if t > np.iinfo(np.int16).max:
        raise InvalidInputError(f"{t} time layers do not fit the int16 time index.")
    if valid.shape != (t, ny, nx) or valid.dtype != np.bool_:
        raise InvalidInputError(
            f"valid must be a bool (time, y, x) mask matching data {data.shape}, "
            f"got {valid.dtype} {valid.shape}."
        )
    if distance.shape != (t, ny, nx):
        raise InvalidInputError(
            f"distance {distance.shape} does not match data {data.shape}; compute it with "
            f"cloud_distance(rejected, ...) on the same (time, y, x) grid."
        )
    info = np.iinfo(data.dtype)
    if not info.min <= nodata <= info.max:
        raise InvalidInputError(f"nodata {nodata} does not fit {data.dtype}.")
    days = np.asarray(doy)
    if days.shape != (t,):
        raise InvalidInputError(
            f"doy needs one day of year per time layer ({t}), got {days.shape}."
        )
    doy_score = params.doy_score(days)
    for name, band in (("blue", blue), ("red", red)):
        if band is not None and not 0 <= band < nb:
            raise InvalidInputError(f"The {name} band index {band} is not among the {nb} bands.")
    if params.haze_weight > 0 and (blue is None or red is None):
        raise InvalidInputError(
            f"The haze score (haze_weight={params.haze_weight}) needs the blue (B02) and red (B04) "
            f"bands: pass blue= and red= band indices, or set haze_weight=0."
        )
    if not (math.isfinite(scale) and scale != 0 and math.isfinite(offset)):
        raise InvalidInputError(
            f"reflectance_scale must be finite and non-zero and reflectance_offset finite, "
            f"got {scale} and {offset}."
        )
    in_season = (doy_score >= SCORE_FLOOR) | params.off_season
    coefficients = np.array(
        [
            params.doy_weight,
            params.cloud_weight,
            params.haze_weight,
            params.total_weight,
            -STEEPNESS / params.dreq_m,
            params.dreq_m / 2.0,
            STEEPNESS / params.haze_width,
            params.haze_midpoint,
            float(scale),
            float(offset),
        ],
        dtype=np.float64,
    )
    return (
        data,
        valid,
        data.dtype.type(nodata),
        doy_score,
        in_season,
        np.asarray(distance, dtype=np.float32),
        coefficients,
        -1 if blue is None else int(blue),
        -1 if red is None else int(red),
        params.combine is Combine.MULTIPLY,
        params.use_cloudy,
        params.use_hazy,
    )


# positions in the coefficient vector the kernels receive
_W_DOY, _W_CLOUD, _W_HAZE, _W_TOTAL, _CLOUD_K, _CLOUD_MID, _HAZE_K, _HAZE_MID, _SCALE, _OFFSET = (
    range(10)
)


@numba.njit(cache=True)
def _logistic(z: float) -> float:  # pragma: no cover - numba
    """``1 / (1 + exp(z))``, 0 once ``exp`` would overflow."""
    if z > 700.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


@numba.njit(cache=True)
def _score_block(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: np.integer,
    doy_score: np.ndarray,
    distance: np.ndarray,
    coef: np.ndarray,
    blue: int,
    red: int,
    multiply: bool,
    y: int,
    x0: int,
    cloud: np.ndarray,
    haze: np.ndarray,
    total: np.ndarray,
    usable: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Scores of every observation of the pixels ``x0 .. x0 + width`` of row ``y``.

    Layer by layer along the row, so the reads stream through contiguous memory. Writes
    ``(time, width)`` buffers; scores of unusable observations are NaN.
    """
    nt, nb = data.shape[0], data.shape[1]
    width = usable.shape[1]
    w_doy, w_cloud, w_haze = coef[_W_DOY], coef[_W_CLOUD], coef[_W_HAZE]
    for t in range(nt):
        for i in range(width):
            usable[t, i] = valid[t, y, x0 + i]
        for b in range(nb):
            for i in range(width):
                usable[t, i] &= data[t, b, y, x0 + i] != nodata
        d = doy_score[t]
        for i in range(width):
            if not usable[t, i]:
                cloud[t, i] = np.nan
                haze[t, i] = np.nan
                total[t, i] = np.nan
                continue
            x = x0 + i
            c = 0.0
            if w_cloud > 0:
                c = _logistic(coef[_CLOUD_K] * (np.float64(distance[t, y, x]) - coef[_CLOUD_MID]))
            h = 0.0
            if w_haze > 0:
                reflectance_blue = data[t, blue, y, x] * coef[_SCALE] + coef[_OFFSET]
                reflectance_red = data[t, red, y, x] * coef[_SCALE] + coef[_OFFSET]
                hot = reflectance_blue - HOT_RED_WEIGHT * reflectance_red - HOT_OFFSET
                h = _logistic(coef[_HAZE_K] * (hot - coef[_HAZE_MID]))
            if multiply:
                s = 1.0
                if w_doy > 0:
                    s *= w_doy * d
                if w_cloud > 0:
                    s *= w_cloud * c
                if w_haze > 0:
                    s *= w_haze * h
            else:
                s = 0.0
                if w_doy > 0:
                    s += w_doy * d
                if w_cloud > 0:
                    s += w_cloud * c
                if w_haze > 0:
                    s += w_haze * h
                s /= coef[_W_TOTAL]
            cloud[t, i] = c
            haze[t, i] = h
            total[t, i] = s


@numba.njit(cache=True)
def _choose_block(
    in_season: np.ndarray,
    coef: np.ndarray,
    use_cloudy: bool,
    use_hazy: bool,
    cloud: np.ndarray,
    haze: np.ndarray,
    total: np.ndarray,
    eligible: np.ndarray,
    best: np.ndarray,
) -> None:  # pragma: no cover - numba
    """FORCE's filters and maximum for every pixel of a block, layer by layer.

    On entry ``eligible`` holds the usable observations; on return the ones the filters keep,
    and ``best`` the chosen time index of each pixel (-1 for none).
    """
    nt, width = total.shape
    w_cloud, w_haze = coef[_W_CLOUD], coef[_W_HAZE]
    # FORCE drops hazy observations only where the pixel is not hazy all the time: where the
    # mean and the sample standard deviation of its in-season haze scores both exceed 0.01
    haze_filter = np.zeros(width, dtype=np.bool_)
    if w_haze > 0 and not use_hazy:
        count = np.zeros(width, dtype=np.int64)
        mean = np.zeros(width, dtype=np.float64)
        for t in range(nt):
            if in_season[t]:
                for i in range(width):
                    if eligible[t, i]:
                        count[i] += 1
                        mean[i] += haze[t, i]
        for i in range(width):
            mean[i] = mean[i] / count[i] if count[i] > 0 else 0.0
        squares = np.zeros(width, dtype=np.float64)
        for t in range(nt):
            if in_season[t]:
                for i in range(width):
                    if eligible[t, i]:
                        deviation = haze[t, i] - mean[i]
                        squares[i] += deviation * deviation
        for i in range(width):
            if count[i] >= 2:
                sd = math.sqrt(squares[i] / (count[i] - 1))
                haze_filter[i] = mean[i] > SCORE_FLOOR and sd > SCORE_FLOOR
    cloud_filter = w_cloud > 0 and not use_cloudy
    top = np.empty(width, dtype=np.float64)
    for i in range(width):
        best[i] = -1
        top[i] = 0.0
    for t in range(nt):
        season = in_season[t]
        for i in range(width):
            if eligible[t, i]:
                keep = season
                if haze_filter[i] and haze[t, i] < SCORE_FLOOR:
                    keep = False
                if cloud_filter and cloud[t, i] < SCORE_FLOOR:
                    keep = False
                eligible[t, i] = keep
                # strictly greater: ties keep the earliest observation, as FORCE does
                if keep and (best[i] < 0 or total[t, i] > top[i]):
                    best[i] = t
                    top[i] = total[t, i]


@numba.njit(parallel=True, cache=True)
def _composite(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: np.integer,
    doy_score: np.ndarray,
    in_season: np.ndarray,
    distance: np.ndarray,
    coef: np.ndarray,
    blue: int,
    red: int,
    multiply: bool,
    use_cloudy: bool,
    use_hazy: bool,
    values: np.ndarray,
    index: np.ndarray,
    score: np.ndarray,
    cloud_out: np.ndarray,
    haze_out: np.ndarray,
    total_out: np.ndarray,
    eligible_out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Score every pixel; fill the selection and/or the per-observation layers.

    An empty ``index`` skips the selection, an empty ``total_out`` the layers: one kernel for
    both halves the compile time. Work is split in runs of :data:`BLOCK` pixels of a row.
    """
    nt, nb, ny, nx = data.shape
    select = index.size > 0
    layers = total_out.size > 0
    blocks = (nx + BLOCK - 1) // BLOCK
    for task in numba.prange(ny * blocks):
        y = task // blocks
        x0 = (task % blocks) * BLOCK
        width = min(BLOCK, nx - x0)
        cloud = np.empty((nt, width), dtype=np.float64)
        haze = np.empty((nt, width), dtype=np.float64)
        total = np.empty((nt, width), dtype=np.float64)
        eligible = np.empty((nt, width), dtype=np.bool_)
        best = np.empty(width, dtype=np.int64)
        _score_block(
            data, valid, nodata, doy_score, distance, coef, blue, red, multiply, y, x0,
            cloud, haze, total, eligible,
        )  # fmt: skip
        _choose_block(in_season, coef, use_cloudy, use_hazy, cloud, haze, total, eligible, best)
        if select:
            for i in range(width):
                x = x0 + i
                t = best[i]
                if t < 0:
                    for b in range(nb):
                        values[b, y, x] = nodata
                    index[y, x] = -1
                    score[y, x] = np.nan
                else:
                    for b in range(nb):
                        values[b, y, x] = data[t, b, y, x]
                    index[y, x] = t
                    score[y, x] = np.float32(total[t, i])
        if layers:
            for t in range(nt):
                for i in range(width):
                    cloud_out[t, y, x0 + i] = cloud[t, i]
                    haze_out[t, y, x0 + i] = haze[t, i]
                    total_out[t, y, x0 + i] = total[t, i]
                    eligible_out[t, y, x0 + i] = eligible[t, i]
