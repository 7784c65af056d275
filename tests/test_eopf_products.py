"""EOPF Zarr products: written like the real hierarchy, read like the GeoTIFF path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from zarr.storage import LocalStore

from cloudfree.errors import OutputExistsError
from cloudfree.readers.gdal_band import read_window
from cloudfree.readers.zarr_band import read_zarr_window, zarr_band_radiometry
from cloudfree.testing.eopf import (
    ZARR_MEDIA_TYPE,
    ZARR_MEDIA_TYPE_PLUS,
    EopfArchive,
    EopfProduct,
    level_geobox,
    write_eopf_archive,
    write_eopf_product,
)

REAL_PRODUCT = (
    "eopf_zarr/input_hierarchy/"
    "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613.eopf_zarr_v2_hierarchy.json"
)
REAL_ZMETADATA = (
    "eopf_zarr/consolidated_zmetadata/S2A_MSIL2A_20220428T100601_N0400_R022_T32TPS.zmetadata.json"
)
REAL_ITEM = (
    "stac_items/eopf/S2A_MSIL2A_20251113T102311_N0511_R065_T32TNQ_20251113T142515.eopf_stac.json"
)
ENCODING = ("dtype", "fill_value", "compressor", "filters", "order", "dimension_separator")
CLEAR_CLASSES = (4, 5, 6)  # vegetation, not vegetated, water


def _pick(archive, **wanted):
    return next(
        s for s in archive.scenes if all(getattr(s, key) == value for key, value in wanted.items())
    )


@pytest.fixture(scope="module")
def scenes(archive):
    """A baseline-04.00 scene, a 03.01 scene with a swath edge, the reprocessed 05.00 scene."""
    return {
        "offset": _pick(
            archive, tile_id="29UPV", processing_baseline="04.00", swath_edge=False, snow=False
        ),
        "edge": _pick(archive, tile_id="29UPV", processing_baseline="03.01", swath_edge=True),
        "reprocessed": _pick(archive, processing_baseline="05.00"),
    }


@pytest.fixture(scope="module")
def eopf(archive, scenes, tmp_path_factory) -> EopfArchive:
    ids = [scene.id for scene in scenes.values()]
    return write_eopf_archive(archive, tmp_path_factory.mktemp("eopf"), scene_ids=ids)


@pytest.fixture(scope="module")
def real_product(realdata):
    return json.loads((realdata / REAL_PRODUCT).read_text())


def _product(eopf, scenes, name) -> EopfProduct:
    return eopf.product(scenes[name].id)


def _real_node(spec, path):
    node = spec
    for part in path.split("/"):
        assert part in node.get("members", {}), f"{path} is not in the real product"
        node = node["members"][part]
    return node


def _written_nodes(path: Path):
    """``{node path: (kind, metadata, attributes)}`` from a product's consolidated metadata."""
    metadata = json.loads((path / ".zmetadata").read_text())["metadata"]
    nodes = {}
    for key, document in metadata.items():
        node, _, name = key.rpartition("/")
        if name in (".zarray", ".zgroup"):
            kind = "array" if name == ".zarray" else "group"
            nodes[node] = (kind, document, metadata[f"{node}/.zattrs" if node else ".zattrs"])
    return nodes


# --- structure against the real product --------------------------------------------------------


@pytest.mark.realdata
def test_written_hierarchy_matches_the_real_product(eopf, scenes, real_product):
    product = _product(eopf, scenes, "reprocessed")
    nodes = _written_nodes(product.path)
    assert real_product["zarr_format"] == 2
    assert {
        "measurements/reflectance/r10m/b02",
        "measurements/reflectance/r10m/b08",
        "measurements/reflectance/r10m/x",
        "measurements/reflectance/r10m/y",
        "measurements/reflectance/r20m/b04",
        "measurements/reflectance/r60m/b03",
        "conditions/mask/l2a_classification/r20m/scl",
        "conditions/mask/l2a_classification/r60m/y",
    } <= set(nodes)
    for path, (kind, meta, attrs) in nodes.items():
        if not path:
            continue
        real = _real_node(real_product, path)
        assert meta["zarr_format"] == 2
        if kind == "group":
            assert "shape" not in real, path
            assert attrs == real["attributes"], path
            continue
        assert {k: meta[k] for k in ENCODING} == {k: real[k] for k in ENCODING}, path
        assert set(attrs) == set(real["attributes"]), path
        assert attrs["_ARRAY_DIMENSIONS"] == real["attributes"]["_ARRAY_DIMENSIONS"], path
        if "_eopf_attrs" in attrs:
            assert set(attrs["_eopf_attrs"]) == set(real["attributes"]["_eopf_attrs"]), path
        # the same chunk pattern, scaled down: as many chunks per side
        assert [math.ceil(n / c) for n, c in zip(meta["shape"], meta["chunks"], strict=True)] == [
            math.ceil(n / c) for n, c in zip(real["shape"], real["chunks"], strict=True)
        ], path
        for key in ("scale_factor", "add_offset", "units", "valid_min", "valid_max", "dtype"):
            if key in attrs:  # a baseline 05.xx product, like the real one
                assert attrs[key] == real["attributes"][key], (path, key)


@pytest.mark.realdata
def test_root_metadata_uses_the_real_keys(eopf, scenes, real_product, realdata):
    product = _product(eopf, scenes, "offset")
    root = zarr.open_consolidated(str(product.path), mode="r")
    attrs = root.attrs.asdict()
    real = real_product["attributes"]
    assert set(attrs) == set(real)
    assert set(attrs["other_metadata"]) <= set(real["other_metadata"])
    assert set(attrs["stac_discovery"]) <= set(real["stac_discovery"])
    props = attrs["stac_discovery"]["properties"]
    assert set(props) <= set(real["stac_discovery"]["properties"])
    assert props["eopf:baseline"] == "04.00"
    assert props["proj:epsg"] == 32629
    assert attrs["other_metadata"]["horizontal_CRS_code"] == "EPSG:32629"
    assert attrs["stac_discovery"]["id"] == f"{product.product_id}.SAFE"
    assert props["start_datetime"].startswith(scenes["offset"].datetime.strftime("%Y-%m-%dT%H:%M"))
    # .zmetadata is laid out as the real consolidated metadata
    written = json.loads((product.path / ".zmetadata").read_text())
    real_zmetadata = json.loads((realdata / REAL_ZMETADATA).read_text())
    assert set(written) == set(real_zmetadata)
    assert written["zarr_consolidated_format"] == real_zmetadata["zarr_consolidated_format"]
    assert written["metadata"][".zgroup"] == real_zmetadata["metadata"][".zgroup"]


def test_coordinates_are_pixel_centres_with_y_descending(archive, eopf, scenes):
    product = _product(eopf, scenes, "offset")
    tile = archive.tile(scenes["offset"].tile_id)
    for metres in (10, 20, 60):
        group = zarr.open_group(
            str(product.path / f"measurements/reflectance/r{metres}m"), mode="r"
        )
        x, y = group["x"][:], group["y"][:]
        expected = level_geobox(tile, metres).affine
        assert x.dtype == np.int64
        assert x[0] == expected.c + metres / 2 and y[0] == expected.f - metres / 2
        assert set(np.diff(x)) == {metres} and set(np.diff(y)) == {-metres}
        assert group["b02"].shape == (y.size, x.size)


def test_xarray_decodes_reflectance_from_the_array_attributes(archive, eopf, scenes):
    product = _product(eopf, scenes, "edge")
    ds = xr.open_zarr(product.path, group="measurements/reflectance/r10m", consolidated=False)
    raw = zarr.open_array(str(product.path / "measurements/reflectance/r10m/b04"), mode="r")[:]
    expected = np.where(raw == 0, np.nan, raw * 1e-4)
    np.testing.assert_allclose(ds["b04"].values, expected, rtol=1e-6)


# --- the STAC item against the real EOPF item ---------------------------------------------------


@pytest.mark.realdata
def test_item_uses_the_real_eopf_item_fields(archive, eopf, scenes, realdata):
    real = json.loads((realdata / REAL_ITEM).read_text())
    product = _product(eopf, scenes, "reprocessed")
    item = product.item.to_dict(include_self_link=False)
    assert item["stac_version"] == real["stac_version"]
    assert set(item["stac_extensions"]) <= set(real["stac_extensions"])
    assert set(item["properties"]) <= set(real["properties"]) | {"datetime"}
    assert item["properties"]["processing:version"] == "05.00"
    assert item["properties"]["proj:code"] == archive.tile(scenes["reprocessed"].tile_id).crs
    assert {"B02_10m", "B03_10m", "B04_10m", "B08_10m", "SCL_20m"} <= set(item["assets"])
    for key, asset in item["assets"].items():
        real_asset = real["assets"][key]
        assert asset["type"] == real_asset["type"], key
        assert asset["roles"] == real_asset["roles"], key
        assert set(asset) <= set(real_asset), key
        for ours, theirs in zip(asset.get("bands", []), real_asset.get("bands", []), strict=False):
            assert set(ours) == set(theirs), key
        assert asset["href"].split(".zarr", 1)[1] == real_asset["href"].split(".zarr", 1)[1], key
    assert item["assets"]["B02_10m"]["type"] == ZARR_MEDIA_TYPE
    assert item["assets"]["SCL_20m"]["type"] == ZARR_MEDIA_TYPE_PLUS
    for key in ("raster:scale", "raster:offset", "nodata", "data_type"):
        assert item["assets"]["B04_10m"][key] == real["assets"]["B04_10m"][key], key
        assert item["assets"]["SCL_20m"][key] == real["assets"]["SCL_20m"][key], key


def test_item_collection_and_base_url(archive, eopf, scenes, tmp_path):
    collection = json.loads(eopf.items_path.read_text())
    assert collection["type"] == "FeatureCollection"
    assert {f["id"] for f in collection["features"]} == {p.product_id for p in eopf.products}
    offset = _product(eopf, scenes, "offset")
    assert offset.item.assets["B04_10m"].extra_fields["raster:offset"] == -0.1
    assert _product(eopf, scenes, "edge").item.assets["B04_10m"].extra_fields["raster:offset"] == 0
    served = write_eopf_archive(
        archive, tmp_path, base_url="https://example.com/eopf/", scene_ids=[scenes["offset"].id]
    )
    href = served.products[0].item.assets["B02_10m"].href
    assert href == (
        f"https://example.com/eopf/{offset.product_id}.zarr/measurements/reflectance/r10m/b02"
    )


# --- reads against the GeoTIFF path -------------------------------------------------------------


def _both(archive, product, scene, band, geobox, resampling="bilinear", *, href=None):
    categorical = band == "SCL"
    tile = archive.tile(scene.tile_id)
    zarr_read = read_zarr_window(
        href or product.band_href(band),
        geobox,
        resampling,
        categorical=categorical,
        crs=tile.crs,
        nodata=0,
    )
    cog = str(scene.band_path(band))
    return zarr_read, read_window(cog, geobox, resampling, categorical=categorical, nodata=0)


def _grid(archive, scene, kind):
    tile = archive.tile(scene.tile_id)
    native = tile.geobox(10)
    if kind == "window":
        return native[40:200, 30:190]
    if kind == "full":
        return native
    if kind == "lonlat":
        return GeoBox.from_bbox(tile.bbox_lonlat, "EPSG:4326", resolution=0.0002)
    other = "EPSG:32630" if tile.crs == "EPSG:32629" else "EPSG:32629"
    return GeoBox.from_bbox(native.extent.to_crs(other).boundingbox, other, resolution=10)


@pytest.mark.parametrize("band", ["B04", "B08", "SCL"])
@pytest.mark.parametrize("kind", ["window", "full", "lonlat", "other-utm"])
@pytest.mark.parametrize("which", ["edge", "reprocessed"])
def test_zarr_read_equals_geotiff_read(archive, eopf, scenes, band, kind, which):
    scene = scenes[which]
    geobox = _grid(archive, scene, kind)
    from_zarr, from_tiff = _both(archive, _product(eopf, scenes, which), scene, band, geobox)
    assert from_zarr is not None and from_tiff is not None
    assert from_zarr.dtype == from_tiff.dtype == (np.uint8 if band == "SCL" else np.float32)
    np.testing.assert_array_equal(from_zarr, from_tiff)  # NaN where the other has NaN
    if band != "SCL" and which == "edge":
        assert np.isnan(from_zarr).any()  # the swath edge is nodata, not DN 0


def test_scl_on_its_native_grid_is_pasted_exactly(archive, eopf, scenes):
    scene = scenes["offset"]
    geobox = archive.tile(scene.tile_id).geobox(20)
    from_zarr, from_tiff = _both(archive, _product(eopf, scenes, "offset"), scene, "SCL", geobox)
    np.testing.assert_array_equal(from_zarr, from_tiff)


def test_no_overlap_gives_none(archive, eopf, scenes):
    scene = scenes["offset"]
    far = GeoBox.from_bbox((100_000, 100_000, 101_000, 101_000), "EPSG:32629", resolution=10)
    for band in ("B04", "SCL"):
        assert _both(archive, _product(eopf, scenes, "offset"), scene, band, far) == (None, None)


def test_file_url_reads_the_same(archive, eopf, scenes):
    scene = scenes["offset"]
    product = _product(eopf, scenes, "offset")
    geobox = _grid(archive, scene, "lonlat")
    href = (product.path / "measurements/reflectance/r10m/b04").as_uri()
    from_zarr, from_tiff = _both(archive, product, scene, "B04", geobox, href=href)
    np.testing.assert_array_equal(from_zarr, from_tiff)


@pytest.fixture
def chunk_reads(monkeypatch):
    """Every key read from a local Zarr store."""
    keys: list[str] = []
    get = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    return keys


def _data_chunks(keys, array):
    return {k for k in keys if k.startswith(f"{array}/") and k.rsplit("/", 1)[1][0] not in ".z"}


def test_only_the_chunks_under_the_window_are_read(archive, eopf, scenes, chunk_reads):
    scene = scenes["offset"]
    native = archive.tile(scene.tile_id).geobox(10)
    product = _product(eopf, scenes, "offset")
    _both(archive, product, scene, "B04", native[10:60, 140:200])  # inside chunk (0, 1)
    assert _data_chunks(chunk_reads, "r10m/b04") == {"r10m/b04/0.1"}
    chunk_reads.clear()
    _both(archive, product, scene, "B04", native[100:150, 10:60])  # straddles rows 0 and 1
    assert _data_chunks(chunk_reads, "r10m/b04") == {"r10m/b04/0.0", "r10m/b04/1.0"}


@pytest.mark.parametrize(
    ("metres", "aligned", "group"), [(40, False, "r20m"), (60, True, "r60m"), (120, False, "r60m")]
)
def test_coarse_grids_read_the_coarser_resolution_group(
    archive, eopf, scenes, chunk_reads, metres, aligned, group
):
    scene = scenes["offset"]
    tile = archive.tile(scene.tile_id)
    geobox = (
        level_geobox(tile, metres)
        if aligned
        else GeoBox.from_bbox(tile.geobox(10).extent.boundingbox, tile.crs, resolution=metres)
    )
    from_zarr, from_tiff = _both(
        archive, _product(eopf, scenes, "offset"), scene, "B04", geobox, "average"
    )
    assert _data_chunks(chunk_reads, f"{group}/b04")
    assert not _data_chunks(chunk_reads, "r10m/b04")
    if metres <= 60:  # block means of the 10 m DNs agree with GDAL's average overviews
        inner = (slice(0, -1), slice(0, -1))  # partial edge pixels are averaged differently
        assert np.nanmax(np.abs(from_zarr[inner] - from_tiff[inner])) <= 1.0


def test_bands_without_coarse_groups_fall_back_to_native(archive, eopf, scenes, chunk_reads):
    scene = scenes["offset"]
    tile = archive.tile(scene.tile_id)
    geobox = GeoBox.from_bbox(tile.geobox(10).extent.boundingbox, tile.crs, resolution=60)
    from_zarr, _ = _both(archive, _product(eopf, scenes, "offset"), scene, "B08", geobox)
    assert from_zarr is not None and not np.isnan(from_zarr).all()
    assert _data_chunks(chunk_reads, "r10m/b08")


# --- radiometry: DNs raw, scale and offset applied once by the caller ---------------------------


@pytest.mark.parametrize(("which", "offset"), [("offset", -0.1), ("edge", 0.0)])
def test_scale_and_offset_applied_once_give_the_truth(archive, eopf, scenes, which, offset):
    scene = scenes[which]
    product = _product(eopf, scenes, which)
    tile = archive.tile(scene.tile_id)
    geobox = tile.geobox(10)
    scale, add_offset, nodata = zarr_band_radiometry(product.band_href("B04"))
    assert (scale, add_offset, nodata) == (1e-4, offset, 0.0)
    assert zarr_band_radiometry(product.band_href("SCL")) == (1.0, 0.0, None)
    dn = read_zarr_window(
        product.band_href("B04"), geobox, "nearest", categorical=False, crs=tile.crs, nodata=0
    )
    scl = read_zarr_window(
        product.band_href("SCL"), geobox, "nearest", categorical=True, crs=tile.crs, nodata=0
    )
    clear = np.isin(scl, CLEAR_CLASSES) & ~np.isnan(dn)
    assert clear.sum() > 5000
    error = (dn * scale + add_offset - archive.truth(geobox, "B04"))[clear]
    assert abs(float(np.median(error))) < 0.005  # an offset applied twice or never is 0.1 off
    assert float(np.percentile(np.abs(error), 75)) < 0.01


def test_fsspec_urls_read_the_same(archive, eopf, scenes):
    scene = scenes["reprocessed"]
    product = _product(eopf, scenes, "reprocessed")
    memory = fsspec.filesystem("memory")
    memory.put(str(product.path), f"/{product.path.name}", recursive=True)
    try:
        href = f"memory://{product.path.name}/measurements/reflectance/r10m/b08"
        for kind in ("lonlat", "window"):
            geobox = _grid(archive, scene, kind)
            from_zarr, from_tiff = _both(archive, product, scene, "B08", geobox, href=href)
            np.testing.assert_array_equal(from_zarr, from_tiff)
        assert zarr_band_radiometry(href, {}) == (1e-4, -0.1, 0.0)
    finally:
        memory.rm(f"/{product.path.name}", recursive=True)


def test_products_are_replaced_but_other_directories_are_not(archive, scenes, tmp_path):
    scene = scenes["offset"]
    path = tmp_path / "product.zarr"
    write_eopf_product(scene, archive, path)
    (path / "measurements/reflectance/r10m/b02/9.9").write_bytes(b"stale")
    write_eopf_product(scene, archive, path)
    assert not (path / "measurements/reflectance/r10m/b02/9.9").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        write_eopf_product(scene, archive, other)
    assert (other / "keep.txt").read_text() == "mine"
