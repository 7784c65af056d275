"""STAC sources: an API (item search), a static catalog, or an ItemCollection file.

Items become :class:`~cloudfree.scene.Scene`s here, once: band assets are found through the band
registry (``red``, ``B04``, ``B04_10m`` all mean B04; ``cloud``, ``CLD_20m`` mean the cloud
probability CLD), Cloud-Optimized GeoTIFFs are preferred over JP2 alternates, and each
reflectance band's scale/offset is decided by :mod:`cloudfree.radiometry` (SCL and the
probability masks are used as they are: scale 1, offset 0).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pystac
from odc.geo.geom import Geometry
from urllib3.util.retry import Retry

from cloudfree.access import redact_href
from cloudfree.bands import Band, BandKind, canonical_band
from cloudfree.config import read_settings
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.radiometry import baseline_from_product_id, decide_radiometry
from cloudfree.scene import BandAsset, Scene
from cloudfree.sources.base import SearchQuery
from cloudfree.sources.providers import Provider, detect_provider, get_provider, provider_for_url

log = logging.getLogger(__name__)

#: Item properties that name the ESA processing baseline, by provider convention.
BASELINE_PROPERTIES = (
    "s2:processing_baseline",
    "processing:version",
    "sentinel:processing_baseline",
)

#: Item properties holding the ESA product name, which carries the baseline (``_N0400_``).
PRODUCT_ID_PROPERTIES = ("s2:product_uri", "sentinel:product_id", "s2:product_id")

#: Earth Search flags saying the DNs were shifted back to the pre-04.00 scale.
HARMONISED_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")

_TILE_IN_PRODUCT_ID = re.compile(r"_T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})_")

ItemModifier = Callable[[pystac.Item], pystac.Item]
"""A hook applied to every item before use (e.g. URL signing); never changes outputs."""

_RASTER_MEDIA = (
    "image/tiff",
    "image/jp2",
    "application/x-geotiff",
    "application/vnd.zarr",
    "application/vnd+zarr",
)
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


class StacSource:
    """Scenes from a STAC API, a static catalog, or an ItemCollection/item file.

    ``provider`` fixes the conventions of every item (``--provider``, or an API URL the registry
    knows); without it each item's provider is detected from its properties and hrefs.
    """

    def __init__(
        self,
        location: str,
        *,
        provider: Provider | None = None,
        modifier: ItemModifier | None = None,
        page_size: int = 100,
    ) -> None:
        self.location = location
        self.provider = provider
        self.modifier = modifier
        self.page_size = page_size
        name = f"{provider.name} " if provider is not None else ""
        self.description = f"{name}STAC {redact_href(location)}"

    def search(self, query: SearchQuery) -> list[Scene]:
        """Scenes matching the query, one per item, in time order."""
        scenes: dict[str, Scene] = {}
        for item in self._items(query):
            if self.modifier is not None:
                item = self.modifier(item)
            if not _item_matches(item, query):
                continue
            scene = scene_from_item(item, provider=self.provider)
            scenes.setdefault(scene.id, scene)
        ordered = sorted(scenes.values(), key=lambda s: (s.datetime, s.id))
        if query.max_items is not None:
            ordered = ordered[: query.max_items]
        return ordered

    def _items(self, query: SearchQuery) -> Iterable[pystac.Item]:
        if _is_api(self.location):
            collections = query.collections or (self.provider.collections if self.provider else ())
            return _api_items(self.location, query, collections, self.page_size)
        return _file_items(self.location)


def open_source(
    location: str | Path | None = None,
    *,
    provider: str | None = None,
    modifier: ItemModifier | None = None,
) -> StacSource:
    """Open a STAC location or a registered provider.

    ``location`` is an API URL, a catalog/collection JSON or an ItemCollection file; ``provider``
    a name from :data:`~cloudfree.sources.providers.PROVIDERS` (its API unless ``location``
    overrides it, e.g. a mirror).
    """
    chosen = get_provider(provider) if provider else None
    if location is None:
        if chosen is None or chosen.stac_url is None:
            raise InvalidInputError("Name a catalog: --provider NAME or --stac URL.")
        return StacSource(chosen.stac_url, provider=chosen, modifier=modifier)
    text = str(location)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") and not Path(parsed.path or text).exists():
        raise InvalidInputError(
            f"STAC location {text!r} does not exist; pass a STAC API URL, a catalog.json, "
            "or an ItemCollection file."
        )
    return StacSource(text, provider=chosen or provider_for_url(text), modifier=modifier)


def _is_api(location: str) -> bool:
    """Whether the location is an HTTP endpoint that is not a JSON document."""
    parsed = urlparse(location)
    return parsed.scheme in ("http", "https") and not parsed.path.endswith((".json", ".geojson"))


def _api_items(
    url: str, query: SearchQuery, collections: Iterable[str], page_size: int
) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from requests.exceptions import RequestException

    settings = read_settings()
    io = StacApiIO(max_retries=api_retry(settings.retries, settings.retry_backoff), timeout=60)
    try:
        client = Client.open(url, stac_io=io)
        search = client.search(
            collections=list(collections) or None,
            intersects=query.aoi.geometry.json,
            datetime=query.timerange.as_interval(),
            query=(
                {"eo:cloud_cover": {"lte": query.max_cloud_cover}}
                if query.max_cloud_cover is not None
                else None
            ),
            limit=min(page_size, query.max_items or page_size),
            max_items=query.max_items,
            sortby=[{"field": "properties.datetime", "direction": "asc"}]
            if client.conforms_to("SORT")
            else None,
        )
        return list(search.items())
    except (APIError, RequestException, OSError) as exc:
        raise SourceError(f"STAC API search at {redact_href(url)} failed: {exc}") from None


def api_retry(attempts: int, backoff: float) -> Retry:
    """Retry policy for catalog requests: 429 and 5xx, with backoff, honouring Retry-After."""
    return Retry(
        total=attempts,
        backoff_factor=backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # search is a POST, and it is idempotent
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _file_items(location: str) -> Iterable[pystac.Item]:
    try:
        text = pystac.StacIO.default().read_text(location)
        document = json.loads(text)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read STAC document {location!r}: {exc}") from exc
    if isinstance(document, list):
        return [pystac.Item.from_dict(f) for f in document]
    kind = document.get("type")
    if kind == "FeatureCollection":
        collection = pystac.ItemCollection.from_dict(document, preserve_dict=False)
        for item in collection.items:
            _absolutise(item, location)
        return list(collection.items)
    if kind == "Feature":
        item = pystac.Item.from_dict(document)
        item.set_self_href(location)
        return [item]
    if kind in ("Catalog", "Collection"):
        root = pystac.read_file(location)
        if not isinstance(root, pystac.Catalog):
            raise SourceError(f"{location!r} is not a STAC catalog or collection.")
        return list(root.get_items(recursive=True))
    raise SourceError(
        f"{location!r} is not a STAC catalog, collection, item or ItemCollection (type {kind!r})."
    )


def _absolutise(item: pystac.Item, location: str) -> None:
    """Resolve relative asset hrefs of a loose item against the file that held it."""
    base = Path(location).parent if "://" not in location else None
    for asset in item.assets.values():
        href = asset.href
        if base is not None and "://" not in href and not Path(href).is_absolute():
            asset.href = str((base / href).resolve())


def _item_datetime(item: pystac.Item) -> datetime:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise SourceError(f"Item {item.id!r} has no datetime or start_datetime.")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def is_sentinel2_l2a(item: pystac.Item) -> bool:
    """Whether an item is a Sentinel-2 L2A product (search results may mix Landsat, L1C...)."""
    props = item.properties
    mission = str(props.get("constellation") or props.get("platform") or "sentinel-2")
    mission = mission.lower().replace(" ", "-").replace("_", "-")
    if not mission.startswith("sentinel-2"):
        return False
    level = " ".join(
        str(v) for v in (props.get("processing:level"), props.get("s2:product_type"), item.id)
    ).upper()
    return "L1C" not in level and "MSIL1" not in level


def _item_matches(item: pystac.Item, query: SearchQuery) -> bool:
    if not is_sentinel2_l2a(item):
        log.debug("skipping %s: not a Sentinel-2 L2A item", item.id)
        return False
    if query.collections and item.collection_id not in query.collections:
        return False
    if not query.timerange.contains(_item_datetime(item)):
        return False
    cloud = item.properties.get("eo:cloud_cover")
    if query.max_cloud_cover is not None and cloud is not None and cloud > query.max_cloud_cover:
        return False
    if item.geometry is None:
        return False
    footprint = Geometry(item.geometry, "EPSG:4326")
    return bool(footprint.intersects(query.aoi.geometry))


def scene_from_item(item: pystac.Item, *, provider: Provider | None = None) -> Scene:
    """Normalise one STAC item into a scene, under its provider's conventions."""
    chosen_provider = provider or detect_provider(item)
    convention = chosen_provider.convention_for(item.collection_id)
    props = item.properties
    baseline = item_baseline(item)
    harmonised = _first_not_none(*(props.get(k) for k in HARMONISED_FLAGS))
    chosen: dict[str, tuple[tuple[int, float], BandAsset]] = {}
    for key, asset in item.assets.items():
        band = _asset_band(key, asset)
        if band is None:
            continue
        fields = asset.extra_fields
        first = _first_band_entry(fields)
        if not band.is_reflectance:  # class codes (SCL) and percentages (CLD, SNW) as they are
            scale, offset = 1.0, 0.0
        else:
            radiometry = decide_radiometry(
                declared_scale=_first_not_none(
                    fields.get("raster:scale"), first.get("raster:scale"), first.get("scale")
                ),
                declared_offset=_first_not_none(
                    fields.get("raster:offset"), first.get("raster:offset"), first.get("offset")
                ),
                baseline=baseline,
                scene_id=item.id,
                convention=convention,
                harmonised=None if harmonised is None else bool(harmonised),
            )
            scale, offset = radiometry.scale, radiometry.offset
        nodata = _asset_nodata(fields, first, band)
        resolution = _asset_resolution(fields, first, band)
        rank = (_format_rank(asset), resolution or float(band.resolution))
        href = asset.get_absolute_href() or asset.href
        candidate = BandAsset(
            href=href,
            scale=float(scale),
            offset=float(offset),
            nodata=nodata,
            resolution=resolution,
            store=chosen_provider.store if href.startswith("s3://") else None,
            signer=chosen_provider.signer if href.startswith(("http://", "https://")) else None,
        )
        if band.id not in chosen or rank < chosen[band.id][0]:
            chosen[band.id] = (rank, candidate)
    if item.geometry is None:
        raise SourceError(f"Item {item.id!r} has no geometry; cannot place it.")
    return Scene(
        id=item.id,
        datetime=_item_datetime(item),
        footprint=Geometry(item.geometry, "EPSG:4326"),
        bands={band_id: asset for band_id, (_, asset) in chosen.items()},
        crs=_item_crs(item),
        tile=_item_tile(props, item.id),
        cloud_cover=props.get("eo:cloud_cover"),
        processing_baseline=baseline,
        provider=chosen_provider.name,
        collection=item.collection_id,
    )


def item_baseline(item: pystac.Item) -> str | None:
    """The item's processing baseline: a baseline property, else the one in its product name."""
    props = item.properties
    for key in BASELINE_PROPERTIES:
        if props.get(key):
            return str(props[key])
    for name in (*(props.get(k) for k in PRODUCT_ID_PROPERTIES), item.id):
        if isinstance(name, str) and (found := baseline_from_product_id(name)):
            return found
    return None


def _asset_band(key: str, asset: pystac.Asset) -> Band | None:
    media = (asset.media_type or "").lower()
    href = asset.href.lower().split("?")[0]
    if not (media.startswith(_RASTER_MEDIA) or href.endswith(_RASTER_SUFFIXES)):
        return None
    entries = asset.extra_fields.get("bands") or asset.extra_fields.get("eo:bands") or []
    if len(entries) > 1:
        return None  # multi-band assets (TCI/visual) are previews, not measurements
    for name in (key, *(e.get("name", "") for e in entries)):
        try:
            return canonical_band(name)
        except InvalidInputError:
            continue
    return None


def _asset_nodata(fields: Mapping[str, Any], first: Mapping[str, Any], band: Band) -> float | None:
    """The asset's declared nodata; undeclared, 0 for DNs and classes and none for percentages.

    A probability mask's declared 0 is dropped: Sen2Cor writes 0 % for clear ground in
    ``MSK_CLDPRB``, and Earth Search still declares ``nodata: 0`` on its ``cloud`` and ``snow``
    assets; honouring it would turn every surely-clear pixel into a missing one. Pixels beyond
    the swath are known from the reflectance and SCL nodata anyway.
    """
    declared = _first_not_none(fields.get("nodata"), first.get("nodata"))
    if band.kind is BandKind.PROBABILITY:
        return None if declared is None or float(declared) == 0.0 else float(declared)
    return float(_first_not_none(declared, 0))


def _first_band_entry(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("bands", "raster:bands"):
        entries = fields.get(key)
        if entries:
            return dict(entries[0])
    return {}


def _first_not_none(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _asset_resolution(
    fields: Mapping[str, Any], first: Mapping[str, Any], band: Band
) -> float | None:
    value = _first_not_none(fields.get("gsd"), first.get("spatial_resolution"))
    if value is None and fields.get("proj:transform"):
        value = abs(float(fields["proj:transform"][0]))
    return None if value is None else float(value)


def _format_rank(asset: pystac.Asset) -> int:
    """Preference among a band's assets: COG, then Zarr, then JPEG 2000 (slow to decode)."""
    media = (asset.media_type or "").lower()
    href = asset.href.lower().split("?")[0]
    if "tiff" in media or href.endswith((".tif", ".tiff")):
        return 0
    if "zarr" in media:
        return 1
    return 2


def _item_crs(item: pystac.Item) -> str | None:
    props = item.properties
    code = props.get("proj:code")
    if code:
        return str(code)
    epsg = props.get("proj:epsg")
    if epsg:
        return f"EPSG:{int(epsg)}"
    for asset in item.assets.values():
        code = asset.extra_fields.get("proj:code")
        if code:
            return str(code)
        epsg = asset.extra_fields.get("proj:epsg")
        if epsg:
            return f"EPSG:{int(epsg)}"
    return None


def _item_tile(props: Mapping[str, Any], item_id: str) -> str | None:
    code = props.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        return code[5:]
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    for prefix in ("mgrs:", "sentinel:"):
        zone, band, square = (
            props.get(prefix + k) for k in ("utm_zone", "latitude_band", "grid_square")
        )
        if zone is not None and band is not None and square is not None:
            return f"{int(zone):02d}{band}{square}"
    for name in (*(props.get(k) for k in PRODUCT_ID_PROPERTIES), item_id):
        if isinstance(name, str) and (match := _TILE_IN_PRODUCT_ID.search(name)):
            return match.group(1)
    return None
