"""Offline JSON-Schema validation of STAC 1.1 Items, Collections and Catalogs.

The STAC 1.1.0 core schemas come from the installed ``pystac``. The extension schemas are vendored
under ``cloudfree/catalog/schemas/`` (sources in its ``README.md``). All of them go into one
:class:`referencing.Registry` under their canonical ``https://`` URLs. The registry has no
retrieval function, so a ``$ref`` that is not available locally raises an error, never a download.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jsonschema
import pystac
from jsonschema.exceptions import ValidationError, relevance
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

from cloudfree.errors import CloudfreeError

__all__ = [
    "STAC_VERSION",
    "StacValidationError",
    "local_extension_schemas",
    "validate_stac",
    "validate_stac_tree",
]

STAC_VERSION = "1.1.0"
"""The only STAC version whose core schema is available offline."""

_CORE_BASE = f"https://schemas.stacspec.org/v{STAC_VERSION}/"
_EXT_BASE = "https://stac-extensions.github.io/"
_CORE_BY_TYPE = {
    "Feature": ("Item", _CORE_BASE + "item-spec/json-schema/item.json"),
    "Collection": ("Collection", _CORE_BASE + "collection-spec/json-schema/collection.json"),
    "Catalog": ("Catalog", _CORE_BASE + "catalog-spec/json-schema/catalog.json"),
}
_FOLLOWED_RELS = frozenset({"child", "item"})
_MAX_REASON = 300


class StacValidationError(CloudfreeError):
    """A STAC object is invalid, or cannot be validated offline (unknown extension or version)."""


def _core_url(name: str) -> str:
    spec = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}.get(name)
    return f"{_CORE_BASE}{spec or 'item-spec'}/json-schema/{name}"


def _ext_url(rel: tuple[str, ...]) -> str:
    if rel[0] == "projjson":  # a dependency of projection v2, published by PROJ
        return f"https://proj.org/schemas/{rel[1]}/{rel[-1]}"
    return _EXT_BASE + "/".join(rel)


def _json_files(
    root: Traversable, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _json_files(entry, (*prefix, entry.name))
        elif entry.name.endswith(".json"):
            yield (*prefix, entry.name), entry


def _local_schemas() -> Iterator[tuple[str, Traversable]]:
    pystac_schemas = files("pystac.validation.jsonschemas")
    for rel, entry in _json_files(pystac_schemas.joinpath("stac-spec", f"v{STAC_VERSION}")):
        yield _core_url(rel[-1]), entry
    for rel, entry in _json_files(pystac_schemas.joinpath("geojson")):
        yield f"https://geojson.org/schema/{rel[-1]}", entry
    for rel, entry in _json_files(files("cloudfree.catalog").joinpath("schemas")):
        yield _ext_url(rel), entry


@cache
def _registry() -> tuple[Registry[Any], frozenset[str]]:
    """Build the offline registry and the set of extension schema URLs it holds."""
    registry: Registry[Any] = SPECIFICATIONS  # JSON Schema metaschemas (collection.json uses one)
    extensions: set[str] = set()
    for url, entry in _local_schemas():
        contents = json.loads(entry.read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        registry = registry.with_resource(url, resource)
        own_id = (resource.id() or url).rstrip("#")
        if own_id != url:  # e.g. core common.json declares ".../commonjson"
            registry = registry.with_resource(own_id, resource)
        if url.startswith(_EXT_BASE):
            extensions.add(url)
    return registry.crawl(), frozenset(extensions)


@cache
def _validator(url: str) -> Any:
    registry, _ = _registry()
    schema = registry.contents(url)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, registry=registry)


def local_extension_schemas() -> frozenset[str]:
    """Return the extension schema URLs that can be validated offline.

    Returns
    -------
    frozenset of str
        Canonical URLs, e.g. ``https://stac-extensions.github.io/projection/v2.0.0/schema.json``.

    """
    return _registry()[1]


def _as_dict(obj: Mapping[str, Any] | pystac.STACObject) -> dict[str, Any]:
    if isinstance(obj, pystac.STACObject):
        return obj.to_dict(include_self_link=False, transform_hrefs=False)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise StacValidationError(
        f"expected a STAC JSON dict or a pystac.STACObject, got {type(obj).__name__}"
    )


def validate_stac(obj: Mapping[str, Any] | pystac.STACObject) -> None:
    """Validate a STAC 1.1 Item, Collection or Catalog against core and extension schemas, offline.

    The core schema is chosen from ``type``. Every URL in ``stac_extensions`` must have a local
    schema: an unknown URL is an error, never silently skipped.

    Parameters
    ----------
    obj : dict or pystac.STACObject
        The STAC object, as parsed JSON or as a pystac object (serialised with ``to_dict``).

    Raises
    ------
    StacValidationError
        If the object is invalid. The message names the object, the schema URL, the JSON path and
        the reason. Also raised when the type or ``stac_version`` is unsupported, or when an
        extension or a ``$ref`` has no local schema.

    """
    data = _as_dict(obj)
    kind, core_url = _CORE_BY_TYPE.get(str(data.get("type")), ("", ""))
    label = f"{kind or 'STAC object'} {data.get('id', '<no id>')!r}"
    if not kind:
        raise StacValidationError(
            f"{label}: unsupported type {data.get('type')!r}; "
            "expected Feature, Collection or Catalog"
        )
    if data.get("stac_version") != STAC_VERSION:
        raise StacValidationError(
            f"{label}: stac_version {data.get('stac_version')!r} cannot be validated offline; "
            f"only the STAC {STAC_VERSION} core schema is available"
        )
    extensions = data.get("stac_extensions", [])
    if not isinstance(extensions, list):
        extensions = []  # the core schema reports the wrong type below
    unknown = [url for url in extensions if url not in local_extension_schemas()]
    if unknown:
        raise StacValidationError(
            f"{label}: no local schema for extension(s) {', '.join(map(str, unknown))}; "
            "vendor the official schema as cloudfree/catalog/schemas/<name>/<version>/schema.json"
        )
    for url in [core_url, *dict.fromkeys(extensions)]:
        try:
            errors = list(_validator(url).iter_errors(data))
        except Unresolvable as exc:
            raise StacValidationError(
                f"{label}: schema {url} references {getattr(exc, 'ref', exc)!r}, "
                "which is not available offline"
            ) from exc
        if errors:
            path, reason = _describe(errors)
            raise StacValidationError(f"{label} is invalid against {url} at {path}: {reason}")


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    if not error.context:
        yield error
    for sub in error.context or ():
        yield from _leaves(sub)


def _describe(errors: list[ValidationError]) -> tuple[str, str]:
    """Pick the most specific failure: a deepest leaf of the ``anyOf``/``oneOf`` error trees.

    Unlike the combinator messages, leaf messages do not embed the whole failing object. Among the
    deepest leaves, the one shared by most alternatives wins (e.g. a bad ``coordinates`` for every
    GeoJSON type). Up to two other distinct leaves follow after ``also:``.
    """
    leaves = [leaf for error in errors for leaf in _leaves(error)]
    depth = max(len(leaf.absolute_path) for leaf in leaves)
    deepest = [leaf for leaf in leaves if len(leaf.absolute_path) == depth]
    votes = Counter((leaf.json_path, leaf.message) for leaf in deepest)
    deepest.sort(key=lambda leaf: (votes[leaf.json_path, leaf.message], relevance(leaf)))
    primary = deepest[-1]
    others = dict.fromkeys(f"{e.json_path}: {e.message}" for e in reversed(deepest))
    others.pop(f"{primary.json_path}: {primary.message}")
    reason = primary.message + (f" (also: {'; '.join(list(others)[:2])})" if others else "")
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    return primary.json_path, reason


def _local_href(href: str, base: Path) -> Path:
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme:
        raise StacValidationError(f"{base}: cannot follow non-local link {href!r} offline")
    return (base.parent / href).resolve()


def validate_stac_tree(path: str | Path) -> int:
    """Validate every object of a saved static catalog, following ``child`` and ``item`` links.

    Parameters
    ----------
    path : str or Path
        The root ``catalog.json`` / ``collection.json``, or a directory that contains one.

    Returns
    -------
    int
        The number of STAC objects validated.

    Raises
    ------
    StacValidationError
        If a file is missing or not JSON, a link is not local, or an object is invalid (see
        :func:`validate_stac`). The message starts with the offending file.

    """
    root = Path(path)
    if root.is_dir():
        root = next(
            (root / n for n in ("catalog.json", "collection.json") if (root / n).is_file()),
            root / "catalog.json",
        )
    todo, seen, count = [root.resolve()], set[Path](), 0
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StacValidationError(f"{file}: cannot read STAC JSON: {exc}") from exc
        try:
            validate_stac(data)
        except StacValidationError as exc:
            raise StacValidationError(f"{file}: {exc}") from exc
        count += 1
        links = data.get("links", [])
        todo.extend(
            _local_href(link["href"], file)
            for link in links
            if isinstance(link, dict) and link.get("rel") in _FOLLOWED_RELS
        )
    return count
