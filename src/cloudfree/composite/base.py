"""The compositing seam: one protocol, one registry (:func:`make_compositor`), plug-ins.

A compositor reduces one tile's :class:`~cloudfree.composite.observations.Observations` to a
:class:`~cloudfree.composite.observations.Composite`. It says what its values are
(:attr:`Compositor.output`: reflectance, or counts), which provenance layers it can emit, and how
much context around the tile it needs (:meth:`Compositor.context_m`, e.g. a distance to the
next cloud), and optionally whether it reads only the clear observations
(:attr:`BaseCompositor.reads_clear_only`: then bands are decoded only where one is).
Adding a method is one class::

    @register_compositor("darkest")
    class Darkest(BaseCompositor):
        name = "darkest"
        def __call__(self, obs): ...
        def describe(self): return "darkest observation"

Plug-ins from other packages register in the ``cloudfree.methods`` entry-point group, or are named
by import path ``mypkg.module:Class`` (see :mod:`cloudfree.plugins`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from cloudfree.composite.kernels.statistics import count_valid
from cloudfree.composite.observations import Composite, Observations
from cloudfree.plugins import Registry
from cloudfree.stack import Output

ENTRY_POINT_GROUP = "cloudfree.methods"


#: Provenance layers a compositor may emit, and what they hold.
PROVENANCE_LAYERS = {
    "date": "date of the observation chosen per pixel (days since 1970-01-01; fill -2**31)",
    "score": "score of the chosen observation (float32; NaN where none)",
}
#: Fill of the ``date`` provenance layer.
NO_DATE = np.int32(np.iinfo(np.int32).min)


@runtime_checkable
class Compositor(Protocol):
    """Reduces a tile's observations over time to one value per band and pixel."""

    name: str

    @property
    def output(self) -> Output:
        """What the values are."""
        ...

    @property
    def provenance(self) -> tuple[str, ...]:
        """Names (keys of :data:`PROVENANCE_LAYERS`) of the layers :class:`Composite` carries."""
        ...

    def context_m(self) -> float:
        """Metres of context the method needs on each side of a tile (0 for per-pixel ones)."""
        ...

    def __call__(self, obs: Observations) -> Composite:
        """Reduce ``obs`` (tile plus ``obs.margin``) to the tile's composite."""
        ...

    def describe(self) -> str:
        """One line for lineage."""
        ...


COMPOSITORS: Registry[Compositor] = Registry(
    "method",
    ENTRY_POINT_GROUP,
    Compositor,
    "name, output, provenance, context_m(), __call__(observations) and describe()",
)
register_compositor = COMPOSITORS.register
compositor_names = COMPOSITORS.names
compositor_options = COMPOSITORS.options
compositor_factory = COMPOSITORS.factory


def make_compositor(name: str, options: Mapping[str, object] | None = None) -> Compositor:
    """Build a method by registry name, entry-point name or ``module:Class`` import path.

    Raises
    ------
    InvalidInputError
        The name is unknown, an option is not one the method takes, or an option value is bad.

    """
    return COMPOSITORS.make(name, options)


class BaseCompositor:
    """Defaults for a method: reflectance out, no provenance, no context, no required bands."""

    name = "base"
    output = Output.REFLECTANCE
    provenance: tuple[str, ...] = ()
    reads_clear_only = False
    """Optional (``False`` when absent): the result depends on nothing but the clear
    observations (``obs.data`` where ``obs.valid``, and ``obs.days``), so the loader may leave
    the bands unread wherever no observation is clear. Not for a method that looks at
    ``obs.rejected`` or at values the mask rejected."""

    def context_m(self) -> float:
        """Per pixel: no context."""
        return 0.0

    def required_bands(self) -> dict[str, str]:
        """Band ids the method needs among the composited bands, and what for."""
        return {}


def observation_count(obs: Observations) -> np.ndarray:
    """``(y, x)`` uint16: valid observations per pixel of the tile."""
    return count_valid(obs.cropped().valid)


def chosen_dates(obs: Observations, index: np.ndarray) -> np.ndarray:
    """``(y, x)`` int32 days since 1970-01-01 of the chosen time ``index`` (-1: :data:`NO_DATE`)."""
    if not obs.days:
        raise ValueError("the observations carry no dates")
    epoch_days = np.array(
        [np.datetime64(day, "D").astype(np.int64) for day in obs.days] + [int(NO_DATE)],
        dtype=np.int32,
    )
    return epoch_days[np.where(index >= 0, index, len(obs.days))]
