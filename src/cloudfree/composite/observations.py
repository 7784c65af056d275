"""What a compositor reduces, and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

import numpy as np

from cloudfree.timeframe import Period


@dataclass(frozen=True)
class Observations:
    """One tile's observations over one period, in their stored integer type.

    ``data`` and ``valid`` cover the tile plus :attr:`margin` pixels on each side (the context a
    method asked for with ``context_m``); results cover the tile only.
    """

    data: np.ndarray
    """``(time, band, y, x)`` int16 or uint16 values as stored."""
    valid: np.ndarray
    """``(time, y, x)`` bool: the cloud mask calls the observation clear (and it has data)."""
    nodata: int
    """The bands' "no data" value in ``data``'s type; such values never count."""
    days: tuple[date, ...] = ()
    """Solar day of each time layer (empty when unknown)."""
    period: Period | None = None
    """The compositing period ``[start, end)`` (``None`` when unknown)."""
    bands: tuple[str, ...] = ()
    """Canonical band id of each band (``B02``...), for methods that need a band's role."""
    rejected: np.ndarray | None = None
    """``(time, y, x)`` bool: the observation has data but the cloud mask rejected it (cloud,
    shadow...). ``None`` when unknown."""
    pixel_size_m: float = 10.0
    """Output pixel size in metres (the same for every tile of a run)."""
    margin: int = 0
    """Pixels of context on each side of the tile."""

    def __post_init__(self) -> None:
        if self.data.ndim != 4:
            raise ValueError(f"data must be (time, band, y, x), got shape {self.data.shape}")
        t, _, ny, nx = self.data.shape
        if self.valid.shape != (t, ny, nx):
            raise ValueError(f"valid {self.valid.shape} does not match data {self.data.shape}")
        if self.data.dtype not in (np.int16, np.uint16):
            raise TypeError(f"data must be int16 or uint16, got {self.data.dtype}")
        if self.days and len(self.days) != t:
            raise ValueError(f"{len(self.days)} days for {t} time layers")

    def cropped(self) -> Observations:
        """The tile itself, without the margin."""
        m = self.margin
        if m == 0:
            return self
        yx = (slice(m, -m), slice(m, -m))
        return Observations(
            data=self.data[(..., *yx)],
            valid=self.valid[(..., *yx)],
            nodata=self.nodata,
            days=self.days,
            period=self.period,
            bands=self.bands,
            rejected=None if self.rejected is None else self.rejected[(..., *yx)],
            pixel_size_m=self.pixel_size_m,
        )


@dataclass(frozen=True)
class Composite:
    """The reduction of one tile: one value per band and pixel, the count, and provenance."""

    values: np.ndarray
    """``(band, y, x)`` in the input's type; the nodata value where no observation was usable."""
    observations: np.ndarray
    """``(y, x)`` uint16: clear observations (distinct solar days) per pixel."""
    provenance: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    """Extra ``(y, x)`` layers by name: ``time_index`` (int16, -1 for none) where a method selects
    one observation, ``score`` (float32) for best-available-pixel."""
