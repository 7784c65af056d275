"""The STAC collection that describes a mosaic: one item per period.

Items carry projection v2 (``proj:code``, ``proj:shape``, ``proj:transform``), band metadata with
scale/offset/nodata, processing lineage, ``file:checksum`` of every file written, and
start/end datetimes. Hrefs are relative inside a local catalog and never carry a signature or
credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pystac
from odc.geo.geobox import GeoBox

from cloudfree import __version__
from cloudfree.bands import Band
from cloudfree.grid import geobox_crs
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store import location
from cloudfree.timeframe import Period

EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    EO_EXTENSION,
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
]
ZARR_MEDIA_TYPE = "application/vnd.zarr; version=3"
_COLLECTION_ID = re.compile(r"[^A-Za-z0-9_.-]+")
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass(frozen=True)
class PeriodOutput:
    """What was written for one period."""

    period: Period
    cog_url: str | None = None
    cog_checksum: str | None = None
    """``file:checksum`` of the COG, when it was written."""
    cog_size: int | None = None
    quicklook_url: str | None = None
    quicklook_png: bytes | None = None


def projection_properties(geobox: GeoBox) -> dict[str, object]:
    """Projection v2 properties of a grid: ``proj:code`` (or ``proj:wkt2``), shape, transform."""
    a = geobox.affine
    crs = geobox_crs(geobox)
    properties: dict[str, object] = {
        "proj:code": f"EPSG:{crs.epsg}" if crs.epsg else None,
        "proj:shape": [geobox.shape.y, geobox.shape.x],
        "proj:transform": [a.a, a.b, a.c, a.d, a.e, a.f],
    }
    if crs.epsg is None:
        properties["proj:wkt2"] = crs.to_wkt()
    return properties


def default_catalog_dir(out: str) -> str:
    """Where a store's STAC catalog goes by default: beside it, ``<store name>.stac``."""
    base = str(out).rstrip("/")
    return base.removesuffix(".zarr") + ".stac"


def collection_id_for(out: str, fallback: str) -> str:
    """The STAC collection id of a store: its name without ``.zarr`` (``fallback`` if none)."""
    name = str(out).rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr")
    return _COLLECTION_ID.sub("-", name).strip("-") or fallback


def item_id(collection_id: str, period: Period) -> str:
    """The id of a period's item (also its folder in the catalog)."""
    return f"{collection_id}-{period.label}"


def _band_entries(
    bands: Sequence[tuple[str, Band]], encoding: ValueEncoding
) -> list[dict[str, object]]:
    """STAC 1.1 ``bands`` (names, eo v2 wavelengths, nodata and data type)."""
    entries: list[dict[str, object]] = []
    for name, band in bands:
        entry: dict[str, object] = {
            "name": name,
            "description": encoding.long_name.format(band=band.id),
            "data_type": encoding.dtype,
        }
        if encoding.nodata is not None:
            entry["nodata"] = encoding.nodata
        if band.common_name:
            entry["eo:common_name"] = band.common_name
        if band.center_wavelength:
            entry["eo:center_wavelength"] = band.center_wavelength
        if band.full_width_half_max:
            entry["eo:full_width_half_max"] = band.full_width_half_max
        entries.append(entry)
    return entries


def _raster_bands(
    bands: Sequence[tuple[str, Band]], encoding: ValueEncoding
) -> list[dict[str, object]]:
    """Raster v1.1 ``raster:bands``: how stored integers decode to values."""
    entry: dict[str, object] = {
        "data_type": encoding.dtype,
        "scale": encoding.scale,
        "offset": encoding.offset,
    }
    if encoding.nodata is not None:
        entry["nodata"] = encoding.nodata
    return [dict(entry) for _ in bands]


def build_collection(
    *,
    collection_id: str,
    geobox: GeoBox,
    bands: Sequence[tuple[str, Band]],
    outputs: Sequence[PeriodOutput],
    store_url: str,
    lineage: str,
    scene_count: int,
    encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
) -> pystac.Collection:
    """The collection and its items, with absolute hrefs (made relative when saved)."""
    footprint = geobox.footprint("EPSG:4326", npoints=50)
    bbox = list(footprint.boundingbox)
    starts = [o.period.start for o in outputs]
    ends = [o.period.end for o in outputs]
    t0 = datetime.combine(min(starts), time.min, tzinfo=UTC)
    t1 = datetime.combine(max(ends), time.min, tzinfo=UTC) - timedelta(seconds=1)
    collection = pystac.Collection(
        id=collection_id,
        description=f"Cloud-free Sentinel-2 L2A composites made by cloudfree: {lineage}.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[t0, t1]])),
        license="other",
        title=f"cloudfree mosaic {collection_id}",
    )
    collection.providers = [
        pystac.Provider("ESA", roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR]),
        pystac.Provider("cloudfree", roles=[pystac.ProviderRole.PROCESSOR]),
    ]
    band_entries = _band_entries(bands, encoding)
    raster_bands = _raster_bands(bands, encoding)
    for out in outputs:
        start = datetime.combine(out.period.start, time.min, tzinfo=UTC)
        end = datetime.combine(out.period.end, time.min, tzinfo=UTC) - timedelta(seconds=1)
        item = pystac.Item(
            id=item_id(collection_id, out.period),
            geometry=footprint.json,
            bbox=bbox,
            datetime=None,
            start_datetime=start,
            end_datetime=end,
            properties={
                **projection_properties(geobox),
                "constellation": "sentinel-2",
                "instruments": ["msi"],
                "processing:level": "L3",
                "processing:lineage": f"{lineage}; {scene_count} source scenes",
                "processing:software": {"cloudfree": __version__},
            },
            stac_extensions=list(EXTENSIONS),
            collection=collection_id,
        )
        item.add_asset(
            "zarr",
            pystac.Asset(
                href=store_url,
                media_type=ZARR_MEDIA_TYPE,
                roles=["data"],
                title="Zarr v3 / GeoZarr store (all periods)",
                extra_fields={"bands": band_entries, "raster:bands": raster_bands},
            ),
        )
        if out.cog_url is not None:
            fields: dict[str, object] = {"bands": band_entries, "raster:bands": raster_bands}
            if out.cog_checksum:
                fields["file:checksum"] = out.cog_checksum
                fields["file:size"] = out.cog_size
            item.add_asset(
                "cog",
                pystac.Asset(
                    href=out.cog_url,
                    media_type=COG_MEDIA_TYPE,
                    roles=["data"],
                    title=f"Composite {out.period.label}",
                    extra_fields=fields,
                ),
            )
        if out.quicklook_url is not None and out.quicklook_png is not None:
            payload = out.quicklook_png
            item.add_asset(
                "thumbnail",
                pystac.Asset(
                    href=out.quicklook_url,
                    media_type=pystac.MediaType.PNG,
                    roles=["thumbnail", "overview"],
                    title="Quick-look",
                    extra_fields={
                        "file:checksum": location.sha256_multihash(hashlib.sha256(payload)),
                        "file:size": len(payload),
                    },
                ),
            )
        collection.add_item(item)
    return collection


def save_collection(collection: pystac.Collection, root_url: str) -> str:
    """Write the collection and its items under ``root_url``; returns the collection's href.

    Layout: ``root/collection.json`` and ``root/<item id>/<item id>.json``, a self-contained
    catalog: links and asset hrefs are relative where they share a filesystem with the catalog.
    """
    root = (
        root_url if location.is_remote(root_url) else str(location.local_path(root_url).resolve())
    )
    # Relative links (no self links): the folder can be moved, uploaded or served anywhere,
    # and `cloudfree publish` reads it from wherever it is.
    collection.catalog_type = pystac.CatalogType.SELF_CONTAINED
    # The trailing slash tells pystac the root is a folder even when its name has a dot.
    collection.normalize_hrefs(root.rstrip("/") + "/")
    collection.make_all_asset_hrefs_relative()
    objects: list[pystac.STACObject] = [collection, *collection.get_items()]
    for obj in objects:
        href = obj.get_self_href()
        if href is None:  # pragma: no cover - normalize_hrefs sets every self href
            raise RuntimeError(f"STAC object {obj.id} has no self href after normalising")
        payload = json.dumps(
            obj.to_dict(include_self_link=False, transform_hrefs=True), indent=2
        ).encode()
        location.write_bytes(href, payload)
    return str(collection.get_self_href())
