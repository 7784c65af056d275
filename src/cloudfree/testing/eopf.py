"""Small EOPF-structured Sentinel-2 L2A Zarr products, and their EOPF STAC items.

Real EOPF products cannot be downloaded in tests, so scenes of the synthetic archive are rewritten
in the EOPF layout, following the real product hierarchies where a reader depends on them
(checked against ``realdata/eopf_zarr/input_hierarchy/*T32TQM*``):

- Zarr v2 with consolidated metadata (``.zmetadata``) in plain files, blosc/zstd level 3
  bit-shuffle, ``.`` chunk-key separator;
- ``measurements/reflectance/r10m|r20m|r60m/<band>`` (uint16, fill value 0, ``scale_factor``
  0.0001, ``add_offset`` -0.1 from baseline 04.00 on, else 0) beside int64 pixel-centre ``x``/``y``
  coordinate arrays (``y`` descending); ``conditions/mask/l2a_classification/r20m|r60m/scl``
  (uint8, no fill value);
- the real attributes (``_ARRAY_DIMENSIONS``, ``_eopf_attrs``, ``proj:*`` with the WKT1 string the
  real products store under ``proj:wkt2``...) and root ``stac_discovery``/``other_metadata``,
  trimmed to identity, CRS, baseline and sensing time;
- chunking scaled down: r10m arrays in 2 x 2 chunks, coarser groups in one chunk.

DNs are the archive's own (read back from its COGs), so a Zarr read can be compared with a
GeoTIFF read of the same scene. r10m holds B02, B03, B04, B08; r20m and r60m hold B02, B03, B04
(as in real products, which have no 20/60 m B08), as means of the valid 10 m DNs; r60m SCL takes
the centre 20 m pixel of each 3 x 3 block. The STAC items follow the real EOPF STAC item
(``realdata/stac_items/eopf/*T32TNQ*``): ``B02_10m``... ``SCL_20m`` assets pointing into the
product, ``raster:scale``/``raster:offset``/``nodata`` on each asset, ``processing:version`` for
the baseline, ``proj:code``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numcodecs
import numpy as np
import pyproj
import pystac
import rasterio
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox
from zarr.storage import LocalStore

from cloudfree.bands import BANDS, canonical_band
from cloudfree.errors import InvalidInputError, OutputExistsError
from cloudfree.testing.fields import TRUTH_BANDS
from cloudfree.testing.model import (
    CONVENTION_BASELINE,
    SyntheticArchive,
    SyntheticScene,
    SyntheticTile,
)
from cloudfree.testing.stac import (
    COLLECTION_ID,
    REFLECTANCE_OFFSET,
    REFLECTANCE_SCALE,
    RELATIVE_ORBIT,
    item_id,
)

ZARR_MEDIA_TYPE = "application/vnd.zarr"
"""Media type of the reflectance and group assets of real EOPF items."""
ZARR_MEDIA_TYPE_PLUS = "application/vnd+zarr"
"""The (misspelt) media type real EOPF items give SCL, AOT and WVP assets."""
REFLECTANCE_GROUP = "measurements/reflectance"
SCL_GROUP = "conditions/mask/l2a_classification"
PRODUCT_TYPE = "S02MSIL2A"
COMPRESSOR = numcodecs.Blosc(
    cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=0
)
"""The real products' compressor: blosc, zstd, level 3, bit-shuffle, automatic block size."""
CHUNK_SPLITS: Mapping[int, int] = MappingProxyType({10: 2, 20: 1, 60: 1})
"""Chunks per side by resolution (real: 10980 px in 5490 px chunks at 10 m, one chunk coarser)."""
COARSE_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
"""Bands of the synthetic archive that real products also carry at 20 m and 60 m."""
REFLECTANCE_LEVELS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {10: TRUTH_BANDS, 20: COARSE_BANDS, 60: COARSE_BANDS}
)
SCL_LEVELS: tuple[int, ...] = (20, 60)
ITEM_EXTENSIONS: tuple[str, ...] = (
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/product/v0.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
)
"""Extensions of the real EOPF item that the written items use."""
PRODUCT_EXTENSIONS: tuple[str, ...] = (
    "https://stac-extensions.github.io/eopf/v1.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/product/v0.1.0/schema.json",
)
"""Extensions declared in a product's own ``stac_discovery`` attribute."""
_BAND_TITLES: Mapping[str, str] = MappingProxyType(
    {
        "B02": "Blue (band 2)",
        "B03": "Green (band 3)",
        "B04": "Red (band 4)",
        "B08": "NIR 1 (band 8)",
    }
)
_UINT16_MAX = 65535


@dataclass(frozen=True)
class EopfProduct:
    """One written product and its STAC item.

    Attributes
    ----------
    scene_id
        The synthetic scene it was written from.
    product_id
        ESA product name (the item id; the directory is ``<product_id>.zarr``).
    path
        The product directory.
    href
        Where the item says the product is (its local path, or a URL under a base).
    item
        The EOPF-style STAC item.

    """

    scene_id: str
    product_id: str
    path: Path
    href: str
    item: pystac.Item

    def band_href(self, band: str, resolution: int | None = None) -> str:
        """Return the href of a band array (``B04``, ``red``, ``SCL``), native or coarser."""
        return f"{self.href}/{band_path(band, resolution)}"


@dataclass(frozen=True)
class EopfArchive:
    """Products written by :func:`write_eopf_archive` and their ItemCollection."""

    root: Path
    items_path: Path
    products: tuple[EopfProduct, ...]

    def product(self, scene_id: str) -> EopfProduct:
        """Return the product written from a synthetic scene."""
        for product in self.products:
            if product.scene_id == scene_id:
                return product
        raise InvalidInputError(f"No EOPF product was written for scene {scene_id!r}.")


def band_path(band: str, resolution: int | None = None) -> str:
    """Return a band's array path inside a product.

    Parameters
    ----------
    band
        Band id or name (``"B04"``, ``"red"``, ``"SCL"``).
    resolution
        Resolution group in metres; the band's native resolution by default.

    Returns
    -------
    str
        E.g. ``"measurements/reflectance/r10m/b04"`` or
        ``"conditions/mask/l2a_classification/r20m/scl"``.

    """
    resolved = canonical_band(band)
    metres = resolved.resolution if resolution is None else resolution
    group = SCL_GROUP if resolved.categorical else REFLECTANCE_GROUP
    return f"{group}/r{metres}m/{resolved.id.lower()}"


def level_geobox(tile: SyntheticTile, metres: int) -> GeoBox:
    """Return a tile's grid at 10, 20 or 60 m: same origin, partial edge pixels kept."""
    factor = metres / 10
    a, b, c, d, e, f = tile.transform
    shape = (math.ceil(tile.shape[0] / factor), math.ceil(tile.shape[1] / factor))
    return GeoBox(shape, Affine(a * factor, b * factor, c, d * factor, e * factor, f), tile.crs)


def eopf_product_id(scene: SyntheticScene) -> str:
    """Return the ESA product name of a scene (``S2A_MSIL2A_<sensing>_N0400_R080_T29UPV_...``)."""
    platform = str(_source_item(scene).properties["platform"])
    return item_id(
        scene.tile_id, CONVENTION_BASELINE, platform, scene.datetime, scene.processing_baseline
    )


def write_eopf_product(
    scene: SyntheticScene,
    archive: SyntheticArchive,
    path: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    chunk_splits: Mapping[int, int] = CHUNK_SPLITS,
) -> EopfProduct:
    """Write one scene as an EOPF Zarr product and build its STAC item.

    Parameters
    ----------
    scene
        A scene of ``archive``.
    archive
        The synthetic archive (its COGs hold the DNs, its items the footprint and cloud cover).
    path
        The product directory, conventionally ``<dir>/<product id>.zarr``; replaced if it holds
        a Zarr product.
    base_url
        If given, the item's hrefs are ``<base_url>/<directory name>/...`` (for a copy served
        over HTTP or S3); else the absolute local path.
    chunk_splits
        Chunks per side by resolution in metres.

    Returns
    -------
    EopfProduct
        The product and its item.

    Raises
    ------
    OutputExistsError
        If ``path`` is a non-empty directory that is not a Zarr product.

    """
    target = _prepare_product_dir(Path(path))
    tile = archive.tile(scene.tile_id)
    source = _source_item(scene)
    product_id = eopf_product_id(scene)
    root = zarr.open_group(
        LocalStore(target),
        mode="w",
        zarr_format=2,
        attributes=_root_attributes(scene, tile, source, product_id),
    )
    _write_reflectance(root, scene, tile, chunk_splits)
    _write_scl(root, scene, tile, chunk_splits)
    _consolidate(target)
    href = f"{base_url.rstrip('/')}/{target.name}" if base_url else str(target)
    item = build_eopf_item(scene, tile, source, product_id, href)
    return EopfProduct(scene.id, product_id, target, href, item)


def write_eopf_archive(
    archive: SyntheticArchive,
    root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    scene_ids: Iterable[str] | None = None,
    chunk_splits: Mapping[int, int] = CHUNK_SPLITS,
) -> EopfArchive:
    """Write one EOPF product per scene and an ItemCollection of their STAC items.

    Parameters
    ----------
    archive
        The synthetic archive.
    root
        Output directory: ``<product id>.zarr`` per scene and ``items.json``.
    base_url
        Base URL the directory will be served from (see :func:`write_eopf_product`).
    scene_ids
        Only these scenes (all by default).
    chunk_splits
        Chunks per side by resolution in metres.

    Returns
    -------
    EopfArchive
        The products and the ItemCollection path.

    """
    directory = Path(root).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    products = []
    for scene in _select_scenes(archive, scene_ids):
        path = directory / f"{eopf_product_id(scene)}.zarr"
        products.append(
            write_eopf_product(scene, archive, path, base_url=base_url, chunk_splits=chunk_splits)
        )
    items_path = directory / "items.json"
    collection = pystac.ItemCollection([p.item for p in products])
    text = json.dumps(collection.to_dict(transform_hrefs=False), indent=2) + "\n"
    items_path.write_text(text, encoding="utf-8")
    return EopfArchive(directory, items_path, tuple(products))


def build_eopf_item(
    scene: SyntheticScene,
    tile: SyntheticTile,
    source: pystac.Item,
    product_id: str,
    href: str,
) -> pystac.Item:
    """Return the EOPF STAC item of a product, modelled on the real EOPF STAC item.

    Parameters
    ----------
    scene
        The scene.
    tile
        Its tile.
    source
        The scene's item in the synthetic archive (footprint, platform, cloud cover).
    product_id
        The product name (item id).
    href
        The product's location (asset hrefs point inside it).

    Returns
    -------
    pystac.Item
        The item.

    """
    when = scene.datetime.astimezone(UTC)
    properties: dict[str, Any] = {
        "gsd": 10.0,
        "mission": "Sentinel-2",
        "platform": source.properties["platform"],
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "start_datetime": _stac_time(when),
        "end_datetime": _stac_time(when),
        "eo:cloud_cover": source.properties["eo:cloud_cover"],
        "processing:level": "L2A",
        "processing:version": scene.processing_baseline,
        "product:type": PRODUCT_TYPE,
        "proj:code": tile.crs,
        # The real EOPF item puts the lon/lat bbox under proj:bbox; mirrored on purpose.
        "proj:bbox": list(source.bbox or []),
        "grid:code": f"MGRS-{tile.id}",
        "mgrs:utm_zone": int(tile.id[:2]),
        "mgrs:latitude_band": tile.id[2],
        "mgrs:grid_square": tile.id[3:],
        "sat:relative_orbit": RELATIVE_ORBIT,
        "sat:orbit_state": "descending",
    }
    item = pystac.Item(
        id=product_id,
        geometry=source.geometry,
        bbox=source.bbox,
        datetime=when,
        properties=properties,
        stac_extensions=list(ITEM_EXTENSIONS),
        collection=COLLECTION_ID,
    )
    for key, asset in _assets(scene, href).items():
        item.add_asset(key, asset)
    return item


def _source_item(scene: SyntheticScene) -> pystac.Item:
    """The scene's item in the synthetic archive."""
    return pystac.Item.from_file(str(scene.item_path))


def _select_scenes(
    archive: SyntheticArchive, scene_ids: Iterable[str] | None
) -> list[SyntheticScene]:
    """The archive's scenes, or those named, in archive order; unknown ids are an error."""
    if scene_ids is None:
        return list(archive.scenes)
    wanted = set(scene_ids)
    unknown = wanted - {s.id for s in archive.scenes}
    if unknown:
        raise InvalidInputError(f"No scenes {sorted(unknown)} in the synthetic archive.")
    return [s for s in archive.scenes if s.id in wanted]


def _prepare_product_dir(path: Path) -> Path:
    """Resolve the product directory, refusing to replace anything but a Zarr product."""
    path = path.resolve()
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not _is_zarr(path))):
        raise OutputExistsError(f"{path} exists and is not a Zarr product; choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _is_zarr(path: Path) -> bool:
    return (path / ".zgroup").is_file() or (path / "zarr.json").is_file()


def _scale_offset(scene: SyntheticScene) -> tuple[float, float]:
    return REFLECTANCE_SCALE, (REFLECTANCE_OFFSET if scene.offset_applied else 0.0)


def _write_reflectance(
    root: zarr.Group, scene: SyntheticScene, tile: SyntheticTile, chunk_splits: Mapping[int, int]
) -> None:
    """Write every reflectance resolution group: the archive's DNs and their block means."""
    scale, offset = _scale_offset(scene)
    native = {band: _read_cog(scene.band_path(band)) for band in TRUTH_BANDS}
    for metres, bands in REFLECTANCE_LEVELS.items():
        gbox = level_geobox(tile, metres)
        group = _resolution_group(root, REFLECTANCE_GROUP, metres, gbox)
        for band in bands:
            data = _block_mean(native[band], metres // BANDS[band].resolution)
            attrs = _reflectance_attributes(band, scale, offset, gbox)
            _write_array(
                group, band.lower(), data, _chunks(gbox, metres, chunk_splits), attrs, fill=0
            )


def _write_scl(
    root: zarr.Group, scene: SyntheticScene, tile: SyntheticTile, chunk_splits: Mapping[int, int]
) -> None:
    """Write the SCL groups: the archive's 20 m classes and their 60 m centre samples."""
    native = _read_cog(scene.band_path("SCL"))
    for metres in SCL_LEVELS:
        gbox = level_geobox(tile, metres)
        group = _resolution_group(root, SCL_GROUP, metres, gbox)
        data = _centre_sample(native, metres // BANDS["SCL"].resolution)
        attrs = {**_layer_attributes(), **_proj_attributes(gbox)}
        _write_array(group, "scl", data, _chunks(gbox, metres, chunk_splits), attrs, fill=None)


def _read_cog(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.asarray(src.read(1))


def _block_mean(dn: np.ndarray, factor: int) -> np.ndarray:
    """Mean of the valid (non-zero) DNs of each ``factor`` x ``factor`` block; 0 where none."""
    if factor == 1:
        return dn
    ny, nx = (math.ceil(n / factor) for n in dn.shape)
    padded = np.zeros((ny * factor, nx * factor), dtype=np.float64)
    padded[: dn.shape[0], : dn.shape[1]] = dn
    blocks = padded.reshape(ny, factor, nx, factor)
    count = (blocks > 0).sum(axis=(1, 3))
    total = blocks.sum(axis=(1, 3))
    mean = np.rint(np.divide(total, count, out=np.zeros_like(total), where=count > 0))
    return np.clip(mean, 0, _UINT16_MAX).astype(np.uint16)


def _centre_sample(classes: np.ndarray, factor: int) -> np.ndarray:
    """The pixel at the centre of each ``factor`` x ``factor`` block (nearest for classes)."""
    rows, cols = (
        np.minimum(np.arange(math.ceil(n / factor)) * factor + factor // 2, n - 1)
        for n in classes.shape
    )
    return classes[np.ix_(rows, cols)]


def _chunks(gbox: GeoBox, metres: int, chunk_splits: Mapping[int, int]) -> tuple[int, int]:
    splits = chunk_splits.get(metres, 1)
    ny, nx = gbox.shape.yx
    return math.ceil(ny / splits), math.ceil(nx / splits)


def _resolution_group(root: zarr.Group, parent: str, metres: int, gbox: GeoBox) -> zarr.Group:
    """Create ``<parent>/r<metres>m`` with its int64 pixel-centre ``x``/``y`` coordinates."""
    group = root.require_group(f"{parent}/r{metres}m")
    affine = gbox.affine
    ny, nx = gbox.shape.yx
    x = affine.c + affine.a * (np.arange(nx) + 0.5)
    y = affine.f + affine.e * (np.arange(ny) + 0.5)
    for name, values in (("x", x), ("y", y)):
        coords = np.rint(values).astype("<i8")
        _write_array(group, name, coords, coords.shape, {"_ARRAY_DIMENSIONS": [name]}, fill=None)
    return group


def _write_array(
    group: zarr.Group,
    name: str,
    data: np.ndarray,
    chunks: tuple[int, ...],
    attributes: Mapping[str, Any],
    *,
    fill: int | None,
) -> None:
    """Write one Zarr v2 array with the real products' encoding (``fill`` ``None``: no fill)."""
    array = group.create_array(
        name,
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        fill_value=fill,
        compressors=COMPRESSOR,
        attributes=dict(attributes),
    )
    array[...] = data


def _layer_attributes() -> dict[str, Any]:
    """Attributes every EOPF 2-D layer has."""
    return {
        "_ARRAY_DIMENSIONS": ["y", "x"],
        "_eopf_attrs": {"coordinates": ["x", "y"], "dimensions": ["y", "x"]},
    }


def _reflectance_attributes(
    band_id: str, scale: float, offset: float, gbox: GeoBox
) -> dict[str, Any]:
    """A reflectance array's attributes, as the real products write them."""
    wavelength = BANDS[band_id].center_wavelength or 0.0
    encoding: dict[str, Any] = {
        "add_offset": offset,
        "dtype": "<u2",
        "fill_value": 0,
        "long_name": (
            f"BOA reflectance from MSI acquisition at spectral band {band_id.lower()} "
            f"{wavelength * 1000:g} nm"
        ),
        "scale_factor": scale,
        "units": "digital_counts",
    }
    layer = _layer_attributes()
    layer["_eopf_attrs"].update(encoding, eopf_is_masked=True, eopf_target_dtype="<f8")
    return {
        **layer,
        **encoding,
        **_proj_attributes(gbox),
        "valid_max": _UINT16_MAX,
        "valid_min": 1,
    }


def _proj_attributes(gbox: GeoBox) -> dict[str, Any]:
    """``proj:*`` attributes of a layer (the real products store WKT1 under ``proj:wkt2``)."""
    crs = pyproj.CRS.from_user_input(str(gbox.crs))
    x0, y0, x1, y1 = gbox.extent.boundingbox
    a = gbox.affine
    return {
        "proj:bbox": [x0, y0, x1, y1],
        "proj:epsg": crs.to_epsg(),
        "proj:shape": list(gbox.shape.yx),
        "proj:transform": [a.a, a.b, a.c, a.d, a.e, a.f, 0.0, 0.0, 1.0],
        "proj:wkt2": crs.to_wkt("WKT1_GDAL"),
    }


def _root_attributes(
    scene: SyntheticScene, tile: SyntheticTile, source: pystac.Item, product_id: str
) -> dict[str, Any]:
    """Root ``stac_discovery`` and ``other_metadata``, trimmed to what identifies the product."""
    crs = pyproj.CRS.from_user_input(tile.crs)
    when = scene.datetime.astimezone(UTC)
    processed = datetime.strptime(product_id.rsplit("_", 1)[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    native = level_geobox(tile, 10)
    properties: dict[str, Any] = {
        "bands": [_discovery_band(band) for band in TRUTH_BANDS],
        "constellation": "sentinel-2",
        "created": processed.isoformat(),
        "datetime": None,
        "start_datetime": when.isoformat(),
        "end_datetime": when.isoformat(),
        "eo:cloud_cover": source.properties["eo:cloud_cover"],
        "eopf:baseline": scene.processing_baseline,
        "instrument": "msi",
        "platform": source.properties["platform"],
        "processing:level": "L2A",
        "product:type": PRODUCT_TYPE,
        "proj:bbox": list(native.extent.boundingbox),
        "proj:epsg": crs.to_epsg(),
        "sat:relative_orbit": RELATIVE_ORBIT,
    }
    return {
        "other_metadata": {
            "eopf_category": "eoproduct",
            "horizontal_CRS_code": tile.crs,
            "horizontal_CRS_name": crs.name.replace("WGS 84", "WGS84"),
            "mean_sensing_time": _stac_time(when),
        },
        "stac_discovery": {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": list(PRODUCT_EXTENSIONS),
            "id": f"{product_id}.SAFE",
            "bbox": list(source.bbox or []),
            "geometry": source.geometry,
            "links": [{"href": "./.zattrs.json", "rel": "self", "type": "application/json"}],
            "properties": properties,
        },
    }


def _discovery_band(band_id: str) -> dict[str, Any]:
    """A ``stac_discovery`` band entry (centre wavelength in nm, width in micrometres)."""
    band = BANDS[band_id]
    return {
        "center_wavelength": round((band.center_wavelength or 0.0) * 1000, 1),
        "common_name": band.common_name,
        "full_width_half_max": band.full_width_half_max,
        "name": band_id.lower(),
    }


def _consolidate(path: Path) -> None:
    """Write ``.zmetadata`` as Zarr v2 consolidates it: every metadata document under its key."""
    names = (".zgroup", ".zattrs", ".zarray")
    metadata = {
        file.relative_to(path).as_posix(): json.loads(file.read_text(encoding="utf-8"))
        for file in sorted(path.rglob(".z*"))
        if file.name in names
    }
    document = {"metadata": metadata, "zarr_consolidated_format": 1}
    (path / ".zmetadata").write_text(json.dumps(document, indent=4) + "\n", encoding="utf-8")


def _assets(scene: SyntheticScene, href: str) -> dict[str, pystac.Asset]:
    """The item's assets, keyed and typed as in the real EOPF item."""
    scale, offset = _scale_offset(scene)
    assets: dict[str, pystac.Asset] = {}
    for metres, bands in REFLECTANCE_LEVELS.items():
        assets[f"SR_{metres}m"] = _group_asset(href, metres, bands)
    for band in TRUTH_BANDS:
        assets[f"{band}_10m"] = _band_asset(href, band, scale, offset)
    assets["SCL_20m"] = pystac.Asset(
        href=f"{href}/{band_path('SCL')}",
        title="Scene classification map (SCL)",
        description="scene classification map at 20m",
        media_type=ZARR_MEDIA_TYPE_PLUS,
        roles=["data"],
        extra_fields={
            "gsd": 20,
            "nodata": 0,
            "data_type": "uint8",
            "raster:scale": 1,
            "raster:offset": 0,
        },
    )
    assets["product"] = pystac.Asset(
        href=href,
        title="EOPF Product",
        description="The full Zarr store of the EOPF product",
        media_type=ZARR_MEDIA_TYPE,
        roles=["data", "metadata"],
    )
    assets["product_metadata"] = pystac.Asset(
        href=f"{href}/.zmetadata",
        title="Consolidated Metadata",
        description="Consolidated metadata of the EOPF product",
        media_type="application/json",
        roles=["metadata"],
    )
    return assets


def _stac_band(band_id: str) -> dict[str, Any]:
    """A STAC 1.1 ``bands`` entry as the real EOPF item writes it."""
    band = BANDS[band_id]
    return {
        "name": band_id,
        "description": _BAND_TITLES[band_id],
        "eo:common_name": band.common_name,
        "eo:center_wavelength": band.center_wavelength,
        "eo:full_width_half_max": band.full_width_half_max,
    }


def _band_asset(href: str, band_id: str, scale: float, offset: float) -> pystac.Asset:
    """One reflectance band asset, scale and offset on the asset (raster v2)."""
    band = BANDS[band_id]
    wavelength = (band.center_wavelength or 0.0) * 1000
    return pystac.Asset(
        href=f"{href}/{band_path(band_id)}",
        title=f"{_BAND_TITLES[band_id]} - {band.resolution}m",
        description=(
            f"BOA reflectance from MSI acquisition at spectral band {band_id[1:]} {wavelength:g} nm"
        ),
        media_type=ZARR_MEDIA_TYPE,
        roles=["data", "reflectance"],
        extra_fields={
            "gsd": band.resolution,
            "bands": [_stac_band(band_id)],
            "nodata": 0,
            "data_type": "uint16",
            "raster:scale": scale,
            "raster:offset": offset,
        },
    )


def _group_asset(href: str, metres: int, bands: Sequence[str]) -> pystac.Asset:
    """A resolution group asset (``SR_10m``...)."""
    return pystac.Asset(
        href=f"{href}/{REFLECTANCE_GROUP}/r{metres}m",
        title=f"Surface Reflectance - {metres}m",
        media_type=ZARR_MEDIA_TYPE,
        roles=["data", "reflectance", "dataset"],
        extra_fields={"gsd": metres, "bands": [_stac_band(b) for b in bands]},
    )


def _stac_time(when: datetime) -> str:
    """``2025-11-13T10:23:11.024000Z`` style."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
