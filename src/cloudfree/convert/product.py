"""``convert``: an EOPF product's STAC item in, a GeoZarr store and its STAC item out.

The stages, each importable alone:

``load_item`` -> ``resolve_source`` (product Zarr and groups from the item's assets) ->
output checks (refused before any work unless ``overwrite``) -> ``write_group`` per multiscale
group (band by band, level by level, shard by shard) -> consolidated metadata -> quick-look ->
STAC collection + item, saved as mosaics save theirs, so ``cloudfree publish`` takes either.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import pystac
import zarr
from zarr.abc.store import Store
from zarr.errors import NodeNotFoundError
from zarr.storage import FsspecStore, LocalStore

from cloudfree.access import redact_href
from cloudfree.catalog.stac_output import collection_id_for, default_catalog_dir, save_collection
from cloudfree.catalog.validation import validate_stac
from cloudfree.convert.eopf_item import EopfSource, load_item, resolve_source, s1_grd_groups
from cloudfree.convert.geozarr_writer import SHARD, GroupResult, available_bands, write_group
from cloudfree.convert.stac_item import build_item, quicklook_png
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.readers.zarr_band import open_zarr_store
from cloudfree.store import location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert` wrote."""

    store_url: str
    item: pystac.Item
    catalog_href: str | None
    groups: tuple[GroupResult, ...]


def convert(
    item_ref: str,
    out: str,
    *,
    catalog_dir: str | None = None,
    overwrite: bool = False,
    bands: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    source_options: Mapping[str, Any] | None = None,
    min_size: int | None = None,
    shard: int | None = SHARD,
) -> ConversionResult:
    """Convert the EOPF product of a STAC item to a GeoZarr store and describe it in STAC.

    Parameters
    ----------
    item_ref
        The product's STAC item: a URL or a file. A Zarr URL is refused (pass the item).
    out
        The output store: a local path or an object-store URL.
    catalog_dir
        Where the STAC collection and item go (default ``<out stem>.stac``).
    overwrite
        Replace an existing store and catalog; without it an existing one is refused before any
        work and left untouched.
    bands
        Only these arrays (``b02``, ``scl``...); groups holding none of them are skipped.
    storage_options
        fsspec options of the output store (endpoint, credentials).
    source_options
        fsspec options for reading the product.
    min_size
        Add coarser levels until the coarsest fits this many pixels (default 256).
    shard
        Shard side in pixels, or ``None`` for plain 512 px chunks (GDAL before 3.11 cannot
        read shards).

    Returns
    -------
    ConversionResult
        The store, its item and the catalog's href.

    """
    item = load_item(item_ref)
    source = resolve_source(item)
    out = location.absolute(out)
    catalog = location.absolute(catalog_dir or default_catalog_dir(out))
    location.check_writable(
        out, overwrite=overwrite, what="GeoZarr store", storage_options=storage_options
    )
    location.check_writable(catalog, overwrite=overwrite, what="STAC catalog")
    src = _open_product(source, source_options)
    sources = source.groups or s1_grd_groups(zarr.open_group(src, mode="r"), item.id)
    if bands:
        available = available_bands(src, sources)
        if not {b.lower() for b in bands} & available:
            raise InvalidInputError(
                f"None of the bands {list(bands)} is in product {item.id}; it has "
                f"{', '.join(sorted(available))}."
            )
    if overwrite:
        location.remove(out, storage_options)
        location.remove(catalog)
    store = _output_store(out, storage_options)
    root = zarr.open_group(store, mode="w-", zarr_format=3, attributes=_root_attributes(source))
    groups: list[GroupResult] = []
    for group in sources:
        result = write_group(
            src, root, group, source.crs, bands=bands, min_size=min_size, shard=shard
        )
        if result is not None:
            log.info("wrote %s: %d levels", group.path, len(result.levels))
            groups.append(result)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        zarr.consolidate_metadata(store)
    collection_id = collection_id_for(out, "geozarr")
    thumb_href = location.join(catalog, item.id, "thumbnail.png")
    png = quicklook_png(zarr.open_group(store, mode="r"), groups[0])
    location.write_bytes(thumb_href, png)
    stac_item = build_item(
        item,
        store_url=out,
        groups=groups,
        root_checksum=_checksum(out, "zarr.json", storage_options),
        group_checksums={
            g.path: _checksum(out, f"{g.path}/zarr.json", storage_options) for g in groups
        },
        thumbnail=(thumb_href, png),
    )
    validate_stac(stac_item)  # before it joins the collection (whose links have no href yet)
    collection = _collection(collection_id, stac_item)
    collection.add_item(stac_item)
    href = save_collection(collection, catalog)
    return ConversionResult(out, stac_item, href, tuple(groups))


def _open_product(source: EopfSource, options: Mapping[str, Any] | None) -> Store:
    store = open_zarr_store(source.product_href, options)
    try:
        zarr.open_group(store, mode="r", zarr_format=2)
    except (NodeNotFoundError, FileNotFoundError, OSError) as exc:
        raise SourceError(
            f"The item's product {redact_href(source.product_href)} cannot be opened as a "
            f"Zarr v2 EOPF product: {exc}"
        ) from exc
    return store


def _output_store(url: str, options: Mapping[str, Any] | None) -> Store:
    if location.is_remote(url):
        return FsspecStore.from_url(url, storage_options=dict(options or {}), read_only=False)
    path = location.local_path(url)
    path.mkdir(parents=True, exist_ok=True)
    return LocalStore(path)


def _root_attributes(source: EopfSource) -> dict[str, Any]:
    return {
        "title": f"{source.item.id} as GeoZarr",
        "source_product": source.item.id,
        "processing_software": "cloudfree convert",
    }


def _checksum(store_url: str, key: str, options: Mapping[str, Any] | None) -> tuple[str, int]:
    """``file:checksum`` (sha2-256 multihash) and size of one metadata document."""
    url = location.join(store_url, *key.split("/"))
    if location.is_remote(url):
        with fsspec.open(url, "rb", **dict(options or {})) as handle:
            payload = handle.read()
    else:
        payload = location.local_path(url).read_bytes()
    return location.sha256_multihash(hashlib.sha256(payload)), len(payload)


def _collection(collection_id: str, item: pystac.Item) -> pystac.Collection:
    when = item.datetime
    extent = pystac.Extent(
        pystac.SpatialExtent([list(item.bbox or [])]), pystac.TemporalExtent([[when, when]])
    )
    collection = pystac.Collection(
        id=collection_id,
        description=f"GeoZarr conversion of {item.id} by cloudfree convert.",
        extent=extent,
        license="other",
        title=f"cloudfree GeoZarr {collection_id}",
    )
    collection.providers = [
        pystac.Provider("ESA", roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR]),
        pystac.Provider("cloudfree", roles=[pystac.ProviderRole.PROCESSOR]),
    ]
    return collection
