"""STAC 1.1 metadata of the synthetic archive: items, the collection, the catalog.

Two provider conventions are mimicked:

``stac11-bands`` (tile 29UPV, like CDSE/EOPF STAC 1.1 items)
    Asset keys are common names (``blue``, ``green``, ``red``, ``nir``, ``scl``) and ``cloud``
    for the cloud probability, as Earth Search c1; each reflectance asset's ``bands[0]``
    carries ``raster:scale`` 0.0001 and ``raster:offset`` (-0.1 with the baseline >= 04.00
    offset, else 0.0).
``baseline-only`` (tile 30UUE, like Planetary Computer)
    Asset keys are band ids (``B02``, ``B03``, ``B04``, ``B08``, ``SCL``); there is no scale or
    offset anywhere, only ``s2:processing_baseline``. Planetary Computer items have no cloud
    probability asset; these carry one anyway, keyed ``CLD_20m`` after the SAFE product's
    ``MSK_CLDPRB_20m``, so probability masks can be measured on both tiles.

The cloud probability (``CLD.tif``: uint8 percent, 20 m) declares ``nodata`` 255, the value
beyond the swath; real Earth Search items declare 0, which is also a valid probability.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pystac
from shapely.geometry import Polygon, mapping

from cloudfree.bands import BANDS, BandKind
from cloudfree.testing.fields import TRUTH_BANDS
from cloudfree.testing.model import CONVENTION_STAC11, SyntheticScene, SyntheticTile
from cloudfree.testing.render import PROBABILITY_NODATA

COLLECTION_ID = "sentinel-2-l2a"
CATALOG_ID = "cloudfree-synthetic"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
SCENE_BANDS: tuple[str, ...] = (*TRUTH_BANDS, "SCL", "CLD")
"""Assets of every item, by band id; the COG files are named ``<band id>.tif``."""
ITEM_EXTENSIONS: tuple[str, ...] = (
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
)
PROBABILITY_ASSETS = {
    "CLD": ("Cloud Probabilities", "cloud"),
    "SNW": ("Snow Probabilities", "snow-ice"),
}
"""Title and second role of the probability assets, as Earth Search gives them."""
REFLECTANCE_SCALE = 0.0001
REFLECTANCE_OFFSET = -0.1
RELATIVE_ORBIT = 80


def _satellite(platform: str) -> str:
    """``"sentinel-2a"`` -> ``"S2A"``."""
    return "S2" + platform[-1].upper()


def item_id(tile_id: str, convention: str, platform: str, when: datetime, baseline: str) -> str:
    """Return a provider-style item id.

    Parameters
    ----------
    tile_id
        MGRS tile.
    convention
        Earth Search style ids for ``stac11-bands``, Planetary Computer style otherwise.
    platform
        ``"sentinel-2a"`` or ``"sentinel-2b"``.
    when
        Sensing time.
    baseline
        Processing baseline, e.g. ``"04.00"`` (goes into the ``N0400`` field).

    Returns
    -------
    str
        E.g. ``"S2A_29UPV_20211103_0_L2A"`` or
        ``"S2A_MSIL2A_20211103T114521_N0301_R080_T30UUE_20211103T140000"``.

    """
    sat = _satellite(platform)
    if convention == CONVENTION_STAC11:
        return f"{sat}_{tile_id}_{when:%Y%m%d}_0_L2A"
    processed = when + (timedelta(days=600) if baseline >= "05.00" else timedelta())
    return (
        f"{sat}_MSIL2A_{when:%Y%m%dT%H%M%S}_N{baseline.replace('.', '')}_R{RELATIVE_ORBIT:03d}"
        f"_T{tile_id}_{processed:%Y%m%d}T140000"
    )


def _band_entry(band_id: str, scene: SyntheticScene) -> dict[str, Any]:
    """Return the STAC 1.1 ``bands`` entry of one asset."""
    band = BANDS[band_id]
    entry: dict[str, Any] = {"name": band_id}
    if band.common_name is not None:
        entry["eo:common_name"] = band.common_name
    if band.center_wavelength is not None:
        entry["eo:center_wavelength"] = band.center_wavelength
    if band.full_width_half_max is not None:
        entry["eo:full_width_half_max"] = band.full_width_half_max
    if scene.convention == CONVENTION_STAC11 and band.is_reflectance:
        entry["raster:scale"] = REFLECTANCE_SCALE
        entry["raster:offset"] = REFLECTANCE_OFFSET if scene.offset_applied else 0.0
    if band.kind is BandKind.PROBABILITY:
        entry["unit"] = "%"
    return entry


def _title(band_id: str) -> str:
    """Asset title, as Earth Search words it."""
    band = BANDS[band_id]
    if band.kind is BandKind.CLASSIFICATION:
        return "Scene classification map (SCL)"
    if band.kind is BandKind.PROBABILITY:
        return PROBABILITY_ASSETS[band_id][0]
    return f"{band.common_name} - {band.resolution}m ({band_id})"


def _asset(band_id: str, scene: SyntheticScene, tile: SyntheticTile) -> pystac.Asset:
    """Return the asset of one band COG (href relative to the item JSON)."""
    band = BANDS[band_id]
    factor = band.resolution // 10
    a, b, c, d, e, f = tile.transform
    probability = band.kind is BandKind.PROBABILITY
    extra: dict[str, Any] = {
        "bands": [_band_entry(band_id, scene)],
        "nodata": PROBABILITY_NODATA if probability else 0,
        "data_type": "uint16" if band.is_reflectance else "uint8",
        "gsd": band.resolution,
        "proj:shape": [tile.shape[0] // factor, tile.shape[1] // factor],
        "proj:transform": [a * factor, b * factor, c, d * factor, e * factor, f],
    }
    return pystac.Asset(
        href=f"./{band_id}.tif",
        title=_title(band_id),
        media_type=COG_MEDIA_TYPE,
        roles=["data", PROBABILITY_ASSETS[band_id][1]] if probability else ["data"],
        extra_fields=extra,
    )


def build_item(
    scene: SyntheticScene, tile: SyntheticTile, platform: str, footprint: Polygon
) -> pystac.Item:
    """Return the STAC item of a scene.

    Parameters
    ----------
    scene
        The scene.
    tile
        Its tile.
    platform
        ``"sentinel-2a"`` or ``"sentinel-2b"``.
    footprint
        The tile footprint in lon/lat (densified).

    Returns
    -------
    pystac.Item
        The item, with one asset per band in the scene's convention.

    """
    a, _, c, _, e, f = tile.transform
    proj_bbox = [float(v) for v in (c, f + e * tile.shape[0], c + a * tile.shape[1], f)]
    properties: dict[str, Any] = {
        "platform": platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": round(100.0 * float(scene.cloud_fraction), 4),
        "s2:processing_baseline": scene.processing_baseline,
        "s2:mgrs_tile": tile.id,
        "grid:code": f"MGRS-{tile.id}",
        "mgrs:utm_zone": int(tile.id[:2]),
        "mgrs:latitude_band": tile.id[2],
        "mgrs:grid_square": tile.id[3:],
        "proj:code": tile.crs,
        "proj:bbox": proj_bbox,
    }
    item = pystac.Item(
        id=scene.id,
        geometry=mapping(footprint),
        bbox=[float(v) for v in footprint.bounds],
        datetime=scene.datetime,
        properties=properties,
        stac_extensions=list(ITEM_EXTENSIONS),
    )
    for band_id in SCENE_BANDS:
        item.add_asset(scene.asset_key(band_id), _asset(band_id, scene, tile))
    return item


def _summaries(scenes: Sequence[SyntheticScene], items: Sequence[pystac.Item]) -> pystac.Summaries:
    """Summaries of the collection from its items."""
    cover = [float(item.properties["eo:cloud_cover"]) for item in items]
    return pystac.Summaries(
        {
            "platform": sorted({item.properties["platform"] for item in items}),
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10, 20],
            "s2:processing_baseline": sorted({s.processing_baseline for s in scenes}),
            "proj:code": sorted({item.properties["proj:code"] for item in items}),
            "grid:code": sorted({item.properties["grid:code"] for item in items}),
            "eo:cloud_cover": {"minimum": min(cover), "maximum": max(cover)},
        }
    )


def build_catalog(
    scenes: Sequence[SyntheticScene],
    items: Sequence[pystac.Item],
    bbox: tuple[float, float, float, float],
    seed: int,
) -> pystac.Catalog:
    """Assemble catalog -> collection -> items.

    Parameters
    ----------
    scenes
        All scenes, in item order.
    items
        Their items.
    bbox
        Lon/lat extent of the archive.
    seed
        Generation seed (mentioned in the description).

    Returns
    -------
    pystac.Catalog
        The root catalog (not yet saved).

    """
    times = sorted(s.datetime for s in scenes)
    collection = pystac.Collection(
        id=COLLECTION_ID,
        title="Sentinel-2 Level-2A (synthetic)",
        description=(
            "Synthetic Sentinel-2 L2A surface reflectance with a known cloud-free truth, "
            f"generated by cloudfree.testing (seed {seed}). Not real data."
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([[float(v) for v in bbox]]),
            pystac.TemporalExtent([[times[0], times[-1]]]),
        ),
        license="CC-BY-4.0",
        summaries=_summaries(scenes, items),
    )
    collection.add_items(items)
    catalog = pystac.Catalog(
        id=CATALOG_ID,
        title="cloudfree synthetic archive",
        description="A synthetic Sentinel-2 L2A archive near Dublin for tests and demos.",
    )
    catalog.add_child(collection)
    return catalog


def item_dir(root: Path, scene_id: str) -> Path:
    """Directory of an item's JSON and COGs (pystac's default self-contained layout)."""
    return root / COLLECTION_ID / scene_id


def save_catalog(catalog: pystac.Catalog, root: Path) -> None:
    """Save a catalog self-contained under ``root`` (``root/catalog.json``, relative hrefs)."""
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)


def _absolute(href: str, base: Path) -> str:
    """Resolve a relative href against a directory."""
    if "://" in href or os.path.isabs(href):
        return href
    return os.path.normpath(base / href)


def write_item_collection(item_paths: Sequence[Path], path: Path) -> None:
    """Write a GeoJSON FeatureCollection of saved items with absolute hrefs.

    Parameters
    ----------
    item_paths
        Saved item JSON files.
    path
        Destination, e.g. ``root/items.json``.

    """
    features = []
    for item_path in item_paths:
        data = json.loads(item_path.read_text(encoding="utf-8"))
        base = item_path.parent
        for asset in data["assets"].values():
            asset["href"] = _absolute(asset["href"], base)
        for link in data.get("links", []):
            link["href"] = _absolute(link["href"], base)
        data["links"].append({"rel": "self", "href": str(item_path), "type": "application/json"})
        features.append(data)
    collection = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(collection, indent=2) + "\n", encoding="utf-8")
