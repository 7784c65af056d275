"""What a job costs, known before any pixel is read: the dry-run summary and the memory check.

:func:`estimate_plan` works on a mosaic's :class:`~cloudfree.grid.Plan` given the layers each
unit reads and the variables it writes (``pipeline.describe_plan`` fills those in);
``cube.describe_cube`` builds the same summary for a cube from :func:`read_bytes` and
:func:`unit_peak_bytes` (a cube unit holds its days' stack and writes it, with no composite).
:func:`check_memory` refuses a job whose work units would not fit a worker's memory, before the
store is created; :func:`format_plan` is what ``--dry-run`` prints.

The peak memory of one unit follows what ``composite_unit`` holds at its busiest, for a strip
of the tile padded by the halo (``S`` pixels), ``T`` solar days, ``B`` int16 bands and ``L`` uint8
mask layers:

- the stack, allocated once: ``T x S x (2 B + L + 4)`` bytes (:func:`stack_bytes`: the values,
  the mask layers, where each day has data, the mask's verdict, the clear and the rejected
  observations); a tile whose stack would pass ``ReadSettings.stack_bytes`` is composited in row
  strips that each fit (:func:`strip_rows`), so ``S`` is a strip's;
- the method's working arrays, at most ``T x S x B`` bytes, and the days being read (decoded
  and warp buffers): ``S x (4 B + 16)``;
- the composite written (``s x`` bytes of every output variable, ``s`` the tile's pixels) and
  :data:`UNIT_OVERHEAD_BYTES`.

A worker's peak is a process base (interpreter, numba, GDAL, zarr; :data:`PROCESS_BASE_BYTES`,
measured) plus GDAL's block and VSI caches at their configured maxima, plus one unit per thread.
``docs/architecture.md`` gives the estimate against a measured peak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from dask.utils import format_bytes, parse_bytes
from odc.geo.geobox import GeoBox

from cloudfree.bands import Band
from cloudfree.config import cache_bytes
from cloudfree.engine import EngineSpec, local_cluster_threads
from cloudfree.errors import InvalidInputError, MemoryLimitError
from cloudfree.grid import Plan, WorkUnit, pixel_size_metres
from cloudfree.scene import Scene

#: Resident memory of a worker process before its first unit: Python, numpy, numba's compiled
#: kernels, GDAL, zarr and xarray (measured: 307 MiB; see benchmarks/memory_estimate.py).
PROCESS_BASE_BYTES = 350 * 2**20
#: Memory of a unit beyond its arrays: dataset handles, zarr's encode buffers, Python objects
#: (measured: about 8 MiB for 256 px tiles, where arrays are small).
UNIT_OVERHEAD_BYTES = 8 * 2**20


@dataclass(frozen=True)
class PlanSummary:
    """A job's size and cost, computed from its plan without reading a pixel."""

    scenes: int
    solar_days: int
    periods: tuple[str, ...]
    units: int
    tile: tuple[int, int]
    """Tile size ``(y, x)`` in pixels (edge tiles may be smaller)."""
    halo: int
    shape: tuple[int, int, int]
    """Output shape ``(time, y, x)``."""
    crs: str
    variables: tuple[tuple[str, str], ...]
    """``(name, dtype)`` of every variable written."""
    bytes_to_read: int
    """Decoded bytes of every window read (upper bound: overviews, footprints)."""
    bytes_to_write: int
    """Exact bytes of the values the work units write (before compression)."""
    unit_peak_bytes: int
    """Estimated peak memory of the largest work unit."""
    largest_unit: str
    process_base_bytes: int
    """A worker process before its first unit, plus GDAL's caches at their maxima."""
    threads_per_worker: int
    """Units that run at once in one worker process."""
    memory_limit: int | None
    """Bytes one worker may use (``--memory-limit``, the cluster's, or the available memory)."""

    @property
    def worker_peak_bytes(self) -> int:
        """Estimated peak memory of one worker: its base plus one unit per thread."""
        return self.process_base_bytes + self.threads_per_worker * self.unit_peak_bytes

    @property
    def fits(self) -> bool:
        """Whether the estimated worker peak is within the memory limit (or there is none)."""
        return self.memory_limit is None or self.worker_peak_bytes <= self.memory_limit


def parse_memory(text: str | int | float) -> int:
    """Bytes from ``4GB``, ``512MiB``, ``4e9`` or a number of bytes."""
    try:
        value = parse_bytes(text) if isinstance(text, str) else int(text)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"--memory-limit {text!r} is not a size; give it as 4GB, 512MiB or bytes."
        ) from None
    if value <= 0:
        raise InvalidInputError(f"--memory-limit must be positive, got {text!r}.")
    return int(value)


def available_memory() -> int:
    """Memory this machine can give a process now (``psutil``'s available memory)."""
    import psutil

    return int(psutil.virtual_memory().available)


def gdal_cache_bytes(gdal_options: Mapping[str, str | int]) -> int:
    """GDAL's block cache and VSI cache at their configured maxima, in bytes."""
    total = cache_bytes(gdal_options.get("GDAL_CACHEMAX", 0))
    if str(gdal_options.get("VSI_CACHE", "FALSE")).upper() in ("TRUE", "YES", "ON", "1"):
        total += int(gdal_options.get("VSI_CACHE_SIZE", 25 * 2**20))
    return total


def read_bytes(
    geobox: GeoBox, scenes: Sequence[Scene], layers: Sequence[Band], halo: int, pixel_m: float
) -> int:
    """Decoded bytes one unit reads: ``scenes`` onto ``geobox`` padded by ``halo`` pixels.

    Per scene and layer: the padded tile's share of the scene at the resolution it is read at
    (a coarser overview when the output is coarser).
    """
    padded = geobox.pad(halo) if halo else geobox
    ny, nx = padded.shape.yx
    area_m2 = ny * nx * pixel_m * pixel_m
    extent = padded.extent.to_crs("EPSG:4326")
    total = 0.0
    for scene in scenes:
        overlap = extent.intersection(scene.footprint).area / max(extent.area, 1e-30)
        for band in layers:
            asset = scene.bands.get(band.id)
            source_m = (asset.resolution if asset and asset.resolution else None) or band.resolution
            read_m = max(float(source_m), pixel_m)
            total += overlap * area_m2 / (read_m * read_m) * (2 if band.is_reflectance else 1)
    return int(total)


#: Strip heights are multiples of this many rows (a 512 px COG block is four of them).
STRIP_ROWS_MULTIPLE = 128


def stack_bytes(pixels: int, days: int, bands: int, layers: int) -> int:
    """Bytes of a stack of ``days`` x ``pixels`` with its presence, verdict and clear arrays."""
    return days * pixels * (2 * bands + layers + 4)


def strip_rows(
    tile_yx: tuple[int, int],
    halo: int,
    days: int,
    bands: int,
    layers: int,
    limit: int,
    block_rows: int | None = None,
) -> int:
    """Rows of a tile composited at once, so that the stack of each strip fits ``limit`` bytes.

    The whole tile when it fits; else the fewest equal strips that fit, their height rounded up
    to :data:`STRIP_ROWS_MULTIPLE` rows and to ``block_rows`` (the sources' block height on the
    output grid, when known), and never below either: a strip shorter than a source block
    decodes that block once per strip that cuts it (512-row strips of 1024-row blocks, as
    Sentinel-2's JPEG 2000 and Earth Search's COGs have, decode everything twice), which costs
    more than the memory of a taller strip. The limit is passed where it must be; the memory
    check counts the strips as they are. Each strip is read with its own halo, so a strip costs
    ``2 x halo`` rows more than its share.
    """
    ny, nx = tile_yx
    width = nx + 2 * halo

    def fits(rows: int) -> bool:
        return stack_bytes((rows + 2 * halo) * width, days, bands, layers) <= limit

    if fits(ny):
        return ny
    step = max(STRIP_ROWS_MULTIPLE, block_rows or 0)
    strips = 2
    while True:
        rows = -(-ny // strips)
        rows = max(step, -(-rows // step) * step)
        if rows <= step or fits(rows):
            return min(rows, ny)
        strips += 1


def unit_strip_rows(unit: WorkUnit, job: Plan, bands: int, layers: int, limit: int) -> int:
    """:func:`strip_rows` of a work unit: the rows of its tile loaded and composited at once."""
    return strip_rows(
        unit.geobox.shape.yx, job.halo, unit.solar_days, bands, layers, limit, job.block_rows
    )


def unit_peak_bytes(
    padded_pixels: int, tile_pixels: int, days: int, bands: int, layers: int, out_bytes: int
) -> int:
    """Estimated peak memory of one unit (see the module docstring for each term).

    ``padded_pixels``: the pixels of the largest strip the unit loads at once, halo included.
    """
    stack = stack_bytes(padded_pixels, days, bands, layers)
    working = days * padded_pixels * bands + padded_pixels * (4 * bands + 16)
    return UNIT_OVERHEAD_BYTES + stack + working + tile_pixels * out_bytes


def estimate_plan(
    job: Plan,
    *,
    bands: Sequence[Band],
    mask_layers: Sequence[Band],
    variables: Sequence[tuple[str, np.dtype]],
    gdal_options: Mapping[str, str | int],
    threads_per_worker: int,
    memory_limit: int | None,
    stack_limit: int,
    units: Sequence[WorkUnit] | None = None,
) -> PlanSummary:
    """Size and cost of running ``units`` (default: every unit of ``job``).

    ``stack_limit``: the largest stack a unit holds at once (``ReadSettings.stack_bytes``).
    """
    todo = job.units if units is None else units
    pixel_m = pixel_size_metres(job.geobox)
    out_bytes = sum(np.dtype(dtype).itemsize for _, dtype in variables)
    to_read = to_write = 0
    peak, largest = 0, ""
    for unit in todo:
        ny, nx = unit.geobox.shape.yx
        days = unit.solar_days
        rows = unit_strip_rows(unit, job, len(bands), len(mask_layers), stack_limit)
        padded = (rows + 2 * job.halo) * (nx + 2 * job.halo)
        to_read += read_bytes(unit.geobox, unit.scenes, [*bands, *mask_layers], job.halo, pixel_m)
        to_write += ny * nx * out_bytes
        cost = unit_peak_bytes(padded, ny * nx, days, len(bands), len(mask_layers), out_bytes)
        if cost > peak:
            peak, largest = cost, unit.key
    return PlanSummary(
        scenes=len(job.scenes),
        solar_days=len({scene.solar_day for scene in job.scenes}),
        periods=tuple(p.label for p in job.periods),
        units=len(todo),
        tile=(min(job.chunk_size, job.shape[1]), min(job.chunk_size, job.shape[2])),
        halo=job.halo,
        shape=job.shape,
        crs=str(job.geobox.crs),
        variables=tuple((name, np.dtype(dtype).name) for name, dtype in variables),
        bytes_to_read=to_read,
        bytes_to_write=to_write,
        unit_peak_bytes=peak,
        largest_unit=largest,
        process_base_bytes=PROCESS_BASE_BYTES + gdal_cache_bytes(gdal_options),
        threads_per_worker=max(threads_per_worker, 1),
        memory_limit=memory_limit,
    )


def check_memory(summary: PlanSummary) -> None:
    """Refuse a job whose worker peak is over the memory limit, saying what to change."""
    if summary.fits:
        return
    assert summary.memory_limit is not None
    if summary.process_base_bytes >= summary.memory_limit:
        raise MemoryLimitError(
            f"A worker process and GDAL's caches alone need about "
            f"{format_bytes(summary.process_base_bytes)}, more than its memory limit of "
            f"{format_bytes(summary.memory_limit)}. Raise --memory-limit, or shrink GDAL's "
            "block cache (CLOUDFREE_GDAL_GDAL_CACHEMAX, in MB). Nothing was read or written."
        )
    one_unit = summary.process_base_bytes + summary.unit_peak_bytes
    advice = (
        f"run fewer units at once per worker (--threads, now {summary.threads_per_worker}), "
        if summary.threads_per_worker > 1 and one_unit <= summary.memory_limit
        else ""
    )
    raise MemoryLimitError(
        f"A worker would need about {format_bytes(summary.worker_peak_bytes)} "
        f"({summary.threads_per_worker} unit(s) at once x "
        f"{format_bytes(summary.unit_peak_bytes)} for the largest, {summary.largest_unit}, plus "
        f"{format_bytes(summary.process_base_bytes)} for the process and GDAL's caches), more "
        f"than its memory limit of {format_bytes(summary.memory_limit)}. Lower --chunk-size "
        f"(now {summary.tile[1]} px) or CLOUDFREE_STACK_MEMORY (the largest stack a unit "
        f"holds at once), {advice}or raise --memory-limit. Nothing was read or written."
    )


def format_plan(summary: PlanSummary) -> str:
    """The plan as ``--dry-run`` prints it."""
    t, y, x = summary.shape
    variables = ", ".join(f"{name} {dtype}" for name, dtype in summary.variables)
    periods = summary.periods
    shown = ", ".join(periods[:4]) + (f", ... ({len(periods)})" if len(periods) > 4 else "")
    limit = (
        "no limit"
        if summary.memory_limit is None
        else f"limit {format_bytes(summary.memory_limit)}: "
        + ("fits" if summary.fits else "DOES NOT FIT")
    )
    lines = [
        "Plan (dry run: nothing was read or written)",
        f"  scenes        {summary.scenes} ({summary.solar_days} solar days)",
        *([f"  periods       {len(periods)}: {shown}"] if periods else []),
        f"  work units    {summary.units} (tiles of {summary.tile[0]} x {summary.tile[1]} px, "
        f"halo {summary.halo} px)",
        f"  output        {t} x {y} x {x} (time, y, x) in {summary.crs}: {variables}",
        f"  to read       about {format_bytes(summary.bytes_to_read)} of decoded pixels",
        f"  to write      {summary.bytes_to_write} bytes ({format_bytes(summary.bytes_to_write)})"
        " of values, before compression",
        f"  peak memory   about {format_bytes(summary.worker_peak_bytes)} per worker "
        f"({summary.threads_per_worker} unit(s) at once x "
        f"{format_bytes(summary.unit_peak_bytes)} + {format_bytes(summary.process_base_bytes)} "
        f"process and GDAL caches); {limit}",
    ]
    return "\n".join(lines)


def worker_budget(
    spec: EngineSpec, threads: int, memory_limit: int | None
) -> tuple[int, int | None]:
    """Units at once in one worker and a worker's memory limit, for an engine not started here.

    Threads: ``threads``; a local cluster: its threads per worker; a remote cluster: one unit
    at a time. The limit is ``memory_limit`` (``--memory-limit``), else a share of this
    machine's memory for threads and local clusters, else none.
    """
    if spec.kind == "threads":
        per_worker = threads
    elif spec.kind == "local" and spec.workers:
        per_worker = spec.threads_per_worker or local_cluster_threads(spec.workers)
    else:
        per_worker = 1
    if memory_limit is None and spec.kind in ("threads", "local"):
        memory_limit = default_memory_limit(spec.workers)
    return max(per_worker, 1), memory_limit


def default_memory_limit(workers: int | None = None) -> int:
    """A local worker's share of this machine's memory (all of it for the thread engine)."""
    import psutil

    total = int(psutil.virtual_memory().total)
    if workers:
        return total // workers
    return min(available_memory(), total)


__all__ = [
    "PROCESS_BASE_BYTES",
    "PlanSummary",
    "available_memory",
    "check_memory",
    "default_memory_limit",
    "estimate_plan",
    "format_plan",
    "parse_memory",
    "stack_bytes",
    "strip_rows",
    "unit_strip_rows",
]
