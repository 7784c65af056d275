"""The data cube: shape before pixels, values as loaded, resume without rewrites, one writer,
and mosaics from the cube equal to mosaics from the scenes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner
from tests.job_options import WINTER, job_options
from tests.killed_runs import kill_9_and_resume, start, wait_for_units

import cloudfree
from cloudfree.cli.main import cli
from cloudfree.cube import build_cube_request, cube, plan_cube, search_cube
from cloudfree.errors import InvalidInputError, OutputExistsError, StoreLockedError
from cloudfree.load import load_stack
from cloudfree.stack import NODATA
from cloudfree.store.cube_store import read_info
from cloudfree.store.manifest import Manifest

START, END = WINTER
VARIABLES = ("red", "nir", "scl")


def options(archive, out, **extra):
    sharded = dict(time_chunk=2, time_shard=4, margin_m=400.0)  # a unit writes a shard of 2 chunks
    return job_options(archive, out, **sharded) | extra


def raw(store, name):
    return zarr.open_group(str(store), mode="r")[name][...]


def same_values(a, b, names=VARIABLES):
    for name in names:
        np.testing.assert_array_equal(raw(a, name), raw(b, name), err_msg=name)


def chunk_files(store: Path) -> dict[str, int]:
    return {
        str(p.relative_to(store)): p.stat().st_mtime_ns
        for name in VARIABLES
        for p in (store / name / "c").rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def whole(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("cube") / "whole.zarr"
    return cube(**options(archive, out))


def test_initialize_sizes_the_store_from_the_search_before_any_pixel(archive, tmp_path, whole):
    out = tmp_path / "empty.zarr"
    result = cube(**options(archive, out, initialize=True))
    assert result.remaining == result.units == whole.units
    assert not chunk_files(out)  # no pixel read or written
    scenes = search_cube(build_cube_request(**options(archive, tmp_path / "x.zarr")))
    days = sorted({s.solar_day for s in scenes})
    assert len(days) < len(scenes)  # two tiles a day: one layer per solar day
    ds = xr.open_zarr(out)
    assert ds["red"].shape == result.shape == (len(days), *ds["red"].shape[1:])
    assert [str(t)[:10] for t in ds["time"].values] == [d.isoformat() for d in days]
    assert ds["time"].encoding["units"] == "days since 1970-01-01"
    assert ds["scl"].dtype == np.uint8 and int(raw(out, "scl").max()) == 0
    assert ds["red"].encoding["scale_factor"] == 1e-4
    red = zarr.open_group(str(out))["red"]
    assert red.chunks == (2, 64, 64) and red.shards == (4, 64, 64)
    assert Manifest(str(out)).plan() is not None and not Manifest(str(out)).finished()
    assert ds.attrs["proj:code"] == "EPSG:2157"
    # the grid is the area's, padded by the 400 m margin (20 pixels)
    info = read_info(str(out))
    assert info.margin == 20 and info.area_geobox.shape.x + 40 == ds.sizes["x"]


def test_values_are_those_of_load_stack_on_any_window(archive, whole):
    request = build_cube_request(**options(archive, whole.out, initialize=False))
    job = plan_cube(request, search_cube(request))
    geobox = job.info.geobox[37:101, 50:150]  # across tiles and shard boundaries
    stack = load_stack(geobox, job.scenes, request.load, request.settings)
    assert len(stack.days) >= 10
    rows = [job.info.days.index(day) for day in stack.days]
    others = [t for t in range(len(job.info.days)) if t not in rows]
    for i, name in enumerate(("red", "nir")):
        stored = raw(whole.out, name)[:, 37:101, 50:150]
        np.testing.assert_array_equal(stored[rows], stack.data[:, i])
        assert (stored[others] == NODATA).all()
    np.testing.assert_array_equal(raw(whole.out, "scl")[rows, 37:101, 50:150], stack.scl)
    assert (stack.data != NODATA).any() and (stack.scl != 0).any()


def test_limit_then_resume_is_identical_and_keeps_finished_regions(archive, tmp_path, whole):
    out = tmp_path / "parts.zarr"
    first = cube(**options(archive, out, limit=5))
    assert first.remaining == first.units - 5
    done = Manifest(str(out)).finished()
    assert len(done) == 5 and all(len(r["sha256"]) == 64 for r in done.values())
    written = chunk_files(out)
    assert written
    time.sleep(0.05)
    second = cube(**options(archive, out, resume=True))
    assert second.remaining == 0
    after = chunk_files(out)
    assert all(after[name] == mtime for name, mtime in written.items())  # not rewritten
    same_values(out, whole.out)
    assert len(Manifest(str(out)).finished()) == whole.units
    # the manifest's checksums are those of the regions now in the store
    assert Manifest(str(out)).finished().keys() == Manifest(whole.out).finished().keys()
    for key, record in Manifest(whole.out).finished().items():
        assert Manifest(str(out)).finished()[key]["sha256"] == record["sha256"]
    assert not (out / "_cloudfree" / "lock.json").exists()


def test_kill_9_then_resume_is_bit_identical_and_a_second_writer_is_refused(
    archive, tmp_path, whole
):
    out = tmp_path / "killed.zarr"
    west, south, east, north = archive.bbox
    command = [
        sys.executable, "-m", "cloudfree.cli.main", "-q", "cube", "--stac",
        str(archive.catalog), "--bbox", str(west), str(south), str(east), str(north),
        "--start-date", START, "--end-date", END, "--bands", "red", "--bands", "nir",
        "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64", "--time-chunk", "2",
        "--time-shard", "4", "--margin", "400", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    run = start(command)
    wait_for_units(run, out, 1)
    assert run.poll() is None, "the run finished before a second one could start"
    # a second run on the same store, while the first writes it, is refused
    with pytest.raises(StoreLockedError, match=f"process {run.pid}"):
        cube(**options(archive, out, resume=True))
    with pytest.raises(StoreLockedError):
        cube(**options(archive, out, overwrite=True))
    kill_9_and_resume(run, command, out, 3, whole.units)
    same_values(out, whole.out)
    assert len(Manifest(str(out)).finished()) == whole.units


def test_filling_refuses_a_missing_or_mismatched_store(archive, tmp_path, whole):
    with pytest.raises(InvalidInputError, match="no cube"):
        cube(**options(archive, tmp_path / "none.zarr", initialize=False))
    out = tmp_path / "other.zarr"
    cube(**options(archive, out, initialize=True))
    with pytest.raises(InvalidInputError, match=r"different job.*variables"):
        cube(**options(archive, out, initialize=False, bands=["red"]))
    with pytest.raises(InvalidInputError, match=r"different job.*days"):
        cube(**options(archive, out, initialize=False, end_date="2022-03-31"))
    with pytest.raises(InvalidInputError, match=r"different job.*chunks"):
        cube(**options(archive, out, resume=True, time_shard=2))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        cube(**options(archive, out))
    with pytest.raises(InvalidInputError, match="multiple of --time-chunk"):
        cube(**options(archive, out, time_shard=3))
    with pytest.raises(InvalidInputError, match="pick one"):
        cube(**options(archive, out, resume=True, overwrite=True))


def mosaic_options(archive, out, **extra):
    return dict(
        start_date=START,
        end_date=END,
        bands=["red", "nir"],
        chunk_size=64,
        out=str(out),
        quicklook=False,
        **extra,
    )


def direct(archive, out, **extra):
    return cloudfree.mosaic(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        crs="EPSG:2157",
        resolution=20.0,
        **mosaic_options(archive, out, **extra),
    )


@pytest.mark.parametrize(
    "extra",
    [
        # a clean-up halo (opening 20 m + dilation 100 m) and monthly periods
        dict(mask_options={"dilation_m": 100}, period="month"),
        # best-pixel: the distance to clouds needs dreq_m of context around each tile
        dict(method="best-pixel", method_options={"haze_weight": 0, "dreq_m": 300}),
    ],
    ids=["median-month-dilation", "best-pixel"],
)
def test_a_mosaic_from_the_cube_equals_the_mosaic_from_the_scenes(archive, tmp_path, whole, extra):
    scenes = direct(archive, tmp_path / "scenes.zarr", **extra)
    from_cube = cloudfree.mosaic(
        from_cube=whole.out, **mosaic_options(archive, tmp_path / "cube.zarr", **extra)
    )
    assert from_cube.shape == scenes.shape and from_cube.crs == scenes.crs
    assert len(from_cube.periods) == len(scenes.periods)
    same_values(tmp_path / "cube.zarr", tmp_path / "scenes.zarr", ("red", "nir", "observations"))
    assert (raw(tmp_path / "cube.zarr", "observations") > 0).mean() > 0.5  # not vacuous


def test_a_mosaic_from_the_cube_refuses_what_the_cube_cannot_give(archive, tmp_path, whole):
    out = tmp_path / "m.zarr"
    with pytest.raises(InvalidInputError, match="has no B02"):
        cloudfree.mosaic(from_cube=whole.out, **{**mosaic_options(archive, out), "bands": ["blue"]})
    with pytest.raises(InvalidInputError, match="has no CLD"):
        cloudfree.mosaic(
            from_cube=whole.out, cloud_mask="probability", **mosaic_options(archive, out)
        )
    with pytest.raises(InvalidInputError, match="drop --crs"):
        cloudfree.mosaic(from_cube=whole.out, crs="EPSG:32629", **mosaic_options(archive, out))
    with pytest.raises(InvalidInputError, match="drop --bbox"):
        cloudfree.mosaic(from_cube=whole.out, bbox=archive.bbox, **mosaic_options(archive, out))
    with pytest.raises(InvalidInputError, match="covers 2021-11-01 to 2022-04-30"):
        cloudfree.mosaic(
            from_cube=whole.out, **{**mosaic_options(archive, out), "end_date": "2022-06-30"}
        )
    with pytest.raises(InvalidInputError, match="--same-day least-cloudy"):
        cloudfree.mosaic(from_cube=whole.out, preset="cdse-l3", **mosaic_options(archive, out))
    with pytest.raises(InvalidInputError, match="no Zarr store"):
        cloudfree.mosaic(from_cube=str(tmp_path / "none"), **mosaic_options(archive, out))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InvalidInputError, match="not a cloudfree cube"):
        cloudfree.mosaic(from_cube=str(tmp_path / "plain.zarr"), **mosaic_options(archive, out))


def test_a_geographic_cube_in_degrees_and_its_mosaic(archive, tmp_path):
    grid = dict(crs="EPSG:4326", resolution=0.0004, margin_m=0.0)
    out = tmp_path / "geo.zarr"
    result = cube(**options(archive, out, **grid))
    ds = xr.open_zarr(out)
    assert ds["red"].dims == ("time", "latitude", "longitude")
    assert ds.attrs["spatial:dimensions"] == ["latitude", "longitude"]
    assert ds.attrs["proj:code"] == "EPSG:4326" and ds.attrs["spatial:transform"][0] == 0.0004
    assert result.remaining == 0 and ds["red"].notnull().any()
    # values as load_stack reads them on the degree grid
    request = build_cube_request(**options(archive, out, initialize=False, **grid))
    job = plan_cube(request, search_cube(request))
    stack = load_stack(job.info.geobox, job.scenes, request.load, request.settings)
    rows = [job.info.days.index(day) for day in stack.days]
    np.testing.assert_array_equal(raw(out, "red")[rows], stack.data[:, 0])
    # and its mosaic equals the mosaic from the scenes on the same grid
    extra = dict(crs="EPSG:4326", resolution=0.0004)
    cloudfree.mosaic(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        **mosaic_options(archive, tmp_path / "scenes.zarr", **extra),
    )
    cloudfree.mosaic(from_cube=str(out), **mosaic_options(archive, tmp_path / "cube.zarr"))
    same_values(tmp_path / "cube.zarr", tmp_path / "scenes.zarr", ("red", "nir", "observations"))


def test_cli_initializes_then_fills(archive, tmp_path, whole):
    out = tmp_path / "cli.zarr"
    west, south, east, north = archive.bbox
    args = [
        "cube", "--stac", str(archive.catalog), "--bbox", str(west), str(south), str(east),
        str(north), "--start-date", START, "--end-date", END, "--bands", "red", "--bands",
        "nir", "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64",
        "--time-chunk", "2", "--time-shard", "4", "--margin", "400", "--out", str(out),
    ]  # fmt: skip
    first = CliRunner().invoke(cli, ["-q", *args, "--initialize"])
    assert first.exit_code == 0, first.output
    assert not chunk_files(out)
    second = CliRunner().invoke(cli, [*args, "--no-initialize", "--limit", "2"])
    assert second.exit_code == 0, second.output
    assert f"{whole.units - 2} work unit(s) to fill" in second.output
    third = CliRunner().invoke(cli, ["-q", *args, "--no-initialize"])
    assert third.exit_code == 0, third.output
    same_values(out, whole.out)
    mosaic = CliRunner().invoke(
        cli,
        ["-q", "mosaic", "--from-cube", str(out), "--start-date", START, "--end-date", END,
         "--bands", "red", "--chunk-size", "64", "--no-quicklook", "--out",
         str(tmp_path / "m.zarr"), "--stac", "x"],
    )  # fmt: skip
    assert mosaic.exit_code == 2 and "drop --stac" in mosaic.stderr


def _take_lock(url, start, results):
    while time.time() < start:
        pass
    try:
        Manifest(url).acquire()
        results.put("got")
        time.sleep(2)  # alive while the other tries
    except StoreLockedError:
        results.put("refused")


def test_of_two_runs_starting_together_exactly_one_gets_the_store(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")  # both start at once, no import delay
    for attempt in range(3):
        results = context.Queue()
        start = time.time() + 0.3
        url = str(tmp_path / f"s{attempt}.zarr")
        runs = [context.Process(target=_take_lock, args=(url, start, results)) for _ in "ab"]
        for run in runs:
            run.start()
        for run in runs:
            run.join(30)
        assert sorted([results.get(timeout=5), results.get(timeout=5)]) == ["got", "refused"]


def test_a_cube_of_a_geometry_file_clips_its_mosaic_as_the_scenes_mosaic(archive, tmp_path):
    import json

    minx, miny, maxx, maxy = archive.overlap_bbox()
    triangle = [[minx, miny], [maxx, miny], [(minx + maxx) / 2, maxy], [minx, miny]]
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [triangle]}))
    out = tmp_path / "clip.zarr"
    cube(**{**options(archive, out, geometry_file=str(area)), "bbox": None})
    cloudfree.mosaic(
        stac=str(archive.catalog),
        geometry_file=str(area),
        crs="EPSG:2157",
        resolution=20.0,
        **mosaic_options(archive, tmp_path / "scenes.zarr"),
    )
    cloudfree.mosaic(from_cube=str(out), **mosaic_options(archive, tmp_path / "cube.zarr"))
    same_values(tmp_path / "cube.zarr", tmp_path / "scenes.zarr", ("red", "nir", "observations"))
    red = raw(tmp_path / "cube.zarr", "red")[0]
    assert red[1, 1] == NODATA and (red != NODATA).mean() > 0.3  # clipped, not empty


def test_a_failed_unit_is_recorded_with_its_reason_and_resumes_once_readable(tmp_path):
    from cloudfree.errors import RunFailedError
    from cloudfree.testing import make_archive

    small = make_archive(tmp_path / "archive", seed=3, tile_size=128)
    cog = next((tmp_path / "archive").rglob("S2A_29UPV_20211103*/B04.tif"))
    good = cog.read_bytes()
    cog.write_bytes(good[:200])  # a truncated COG: every read of it fails
    out = tmp_path / "failing.zarr"
    cube_options = options(small, out, bands=["red"], margin_m=0.0, threads=1)
    with pytest.raises(RunFailedError, match="B04"):
        cube(**cube_options)
    failures = Manifest(str(out)).failures()
    assert failures and all(cog.parent.name in r["reason"] for r in failures.values())
    assert not (out / "_cloudfree" / "lock.json").exists()
    cog.write_bytes(good)
    assert cube(**{**cube_options, "resume": True}).remaining == 0
    assert not Manifest(str(out)).failures()


def test_validity_is_the_masks_verdict_whatever_the_tiling(archive, tmp_path):
    from cloudfree.bands import SclClass

    verdicts = {}
    for chunk in (64, 8192):  # many tiles with the clean-up halo, or one tile
        out = tmp_path / f"valid-{chunk}.zarr"
        # no opening (it would let cloud specks through); the 60 m dilation reaches over tiles
        cube(
            **options(
                archive,
                out,
                chunk_size=chunk,
                validity=True,
                bands=["red"],
                mask_options={"opening_m": 0},
            )
        )
        verdicts[chunk] = raw(out, "valid")
    valid = verdicts[64]
    np.testing.assert_array_equal(valid, verdicts[8192])
    red, scl = raw(out, "red"), raw(out, "scl")
    assert ((valid == 255) == (red == NODATA)).all()
    clear = valid == 1
    assert 0.2 < clear.sum() / (valid != 255).sum() < 0.95
    clouds = [
        SclClass.CLOUD_HIGH_PROBABILITY,
        SclClass.CLOUD_MEDIUM_PROBABILITY,
        SclClass.THIN_CIRRUS,
        SclClass.CLOUD_SHADOWS,
    ]
    assert not np.isin(scl[clear], [int(c) for c in clouds]).any()
    # the dilation rejects clear-looking pixels next to clouds, as a mosaic's mask does
    surface = [int(SclClass.VEGETATION), int(SclClass.NOT_VEGETATED)]
    assert (np.isin(scl, surface) & (valid == 0)).any()


def test_a_cube_filled_on_a_dask_cluster_with_a_worker_killed_is_bit_identical(
    archive, tmp_path, whole, dask_cluster
):
    """The same units on a real scheduler and worker processes; one worker SIGKILLed mid-run."""
    out = tmp_path / "dask.zarr"
    cube(**options(archive, out, initialize=True))
    killed: list[int] = []

    def kill_one_worker(done, total):
        if done == 2 and not killed:
            pid = next(iter(dask_cluster.worker_pids().values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = cube(
        **options(archive, out, initialize=False),
        dask_scheduler=dask_cluster.address,
        progress=kill_one_worker,
    )
    assert killed and result.remaining == 0
    same_values(out, whole.out)
    finished = Manifest(str(out)).finished()
    assert {k: r["sha256"] for k, r in finished.items()} == {
        k: r["sha256"] for k, r in Manifest(whole.out).finished().items()
    }


def test_dry_run_sizes_the_cube_and_writes_nothing(archive, tmp_path, whole):
    out = tmp_path / "dry.zarr"
    args = [
        "cube", "--stac", str(archive.catalog), "--bbox", *map(str, archive.bbox),
        "--start-date", START, "--end-date", END, "--bands", "red", "--bands", "nir",
        "--crs", "EPSG:2157", "--resolution", "20", "--chunk-size", "64", "--time-chunk", "2",
        "--time-shard", "4", "--margin", "400", "--out", str(out),
    ]  # fmt: skip
    shown = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert not out.exists()
    written = sum(zarr.open_group(whole.out, mode="r")[name].nbytes for name in VARIABLES)
    assert f"to write      {written} bytes" in shown.output
    assert f"work units    {whole.units} " in shown.output
    t, y, x = whole.shape
    assert f"output        {t} x {y} x {x} (time, y, x)" in shown.output
    refused = CliRunner().invoke(cli, [*args, "--memory-limit", "64MiB"])
    assert refused.exit_code == 2 and "memory limit" in refused.stderr
    assert not out.exists()
