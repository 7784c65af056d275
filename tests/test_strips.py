"""Tiles whose stack passes the limit are composited in row strips, with the same values."""

from __future__ import annotations

import pytest
import xarray as xr
from tests.job_options import mosaic_options

import cloudfree
from cloudfree.budget import STRIP_ROWS_MULTIPLE, UNIT_OVERHEAD_BYTES, stack_bytes, strip_rows
from cloudfree.config import read_settings
from cloudfree.errors import InvalidInputError
from cloudfree.pipeline import build_request, dry_run


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
