"""Write one multiscale group of a product as GeoZarr, band by band and level by level.

Each output level is a group (``r10m``, ``r20m``, ``r60m`` from the product, then ``r120m``...)
holding the bands as 2-D ``(y, x)`` arrays in the product's own integers, the ``x``/``y`` pixel
centre coordinates and a CF ``spatial_ref`` grid mapping, so GDAL, rioxarray and xarray all
georeference it. The group above the levels carries the ``multiscales`` layout (per-level
``spatial:shape`` and ``spatial:transform``) with the ``proj:`` and ``spatial:`` conventions.

A band the product holds at a level is copied; one it does not is computed from the next finer
output level (block mean for reflectance, most frequent class for SCL and masks). Values are
never decoded: ``scale_factor``/``add_offset`` are written once, as CF attributes. Memory is
bounded: a shard is assembled from strips of at most :data:`STRIP_PIXELS` source pixels and
written once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from odc.geo.geobox import GeoBox
from zarr.abc.store import Store
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.errors import NodeNotFoundError

from cloudfree.convert.eopf_item import MultiscaleSource
from cloudfree.convert.pyramid import Level, block_mean, block_mode, plan_levels
from cloudfree.errors import InvalidInputError
from cloudfree.readers.zarr_band import open_zarr_array, open_zarr_level
from cloudfree.store.geozarr import (
    MULTISCALES_CONVENTION,
    PROJ_CONVENTION,
    SPATIAL_CONVENTION,
    cf_grid_mapping,
    geozarr_attributes,
)

CHUNK = 512
"""Inner chunk side: two 256 px web-map tiles, one request each at the matching zoom."""
SHARD = 2048
"""Shard side (16 chunks per shard): few objects per band, each chunk still readable alone."""
STRIP_PIXELS = 1 << 22
"""Source pixels read at once (8 MiB of uint16): what bounds a conversion's memory."""
COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)
_RESOLUTION = re.compile(r"^r\d+m$")
_COORDS = frozenset({"x", "y", "spatial_ref"})
_KEPT_ATTRIBUTES = ("long_name", "flag_values", "flag_meanings", "flag_masks", "standard_name")

Reducer = Callable[[np.ndarray, int, Any], np.ndarray]


@dataclass(frozen=True)
class BandInfo:
    """How one band is stored and described (taken from the product's array)."""

    name: str
    dtype: np.dtype[Any]
    nodata: int | float
    scale: float | None
    offset: float | None
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class GroupResult:
    """What was written for one multiscale group."""

    path: str
    levels: tuple[Level, ...]
    bands: tuple[BandInfo, ...]
    categorical: bool


def source_levels(
    store: Store, source: MultiscaleSource, crs: str, bands: Sequence[str] | None
) -> tuple[list[tuple[GeoBox, tuple[str, ...], str]], dict[str, BandInfo]]:
    """The product's resolution groups (grid, bands, path; finest first) and its bands.

    Raises
    ------
    InvalidInputError
        If the group is missing, has no resolution groups on a map grid, or none of ``bands``.

    """
    group = _product_group(store, source.path)
    if group is None:
        raise InvalidInputError(
            f"The product has no group {source.path!r}; is it an EOPF Sentinel-2 L2A product?"
        )
    names = sorted(k for k in group.group_keys() if _RESOLUTION.match(k))
    if not names and {"x", "y"} <= set(group.array_keys()):
        names = [""]  # a single grid (a map-projected Sentinel-1 GRD): one level
    wanted = {b.lower() for b in bands} if bands else None
    found: list[tuple[GeoBox, tuple[str, ...], str]] = []
    info: dict[str, BandInfo] = {}
    for name in names:
        sub = group[name] if name else group
        if not isinstance(sub, zarr.Group):
            continue
        arrays = sorted(
            k for k in sub.array_keys() if k not in _COORDS and (wanted is None or k in wanted)
        )
        if not arrays:
            continue
        prefix = f"{source.path}/{name}".rstrip("/")
        level = open_zarr_level(store, f"{prefix}/{arrays[0]}", crs)
        found.append((level.geobox, tuple(arrays), prefix))
        for band in arrays:
            if band not in info:
                info[band] = _band_info(open_zarr_array(store, f"{prefix}/{band}"), band)
    if not found and wanted is not None and names:
        return [], info
    if not found:
        what = f" with bands {sorted(wanted)}" if wanted else ""
        raise InvalidInputError(
            f"The product's group {source.path!r} has no resolution group (r10m...) with x/y "
            f"coordinates on a map grid{what}."
        )
    found.sort(key=lambda entry: abs(entry[0].affine.a))
    return found, info


def _product_group(store: Store, path: str) -> zarr.Group | None:
    """A group of the product, through the root's consolidated metadata when there is one.

    Over HTTP a store cannot be listed, so children are only known from ``.zmetadata``.
    """
    try:
        root = zarr.open_group(store, mode="r", zarr_format=2)
        node = root[path]
    except (KeyError, NodeNotFoundError, FileNotFoundError):
        return None
    return node if isinstance(node, zarr.Group) else None


def available_bands(store: Store, sources: Sequence[MultiscaleSource]) -> set[str]:
    """Names of the 2-D arrays the groups hold, at any resolution (nothing is read)."""
    names: set[str] = set()
    for source in sources:
        group = _product_group(store, source.path)
        if group is None:
            continue
        subgroups = [
            sub
            for k in group.group_keys()
            if _RESOLUTION.match(k) and isinstance(sub := group[k], zarr.Group)
        ] or [group]
        for sub in subgroups:
            names.update(k for k in sub.array_keys() if k not in _COORDS)
    return names


def write_group(
    src: Store,
    out: zarr.Group,
    source: MultiscaleSource,
    crs: str,
    *,
    bands: Sequence[str] | None = None,
    min_size: int | None = None,
    shard: int | None = SHARD,
) -> GroupResult | None:
    """Convert one multiscale group of the product in ``src`` into ``out`` (the output root).

    Returns ``None`` when ``bands`` names none of the group's arrays. ``shard`` is the shard
    side in pixels (a multiple of :data:`CHUNK`), or ``None`` for unsharded chunks, which GDAL
    before 3.11 needs (its Zarr driver does not read the sharding codec).
    """
    sources, info = source_levels(src, source, crs, bands)
    if not sources:
        return None
    grids = [(geobox, names) for geobox, names, _ in sources]
    levels = plan_levels(grids) if min_size is None else plan_levels(grids, min_size=min_size)
    prefixes = {lv.name: prefix for lv, (_, _, prefix) in zip(levels, sources, strict=False)}
    sizes = {lv.name: abs(lv.geobox.affine.a) for lv in levels}
    reducer: Reducer = block_mode if source.categorical else block_mean
    target = out.require_group(source.path)
    held: dict[str, list[str]] = {}  # band -> output levels holding it, finest first
    for level in levels:
        group = _level_group(target, level)
        for band in sorted({*level.source_bands, *held}):
            band_info = info[band]
            array = _create_band(group, band_info, level.geobox, shard)
            if band in level.source_bands:
                src_array = open_zarr_array(src, f"{prefixes[level.name]}/{band}")
                _copy(src_array, array, 1, reducer, band_info.nodata)
            else:
                # from the level the layout names, as its transform says; else the nearest finer
                finer = level.derived_from if level.derived_from in held[band] else held[band][-1]
                factor = round(abs(level.geobox.affine.a) / sizes[finer])
                _copy(target[f"{finer}/{band}"], array, factor, reducer, band_info.nodata)
            held.setdefault(band, []).append(level.name)
    target.attrs.update(_multiscales_attributes(levels, source.categorical))
    return GroupResult(source.path, tuple(levels), tuple(info.values()), source.categorical)


def _band_info(array: zarr.Array, name: str) -> BandInfo:
    attrs = dict(array.attrs)
    fill: Any = attrs.get("_FillValue", attrs.get("fill_value", array.metadata.fill_value))
    nodata: int | float = 0 if fill is None else fill
    scale: Any = attrs.get("scale_factor")
    offset: Any = attrs.get("add_offset")
    kept = {k: attrs[k] for k in _KEPT_ATTRIBUTES if k in attrs}
    return BandInfo(
        name=name,
        dtype=np.dtype(array.dtype),
        nodata=nodata,
        scale=None if scale is None else float(scale),
        offset=None if offset is None else float(offset),
        attributes=kept,
    )


def _level_group(parent: zarr.Group, level: Level) -> zarr.Group:
    """A level's group with its grid attributes, coordinates and ``spatial_ref``."""
    attrs = geozarr_attributes(level.geobox)
    attrs["grid_mapping"] = "spatial_ref"
    group = parent.create_group(level.name, attributes=attrs, overwrite=True)
    a = level.geobox.affine
    ny, nx = level.geobox.shape.yx
    for dim, values, axis in (
        ("x", a.c + a.a * (np.arange(nx) + 0.5), "X"),
        ("y", a.f + a.e * (np.arange(ny) + 0.5), "Y"),
    ):
        coord = group.create_array(
            dim,
            shape=values.shape,
            dtype="float64",
            chunks=values.shape,
            dimension_names=(dim,),
            fill_value=np.nan,
            attributes={
                "standard_name": f"projection_{dim}_coordinate",
                "long_name": f"{dim} coordinate of projection",
                "units": "m",
                "axis": axis,
            },
        )
        coord[...] = values
    ref = group.create_array(
        "spatial_ref",
        shape=(),
        dtype="int64",
        fill_value=0,
        attributes=cf_grid_mapping(level.geobox),
    )
    ref[...] = 0
    return group


def _create_band(
    group: zarr.Group, band: BandInfo, geobox: GeoBox, shard: int | None
) -> zarr.Array:
    ny, nx = geobox.shape.yx
    chunks = (min(CHUNK, ny), min(CHUNK, nx))
    shards = (
        None
        if shard is None
        else tuple(min(shard, -(-n // c) * c) for n, c in zip((ny, nx), chunks, strict=True))
    )
    attrs: dict[str, Any] = {
        **band.attributes,
        "grid_mapping": "spatial_ref",
        "coordinates": "spatial_ref",
        "_FillValue": _json_number(band.nodata),
    }
    if band.scale is not None:
        attrs["scale_factor"] = band.scale
        attrs["add_offset"] = band.offset if band.offset is not None else 0.0
        attrs["units"] = "1"
    return group.create_array(
        band.name,
        shape=(ny, nx),
        dtype=band.dtype,
        chunks=chunks,
        shards=shards,
        fill_value=band.nodata,
        compressors=COMPRESSOR,
        dimension_names=("y", "x"),
        attributes=attrs,
    )


def _json_number(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _copy(src: Any, dst: zarr.Array, factor: int, reducer: Reducer, nodata: int | float) -> None:
    """Fill ``dst`` shard by shard from ``src`` reduced by ``factor`` (1: a plain copy)."""
    ny, nx = dst.shape
    sy, sx = dst.shards or (max(dst.chunks[0], SHARD), max(dst.chunks[1], SHARD))
    for y0 in range(0, ny, sy):
        y1 = min(y0 + sy, ny)
        for x0 in range(0, nx, sx):
            x1 = min(x0 + sx, nx)
            block = np.empty((y1 - y0, x1 - x0), dtype=dst.dtype)
            rows = max(1, STRIP_PIXELS // ((x1 - x0) * factor * factor))
            for r0 in range(y0, y1, rows):
                r1 = min(r0 + rows, y1)
                window = _read(src, (r0 * factor, r1 * factor), (x0 * factor, x1 * factor))
                block[r0 - y0 : r1 - y0] = reducer(
                    window.astype(dst.dtype, copy=False), factor, nodata
                )
            dst[y0:y1, x0:x1] = block


def _read(src: Any, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """A window of ``src`` read one source chunk at a time.

    A read spanning several chunks makes zarr decode all of them at once; EOPF products chunk
    10 m bands in 5490 px chunks (60 MB decoded), so piece by piece keeps one in memory.
    """
    (r0, r1), (c0, c1) = (
        (rows[0], min(rows[1], src.shape[0])),
        (cols[0], min(cols[1], src.shape[1])),
    )
    cy, cx = src.chunks
    if r0 // cy == (r1 - 1) // cy and c0 // cx == (c1 - 1) // cx:
        return np.asarray(src[r0:r1, c0:c1])
    out = np.empty((r1 - r0, c1 - c0), dtype=src.dtype)
    ys = sorted({r0, r1, *range((r0 // cy + 1) * cy, r1, cy)})
    xs = sorted({c0, c1, *range((c0 // cx + 1) * cx, c1, cx)})
    for ya, yb in itertools.pairwise(ys):
        for xa, xb in itertools.pairwise(xs):
            out[ya - r0 : yb - r0, xa - c0 : xb - c0] = src[ya:yb, xa:xb]
    return out


def _multiscales_attributes(levels: Sequence[Level], categorical: bool) -> dict[str, Any]:
    """The group's ``multiscales`` layout and its ``proj:``/``spatial:`` attributes."""
    layout: list[dict[str, Any]] = []
    for level in levels:
        a = level.geobox.affine
        entry: dict[str, Any] = {"asset": level.name}
        if level.derived_from is not None:
            entry["derived_from"] = level.derived_from
            entry["transform"] = {
                "scale": [float(level.factor), float(level.factor)],
                "translation": [0.0, 0.0],
            }
        entry["spatial:shape"] = list(level.geobox.shape.yx)
        entry["spatial:transform"] = [a.a, a.b, a.c, a.d, a.e, a.f]
        layout.append(entry)
    base = geozarr_attributes(levels[0].geobox)
    return {
        "zarr_conventions": [MULTISCALES_CONVENTION, SPATIAL_CONVENTION, PROJ_CONVENTION],
        "multiscales": {
            "layout": layout,
            "resampling_method": "mode" if categorical else "average",
        },
        "spatial:dimensions": base["spatial:dimensions"],
        "spatial:bbox": base["spatial:bbox"],
        "spatial:registration": "pixel",
        **{k: v for k, v in base.items() if k.startswith("proj:")},
    }
