"""The synthetic archive written as SAFE products and in the AWS tile layout, read back."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import shape

from cloudfree.radiometry import offset_for_baseline
from cloudfree.sources.s2_metadata import (
    parse_product_metadata,
    parse_tile_info,
    parse_tile_metadata,
)
from cloudfree.testing import SyntheticArchive, SyntheticScene
from cloudfree.testing.layouts import write_aws_tile_layout, write_safe_products

BANDS = ("B02", "B03", "B04", "B08", "SCL")
PRODUCT_ID = re.compile(
    r"^(?P<sat>S2[AB])_MSIL2A_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})_R080"
    r"_T(?P<tile>\d{2}[A-Z]{3})_\d{8}T\d{6}$"
)
AWS_CSV = "metadata/aws_sentinel-s2-l2a_layout/sentinelhub-py_aws_to_safe_L2A_04.00.csv"


@pytest.fixture(scope="module")
def safes(archive: SyntheticArchive, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_safe_products(archive, tmp_path_factory.mktemp("safe"))


@pytest.fixture(scope="module")
def aws(archive: SyntheticArchive, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_aws_tile_layout(archive, tmp_path_factory.mktemp("aws"))


def read(path: Path) -> tuple[np.ndarray, rasterio.Affine, str, str]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.transform, str(dataset.crs), dataset.driver


def granule(safe: Path) -> Path:
    (folder,) = (safe / "GRANULE").iterdir()
    return folder


def safe_image(safe: Path, band: str) -> Path:
    resolution = 20 if band == "SCL" else 10
    (path,) = (granule(safe) / "IMG_DATA" / f"R{resolution}m").glob(f"*_{band}_{resolution}m.jp2")
    return path


def platform(scene: SyntheticScene) -> str:
    return json.loads(scene.item_path.read_text(encoding="utf-8"))["properties"]["platform"]


def test_safe_names_follow_esa(archive: SyntheticArchive, safes: list[Path]) -> None:
    assert len(safes) == len(archive.scenes) == 24
    for scene, safe in zip(archive.scenes, safes, strict=True):
        assert safe.suffix == ".SAFE"
        match = PRODUCT_ID.match(safe.stem)
        assert match, safe.name
        assert match["sat"] == "S2" + platform(scene)[-1].upper()
        assert match["sensing"] == f"{scene.datetime:%Y%m%dT%H%M%S}"
        assert match["baseline"] == scene.processing_baseline.replace(".", "")
        assert match["tile"] == scene.tile_id
        if scene.convention == "baseline-only":  # these STAC ids already are ESA product ids
            assert safe.stem == scene.id
        folder = granule(safe)
        assert re.fullmatch(rf"L2A_T{scene.tile_id}_A\d{{6}}_{match['sensing']}", folder.name)
        for band in BANDS:
            resolution = 20 if band == "SCL" else 10
            name = f"T{scene.tile_id}_{match['sensing']}_{band}_{resolution}m.jp2"
            assert (folder / "IMG_DATA" / f"R{resolution}m" / name).is_file()


def test_safe_product_lists_its_images(safes: list[Path]) -> None:
    for safe in safes:
        root = ET.parse(safe / "MTD_MSIL2A.xml").getroot()
        files = [e.text for e in root.iterfind(".//{*}IMAGE_FILE")]
        assert len(files) == len(BANDS)
        for file in files:
            assert (safe / f"{file}.jp2").is_file()


def test_safe_metadata_matches_the_archive(archive: SyntheticArchive, safes: list[Path]) -> None:
    for scene, safe in zip(archive.scenes, safes, strict=True):
        product = parse_product_metadata((safe / "MTD_MSIL2A.xml").read_bytes(), name=safe.name)
        assert product.product_id == safe.stem
        assert product.tile_id == scene.tile_id
        assert product.processing_baseline == scene.processing_baseline
        assert product.sensing_start == scene.datetime
        assert product.spacecraft == "Sentinel-2" + platform(scene)[-1].upper()
        assert product.cloud_cover == pytest.approx(100 * scene.cloud_fraction, abs=1e-6)
        offset = -0.1 if scene.offset_applied else 0.0
        assert offset == offset_for_baseline(scene.processing_baseline)
        for band in ("B02", "B03", "B04", "B08", "B8A", "B12"):
            radiometry = product.radiometry(band)
            assert (radiometry.scale, radiometry.offset) == (1e-4, offset)
        assert len(product.scl_classes) == 12
        tile = archive.tile(scene.tile_id)
        granule_meta = parse_tile_metadata((granule(safe) / "MTD_TL.xml").read_bytes())
        assert granule_meta.tile_id == scene.tile_id
        assert granule_meta.crs == tile.crs
        assert granule_meta.sensing_time == scene.datetime
        assert granule_meta.processing_baseline == scene.processing_baseline
        assert granule_meta.geobox(10) == tile.geobox(10)
        assert granule_meta.geobox(20) == tile.geobox(20)


def test_safe_pixels_equal_the_cogs(archive: SyntheticArchive, safes: list[Path]) -> None:
    for scene, safe in zip(archive.scenes, safes, strict=True):
        for band in BANDS:
            expected, transform, crs, _ = read(scene.band_path(band))
            actual, jp2_transform, jp2_crs, driver = read(safe_image(safe, band))
            assert driver == "JP2OpenJPEG"
            assert actual.dtype == (np.uint8 if band == "SCL" else np.uint16)
            np.testing.assert_array_equal(actual, expected)
            assert (jp2_transform, jp2_crs) == (transform, crs)


def test_aws_paths_are_not_zero_padded(archive: SyntheticArchive, aws: list[Path]) -> None:
    for scene, tile_dir in zip(archive.scenes, aws, strict=True):
        when = scene.datetime
        zone, band, square = scene.tile_id[:2], scene.tile_id[2], scene.tile_id[3:]
        expected = f"tiles/{int(zone)}/{band}/{square}/{when.year}/{when.month}/{when.day}/0"
        assert tile_dir.as_posix().endswith(f"sentinel-s2-l2a/{expected}")
    january = [p for p in aws if "/2022/1/2/0" in p.as_posix()]
    assert len(january) == 2  # both tiles of 2022-01-02, month and day without zeros


def test_aws_files_and_metadata(
    archive: SyntheticArchive, aws: list[Path], safes: list[Path]
) -> None:
    for scene, tile_dir, safe in zip(archive.scenes, aws, safes, strict=True):
        bucket = tile_dir.parents[7]
        info = parse_tile_info((tile_dir / "tileInfo.json").read_bytes(), name=str(tile_dir))
        assert info.path == tile_dir.relative_to(bucket).as_posix()
        assert info.tile_id == scene.tile_id
        assert info.timestamp == scene.datetime
        assert info.product_name == safe.stem  # one naming for both layouts
        assert info.processing_baseline == scene.processing_baseline
        tile = archive.tile(scene.tile_id)
        assert info.crs == tile.crs
        assert info.tile_geometry.boundingbox == tile.geobox().extent.boundingbox
        assert info.cloud_cover == pytest.approx(100 * scene.cloud_fraction, abs=0.005)
        # the product folder holds the product metadata, the tile folder the granule metadata
        assert info.product_path is not None
        product_xml = (bucket / info.product_path / "metadata.xml").read_bytes()
        assert product_xml == (safe / "MTD_MSIL2A.xml").read_bytes()
        assert parse_product_metadata(product_xml).product_id == info.product_name
        tile_xml = (tile_dir / "metadata.xml").read_bytes()
        assert tile_xml == (granule(safe) / "MTD_TL.xml").read_bytes()
        assert parse_tile_metadata(tile_xml).geobox(10) == tile.geobox(10)


def test_aws_data_geometry_is_where_the_pixels_are(
    archive: SyntheticArchive, aws: list[Path]
) -> None:
    edges = 0
    for scene, tile_dir in zip(archive.scenes, aws, strict=True):
        info = parse_tile_info((tile_dir / "tileInfo.json").read_bytes())
        dn, *_ = read(scene.band_path("B02"))
        coverage = 100 * float((dn > 0).mean())
        assert info.data_coverage == pytest.approx(coverage, abs=0.005)
        assert info.data_geometry is not None
        share = 100 * info.data_geometry.area / info.tile_geometry.area
        assert share == pytest.approx(coverage, abs=1e-6)  # traced along pixel edges
        footprint = shape(info.data_footprint().geom.__geo_interface__)
        assert footprint.buffer(1e-9).within(archive.tile(scene.tile_id).footprint().buffer(1e-6))
        edges += coverage < 100
    assert edges == sum(scene.swath_edge for scene in archive.scenes) > 0


def test_aws_pixels_equal_the_cogs(archive: SyntheticArchive, aws: list[Path]) -> None:
    for scene, tile_dir in zip(archive.scenes, aws, strict=True):
        for band in BANDS:
            resolution = 20 if band == "SCL" else 10
            expected, transform, crs, _ = read(scene.band_path(band))
            actual, jp2_transform, jp2_crs, driver = read(
                tile_dir / f"R{resolution}m" / f"{band}.jp2"
            )
            assert driver == "JP2OpenJPEG"
            np.testing.assert_array_equal(actual, expected)
            assert (jp2_transform, jp2_crs) == (transform, crs)


def generic(aws_path: str, safe_path: str, product: str, tile: str) -> tuple[str, str]:
    """An AWS -> SAFE path pair with the product, granule, tile and time made generic."""
    parts = aws_path.split("sentinel-s2-l2a/", 1)[1].split("/")
    # the part after tiles/<zone>/<band>/<square>/<y>/<m>/<d>/<n>/ or products/<y>/<m>/<d>/<id>/
    key = parts[0] + ":" + "/".join(parts[8 if parts[0] == "tiles" else 5 :])
    value = safe_path.replace(f"{product}.SAFE", "{SAFE}")
    value = re.sub(rf"L2A_T{tile}_A\d{{6}}_\d{{8}}T\d{{6}}", "{GRANULE}", value)
    return key, re.sub(rf"T{tile}_\d{{8}}T\d{{6}}_", "{PREFIX}_", value)


@pytest.mark.realdata
def test_layouts_pair_up_like_the_real_bucket(
    realdata: Path, archive: SyntheticArchive, aws: list[Path], safes: list[Path]
) -> None:
    """Each AWS file we write has the SAFE counterpart the real 04.00 listing gives it."""
    with (realdata / AWS_CSV).open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    real_product = "S2B_MSIL2A_20220126T084129_N0400_R064_T36RUT_20220201T122115"
    real = dict(generic(aws_url, safe, real_product, "36RUT") for aws_url, safe in rows)
    for scene, tile_dir, safe in zip(archive.scenes, aws, safes, strict=True):
        bucket = tile_dir.parents[7]
        product_dir = bucket / json.loads((tile_dir / "tileInfo.json").read_bytes())["productPath"]
        pairs = [(tile_dir / "metadata.xml", granule(safe) / "MTD_TL.xml")]
        pairs.append((product_dir / "metadata.xml", safe / "MTD_MSIL2A.xml"))
        for band in BANDS:
            resolution = 20 if band == "SCL" else 10
            pairs.append((tile_dir / f"R{resolution}m" / f"{band}.jp2", safe_image(safe, band)))
        for aws_file, safe_file in pairs:
            aws_url = f"s3://sentinel-s2-l2a/{aws_file.relative_to(bucket).as_posix()}"
            safe_path = safe_file.relative_to(safe.parent).as_posix()
            key, value = generic(aws_url, safe_path, safe.stem, scene.tile_id)
            assert real[key] == value, aws_url


@pytest.mark.realdata
def test_tile_info_has_the_real_fields(realdata: Path, aws: list[Path]) -> None:
    real = json.loads(
        (
            realdata / "metadata/aws_sentinel-s2-l2a_layout/tiles_34_L_BP_2022_4_1_0.tileInfo.json"
        ).read_text(encoding="utf-8")
    )
    ours = json.loads((aws[0] / "tileInfo.json").read_text(encoding="utf-8"))
    assert list(ours) == list(real)
    assert set(ours["datastrip"]) == set(real["datastrip"])
    assert ours["tileGeometry"]["crs"]["properties"]["name"].startswith(
        "urn:ogc:def:crs:EPSG:8.8.1:"
    )
    assert ours["timestamp"].endswith("Z") and len(ours["timestamp"]) == len(real["timestamp"])
