"""A GeoZarr validator: the ``proj:``, ``spatial:`` and ``multiscales`` conventions of a store.

Every node (group or array) that declares a convention in ``zarr_conventions`` is checked
against that convention's rules (the v1 JSON schemas of zarr-conventions/geo-proj, spatial and
multiscales, written out as checks so each failure says why in plain words), and the values are
checked against the store itself:

- ``proj:``: exactly one of ``proj:code`` (``AUTHORITY:CODE``), ``proj:wkt2``, ``proj:projjson``,
  and one that pyproj can resolve;
- ``spatial:``: ``spatial:dimensions`` present and among the arrays' dimensions; ``transform`` of 6
  or 9, ``bbox`` of 4 or 6, ``shape`` of one positive integer per dimension; the shape equal to the
  arrays'; the bbox equal to what transform and shape give for north-up grids; no grid on a group
  that lists its levels in a ``multiscales`` layout (each level carries its own);
- ``multiscales``: a non-empty layout whose assets exist; ``derived_from`` names a level listed
  before it and comes with a ``transform``; per-level ``spatial:shape`` equal to the level's arrays
  and ``spatial:transform`` consistent with its parent's grid and the stated scale.

:func:`validate_geozarr` returns the findings; an empty list means valid.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyproj
import zarr
from zarr.errors import NodeNotFoundError

from cloudfree.access import redact_href
from cloudfree.errors import SourceError
from cloudfree.readers.zarr_band import open_zarr_store
from cloudfree.store.geozarr import MULTISCALES_CONVENTION, PROJ_CONVENTION, SPATIAL_CONVENTION

PROJ, SPATIAL, MULTISCALES = "proj:", "spatial:", "multiscales"
_CONVENTION_IDS: Mapping[str, tuple[str, ...]] = {
    PROJ: (PROJ_CONVENTION["uuid"], "geo-proj", "proj:", "proj"),
    SPATIAL: (SPATIAL_CONVENTION["uuid"], "spatial:", "spatial"),
    MULTISCALES: (MULTISCALES_CONVENTION["uuid"], "multiscales"),
}
_CRS_KEYS = ("proj:code", "proj:wkt2", "proj:projjson")
_CODE = re.compile(r"^[A-Z]+:[0-9]+$")
_ASSET = re.compile(r"^(?!/)(?!.*\.\.)[^/]+(/[^/]+)*$")
_REL = 1e-6


@dataclass(frozen=True)
class Finding:
    """One reason a store is not valid GeoZarr.

    Attributes
    ----------
    node
        The group or array (``/`` for the root).
    convention
        ``proj:``, ``spatial:``, ``multiscales`` or ``zarr``.
    reason
        What is wrong, in plain words.

    """

    node: str
    convention: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node}: {self.convention} {self.reason}"


@dataclass(frozen=True)
class _Node:
    path: str
    attrs: Mapping[str, Any]
    shape: tuple[int, ...] | None  # None for groups
    dims: tuple[str, ...] | None


def validate_geozarr(url: str, storage_options: Mapping[str, Any] | None = None) -> list[Finding]:
    """Check every node of the Zarr v3 store at ``url``; return the findings (empty: valid).

    Raises
    ------
    SourceError
        If ``url`` is not a readable Zarr store.

    """
    nodes = _read_nodes(url, storage_options)
    findings: list[Finding] = []
    declared_anywhere = False
    for node in nodes.values():
        conventions, problems = _conventions(node)
        findings += problems
        declared_anywhere |= bool(conventions)
        if PROJ in conventions:
            findings += _check_proj(node)
        if SPATIAL in conventions:
            findings += _check_spatial(node, nodes)
        if MULTISCALES in conventions or "multiscales" in node.attrs:
            findings += _check_multiscales(node, nodes, SPATIAL in conventions)
    if not declared_anywhere:
        findings.append(
            Finding("/", "zarr", "no node declares a GeoZarr convention in zarr_conventions")
        )
    return findings


def _read_nodes(url: str, options: Mapping[str, Any] | None) -> dict[str, _Node]:
    store = open_zarr_store(url, options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = zarr.open_group(store, mode="r", zarr_format=3)
            members = list(root.members(max_depth=None))
    except (NodeNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise SourceError(f"{redact_href(url)} is not a readable Zarr v3 store: {exc}") from exc
    nodes = {"": _Node("", dict(root.attrs), None, None)}
    for path, member in members:
        if isinstance(member, zarr.Array):
            dims = member.metadata.dimension_names  # type: ignore[union-attr]
            nodes[path] = _Node(
                path,
                dict(member.attrs),
                tuple(member.shape),
                tuple(str(d) for d in dims) if dims else None,
            )
        else:
            nodes[path] = _Node(path, dict(member.attrs), None, None)
    return nodes


def _name(node: _Node) -> str:
    return "/" + node.path


def _conventions(node: _Node) -> tuple[set[str], list[Finding]]:
    """The conventions a node declares, and what is wrong with the declarations."""
    entries = node.attrs.get("zarr_conventions")
    if entries is None:
        return set(), []
    if not isinstance(entries, list):
        return set(), [Finding(_name(node), "zarr", "zarr_conventions must be a list")]
    found: set[str] = set()
    problems: list[Finding] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not any(
            k in entry for k in ("schema_url", "spec_url", "uuid")
        ):
            problems.append(
                Finding(
                    _name(node),
                    "zarr",
                    f"zarr_conventions[{i}] needs at least one of schema_url, spec_url, uuid",
                )
            )
            continue
        for convention, ids in _CONVENTION_IDS.items():
            if entry.get("uuid") in ids or entry.get("name") in ids:
                found.add(convention)
    return found, problems


def _check_proj(node: _Node) -> Iterator[Finding]:
    where = _name(node)
    present = [k for k in _CRS_KEYS if node.attrs.get(k) is not None]
    if len(present) > 1:
        yield Finding(
            where,
            PROJ,
            f"multiple CRS fields (oneOf requires exactly one): {' and '.join(present)} "
            "are both given; keep one of proj:code, proj:wkt2, proj:projjson",
        )
        return
    if not present:
        yield Finding(
            where, PROJ, "declares proj: but has none of proj:code, proj:wkt2, proj:projjson"
        )
        return
    key = present[0]
    value = node.attrs[key]
    if key == "proj:code" and (not isinstance(value, str) or not _CODE.match(value)):
        yield Finding(
            where,
            PROJ,
            f"proj:code pattern mismatch: {value!r} is not AUTHORITY:CODE in capitals "
            "(e.g. EPSG:4326)",
        )
        return
    try:
        pyproj.CRS.from_user_input(value)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as exc:
        yield Finding(where, PROJ, f"{key} cannot be resolved to a CRS: {exc}")


def _is_numbers(value: Any, lengths: Sequence[int]) -> bool:
    return (
        isinstance(value, list)
        and len(value) in lengths
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _check_spatial(node: _Node, nodes: Mapping[str, _Node]) -> Iterator[Finding]:
    where, attrs = _name(node), node.attrs
    dims = attrs.get("spatial:dimensions")
    if dims is None:
        yield Finding(where, SPATIAL, "missing required spatial:dimensions")
    elif not (
        isinstance(dims, list) and len(dims) in (2, 3) and all(isinstance(d, str) for d in dims)
    ):
        yield Finding(where, SPATIAL, f"spatial:dimensions must be 2 or 3 names, got {dims!r}")
        dims = None
    transform = attrs.get("spatial:transform")
    if transform is not None and not _is_numbers(transform, (6, 9)):
        count = len(transform) if isinstance(transform, list) else "no"
        yield Finding(
            where,
            SPATIAL,
            f"transform must have 6 (2D) or 9 (3D) coefficients, has {count}",
        )
        transform = None
    bbox = attrs.get("spatial:bbox")
    if bbox is not None and not _is_numbers(bbox, (4, 6)):
        yield Finding(where, SPATIAL, f"spatial:bbox must have 4 or 6 numbers, got {bbox!r}")
        bbox = None
    shape = attrs.get("spatial:shape")
    if shape is not None and not (
        isinstance(shape, list)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
        and (dims is None or len(shape) == len(dims))
    ):
        yield Finding(
            where, SPATIAL, f"spatial:shape must be one positive integer per dimension: {shape!r}"
        )
        shape = None
    registration = attrs.get("spatial:registration", "pixel")
    if registration not in ("pixel", "node"):
        yield Finding(where, SPATIAL, f"spatial:registration {registration!r} is not pixel/node")
        registration = "pixel"
    if "multiscales" in attrs and isinstance(attrs["multiscales"], dict):
        for key in ("spatial:transform", "spatial:shape"):
            if key in attrs:
                yield Finding(
                    where,
                    SPATIAL,
                    f"{key} must not be on a group with a multiscales layout; each layout "
                    "item carries its own",
                )
    if dims is None:
        return
    yield from _check_against_arrays(node, nodes, list(dims), shape)
    if shape is None and node.shape is not None and node.dims and set(dims) <= set(node.dims):
        shape = [node.shape[node.dims.index(d)] for d in dims]
    if transform is not None and bbox is not None and shape is not None and len(shape) == 2:
        expected = _bbox(transform, shape, registration)
        if expected is not None and not _close(expected, bbox[:4]):
            yield Finding(
                where,
                SPATIAL,
                f"spatial:bbox {bbox} does not match transform and shape, which give {expected}",
            )


def _check_against_arrays(
    node: _Node, nodes: Mapping[str, _Node], dims: list[str], shape: list[int] | None
) -> Iterator[Finding]:
    """The spatial dimensions exist on the node's arrays, with the stated shape."""
    where = _name(node)
    if node.shape is not None:
        arrays = [node]
    else:
        prefix = f"{node.path}/" if node.path else ""
        arrays = [
            n
            for p, n in nodes.items()
            if n.shape is not None and p.startswith(prefix) and "/" not in p[len(prefix) :]
        ]
    for array in arrays:
        if array.dims is None or not set(dims) <= set(array.dims):
            if array is node:
                yield Finding(
                    where,
                    SPATIAL,
                    f"spatial:dimensions {dims} are not among the array's dimensions "
                    f"{list(array.dims or [])}",
                )
            continue
        actual = [array.shape[array.dims.index(d)] for d in dims]  # type: ignore[index]
        if shape is not None and actual != list(shape):
            yield Finding(
                where,
                SPATIAL,
                f"spatial:shape {shape} differs from array {_name(array)} of shape {actual} "
                f"on {dims}",
            )


def _bbox(transform: list[float], shape: list[int], registration: str) -> list[float] | None:
    a, b, c, d, e, f = transform[:6]
    if b or d:
        return None  # rotated: the bbox is the envelope of the corners, not checked here
    ny, nx = shape
    if registration == "node":
        ny, nx = ny - 1, nx - 1
    xs, ys = (c, c + a * nx), (f, f + e * ny)
    return [min(xs), min(ys), max(xs), max(ys)]


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    scale = max(1.0, *(abs(v) for v in (*a, *b)))
    return all(abs(x - y) <= _REL * scale for x, y in zip(a, b, strict=True))


def _check_multiscales(
    node: _Node, nodes: Mapping[str, _Node], with_spatial: bool
) -> Iterator[Finding]:
    where = _name(node)
    multiscales = node.attrs.get("multiscales")
    layout = multiscales.get("layout") if isinstance(multiscales, dict) else None
    if not isinstance(layout, list) or not layout:
        yield Finding(where, MULTISCALES, "multiscales.layout must be a non-empty list")
        return
    prefix = f"{node.path}/" if node.path else ""
    seen: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(layout):
        label = f"layout[{i}]"
        asset = item.get("asset") if isinstance(item, dict) else None
        if not isinstance(asset, str) or not _ASSET.match(asset):
            yield Finding(
                where, MULTISCALES, f"{label}: asset must be a relative path, got {asset!r}"
            )
            continue
        label = f"{label} ({asset!r})"
        if prefix + asset not in nodes:
            yield Finding(where, MULTISCALES, f"{label}: asset does not exist in the store")
        derived = item.get("derived_from")
        transform = item.get("transform")
        if derived is not None:
            if transform is None:
                yield Finding(
                    where, MULTISCALES, f"{label}: transform required when derived_from present"
                )
            if derived not in seen:
                yield Finding(
                    where,
                    MULTISCALES,
                    f"{label}: derived_from {derived!r} is not a level listed before it",
                )
        if transform is not None:
            yield from _check_transform(where, label, transform)
        if with_spatial and "spatial:transform" not in item:
            yield Finding(where, SPATIAL, f"{label}: each layout item needs spatial:transform")
        yield from _check_level(where, label, item, nodes, prefix + asset)
        if derived in seen and isinstance(transform, dict):
            yield from _check_against_parent(where, label, item, seen[derived], transform)
        seen[asset] = item


def _check_transform(where: str, label: str, transform: Any) -> Iterator[Finding]:
    if not isinstance(transform, dict):
        yield Finding(where, MULTISCALES, f"{label}: transform must be an object")
        return
    scale, translation = transform.get("scale"), transform.get("translation")
    if scale is not None and not _is_numbers(scale, range(1, 10)):
        yield Finding(where, MULTISCALES, f"{label}: transform.scale must be numbers: {scale!r}")
    if translation is not None and not _is_numbers(translation, range(1, 10)):
        yield Finding(
            where, MULTISCALES, f"{label}: transform.translation must be numbers: {translation!r}"
        )
    if isinstance(scale, list) and isinstance(translation, list) and len(scale) != len(translation):
        yield Finding(
            where, MULTISCALES, f"{label}: transform.scale and translation differ in length"
        )


def _check_level(
    where: str, label: str, item: Mapping[str, Any], nodes: Mapping[str, _Node], path: str
) -> Iterator[Finding]:
    """A level's stated ``spatial:shape``/``spatial:transform`` against its arrays and group."""
    shape = item.get("spatial:shape")
    level = nodes.get(path)
    if level is None:
        return
    if isinstance(shape, list):
        arrays = (
            [level]
            if level.shape is not None
            else [
                n
                for p, n in nodes.items()
                if n.shape is not None
                and p.startswith(path + "/")
                and n.shape
                and len(n.shape) >= 2
            ]
        )
        for array in arrays:
            dims = array.dims or ()
            actual = (
                [array.shape[dims.index("y")], array.shape[dims.index("x")]]  # type: ignore[index]
                if {"y", "x"} <= set(dims)
                else list(array.shape or ())[-len(shape) :]
            )
            if actual != shape:
                yield Finding(
                    where,
                    MULTISCALES,
                    f"{label}: spatial:shape {shape} differs from {_name(array)} of shape {actual}",
                )
    for key in ("spatial:shape", "spatial:transform"):
        own = level.attrs.get(key)
        if own is not None and key in item and not _close_lists(own, item[key]):
            yield Finding(
                where, MULTISCALES, f"{label}: {key} {item[key]} differs from the level's {own}"
            )


def _close_lists(a: Any, b: Any) -> bool:
    return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and _close(a, b)


def _check_against_parent(
    where: str,
    label: str,
    item: Mapping[str, Any],
    parent: Mapping[str, Any],
    transform: Mapping[str, Any],
) -> Iterator[Finding]:
    """A derived level's grid follows from its parent's and the stated scale."""
    scale = transform.get("scale")
    if not (isinstance(scale, list) and len(scale) >= 2 and _is_numbers(scale, range(2, 10))):
        return
    sy, sx = scale[-2], scale[-1]
    mine: Any = item.get("spatial:transform")
    theirs: Any = parent.get("spatial:transform")
    if _is_numbers(mine, (6, 9)) and _is_numbers(theirs, (6, 9)):
        if not (
            math.isclose(mine[0], theirs[0] * sx, rel_tol=_REL)
            and math.isclose(mine[4], theirs[4] * sy, rel_tol=_REL)
        ):
            yield Finding(
                where,
                MULTISCALES,
                f"{label}: pixel size ({mine[0]}, {mine[4]}) is not the parent's "
                f"({theirs[0]}, {theirs[4]}) times the scale {scale}",
            )
        translation = transform.get("translation") or [0.0] * len(scale)
        if not any(translation) and not _close([mine[2], mine[5]], [theirs[2], theirs[5]]):
            yield Finding(
                where,
                MULTISCALES,
                f"{label}: origin ({mine[2]}, {mine[5]}) differs from the parent's "
                f"({theirs[2]}, {theirs[5]}) though the translation is zero",
            )
    mine_shape: Any = item.get("spatial:shape")
    theirs_shape: Any = parent.get("spatial:shape")
    if _is_numbers(mine_shape, (2, 3)) and _is_numbers(theirs_shape, (2, 3)):
        for n, m, s in zip(mine_shape[-2:], theirs_shape[-2:], (sy, sx), strict=True):
            if s > 0 and not (math.floor(m / s) <= n <= math.ceil(m / s)):
                yield Finding(
                    where,
                    MULTISCALES,
                    f"{label}: spatial:shape {mine_shape} does not follow from the parent's "
                    f"{theirs_shape} and the scale {scale}",
                )
                break
