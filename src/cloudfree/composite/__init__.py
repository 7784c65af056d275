"""Compositing methods behind one registry (:func:`make_compositor`); kernels in ``kernels/``."""

from cloudfree.composite import geomedian, selection, statistics
from cloudfree.composite.base import (
    ENTRY_POINT_GROUP,
    PROVENANCE_LAYERS,
    BaseCompositor,
    Compositor,
    Output,
    compositor_factory,
    compositor_names,
    compositor_options,
    make_compositor,
    register_compositor,
)
from cloudfree.composite.observations import Composite, Observations

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVENANCE_LAYERS",
    "BaseCompositor",
    "Composite",
    "Compositor",
    "Observations",
    "Output",
    "compositor_factory",
    "compositor_names",
    "compositor_options",
    "geomedian",
    "make_compositor",
    "register_compositor",
    "selection",
    "statistics",
]
