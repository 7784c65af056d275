"""The cloud-mask seam: one protocol, one registry, and plug-ins by entry point or import path.

A mask turns a stack into a per-observation validity array. It names the layers it reads
(``SCL``, ``CLD``, extra bands) so the loader reads them, and the context it needs around a tile
(:meth:`CloudMask.halo_m`) so that clean-up near a tile edge sees the neighbouring pixels: a
mosaic then does not depend on its tile size.

Custom masks plug in three ways, all by name in ``--cloud-mask`` and ``make_mask``:

- ``@register_mask("name")`` on a class imported before the run;
- an entry point in the ``cloudfree.masks`` group of an installed package
  (``[project.entry-points."cloudfree.masks"] mymask = "mypkg.masks:MyMask"``);
- an import path, ``mypkg.masks:MyMask``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import numpy as np

from cloudfree.errors import InvalidInputError
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


MaskFactory = Callable[..., CloudMask]
_REGISTRY: dict[str, MaskFactory] = {}


def register_mask(name: str) -> Callable[[MaskFactory], MaskFactory]:
    """Class decorator adding a mask to the registry under ``name``."""

    def decorate(factory: MaskFactory) -> MaskFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def mask_names() -> tuple[str, ...]:
    """Names of every registered mask and of every installed ``cloudfree.masks`` entry point."""
    plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return tuple(sorted(set(_REGISTRY) | plugins))


def make_mask(name: str, options: Mapping[str, object] | None = None) -> CloudMask:
    """Build a mask by registry name, entry-point name or ``module:Class`` import path.

    Raises
    ------
    InvalidInputError
        The name is unknown, an option is not one the mask takes, or an option value is bad.

    """
    factory = _factory(name)
    given = dict(options or {})
    _check_options(name, factory, given)
    try:
        mask = factory(**given)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"Cloud mask {name!r}: {exc}") from None
    if not isinstance(mask, CloudMask):
        raise InvalidInputError(
            f"Cloud mask {name!r} does not follow the CloudMask protocol (it needs name, layers, "
            "halo_m(), __call__(stack, pixel_size_m) and describe())."
        )
    return mask


def mask_options(name: str) -> dict[str, object]:
    """The options a mask takes, with their defaults (``inspect.Parameter.empty`` if none)."""
    factory = _factory(name)
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _factory(name: str) -> MaskFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _loaded(name, ep.load)
    if ":" in name:
        module, _, attr = name.partition(":")
        return _loaded(name, lambda: getattr(importlib.import_module(module), attr))
    raise InvalidInputError(
        f"Unknown cloud mask {name!r}; use one of {', '.join(mask_names())}, "
        "or a plug-in as module:Class."
    )


def _loaded(name: str, load: Callable[[], object]) -> MaskFactory:
    try:
        factory = load()
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"Cannot load cloud mask {name!r}: {exc}") from None
    if not callable(factory):
        raise InvalidInputError(f"Cloud mask {name!r} is not a class or factory.")
    return factory


def _check_options(name: str, factory: MaskFactory, given: Mapping[str, object]) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(given) - set(params))
    if unknown:
        known = ", ".join(p for p in params if not p.startswith("_")) or "none"
        raise InvalidInputError(
            f"Cloud mask {name!r} has no option {', '.join(unknown)}; its options are: {known}."
        )


@register_mask("none")
class NoMask:
    """Every observation with data counts (nodata is still excluded)."""

    name = "none"
    layers: tuple[str, ...] = ()

    def halo_m(self) -> float:
        """Per pixel: no context."""
        return 0.0

    def __call__(self, stack: Stack, pixel_size_m: float) -> np.ndarray:
        """Observations where every band has data."""
        return stack.has_data

    def describe(self) -> str:
        """One line for lineage."""
        return "no cloud mask"
