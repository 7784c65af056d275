"""The cloud-mask seam: a mask turns a stack into a per-observation validity array."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from cloudfree.errors import InvalidInputError
from cloudfree.stack import Stack


class CloudMask(Protocol):
    """Decides which observations of a stack are clear."""

    name: str
    needs_scl: bool
    """Whether the loader must read the SCL layer for this mask."""

    def __call__(self, stack: Stack) -> np.ndarray:
        """``(time, y, x)`` bool: True where the observation is clear and has data."""
        ...

    def describe(self) -> str:
        """One line for lineage and logs."""
        ...


MaskFactory = Callable[..., CloudMask]
_REGISTRY: dict[str, MaskFactory] = {}


def register_mask(name: str) -> Callable[[MaskFactory], MaskFactory]:
    """Class decorator adding a mask to the registry under ``name``."""

    def decorate(factory: MaskFactory) -> MaskFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def mask_names() -> tuple[str, ...]:
    """Names of every registered mask."""
    return tuple(sorted(_REGISTRY))


def make_mask(name: str, options: Mapping[str, object] | None = None) -> CloudMask:
    """Build a registered mask with its options."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(
            f"Unknown cloud mask {name!r}; use one of {', '.join(mask_names())}."
        ) from None
    return factory(**dict(options or {}))


@register_mask("none")
class NoMask:
    """Every observation with data counts (nodata is still excluded)."""

    name = "none"
    needs_scl = False

    def __call__(self, stack: Stack) -> np.ndarray:
        """Observations where every band has data."""
        return stack.has_data

    def describe(self) -> str:
        """One line for lineage."""
        return "no cloud mask"
