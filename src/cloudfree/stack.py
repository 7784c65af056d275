"""Values passed between the load, mask, reduce and write stages.

Reflectance travels as int16 holding ``round(reflectance * 10000)`` (so negative reflectance is
kept) with :data:`NODATA` for "no data"; the small integer type keeps a tile's stack at about one
copy of its input. Outputs use the same encoding, decoded by ``scale_factor``/``add_offset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum
from functools import cached_property
from types import MappingProxyType

import numpy as np
from odc.geo.geobox import GeoBox

from cloudfree.bands import BANDS, Band

#: Stored value meaning "no data" (also the output ``_FillValue``).
NODATA = np.int16(-32768)
#: Reflectance represented by one integer step.
REFLECTANCE_SCALE = 1e-4
#: Largest and smallest storable reflectance values (the int16 range minus the nodata value).
VALUE_MIN, VALUE_MAX = -32767, 32767
#: Value of a probability layer (percent, uint8) meaning "no data".
PROBABILITY_NODATA = np.uint8(255)


def layer_dtype(band: Band) -> type[np.integer]:
    """The stack encoding's type of ``band``: int16 reflectance, uint8 classes and percent."""
    return np.int16 if band.is_reflectance else np.uint8


def missing_value(band: Band) -> int:
    """The stack encoding's "no value" of ``band``.

    :data:`NODATA` for reflectance, 0 for classes, :data:`PROBABILITY_NODATA` for percentages.
    """
    if band.is_reflectance:
        return int(NODATA)
    if band.categorical:
        return 0
    return int(PROBABILITY_NODATA)


def layers_present(layers: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Where every mask layer (by band id) holds a value, as a new array; ``None`` without any."""
    present: np.ndarray | None = None
    for band_id, layer in layers.items():
        has = layer != missing_value(BANDS[band_id])
        present = has if present is None else np.logical_and(present, has, out=present)
    return present


@dataclass(frozen=True)
class Stack:
    """All observations of one tile for one period, one layer per solar day."""

    geobox: GeoBox
    days: tuple[date, ...]
    """Solar day of each time layer (same-day scenes already merged)."""
    bands: tuple[str, ...]
    """Canonical band ids, in request order."""
    data: np.ndarray
    """``(time, band, y, x)`` int16 reflectance * 10000, :data:`NODATA` where missing."""
    layers: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    """The masks' input layers by band id, each ``(time, y, x)``: ``SCL`` uint8 classes (0 where
    missing), ``CLD`` uint8 percent (:data:`PROBABILITY_NODATA` where missing), reflectance bands
    int16 like :attr:`data`."""
    inside: np.ndarray | None = None
    """``(y, x)`` bool: pixels inside the area of interest (``None``: all of them)."""

    @property
    def scl(self) -> np.ndarray | None:
        """The scene classification layer, when loaded."""
        return self.layers.get("SCL")

    @cached_property
    def has_values(self) -> np.ndarray:
        """``(time, y, x)`` bool: every band has a value (computed once, band by band)."""
        t, n, ny, nx = self.data.shape
        if n == 0:
            return np.ones((t, ny, nx), dtype=bool)
        present = self.data[:, 0] != NODATA
        for b in range(1, n):
            present &= self.data[:, b] != NODATA
        return present

    @cached_property
    def has_data(self) -> np.ndarray:
        """``(time, y, x)`` bool: every band has a value and the pixel is inside the area.

        Computed once per stack; do not modify it.
        """
        if self.inside is None:
            return self.has_values
        return self.has_values & self.inside[np.newaxis]

    @cached_property
    def has_layers(self) -> np.ndarray:
        """``(time, y, x)`` bool: every mask layer has a value (all true without layers)."""
        t, _, ny, nx = self.data.shape
        present = layers_present(self.layers)
        return np.ones((t, ny, nx), dtype=bool) if present is None else present

    def for_mask(self) -> Stack:
        """The stack as a cloud mask sees it: :attr:`has_data` is where its own layers have values.

        A mask judges an observation by its layers (a cloud is a cloud whether or not B02 has a
        value there), so its verdict does not depend on which bands were asked for, and can be
        made before they are read (:func:`cloudfree.load.load_mask_first`). Callers keep only
        the clear observations that also have data.
        """
        return replace(self).with_has_values(self.has_layers)

    def with_has_values(self, has_values: np.ndarray) -> Stack:
        """Give :attr:`has_values` (a loader that already knows it); returns the same stack.

        ``has_values`` must be what the property would compute: ``(time, y, x)``, every band has
        a value.
        """
        self.__dict__["has_values"] = has_values  # cached_property's slot, frozen or not
        return self

    def crop(self, margin: int, inside: np.ndarray | None = None) -> Stack:
        """The stack without ``margin`` pixels on each side (a tile's halo), with ``inside``."""
        window = (slice(margin, -margin or None), slice(margin, -margin or None))
        known = self.__dict__.get("has_values")
        if margin == 0:
            cropped = replace(self, inside=inside)
        else:
            cropped = Stack(
                geobox=self.geobox[window],
                days=self.days,
                bands=self.bands,
                data=self.data[(..., *window)],
                layers=MappingProxyType({k: v[(..., *window)] for k, v in self.layers.items()}),
                inside=inside,
            )
        if known is not None:  # cached_property stores in __dict__, frozen or not
            cropped.__dict__["has_values"] = known[(..., *window)]
        return cropped


class Output(Enum):
    """What a composite's values are."""

    REFLECTANCE = "reflectance"
    """Reflectance in the stack's encoding (int16, reflectance * 10000, :data:`NODATA`)."""
    COUNT = "count"
    """Numbers of observations (uint16, 0 is a count, not "no data")."""


@dataclass(frozen=True)
class ValueEncoding:
    """How a composite's values are stored (Zarr, COG) and described (CF, STAC raster)."""

    dtype: str
    nodata: int | None
    scale: float
    offset: float
    long_name: str
    """With ``{band}`` for the band's name."""

    @property
    def fill(self) -> int:
        """The value an unwritten chunk holds."""
        return 0 if self.nodata is None else self.nodata


ENCODINGS = {
    Output.REFLECTANCE: ValueEncoding(
        "int16", int(NODATA), REFLECTANCE_SCALE, 0.0, "{band} surface reflectance"
    ),
    Output.COUNT: ValueEncoding("uint16", None, 1.0, 0.0, "number of valid observations of {band}"),
}
