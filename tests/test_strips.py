"""Tiles whose stack passes the limit are composited in row strips, with the same values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from tests.job_options import mosaic_options

import cloudfree
from cloudfree.budget import STRIP_ROWS_MULTIPLE, UNIT_OVERHEAD_BYTES, stack_bytes, strip_rows
from cloudfree.config import ReadSettings, read_settings
from cloudfree.errors import InvalidInputError
from cloudfree.load import source_block_rows
from cloudfree.pipeline import build_request, dry_run, plan, search
from cloudfree.scene import BandAsset


def test_a_tile_that_fits_is_one_strip():
    whole = stack_bytes(1024 * 1024, 24, 4, 1)
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole) == 1024


def test_strips_are_the_fewest_equal_ones_that_fit():
    whole = stack_bytes(1024 * 1024, 24, 4, 1)
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole - 1) == 512
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole // 2) == 512
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole // 2 - 1) == 384  # three strips
    # the halo is read with every strip and counts against the limit
    limit = stack_bytes((512 + 2 * 8) * (1024 + 2 * 8), 24, 4, 1)
    assert strip_rows((1024, 1024), 8, 24, 4, 1, limit) == 512
    assert strip_rows((1024, 1024), 8, 24, 4, 1, limit - 1) == 384
    # never thinner than the multiple; an edge tile shorter than a strip is one strip
    assert strip_rows((1024, 1024), 0, 24, 4, 1, 1) == STRIP_ROWS_MULTIPLE
    assert strip_rows((100, 1024), 0, 24, 4, 1, 1) == 100


def test_stack_memory_setting():
    assert read_settings({"CLOUDFREE_STACK_MEMORY": "64MiB"}).stack_bytes == 64 * 2**20
    assert read_settings({}).stack_bytes == 192 * 2**20
    with pytest.raises(InvalidInputError, match="CLOUDFREE_STACK_MEMORY 'lots'"):
        read_settings({"CLOUDFREE_STACK_MEMORY": "lots"})


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("median", {}),
        # cloud-distance scores read context around each strip; dates are provenance layers
        ("best-pixel", {"provenance": True, "bands": ["blue", "red", "nir"]}),
        ("medoid", {"provenance": True}),
    ],
)
def test_strips_give_the_values_of_one_pass(archive, tmp_path, monkeypatch, method, extra):
    """The default SCL mask's clean-up needs a halo: every strip is read with its own."""
    options = dict(resolution=10.0, chunk_size=512, method=method, **extra)
    whole = cloudfree.mosaic(**mosaic_options(archive, tmp_path / "whole.zarr", **options))
    monkeypatch.setenv("CLOUDFREE_STACK_MEMORY", "1")  # strips of 128 rows
    request = build_request(**mosaic_options(archive, tmp_path / "strips.zarr", **options))
    assert request.stack_limit == 1 and dry_run(request).halo > 0
    strips = cloudfree.mosaic(**mosaic_options(archive, tmp_path / "strips.zarr", **options))
    assert whole.shape[1] > 2 * STRIP_ROWS_MULTIPLE  # so there are several strips
    a = xr.open_zarr(whole.out, mask_and_scale=False, decode_times=False).load()
    b = xr.open_zarr(strips.out, mask_and_scale=False, decode_times=False).load()
    assert float(a["red"].notnull().mean()) > 0.5
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_strips_bound_the_estimated_peak(archive, tmp_path, monkeypatch):
    options = dict(resolution=10.0, chunk_size=512)
    whole = dry_run(build_request(**mosaic_options(archive, tmp_path / "a.zarr", **options)))
    monkeypatch.setenv("CLOUDFREE_STACK_MEMORY", "1")
    strips = dry_run(build_request(**mosaic_options(archive, tmp_path / "a.zarr", **options)))
    # 128 of 279 rows at once (with the halo: 148 of 299)
    assert strips.unit_peak_bytes - UNIT_OVERHEAD_BYTES < 0.6 * (
        whole.unit_peak_bytes - UNIT_OVERHEAD_BYTES
    )
    # a day's clear share is the whole tile's: no strips then
    fraction = dict(options, min_clear_fraction=0.5)
    kept = dry_run(build_request(**mosaic_options(archive, tmp_path / "a.zarr", **fraction)))
    assert kept.unit_peak_bytes == whole.unit_peak_bytes


def test_strips_never_cut_a_source_block():
    whole = stack_bytes(1024 * 1024, 24, 4, 1)
    # 1024-row blocks (Sentinel-2's JPEG 2000, Earth Search's COGs): one strip, past the limit,
    # rather than two that decode every block twice
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole - 1, block_rows=1024) == 1024
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole - 1, block_rows=512) == 512
    # three strips of 384 rows would cut 256-row blocks: four of 256
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole // 2 - 1, block_rows=256) == 256
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole // 2 - 1, block_rows=None) == 384
    # blocks shorter than the multiple change nothing; a tile that fits is one strip anyway
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole // 2 - 1, block_rows=64) == 384
    assert strip_rows((1024, 1024), 0, 24, 4, 1, whole, block_rows=4096) == 1024


def source_file(path, resolution, block):
    profile = dict(
        driver="GTiff", width=512, height=512, count=1, dtype="uint16", crs="EPSG:32633",
        transform=Affine(resolution, 0, 500000, 0, -resolution, 6000000), tiled=True,
        blockxsize=block, blockysize=block,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 512, 512), dtype=np.uint16))
    return str(path)


def test_the_sources_block_height_is_read_on_the_output_grid(tmp_path):
    grid = GeoBox((1024, 1024), Affine(10, 0, 500000, 0, -10, 6000000), "EPSG:32633")
    coarse = source_file(tmp_path / "b20.tif", 20, 512)
    fine = source_file(tmp_path / "b10.tif", 10, 256)

    def scene(href):
        asset = BandAsset(href, 1e-4, 0.0, 0, 10)
        return SimpleNamespace(bands={"B04": asset})

    settings = ReadSettings()
    assert source_block_rows([scene(coarse)], "B04", grid, settings) == 1024  # 512 x 20 m / 10 m
    assert source_block_rows([scene(fine)], "B04", grid, settings) == 256
    assert source_block_rows([scene(fine)], "B04", grid.zoom_out(2), settings) == 128
    # unknown: no scene with the band, a Zarr array, a file that does not open
    assert source_block_rows([scene(fine)], "B08", grid, settings) is None
    assert source_block_rows([scene(str(tmp_path / "a.zarr/b04"))], "B04", grid, settings) is None
    assert source_block_rows([scene(str(tmp_path / "absent.tif"))], "B04", grid, settings) is None


def test_a_plan_knows_its_sources_block_height(archive, tmp_path):
    for resolution, rows in ((10.0, 128), (20.0, 64)):  # the archive's COGs: 128 px blocks
        request = build_request(
            **mosaic_options(archive, tmp_path / "a.zarr", resolution=resolution)
        )
        assert plan(request, search(request)).block_rows == rows
