"""Masking with the L2A scene classification layer (SCL)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cloudfree.bands import SclClass
from cloudfree.errors import InvalidInputError
from cloudfree.masks.base import register_mask
from cloudfree.stack import Stack

#: Classes the Copernicus Sentinel-2 L3 quarterly mosaic keeps (dark area, vegetation,
#: not vegetated, water, snow).
CDSE_L3_VALID = frozenset(
    {
        SclClass.DARK_AREA_PIXELS,
        SclClass.VEGETATION,
        SclClass.NOT_VEGETATED,
        SclClass.WATER,
        SclClass.SNOW,
    }
)
#: Default valid classes: clear land and water (dark area, vegetation, not vegetated, water).
#: Clouds (8, 9), cirrus (10), shadows (3), defective (1), unclassified (7, often cloud fringes),
#: no data (0) and snow (11, transient cover that is not the surface a cloud-free mosaic shows)
#: are excluded. The ``cdse-l3`` preset keeps snow, as the published product does.
DEFAULT_VALID = frozenset(
    {
        SclClass.DARK_AREA_PIXELS,
        SclClass.VEGETATION,
        SclClass.NOT_VEGETATED,
        SclClass.WATER,
    }
)


def parse_classes(values: Iterable[str | int | SclClass]) -> frozenset[SclClass]:
    """Classes named by name (``vegetation``), number (``4``) or member."""
    classes = frozenset(v if isinstance(v, SclClass) else SclClass.parse(v) for v in values)
    if not classes:
        raise InvalidInputError("The SCL mask needs at least one valid class.")
    if SclClass.NO_DATA in classes:
        raise InvalidInputError("SCL class no_data cannot be a valid class.")
    return classes


@register_mask("scl")
class SclMask:
    """Clear where the SCL class is one of ``valid_classes`` and every band has data."""

    name = "scl"
    needs_scl = True

    def __init__(self, valid_classes: Iterable[str | int | SclClass] = DEFAULT_VALID) -> None:
        self.valid_classes = parse_classes(valid_classes)
        lookup = np.zeros(256, dtype=bool)
        lookup[[int(c) for c in self.valid_classes]] = True
        self._lookup = lookup

    def __call__(self, stack: Stack) -> np.ndarray:
        """Clear observations of the stack."""
        if stack.scl is None:
            raise InvalidInputError("The SCL mask needs a stack loaded with its SCL layer.")
        return self._lookup[stack.scl] & stack.has_data

    def describe(self) -> str:
        """One line for lineage."""
        names = ", ".join(c.name.lower() for c in sorted(self.valid_classes))
        return f"SCL mask keeping {names}"
