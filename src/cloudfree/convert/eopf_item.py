"""Find an EOPF product's Zarr store and its groups from the product's STAC item.

The item is the only input: the Zarr location is read from its assets, never given directly, so
a converted product always knows the item it came from (datetime, footprint, lineage). A direct
Zarr URL is refused with a message that says to pass the item instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import zarr

from cloudfree.access import redact_href
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.store import location

REFLECTANCE_GROUP = "measurements/reflectance"
SCL_GROUP = "conditions/mask/l2a_classification"
S1_MEASUREMENTS = "measurements"
S1_GRD_ARRAY = "grd"
_ZARR_SUFFIX = ".zarr"


@dataclass(frozen=True)
class MultiscaleSource:
    """One group of the product to convert: resolution subgroups (``r10m``...) of 2-D arrays.

    Attributes
    ----------
    path
        The group inside the product, e.g. ``measurements/reflectance``.
    categorical
        Whether its arrays hold classes (SCL, masks): downsampled by the most frequent class,
        never averaged.

    """

    path: str
    categorical: bool


@dataclass(frozen=True)
class EopfSource:
    """What :func:`resolve_source` found in an item.

    Attributes
    ----------
    item
        The source STAC item.
    product_href
        The product's Zarr root (``.../<product>.zarr``).
    crs
        The product's CRS (``EPSG:...``) from ``proj:code`` (or ``proj:epsg``).
    groups
        The groups to convert.
    product_type
        ``S02MSIL2A``, ``S01SIWGRD``...

    """

    item: pystac.Item
    product_href: str
    crs: str
    groups: tuple[MultiscaleSource, ...]
    product_type: str


S2_L2A_GROUPS = (
    MultiscaleSource(REFLECTANCE_GROUP, categorical=False),
    MultiscaleSource(SCL_GROUP, categorical=True),
)


def looks_like_zarr(ref: str) -> bool:
    """Whether ``ref`` names a Zarr store or a node inside one rather than a STAC item."""
    path = ref.split("?", 1)[0].rstrip("/")
    if path.endswith(_ZARR_SUFFIX) or f"{_ZARR_SUFFIX}/" in path:
        return True
    if not location.is_remote(ref):
        local = location.local_path(ref)
        return local.is_dir() and any(
            (local / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray")
        )
    return False


def load_item(ref: str) -> pystac.Item:
    """Read the STAC item at ``ref`` (a local file or an ``http(s)://``/fsspec URL).

    Raises
    ------
    InvalidInputError
        If ``ref`` is a Zarr store rather than an item, or the document is not a STAC Item.
    SourceError
        If the document cannot be read.

    """
    if looks_like_zarr(ref):
        raise InvalidInputError(
            f"{redact_href(ref)} is a Zarr store, not a STAC item. cloudfree convert takes the "
            "product's STAC item (its URL or a file), e.g. "
            "https://stac.core.eopf.eodc.eu/collections/sentinel-2-l2a/items/<id>; the Zarr "
            "location is read from the item's assets."
        )
    try:
        if location.is_remote(ref):
            item = pystac.Item.from_file(ref)
        else:
            data = json.loads(location.local_path(ref).read_text(encoding="utf-8"))
            item = _item_from_dict(data, ref)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read the STAC item {redact_href(ref)}: {exc}") from exc
    return item


def _item_from_dict(data: Any, ref: str) -> pystac.Item:
    if not isinstance(data, dict) or data.get("type") != "Feature":
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise InvalidInputError(
            f"{ref} is not a STAC Item (type {kind!r}); pass one item of an EOPF product."
        )
    item = pystac.Item.from_dict(data)
    item.set_self_href(str(Path(ref).resolve()))
    return item


def resolve_source(item: pystac.Item) -> EopfSource:
    """Find the product Zarr and the groups to convert from an EOPF item's assets.

    Raises
    ------
    InvalidInputError
        If no asset points into a Zarr product, the CRS is missing, or the product type has no
        supported conversion (Sentinel-1 GRD without a map grid).

    """
    product_href = _product_href(item)
    product_type = str(item.properties.get("product:type", "")).upper()
    crs = _crs(item)
    if is_s1_grd(item):
        # the polarisation groups are only known once the product is open: s1_grd_groups()
        return EopfSource(item, product_href, crs, (), product_type or "S01SIWGRD")
    if product_type and "L2A" not in product_type:
        raise InvalidInputError(
            f"Item {item.id} is a {product_type} product; cloudfree convert supports Sentinel-2 "
            "L2A (S02MSIL2A) and Sentinel-1 GRD on a map grid."
        )
    return EopfSource(item, product_href, crs, S2_L2A_GROUPS, product_type or "S02MSIL2A")


def _product_href(item: pystac.Item) -> str:
    """The product root: the ``product`` asset, else the ``.zarr`` prefix of any Zarr asset."""
    hrefs: list[str] = []
    for key, asset in item.assets.items():
        href = asset.get_absolute_href() or asset.href
        media = (asset.media_type or "").lower()
        if key == "product" and href.rstrip("/").endswith(_ZARR_SUFFIX):
            return href.rstrip("/")
        if "zarr" in media or _ZARR_SUFFIX in href:
            hrefs.append(href)
    for href in hrefs:
        head, sep, _ = href.partition(f"{_ZARR_SUFFIX}/")
        if sep:
            return head + _ZARR_SUFFIX
        if href.rstrip("/").endswith(_ZARR_SUFFIX):
            return href.rstrip("/")
    raise InvalidInputError(
        f"Item {item.id} has no asset pointing into a Zarr product (assets: "
        f"{', '.join(item.assets) or 'none'}); is it an EOPF item from stac.core.eopf.eodc.eu?"
    )


def _crs(item: pystac.Item) -> str:
    props: Mapping[str, Any] = item.properties
    code = props.get("proj:code")
    if code is None and props.get("proj:epsg") is not None:
        code = f"EPSG:{props['proj:epsg']}"
    if code is None:
        for asset in item.assets.values():
            code = asset.extra_fields.get("proj:code")
            if code:
                break
    if not code:
        raise InvalidInputError(f"Item {item.id} has no proj:code; cannot tell the product's CRS.")
    return str(code)


def is_s1_grd(item: pystac.Item) -> bool:
    """Whether the item is a Sentinel-1 GRD product (``product:type`` or ``sar:product_type``)."""
    product_type = str(item.properties.get("product:type", "")).upper()
    return "GRD" in product_type or item.properties.get("sar:product_type") == "GRD"


def s1_grd_groups(root: zarr.Group, item_id: str) -> tuple[MultiscaleSource, ...]:
    """The ``<polarisation>/measurements`` groups of an EOPF Sentinel-1 GRD product.

    EOPF GRD products hold one group per polarisation (``..._VV``, ``..._VH``) with
    ``measurements/grd`` on ``azimuth_time`` x ``ground_range``: radar geometry, georeferenced
    only by the tie points in ``conditions/gcp``. That is refused: cloudfree converts a GRD
    measurement only when it lies on a map grid (``x``/``y`` coordinates and a CRS), e.g. after
    terrain correction.

    Raises
    ------
    InvalidInputError
        If no polarisation group has a ``grd`` measurement on a map grid.

    """
    groups: list[MultiscaleSource] = []
    radar: list[str] = []
    for name in sorted(root.group_keys()):
        path = f"{name}/{S1_MEASUREMENTS}"
        if path not in root or f"{path}/{S1_GRD_ARRAY}" not in root:
            continue
        arrays = set(root[path].array_keys())  # type: ignore[union-attr]
        if {"x", "y"} <= arrays:
            groups.append(MultiscaleSource(path, categorical=False))
        else:
            radar.append(name)
    if groups:
        return tuple(groups)
    if radar:
        raise InvalidInputError(
            f"Sentinel-1 GRD product {item_id} is in radar geometry: {', '.join(radar)} hold "
            f"{S1_MEASUREMENTS}/{S1_GRD_ARRAY} on azimuth_time x ground_range, georeferenced "
            "only by ground control points (conditions/gcp). cloudfree convert needs a map grid; "
            "terrain-correct the product first (e.g. with SNAP or sarsen) and convert the result."
        )
    raise InvalidInputError(
        f"Sentinel-1 product {item_id} has no <polarisation>/{S1_MEASUREMENTS}/{S1_GRD_ARRAY} "
        "array; is it an EOPF GRD product?"
    )
