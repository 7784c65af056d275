"""Masking with a cloud-probability layer: Sen2Cor's ``MSK_CLDPRB`` (Earth Search c1 ``cloud``).

An observation is rejected where the cloud probability (percent) reaches ``threshold``; the same
opening and buffer as the SCL mask then clean the result. Pixels without a probability are not
clear.
"""

from __future__ import annotations

import numpy as np

from cloudfree.errors import InvalidInputError
from cloudfree.masks.base import register_mask
from cloudfree.masks.morphology import dilate, opening, radius_pixels
from cloudfree.options import as_float
from cloudfree.stack import PROBABILITY_NODATA, Stack

#: Default probability (percent) from which a pixel counts as cloud.
DEFAULT_THRESHOLD = 40.0


@register_mask("probability")
class ProbabilityMask:
    """Clear where the cloud probability is below ``threshold`` percent, after clean-up.

    Parameters
    ----------
    threshold
        Probability in percent (0-100) from which a pixel is cloud.
    opening_m
        Radius in metres of the opening that drops isolated cloudy pixels (0: off).
    dilation_m
        Radius in metres of the buffer grown around cloudy pixels (0: off).

    """

    name = "probability"
    layers = ("CLD",)
    reads_layers_only = True

    def __init__(
        self,
        threshold: float | str = DEFAULT_THRESHOLD,
        opening_m: float | str = 20.0,
        dilation_m: float | str = 60.0,
    ) -> None:
        self.threshold = as_float(threshold, "threshold", maximum=100.0)
        self.opening_m = as_float(opening_m, "opening_m")
        self.dilation_m = as_float(dilation_m, "dilation_m")

    def halo_m(self) -> float:
        """Context for the opening (twice its radius) and the buffer."""
        return 2 * self.opening_m + self.dilation_m

    def __call__(self, stack: Stack, pixel_size_m: float) -> np.ndarray:
        """Clear observations of the stack."""
        probability = stack.layers.get("CLD")
        if probability is None:
            raise InvalidInputError(
                "The probability mask needs a stack loaded with its cloud probability (CLD)."
            )
        present = stack.has_data & (probability != PROBABILITY_NODATA)
        cloudy = present & (probability >= self.threshold)
        cloudy = opening(cloudy, radius_pixels(self.opening_m, pixel_size_m))
        cloudy = dilate(cloudy, radius_pixels(self.dilation_m, pixel_size_m))
        return present & ~cloudy

    def describe(self) -> str:
        """One line for lineage."""
        return (
            f"cloud probability below {self.threshold:g} % "
            f"(opening {self.opening_m:g} m, buffer {self.dilation_m:g} m)"
        )
