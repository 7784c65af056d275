"""Sentinel-2 L2A metadata files: product (MTD_MSIL2A.xml), tile (MTD_TL.xml), AWS tileInfo.json.

Which file is which:

=====================================================  =====================================
SAFE product                                           AWS ``s3://sentinel-s2-l2a``
=====================================================  =====================================
``<product>.SAFE/MTD_MSIL2A.xml``                      ``products/Y/M/D/<product>/metadata.xml``
``<product>.SAFE/GRANULE/<granule>/MTD_TL.xml``        ``tiles/Z/B/SQ/Y/M/D/N/metadata.xml``
(no equivalent)                                        ``tiles/Z/B/SQ/Y/M/D/N/tileInfo.json``
=====================================================  =====================================

The parsers take the file's bytes (or text) and do no I/O. XML is read namespace-agnostically
(``{*}`` paths), since the ESA schema URLs differ between processing baselines. Radiometry comes
from the product file alone: ``reflectance = DN / BOA_QUANTIFICATION_VALUE + BOA_ADD_OFFSET /
BOA_QUANTIFICATION_VALUE``, where products of baseline 04.00 and later list ``BOA_ADD_OFFSET``
per band (``-1000``) and earlier ones list none (offset 0). Band numbers (``band_id`` 0-12) are
mapped to band ids (``B01``... ``B8A``... ``B12``) through the file's own
``Spectral_Information`` list, which also names B10 (cirrus; it has no L2A image).

Every problem raises :class:`~cloudfree.errors.SourceError` saying which file and what is missing.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from cloudfree.bands import canonical_band
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.mgrs import parse_tile_id
from cloudfree.radiometry import (
    Radiometry,
    baseline_from_product_id,
    format_baseline,
    parse_baseline,
)

__all__ = [
    "ProductMetadata",
    "TileGrid",
    "TileInfo",
    "TileMetadata",
    "parse_product_metadata",
    "parse_tile_info",
    "parse_tile_metadata",
]

PRODUCT_FILE = ("product metadata", "MTD_MSIL2A.xml or AWS products/.../metadata.xml")
TILE_FILE = ("tile metadata", "MTD_TL.xml or AWS tiles/.../metadata.xml")
TILE_INFO_FILE = ("AWS tile info", "tileInfo.json")
RADIOMETRY_SOURCE = "product metadata"
""":attr:`Radiometry.source` of radiometry read from MTD_MSIL2A.xml."""

_PHYSICAL_BAND = re.compile(r"^B0?(\d{1,2})(A?)$", re.IGNORECASE)
_TILE_IN_ID = re.compile(r"_T(\d{2}[C-X][A-Z]{2})(?:_|$)")
_BASELINE_IN_GRANULE_ID = re.compile(r"_N(\d{2}\.\d{2})$")
_EPSG_IN_CRS_NAME = re.compile(r"EPSG:(?:[\d.]*:)?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ProductMetadata:
    """What cloudfree needs from a Sentinel-2 L2A product's MTD_MSIL2A.xml.

    Attributes
    ----------
    product_id
        ``PRODUCT_URI`` without ``.SAFE``, e.g.
        ``"S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126"``.
    processing_baseline
        ``PROCESSING_BASELINE`` as ``"NN.NN"``.
    sensing_start
        ``PRODUCT_START_TIME``, timezone-aware UTC.
    spacecraft
        ``SPACECRAFT_NAME``, e.g. ``"Sentinel-2B"``.
    quantification_value
        ``BOA_QUANTIFICATION_VALUE`` (10000).
    add_offsets
        ``BOA_ADD_OFFSET`` in DN per band id (``"B01"``... ``"B12"``, ``"B8A"``), one entry per
        band of the ``Spectral_Information`` list; 0 where the file lists no offset.
    scl_classes
        ``Scene_Classification_List``: class index to ESA's text (``SC_VEGETATION``); empty
        where the file has none.
    cloud_cover
        ``Cloud_Coverage_Assessment`` in percent, if present.

    """

    product_id: str
    processing_baseline: str
    sensing_start: datetime
    spacecraft: str
    quantification_value: float
    add_offsets: Mapping[str, float]
    scl_classes: Mapping[int, str]
    cloud_cover: float | None

    @property
    def scale(self) -> float:
        """Reflectance per DN: ``1 / quantification_value``."""
        return 1.0 / self.quantification_value

    @property
    def offsets(self) -> Mapping[str, float]:
        """Reflectance offset per band: ``add_offset / quantification_value``."""
        return MappingProxyType(
            {band: value / self.quantification_value for band, value in self.add_offsets.items()}
        )

    @property
    def tile_id(self) -> str | None:
        """The MGRS tile in the product id (``"33XWJ"``), if it names one."""
        match = _TILE_IN_ID.search(self.product_id)
        return match.group(1) if match else None

    def radiometry(self, band: str) -> Radiometry:
        """Scale and offset of one band (``"B04"``, ``"red"``, ``"B8A"``...).

        Raises
        ------
        SourceError
            If the product does not list the band.

        """
        band_id = _band_key(band)
        if band_id not in self.add_offsets:
            raise SourceError(
                f"Product {self.product_id} lists no band {band!r}; it lists "
                f"{', '.join(self.add_offsets)}."
            )
        return Radiometry(self.scale, self.offsets[band_id], RADIOMETRY_SOURCE)


@dataclass(frozen=True)
class TileGrid:
    """One resolution's pixel grid of a tile (MTD_TL ``Size`` + ``Geoposition``).

    Attributes
    ----------
    resolution
        Nominal resolution in metres (10, 20 or 60).
    ulx, uly
        Upper-left corner of the upper-left pixel, in the tile CRS.
    nrows, ncols
        Height and width in pixels.
    xdim, ydim
        Pixel size (``ydim`` is negative: north-up).

    """

    resolution: int
    ulx: float
    uly: float
    nrows: int
    ncols: int
    xdim: float
    ydim: float

    @property
    def transform(self) -> Affine:
        """The grid's affine transform."""
        return Affine(self.xdim, 0.0, self.ulx, 0.0, self.ydim, self.uly)

    @property
    def shape(self) -> tuple[int, int]:
        """``(nrows, ncols)``."""
        return (self.nrows, self.ncols)


@dataclass(frozen=True)
class TileMetadata:
    """What cloudfree needs from a granule's MTD_TL.xml.

    Attributes
    ----------
    tile_id
        MGRS tile, e.g. ``"33XWJ"``.
    granule_id
        ``TILE_ID``, e.g. ``"S2B_OPER_MSI_L2A_TL_ESRI_..._A026649_T33XWJ_N04.00"``.
    crs
        ``HORIZONTAL_CS_CODE``, e.g. ``"EPSG:32633"``.
    sensing_time
        ``SENSING_TIME``, timezone-aware UTC.
    grids
        Pixel grid per resolution in metres.
    cloud_cover
        ``CLOUDY_PIXEL_PERCENTAGE``, if present.
    processing_baseline
        The ``_NNN.NN`` suffix of ``TILE_ID``, if present.

    """

    tile_id: str
    granule_id: str
    crs: str
    sensing_time: datetime
    grids: Mapping[int, TileGrid]
    cloud_cover: float | None
    processing_baseline: str | None

    def geobox(self, resolution: int = 10) -> GeoBox:
        """The tile's grid at one of its resolutions as an odc-geo GeoBox."""
        if resolution not in self.grids:
            raise SourceError(
                f"Tile metadata of {self.tile_id} has no {resolution} m grid; it has "
                f"{', '.join(f'{r} m' for r in sorted(self.grids))}."
            )
        grid = self.grids[resolution]
        return GeoBox(grid.shape, grid.transform, self.crs)


@dataclass(frozen=True)
class TileInfo:
    """An AWS ``tileInfo.json`` (one tile of one product in the ``sentinel-s2-l2a`` bucket).

    Attributes
    ----------
    path
        The tile's folder in the bucket, e.g. ``"tiles/19/U/DP/2017/7/29/0"``.
    tile_id
        ``utmZone`` (zero-padded) + ``latitudeBand`` + ``gridSquare``, e.g. ``"19UDP"``.
    timestamp
        Sensing time, timezone-aware UTC.
    product_name
        The product id, e.g. ``"S2A_MSIL2A_20170729T153601_N0001_R111_T19UDP_20200401T051009"``.
    product_path
        The product's folder in the bucket, if given.
    processing_baseline
        From the product name's ``_Nxxyy_`` field (``"00.01"``), or None for old names.
    data_coverage
        ``dataCoveragePercentage``, if given.
    cloud_cover
        ``cloudyPixelPercentage``, if given.
    crs
        CRS of ``tileGeometry``, e.g. ``"EPSG:32619"``.
    tile_geometry
        The full tile polygon, in ``crs``.
    data_geometry
        ``tileDataGeometry`` (where the tile has data), in its CRS, if given.

    """

    path: str
    tile_id: str
    timestamp: datetime
    product_name: str
    product_path: str | None
    processing_baseline: str | None
    data_coverage: float | None
    cloud_cover: float | None
    crs: str
    tile_geometry: Geometry
    data_geometry: Geometry | None

    def data_footprint(self) -> Geometry:
        """Where the tile has data (the whole tile if no data geometry is given), in lon/lat."""
        geometry = self.tile_geometry if self.data_geometry is None else self.data_geometry
        return geometry.to_crs("EPSG:4326", resolution=1000.0, wrapdateline=True)


def parse_product_metadata(xml: bytes | str, *, name: str | None = None) -> ProductMetadata:
    """Parse a Sentinel-2 L2A product's MTD_MSIL2A.xml (or the AWS product ``metadata.xml``).

    Parameters
    ----------
    xml
        The file's contents.
    name
        The file's name or URL, for error messages.

    Returns
    -------
    ProductMetadata
        Product id, baseline, sensing start, spacecraft, quantification and per-band offsets,
        scene classes and cloud cover.

    Raises
    ------
    SourceError
        If the document is not L2A product metadata or lacks a required element.

    """
    what = _describe(PRODUCT_FILE, name)
    root = _parse_xml(xml, what)
    if not _local(root.tag).endswith("User_Product"):
        raise SourceError(
            f"{what} is not Sentinel-2 product metadata (root element {_local(root.tag)!r}; "
            "expected Level-2A_User_Product)."
        )
    uri = _text(root, "PRODUCT_URI", what)
    bands = _spectral_bands(root, what)
    quantification = _number(_text(root, "BOA_QUANTIFICATION_VALUE", what), what)
    if quantification <= 0:
        raise SourceError(f"{what} has BOA_QUANTIFICATION_VALUE {quantification}; expected > 0.")
    cloud = _optional_text(root, "Cloud_Coverage_Assessment")
    return ProductMetadata(
        product_id=uri.removesuffix(".SAFE"),
        processing_baseline=_baseline(_text(root, "PROCESSING_BASELINE", what), what),
        sensing_start=_utc(_text(root, "PRODUCT_START_TIME", what), what),
        spacecraft=_text(root, "SPACECRAFT_NAME", what),
        quantification_value=quantification,
        add_offsets=MappingProxyType(_add_offsets(root, bands, what)),
        scl_classes=MappingProxyType(_scl_classes(root, what)),
        cloud_cover=None if cloud is None else _number(cloud, what),
    )


def parse_tile_metadata(xml: bytes | str, *, name: str | None = None) -> TileMetadata:
    """Parse a granule's MTD_TL.xml (or the AWS tile ``metadata.xml``).

    Parameters
    ----------
    xml
        The file's contents.
    name
        The file's name or URL, for error messages.

    Returns
    -------
    TileMetadata
        Tile id, CRS, sensing time, the grid of each resolution and cloud cover.

    Raises
    ------
    SourceError
        If the document is not tile metadata or lacks a required element.

    """
    what = _describe(TILE_FILE, name)
    root = _parse_xml(xml, what)
    if not _local(root.tag).endswith("Tile_ID"):
        raise SourceError(
            f"{what} is not Sentinel-2 tile metadata (root element {_local(root.tag)!r}; "
            "expected Level-2A_Tile_ID)."
        )
    granule_id = _text(root, "TILE_ID", what)
    match = _TILE_IN_ID.search(granule_id)
    if match is None:
        raise SourceError(f"{what}: TILE_ID {granule_id!r} names no MGRS tile (_Tzzbsq_).")
    baseline = _BASELINE_IN_GRANULE_ID.search(granule_id)
    cloud = _optional_text(root, "CLOUDY_PIXEL_PERCENTAGE")
    return TileMetadata(
        tile_id=match.group(1),
        granule_id=granule_id,
        crs=_text(root, "HORIZONTAL_CS_CODE", what).upper(),
        sensing_time=_utc(_text(root, "SENSING_TIME", what), what),
        grids=MappingProxyType(_tile_grids(root, what)),
        cloud_cover=None if cloud is None else _number(cloud, what),
        processing_baseline=baseline.group(1) if baseline else None,
    )


def parse_tile_info(json_text: str | bytes, *, name: str | None = None) -> TileInfo:
    """Parse an AWS ``tileInfo.json``.

    Parameters
    ----------
    json_text
        The file's contents.
    name
        The file's name or URL, for error messages.

    Returns
    -------
    TileInfo
        Path, tile id, timestamp, product name and baseline, coverage and geometries.

    Raises
    ------
    SourceError
        If the document is not JSON or lacks a required field.

    """
    what = _describe(TILE_INFO_FILE, name)
    try:
        data = json.loads(json_text)
    except ValueError as exc:
        raise SourceError(f"{what} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise SourceError(f"{what} is not a JSON object.")
    product_name = str(_field(data, "productName", what))
    crs, tile_geometry = _geojson(_field(data, "tileGeometry", what), "tileGeometry", what)
    data_geometry = None
    if data.get("tileDataGeometry"):
        _, data_geometry = _geojson(data["tileDataGeometry"], "tileDataGeometry", what)
    return TileInfo(
        path=str(_field(data, "path", what)),
        tile_id=_tile_info_id(data, what),
        timestamp=_utc(str(_field(data, "timestamp", what)), what),
        product_name=product_name,
        product_path=None if data.get("productPath") is None else str(data["productPath"]),
        processing_baseline=baseline_from_product_id(product_name),
        data_coverage=_optional_number(data, "dataCoveragePercentage", what),
        cloud_cover=_optional_number(data, "cloudyPixelPercentage", what),
        crs=crs,
        tile_geometry=tile_geometry,
        data_geometry=data_geometry,
    )


def _describe(kind: tuple[str, str], name: str | None) -> str:
    """How messages name the document: by its name if given, else by what it should be."""
    return f"{kind[0]} ({kind[1]})" if name is None else f"{kind[0]} {name}"


def _parse_xml(xml: bytes | str, what: str) -> ET.Element:
    """Parse an XML document or raise a SourceError naming it."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise SourceError(f"{what} is not well-formed XML: {exc}.") from None


def _local(tag: str) -> str:
    """An element tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _optional_text(root: ET.Element, tag: str) -> str | None:
    """The stripped text of the first element named ``tag`` anywhere below ``root``."""
    element = root.find(f".//{{*}}{tag}")
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text.strip()


def _text(root: ET.Element, tag: str, what: str) -> str:
    """Like :func:`_optional_text`, but the element is required."""
    text = _optional_text(root, tag)
    if text is None:
        raise SourceError(f"{what} has no {tag}.")
    return text


def _number(text: str, what: str) -> float:
    """Parse a number or raise a SourceError."""
    try:
        return float(text)
    except ValueError:
        raise SourceError(f"{what}: {text!r} is not a number.") from None


def _utc(text: str, what: str) -> datetime:
    """Parse an ISO 8601 time (``...Z``) to a timezone-aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SourceError(f"{what}: {text!r} is not an ISO 8601 time.") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _baseline(text: str, what: str) -> str:
    """Normalise a processing baseline to ``"NN.NN"``."""
    try:
        return format_baseline(parse_baseline(text))
    except SourceError as exc:
        raise SourceError(f"{what}: {exc}") from None


def _band_key(name: str) -> str:
    """A band id as metadata keys it (``"B1"`` -> ``"B01"``); other names via the registry."""
    match = _PHYSICAL_BAND.match(name.strip())
    if match:
        number = int(match.group(1))
        return f"B{number}A" if match.group(2) else f"B{number:02d}"
    try:
        return canonical_band(name).id
    except InvalidInputError:
        return name


def _spectral_bands(root: ET.Element, what: str) -> dict[str, str]:
    """Map the file's band numbers (``"0"``...) to band ids via ``Spectral_Information``."""
    bands: dict[str, str] = {}
    for element in root.iterfind(".//{*}Spectral_Information"):
        number, physical = element.get("bandId"), element.get("physicalBand")
        if number is None or physical is None or not _PHYSICAL_BAND.match(physical):
            raise SourceError(
                f"{what}: a Spectral_Information entry lacks a bandId or a physicalBand like "
                f"'B8A' (bandId={number!r}, physicalBand={physical!r})."
            )
        bands[number.strip()] = _band_key(physical)
    if not bands:
        raise SourceError(f"{what} has no Spectral_Information list to number its bands.")
    return bands


def _add_offsets(root: ET.Element, bands: Mapping[str, str], what: str) -> dict[str, float]:
    """``BOA_ADD_OFFSET`` per band id (0 for bands, or files, without one)."""
    offsets = dict.fromkeys(bands.values(), 0.0)
    for element in root.iterfind(".//{*}BOA_ADD_OFFSET"):
        number = (element.get("band_id") or element.get("bandId") or "").strip()
        if number not in bands:
            raise SourceError(
                f"{what}: BOA_ADD_OFFSET band_id={number!r} has no Spectral_Information entry."
            )
        offsets[bands[number]] = _number(element.text or "", what)
    return offsets


def _scl_classes(root: ET.Element, what: str) -> dict[int, str]:
    """``Scene_Classification_List`` as index -> text."""
    classes: dict[int, str] = {}
    for element in root.iterfind(".//{*}Scene_Classification_ID"):
        text = _optional_text(element, "SCENE_CLASSIFICATION_TEXT")
        index = _optional_text(element, "SCENE_CLASSIFICATION_INDEX")
        if text is None or index is None or not index.isdigit():
            raise SourceError(f"{what}: a Scene_Classification_ID lacks its text or index.")
        classes[int(index)] = text
    return classes


def _tile_grids(root: ET.Element, what: str) -> dict[int, TileGrid]:
    """Pair each ``Geoposition`` with the ``Size`` of the same resolution."""
    sizes = {
        element.get("resolution"): element for element in root.iterfind(".//{*}Size[@resolution]")
    }
    grids: dict[int, TileGrid] = {}
    for position in root.iterfind(".//{*}Geoposition[@resolution]"):
        key = position.get("resolution")
        size = sizes.get(key)
        if key is None or size is None:
            raise SourceError(f"{what}: Geoposition resolution={key!r} has no matching Size.")
        resolution = int(_number(key, what))
        grids[resolution] = TileGrid(
            resolution=resolution,
            ulx=_number(_text(position, "ULX", what), what),
            uly=_number(_text(position, "ULY", what), what),
            nrows=int(_number(_text(size, "NROWS", what), what)),
            ncols=int(_number(_text(size, "NCOLS", what), what)),
            xdim=_number(_text(position, "XDIM", what), what),
            ydim=_number(_text(position, "YDIM", what), what),
        )
    if not grids:
        raise SourceError(f"{what} has no Tile_Geocoding Geoposition.")
    return grids


def _field(data: Mapping[str, Any], key: str, what: str) -> Any:
    """A required JSON field."""
    if data.get(key) is None:
        raise SourceError(f"{what} has no {key!r}.")
    return data[key]


def _optional_number(data: Mapping[str, Any], key: str, what: str) -> float | None:
    """An optional numeric JSON field."""
    value = data.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{what}: {key} {value!r} is not a number.") from None


def _tile_info_id(data: Mapping[str, Any], what: str) -> str:
    """``utmZone`` + ``latitudeBand`` + ``gridSquare`` as a canonical tile id."""
    parts = [_field(data, key, what) for key in ("utmZone", "latitudeBand", "gridSquare")]
    try:
        return parse_tile_id(f"{int(parts[0]):02d}{parts[1]}{parts[2]}").id
    except (InvalidInputError, ValueError) as exc:
        raise SourceError(f"{what}: utmZone/latitudeBand/gridSquare {parts}: {exc}") from None


def _geojson(value: Any, key: str, what: str) -> tuple[str, Geometry]:
    """A GeoJSON geometry with a named ``crs`` (``urn:ogc:def:crs:EPSG:8.8.1:32619``)."""
    if not isinstance(value, Mapping):
        raise SourceError(f"{what}: {key} is not a GeoJSON geometry.")
    crs_name = str(value.get("crs", {}).get("properties", {}).get("name", ""))
    match = _EPSG_IN_CRS_NAME.search(crs_name)
    if match is None:
        raise SourceError(f"{what}: {key} has no EPSG crs name (got {crs_name!r}).")
    crs = f"EPSG:{match.group(1)}"
    geometry = {k: v for k, v in value.items() if k != "crs"}
    try:
        return crs, Geometry(geometry, crs)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SourceError(f"{what}: {key} is not a valid GeoJSON geometry: {exc}.") from None
