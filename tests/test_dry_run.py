"""--dry-run prints the plan without writing; a job over the memory limit is refused up front."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from tests.job_options import WINTER, mosaic_options

import cloudfree
from cloudfree.budget import PROCESS_BASE_BYTES, check_memory, parse_memory
from cloudfree.cli.main import cli
from cloudfree.errors import InvalidInputError, MemoryLimitError
from cloudfree.pipeline import build_request, dry_run

START, END = WINTER


def cli_args(archive, out, *extra):
    west, south, east, north = archive.bbox
    return [
        "mosaic", "--stac", str(archive.catalog), "--bbox", str(west), str(south), str(east),
        str(north), "--start-date", START, "--end-date", END, "--bands", "red", "--bands", "nir",
        "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64", "--no-quicklook",
        "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def made(archive, tmp_path_factory):
    """A real run of the job, to hold the plan's numbers against."""
    out = tmp_path_factory.mktemp("made") / "made.zarr"
    return cloudfree.mosaic(**mosaic_options(archive, out))


def test_dry_run_numbers_match_what_a_run_writes(archive, tmp_path, made):
    summary = dry_run(build_request(**mosaic_options(archive, tmp_path / "plan.zarr")))
    assert summary.shape == made.shape
    assert summary.units == made.units
    assert summary.scenes == len(made.scenes)
    assert summary.periods == tuple(p.label for p in made.periods)
    ds = xr.open_zarr(made.out, mask_and_scale=False)
    written = {name: ds[name].dtype.name for name in ("red", "nir", "observations")}
    assert dict(summary.variables) == written
    tiles = -(-made.shape[1] // 64) * -(-made.shape[2] // 64)
    assert made.units == tiles  # every tile has a unit, so every value is written
    assert summary.bytes_to_write == sum(ds[name].nbytes for name in written)
    # every solar day's pixels, at least once per band; at most each scene's padded window
    pixels = made.shape[1] * made.shape[2]
    padded = made.units * (64 + 2 * summary.halo) ** 2
    days = summary.solar_days
    assert days * pixels * (2 * 2 + 1) * 0.5 <= summary.bytes_to_read
    assert summary.bytes_to_read <= summary.scenes * padded * (2 * 2 + 1)
    assert summary.unit_peak_bytes > (64 + 2 * summary.halo) ** 2 * 2 * 2  # holds a stack
    assert summary.worker_peak_bytes > PROCESS_BASE_BYTES
    assert not (tmp_path / "plan.zarr").exists() and not list(tmp_path.iterdir())


def test_cli_dry_run_prints_the_plan_and_writes_nothing(archive, tmp_path, made):
    out = tmp_path / "dry.zarr"
    result = CliRunner().invoke(cli, cli_args(archive, out, "--dry-run"))
    assert result.exit_code == 0, result.output
    t, y, x = made.shape
    assert f"{t} x {y} x {x}" in result.output
    assert f"work units    {made.units} " in result.output
    assert "to write" in result.output and "peak memory" in result.output
    assert not out.exists() and not (tmp_path / "dry.stac").exists()


def test_over_the_memory_limit_is_refused_before_anything_is_written(archive, tmp_path):
    out = tmp_path / "refused.zarr"
    summary = dry_run(build_request(**mosaic_options(archive, out, threads=1)))
    limit = str(summary.process_base_bytes + summary.unit_peak_bytes // 2)
    with pytest.raises(MemoryLimitError, match=r"--chunk-size \(now 64 px\).*--memory-limit"):
        cloudfree.mosaic(**mosaic_options(archive, out, threads=1, memory_limit=limit))
    assert not out.exists() and not list(tmp_path.iterdir())
    args = cli_args(archive, out, "--threads", "1", "--memory-limit", limit)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "Lower --chunk-size" in result.stderr
    assert not out.exists()
    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 2 and "DOES NOT FIT" in dry.output and not out.exists()
    small = CliRunner().invoke(cli, cli_args(archive, out, "--memory-limit", "100MB"))
    assert small.exit_code == 2 and "GDAL_CACHEMAX" in small.stderr and not out.exists()


def test_threads_per_worker_multiply_the_peak(archive, tmp_path):
    one = dry_run(build_request(**mosaic_options(archive, tmp_path / "a.zarr", threads=1)))
    four = dry_run(build_request(**mosaic_options(archive, tmp_path / "a.zarr", threads=4)))
    assert four.worker_peak_bytes - one.worker_peak_bytes == 3 * one.unit_peak_bytes
    limit = one.worker_peak_bytes + one.unit_peak_bytes
    check_memory(one.__class__(**{**one.__dict__, "memory_limit": limit}))
    with pytest.raises(MemoryLimitError, match="--threads, now 4"):
        check_memory(four.__class__(**{**four.__dict__, "memory_limit": limit}))


def test_memory_sizes():
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory(1000) == 1000
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(InvalidInputError, match="memory-limit"):
            parse_memory(bad)
    np.testing.assert_equal(parse_memory("1.5 GiB"), int(1.5 * 2**30))


def test_dry_run_of_a_resumed_run_counts_the_units_left(archive, tmp_path):
    out = tmp_path / "part.zarr"
    first = cloudfree.mosaic(**mosaic_options(archive, out, limit=3))
    summary = dry_run(build_request(**mosaic_options(archive, out, resume=True)))
    assert summary.units == first.units - 3
    limited = dry_run(build_request(**mosaic_options(archive, out, resume=True, limit=2)))
    assert limited.units == 2 and limited.bytes_to_write < summary.bytes_to_write
