"""Compositors: strategies that reduce a stack over time, behind one registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cloudfree.composite.kernels import masked_quantiles
from cloudfree.errors import InvalidInputError
from cloudfree.stack import NODATA, Composite


class Compositor(Protocol):
    """Reduces ``(time, band, y, x)`` int16 observations to one value per band and pixel."""

    name: str

    def __call__(self, data: np.ndarray, valid: np.ndarray) -> Composite:
        """Reduce ``data`` using the observations where ``valid`` (``(time, y, x)``)."""
        ...

    def describe(self) -> str:
        """One line for lineage."""
        ...


CompositorFactory = Callable[..., Compositor]
_REGISTRY: dict[str, CompositorFactory] = {}


def register_compositor(name: str) -> Callable[[CompositorFactory], CompositorFactory]:
    """Class decorator adding a compositor to the registry under ``name``."""

    def decorate(factory: CompositorFactory) -> CompositorFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def compositor_names() -> tuple[str, ...]:
    """Names of every registered compositor."""
    return tuple(sorted(_REGISTRY))


def make_compositor(name: str, **options: object) -> Compositor:
    """Build a registered compositor."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(
            f"Unknown method {name!r}; use one of {', '.join(compositor_names())}."
        ) from None
    return factory(**options)


def observation_count(valid: np.ndarray) -> np.ndarray:
    """Clear observations per pixel, as uint16."""
    return valid.sum(axis=0, dtype=np.uint16)


@register_compositor("quantile")
class QuantileCompositor:
    """The ``q`` quantile of each band's valid observations (see :mod:`.kernels`)."""

    name = "quantile"

    def __init__(self, quantile: float = 0.5) -> None:
        q = float(quantile)
        if not 0.0 <= q <= 1.0:
            raise InvalidInputError(f"Quantile must be between 0 and 1, got {quantile}.")
        self.quantile = q

    def __call__(self, data: np.ndarray, valid: np.ndarray) -> Composite:
        """Per band: the quantile of observations that are clear and hold data in that band."""
        values = np.empty(data.shape[1:], dtype=np.int16)
        for b in range(data.shape[1]):
            band = data[:, b]
            (values[b],) = masked_quantiles(
                band, valid & (band != NODATA), [self.quantile], int(NODATA)
            )
        return Composite(values=values, observations=observation_count(valid))

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
