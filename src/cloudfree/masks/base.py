"""The cloud-mask seam: one protocol, one registry, and plug-ins by entry point or import path.

A mask turns a stack into a per-observation validity array. It names the layers it reads
(``SCL``, ``CLD``, extra bands) so the loader reads them, and the context it needs around a tile
(:meth:`CloudMask.halo_m`) so that clean-up near a tile edge sees the neighbouring pixels: a
mosaic then does not depend on its tile size.

A mask judges an observation by its own layers: in the stack it gets, ``has_data`` is where its
layers have values (:meth:`~cloudfree.stack.Stack.for_mask`), whether or not the bands do; the
pipeline keeps only the clear observations that also have data. A mask whose ``__call__`` reads
nothing of the stack but its layers, ``has_data``, ``geobox`` and ``days`` (never ``data``) says
so with ``reads_layers_only = True`` (optional, ``False`` when absent): its tiles' bands are then
read after it, and only in the blocks where it keeps a pixel.

Custom masks plug in three ways (see :mod:`cloudfree.plugins`), all by name in ``--cloud-mask``
and ``make_mask``: ``@register_mask("name")``, an entry point in the ``cloudfree.masks`` group
(``[project.entry-points."cloudfree.masks"] mymask = "mypkg.masks:MyMask"``), or an import path
``mypkg.masks:MyMask``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from cloudfree.plugins import Registry
from cloudfree.stack import Stack

ENTRY_POINT_GROUP = "cloudfree.masks"


@runtime_checkable
class CloudMask(Protocol):
    """Decides which observations of a stack are clear."""

    name: str

    @property
    def layers(self) -> tuple[str, ...]:
        """Band ids the mask reads besides the output bands (``("SCL",)``, ``("CLD",)``)."""
        ...

    def halo_m(self) -> float:
        """Metres of context the mask needs on each side of a tile (0 for per-pixel masks)."""
        ...

    def __call__(self, stack: Stack, pixel_size_m: float) -> np.ndarray:
        """``(time, y, x)`` bool on ``stack.geobox``: True where clear and with data.

        ``stack.layers`` holds the layers named in :attr:`layers`; ``pixel_size_m`` is the output
        grid's pixel size in metres (the same for every tile of a run).
        """
        ...

    def describe(self) -> str:
        """One line for lineage and logs."""
        ...


MASKS: Registry[CloudMask] = Registry(
    "cloud mask",
    ENTRY_POINT_GROUP,
    CloudMask,
    "name, layers, halo_m(), __call__(stack, pixel_size_m) and describe()",
)
register_mask = MASKS.register
mask_names = MASKS.names
mask_options = MASKS.options


def make_mask(name: str, options: Mapping[str, object] | None = None) -> CloudMask:
    """Build a mask by registry name, entry-point name or ``module:Class`` import path.

    Raises
    ------
    InvalidInputError
        The name is unknown, an option is not one the mask takes, or an option value is bad.

    """
    return MASKS.make(name, options)


@register_mask("none")
class NoMask:
    """Every observation with data counts (nodata is still excluded)."""

    name = "none"
    layers: tuple[str, ...] = ()
    reads_layers_only = True

    def halo_m(self) -> float:
        """Per pixel: no context."""
        return 0.0

    def __call__(self, stack: Stack, pixel_size_m: float) -> np.ndarray:
        """Observations where every band has data."""
        return stack.has_data

    def describe(self) -> str:
        """One line for lineage."""
        return "no cloud mask"
