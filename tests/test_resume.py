"""Stopped runs resume without redoing finished work, and a store has one writer at a time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from tests.job_options import WINTER, mosaic_options
from tests.killed_runs import kill_9_and_resume, start

import cloudfree
import cloudfree.errors
import cloudfree.stack
from cloudfree.cli.main import cli
from cloudfree.errors import InvalidInputError, StoreLockedError
from cloudfree.store.manifest import Manifest

START, END = WINTER


def same_values(a, b):
    x, y = xr.open_zarr(a), xr.open_zarr(b)
    for name in ("red", "nir", "observations"):
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


@pytest.fixture(scope="module")
def whole(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "whole.zarr"
    return cloudfree.mosaic(**mosaic_options(archive, out))


def chunk_files(store: Path) -> dict[str, int]:
    return {
        str(p.relative_to(store)): p.stat().st_mtime_ns
        for p in (store / "red" / "c").rglob("*")
        if p.is_file()
    }


def test_limit_then_resume_is_identical_and_keeps_finished_regions(archive, tmp_path, whole):
    out = tmp_path / "parts.zarr"
    first = cloudfree.mosaic(**mosaic_options(archive, out, limit=3))
    assert first.remaining == first.units - 3 and first.catalog is None
    done = Manifest(str(out)).finished()
    assert len(done) == 3 and all(len(r["sha256"]) == 64 for r in done.values())
    written = chunk_files(out)
    time.sleep(0.05)
    second = cloudfree.mosaic(**mosaic_options(archive, out, resume=True))
    assert second.remaining == 0 and second.catalog is not None
    after = chunk_files(out)
    assert all(after[name] == mtime for name, mtime in written.items())  # not rewritten
    same_values(out, whole.out)
    assert len(Manifest(str(out)).finished()) == whole.units and not Manifest(str(out)).failures()
    assert not (out / "_cloudfree" / "lock.json").exists()


def test_resume_refuses_another_job_and_a_missing_store(archive, tmp_path):
    out = tmp_path / "m.zarr"
    cloudfree.mosaic(**mosaic_options(archive, out, limit=1))
    with pytest.raises(InvalidInputError, match=r"different job.*bands"):
        cloudfree.mosaic(**{**mosaic_options(archive, out, resume=True), "bands": ["red"]})
    with pytest.raises(InvalidInputError, match="no store"):
        cloudfree.mosaic(**mosaic_options(archive, tmp_path / "none.zarr", resume=True))
    with pytest.raises(InvalidInputError, match="pick one"):
        cloudfree.mosaic(**mosaic_options(archive, out, resume=True, overwrite=True))


def test_a_live_writer_locks_the_store_and_a_dead_ones_lock_is_taken_over(archive, tmp_path):
    out = tmp_path / "locked.zarr"
    cloudfree.mosaic(**mosaic_options(archive, out, limit=1))
    lock = out / "_cloudfree" / "lock.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"host": socket.gethostname(), "pid": sleeper.pid, "started": "now"}
        lock.write_text(json.dumps(holder))
        with pytest.raises(StoreLockedError, match=f"process {sleeper.pid}"):
            cloudfree.mosaic(**mosaic_options(archive, out, resume=True))
        with pytest.raises(StoreLockedError):
            cloudfree.mosaic(**mosaic_options(archive, out, overwrite=True))
        result = CliRunner().invoke(
            cli, ["mosaic", "--stac", str(archive.catalog), "--start-date", START, "--end-date",
                  END, "--bbox", *map(str, archive.bbox), "--bands", "red", "--bands", "nir",
                  "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64",
                  "--no-quicklook", "--out", str(out), "--resume"],
        )  # fmt: skip
        assert result.exit_code == 2 and "being written by another run" in result.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone (as after kill -9): its lock is taken over
    assert cloudfree.mosaic(**mosaic_options(archive, out, resume=True)).remaining == 0


def test_kill_9_of_the_whole_run_then_resume_is_bit_identical(archive, tmp_path, whole):
    out = tmp_path / "killed.zarr"
    west, south, east, north = archive.bbox
    command = [
        sys.executable, "-m", "cloudfree.cli.main", "-q", "mosaic", "--stac",
        str(archive.catalog), "--bbox", str(west), str(south), str(east), str(north),
        "--start-date", START, "--end-date", END, "--bands", "red", "--bands", "nir",
        "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64", "--threads", "1",
        "--no-quicklook", "--out", str(out),
    ]  # fmt: skip
    kill_9_and_resume(start(command), command, out, 3, whole.units)
    same_values(out, whole.out)


class Failing:
    """A method that fails, to see failures recorded."""

    name = "failing"
    output = cloudfree.stack.Output.REFLECTANCE
    provenance = ()

    def context_m(self):
        return 0.0

    def __call__(self, obs):
        raise cloudfree.errors.ReadError("boom: s3://bucket/key?X-Amz-Signature=secret")

    def describe(self):
        return "fails"


def test_a_failed_unit_is_recorded_with_its_reason_and_no_secret(archive, tmp_path):
    out = tmp_path / "failed.zarr"
    with pytest.raises(cloudfree.errors.RunFailedError, match="boom"):
        cloudfree.mosaic(
            **mosaic_options(archive, out, method="tests.test_resume:Failing", threads=1)
        )
    failures = Manifest(str(out)).failures()
    assert failures and all("boom" in r["reason"] for r in failures.values())
    assert not any("secret" in r["reason"] for r in failures.values())
    assert not Manifest(str(out)).finished()
    assert not (out / "_cloudfree" / "lock.json").exists()
