"""Per-band statistics over time: quantiles, the CDSE-L3 first quartile, mean, min, max, count.

Each band is reduced on its own (a pixel's bands may come from different dates). The
definitions are in :mod:`cloudfree.composite.kernels.quantiles` and
:mod:`cloudfree.composite.kernels.statistics`.
"""

from __future__ import annotations

from cloudfree.composite.base import (
    BaseCompositor,
    Output,
    observation_count,
    register_compositor,
)
from cloudfree.composite.kernels.quantiles import masked_quantiles, order_statistic
from cloudfree.composite.kernels.statistics import masked_statistic
from cloudfree.composite.observations import Composite, Observations
from cloudfree.options import as_float


@register_compositor("quantile")
class QuantileCompositor(BaseCompositor):
    """The ``quantile`` of each band's valid observations (numpy 'linear', rounded half to even)."""

    name = "quantile"
    reads_clear_only = True

    def __init__(self, quantile: object) -> None:
        self.quantile = as_float(quantile, "quantile", maximum=1.0)

    def __call__(self, obs: Observations) -> Composite:
        """Per band: the quantile of the observations that are valid and hold data there."""
        tile = obs.cropped()
        (values,) = masked_quantiles(tile.data, tile.valid, [self.quantile], obs.nodata)
        return Composite(values=values, observations=observation_count(tile))

    def describe(self) -> str:
        """One line for lineage."""
        return f"quantile {self.quantile:g} (numpy 'linear', rounded half to even)"


@register_compositor("median")
class MedianCompositor(QuantileCompositor):
    """The median: the 0.5 quantile."""

    name = "median"

    def __init__(self) -> None:
        super().__init__(0.5)

    def describe(self) -> str:
        """One line for lineage."""
        return "median (numpy 'linear' 0.5 quantile, rounded half to even)"


@register_compositor("cdse-l3")
class CdseL3Compositor(BaseCompositor):
    """The first quartile as the Copernicus Sentinel-2 L3 quarterly mosaic algorithm takes it.

    Per band, the valid observations are sorted and the one at index ``floor(n / 4)`` is the
    value: an observation itself, never interpolated (Sentinel Hub's first-quartile mosaic
    script, which the published CDSE algorithm describes).
    """

    name = "cdse-l3"
    reads_clear_only = True

    def __call__(self, obs: Observations) -> Composite:
        """Per band: the sorted valid observation at index ``floor(n / 4)``."""
        tile = obs.cropped()
        values = order_statistic(tile.data, tile.valid, 1, 4, obs.nodata)
        return Composite(values=values, observations=observation_count(tile))

    def describe(self) -> str:
        """One line for lineage."""
        return "first quartile as CDSE L3 (sorted valid observation at index floor(n/4))"


class _StatisticCompositor(BaseCompositor):
    reads_clear_only = True
    statistic = ""
    text = ""

    def __call__(self, obs: Observations) -> Composite:
        """Per band, one pass over the valid observations."""
        tile = obs.cropped()
        values = masked_statistic(tile.data, tile.valid, self.statistic, obs.nodata)
        return Composite(values=values, observations=observation_count(tile))

    def describe(self) -> str:
        """One line for lineage."""
        return self.text


@register_compositor("mean")
class MeanCompositor(_StatisticCompositor):
    """The mean of each band's valid observations, rounded half to even."""

    name = statistic = "mean"
    text = "mean (exact sum, rounded half to even)"


@register_compositor("min")
class MinCompositor(_StatisticCompositor):
    """The smallest valid observation of each band."""

    name = statistic = "min"
    text = "minimum"


@register_compositor("max")
class MaxCompositor(_StatisticCompositor):
    """The largest valid observation of each band."""

    name = statistic = "max"
    text = "maximum"


@register_compositor("count")
class CountCompositor(_StatisticCompositor):
    """The number of valid observations holding data in each band (uint16)."""

    name = statistic = "count"
    text = "count of valid observations per band"
    output = Output.COUNT
