"""Compositing methods, behind one registry (:func:`make_compositor`)."""

from cloudfree.composite.base import (
    Compositor,
    MedianCompositor,
    QuantileCompositor,
    compositor_names,
    make_compositor,
    register_compositor,
)

__all__ = [
    "Compositor",
    "MedianCompositor",
    "QuantileCompositor",
    "compositor_names",
    "make_compositor",
    "register_compositor",
]
