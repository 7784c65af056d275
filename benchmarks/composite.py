"""Compositing methods against numpy, bottleneck, numbagg and xarray, and the one-pass floor.

Builds a seeded ``dates x bands x size x size`` uint16 reflectance-like stack with about 40 %
of the observations masked in spatially coherent blobs (plus a patch masked on every date), then
in one run:

- the floor: one numba pass (per pixel count and sum of the valid values) reading the stack and
  the mask exactly once, the memory-bandwidth bound no per-pixel reduction can beat;
- every cloudfree compositor from the registry (``make_compositor``) and ``masked_quantiles``
  with two quantiles at once, best of a few runs after a warm-up on a small crop (the numba
  compile time, printed separately);
- the references on the float32 stack with NaN where masked (how users hold it): numpy
  ``nanmedian`` and ``nanquantile`` (the latter on a strip of rows, extrapolated, unless
  ``--full``), ``bottleneck.nanmedian``, ``numbagg``, xarray (numpy- and dask-backed), and numpy
  sort along time + ``take_along_axis``;
- checks every result: quantiles bit-identical to numpy's linear quantile on the valid values
  rounded half to even (nodata where nothing is valid), the rest against plain numpy;
- prints a Markdown table (time, x floor, speed-up against the references, peak extra memory,
  agreement) and PASS/MISS against the targets. Exits 1 only if a result disagrees.

Run with ``python benchmarks/composite.py [--size 2048] [--dates 24] [--bands 4] [--full]``; a
method missing from the registry is reported "not available", a missing reference package skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numba
import numpy as np

NODATA = 0
"""The stack's nodata value; generated reflectances are >= 1, so it only marks empty results."""
BAND_IDS = ("B02", "B03", "B04", "B08")
BAND_LEVELS = (600.0, 900.0, 1100.0, 2800.0)
QUANTILE_BAND = 2
"""Single-band methods and the references run on this band of the stack (red)."""
WARM_PIXELS = 16
"""Side of the crop the warm-up (numba compile) calls run on."""
REFERENCE_PACKAGES = ("bottleneck", "numbagg", "xarray", "dask")


# --- the stack --------------------------------------------------------------------------------


@numba.njit(inline="always")
def _bilinear(coarse, scale, y, x):  # type: ignore[no-untyped-def]
    """``coarse`` (a ``(cells + 1)^2`` grid) bilinearly interpolated at pixel ``(y, x)``."""
    cells = coarse.shape[0] - 1
    fy = y * scale
    fx = x * scale
    i = min(int(fy), cells - 1)
    j = min(int(fx), cells - 1)
    wy = fy - i
    wx = fx - j
    left = coarse[i, j] * (1 - wy) + coarse[i + 1, j] * wy
    right = coarse[i, j + 1] * (1 - wy) + coarse[i + 1, j + 1] * wy
    return left * (1 - wx) + right * wx


@numba.njit(parallel=True, cache=True)
def _sample_fields(coarse, size, stride):  # type: ignore[no-untyped-def]
    """The upsampled fields of ``coarse`` ``(k, cells + 1, cells + 1)`` every ``stride`` px."""
    k = coarse.shape[0]
    n = (size + stride - 1) // stride
    scale = (coarse.shape[1] - 1) / max(size - 1, 1)
    out = np.empty((k, n, n), dtype=np.float32)
    for i in numba.prange(k):
        for a in range(n):
            for b in range(n):
                out[i, a, b] = _bilinear(coarse[i], scale, a * stride, b * stride)
    return out


@numba.njit(parallel=True, cache=True)
def _fill_stack(base, season, tint, clouds, thresholds, levels, hole, seed, data, valid):  # type: ignore[no-untyped-def]
    """Reflectance ``level * exp(0.6 base) * (1 + 0.15 season + tint) + noise``, the cloud mask.

    ``base`` ``(band, c, c)``, ``season`` and ``clouds`` ``(time, c', c')`` are coarse white
    noise, upsampled bilinearly; ``tint`` ``(time, band)`` a per-date spectral change (so that a
    pixel's observations are not all on one line in band space); the noise is a hash of the
    position (+-64 DN). An observation is valid where its cloud field is above the date's
    threshold, outside the ``hole`` (a disk ``(y, x, r)`` masked on every date).
    """
    t, nb, ny, nx = data.shape
    sb = (base.shape[1] - 1) / max(ny - 1, 1)
    ss = (season.shape[1] - 1) / max(ny - 1, 1)
    sc = (clouds.shape[1] - 1) / max(ny - 1, 1)
    for y in numba.prange(ny):
        row = np.empty((nb, nx), dtype=np.float32)
        bright = np.empty(nx, dtype=np.float32)
        for b in range(nb):
            for x in range(nx):
                row[b, x] = levels[b] * np.exp(0.6 * _bilinear(base[b], sb, y, x))
        for i in range(t):
            for x in range(nx):
                dy = y - hole[0]
                dx = x - hole[1]
                inside = dy * dy + dx * dx < hole[2] * hole[2]
                valid[i, y, x] = _bilinear(clouds[i], sc, y, x) >= thresholds[i] and not inside
                bright[x] = 1 + 0.15 * _bilinear(season[i], ss, y, x)
            for b in range(nb):
                first = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(
                    ((i * nb + b) * ny + y) * nx
                )
                for x in range(nx):
                    h = first + np.uint64(x)
                    h = (h ^ (h >> np.uint64(31))) * np.uint64(0x7FB5D329728EA185)
                    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x81DADEF4BC2DD44D)
                    noise = np.float32(np.int64(h >> np.uint64(57))) - np.float32(64)
                    v = row[b, x] * (bright[x] + tint[i, b]) + noise
                    data[i, b, y, x] = np.uint16(min(max(v, np.float32(1)), np.float32(20000)))


@dataclass
class Stack:
    data: np.ndarray
    """``(time, band, y, x)`` uint16."""
    valid: np.ndarray
    """``(time, y, x)`` bool."""
    band: np.ndarray
    """``(time, y, x)`` uint16, a contiguous copy of band :data:`QUANTILE_BAND`."""
    days: tuple[date, ...]
    seconds: float


def make_stack(size: int, dates: int, bands: int, seed: int = 0) -> Stack:
    """Seeded reflectance-like values and a blobby mask, ~40 % masked; cheap to generate.

    Coarse white noise upsampled bilinearly gives smooth fields: the surface of each band
    (lognormal, up to ~15000 in the near infrared), a per-date brightness change, and per date
    a cloud field thresholded at that date's cloud fraction (4 % to 72 %, 38 % on average);
    a disk of ~2 % of the tile is masked on every date.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    cells = max(4, size // 64)
    base = rng.standard_normal((bands, cells + 1, cells + 1)).astype(np.float32)
    season = rng.standard_normal((dates, 5, 5)).astype(np.float32)
    tint = (0.1 * rng.standard_normal((dates, bands))).astype(np.float32)
    clouds = rng.standard_normal((dates, cells + 1, cells + 1)).astype(np.float32)
    fractions = rng.permutation(np.linspace(0.04, 0.72, dates))
    stride = max(1, size // 256)
    sample = _sample_fields(clouds, size, stride)
    thresholds = np.array(
        [np.quantile(sample[i], fractions[i]) for i in range(dates)], dtype=np.float32
    )
    levels = np.array([BAND_LEVELS[b % len(BAND_LEVELS)] for b in range(bands)], np.float32)
    hole = np.array([0.75 * size, 0.25 * size, 0.08 * size], dtype=np.float64)
    data = np.empty((dates, bands, size, size), dtype=np.uint16)
    valid = np.empty((dates, size, size), dtype=bool)
    _fill_stack(base, season, tint, clouds, thresholds, levels, hole, seed, data, valid)
    band = np.ascontiguousarray(data[:, min(QUANTILE_BAND, bands - 1)])
    days = tuple(date(2023, 1, 5) + timedelta(days=int(d)) for d in np.linspace(0, 360, dates))
    return Stack(data, valid, band, days, time.perf_counter() - start)


# --- the one-pass floor -----------------------------------------------------------------------


@numba.njit(parallel=True, cache=True)
def _one_pass(data, valid, count, total):  # type: ignore[no-untyped-def]
    """Per pixel, the count of valid observations and the sum of their values (every band)."""
    t, nb, ny, nx = data.shape
    for y in numba.prange(ny):
        for x in range(nx):
            count[y, x] = 0
        for b in range(nb):
            for x in range(nx):
                total[b, y, x] = 0
        for i in range(t):
            for x in range(nx):
                count[y, x] += valid[i, y, x]
            for b in range(nb):
                for x in range(nx):
                    total[b, y, x] += data[i, b, y, x] * valid[i, y, x]


def one_pass(data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The floor: read ``data`` ``(time, band, y, x)`` and ``valid`` once."""
    _, nb, ny, nx = data.shape
    count = np.empty((ny, nx), dtype=np.uint16)
    total = np.empty((nb, ny, nx), dtype=np.uint32)
    _one_pass(data, valid, count, total)
    return count, total


# --- peak memory ------------------------------------------------------------------------------


def _status_kb(name: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{name}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") > 0


@dataclass
class Peak:
    extra: int | None = None
    """Bytes of resident memory above the level just before the call, at the call's peak."""


class PeakMemory:
    """Peak resident memory of a call above the level before it.

    Exact where the kernel lets us reset the high-water mark (``/proc/self/clear_refs``, Linux
    >= 4.0); otherwise a thread samples ``/proc/self/statm`` every millisecond (it can miss short
    peaks inside calls that hold the GIL).
    """

    def __init__(self) -> None:
        self.trim: Callable[[int], int] | None = None
        with contextlib.suppress(OSError, AttributeError):
            # glibc keeps freed heap memory; returning it first makes new allocations count
            self.trim = ctypes.CDLL("libc.so.6").malloc_trim
        if _can_reset_hwm():
            self.mode = "high-water mark reset before each call (/proc/self/clear_refs)"
        elif os.path.exists("/proc/self/statm"):
            self.mode = "/proc/self/statm sampled every 1 ms"
        else:
            self.mode = "not measured (no /proc)"
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    @contextlib.contextmanager
    def track(self) -> Iterator[Peak]:
        peak = Peak()
        if self.trim is not None:
            self.trim(0)
        if self.mode.startswith("high-water"):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = _status_kb("VmRSS") * 1024
            yield peak
            peak.extra = max(0, _status_kb("VmHWM") * 1024 - before)
        elif self.mode.startswith("/proc"):
            before = self._rss()
            highest = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.001):
                    highest[0] = max(highest[0], self._rss())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                yield peak
            finally:
                stop.set()
                sampler.join()
            peak.extra = max(0, max(highest[0], self._rss()) - before)
        else:
            yield peak


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Timing:
    best: float
    peak: int | None
    compile: float | None
    result: Any


def measure(
    memory: PeakMemory,
    call: Callable[[], Any],
    *,
    warm: Callable[[], Any] | None = None,
    runs: int = 5,
    budget: float = 4.0,
) -> Timing:
    """Best of up to ``runs`` calls (fewer once ``budget`` seconds are spent; at least one).

    ``warm`` runs first on a small crop so that numba compiles outside the measured calls; its
    time is reported as the compile time.
    """
    compile_s = None
    if warm is not None:
        start = time.perf_counter()
        warm()
        compile_s = time.perf_counter() - start
    best = math.inf
    peak: int | None = None
    result = None
    spent = 0.0
    gc.collect()
    for _ in range(runs):
        result = None
        with memory.track() as p:
            start = time.perf_counter()
            result = call()
            elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        if p.extra is not None:
            peak = max(peak or 0, p.extra)
        spent += elapsed
        if spent > budget:
            break
    return Timing(best, peak, compile_s, result)


# --- checking ---------------------------------------------------------------------------------


@dataclass
class Check:
    ok: bool | None
    """``None``: nothing to compare against."""
    text: str


def rounded(reference: np.ndarray, nodata: int = NODATA) -> np.ndarray:
    """A float reference as cloudfree reports it: rounded half to even, NaN as nodata."""
    return np.where(np.isnan(reference), nodata, np.rint(reference)).astype(np.int64)


def compare(got: np.ndarray, expected: np.ndarray, what: str) -> Check:
    """Exact comparison of integer results."""
    if got.shape != expected.shape:
        return Check(False, f"NO: shape {got.shape} vs {what} {expected.shape}")
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    differ = int(np.count_nonzero(diff))
    if differ == 0:
        return Check(True, f"yes (= {what})")
    return Check(False, f"NO: {differ} px differ from {what}, max abs diff {int(diff.max())}")


def combine(checks: Sequence[Check]) -> Check:
    """All of several checks (``None`` ones ignored unless all are ``None``)."""
    decided = [c for c in checks if c.ok is not None]
    if not decided:
        return Check(None, "; ".join(c.text for c in checks) or "not checked")
    failed = [c for c in decided if not c.ok]
    if failed:
        return Check(False, "; ".join(c.text for c in failed))
    return Check(True, "; ".join(c.text for c in decided))


def sort_gather(
    band: np.ndarray, valid: np.ndarray, qs: Sequence[float], nodata: int = NODATA
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """numpy's linear quantiles, exactly: sort along time (masked last), gather, interpolate.

    Returns the quantiles (rounded half to even, ``band``'s type), the sorted stack and the count.
    """
    largest = np.iinfo(band.dtype).max
    ordered = np.sort(np.where(valid, band, band.dtype.type(largest)), axis=0)
    count = valid.sum(axis=0, dtype=np.int64)
    last = np.maximum(count - 1, 0)
    outs = []
    for q in qs:
        h = last * float(q)
        j = np.floor(h).astype(np.intp)
        g = h - j
        a = np.take_along_axis(ordered, j[None], axis=0)[0].astype(np.float64)
        b = np.take_along_axis(ordered, np.minimum(j + 1, last)[None], axis=0)[0]
        diff = b - a
        # numpy's _lerp: from the nearer end
        value = np.where(g < 0.5, a + diff * g, b - diff * (1.0 - g))
        out = np.rint(value).astype(band.dtype)
        out[count == 0] = nodata
        outs.append(out)
    return outs, ordered, count


def valid_sums(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per band, the sum of the valid values (uint32: 65535 x 65536 dates at most)."""
    return np.stack(
        [np.where(valid, data[:, b], 0).sum(axis=0, dtype=np.uint32) for b in range(data.shape[1])]
    )


def chosen_observation(
    data: np.ndarray, valid: np.ndarray, values: np.ndarray, nodata: int = NODATA
) -> np.ndarray:
    """Per pixel, the first valid time whose bands all equal ``values``; -1 for none."""
    t = data.shape[0]
    index = np.full(values.shape[1:], -1, dtype=np.int64)
    for i in range(t - 1, -1, -1):
        same = valid[i] & np.all(data[i] == values, axis=0)
        index[same] = i
    return index


def selects_observations(
    data: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    days: Sequence[date],
    composite: Any,
    *,
    filters: bool = False,
) -> tuple[Check, np.ndarray]:
    """Every pixel is one of its valid observations (all bands of one date), or nodata if none.

    With ``filters`` a pixel may also be nodata when the method's own filters dropped all its
    observations (best-pixel's season, haze and cloud-distance filters). Also checks the
    provenance layer ``date`` (days since 1970-01-01) or ``time_index`` when the composite carries
    one. Returns the check and the matching time index (-1: none).
    """
    values = np.asarray(composite.values)
    index = chosen_observation(data, valid, values)
    nodata = np.all(values == NODATA, axis=0)
    empty = (count == 0) | (nodata & filters)
    bad = (~empty & (index < 0)) | (empty & ~nodata)
    checks = []
    dropped = int(np.count_nonzero(empty & (count > 0)))
    if np.any(bad):
        checks.append(Check(False, f"NO: {int(bad.sum())} px are not one valid observation"))
    elif dropped:
        checks.append(
            Check(
                True,
                f"yes (each pixel one valid observation, or nodata: {dropped} px whose "
                "observations the method's filters all dropped)",
            )
        )
    else:
        checks.append(Check(True, "yes (each pixel one valid observation)"))
    provenance = getattr(composite, "provenance", None) or {}
    chosen = None
    if "date" in provenance:
        epoch = np.array([np.datetime64(d, "D").astype(np.int64) for d in days])
        layer = np.asarray(provenance["date"]).astype(np.int64)
        chosen = np.searchsorted(epoch, layer)
        known = chosen < len(epoch)
        known[known] &= epoch[chosen[known]] == layer[known]
        chosen = np.where(known, chosen, -1)
        name = "date"
    elif "time_index" in provenance:
        chosen = np.asarray(provenance["time_index"]).astype(np.int64)
        name = "time_index"
    if chosen is not None:
        picked = np.where(chosen >= 0, chosen, 0)
        ok = np.take_along_axis(valid, picked[None], axis=0)[0] & (chosen >= 0)
        same = np.all(np.take_along_axis(data, picked[None, None], axis=0)[0] == values, axis=0)
        wrong = np.where(empty, chosen >= 0, ~ok | ~same)
        if np.any(wrong):
            checks.append(Check(False, f"NO: provenance {name} wrong at {int(wrong.sum())} px"))
        else:
            checks.append(Check(True, f"provenance {name} consistent"))
    return combine(checks), index


def strip_rows(size: int, pixels: int) -> slice:
    """A horizontal strip of about ``pixels`` pixels (at least one row), in the middle."""
    rows = max(1, min(size, pixels // size))
    start = (size - rows) // 2
    return slice(start, start + rows)


def medoid_costs(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Euclidean distance of each valid observation to the pixel's per-band median; inf invalid.

    The medoid is the observation nearest to the multi-band median (numpy's median of each
    band's valid values). ``x`` is ``(time, band, n)`` float64, ``ok`` ``(time, n)`` bool.
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        median = np.nanmedian(np.where(ok[:, None], x, np.nan), axis=0)
    dist = np.sqrt(((x - median[None]) ** 2).sum(axis=1))
    return np.where(ok, dist, np.inf)


def geometric_median(x: np.ndarray, ok: np.ndarray, tol: float = 1e-2) -> np.ndarray:
    """Weiszfeld iterations in float64 until no pixel moves more than ``tol``.

    ``x`` is ``(time, band, n)``, ``ok`` ``(time, n)``; returns ``(band, n)``, NaN where no
    observation is valid.
    """
    w = ok.astype(np.float64)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (x * w[:, None]).sum(axis=0) / n
    active = np.flatnonzero(n > 1)
    for _ in range(2000):
        if active.size == 0:
            break
        xa, wa, ma = x[:, :, active], w[:, active], m[:, active]
        dist = np.sqrt(((xa - ma) ** 2).sum(axis=1))
        inv = wa / np.maximum(dist, 1e-9)
        new = (xa * inv[:, None]).sum(axis=0) / inv.sum(axis=0)
        step = np.abs(new - ma).max(axis=0)
        m[:, active] = new
        active = active[step > tol]
    return m


def geomedian_cost(x: np.ndarray, ok: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Sum over valid observations of the Euclidean distance to ``m`` ``(band, n)``."""
    dist = np.sqrt(((x - m) ** 2).sum(axis=1))
    return np.where(ok, dist, 0.0).sum(axis=0)


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    kind: str
    """``floor``, ``cloudfree`` or ``reference``."""
    bands: int
    input_bytes: int
    times: dict[int, float] = field(default_factory=dict)
    """Best time by numba thread count."""
    compile: float | None = None
    peak: int | None = None
    fraction: float = 1.0
    """Share of the rows measured; times are divided by it (extrapolated) when < 1."""
    check: Check = field(default_factory=lambda: Check(None, ""))
    note: str = ""
    available: bool = True
    speedups: list[str] = field(default_factory=list)
    key: str = ""

    def time(self, threads: int) -> float | None:
        t = self.times.get(threads)
        return None if t is None else t / self.fraction


@dataclass(frozen=True)
class Method:
    label: str
    name: str | None
    """Registry name; ``None`` for ``masked_quantiles``."""
    options: dict[str, object]
    multiband: bool
    references: tuple[str, ...] = ()
    """Keys of the reference rows to report speed-ups against."""


METHODS = (
    Method(
        "median",
        "median",
        {},
        False,
        ("np-nanmedian", "bn-nanmedian", "nb-nanmedian", "xr-median", "xr-dask-median"),
    ),
    Method("quantile 0.25", "quantile", {"quantile": 0.25}, False, ("np-nanquantile",)),
    Method(
        "median + q25 (masked_quantiles)",
        None,
        {},
        False,
        ("nb-nanquantile", "xr-quantile", "xr-dask-quantile", "sort-gather"),
    ),
    Method("mean", "mean", {}, True),
    Method("min", "min", {}, False),
    Method("max", "max", {}, False),
    Method("count", "count", {}, False),
    Method("medoid", "medoid", {}, True),
    Method("geomedian", "geomedian", {}, True),
    Method("best-pixel", "best-pixel", {}, True),
    Method("cdse-l3", "cdse-l3", {}, False),
)


def build(make_compositor: Callable[..., Any], method: Method) -> Any:
    """``make_compositor(name, options)``, or ``(name, **options)`` where that is its signature."""
    if not method.options:
        return make_compositor(method.name)
    parameters = inspect.signature(make_compositor).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return make_compositor(method.name, **method.options)
    return make_compositor(method.name, method.options)


def command_line(argv: Sequence[str] | None) -> str:
    """The arguments, without ``--out FILE``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "--out" in words:
        i = words.index("--out")
        del words[i : i + 2]
    return " ".join(w for w in words if not w.startswith("--out="))


def load_text() -> str:
    """The 1-minute load average, with a warning when other work shares the CPUs."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    busy = load > 0.5 * (os.cpu_count() or 1)
    return f"load average {load:.1f}" + (" (BUSY: other work skews the times)" if busy else "")


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.perf_counter()
        self.memory = PeakMemory()
        self.threads: list[int] = args.threads
        self.rows: list[Row] = []
        self.by_key: dict[str, Row] = {}
        self.truth: dict[str, np.ndarray] = {}
        self.floor: dict[tuple[int, int], float] = {}
        """Best floor time by (bands, threads)."""

    # - set-up -

    def build(self) -> None:
        a = self.args
        s = make_stack(a.size, a.dates, a.bands, a.seed)
        self.stack = s
        self.count = s.valid.sum(axis=0, dtype=np.int64)
        self.masked = 1.0 - float(s.valid.mean())
        self.one_bytes = s.band.nbytes
        self.all_bytes = s.data.nbytes
        print(
            f"stack: {a.dates} dates x {a.bands} bands x {a.size} x {a.size} uint16 "
            f"({self.all_bytes / 1e6:.0f} MB; one band {self.one_bytes / 1e6:.0f} MB), "
            f"mask {s.valid.nbytes / 1e6:.0f} MB; {self.masked:.1%} of observations masked, "
            f"{np.mean(self.count == 0):.2%} of pixels never valid; generated in "
            f"{s.seconds:.1f} s"
        )
        print(
            f"machine: {os.cpu_count()} CPUs, {load_text()}; numba threads "
            f"{', '.join(map(str, self.threads))}; peak memory: {self.memory.mode}"
        )
        versions = ["numpy", "numba", *REFERENCE_PACKAGES]
        print(
            "versions: " + ", ".join(f"{p} {version(p) or 'missing'}" for p in versions),
            flush=True,
        )
        # the float32 array with NaN where masked, as users hold it (not timed)
        self.nan = s.band.astype(np.float32)
        self.nan[~s.valid] = np.nan
        rows = strip_rows(a.size, a.size * a.size if a.full else a.size * a.size // 16)
        self.strip = slice(None) if a.full else rows

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if row.key:
            self.by_key[row.key] = row
        return row

    def progress(self, row: Row) -> None:
        t = row.time(self.threads[0])
        if not row.available:
            status = f"not available ({row.note})"
        elif t is None:
            status = row.check.text
        else:
            status = f"{t:.3f} s  {row.check.text}"
        print(f"  [{time.perf_counter() - self.start:5.0f} s] {row.label}: {status}", flush=True)

    # - the floor -

    def run_floor(self) -> None:
        s = self.stack
        band4 = s.band[:, None]
        floors = [(1, band4)] + ([(s.data.shape[1], s.data)] if s.data.shape[1] > 1 else [])
        for bands, data in floors:
            row = self.add(
                Row(
                    f"floor: one pass, {bands} band{'s' * (bands > 1)}",
                    "floor",
                    bands,
                    data.nbytes,
                )
            )
            w = WARM_PIXELS
            for threads in self.threads:
                numba.set_num_threads(threads)
                timing = measure(
                    self.memory,
                    lambda data=data: one_pass(data, s.valid),
                    warm=lambda data=data, w=w: one_pass(
                        np.ascontiguousarray(data[..., :w, :w]),
                        np.ascontiguousarray(s.valid[..., :w, :w]),
                    ),
                    runs=20,
                    budget=2.0,
                )
                row.times[threads] = timing.best
                self.floor[(bands, threads)] = timing.best
                if threads == self.threads[0]:
                    row.compile, row.peak = timing.compile, timing.peak
                    count, total = timing.result
                    expected = valid_sums(data, s.valid)
                    row.check = combine(
                        [
                            compare(count, self.count, "valid count"),
                            compare(total, expected, "numpy sum"),
                        ]
                    )
            numba.set_num_threads(self.threads[0])
            row.note = "reads stack and mask once: count and sum of valid values"
            self.progress(row)

    # - references -

    def reference(
        self,
        key: str,
        label: str,
        call: Callable[[], Any],
        *,
        check: Callable[[Any], Check],
        warm: Callable[[], Any] | None = None,
        runs: int = 3,
        fraction: float = 1.0,
        note: str = "",
        needs: Sequence[str] = (),
    ) -> None:
        skipped = [p for p in (key.split("-")[0], *needs) if p in self.args.skip]
        missing = [] if skipped else [p for p in needs if not installed(p)]
        row = self.add(Row(label, "reference", 1, self.one_bytes, key=key, fraction=fraction))
        if missing or skipped:
            row.available = False
            row.note = f"{', '.join(missing)} not installed" if missing else "skipped (--skip)"
            self.progress(row)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            timing = measure(self.memory, call, warm=warm, runs=runs, budget=1.5)
        row.times[self.threads[0]] = timing.best
        row.compile, row.peak = timing.compile, timing.peak
        row.check = check(timing.result)
        row.note = note
        if fraction < 1:
            row.note = (
                f"{row.note}; " if row.note else ""
            ) + f"EXTRAPOLATED from {fraction:.1%} of the rows (--full runs it whole)"
        self.progress(row)

    def run_references(self) -> None:
        s, a = self.stack, self.args
        nan, valid, band = self.nan, s.valid, s.band
        strip = self.strip
        fraction = 1.0 if a.full else (strip.stop - strip.start) / a.size
        w = WARM_PIXELS
        small = np.ascontiguousarray(nan[:, :w, :w])

        # numpy sort + gather: the exact definition, fast enough to check everything against
        outs: dict[str, Any] = {}

        def run_sort_gather() -> list[np.ndarray]:
            (median, q25), ordered, count = sort_gather(band, valid, [0.5, 0.25])
            # the CDSE-L3 first quartile from the same sort: x_(floor(n / 4))
            idx = np.minimum(count // 4, band.shape[0] - 1)
            l3 = np.take_along_axis(ordered, idx[None], axis=0)[0]
            l3[count == 0] = NODATA
            outs["cdse-l3"] = l3
            return [median, q25]

        # numpy's own nanmedian and nanquantile (float32, NaN where masked) define the quantiles
        self.reference(
            "np-nanmedian",
            "numpy nanmedian",
            lambda: np.nanmedian(nan, axis=0),
            check=lambda r: self._keep("np-nanmedian", rounded(r)),
            runs=2,
            note="float32 with NaN, 1 thread",
        )
        self.reference(
            "np-nanquantile",
            "numpy nanquantile(0.25)",
            lambda: np.nanquantile(nan[:, strip], 0.25, axis=0),
            check=lambda r: self._keep("np-nanquantile", rounded(r)),
            runs=1,
            fraction=fraction,
            note="float32 with NaN, 1 thread",
        )
        label = "numpy sort + gather (median, q25)"
        row = self.add(Row(label, "reference", 1, self.one_bytes, key="sort-gather"))
        timing = measure(self.memory, run_sort_gather, runs=2, budget=3.0)
        row.times[self.threads[0]] = timing.best
        row.peak = timing.peak
        median, q25 = timing.result
        self.truth["median"], self.truth["q25"] = median, q25
        self.truth["cdse-l3"] = outs["cdse-l3"]
        checks = []
        if "np-nanmedian" in self.truth:
            checks.append(compare(median, self.truth["np-nanmedian"], "numpy nanmedian"))
        if "np-nanquantile" in self.truth:
            expected = self.truth["np-nanquantile"]
            checks.append(compare(q25[strip], expected, "numpy nanquantile"))
        row.check = combine(checks) if checks else Check(None, "numpy references skipped")
        row.note = "uint16, masked sorted last, 1 thread; the exact result the rest is checked on"
        self.progress(row)

        def both(r: Any) -> Check:
            r = np.asarray(r)
            return combine(
                [
                    compare(rounded(r[0]), median, "exact median"),
                    compare(rounded(r[1]), q25, "exact q25"),
                ]
            )

        bn = None if "bn" in self.args.skip else optional("bottleneck")
        self.reference(
            "bn-nanmedian",
            "bottleneck nanmedian",
            lambda: bn.nanmedian(nan, axis=0),
            check=lambda r: compare(rounded(r), median, "exact median"),
            needs=("bottleneck",),
            note="float32 with NaN, 1 thread",
        )
        numbagg = None if "nb" in self.args.skip else optional("numbagg")
        self.reference(
            "nb-nanmedian",
            "numbagg nanmedian",
            lambda: numbagg.nanmedian(nan, axis=0),
            warm=lambda: numbagg.nanmedian(small, axis=0),
            check=lambda r: compare(rounded(r), median, "exact median"),
            needs=("numbagg",),
            note="float32 with NaN, numba threads",
        )
        self.reference(
            "nb-nanquantile",
            "numbagg nanquantile([0.5, 0.25])",
            lambda: numbagg.nanquantile(nan, [0.5, 0.25], axis=0),
            warm=lambda: numbagg.nanquantile(small, [0.5, 0.25], axis=0),
            check=both,
            needs=("numbagg",),
            note="float32 with NaN, numba threads",
        )
        self.run_xarray(median, q25, both)

    def run_xarray(self, median: np.ndarray, q25: np.ndarray, both: Callable[[Any], Check]) -> None:
        a = self.args
        xr = None if "xr" in a.skip else optional("xarray")
        has_numbagg = installed("numbagg") and "numbagg" not in a.skip
        backend = "numbagg" if has_numbagg else "numpy"
        da = None
        if xr is not None:
            da = xr.DataArray(self.nan, dims=("time", "y", "x"))
            small = da[:, :WARM_PIXELS, :WARM_PIXELS].copy()
        # without numbagg xarray's quantile is numpy's nanquantile: strip + extrapolate
        slow = not has_numbagg and not a.full
        strip = self.strip if slow else slice(None)
        fraction = 1.0 if not slow else (strip.stop - strip.start) / a.size
        opts: dict[str, Any] = {} if has_numbagg else {"use_numbagg": False}

        def ctx() -> contextlib.AbstractContextManager[Any]:
            return xr.set_options(**opts) if xr is not None else contextlib.nullcontext()

        def warm(f: Callable[[Any], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with ctx():
                    return f(small)

            return run if has_numbagg else lambda: None

        def run(f: Callable[[Any], Any], arr: Any) -> Callable[[], Any]:
            def go() -> Any:
                with ctx():
                    return f(arr)

            return go

        def median_of(d: Any) -> Any:
            return d.median("time").values

        def quantile_of(d: Any) -> Any:
            return d.quantile([0.5, 0.25], dim="time").values

        def dask_median_of(d: Any) -> Any:
            return d.median("time").compute().values

        def dask_quantile_of(d: Any) -> Any:
            return d.quantile([0.5, 0.25], dim="time").compute().values

        chunked = None
        if da is not None and installed("dask"):
            chunked = da.chunk({"time": -1, "y": 512, "x": 512})
        self.reference(
            "xr-median",
            "xarray .median('time')",
            run(median_of, da),
            warm=warm(median_of),
            check=lambda r: compare(rounded(r), median, "exact median"),
            needs=("xarray",),
            note=f"numpy-backed, skipna, via {'numbagg' if has_numbagg else 'numpy'}",
        )
        self.reference(
            "xr-quantile",
            "xarray .quantile([0.5, 0.25])",
            run(quantile_of, da if not slow or da is None else da[:, strip]),
            warm=warm(quantile_of),
            check=lambda r: both(r) if not slow else self._both_strip(r, strip),
            needs=("xarray",),
            runs=1 if slow else 3,
            fraction=fraction,
            note=f"numpy-backed, skipna, via {backend}",
        )
        self.reference(
            "xr-dask-median",
            "xarray+dask .median('time')",
            run(dask_median_of, chunked),
            warm=warm(median_of),
            check=lambda r: compare(rounded(r), median, "exact median"),
            needs=("xarray", "dask"),
            runs=2,
            note=f"chunks 512 x 512, dask threads, via {'numbagg' if has_numbagg else 'numpy'}",
        )
        self.reference(
            "xr-dask-quantile",
            "xarray+dask .quantile([0.5, 0.25])",
            run(
                dask_quantile_of,
                chunked if not slow or chunked is None else chunked[:, strip],
            ),
            warm=warm(quantile_of),
            check=lambda r: both(r) if not slow else self._both_strip(r, strip),
            needs=("xarray", "dask"),
            runs=1 if slow else 2,
            fraction=fraction,
            note=f"chunks 512 x 512, dask threads, via {backend}",
        )

    def _both_strip(self, r: Any, strip: slice) -> Check:
        r = np.asarray(r)
        return combine(
            [
                compare(rounded(r[0]), self.truth["median"][strip], "exact median"),
                compare(rounded(r[1]), self.truth["q25"][strip], "exact q25"),
            ]
        )

    def _keep(self, key: str, value: np.ndarray) -> Check:
        self.truth[key] = value
        return Check(None, "defines the expected result")

    # - cloudfree -

    def run_cloudfree(self) -> None:
        s = self.stack
        try:
            from cloudfree.composite import compositor_names, make_compositor
            from cloudfree.composite.observations import Observations
        except Exception as exc:
            registry: tuple[str, ...] | None = None
            why = f"cloudfree.composite does not import: {type(exc).__name__}: {exc}"
        else:
            registry = compositor_names()
            why = ""
        try:
            from cloudfree.composite.kernels.quantiles import masked_quantiles
        except Exception as exc:
            masked_quantiles = None
            mq_why = f"masked_quantiles does not import: {type(exc).__name__}: {exc}"

        rejected = ~s.valid
        accepted: set[str] = set()
        period = None
        if registry is not None:
            accepted = {f.name for f in dataclasses.fields(Observations)}
            with contextlib.suppress(Exception):
                from cloudfree.timeframe import Period

                # the calendar year the dates fall in (best-pixel targets its middle)
                period = Period(date(s.days[0].year, 1, 1), date(s.days[-1].year + 1, 1, 1))
        nb = s.data.shape[1]
        bands_all = tuple(BAND_IDS[b % len(BAND_IDS)] for b in range(nb))
        band_one = (BAND_IDS[min(QUANTILE_BAND, nb - 1) % len(BAND_IDS)],)

        def observations(multiband: bool, crop: int | None = None) -> Any:
            data = s.data if multiband else s.band[:, None]
            valid, rej = s.valid, rejected
            if crop is not None:
                data = np.ascontiguousarray(data[..., :crop, :crop])
                valid = np.ascontiguousarray(valid[..., :crop, :crop])
                rej = np.ascontiguousarray(rej[..., :crop, :crop])
            given = {
                "data": data,
                "valid": valid,
                "nodata": NODATA,
                "days": s.days,
                "period": period,
                "bands": bands_all if multiband else band_one,
                "rejected": rej,
                "pixel_size_m": 10.0,
            }
            # only what this version of Observations takes
            return Observations(**{k: v for k, v in given.items() if k in accepted})

        for method in METHODS:
            bands = nb if method.multiband else 1
            row = self.add(
                Row(
                    method.label,
                    "cloudfree",
                    bands,
                    self.all_bytes if method.multiband else self.one_bytes,
                    key=method.name or "masked_quantiles",
                )
            )
            if method.name is None:
                if masked_quantiles is None:
                    row.available, row.note = False, mq_why
                    self.progress(row)
                    continue
                w = WARM_PIXELS
                # (time, band, y, x) in, (q, band, y, x) out; or (time, y, x) in, [(y, x)] out
                stacked = s.band[:, None]
                small_band = np.ascontiguousarray(stacked[..., :w, :w])
                small_valid = np.ascontiguousarray(s.valid[:, :w, :w])
                try:
                    masked_quantiles(small_band, small_valid, [0.5], NODATA)
                    full_band = stacked
                except (ValueError, TypeError):
                    small_band, full_band = small_band[:, 0], s.band

                def call(f: Any = masked_quantiles, v: Any = full_band) -> Any:
                    return f(v, s.valid, [0.5, 0.25], NODATA)

                def warm_call(
                    f: Any = masked_quantiles, v: Any = small_band, ok: Any = small_valid
                ) -> Any:
                    return f(v, ok, [0.5, 0.25], NODATA)

                def check(r: Any) -> Check:
                    r = np.asarray(r)
                    r = r[:, 0] if r.ndim == 4 else r
                    return combine(
                        [
                            compare(r[0], self.truth["median"], "exact median"),
                            compare(r[1], self.truth["q25"], "exact q25"),
                        ]
                    )

            else:
                if registry is None or method.name not in registry:
                    row.available = False
                    row.note = why or "not in the registry"
                    self.progress(row)
                    continue
                try:
                    compositor = build(make_compositor, method)
                    obs = observations(method.multiband)
                    small = observations(method.multiband, WARM_PIXELS)
                except Exception as exc:
                    row.check = Check(False, f"ERROR building: {type(exc).__name__}: {exc}")
                    self.progress(row)
                    continue

                def call(c: Any = compositor, o: Any = obs) -> Any:
                    return c(o)

                def warm_call(c: Any = compositor, o: Any = small) -> Any:
                    return c(o)

                check = self.checker(method)
            try:
                for threads in self.threads:
                    numba.set_num_threads(threads)
                    timing = measure(self.memory, call, warm=warm_call, runs=self.args.runs)
                    row.times[threads] = timing.best
                    if threads == self.threads[0]:
                        row.compile, row.peak = timing.compile, timing.peak
                        result = timing.result
                    timing = None  # type: ignore[assignment]
                numba.set_num_threads(self.threads[0])
                row.check = check(result)
            except Exception as exc:
                numba.set_num_threads(self.threads[0])
                row.check = Check(False, f"ERROR: {type(exc).__name__}: {exc}")
            result = None
            self.speedups(row, method)
            self.progress(row)

    def checker(self, method: Method) -> Callable[[Any], Check]:
        s = self.stack
        count = self.count

        def observations_check(c: Any) -> Check:
            obs = np.asarray(c.observations)
            return compare(obs, count, "valid count (observations)")

        def one(expected: np.ndarray, what: str) -> Callable[[Any], Check]:
            def run(c: Any) -> Check:
                values = np.asarray(c.values)
                if values.shape[0] != 1:
                    return Check(False, f"NO: values shape {values.shape}, expected one band")
                return combine([compare(values[0], expected, what), observations_check(c)])

            return run

        name = method.name
        if name == "median":
            return one(self.truth["median"], "exact median")
        if name == "quantile":
            return one(self.truth["q25"], "exact q25")
        if name == "cdse-l3":
            return one(self.truth["cdse-l3"], "exact x_(floor(n/4))")
        if name in ("min", "max"):
            fill = np.iinfo(s.band.dtype).max if name == "min" else 0
            masked = np.where(s.valid, s.band, s.band.dtype.type(fill))
            expected = masked.min(axis=0) if name == "min" else masked.max(axis=0)
            expected[count == 0] = NODATA
            return one(expected, f"numpy {name}")
        if name == "count":

            def run_count(c: Any) -> Check:
                checks = [observations_check(c)]
                values = np.asarray(c.values)
                if values.shape == (1, *count.shape):
                    checks.append(compare(values[0], count, "valid count (values)"))
                return combine(checks)

            return run_count
        if name == "mean":
            total = valid_sums(s.data, s.valid)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.rint(total / count)
            expected = np.where(count == 0, NODATA, mean).astype(np.int64)

            def run_mean(c: Any) -> Check:
                return combine(
                    [
                        compare(np.asarray(c.values), expected, "exact mean, half to even"),
                        observations_check(c),
                    ]
                )

            return run_mean
        if name == "medoid":
            return self.medoid_check
        if name == "geomedian":
            return self.geomedian_check

        def run_select(c: Any) -> Check:
            check, _ = selects_observations(s.data, s.valid, count, s.days, c, filters=True)
            return combine([check, observations_check(c)])

        return run_select

    def _strip_arrays(self) -> tuple[slice, np.ndarray, np.ndarray]:
        """A strip of the multi-band stack as ``(time, band, n)`` float64 and ``(time, n)``."""
        s = self.stack
        rows = strip_rows(self.args.size, self.args.check_pixels)
        t, nb = s.data.shape[:2]
        x = s.data[:, :, rows].reshape(t, nb, -1).astype(np.float64)
        ok = s.valid[:, rows].reshape(t, -1)
        return rows, x, ok

    def medoid_check(self, c: Any) -> Check:
        s = self.stack
        select, index = selects_observations(s.data, s.valid, self.count, s.days, c)
        rows, x, ok = self._strip_arrays()
        cost = medoid_costs(x, ok)
        best = cost.min(axis=0)
        chosen = index[rows].reshape(-1)
        has = np.isfinite(best)
        got = np.where(chosen >= 0, cost[np.maximum(chosen, 0), np.arange(chosen.size)], np.inf)
        # float32 distances are fine: ties within 1e-5 relative count as the least
        worse = has & ~(got <= best * (1 + 1e-5) + 1e-3)
        if np.any(worse):
            opt = Check(
                False,
                f"NO: {int(worse.sum())} of {int(has.sum())} strip px not the observation "
                "nearest the multi-band median",
            )
        else:
            opt = Check(True, f"nearest the multi-band median on {int(has.sum())} strip px")
        obs = compare(np.asarray(c.observations), self.count, "valid count (observations)")
        return combine([select, opt, obs])

    def geomedian_check(self, c: Any) -> Check:
        rows, x, ok = self._strip_arrays()
        values = np.asarray(c.values)
        nb = x.shape[1]
        got = values[:, rows].reshape(nb, -1).astype(np.float64)
        ref = geometric_median(x, ok)
        n = ok.sum(axis=0)
        has = n > 0
        got_cost = geomedian_cost(x, ok, got)
        ref_cost = geomedian_cost(x, ok, np.nan_to_num(ref))
        # rounding to integers moves the point by <= sqrt(bands) / 2, the sum by n times that
        allowed = ref_cost * (1 + 1e-6) + n * math.sqrt(nb) / 2 + 1e-6
        worse = has & ~(got_cost <= allowed)
        empty_bad = ~has & np.any(got != NODATA, axis=0)
        # with 2 observations (or collinear ones) every point between them is a geometric
        # median: the distance to Weiszfeld's point only means something from 3 on
        diff = np.abs(got - np.rint(np.nan_to_num(ref))).max(axis=0)[n >= 3]
        max_diff = (
            f"{diff.max():.0f} (99th percentile {np.percentile(diff, 99):.0f})"
            if diff.size
            else "-"
        )
        if np.any(worse) or np.any(empty_bad):
            strip = Check(
                False,
                f"NO: {int(worse.sum())} strip px farther from the observations than the "
                f"geometric median allows, {int(empty_bad.sum())} empty px not nodata (max abs "
                f"diff to Weiszfeld's point {max_diff} DN where >= 3 observations)",
            )
        else:
            strip = Check(
                True,
                f"sum of distances within rounding of Weiszfeld's on {int(has.sum())} strip px "
                f"(max abs diff to its point {max_diff} DN where >= 3 observations)",
            )
        empty = values[:, self.count == 0]
        nodata = compare(empty, np.full_like(empty, NODATA), "nodata where none valid")
        obs = compare(np.asarray(c.observations), self.count, "valid count (observations)")
        return combine([strip, nodata, obs])

    def speedups(self, row: Row, method: Method) -> None:
        t = row.time(self.threads[0])
        if t is None or t <= 0:
            return
        for key in method.references:
            ref = self.by_key.get(key)
            if ref is None or not ref.available:
                continue
            rt = ref.time(self.threads[0])
            if rt is not None:
                r = rt / t
                row.speedups.append(
                    f"{ref.label} {r:,.0f}x" if r >= 10 else f"{ref.label} {r:.2g}x"
                )

    # - output -

    def x_floor(self, row: Row) -> str:
        t = row.time(self.threads[0])
        floor = self.floor.get((row.bands, self.threads[0]))
        if t is None or not floor:
            return ""
        return f"{t / floor:,.1f}"

    def table(self) -> list[str]:
        primary = self.threads[0]
        extra = [f"time {n} thr (s)" for n in self.threads[1:]]
        head = [
            "method",
            "bands",
            f"time (s), {primary} thr",
            *extra,
            "compile (s)",
            "x floor",
            "speed-up vs references",
            "peak extra MB (x input)",
            "agrees",
            "notes",
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            if not row.available:
                cells = [row.label, str(row.bands), "not available", *[""] * len(extra)]
                cells += ["", "", "", "", "", row.note]
                lines.append("| " + " | ".join(cells) + " |")
                continue
            times = []
            for n in self.threads:
                t = row.time(n)
                mark = "~" if row.fraction < 1 else ""
                times.append("" if t is None else f"{mark}{t:.3f}")
            peak = ""
            if row.peak is not None and row.fraction < 1:
                peak = f"{row.peak / 1e6:,.0f} on the strip"
            elif row.peak is not None:
                peak = f"{row.peak / 1e6:,.0f} ({row.peak / row.input_bytes:.2f}x)"
            agrees = {True: "yes", False: "**NO**", None: "-"}[row.check.ok]
            detail = row.check.text
            cells = [
                row.label,
                str(row.bands),
                *times,
                "" if row.compile is None else f"{row.compile:.2f}",
                self.x_floor(row),
                ", ".join(row.speedups),
                peak,
                f"{agrees}: {detail}" if detail else agrees,
                row.note,
            ]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return lines

    def targets(self) -> list[str]:
        primary = self.threads[0]
        rows = {r.key: r for r in self.rows if r.kind == "cloudfree"}

        def ratio(key: str, limit: float, what: str) -> str:
            row = rows.get(key)
            if row is None or not row.available or row.time(primary) is None:
                return f"- n/a: {what} (not available)"
            floor = self.floor[(row.bands, primary)]
            r = row.time(primary) / floor  # type: ignore[operator]
            verdict = "PASS" if r <= limit else "MISS"
            return f"- {verdict}: {what}: {r:.1f}x the floor (target <= {limit:g}x)"

        out = [
            ratio("median", 3, "median"),
            ratio("quantile", 3, "quantile 0.25"),
            ratio("masked_quantiles", 5, "median and 0.25 together (masked_quantiles)"),
            ratio("medoid", 20, "medoid"),
            ratio("geomedian", 20, "geomedian"),
        ]
        for key, label in (("median", "median"), ("quantile", "quantile 0.25")):
            row = rows.get(key)
            if row is None or not row.available or row.check.ok is None:
                out.append(f"- n/a: {label} bit-identical to numpy (not available)")
            else:
                verdict = "PASS" if row.check.ok else "MISS"
                out.append(f"- {verdict}: {label} bit-identical to numpy: {row.check.text}")
        q = rows.get("quantile")
        ref = self.by_key.get("np-nanquantile")
        if q is None or not q.available or ref is None or not ref.available or not q.times:
            out.append("- n/a: quantile 0.25 >= 100x faster than numpy nanquantile")
        else:
            speed = ref.time(primary) / q.time(primary)  # type: ignore[operator]
            approx = " (extrapolated)" if ref.fraction < 1 else ""
            out.append(
                f"- {'PASS' if speed >= 100 else 'MISS'}: quantile 0.25 {speed:,.0f}x faster "
                f"than numpy nanquantile{approx} (target >= 100x)"
            )
        for row in rows.values():
            if row.available and row.peak is not None:
                x = row.peak / row.input_bytes
                out.append(
                    f"- {'PASS' if x < 1 else 'MISS'}: {row.label} peak extra memory "
                    f"{x:.2f}x its input stack (target < 1x: no copy of the stack)"
                )
        return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048, help="pixels on a side (2048)")
    parser.add_argument("--dates", type=int, default=24, help="time layers (24)")
    parser.add_argument("--bands", type=int, default=4, help="bands of multi-band methods (4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--full",
        action="store_true",
        help="run numpy nanquantile on the whole stack (~150 s at 2048) instead of a strip",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[min(2, numba.config.NUMBA_NUM_THREADS)],
        help="numba thread counts; the first is the main one (2); add 1 for a single-thread column",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["np", "bn", "nb", "xr", "numbagg", "bottleneck", "xarray", "dask"],
        help="references to leave out (np numpy, bn bottleneck, nb numbagg, xr xarray)",
    )
    parser.add_argument(
        "--check-pixels",
        type=int,
        default=32768,
        help="pixels of the strip medoid and geomedian are checked on with numpy (32768)",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="best of this many runs of each cloudfree method (5)"
    )
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    aliases = {"numbagg": "nb", "bottleneck": "bn", "xarray": "xr"}
    args.skip = {aliases.get(s, s) for s in args.skip} | set(args.skip)
    if "nb" in args.skip:
        args.skip.add("numbagg")
    numba.set_num_threads(args.threads[0])

    bench = Bench(args)
    bench.build()
    print("floor:", flush=True)
    bench.run_floor()
    print("references:", flush=True)
    bench.run_references()
    print("cloudfree:", flush=True)
    bench.run_cloudfree()

    s = bench.stack
    header = [
        f"Stack: {args.dates} dates x {args.size} x {args.size} uint16 (multi-band methods: "
        f"{s.data.shape[1]} bands), {bench.masked:.1%} of observations masked in blobs, "
        f"{np.mean(bench.count == 0):.2%} of pixels never valid; {os.cpu_count()} CPUs "
        f"({load_text()} at the end), numba threads {args.threads[0]}. Generated with "
        f"`{' '.join(['python benchmarks/composite.py', command_line(argv)]).strip()}`. Times "
        "are the best of several runs after a warm-up; compile is the warm-up call on a small "
        "crop (numba compiles there). x floor: time over the one-pass floor with the same bands. "
        "Speed-up: the reference's time over this one. "
        "Peak extra: resident memory above the level before the call, and as a multiple of the "
        "call's input stack (uint16, mask not counted). ~: extrapolated from a strip of rows. "
        "Quantiles agree when equal to numpy's linear quantile of the valid values rounded half "
        "to even (nodata where none is valid), checked against numpy nanmedian / nanquantile "
        "through the exact numpy sort + gather.",
    ]
    table = bench.table()
    targets = bench.targets()
    print()
    print("\n".join(table))
    print()
    print("Targets:")
    print("\n".join(targets))
    if args.out:
        text = "\n".join([*header, "", *table, "", "Targets:", "", *targets, ""])
        args.out.write_text(text)
        print(f"wrote {args.out}")
    failed = [r.label for r in bench.rows if r.available and r.check.ok is False]
    if failed:
        print(f"DISAGREE: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
