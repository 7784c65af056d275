"""The STAC item of a converted product, and its quick-look.

Projection v2 (``proj:code``/``proj:shape``/``proj:transform`` of the finest level), STAC 1.1
``bands`` with nodata and data type plus raster v1.1 ``raster:bands`` with scale and offset, one
asset per multiscale group (``application/vnd.zarr; version=3; profile=multiscales``, as the
EOPF Explorer's items), the whole store with the ``file:checksum`` of its consolidated root
``zarr.json``, processing lineage, a thumbnail, and the source item's datetime and footprint.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pystac
import zarr
from PIL import Image

from cloudfree import __version__
from cloudfree.access import redact_href
from cloudfree.bands import BANDS
from cloudfree.catalog.stac_output import (
    EO_EXTENSION,
    EXTENSIONS,
    ZARR_MEDIA_TYPE,
    projection_properties,
)
from cloudfree.convert.geozarr_writer import BandInfo, GroupResult
from cloudfree.store import location
from cloudfree.store.quicklook import QUICKLOOK_MAX_REFLECTANCE, QUICKLOOK_MAX_SIZE

MULTISCALES_MEDIA_TYPE = "application/vnd.zarr; version=3; profile=multiscales"
_ASSET_KEYS = {
    "measurements/reflectance": ("reflectance", "Surface reflectance (multiscales)"),
    "conditions/mask/l2a_classification": ("SCL", "Scene classification (multiscales)"),
    "measurements": ("measurements", "Measurements (multiscales)"),
}
_COPIED_PROPERTIES = (
    "platform",
    "constellation",
    "mission",
    "instruments",
    "start_datetime",
    "end_datetime",
    "eo:cloud_cover",
    "processing:level",
    "product:type",
    "sat:relative_orbit",
    "sat:orbit_state",
    "grid:code",
)


def quicklook_png(root: zarr.Group, group: GroupResult) -> bytes:
    """An RGBA PNG of the coarsest level: true colour from b04/b03/b02 when present."""
    level = group.levels[-1]
    by_name = {b.name: b for b in group.bands}
    rgb = [by_name.get(n) for n in ("b04", "b03", "b02")]
    chosen: list[BandInfo] = [b for b in rgb if b is not None] if all(rgb) else [group.bands[0]]
    ny, nx = level.geobox.shape.yx
    step = max(1, -(-max(ny, nx) // QUICKLOOK_MAX_SIZE))
    layers, missing = [], np.zeros((-(-ny // step), -(-nx // step)), dtype=bool)
    for band in chosen:
        array = root[f"{group.path}/{level.name}/{band.name}"]
        if not isinstance(array, zarr.Array):
            raise TypeError(f"{group.path}/{level.name}/{band.name} is a group, not an array")
        raw = np.asarray(array[::step, ::step])
        missing |= raw == band.nodata
        value = raw * (band.scale or 1.0) + (band.offset or 0.0)
        white = QUICKLOOK_MAX_REFLECTANCE if band.scale is not None else max(1.0, value.max())
        layers.append(np.clip(value * (255 / white), 0, 255).astype(np.uint8))
    if len(layers) == 1:
        layers = layers * 3
    alpha = np.where(missing, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([*layers, alpha]), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def build_item(
    source: pystac.Item,
    *,
    store_url: str,
    groups: Sequence[GroupResult],
    root_checksum: tuple[str, int],
    group_checksums: dict[str, tuple[str, int]],
    thumbnail: tuple[str, bytes] | None,
) -> pystac.Item:
    """The item describing a converted store (absolute hrefs; made relative when saved).

    It joins a collection (which sets ``collection``) when the catalog is saved.
    """
    properties: dict[str, Any] = {
        k: source.properties[k] for k in _COPIED_PROPERTIES if k in source.properties
    }
    properties |= projection_properties(groups[0].levels[0].geobox)
    properties |= {
        "processing:lineage": (
            f"EOPF product {source.id} converted to GeoZarr (multiscales, proj:, spatial:) by "
            "cloudfree convert; source values copied, coarser levels by block mean "
            "(reflectance) and most frequent class (classifications)"
        ),
        "processing:software": {"cloudfree": __version__},
    }
    item = pystac.Item(
        id=source.id,
        geometry=source.geometry,
        bbox=source.bbox,
        datetime=source.datetime,
        properties=properties,
        stac_extensions=list(EXTENSIONS),
    )
    checksum, size = root_checksum
    item.add_asset(
        "zarr",
        pystac.Asset(
            href=store_url,
            media_type=ZARR_MEDIA_TYPE,
            roles=["data"],
            title="GeoZarr store (consolidated metadata)",
            extra_fields={"file:checksum": checksum, "file:size": size},
        ),
    )
    for group in groups:
        key, title = _ASSET_KEYS.get(group.path, (group.path.rsplit("/", 1)[-1], group.path))
        fields: dict[str, Any] = {
            "bands": [_band_entry(group, b) for b in group.bands],
            "raster:bands": [_raster_band(b) for b in group.bands],
            "proj:shape": list(group.levels[0].geobox.shape.yx),
            "gsd": abs(group.levels[0].geobox.affine.a),
        }
        if group.path in group_checksums:
            fields["file:checksum"], fields["file:size"] = group_checksums[group.path]
        item.add_asset(
            key,
            pystac.Asset(
                href=location.join(store_url, *group.path.split("/")),
                media_type=MULTISCALES_MEDIA_TYPE,
                roles=["data"],
                title=title,
                extra_fields=fields,
            ),
        )
    uses_eo = any(
        key.startswith("eo:")
        for asset in item.assets.values()
        for band in asset.extra_fields.get("bands", [])
        for key in band
    )
    if not uses_eo:  # radar: no optical band metadata, so the eo extension does not apply
        item.stac_extensions.remove(EO_EXTENSION)
    if thumbnail is not None:
        href, payload = thumbnail
        item.add_asset(
            "thumbnail",
            pystac.Asset(
                href=href,
                media_type=pystac.MediaType.PNG,
                roles=["thumbnail", "overview"],
                title="Quick-look of the coarsest level",
                extra_fields={
                    "file:checksum": location.sha256_multihash(hashlib.sha256(payload)),
                    "file:size": len(payload),
                },
            ),
        )
    self_href = source.get_self_href()
    if self_href:
        item.add_link(
            pystac.Link("derived_from", redact_href(self_href), media_type="application/geo+json")
        )
    return item


def _band_entry(group: GroupResult, band: BandInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": band.name,
        "data_type": band.dtype.name,
        "nodata": band.nodata,
        "description": str(band.attributes.get("long_name", band.name)),
    }
    spec = BANDS.get(band.name.upper())
    if spec is not None and not group.categorical:
        if spec.common_name:
            entry["eo:common_name"] = spec.common_name
        if spec.center_wavelength:
            entry["eo:center_wavelength"] = spec.center_wavelength
        if spec.full_width_half_max:
            entry["eo:full_width_half_max"] = spec.full_width_half_max
    return entry


def _raster_band(band: BandInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {"data_type": band.dtype.name, "nodata": band.nodata}
    if band.scale is not None:
        entry["scale"] = band.scale
        entry["offset"] = band.offset or 0.0
    return entry
