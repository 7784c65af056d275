"""End to end: cloudfree against odc-stac + xarray + rio-cogeo and against the GDAL decode floor.

One run, same inputs, same outputs:

- the archive: the synthetic generator (``cloudfree.testing.make_archive``) with one UTM tile
  (29UPV) of ``--size`` x ``--size`` 10 m pixels, ``--dates`` acquisitions, four bands (B02,
  B03, B04, B08, deflate COGs with predictor 2 like the providers') and SCL at 20 m; cached
  under ``--cache`` so reruns do not regenerate it;
- served by ``cloudfree.testing.http_server`` on 127.0.0.1 (its own process), read through
  STAC items (an ItemCollection file) whose hrefs are ``http://`` URLs;
- the output grid: the tile's own grid (EPSG:32629, 10 m, ``--size`` square), so no contender
  needs to warp the 10 m bands;
- contenders, each in its own subprocess (wall time measured inside it after imports, peak
  memory = the process's maximum resident set, its own and its children's), each run
  ``--repeat`` times (3) and reported by the median of its runs, so one busy moment of a shared
  machine does not decide a ratio:

  1. ``cloudfree``: ``cloudfree.mosaic`` median (and 0.25 quantile), SCL mask with the default
     classes (2, 4, 5, 6) and *no* clean-up (so it can be compared with the xarray version pixel
     for pixel), a Zarr store and a multi-band COG;
  2. ``odc-stac``: ``odc.stac.load(items, geobox=<same GeoBox>, chunks=..., resampling=bilinear,
     nearest for SCL)`` with Dask's threaded scheduler, per-item scale/offset, the SCL classes as
     xarray ops, ``.median("time")`` / ``.quantile(0.25, "time")``, rounded to the same int16
     reflectance x 10000, ``to_zarr`` and a multi-band COG with rio-cogeo;
  3. the floor: GDAL (rasterio) decoding the same windows of the same files once, in a thread
     pool of ``--workers`` threads, nothing else.

- also: cloudfree's peak memory on a quarter of the area (the 4x-area check) and its time with
  1 worker pinned to 1 core (the 2-against-1 check: a worker is a core, as on a cluster; unpinned,
  its reader threads would use every core), the HTTP server pinned to the same core for that run
  (in every other run it shares the contender's cores too);
- the outputs of cloudfree and odc-stac are compared (Zarr stores and COGs): share of identical
  pixels and largest difference per band.

Prints a Markdown table and PASS/MISS against the targets; ``--out`` also writes it. Exits 1 only
when the cloudfree and odc-stac results disagree (missed speed targets are reported, not fatal).

Run with ``python benchmarks/end_to_end.py`` (``make bench-e2e``); ``--size 512 --dates 4
--repeat 1`` for a quick check. ``--engine-option KEY=VALUE`` passes extra keyword arguments to
``cloudfree.mosaic`` (e.g. an engine), ``--workers`` is its ``threads=`` and the Dask thread
count of odc-stac.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache"
TILE = "29UPV"
BANDS = ("B02", "B03", "B04", "B08")
ASSET_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "SCL": "scl"}
"""Asset keys of the 29UPV items (Earth Search c1 style common names)."""
VALID_SCL = (2, 4, 5, 6)
"""cloudfree's default SCL classes (dark area, vegetation, bare soil, water)."""
NODATA = -32768
QUANTILE = 0.25
START, END = "2021-11-01", "2022-12-31"
TARGETS = {
    "speed": 10.0,
    "speed_stretch": 15.0,
    "memory": 1 / 3,
    "floor": 1.5,
    "flat": 1.2,
    "workers": 1.7,
}


# --- the archive and its server ---------------------------------------------------------------


def archive_dir(cache: Path, size: int, dates: int, seed: int) -> Path:
    """The cached archive of these parameters, generated on first use."""
    from cloudfree.testing import make_archive

    name = f"archive-{size}px-{dates}d-seed{seed}"
    root = cache / name
    if (root / "items.json").is_file():
        return root
    partial = cache / f"partial-{name}"  # no dot: pystac would take it for a file name
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    print(f"generating the archive ({size} px, {dates} dates) in {root} ...", flush=True)
    make_archive(partial, seed=seed, tile_size=size, n_dates=dates, tiles=[TILE])
    partial.rename(root)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def http_items(archive: Path, url: str, target: Path) -> Path:
    """The archive's ItemCollection with every local href turned into a URL on ``url``."""
    collection = json.loads((archive / "items.json").read_text())
    marker = "/sentinel-2-l2a/"
    for item in collection["features"]:
        for asset in item["assets"].values():
            href = asset["href"]
            if marker in href:
                asset["href"] = url + marker + href.split(marker, 1)[1]
        item["links"] = []
    target.write_text(json.dumps(collection))
    return target


def start_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    """Serve ``root`` from a separate process; returns it and its base URL."""
    code = (
        "import sys\n"
        "from cloudfree.testing.http_server import serve_directory\n"
        "with serve_directory(sys.argv[1]) as s:\n"
        "    print(s.url, flush=True)\n"
        "    for _ in sys.stdin:\n"
        "        print(len(s.requests), s.requests.bytes_sent(), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(1),
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("the HTTP server did not start")
    return proc, url


# --- grids ------------------------------------------------------------------------------------


def tile_grid(archive: Path, size: int) -> dict[str, Any]:
    """The output grid: the top-left ``size`` x ``size`` pixels of the tile's own grid."""
    record = json.loads((archive / "archive.json").read_text())
    tile = next(t for t in record["tiles"] if t["id"] == TILE)
    a, _, c, _, e, f = tile["transform"]
    return {"crs": tile["crs"], "transform": [a, 0.0, c, 0.0, e, f], "shape": [size, size]}


def geobox_of(grid: dict[str, Any]) -> Any:
    from affine import Affine
    from odc.geo.geobox import GeoBox

    return GeoBox(tuple(grid["shape"]), Affine(*grid["transform"]), grid["crs"])


def area_file(grid: dict[str, Any], path: Path) -> Path:
    """A GeoJSON polygon (in the grid's CRS) whose output grid is exactly ``grid``.

    The square is inset by 1 m so that reprojection round-off cannot add a row or column when
    cloudfree snaps the area's bounds outward to whole pixels.
    """
    a, _, c, _, e, f = grid["transform"]
    ny, nx = grid["shape"]
    x0, x1 = c + 1.0, c + a * nx - 1.0
    y1, y0 = f - 1.0, f + e * ny + 1.0
    steps = np.linspace(0.0, 1.0, 65)
    ring = (
        [(x0 + (x1 - x0) * s, y0) for s in steps]
        + [(x1, y0 + (y1 - y0) * s) for s in steps[1:]]
        + [(x1 - (x1 - x0) * s, y1) for s in steps[1:]]
        + [(x0, y1 - (y1 - y0) * s) for s in steps[1:]]
    )
    epsg = grid["crs"].split(":")[1]
    feature = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
            }
        ],
    }
    path.write_text(json.dumps(feature))
    return path


def check_area(path: Path, grid: dict[str, Any]) -> None:
    """Fail early if cloudfree would not make exactly ``grid`` from the area file."""
    from cloudfree.aoi import aoi_from_file
    from cloudfree.grid import output_geobox, parse_crs

    aoi = aoi_from_file(path)
    got = output_geobox(aoi, parse_crs(grid["crs"]), 10.0)
    want = geobox_of(grid)
    if got != want:
        raise RuntimeError(f"the area file gives grid {got}, not {want}")


# --- contenders (each runs in its own process) ------------------------------------------------


def child_env(workers: int) -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    env["NUMBA_NUM_THREADS"] = str(workers)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


@dataclass
class Run:
    """One contender's run."""

    label: str
    kind: str
    params: dict[str, Any]
    wall: float | None = None
    cpu: float | None = None
    """CPU seconds (user + system, all threads) of the work: less sensitive to a busy machine."""
    total: float | None = None
    peak_mb: float | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    server: dict[str, float] = field(default_factory=dict)
    """The HTTP server's CPU seconds, requests and MB sent during the run."""
    attempts: list[dict[str, float]] = field(default_factory=list)
    """Each repetition's figures; the fields above are their medians."""

    def figures(self) -> dict[str, float]:
        """This run's wall, CPU, process time, peak and server figures, by name."""
        assert self.wall is not None and self.cpu is not None
        assert self.total is not None and self.peak_mb is not None
        out = {"wall": self.wall, "cpu": self.cpu, "total": self.total, "peak_mb": self.peak_mb}
        out.update({f"server_{k}": v for k, v in self.server.items()})
        return out

    def keep_medians(self) -> None:
        """Set every figure to its median over :attr:`attempts`."""
        median = {k: statistics.median(a[k] for a in self.attempts) for k in self.attempts[0]}
        self.wall, self.cpu = median["wall"], median["cpu"]
        self.total, self.peak_mb = median["total"], median["peak_mb"]
        self.server = {k[len("server_") :]: v for k, v in median.items() if k.startswith("server_")}

    def spread(self) -> str:
        """The range of the repetitions' wall and CPU times (empty for a single run)."""
        if len(self.attempts) < 2:
            return ""
        walls = [a["wall"] for a in self.attempts]
        cpus = [a["cpu"] for a in self.attempts]
        return (
            f"{len(walls)} runs: wall {min(walls):.1f}-{max(walls):.1f} s, "
            f"CPU {min(cpus):.1f}-{max(cpus):.1f} s"
        )


class ServerMeter:
    """What the HTTP server process spent on one contender: CPU seconds, requests, bytes."""

    def __init__(self, server: subprocess.Popen[str]) -> None:
        self.server = server

    def _now(self) -> tuple[float, int, int]:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write("\n")
        self.server.stdin.flush()
        requests, sent = (int(v) for v in self.server.stdout.readline().split())
        fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return cpu, requests, sent

    def pin(self, cores: Sequence[int]) -> None:
        """Run the server (every thread: each request's thread inherits it) on ``cores`` only."""
        for task in Path(f"/proc/{self.server.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):  # a request's thread that ended
                os.sched_setaffinity(int(task.name), cores)

    def measure(self, run: Run, runner: Any) -> Run:
        """Run ``runner()`` and record the server's share of the work in ``run.server``."""
        cpu0, requests0, sent0 = self._now()
        runner()
        cpu1, requests1, sent1 = self._now()
        run.server = {
            "cpu": cpu1 - cpu0,
            "requests": requests1 - requests0,
            "mb": (sent1 - sent0) / 1e6,
        }
        print(
            f"  server: {run.server['cpu']:.1f} s CPU, {run.server['requests']:,} requests, "
            f"{run.server['mb']:,.0f} MB",
            flush=True,
        )
        return run


def run_child(run: Run, workers: int, timeout: float) -> Run:
    """Run one contender in a fresh interpreter and read its JSON report."""
    print(f"running {run.label} ...", flush=True)
    command = [sys.executable, __file__, "--contender", json.dumps(run.params)]
    spy = run.params.get("py_spy")
    if spy:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [pyspy, "record", "--rate", "50", "--format", "raw", "-o", spy, "--", *command]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(workers), timeout=timeout
    )
    run.total = time.perf_counter() - start
    report = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    if done.returncode != 0 or not report:
        run.error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  FAILED: {done.stderr[-3000:]}", flush=True)
        return run
    data = json.loads(report[-1][len("REPORT ") :])
    run.wall = data["wall"]
    run.cpu = data["cpu"]
    run.peak_mb = data["peak_mb"]
    run.info = data.get("info", {})
    print(f"  {run.wall:.1f} s ({run.cpu:.1f} s CPU), peak {run.peak_mb:,.0f} MB", flush=True)
    return run


def peak_mb() -> float:
    """Maximum resident set of this process and its waited-for children, MB.

    On Linux the process's own peak is ``VmHWM``: ``ru_maxrss`` survives ``exec`` and so would
    report the benchmark parent's peak (e.g. after it generated the archive) as the child's.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def contender_cloudfree(p: dict[str, Any]) -> dict[str, Any]:
    import cloudfree

    method = p["method"]
    options: dict[str, Any] = {"method": "quantile", "quantile": QUANTILE}
    if method == "median":
        options = {"method": "median"}
    result = cloudfree.mosaic(
        stac=p["items"],
        geometry_file=p["area"],
        start_date=START,
        end_date=END,
        bands=list(BANDS),
        crs=p["grid"]["crs"],
        resolution=10.0,
        cloud_mask="scl",
        mask_options={"opening_m": 0, "dilation_m": 0},
        chunk_size=p["chunk"],
        threads=p["workers"],
        quicklook=False,
        out=p["out"] + "/mosaic.zarr",
        cog_dir=p["out"] + "/cog",
        **options,
        **p.get("engine", {}),
    )
    return {"scenes": len(result.scenes), "shape": list(result.shape), "cog": result.cogs[0]}


def _item_radiometry(items: Any, band: str) -> dict[str, tuple[float, float]]:
    """Per item datetime: the band's declared ``(raster:scale, raster:offset)``."""
    out = {}
    for item in items:
        asset = item.assets[ASSET_KEYS[band]]
        meta = (asset.extra_fields.get("bands") or [{}])[0]
        out[item.datetime.replace(tzinfo=None).isoformat()] = (
            float(meta.get("raster:scale", 1.0)),
            float(meta.get("raster:offset", 0.0)),
        )
    return out


def contender_odc(p: dict[str, Any]) -> dict[str, Any]:
    """What a user writes today: odc-stac + Dask + xarray + to_zarr + rio-cogeo."""
    import dask
    import odc.stac
    import pystac
    import rasterio
    import xarray as xr
    from rasterio.io import MemoryFile
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    items = list(pystac.ItemCollection.from_file(p["items"]))
    geobox = geobox_of(p["grid"])
    chunk = p["chunk"]
    keys = [ASSET_KEYS[b] for b in BANDS]
    with dask.config.set(scheduler="threads", num_workers=p["workers"]):
        ds = odc.stac.load(
            items,
            bands=[*keys, "scl"],
            geobox=geobox,
            chunks={"x": chunk, "y": chunk},
            resampling={"*": "bilinear", "scl": "nearest"},
        )
        ds = ds.chunk({"time": -1})
        valid = ds["scl"].isin(list(VALID_SCL))
        times = [np.datetime_as_string(t, unit="s") for t in ds.time.values]
        out = {}
        for band, key in zip(BANDS, keys, strict=True):
            radiometry = _item_radiometry(items, band)
            factor = xr.DataArray(
                np.array([radiometry[t][0] / 1e-4 for t in times], np.float32), dims="time"
            )
            shift = xr.DataArray(
                np.array([radiometry[t][1] / 1e-4 for t in times], np.float32), dims="time"
            )
            dn = ds[key]
            value = np.rint(dn.astype(np.float32) * factor + shift)
            value = value.where(valid & (dn != 0))
            if p["method"] == "median":
                reduced = value.median("time", skipna=True)
            else:
                reduced = value.quantile(QUANTILE, dim="time", skipna=True).drop_vars("quantile")
            out[band] = xr.where(reduced.notnull(), np.rint(reduced), NODATA).astype(np.int16)
        result = xr.Dataset(out)
        result = result.assign_coords(ds.coords).drop_vars("time", errors="ignore")
        for band in BANDS:
            result[band].encoding = {"chunks": (chunk, chunk)}
        result.to_zarr(p["out"] + "/mosaic.zarr", mode="w", consolidated=True)
        stored = xr.open_zarr(p["out"] + "/mosaic.zarr")
        profile = {
            "driver": "GTiff",
            "width": geobox.shape.x,
            "height": geobox.shape.y,
            "count": len(BANDS),
            "dtype": "int16",
            "nodata": NODATA,
            "crs": str(geobox.crs),
            "transform": geobox.affine,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
        }
        cog = p["out"] + "/cog/mosaic.tif"
        Path(cog).parent.mkdir(parents=True, exist_ok=True)
        with MemoryFile() as mem, mem.open(**profile) as dst:
            for i, band in enumerate(BANDS, start=1):
                dst.write(stored[band].values, i)
            cog_translate(
                dst,
                cog,
                cog_profiles.get("deflate"),
                overview_resampling="average",
                in_memory=False,
                quiet=True,
            )
    with rasterio.open(cog):
        pass
    return {"scenes": len(items), "cog": cog}


def contender_floor(p: dict[str, Any]) -> dict[str, Any]:
    """GDAL decoding the same windows of the same files once, in a thread pool."""
    import pystac
    import rasterio
    from odc.geo.overlap import compute_reproject_roi

    from cloudfree.config import GDAL_DEFAULTS

    items = list(pystac.ItemCollection.from_file(p["items"]))
    geobox = geobox_of(p["grid"])
    hrefs = [item.assets[ASSET_KEYS[b]].href for item in items for b in (*BANDS, "SCL")]

    def decode(href: str) -> int:
        from odc.geo.geobox import GeoBox
        from rasterio.windows import Window

        with rasterio.open(href) as src:
            src_gbox = GeoBox(src.shape, src.transform, src.crs)
            ys, xs = compute_reproject_roi(src_gbox, geobox).roi_src
            window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
            return int(src.read(1, window=window).size)

    with rasterio.Env(**GDAL_DEFAULTS), ThreadPoolExecutor(p["workers"]) as pool:
        pixels = sum(pool.map(decode, hrefs))
    return {"files": len(hrefs), "pixels": pixels}


CONTENDERS = {"cloudfree": contender_cloudfree, "odc-stac": contender_odc, "floor": contender_floor}


IMPORTS = {
    "cloudfree": ("cloudfree.pipeline",),
    "odc-stac": ("odc.stac", "xarray", "dask.array", "rio_cogeo.cogeo", "zarr"),
    "floor": ("rasterio", "odc.geo.overlap", "pystac", "cloudfree.config"),
}
"""Imported before the clock starts: the wall time is the work, not the interpreter's start."""


def child_main(params_json: str) -> int:
    import importlib

    params = json.loads(params_json)
    if params.get("cores"):  # before any library starts a thread
        os.sched_setaffinity(0, range(params["cores"]))
    function = CONTENDERS[params["kind"]]
    for module in IMPORTS[params["kind"]]:
        importlib.import_module(module)
    cpu_start = sum(os.times()[:4])
    start = time.perf_counter()
    if params.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        info = profiler.runcall(function, params)
        profiler.dump_stats(params["profile"])
    else:
        info = function(params)
    wall = time.perf_counter() - start
    cpu = sum(os.times()[:4]) - cpu_start
    report = {"wall": wall, "cpu": cpu, "peak_mb": peak_mb(), "info": info}
    print("REPORT " + json.dumps(report))
    return 0


# --- comparison -------------------------------------------------------------------------------


@dataclass
class Agreement:
    what: str
    identical: float
    max_diff: int
    pixels: int
    nodata_mismatch: int

    @property
    def ok(self) -> bool:
        return self.identical >= AGREE_SHARE and self.max_diff <= AGREE_MAX_DIFF

    def text(self) -> str:
        return (
            f"{self.what}: {self.identical:.4%} identical, max |diff| {self.max_diff} DN, "
            f"{self.nodata_mismatch} px nodata in one only"
        )


NOTES = "## Notes (kept by the harness)"
"""``--out``: from this heading on the file is hand-written, kept when the table is rewritten."""
AGREE_SHARE = 0.999
"""Results agree when at least this share of pixels is identical ..."""
AGREE_MAX_DIFF = 1
"""... and no pixel differs by more than this (float rounding of the xarray quantile)."""


def compare_arrays(what: str, a: np.ndarray, b: np.ndarray) -> Agreement:
    a = a.astype(np.int32)
    b = b.astype(np.int32)
    missing = (a == NODATA) != (b == NODATA)
    both = (a != NODATA) & (b != NODATA)
    diff = np.abs(a - b)[both]
    return Agreement(
        what,
        float(np.mean(a == b)),
        int(diff.max()) if diff.size else 0,
        int(a.size),
        int(missing.sum()) if missing.any() else 0,
    )


def compare_outputs(cf_out: str, odc_out: str) -> list[Agreement]:
    import rasterio
    import zarr

    cf_zarr = zarr.open_group(cf_out + "/mosaic.zarr", mode="r")
    odc_zarr = zarr.open_group(odc_out + "/mosaic.zarr", mode="r")
    cf_cog = next(Path(cf_out, "cog").glob("*.tif"))
    a = np.stack([np.asarray(cf_zarr[b][0]) for b in BANDS])
    b = np.stack([np.asarray(odc_zarr[b][:]) for b in BANDS])
    with rasterio.open(cf_cog) as src:
        c = src.read()
    with rasterio.open(Path(odc_out, "cog", "mosaic.tif")) as src:
        d = src.read()
    out = [compare_arrays(f"Zarr {band}", a[i], b[i]) for i, band in enumerate(BANDS)]
    out.append(compare_arrays("COG (all bands)", c, d))
    out.append(compare_arrays("cloudfree COG vs its Zarr", c, a))
    return out


# --- the run ----------------------------------------------------------------------------------


def ratio_text(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None or not math.isfinite(value) else fmt.format(value)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f}"
        f" / {load[2]:.1f} (1/5/15 min), Python {platform.python_version()}"
    )


def parse_engine(options: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in options:
        key, _, value = text.partition("=")
        if not key or not _:
            raise SystemExit(f"--engine-option needs KEY=VALUE, got {text!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=4096, help="output side in pixels (4096)")
    parser.add_argument("--dates", type=int, default=24, help="acquisitions (24)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="threads of every contender (2)")
    parser.add_argument("--chunk", type=int, default=1024, help="tile / Dask chunk side (1024)")
    parser.add_argument(
        "--methods", nargs="+", default=["median", "quantile"], choices=["median", "quantile"]
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["odc-stac", "floor", "scaling"],
        help="leave out contenders; 'scaling' skips the quarter-area and 1-worker runs",
    )
    parser.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword argument for cloudfree.mosaic (JSON value or string)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="archive cache folder")
    parser.add_argument("--work", type=Path, help="keep the outputs here (default: a temp dir)")
    parser.add_argument("--profile", type=Path, help="cProfile the cloudfree median run here")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="sample the cloudfree median run (all threads) with py-spy into this raw file",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of every contender, each in a fresh process; the report gives medians (3)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="per contender, seconds")
    parser.add_argument("--out", type=Path, help="also write the report here (Markdown)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.contender:
        return child_main(args.contender)

    engine = parse_engine(args.engine_option)
    archive = archive_dir(args.cache, args.size, args.dates, args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="cloudfree-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    server, url = start_server(archive)
    meter = ServerMeter(server)
    try:
        items = http_items(archive, url, work / "items.json")
        grid = tile_grid(archive, args.size)
        area = area_file(grid, work / "area.geojson")
        check_area(area, grid)
        quarter = tile_grid(archive, args.size // 2)
        quarter_area = area_file(quarter, work / "quarter.geojson")
        check_area(quarter_area, quarter)
        base = {"items": str(items), "chunk": args.chunk, "workers": args.workers}
        runs: list[Run] = []

        def add(label: str, kind: str, workers: int = args.workers, **params: Any) -> Run:
            out = work / label.replace(" ", "-").replace(",", "")
            p = {**base, "kind": kind, "grid": grid, "area": str(area), "out": str(out)}
            p.update(params, workers=workers)
            if kind == "cloudfree":
                p["engine"] = engine
            run = Run(label, kind, p)
            # a contender on fewer cores shares them with the server, as every other one does
            meter.pin(range(params.get("cores") or os.cpu_count() or 1))
            try:
                for _ in range(args.repeat):
                    shutil.rmtree(out, ignore_errors=True)  # every repetition writes anew
                    out.mkdir(parents=True)
                    meter.measure(run, lambda: run_child(run, workers, args.timeout))
                    if run.error:
                        break
                    run.attempts.append(run.figures())
                else:
                    run.keep_medians()
            finally:
                meter.pin(range(os.cpu_count() or 1))
            runs.append(run)
            return run

        if "floor" not in args.skip:
            add("floor", "floor")
        cf: dict[str, Run] = {}
        odc: dict[str, Run] = {}
        for method in args.methods:
            profile = str(args.profile) if args.profile and method == "median" else None
            spy = str(args.py_spy) if args.py_spy and method == "median" else None
            cf[method] = add(
                f"cloudfree {method}", "cloudfree", method=method, profile=profile, py_spy=spy
            )
            if "odc-stac" not in args.skip:
                odc[method] = add(f"odc-stac {method}", "odc-stac", method=method)
        scaling: dict[str, Run] = {}
        if "scaling" not in args.skip and "median" in args.methods:
            scaling["quarter"] = add(
                "cloudfree median, quarter area",
                "cloudfree",
                method="median",
                grid=quarter,
                area=str(quarter_area),
            )
            # a worker is one core, as on a cluster: pinned, or its reader threads use both
            scaling["one"] = add(
                "cloudfree median, 1 worker on 1 core",
                "cloudfree",
                workers=1,
                cores=1,
                method="median",
            )
        agreements: dict[str, list[Agreement]] = {}
        for method, run in cf.items():
            other = odc.get(method)
            if run.error is None and other is not None and other.error is None:
                agreements[method] = compare_outputs(run.params["out"], other.params["out"])
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)

    floor = next((r for r in runs if r.kind == "floor" and r.error is None), None)
    lines = report(args, archive, runs, cf, odc, scaling, floor, agreements)
    print()
    print("\n".join(lines))
    if args.out:
        kept = ""
        if args.out.is_file():
            text = args.out.read_text()
            if NOTES in text:
                kept = "\n" + text[text.index(NOTES) :]
        args.out.write_text("\n".join(lines) + "\n" + kept)
        print(f"wrote {args.out}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r.label for r in runs if r.error]
    disagree = [m for m, a in agreements.items() if not all(x.ok for x in a)]
    if disagree:
        print(f"DISAGREE: cloudfree and odc-stac results differ ({', '.join(disagree)})")
        return 1
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


def report(
    args: argparse.Namespace,
    archive: Path,
    runs: list[Run],
    cf: dict[str, Run],
    odc: dict[str, Run],
    scaling: dict[str, Run],
    floor: Run | None,
    agreements: dict[str, list[Agreement]],
) -> list[str]:
    size_mb = sum(f.stat().st_size for f in archive.rglob("*.tif") if "truth" not in f.parts)
    head = [
        "# End-to-end benchmark",
        "",
        f"Archive: {args.dates} dates x 4 bands (B02, B03, B04, B08, 10 m, deflate + predictor 2 "
        f"COGs) + SCL (20 m) of one synthetic UTM tile, {args.size} x {args.size} px, "
        f"{size_mb / 1e6:,.0f} MB, served by `cloudfree.testing.http_server` on 127.0.0.1 (its "
        "own process) through an ItemCollection with http:// hrefs. Output: the tile's own grid "
        f"(EPSG:32629, 10 m, {args.size} x {args.size}), a Zarr store and a 4-band COG per "
        f"contender. Workers: {args.workers} (cloudfree `threads=`, numba threads; odc-stac Dask "
        f"threaded scheduler; floor thread pool); chunk/tile {args.chunk}. Machine: {machine()} "
        "(at the end of the run). Generated with "
        f"`python benchmarks/end_to_end.py {' '.join(sys.argv[1:])}`.".rstrip(),
        "",
        "Wall: inside the contender's process, after imports (numba's compile of a first run "
        "included; cached after). CPU: user + system seconds of all the process's threads over "
        "the same span (on a shared machine the steadier measure of work; the HTTP server's "
        "CPU is not in it, but its own column: its process's CPU seconds and the requests it "
        "answered during the contender's run). Process: the whole subprocess including "
        "interpreter start and imports. Peak: the process's maximum resident set (VmHWM). "
        "Each contender runs in a fresh process, one after the other; every figure is the "
        f"median of {args.repeat} such run(s) of it (the notes give the range of wall and CPU "
        "times). Mask: SCL classes 2, 4, "
        "5, 6 with no clean-up in both (cloudfree's default clean-up, an opening and a "
        "dilation, has no one-line xarray equivalent), so the results are comparable pixel for "
        "pixel.",
        "",
    ]
    table = [
        "| contender | wall (s) | CPU (s) | process (s) | peak MB | x floor (wall / CPU) "
        "| odc-stac / this (wall / CPU) | this / odc-stac (peak) | server CPU (s) / requests "
        "| notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if run.error:
            table.append(f"| {run.label} | FAILED | | | | | | | | {run.error} |")
            continue
        assert run.wall is not None and run.peak_mb is not None and run.cpu is not None
        x_floor = x_floor_cpu = None
        if floor and floor.wall and floor.cpu:
            x_floor, x_floor_cpu = run.wall / floor.wall, run.cpu / floor.cpu
        method = run.params.get("method")
        ref = odc.get(method) if run.kind == "cloudfree" and method else None
        speed = speed_cpu = mem = None
        same = ref is not None and all(
            run.params.get(k) == ref.params.get(k) for k in ("grid", "workers")
        )
        if ref and ref.wall and ref.cpu and ref.peak_mb and same:
            speed, speed_cpu = ref.wall / run.wall, ref.cpu / run.cpu
            mem = run.peak_mb / ref.peak_mb
        note = ", ".join(
            [f"{k} {v}" for k, v in run.info.items() if k not in ("cog",)]
            + ([run.spread()] if run.spread() else [])
        )
        served = f"{run.server['cpu']:.1f} / {run.server['requests']:,.0f}" if run.server else "-"
        table.append(
            f"| {run.label} | {run.wall:.1f} | {run.cpu:.1f} | {run.total:.1f} | "
            f"{run.peak_mb:,.0f} | {ratio_text(x_floor, '{:.2f}')} / "
            f"{ratio_text(x_floor_cpu, '{:.2f}')} | {ratio_text(speed)} / "
            f"{ratio_text(speed_cpu)} | {ratio_text(mem, '{:.2f}')} | {served} | {note} |"
        )
    targets = ["", "Targets (cloudfree median unless said):", ""]
    main_run = cf.get("median")
    ref = odc.get("median")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    if main_run and main_run.wall and ref and ref.wall and ref.peak_mb and main_run.peak_mb:
        speed = ref.wall / main_run.wall
        cpu = f"; {ref.cpu / main_run.cpu:.1f}x in CPU time" if ref.cpu and main_run.cpu else ""
        targets.append(
            f"- {verdict(speed >= TARGETS['speed'])}: {speed:.1f}x faster than odc-stac + xarray "
            f"(target >= {TARGETS['speed']:g}x; stretch {TARGETS['speed_stretch']:g}x: "
            f"{verdict(speed >= TARGETS['speed_stretch'])}{cpu})"
        )
        mem = main_run.peak_mb / ref.peak_mb
        targets.append(
            f"- {verdict(mem <= TARGETS['memory'])}: peak memory {mem:.2f}x odc-stac's "
            f"(target <= 1/3)"
        )
    else:
        targets.append("- n/a: against odc-stac (not run)")
    if main_run and main_run.wall and floor and floor.wall:
        x = main_run.wall / floor.wall
        cpu = f"; {main_run.cpu / floor.cpu:.2f}x in CPU time" if main_run.cpu and floor.cpu else ""
        targets.append(
            f"- {verdict(x <= TARGETS['floor'])}: {x:.2f}x the decode floor "
            f"(target <= {TARGETS['floor']:g}x{cpu})"
        )
    quarter, one = scaling.get("quarter"), scaling.get("one")
    if main_run and main_run.peak_mb and quarter and quarter.peak_mb:
        grow = main_run.peak_mb / quarter.peak_mb
        targets.append(
            f"- {verdict(grow <= TARGETS['flat'])}: peak memory {grow:.2f}x when the area grows "
            f"4x ({quarter.peak_mb:,.0f} -> {main_run.peak_mb:,.0f} MB; target <= "
            f"{TARGETS['flat']:g}x)"
        )
    if main_run and main_run.wall and one and one.wall:
        speedup = one.wall / main_run.wall
        targets.append(
            f"- {verdict(speedup >= TARGETS['workers'])}: {args.workers} workers on "
            f"{os.cpu_count()} cores {speedup:.2f}x faster than 1 worker on 1 core (target >= "
            f"{TARGETS['workers']:g}x)"
        )
    agree = ["", "Agreement of cloudfree and odc-stac + xarray (same items, same grid, same mask):"]
    agree.append("")
    if not agreements:
        agree.append("- not compared (odc-stac not run)")
    for method, items in agreements.items():
        for a in items:
            agree.append(f"- {'agree' if a.ok else '**DISAGREE**'}: {method}, {a.text()}")
    agree.append("")
    agree.append(
        f"(Agreement: at least {AGREE_SHARE:.1%} of the pixels identical and none more than "
        f"{AGREE_MAX_DIFF} DN apart.)"
    )
    return head + table + targets + agree


if __name__ == "__main__":
    sys.exit(main())
