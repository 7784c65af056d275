"""One plug-in registry for cloud masks and compositing methods.

Each kind of plug-in (a :class:`Registry`) is found by name three ways:

- ``@registry.register("name")`` on a class imported before the run;
- an entry point in the kind's group of an installed package, e.g.
  ``[project.entry-points."cloudfree.masks"] mymask = "mypkg.masks:MyMask"``;
- an import path, ``mypkg.module:Class``.

Options are keyword arguments of the class; unknown options and bad values are
:class:`~cloudfree.errors.InvalidInputError` naming the option, before any I/O.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar, cast

from cloudfree.errors import InvalidInputError

T = TypeVar("T")
Factory = Callable[..., object]


class Registry(Generic[T]):
    """Named factories of one protocol, with entry-point and import-path plug-ins."""

    def __init__(self, kind: str, group: str, protocol: type, requirement: str) -> None:
        self.kind = kind
        """What the plug-ins are, for messages (``"cloud mask"``)."""
        self.group = group
        """The entry-point group plug-in packages register under."""
        self._protocol = protocol
        self._requirement = requirement
        self._factories: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator adding a factory under ``name``."""

        def decorate(factory: type[T]) -> type[T]:
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> tuple[str, ...]:
        """Every registered name and every installed entry point of the group."""
        plugins = {ep.name for ep in entry_points(group=self.group)}
        return tuple(sorted(set(self._factories) | plugins))

    def options(self, name: str) -> dict[str, object]:
        """The options ``name`` takes, with defaults (``inspect.Parameter.empty`` if none)."""
        return {
            p.name: p.default
            for p in inspect.signature(self.factory(name)).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def make(self, name: str, options: Mapping[str, object] | None = None) -> T:
        """Build ``name`` with ``options``; raises InvalidInputError for anything wrong."""
        factory = self.factory(name)
        given = dict(options or {})
        self._check_options(name, factory, given)
        try:
            made = factory(**given)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{self.kind.capitalize()} {name!r}: {exc}") from None
        if not isinstance(made, self._protocol):
            raise InvalidInputError(
                f"{self.kind.capitalize()} {name!r} does not follow the {self._protocol.__name__} "
                f"protocol (it needs {self._requirement})."
            )
        return cast(T, made)

    def factory(self, name: str) -> Factory:
        """The class behind ``name``."""
        if name in self._factories:
            return self._factories[name]
        for ep in entry_points(group=self.group):
            if ep.name == name:
                return self._loaded(name, ep.load)
        if ":" in name:
            module, _, attr = name.partition(":")
            return self._loaded(name, lambda: getattr(importlib.import_module(module), attr))
        raise InvalidInputError(
            f"Unknown {self.kind} {name!r}; use one of {', '.join(self.names())}, "
            "or a plug-in as module:Class."
        )

    def _loaded(self, name: str, load: Callable[[], object]) -> Factory:
        try:
            factory = load()
        except (ImportError, AttributeError) as exc:
            raise InvalidInputError(f"Cannot load {self.kind} {name!r}: {exc}") from None
        if not callable(factory):
            raise InvalidInputError(f"{self.kind.capitalize()} {name!r} is not a class or factory.")
        return factory

    def _check_options(self, name: str, factory: Factory, given: Mapping[str, object]) -> None:
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
                f"{self.kind.capitalize()} {name!r} has no option {', '.join(unknown)}; "
                f"its options are: {known}."
            )
