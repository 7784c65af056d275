"""``cloudfree convert``: synthetic EOPF L2A products to GeoZarr, locally and on S3."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
import zarr
from click.testing import CliRunner
from PIL import Image

from cloudfree.catalog.validation import validate_stac
from cloudfree.cli.main import cli
from cloudfree.convert import convert, geozarr_writer
from cloudfree.convert.pyramid import plan_levels
from cloudfree.convert.stac_item import MULTISCALES_MEDIA_TYPE
from cloudfree.convert.validate import validate_geozarr
from cloudfree.errors import InvalidInputError, OutputExistsError
from cloudfree.testing.eopf import write_eopf_archive

REFLECTANCE = "measurements/reflectance"
SCL = "conditions/mask/l2a_classification"
REAL_OUTPUT = (
    "eopf_zarr/geozarr_output/"
    "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613.geozarr_v3_hierarchy.json"
)
# Small chunks, shards and strips so that a 256 px tile spans several of each.
CHUNK, SHARD, STRIP = 64, 128, 4096
MIN_SIZE = 32


@pytest.fixture(scope="module")
def product(archive, tmp_path_factory):
    """One EOPF product (baseline 04.00, with a swath edge when there is one) and its item file."""
    scenes = [s for s in archive.scenes if s.processing_baseline == "04.00"]
    scene = next((s for s in scenes if s.swath_edge), scenes[0])
    root = tmp_path_factory.mktemp("eopf")
    written = write_eopf_archive(archive, root, scene_ids=[scene.id]).products[0]
    item_file = root / "item.json"
    item_file.write_text(json.dumps(written.item.to_dict(transform_hrefs=False)))
    return written, item_file


@pytest.fixture(scope="module")
def small_blocks():
    """Make chunks, shards and read strips small (module scope, restored afterwards)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(geozarr_writer, "CHUNK", CHUNK)
    mp.setattr(geozarr_writer, "STRIP_PIXELS", STRIP)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def converted(product, small_blocks, tmp_path_factory):
    _, item_file = product
    out = tmp_path_factory.mktemp("out") / "S2.zarr"
    result = convert(str(item_file), str(out), shard=SHARD, min_size=MIN_SIZE)
    return result, out


def _source(product):
    written, _ = product
    return zarr.open_group(str(written.path), mode="r", zarr_format=2)


def _mean_reference(dn: np.ndarray, f: int) -> np.ndarray:
    """Block mean of non-zero DNs, pixel by pixel (the independent reference)."""
    ny, nx = math.ceil(dn.shape[0] / f), math.ceil(dn.shape[1] / f)
    out = np.zeros((ny, nx), dtype=dn.dtype)
    for i in range(ny):
        for j in range(nx):
            block = dn[i * f : (i + 1) * f, j * f : (j + 1) * f].astype(np.float64)
            valid = block[block != 0]
            out[i, j] = np.rint(valid.mean()) if valid.size else 0
    return out


def _mode_reference(classes: np.ndarray, f: int) -> np.ndarray:
    ny, nx = math.ceil(classes.shape[0] / f), math.ceil(classes.shape[1] / f)
    out = np.zeros((ny, nx), dtype=classes.dtype)
    for i in range(ny):
        for j in range(nx):
            block = classes[i * f : (i + 1) * f, j * f : (j + 1) * f].ravel()
            counts = np.bincount(block[block != 0], minlength=256)
            out[i, j] = counts.argmax() if counts.any() else 0
    return out


def test_product_levels_are_copied_exactly(product, converted):
    """Every array the product holds is in the output, with the same DNs, unscaled."""
    src = _source(product)
    _, out = converted
    dst = zarr.open_group(str(out), mode="r")
    compared = 0
    for group in (REFLECTANCE, SCL):
        for level in src[group].group_keys():
            for band in src[f"{group}/{level}"].array_keys():
                if band in ("x", "y"):
                    continue
                expected = np.asarray(src[f"{group}/{level}/{band}"][:])
                got = dst[f"{group}/{level}/{band}"]
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(np.asarray(got[:]), expected)
                compared += 1
    assert compared == 4 + 3 + 3 + 2  # r10m, r20m, r60m reflectance; SCL r20m, r60m


def test_derived_levels_match_numpy_reference(product, converted):
    src = _source(product)
    _, out = converted
    dst = zarr.open_group(str(out), mode="r")
    b08 = np.asarray(src[f"{REFLECTANCE}/r10m/b08"][:])
    assert (b08 == 0).any(), "the product should have nodata to average around"
    for level, factor in (("r20m", 2), ("r60m", 6)):
        np.testing.assert_array_equal(
            dst[f"{REFLECTANCE}/{level}/b08"][:], _mean_reference(b08, factor)
        )
    r60 = np.asarray(dst[f"{REFLECTANCE}/r60m/b04"][:])
    np.testing.assert_array_equal(dst[f"{REFLECTANCE}/r120m/b04"][:], _mean_reference(r60, 2))
    scl60 = np.asarray(src[f"{SCL}/r60m/scl"][:])
    np.testing.assert_array_equal(dst[f"{SCL}/r120m/scl"][:], _mode_reference(scl60, 2))
    assert set(np.unique(dst[f"{SCL}/r120m/scl"][:])) <= set(np.unique(scl60))


def test_multiscales_layout_describes_the_levels(product, converted):
    src = _source(product)
    _, out = converted
    dst = zarr.open_group(str(out), mode="r")
    attrs = dst[REFLECTANCE].attrs.asdict()
    layout = attrs["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == ["r10m", "r20m", "r60m", "r120m"]
    assert [e.get("derived_from") for e in layout] == [None, "r10m", "r10m", "r60m"]
    assert [e.get("transform", {}).get("scale") for e in layout] == [
        None,
        [2.0, 2.0],
        [6.0, 6.0],
        [2.0, 2.0],
    ]
    assert attrs["multiscales"]["resampling_method"] == "average"
    assert dst[SCL].attrs["multiscales"]["resampling_method"] == "mode"
    assert attrs["proj:code"] == product[0].item.properties["proj:code"]
    for entry in layout:
        level = dst[f"{REFLECTANCE}/{entry['asset']}"]
        assert list(level["b04"].shape) == entry["spatial:shape"] == level.attrs["spatial:shape"]
        a, _, c, _, e, f = entry["spatial:transform"]
        x, y = level["x"][:], level["y"][:]
        np.testing.assert_allclose(x, c + a * (np.arange(x.size) + 0.5))
        np.testing.assert_allclose(y, f + e * (np.arange(y.size) + 0.5))
    for level in ("r10m", "r20m", "r60m"):  # the product's own pixel centres
        np.testing.assert_allclose(
            dst[f"{REFLECTANCE}/{level}/x"][:], src[f"{REFLECTANCE}/{level}/x"][:]
        )
        np.testing.assert_allclose(
            dst[f"{REFLECTANCE}/{level}/y"][:], src[f"{REFLECTANCE}/{level}/y"][:]
        )
    b04 = dst[f"{REFLECTANCE}/r10m/b04"]
    assert b04.chunks == (CHUNK, CHUNK) and b04.shards == (SHARD, SHARD)


def test_xarray_and_rioxarray_decode_once(product, converted):
    """Scale and offset are applied once on read; CRS and transform come from spatial_ref."""
    pytest.importorskip("rioxarray")
    src = _source(product)
    _, out = converted
    raw = np.asarray(src[f"{REFLECTANCE}/r20m/b04"][:])
    scale = src[f"{REFLECTANCE}/r20m/b04"].attrs["scale_factor"]
    offset = src[f"{REFLECTANCE}/r20m/b04"].attrs["add_offset"]
    assert offset == -0.1
    ds = xr.open_zarr(str(out), group=f"{REFLECTANCE}/r20m")
    expected = np.where(raw == 0, np.nan, raw * scale + offset)
    np.testing.assert_allclose(ds["b04"].values, expected, rtol=0, atol=1e-9)
    assert ds.rio.crs.to_string() == product[0].item.properties["proj:code"]
    layout = zarr.open_group(str(out), mode="r")[REFLECTANCE].attrs["multiscales"]["layout"]
    a, b, c, d, e, f = layout[1]["spatial:transform"]
    assert tuple(ds.rio.transform())[:6] == pytest.approx((a, b, c, d, e, f))


def test_gdal_reads_georeferencing(product, small_blocks, tmp_path):
    """GDAL's Zarr driver reads the CF grid mapping (unsharded store: --no-shards)."""
    major, minor = (int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    if (major, minor) < (3, 11):
        pytest.skip(
            f"GDAL {rasterio.__gdal_version__} predates Zarr v3's 'bytes' codec (GDAL 3.11)"
        )
    _, item_file = product
    out = tmp_path / "plain.zarr"
    convert(str(item_file), str(out), shard=None, min_size=MIN_SIZE)
    path = f'ZARR:"{out}":/{REFLECTANCE}/r20m/b04'
    with rasterio.open(path) as ds:
        assert ds.crs.to_string() == product[0].item.properties["proj:code"]
        layout = zarr.open_group(str(out), mode="r")[REFLECTANCE].attrs["multiscales"]["layout"]
        assert tuple(ds.transform)[:6] == pytest.approx(tuple(layout[1]["spatial:transform"]))
        np.testing.assert_array_equal(ds.read(1), _source(product)[f"{REFLECTANCE}/r20m/b04"][:])


def test_output_is_valid_geozarr(converted):
    _, out = converted
    assert validate_geozarr(str(out)) == []


def test_stac_item_describes_the_store(product, converted):
    result, out = converted
    source_item = product[0].item
    collection_path = out.parent / "S2.stac" / "collection.json"
    assert result.catalog_href == str(collection_path)
    item_path = collection_path.parent / source_item.id / f"{source_item.id}.json"
    item = pystac.Item.from_file(str(item_path))
    validate_stac(item.to_dict())
    assert item.datetime == source_item.datetime
    assert item.geometry == source_item.geometry
    assert item.properties["proj:code"] == source_item.properties["proj:code"]
    r10m = zarr.open_group(str(out), mode="r")[f"{REFLECTANCE}/r10m"]
    assert item.properties["proj:shape"] == r10m.attrs["spatial:shape"]
    assert item.properties["proj:transform"] == r10m.attrs["spatial:transform"]
    assert "processing:lineage" in item.properties
    assert "cloudfree" in item.properties["processing:software"]
    reflectance = item.assets["reflectance"]
    assert reflectance.media_type == MULTISCALES_MEDIA_TYPE
    assert reflectance.roles == ["data"]
    assert reflectance.get_absolute_href() == str(out / REFLECTANCE)
    bands = {b["name"]: b for b in reflectance.extra_fields["bands"]}
    assert set(bands) == {"b02", "b03", "b04", "b08"}
    assert all(b["nodata"] == 0 and b["data_type"] == "uint16" for b in bands.values())
    assert bands["b04"]["eo:common_name"] == "red"
    raster = reflectance.extra_fields["raster:bands"]
    assert {(r["scale"], r["offset"]) for r in raster} == {(0.0001, -0.1)}
    store = item.assets["zarr"]
    payload = (out / "zarr.json").read_bytes()
    assert store.extra_fields["file:checksum"] == "1220" + hashlib.sha256(payload).hexdigest()
    thumb = item.assets["thumbnail"]
    image = Image.open(io.BytesIO(Path(thumb.get_absolute_href()).read_bytes()))
    r120 = zarr.open_group(str(out), mode="r")[f"{REFLECTANCE}/r120m/b04"]
    assert image.mode == "RGBA" and image.size == r120.shape[::-1]


def test_direct_zarr_url_is_refused(product, tmp_path):
    written, _ = product
    for ref in (
        str(written.path),
        f"{written.path}/measurements/reflectance/r10m/b04",
        "https://objects.eodc.eu/e05ab01a9d56408d82ac32d69a5aae2a:202511-s02msil2a/P.zarr",
    ):
        with pytest.raises(InvalidInputError, match=r"not a STAC item.*item's assets"):
            convert(ref, str(tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()
    runner = CliRunner()
    outcome = runner.invoke(cli, ["convert", str(written.path), "--out", str(tmp_path / "y.zarr")])
    assert outcome.exit_code == 2
    assert "pass" in outcome.output or "STAC item" in outcome.output


def test_rerun_refuses_and_keeps_the_store(product, converted):
    _, item_file = product
    _, out = converted
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(str(item_file), str(out), shard=SHARD, min_size=MIN_SIZE)
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before


def test_overwrite_and_band_subset(product, small_blocks, tmp_path):
    _, item_file = product
    out = tmp_path / "sub.zarr"
    convert(str(item_file), str(out), bands=["b04"], min_size=MIN_SIZE)
    result = convert(str(item_file), str(out), bands=["B04", "scl"], overwrite=True)
    assert [g.path for g in result.groups] == [REFLECTANCE, SCL]
    dst = zarr.open_group(str(out), mode="r")
    assert sorted(dst[f"{REFLECTANCE}/r10m"].array_keys()) == ["b04", "spatial_ref", "x", "y"]
    with pytest.raises(InvalidInputError, match="None of the bands"):
        convert(str(item_file), str(tmp_path / "none.zarr"), bands=["b99"])


def test_convert_to_s3(product, small_blocks, s3_server, tmp_path, converted):
    _, item_file = product
    bucket = s3_server.create_bucket()
    url = f"s3://{bucket}/geozarr/S2.zarr"
    options = s3_server.storage_options()
    result = convert(
        str(item_file),
        url,
        catalog_dir=str(tmp_path / "catalog"),
        storage_options=options,
        shard=SHARD,
        min_size=MIN_SIZE,
    )
    assert result.store_url == url
    assert validate_geozarr(url, options) == []
    remote = xr.open_zarr(url, group=f"{REFLECTANCE}/r20m", storage_options=options)
    local = xr.open_zarr(str(converted[1]), group=f"{REFLECTANCE}/r20m")
    xr.testing.assert_identical(remote.load(), local.load())
    item = pystac.Item.from_file(
        str(tmp_path / "catalog" / result.item.id / f"{result.item.id}.json")
    )
    assert item.assets["reflectance"].href == f"{url}/{REFLECTANCE}"
    with pytest.raises(OutputExistsError):
        convert(str(item_file), url, storage_options=options, catalog_dir=str(tmp_path / "c2"))


def test_cli_convert_then_validate(product, tmp_path):
    _, item_file = product
    out = tmp_path / "cli.zarr"
    runner = CliRunner()
    done = runner.invoke(cli, ["convert", str(item_file), "--out", str(out), "--bands", "b04,b03"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cli.stac" / "collection.json").is_file()
    checked = runner.invoke(cli, ["validate", str(out)])
    assert checked.exit_code == 0 and "valid GeoZarr" in checked.output
    again = runner.invoke(cli, ["convert", str(item_file), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.realdata
def test_structure_matches_the_real_converted_hierarchy(realdata, converted):
    """Group names and attribute keys as in the EOPF Explorer's real GeoZarr output."""
    real = json.loads((realdata / REAL_OUTPUT).read_text())
    real_refl = real["members"]["measurements"]["members"]["reflectance"]
    _, out = converted
    ours = zarr.open_group(str(out), mode="r")[REFLECTANCE]
    # the group above the levels: every key the real one has
    assert set(real_refl["attributes"]) <= set(ours.attrs)
    real_names = {c["name"] for c in real_refl["attributes"]["zarr_conventions"]}
    assert {c["name"] for c in ours.attrs["zarr_conventions"]} == real_names
    real_item_keys = set().union(
        *(e.keys() for e in real_refl["attributes"]["multiscales"]["layout"])
    )
    our_item_keys = set().union(*(e.keys() for e in ours.attrs["multiscales"]["layout"]))
    assert real_item_keys <= our_item_keys
    # a level group, its spatial_ref and a band (the real converter's legacy proj:* array
    # attributes aside: the level group carries the grid once)
    real_level = real_refl["members"]["r20m"]
    assert set(real_level["attributes"]) <= set(ours["r20m"].attrs)
    assert set(real_level["members"]["spatial_ref"]["attributes"]) <= set(
        ours["r20m/spatial_ref"].attrs
    )
    real_band = {k for k in real_level["members"]["b05"]["attributes"] if not k.startswith("proj:")}
    assert real_band <= set(ours["r20m/b04"].attrs)
    assert real_level["members"]["b05"]["dimension_names"] == list(
        ours["r20m/b04"].metadata.dimension_names
    )
    # the same levels for a real product's shapes
    layout = real_refl["attributes"]["multiscales"]["layout"]
    from affine import Affine
    from odc.geo.geobox import GeoBox

    grids = [
        (GeoBox((n, n), Affine(r, 0, 699960, 0, -r, 4700040), "EPSG:32632"), ("b02",))
        for n, r in ((10980, 10), (5490, 20), (1830, 60))
    ]
    planned = plan_levels(grids)
    assert [lv.name for lv in planned] == [e["asset"] for e in layout]
    assert [lv.derived_from for lv in planned] == [e.get("derived_from") for e in layout]
    for lv, entry in zip(planned, layout, strict=True):
        assert (
            abs(lv.geobox.shape.y - entry["spatial:shape"][0]) <= 1
        )  # 153 vs 152: ceil, not floor


def test_sentinel1_grd_radar_geometry_is_refused(tmp_path):
    from cloudfree.testing.eopf_s1 import write_s1_grd_product

    item = write_s1_grd_product(tmp_path / "S1A_IW_GRDH_radar.zarr", map_grid=False)
    item_file = tmp_path / "s1.json"
    item_file.write_text(json.dumps(item.to_dict(transform_hrefs=False)))
    with pytest.raises(InvalidInputError, match=r"radar geometry.*terrain-correct"):
        convert(str(item_file), str(tmp_path / "s1.zarr"))
    assert not (tmp_path / "s1.zarr").exists()


def test_sentinel1_grd_on_a_map_grid_converts(tmp_path):
    from cloudfree.testing.eopf_s1 import write_s1_grd_product

    product = tmp_path / "S1A_IW_GRDH_utm.zarr"
    item = write_s1_grd_product(product, map_grid=True)
    item_file = tmp_path / "s1.json"
    item_file.write_text(json.dumps(item.to_dict(transform_hrefs=False)))
    out = tmp_path / "s1.zarr"
    result = convert(str(item_file), str(out), min_size=32)
    assert [g.path.split("/", 1)[1] for g in result.groups] == ["measurements"] * 2
    assert validate_geozarr(str(out)) == []
    src = zarr.open_group(str(product), mode="r", zarr_format=2)
    dst = zarr.open_group(str(out), mode="r")
    for group in result.groups:
        level0, level1 = group.levels[0].name, group.levels[1].name
        grd = np.asarray(src[f"{group.path}/grd"][:])
        np.testing.assert_array_equal(dst[f"{group.path}/{level0}/grd"][:], grd)
        np.testing.assert_array_equal(dst[f"{group.path}/{level1}/grd"][:], _mean_reference(grd, 2))
    assert result.item.properties["proj:code"] == "EPSG:32631"


def test_item_url_over_http(archive, http_server, small_blocks, tmp_path):
    """A STAC item URL whose product is served over HTTP, as EOPF's are."""
    served = tmp_path / "served"
    served.mkdir()
    scene = archive.scenes[0]
    server = http_server(served)
    written = write_eopf_archive(archive, served, scene_ids=[scene.id], base_url=server.url)
    item = written.products[0].item
    (served / "item.json").write_text(json.dumps(item.to_dict(transform_hrefs=False)))
    out = tmp_path / "http.zarr"
    result = convert(server.url_for("item.json"), str(out), min_size=MIN_SIZE, shard=SHARD)
    assert result.item.id == item.id
    assert server.requests.for_path(f"{written.products[0].path.name}/.zmetadata")
    src = zarr.open_group(str(written.products[0].path), mode="r", zarr_format=2)
    np.testing.assert_array_equal(
        zarr.open_group(str(out), mode="r")[f"{REFLECTANCE}/r10m/b02"][:],
        src[f"{REFLECTANCE}/r10m/b02"][:],
    )
    derived = [link for link in result.item.links if link.rel == "derived_from"]
    assert derived and derived[0].href == server.url_for("item.json")


def test_pyramid_kernels_on_edges_and_ties():
    from cloudfree.convert.pyramid import block_mean, block_mode

    dn = np.array([[0, 0, 5], [0, 3, 6], [7, 8, 0]], dtype=np.uint16)
    # blocks: [[0,0],[0,3]] -> 3; [[5],[6]] -> 5.5 -> 6 (half to even); [[7,8]] -> 7.5 -> 8; [[0]]
    np.testing.assert_array_equal(block_mean(dn, 2, 0), [[3, 6], [8, 0]])
    classes = np.array([[4, 5, 0], [5, 4, 0], [9, 9, 0]], dtype=np.uint8)
    # a 2-2 tie between 4 and 5 keeps 4; the all-nodata edge block stays 0
    np.testing.assert_array_equal(block_mode(classes, 2, 0), [[4, 0], [9, 0]])


def test_misaligned_resolution_groups_are_refused():
    from affine import Affine
    from odc.geo.geobox import GeoBox

    base = GeoBox((60, 60), Affine(10, 0, 0, 0, -10, 600), "EPSG:32631")
    shifted = GeoBox((20, 20), Affine(30, 0, 5, 0, -30, 600), "EPSG:32631")
    with pytest.raises(InvalidInputError, match="not an integer multiple of r10m aligned"):
        plan_levels([(base, ("b02",)), (shifted, ("b02",))])
