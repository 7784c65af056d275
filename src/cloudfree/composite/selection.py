"""Methods that choose one observation per pixel, so all bands come from one date.

``medoid``: the observation nearest to the multi-band median; ``best-pixel``: the highest-scoring
observation, scored as FORCE does. Both report the chosen date (and best-pixel its score).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import date, timedelta

import numpy as np

from cloudfree.composite.base import (
    BaseCompositor,
    chosen_dates,
    observation_count,
    register_compositor,
)
from cloudfree.composite.kernels.best_pixel import HALF_YEAR, BapParameters, best_pixel
from cloudfree.composite.kernels.distance import cloud_distance
from cloudfree.composite.kernels.medoid import medoid
from cloudfree.composite.observations import Composite, Observations
from cloudfree.options import as_bool, as_float, as_numbers
from cloudfree.stack import REFLECTANCE_SCALE
from cloudfree.timeframe import Period

_DEFAULTS = BapParameters()


@register_compositor("medoid")
class MedoidCompositor(BaseCompositor):
    """The observation nearest to the multi-band median, so every band comes from one date.

    The multi-band median is each band's median (numpy 'linear') over the usable observations;
    "nearest" is the Euclidean distance over bands; ties go to the earliest date.
    """

    name = "medoid"
    reads_clear_only = True
    provenance = ("date",)

    def __call__(self, obs: Observations) -> Composite:
        """Per pixel, all bands of the observation nearest the per-band median."""
        tile = obs.cropped()
        values, index = medoid(tile.data, tile.valid, obs.nodata)
        provenance = {"date": chosen_dates(obs, index)} if obs.days else {}
        return Composite(values, observation_count(tile), provenance)

    def describe(self) -> str:
        """One line for lineage."""
        return "medoid (observation nearest the per-band median, Euclidean over bands)"


@register_compositor("best-pixel")
class BestPixelCompositor(BaseCompositor):
    """Best-available-pixel: the observation scoring highest on season, cloud distance and haze.

    Scores and selection follow FORCE's BAP (see :mod:`.kernels.best_pixel`): a day-of-year
    score around ``doy_points`` (FORCE ``DOY_STATIC``), a cloud-distance score reaching 0.99 at
    ``dreq_m`` (``DREQ``) and a haze score from the blue and red bands, combined with the
    weights. The distance to the next rejected pixel is measured over the tile's neighbours too,
    so a tile loads ``dreq_m`` of context on each side.

    Without ``doy_points`` the season follows each compositing period: the target is the
    period's middle day and the scores fall to ``doy_scores[0]``/``[2]`` at its first and last
    day (at most half a year away), so a winter quarter targets winter. FORCE's own default,
    ``120,180,240``, is one option away.
    """

    name = "best-pixel"
    provenance = ("date", "score")

    def __init__(
        self,
        doy_points: object = None,
        doy_scores: object = _DEFAULTS.doy_scores,
        doy_weight: object = _DEFAULTS.doy_weight,
        cloud_weight: object = _DEFAULTS.cloud_weight,
        haze_weight: object = _DEFAULTS.haze_weight,
        dreq_m: object = _DEFAULTS.dreq_m,
        combine: object = _DEFAULTS.combine.value,
        off_season: object = _DEFAULTS.off_season,
        use_cloudy: object = _DEFAULTS.use_cloudy,
        use_hazy: object = _DEFAULTS.use_hazy,
    ) -> None:
        points = _DEFAULTS.doy_points
        self.follow_period = doy_points is None
        if doy_points is not None:
            numbers = as_numbers(doy_points, "doy_points", 3)
            if any(p != int(p) for p in numbers):
                raise ValueError(f"option doy_points must be whole days, got {doy_points!r}")
            points = (int(numbers[0]), int(numbers[1]), int(numbers[2]))
        self.params = BapParameters(
            doy_points=points,
            doy_scores=as_numbers(doy_scores, "doy_scores", 3),  # type: ignore[arg-type]
            doy_weight=as_float(doy_weight, "doy_weight", maximum=1.0),
            cloud_weight=as_float(cloud_weight, "cloud_weight", maximum=1.0),
            haze_weight=as_float(haze_weight, "haze_weight", maximum=1.0),
            dreq_m=as_float(dreq_m, "dreq_m", minimum=1e-6),
            combine=str(combine).lower(),  # type: ignore[arg-type]
            off_season=as_bool(off_season, "off_season"),
            use_cloudy=as_bool(use_cloudy, "use_cloudy"),
            use_hazy=as_bool(use_hazy, "use_hazy"),
        )

    def required_bands(self) -> dict[str, str]:
        """The haze score reads blue and red."""
        if self.params.haze_weight == 0:
            return {}
        why = "the haze score (--method-option haze_weight=0 turns it off)"
        return {"B02": why, "B04": why}

    def context_m(self) -> float:
        """The cloud score saturates at ``dreq_m``: that much context, when it is used."""
        return self.params.dreq_m if self.params.cloud_weight > 0 else 0.0

    def __call__(self, obs: Observations) -> Composite:
        """Score every usable observation and keep each pixel's best."""
        tile = obs.cropped()
        m = obs.margin
        if self.params.cloud_weight > 0:
            if obs.rejected is None:
                raise ValueError("best-pixel needs the cloud mask's rejected observations")
            distance = cloud_distance(obs.rejected, obs.pixel_size_m, self.params.dreq_m)
            if m:
                distance = distance[:, m:-m, m:-m]
        else:
            distance = np.zeros(tile.valid.shape, dtype=np.float32)
        blue = obs.bands.index("B02") if "B02" in obs.bands else None
        red = obs.bands.index("B04") if "B04" in obs.bands else None
        doy = np.array([day.timetuple().tm_yday for day in obs.days], dtype=np.int64)
        params = self.params
        if self.follow_period:
            if obs.period is None:
                raise ValueError("best-pixel without doy_points needs the compositing period")
            params = _season_of(obs.period, params)
        values, index, score = best_pixel(
            tile.data,
            tile.valid,
            obs.nodata,
            doy,
            distance,
            params,
            blue=blue,
            red=red,
            reflectance_scale=REFLECTANCE_SCALE,  # the pipeline's int16 encoding
        )
        return Composite(
            values, observation_count(tile), {"date": chosen_dates(obs, index), "score": score}
        )

    def describe(self) -> str:
        """One line for lineage."""
        p = self.params
        season = "each period's middle" if self.follow_period else f"DOY {p.doy_points}"
        return (
            f"best available pixel as FORCE ({season} scores {p.doy_scores} weight "
            f"{p.doy_weight:g}, cloud distance {p.dreq_m:g} m weight {p.cloud_weight:g}, haze "
            f"weight {p.haze_weight:g}, {p.combine.value})"
        )


@functools.lru_cache(maxsize=64)
def _season_of(period: Period, params: BapParameters) -> BapParameters:
    """``params`` with the DOY points at the period's first, middle and last day."""
    last = period.end - timedelta(days=1)
    half = min(HALF_YEAR, max(1, (last - period.start).days // 2))
    middle = period.start + timedelta(days=half)

    def doy(day: date) -> int:
        return min(day.timetuple().tm_yday, 365)

    target = doy(middle)
    return replace(
        params,
        doy_points=(
            (target - half - 1) % 365 + 1,
            target,
            (target + half - 1) % 365 + 1,
        ),
    )
