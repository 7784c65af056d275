"""The geometric median over bands, as the Digital Earth Australia and Africa geomedian."""

from __future__ import annotations

from cloudfree.composite.base import BaseCompositor, observation_count, register_compositor
from cloudfree.composite.kernels.geomedian import (
    DEFAULT_EPS,
    DEFAULT_MAX_ITERATIONS,
    geomedian,
)
from cloudfree.composite.observations import Composite, Observations
from cloudfree.options import as_float, as_int


@register_compositor("geomedian")
class GeomedianCompositor(BaseCompositor):
    """The point minimising the summed distance to the observations over bands (Weiszfeld).

    Bands stay consistent (a spectrum, not per-band medians of different dates), yet it is not
    one observation. ``eps`` (DN) stops the iteration; the defaults are odc-stats' (see
    :mod:`.kernels.geomedian`).
    """

    name = "geomedian"
    reads_clear_only = True

    def __init__(
        self, eps: object = DEFAULT_EPS, max_iterations: object = DEFAULT_MAX_ITERATIONS
    ) -> None:
        self.eps = as_float(eps, "eps", minimum=1e-6)
        self.max_iterations = as_int(max_iterations, "max_iterations", minimum=1)

    def __call__(self, obs: Observations) -> Composite:
        """Weiszfeld iterations per pixel, all bands together."""
        tile = obs.cropped()
        values, _ = geomedian(
            tile.data, tile.valid, obs.nodata, eps=self.eps, max_iterations=self.max_iterations
        )
        return Composite(values, observation_count(tile))

    def describe(self) -> str:
        """One line for lineage."""
        return (
            f"geometric median over bands (Weiszfeld with Vardi-Zhang, from the mean, step < "
            f"{self.eps:g} DN or {self.max_iterations} iterations)"
        )
