"""The synthetic archive written again as ESA SAFE products and in the AWS tile layout.

Both layouts carry the same scenes, DNs and radiometry as the archive's COGs, so sources that read
SAFE folders or the ``s3://sentinel-s2-l2a`` layout can be tested against the same truth:

SAFE (Copernicus) -- one folder per scene::

    <product id>.SAFE/MTD_MSIL2A.xml
    <product id>.SAFE/GRANULE/L2A_T<tile>_A<orbit>_<sensing>/MTD_TL.xml
    <product id>.SAFE/GRANULE/.../IMG_DATA/R10m/T<tile>_<sensing>_B02_10m.jp2   (B02 B03 B04 B08)
    <product id>.SAFE/GRANULE/.../IMG_DATA/R20m/T<tile>_<sensing>_SCL_20m.jp2

AWS ``sentinel-s2-l2a`` -- zone, month and day not zero-padded, ``n`` the sequence (always 0)::

    tiles/<zone>/<band>/<square>/<yyyy>/<m>/<d>/<n>/R10m/B02.jp2 ... R20m/SCL.jp2
    tiles/.../<n>/metadata.xml       (granule metadata, = MTD_TL.xml)
    tiles/.../<n>/tileInfo.json
    products/<yyyy>/<m>/<d>/<product id>/metadata.xml   (product metadata, = MTD_MSIL2A.xml)

Product ids follow ESA's naming (``S2A_MSIL2A_<sensing>_N<baseline>_R<orbit>_T<tile>_<processing
time>``) with the relative orbit of the archive's STAC items. The XML is modelled on the real
baseline 04.00 MTD_MSIL2A.xml and MTD_TL.xml, trimmed to what readers use (no angle grids,
spectral response curves, GIPP lists, QI masks or datastrip metadata); ``BOA_ADD_OFFSET`` (-1000)
is listed exactly for scenes whose DNs carry the offset, as in real products of baseline 04.00 and
later. Images are lossless JPEG 2000 (OpenJPEG, ``REVERSIBLE=YES``), georeferenced in the tile's
UTM CRS like the real files, without a declared nodata value (DN 0 is nodata). Absolute orbit
numbers and the processing centre (``SYNT``) are made up.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import shapely
import shapely.affinity
from affine import Affine
from rasterio.io import MemoryFile
from shapely.geometry import Polygon, box, mapping

from cloudfree.bands import BANDS, SclClass
from cloudfree.mgrs import parse_tile_id
from cloudfree.testing.fields import TRUTH_BANDS
from cloudfree.testing.model import (
    CONVENTION_BASELINE,
    SyntheticArchive,
    SyntheticScene,
    SyntheticTile,
)
from cloudfree.testing.render import DN_OFFSET, DN_SCALE
from cloudfree.testing.stac import RELATIVE_ORBIT, item_id

__all__ = ["write_aws_tile_layout", "write_safe_products"]

PRODUCT_NAMESPACE = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
TILE_NAMESPACE = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
PROCESSING_CENTRE = "SYNT"
"""Four-letter processing-centre code in datastrip and granule ids (real ones: VGS1, 2APS...)."""
JP2_OPTIONS: Mapping[str, str] = {"QUALITY": "100", "REVERSIBLE": "YES"}
"""Lossless JPEG 2000: the DNs read back exactly."""
WRITERS = 4
"""Scenes encoded in parallel (OpenJPEG releases the GIL)."""

SAFE_BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
)  # fmt: skip
"""The MSI bands in ``bandId`` order (0-12), as ``Spectral_Information`` numbers them."""
B10_SPECTRAL = ("B10", 60, 1337.0, 1412.0, 1373.5)
"""The cirrus band (no L2A image, so not in the band registry), as S2A products list it."""
SCL_TEXTS: Mapping[SclClass, str] = {
    SclClass.NO_DATA: "SC_NODATA",
    SclClass.SATURATED_OR_DEFECTIVE: "SC_SATURATED_DEFECTIVE",
    SclClass.DARK_AREA_PIXELS: "SC_DARK_FEATURE_SHADOW",
    SclClass.CLOUD_SHADOWS: "SC_CLOUD_SHADOW",
    SclClass.VEGETATION: "SC_VEGETATION",
    SclClass.NOT_VEGETATED: "SC_NOT_VEGETATED",
    SclClass.WATER: "SC_WATER",
    SclClass.UNCLASSIFIED: "SC_UNCLASSIFIED",
    SclClass.CLOUD_MEDIUM_PROBABILITY: "SC_CLOUD_MEDIUM_PROBA",
    SclClass.CLOUD_HIGH_PROBABILITY: "SC_CLOUD_HIGH_PROBA",
    SclClass.THIN_CIRRUS: "SC_THIN_CIRRUS",
    SclClass.SNOW: "SC_SNOW_ICE",
}
"""ESA's ``Scene_Classification_List`` texts."""
ORBITS_PER_DAY = 143 / 10
"""Sentinel-2 repeats its 143 orbits every 10 days."""
ORBIT_ANCHORS: Mapping[str, tuple[date, int]] = {
    "sentinel-2a": (date(2022, 4, 1), 35382),
    "sentinel-2b": (date(2022, 4, 13), 26649),
}
"""Absolute orbits of two real acquisitions in shared/realdata (S2A 2022-04-01 over 34L, S2B
2022-04-13 over 33XWJ); other dates are extrapolated, so orbit numbers are only plausible."""


def _spectral_information(band_id: str) -> tuple[str, int, float, float, float]:
    """``Spectral_Information`` of a band: physical name (``B1``), resolution, min/max/centre nm."""
    if band_id == "B10":
        return B10_SPECTRAL
    band = BANDS[band_id]
    centre, width = band.center_wavelength, band.full_width_half_max
    if centre is None or width is None:
        raise ValueError(f"{band_id} has no wavelength.")
    physical = "B" + band_id.removeprefix("B").lstrip("0")
    low, high = (round(1000 * (centre + sign * width / 2), 1) for sign in (-1, 1))
    return physical, band.resolution, low, high, round(1000 * centre, 1)


@dataclass(frozen=True)
class _Raster:
    """One band of one scene as read from the archive's COG."""

    band: str
    resolution: int
    array: np.ndarray
    crs: str
    transform: Affine


@dataclass(frozen=True)
class _Names:
    """ESA identifiers of one scene's product, granule and datastrip."""

    product_id: str
    tile: str
    spacecraft: str
    satellite: str
    orbit: int
    sensing: datetime
    processed: datetime
    baseline: str

    @property
    def granule_dir(self) -> str:
        """``L2A_T<tile>_A<orbit>_<sensing>``, the granule folder in a SAFE."""
        return f"L2A_T{self.tile}_A{self.orbit:06d}_{_compact(self.sensing)}"

    @property
    def image_prefix(self) -> str:
        """``T<tile>_<sensing>``, the start of every image file name in a SAFE."""
        return f"T{self.tile}_{_compact(self.sensing)}"

    @property
    def datastrip_id(self) -> str:
        """``S2A_OPER_MSI_L2A_DS_<centre>_<processed>_S<sensing>_N<baseline>``."""
        return (
            f"{self.satellite}_OPER_MSI_L2A_DS_{PROCESSING_CENTRE}_{_compact(self.processed)}"
            f"_S{_compact(self.sensing)}_N{self.baseline}"
        )

    def granule_id(self, level: str = "L2A") -> str:
        """``S2A_OPER_MSI_<level>_TL_<centre>_<processed>_A<orbit>_T<tile>_N<baseline>``."""
        return (
            f"{self.satellite}_OPER_MSI_{level}_TL_{PROCESSING_CENTRE}_{_compact(self.processed)}"
            f"_A{self.orbit:06d}_T{self.tile}_N{self.baseline}"
        )


@dataclass(frozen=True)
class _Product:
    """Everything both layouts write for one scene."""

    names: _Names
    rasters: tuple[_Raster, ...]
    product_xml: bytes
    tile_xml: bytes
    tile_info: dict[str, Any]


def write_safe_products(archive: SyntheticArchive, root: str | os.PathLike[str]) -> list[Path]:
    """Write every scene of the archive as a SAFE product folder.

    Parameters
    ----------
    archive
        A generated archive (its COGs and item JSON are read).
    root
        Directory to write ``<product id>.SAFE`` folders into (created if needed; files of the
        same products are overwritten).

    Returns
    -------
    list of pathlib.Path
        The ``.SAFE`` folders, in ``archive.scenes`` order.

    """
    base = Path(root)
    return _write_all(archive, lambda product: _write_safe(product, base))


def write_aws_tile_layout(
    archive: SyntheticArchive,
    root: str | os.PathLike[str],
    bucket_dir: str = "sentinel-s2-l2a",
) -> list[Path]:
    """Write every scene of the archive in the AWS ``sentinel-s2-l2a`` bucket layout.

    Parameters
    ----------
    archive
        A generated archive (its COGs and item JSON are read).
    root
        Directory holding the bucket folder.
    bucket_dir
        Name of the bucket folder under ``root``.

    Returns
    -------
    list of pathlib.Path
        The tile folders (``.../tiles/29/U/PV/2021/11/3/0``), in ``archive.scenes`` order.

    """
    bucket = Path(root) / bucket_dir
    return _write_all(archive, lambda product: _write_aws(product, bucket))


def _write_all(archive: SyntheticArchive, write: Callable[[_Product], Path]) -> list[Path]:
    """Build each scene's product and write it, scenes in parallel."""

    def one(scene: SyntheticScene) -> Path:
        return write(_build_product(archive, scene))

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return list(pool.map(one, archive.scenes))


def _write_safe(product: _Product, root: Path) -> Path:
    """Write one product as ``<product id>.SAFE``."""
    safe = root / f"{product.names.product_id}.SAFE"
    granule = safe / "GRANULE" / product.names.granule_dir
    for raster in product.rasters:
        name = f"{product.names.image_prefix}_{raster.band}_{raster.resolution}m.jp2"
        _write_jp2(granule / "IMG_DATA" / f"R{raster.resolution}m" / name, raster)
    (safe / "MTD_MSIL2A.xml").write_bytes(product.product_xml)
    (granule / "MTD_TL.xml").write_bytes(product.tile_xml)
    return safe


def _write_aws(product: _Product, bucket: Path) -> Path:
    """Write one product's tile folder and product ``metadata.xml`` in the AWS layout."""
    tile_dir = bucket / product.tile_info["path"]
    for raster in product.rasters:
        _write_jp2(tile_dir / f"R{raster.resolution}m" / f"{raster.band}.jp2", raster)
    (tile_dir / "metadata.xml").write_bytes(product.tile_xml)
    text = json.dumps(product.tile_info, indent=2) + "\n"
    (tile_dir / "tileInfo.json").write_text(text, encoding="utf-8")
    product_dir = bucket / product.tile_info["productPath"]
    product_dir.mkdir(parents=True, exist_ok=True)
    (product_dir / "metadata.xml").write_bytes(product.product_xml)
    return tile_dir


def _write_jp2(path: Path, raster: _Raster) -> None:
    """Write one band as a lossless, georeferenced JPEG 2000."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = raster.array.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": raster.array.dtype.name,
        "crs": raster.crs,
        "transform": raster.transform,
    }
    with MemoryFile() as memfile, memfile.open(**profile) as dataset:
        dataset.write(raster.array, 1)
        rasterio.shutil.copy(dataset, str(path), driver="JP2OpenJPEG", **JP2_OPTIONS)


def _build_product(archive: SyntheticArchive, scene: SyntheticScene) -> _Product:
    """Read one scene's COGs and build its metadata."""
    names = _names(scene)
    rasters = tuple(_read(scene, band) for band in (*TRUTH_BANDS, "SCL"))
    valid = rasters[0].array > 0
    product_xml = _product_xml(scene, names, archive.tile(scene.tile_id))
    tile_xml = _tile_xml(scene, names, rasters, valid)
    return _Product(
        names=names,
        rasters=rasters,
        product_xml=product_xml,
        tile_xml=tile_xml,
        tile_info=_tile_info(scene, names, rasters[0], valid),
    )


def _read(scene: SyntheticScene, band: str) -> _Raster:
    """Read one band's COG."""
    with rasterio.open(scene.band_path(band)) as dataset:
        return _Raster(
            band=band,
            resolution=BANDS[band].resolution,
            array=dataset.read(1),
            crs=str(dataset.crs),
            transform=dataset.transform,
        )


def _names(scene: SyntheticScene) -> _Names:
    """ESA names of a scene's product (platform read from its STAC item)."""
    item = json.loads(scene.item_path.read_text(encoding="utf-8"))
    platform = str(item["properties"]["platform"])
    product_id = item_id(
        scene.tile_id, CONVENTION_BASELINE, platform, scene.datetime, scene.processing_baseline
    )
    processed = datetime.strptime(product_id.rsplit("_", 1)[1], "%Y%m%dT%H%M%S")
    anchor_day, anchor_orbit = ORBIT_ANCHORS[platform]
    orbit = anchor_orbit + round((scene.datetime.date() - anchor_day).days * ORBITS_PER_DAY)
    return _Names(
        product_id=product_id,
        tile=scene.tile_id,
        spacecraft="Sentinel-2" + platform[-1].upper(),
        satellite=product_id[:3],
        orbit=orbit,
        sensing=scene.datetime,
        processed=processed.replace(tzinfo=UTC),
        baseline=scene.processing_baseline,
    )


def _compact(when: datetime) -> str:
    """``20211103T114521``."""
    return f"{when:%Y%m%dT%H%M%S}"


def _iso_ms(when: datetime) -> str:
    """``2021-11-03T11:45:21.000Z`` (millisecond precision, as ESA and AWS write)."""
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _iso_us(when: datetime) -> str:
    """``2021-11-03T11:45:21.000000Z`` (microsecond precision)."""
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


def _number(value: float) -> str:
    """A coordinate as ESA writes it: ``499980`` for whole numbers."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sub(parent: ET.Element, tag: str, text: object = None, **attributes: str) -> ET.Element:
    """Append a child element (namespace prefixes are written literally, e.g. ``n1:...``)."""
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = str(text)
    return element


def _document(tag: str, namespace: str) -> ET.Element:
    """The root element of an ESA metadata file, namespace ``n1``."""
    return ET.Element(
        f"n1:{tag}",
        {
            "xmlns:n1": namespace,
            "xmlns:xsi": XSI_NAMESPACE,
            "xsi:schemaLocation": namespace,
        },
    )


def _serialise(root: ET.Element) -> bytes:
    """Indented UTF-8 XML with a declaration."""
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _product_xml(scene: SyntheticScene, names: _Names, tile: SyntheticTile) -> bytes:
    """MTD_MSIL2A.xml of a scene."""
    root = _document("Level-2A_User_Product", PRODUCT_NAMESPACE)
    general = _sub(root, "n1:General_Info")
    _product_info(_sub(general, "Product_Info"), names)
    _image_characteristics(_sub(general, "Product_Image_Characteristics"), scene)
    geometric = _sub(root, "n1:Geometric_Info")
    footprint = _sub(_sub(geometric, "Product_Footprint"), "Product_Footprint")
    ring = tile.footprint().exterior.coords
    positions = " ".join(f"{lat!r} {lon!r}" for lon, lat in ring)
    _sub(_sub(footprint, "Global_Footprint"), "EXT_POS_LIST", positions + " ")
    _sub(geometric, "RASTER_CS_TYPE", "POINT")
    _sub(geometric, "PIXEL_ORIGIN", 1)
    crs = _sub(geometric, "Coordinate_Reference_System")
    _sub(crs, "GEO_TABLES", "EPSG", version="1")
    _sub(crs, "HORIZONTAL_CS_TYPE", "GEOGRAPHIC")
    quality = _sub(root, "n1:Quality_Indicators_Info")
    _sub(quality, "Cloud_Coverage_Assessment", f"{100 * scene.cloud_fraction:.6f}")
    return _serialise(root)


def _product_info(info: ET.Element, names: _Names) -> None:
    """``Product_Info``: times, ids, the datatake and the granule's image files."""
    _sub(info, "PRODUCT_START_TIME", _iso_ms(names.sensing))
    _sub(info, "PRODUCT_STOP_TIME", _iso_ms(names.sensing))
    _sub(info, "PRODUCT_URI", f"{names.product_id}.SAFE")
    _sub(info, "PROCESSING_LEVEL", "Level-2A")
    _sub(info, "PRODUCT_TYPE", "S2MSI2A")
    _sub(info, "PROCESSING_BASELINE", names.baseline)
    _sub(info, "GENERATION_TIME", _iso_us(names.processed))
    _sub(info, "PREVIEW_IMAGE_URL", "Not applicable")
    _sub(info, "PREVIEW_GEO_INFO", "Not applicable")
    datatake_id = (
        f"G{names.satellite}_{_compact(names.sensing)}_{names.orbit:06d}_N{names.baseline}"
    )
    datatake = _sub(info, "Datatake", datatakeIdentifier=datatake_id)
    _sub(datatake, "SPACECRAFT_NAME", names.spacecraft)
    _sub(datatake, "DATATAKE_TYPE", "INS-NOBS")
    _sub(datatake, "DATATAKE_SENSING_START", _iso_ms(names.sensing))
    _sub(datatake, "SENSING_ORBIT_NUMBER", RELATIVE_ORBIT)
    _sub(datatake, "SENSING_ORBIT_DIRECTION", "DESCENDING")
    _sub(_sub(info, "Query_Options", completeSingleTile="true"), "PRODUCT_FORMAT", "SAFE_COMPACT")
    granule = _sub(
        _sub(_sub(info, "Product_Organisation"), "Granule_List"),
        "Granule",
        datastripIdentifier=names.datastrip_id,
        granuleIdentifier=names.granule_id(),
        imageFormat="JPEG2000",
    )
    for band in (*TRUTH_BANDS, "SCL"):
        resolution = BANDS[band].resolution
        path = f"GRANULE/{names.granule_dir}/IMG_DATA/R{resolution}m"
        _sub(granule, "IMAGE_FILE", f"{path}/{names.image_prefix}_{band}_{resolution}m")


def _image_characteristics(characteristics: ET.Element, scene: SyntheticScene) -> None:
    """Special values, quantification, offsets (baseline 04.00+), bands and SCL classes."""
    for text, index in (("NODATA", 0), ("SATURATED", 65535)):
        special = _sub(characteristics, "Special_Values")
        _sub(special, "SPECIAL_VALUE_TEXT", text)
        _sub(special, "SPECIAL_VALUE_INDEX", index)
    order = _sub(characteristics, "Image_Display_Order")
    for channel, number in (("RED", 3), ("GREEN", 2), ("BLUE", 1)):
        _sub(order, f"{channel}_CHANNEL", number)
    values = _sub(characteristics, "QUANTIFICATION_VALUES_LIST")
    _sub(values, "BOA_QUANTIFICATION_VALUE", int(DN_SCALE), unit="none")
    _sub(values, "AOT_QUANTIFICATION_VALUE", "1000.0", unit="none")
    _sub(values, "WVP_QUANTIFICATION_VALUE", "1000.0", unit="cm")
    if scene.offset_applied:
        offsets = _sub(characteristics, "BOA_ADD_OFFSET_VALUES_LIST")
        for number in range(len(SAFE_BAND_ORDER)):
            _sub(offsets, "BOA_ADD_OFFSET", -DN_OFFSET, band_id=str(number))
    spectral = _sub(characteristics, "Spectral_Information_List")
    for number, band_id in enumerate(SAFE_BAND_ORDER):
        physical, resolution, low, high, centre = _spectral_information(band_id)
        entry = _sub(spectral, "Spectral_Information", bandId=str(number), physicalBand=physical)
        _sub(entry, "RESOLUTION", resolution)
        wavelength = _sub(entry, "Wavelength")
        for tag, value in (("MIN", low), ("MAX", high), ("CENTRAL", centre)):
            _sub(wavelength, tag, value, unit="nm")
    classes = _sub(characteristics, "Scene_Classification_List")
    for scl_class, text in SCL_TEXTS.items():
        entry = _sub(classes, "Scene_Classification_ID")
        _sub(entry, "SCENE_CLASSIFICATION_TEXT", text)
        _sub(entry, "SCENE_CLASSIFICATION_INDEX", int(scl_class))


def _tile_xml(
    scene: SyntheticScene, names: _Names, rasters: tuple[_Raster, ...], valid: np.ndarray
) -> bytes:
    """MTD_TL.xml of a scene: ids, sensing time, CRS, one grid per resolution, cloud cover."""
    root = _document("Level-2A_Tile_ID", TILE_NAMESPACE)
    general = _sub(root, "n1:General_Info")
    _sub(general, "L1C_TILE_ID", names.granule_id("L1C"), metadataLevel="Brief")
    _sub(general, "TILE_ID", names.granule_id(), metadataLevel="Brief")
    _sub(general, "DATASTRIP_ID", names.datastrip_id, metadataLevel="Standard")
    _sub(general, "DOWNLINK_PRIORITY", "NOMINAL", metadataLevel="Standard")
    _sub(general, "SENSING_TIME", _iso_us(names.sensing), metadataLevel="Standard")
    archiving = _sub(general, "Archiving_Info", metadataLevel="Expertise")
    _sub(archiving, "ARCHIVING_CENTRE", PROCESSING_CENTRE)
    _sub(archiving, "ARCHIVING_TIME", _iso_us(names.processed))
    geocoding = _sub(_sub(root, "n1:Geometric_Info"), "Tile_Geocoding", metadataLevel="Brief")
    tile = parse_tile_id(scene.tile_id)
    hemisphere = "N" if tile.north else "S"
    _sub(geocoding, "HORIZONTAL_CS_NAME", f"WGS84 / UTM zone {tile.zone}{hemisphere}")
    _sub(geocoding, "HORIZONTAL_CS_CODE", rasters[0].crs)
    grids = {raster.resolution: raster for raster in rasters}
    for resolution, raster in sorted(grids.items()):
        size = _sub(geocoding, "Size", resolution=str(resolution))
        _sub(size, "NROWS", raster.array.shape[0])
        _sub(size, "NCOLS", raster.array.shape[1])
    for resolution, raster in sorted(grids.items()):
        position = _sub(geocoding, "Geoposition", resolution=str(resolution))
        _sub(position, "ULX", _number(raster.transform.c))
        _sub(position, "ULY", _number(raster.transform.f))
        _sub(position, "XDIM", _number(raster.transform.a))
        _sub(position, "YDIM", _number(raster.transform.e))
    quality = _sub(root, "n1:Quality_Indicators_Info", metadataLevel="Standard")
    content = _sub(quality, "Image_Content_QI")
    _sub(content, "CLOUDY_PIXEL_PERCENTAGE", f"{100 * scene.cloud_fraction:.6f}")
    _sub(content, "NODATA_PIXEL_PERCENTAGE", f"{100 * (1 - valid.mean()):.6f}")
    return _serialise(root)


def _tile_info(
    scene: SyntheticScene, names: _Names, raster: _Raster, valid: np.ndarray
) -> dict[str, Any]:
    """``tileInfo.json`` of a scene, with the fields and spellings of the real files."""
    tile = parse_tile_id(scene.tile_id)
    day = scene.datetime
    path = f"tiles/{tile.zone}/{tile.band}/{tile.square}/{day.year}/{day.month}/{day.day}/0"
    product_path = f"products/{day.year}/{day.month}/{day.day}/{names.product_id}"
    crs = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG:8.8.1:{tile.epsg}"}}
    height, width = raster.array.shape
    left, top = raster.transform.c, raster.transform.f
    right = left + raster.transform.a * width
    bottom = top + raster.transform.e * height
    corners = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
    info: dict[str, Any] = {
        "path": path,
        "timestamp": _iso_ms(scene.datetime),
        "utmZone": tile.zone,
        "latitudeBand": tile.band,
        "gridSquare": tile.square,
        "datastrip": {"id": names.datastrip_id, "path": f"{product_path}/datastrip/0"},
        "tileGeometry": {"type": "Polygon", "crs": crs, "coordinates": [corners]},
    }
    data = _data_geometry(valid, raster.transform)
    if data is not None:
        info["tileDataGeometry"] = {
            "type": data["type"],
            "crs": crs,
            "coordinates": data["coordinates"],
        }
    info.update(
        {
            "tileOrigin": {"type": "Point", "crs": crs, "coordinates": [left, top]},
            "dataCoveragePercentage": round(100 * float(valid.mean()), 2),
            "cloudyPixelPercentage": round(100 * float(scene.cloud_fraction), 2),
            "productName": names.product_id,
            "productPath": product_path,
        }
    )
    return info


def _data_geometry(valid: np.ndarray, transform: Affine) -> dict[str, Any] | None:
    """GeoJSON of the pixels with data, traced along pixel edges (None if there are none)."""
    runs: list[Polygon] = []
    for row, line in enumerate(valid):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
        runs.extend(box(start, row, stop, row + 1) for start, stop in edges.reshape(-1, 2))
    if not runs:
        return None
    pixels = shapely.union_all(runs).simplify(0.0)
    a, b, c, d, e, f = transform[:6]
    return dict(mapping(shapely.affinity.affine_transform(pixels, [a, b, d, e, c, f])))
