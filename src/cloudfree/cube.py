"""The data cube: every solar day of a search on the target grid, in a Zarr v3 store.

One ``(time, y, x)`` array per band, plus the layers a cloud mask reads.

``cube(**options)`` = ``build_cube_request`` (validate everything) -> ``search_cube`` ->
``plan_cube`` (time axis = the solar days found, so the shape is known before any pixel is read)
-> ``initialize_cube`` (the empty store and the plan's fingerprint) -> ``fill_cube`` (load ->
write, one region per work unit, recorded in the store's manifest).

A work unit is one block of ``time_shard`` solar days on one ``chunk_size`` tile: exactly one
shard (or chunk) of every array, written whole, so units never touch each other's chunks and a
unit redone after a crash rewrites only its own region with the same values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import cast

import numpy as np
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import Geometry, unary_union

from cloudfree import __version__
from cloudfree.access import redact_message
from cloudfree.bands import Band, canonical_band, resolve_bands
from cloudfree.budget import (
    PROCESS_BASE_BYTES,
    PlanSummary,
    check_memory,
    gdal_cache_bytes,
    parse_memory,
    read_bytes,
    unit_peak_bytes,
    worker_budget,
)
from cloudfree.config import ReadSettings, default_threads, read_settings, tune_allocator
from cloudfree.engine import (
    Engine,
    EngineSpec,
    Notify,
    ProgressCallback,
    ShippedUnitTask,
    engine_spec,
    open_engine,
    run_units,
)
from cloudfree.errors import InvalidInputError
from cloudfree.grid import (
    area_geobox,
    check_chunk_size,
    check_resolution,
    context_pixels,
    parse_crs,
    pixel_size_metres,
    utm_crs_for,
)
from cloudfree.load import LoadOptions, load_stack, reused_stack_memory
from cloudfree.masks import CloudMask, make_mask
from cloudfree.options import check_run_flags, with_mask_config
from cloudfree.pipeline import area_of, check_assets, search_or_fail, search_query
from cloudfree.scene import Scene
from cloudfree.sources import SearchQuery, Source, select_source
from cloudfree.stack import missing_value
from cloudfree.store import location
from cloudfree.store.cube_store import (
    VALID,
    VALID_BAND,
    VALID_CLEAR,
    VALID_NODATA,
    VALID_REJECTED,
    CubeInfo,
    CubeStore,
    CubeVariable,
    create_cube,
    storage_dtype,
)
from cloudfree.store.manifest import Manifest
from cloudfree.timeframe import time_range

log = logging.getLogger(__name__)

DEFAULT_TIME_CHUNK = 8
"""Solar days per chunk: 8 x 1024 x 1024 int16 is 16 MiB before compression."""


@dataclass(frozen=True)
class CubeRequest:
    """A fully validated cube job."""

    source: Source
    query: SearchQuery
    bands: tuple[tuple[str, Band], ...]
    """(requested name, band) in request order; variables use the requested names."""
    crs: CRS | None
    """Grid CRS; ``None`` picks the UTM zone of the area's centre."""
    resolution: float | None
    margin_m: float
    """Metres of context stored around the area, for masks and methods that look around."""
    mask: CloudMask
    """The cloud mask whose layers the cube stores (and whose verdict, with ``validity``)."""
    validity: bool
    """Also store ``valid``: the mask's verdict per observation (clean-up halo included)."""
    out: str
    chunk_size: int
    time_chunk: int
    time_shard: int
    """Solar days per shard and per work unit (a multiple of ``time_chunk``)."""
    load: LoadOptions
    initialize: bool
    """Create the empty store (else fill an existing one)."""
    fill: bool
    """Load scenes into the store (else stop after initialising)."""
    overwrite: bool
    limit: int | None
    threads: int
    settings: ReadSettings = field(default_factory=ReadSettings)
    engine: EngineSpec = field(default_factory=EngineSpec)
    """Where the units run: threads here (default) or a Dask cluster."""
    memory_limit: int | None = None
    """Bytes one worker may use (``--memory-limit``); default the cluster's or the machine's."""

    def lineage(self) -> str:
        """How the cube's values were made, in one line."""
        return (
            f"Sentinel-2 L2A per solar day, same-solar-day scenes merged "
            f"({self.load.same_day} first), {self.load.resampling} resampling, layers of the "
            f"{self.mask.name} cloud mask"
            + (f", validity by {self.mask.describe()}" if self.validity else "")
        )


@dataclass(frozen=True)
class CubeUnit:
    """One block of solar days on one tile: one shard of every array."""

    key: str
    """Stable id, ``t<block>-y<row>-x<col>``."""
    times: tuple[int, int]
    """Time layers ``[start, stop)``."""
    tile: tuple[int, int]
    geobox: GeoBox
    scenes: tuple[Scene, ...]
    """Scenes of those days that touch the tile."""


@dataclass(frozen=True)
class CubePlan:
    """Everything a cube run will do, known before any pixel is read."""

    info: CubeInfo
    tiles: GeoboxTiles
    units: tuple[CubeUnit, ...]
    scenes: tuple[Scene, ...]
    halo: int = 0
    """Pixels loaded around each tile for the mask's verdict (``validity``), else 0."""
    pixel_size_m: float = 0.0
    """The area grid's pixel size in metres, as a mosaic of it gives its mask."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(time, y, x)`` of every array."""
        return (len(self.info.days), *self.info.geobox.shape.yx)

    @property
    def variables(self) -> tuple[CubeVariable, ...]:
        """Every array the units write."""
        return (*self.info.bands, *self.info.layers)


@dataclass(frozen=True)
class CubeResult:
    """What a cube run did."""

    out: str
    shape: tuple[int, int, int]
    crs: str
    days: tuple[date, ...]
    variables: tuple[str, ...]
    scenes: int
    units: int
    remaining: int
    """Units not yet filled (``--limit`` or ``--initialize`` alone)."""


def build_cube_request(
    *,
    out: str,
    stac: str | None = None,
    provider: str | None = None,
    archive: str | None = None,
    tiles: Iterable[str] = (),
    bbox: Sequence[float] | None = None,
    geometry_file: str | Path | None = None,
    start_date: str | date,
    end_date: str | date,
    bands: Iterable[str] = ("B04", "B03", "B02"),
    collections: Iterable[str] = (),
    max_cloud_cover: float | None = None,
    max_items: int | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    margin_m: float = 0.0,
    cloud_mask: str | None = None,
    mask_options: Mapping[str, object] | None = None,
    mask_config: str | Path | None = None,
    chunk_size: int = 1024,
    time_chunk: int = DEFAULT_TIME_CHUNK,
    time_shard: int | None = None,
    validity: bool = False,
    resampling: str | None = None,
    same_day: str | None = None,
    initialize: bool | None = None,
    overwrite: bool = False,
    resume: bool = False,
    limit: int | None = None,
    threads: int | None = None,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    dask_gateway: str | None = None,
    coiled: bool = False,
    memory_limit: str | int | None = None,
) -> CubeRequest:
    """Validate every option and return a request; raises before any expensive work.

    ``initialize``: ``None`` (default) creates the store and fills it, ``True`` only creates
    it, ``False`` fills an existing one (its unfinished units; ``resume`` is the same).
    """
    aoi = area_of(bbox, geometry_file)
    timerange = time_range(start_date, end_date)
    resolved = resolve_bands(bands)
    target_crs = parse_crs(crs) if crs else None
    if resolution is not None:
        check_resolution(target_crs or utm_crs_for(aoi), resolution)
    cloud_mask, mask_options = with_mask_config(cloud_mask, mask_options, mask_config)
    mask = make_mask(cloud_mask or "scl", mask_options)
    if not 0 <= margin_m <= 100_000:
        raise InvalidInputError(f"--margin is in metres (0 to 100000), got {margin_m}.")
    check_chunk_size(chunk_size)
    if time_chunk < 1:
        raise InvalidInputError(f"--time-chunk must be at least 1 solar day, got {time_chunk}.")
    shard = time_chunk if time_shard is None else time_shard
    if shard < time_chunk or shard % time_chunk:
        raise InvalidInputError(
            f"--time-shard ({shard}) must be a multiple of --time-chunk ({time_chunk})."
        )
    check_run_flags(resume=resume, overwrite=overwrite, limit=limit)
    if resume and initialize:
        raise InvalidInputError("--resume fills an existing store; drop --initialize.")
    if initialize is True and limit is not None:
        raise InvalidInputError("--limit counts units filled; --initialize alone fills none.")
    engine = engine_spec(
        workers=workers,
        dask_scheduler=dask_scheduler,
        dask_gateway=dask_gateway,
        coiled=coiled,
        threads=threads,
    )
    memory_bytes = parse_memory(memory_limit) if memory_limit is not None else None
    creating = initialize is not False and not resume
    out = location.absolute(out)
    if creating:
        location.check_writable(out, overwrite=overwrite, what="Cube store")
    elif overwrite:
        raise InvalidInputError("--overwrite replaces a store; --no-initialize fills one.")
    elif not location.exists(out):
        raise InvalidInputError(
            f"There is no cube at {out} to fill; create it first (drop --no-initialize/--resume)."
        )
    return CubeRequest(
        source=select_source(stac=stac, provider=provider, archive=archive, tiles=tiles),
        query=search_query(aoi, timerange, collections, max_cloud_cover, max_items),
        bands=resolved,
        crs=target_crs,
        resolution=resolution,
        margin_m=float(margin_m),
        mask=mask,
        validity=validity,
        out=out,
        chunk_size=chunk_size,
        time_chunk=time_chunk,
        time_shard=shard,
        load=LoadOptions(
            bands=tuple(b for _, b in resolved),
            mask_layers=tuple(canonical_band(name) for name in mask.layers),
            resampling=resampling or "bilinear",
            same_day=same_day or "least-cloudy",
        ),
        initialize=creating,
        fill=initialize is not True,
        overwrite=overwrite,
        limit=limit,
        threads=threads if threads is not None else default_threads(),
        settings=read_settings(),
        engine=engine,
        memory_limit=memory_bytes,
    )


def search_cube(request: CubeRequest) -> list[Scene]:
    """The scenes to load, checked to hold every band and layer the cube stores."""
    scenes = search_or_fail(request.source, request.query)
    check_assets(scenes, request.load.bands, request.load.mask_layers, request.mask)
    return scenes


def _layer_variables(request: CubeRequest) -> tuple[CubeVariable, ...]:
    """Mask layers not already stored as a band: ``scl``, ``cld``, or the band id."""
    band_ids = {band.id for _, band in request.bands}
    return tuple(
        CubeVariable(band.id.lower() if not band.is_reflectance else band.id, band.id)
        for band in request.load.mask_layers
        if band.id not in band_ids
    )


def plan_cube(request: CubeRequest, scenes: Sequence[Scene]) -> CubePlan:
    """The grid (the area's, padded by the margin), the solar days, and the work units."""
    area = area_geobox(request.query.aoi, request.crs, request.resolution)
    margin = context_pixels(request.margin_m, pixel_size_metres(area)) if request.margin_m else 0
    geobox = area.pad(margin) if margin else area
    by_day: dict[date, list[Scene]] = defaultdict(list)
    for scene in scenes:
        by_day[scene.solar_day].append(scene)
    days = tuple(sorted(by_day))
    info = CubeInfo(
        geobox=geobox,
        margin=margin,
        days=days,
        first_times=tuple(min(s.datetime for s in by_day[d]) for d in days),
        footprints=tuple(
            unary_union([s.footprint for s in by_day[d]]) or by_day[d][0].footprint for d in days
        ),
        bands=tuple(CubeVariable(name, band.id) for name, band in request.bands),
        layers=_layer_variables(request)
        + ((CubeVariable(VALID, VALID_BAND),) if request.validity else ()),
        aoi=request.query.aoi,
        start=request.query.timerange.start,
        end=request.query.timerange.end,
        resampling=request.load.resampling,
        same_day=request.load.same_day,
        chunk=request.chunk_size,
        time_chunk=request.time_chunk,
        time_shard=request.time_shard,
    )
    pixel_size_m = pixel_size_metres(area)
    halo = context_pixels(request.mask.halo_m(), pixel_size_m) if request.validity else 0
    tiles = GeoboxTiles(geobox, (request.chunk_size, request.chunk_size))
    extents: dict[tuple[int, int], tuple[GeoBox, Geometry]] = {}
    for iy in range(tiles.shape.y):
        for ix in range(tiles.shape.x):
            tile = cast(GeoBox, tiles[iy, ix])
            # scenes touching the halo count: the mask's clean-up sees them
            extents[(iy, ix)] = (tile, tile.pad(halo).extent.to_crs("EPSG:4326"))
    units: list[CubeUnit] = []
    for block, t0 in enumerate(range(0, len(days), request.time_shard)):
        t1 = min(t0 + request.time_shard, len(days))
        in_block = [s for d in days[t0:t1] for s in by_day[d]]
        for (iy, ix), (tile, extent) in extents.items():
            touching = tuple(s for s in in_block if s.footprint.intersects(extent))
            if touching:
                units.append(
                    CubeUnit(
                        key=f"t{block:04d}-y{iy:04d}-x{ix:04d}",
                        times=(t0, t1),
                        tile=(iy, ix),
                        geobox=tile,
                        scenes=touching,
                    )
                )
    return CubePlan(
        info=info,
        tiles=tiles,
        units=tuple(units),
        scenes=tuple(scenes),
        halo=halo,
        pixel_size_m=pixel_size_m,
    )


def fingerprint(request: CubeRequest, job: CubePlan) -> dict[str, object]:
    """What makes a cube's values: a store is filled only by a job that matches it exactly."""
    info = job.info
    return {
        "crs": str(info.geobox.crs),
        "transform": list(info.geobox.affine)[:6],
        "shape": list(job.shape),
        "margin": info.margin,
        "chunks": [info.time_chunk, info.chunk, info.time_shard],
        "days": [d.isoformat() for d in info.days],
        "variables": [[v.name, v.band] for v in job.variables],
        "lineage": request.lineage(),
        "scenes": sorted(s.id for s in job.scenes),
        "units": sorted(u.key for u in job.units),
    }


def initialize_cube(request: CubeRequest, job: CubePlan) -> None:
    """Create the empty store (the caller holds its lock) and record the plan last.

    A store whose plan is missing was not initialised completely, and is refused by fills.
    """
    attrs = {
        "title": "cloudfree Sentinel-2 L2A data cube",
        "cloudfree:version": __version__,
        "cloudfree:lineage": request.lineage(),
        "cloudfree:scenes": len(job.scenes),
    }
    create_cube(request.out, job.info, attrs=attrs)
    Manifest(request.out).save_plan(fingerprint(request, job))


def check_initialized(request: CubeRequest, job: CubePlan) -> None:
    """Refuse to fill a store made by another job (or not initialised completely)."""
    recorded = Manifest(request.out).plan()
    if recorded is None:
        raise InvalidInputError(
            f"{request.out} is not an initialised cube (no plan in its manifest); create it "
            "with `cloudfree cube` (add --overwrite to replace what is there)."
        )
    expected = json.loads(json.dumps(fingerprint(request, job)))
    if recorded != expected:
        differ = sorted(k for k in expected if recorded.get(k) != expected[k])
        raise InvalidInputError(
            f"The cube {request.out} was made by a different job than this search and these "
            f"options (it differs in {', '.join(differ)}); fill it with the options that made "
            "it, or recreate it with --overwrite."
        )


def load_block(request: CubeRequest, job: CubePlan, unit: CubeUnit) -> dict[str, np.ndarray]:
    """One unit's values: ``(time, y, x)`` per variable, "no data" where no scene has data."""
    halo = job.halo
    stack = load_stack(unit.geobox.pad(halo), unit.scenes, request.load, request.settings)
    valid = None
    if request.validity:
        clear = request.mask(stack.for_mask(), job.pixel_size_m)
        stack = stack.crop(halo)
        if halo:
            clear = clear[:, halo:-halo, halo:-halo]
        valid = np.where(clear, VALID_CLEAR, VALID_REJECTED).astype(np.uint8)
        valid[~stack.has_data] = VALID_NODATA
    t0, t1 = unit.times
    ny, nx = unit.geobox.shape.yx
    index = {day: i - t0 for i, day in enumerate(job.info.days[t0:t1], start=t0)}
    rows = [index[day] for day in stack.days]
    block: dict[str, np.ndarray] = {}
    for i, var in enumerate(job.info.bands):
        values = np.full((t1 - t0, ny, nx), missing_value(var.spec), dtype=storage_dtype(var.spec))
        values[rows] = stack.data[:, i]
        block[var.name] = values
    for var in job.info.layers:
        if var.band == VALID_BAND:
            values = np.full((t1 - t0, ny, nx), VALID_NODATA, dtype=np.uint8)
            values[rows] = valid
        else:
            values = np.full(
                (t1 - t0, ny, nx), missing_value(var.spec), dtype=storage_dtype(var.spec)
            )
            values[rows] = stack.layers[var.band]
        block[var.name] = values
    return block


def block_checksum(block: Mapping[str, np.ndarray]) -> str:
    """sha256 of every array a unit writes, in a fixed order."""
    digest = hashlib.sha256()
    for name in sorted(block):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(block[name]).tobytes())
    return digest.hexdigest()


class CubeFiller(ShippedUnitTask):
    """Load one unit's days, write its region, and record it (or its failure) in the manifest.

    What every engine runs for every unit; it ships to Dask workers without the read settings
    (:class:`~cloudfree.engine.ShippedUnitTask`). The store is opened once in each process.
    """

    def __init__(self, request: CubeRequest, job: CubePlan) -> None:
        self.request = request
        self.job = job
        self._store: CubeStore | None = None

    def reopened(self) -> None:
        """Open the store again in the worker's process, on first use."""
        self._store = None

    def __call__(self, unit: CubeUnit) -> None:
        """Fill one unit (idempotent: it writes exactly its own shards)."""
        manifest = Manifest(self.request.out)
        with reused_stack_memory():  # one unit after the other on this thread
            try:
                block = load_block(self.request, self.job, unit)
                ys, xs = self.job.tiles.roi[unit.tile]
                if self._store is None:
                    self._store = CubeStore(self.request.out)
                self._store.write(slice(*unit.times), ys, xs, block)
            except Exception as exc:
                manifest.record_failure(unit.key, redact_message(str(exc)))
                raise
            manifest.record_done(unit.key, block_checksum(block))


def units_to_fill(request: CubeRequest, job: CubePlan) -> list[CubeUnit]:
    """The units without a ``done`` record, at most ``limit`` of them."""
    finished = set(Manifest(request.out).finished()) if location.exists(request.out) else set()
    todo = [u for u in job.units if u.key not in finished]
    if finished:
        log.info("%d of %d work units already finished", len(finished), len(job.units))
    return todo if request.limit is None else todo[: request.limit]


def fill_cube(
    request: CubeRequest,
    job: CubePlan,
    *,
    engine: Engine | None = None,
    progress: ProgressCallback | None = None,
) -> int:
    """Fill the units without a ``done`` record (at most ``limit``); returns those left."""
    todo = units_to_fill(request, job)
    run_units(
        todo,
        CubeFiller(request, job),
        threads=request.threads,
        key=lambda u: u.key,
        progress=progress,
        engine=engine,
    )
    finished = set(Manifest(request.out).finished())
    return sum(1 for u in job.units if u.key not in finished)


def describe_cube(
    request: CubeRequest,
    job: CubePlan,
    *,
    units: Sequence[CubeUnit] | None = None,
    threads_per_worker: int | None = None,
    memory_limit: int | None = None,
) -> PlanSummary:
    """The cube job's size and cost (``--dry-run``), from its plan alone."""
    todo = job.units if units is None else units
    bands = [band for _, band in request.bands]
    layers = [canonical_band(name) for name in request.mask.layers]
    variables = job.variables
    days_bytes = sum(np.dtype(storage_dtype(v.spec)).itemsize for v in variables)
    to_read = to_write = peak = 0
    largest = ""
    for unit in todo:
        ny, nx = unit.geobox.shape.yx
        days = unit.times[1] - unit.times[0]
        padded = (ny + 2 * job.halo) * (nx + 2 * job.halo)
        to_read += read_bytes(
            unit.geobox, unit.scenes, [*bands, *layers], job.halo, job.pixel_size_m
        )
        to_write += days * ny * nx * days_bytes
        # the loaded stack, plus the block written (every variable over the unit's days)
        cost = unit_peak_bytes(padded, ny * nx, days, len(bands), len(layers), days * days_bytes)
        if cost > peak:
            peak, largest = cost, unit.key
    per_worker, limit = worker_budget(request.engine, request.threads, request.memory_limit)
    info = job.info
    return PlanSummary(
        scenes=len(job.scenes),
        solar_days=len(info.days),
        periods=(),
        units=len(todo),
        tile=(min(info.chunk, job.shape[1]), min(info.chunk, job.shape[2])),
        halo=job.halo,
        shape=job.shape,
        crs=str(info.geobox.crs),
        variables=tuple((v.name, np.dtype(storage_dtype(v.spec)).name) for v in variables),
        bytes_to_read=to_read,
        bytes_to_write=to_write,
        unit_peak_bytes=peak,
        largest_unit=largest,
        process_base_bytes=PROCESS_BASE_BYTES + gdal_cache_bytes(request.settings.gdal_options),
        threads_per_worker=threads_per_worker or per_worker,
        memory_limit=memory_limit or limit,
    )


def dry_run_cube(request: CubeRequest) -> PlanSummary:
    """Search and plan, and say what a run would cost; no pixel is read, nothing written."""
    job = plan_cube(request, search_cube(request))
    units = units_to_fill(request, job) if request.fill else []
    return describe_cube(request, job, units=units)


def run_cube(
    request: CubeRequest,
    *,
    progress: ProgressCallback | None = None,
    notify: Notify | None = None,
) -> CubeResult:
    """Run a validated cube request through every stage."""
    tune_allocator()  # before the threads of the search, the store and the engine start
    scenes = search_cube(request)
    job = plan_cube(request, scenes)
    log.info(
        "%d scenes on %d solar days, cube %s in %s, %d work units",
        len(scenes),
        len(job.info.days),
        job.shape,
        job.info.geobox.crs,
        len(job.units),
    )
    with open_engine(
        request.engine, threads=request.threads, memory_limit=request.memory_limit, notify=notify
    ) as engine:
        if request.fill:
            check_memory(
                describe_cube(
                    request,
                    job,
                    threads_per_worker=engine.threads_per_worker,
                    memory_limit=request.memory_limit or engine.memory_limit,
                )
            )
        remaining = _initialize_and_fill(request, job, engine, progress)
    return CubeResult(
        out=request.out,
        shape=job.shape,
        crs=str(job.info.geobox.crs),
        days=job.info.days,
        variables=tuple(v.name for v in job.variables),
        scenes=len(scenes),
        units=len(job.units),
        remaining=remaining,
    )


def _initialize_and_fill(
    request: CubeRequest,
    job: CubePlan,
    engine: Engine,
    progress: ProgressCallback | None,
) -> int:
    """Under the store's lock: create the store (or check it), then fill it."""
    manifest = Manifest(request.out)
    if request.initialize:
        if request.overwrite and location.exists(request.out):
            manifest.ensure_unlocked()  # never delete a store a live run writes
            location.remove(request.out)
        lock = manifest.acquire()
    else:
        lock = manifest.acquire()  # before the check: the plan may be being written
    try:
        if request.initialize:
            if location.exists(location.join(request.out, "zarr.json")):
                # another run made it between this one's check and its lock
                location.check_writable(request.out, overwrite=False, what="Cube store")
            initialize_cube(request, job)
        else:
            check_initialized(request, job)
        remaining = len(job.units)
        if request.fill:
            remaining = fill_cube(request, job, engine=engine, progress=progress)
            if remaining:
                log.warning("%d work units remain; rerun with --resume to continue", remaining)
    finally:
        manifest.release(lock)
    return remaining


def cube(
    *,
    progress: ProgressCallback | None = None,
    notify: Notify | None = None,
    **options: object,
) -> CubeResult:
    """Make (or fill) a data cube; the options are those of :func:`build_cube_request`.

    Example::

        cloudfree.cube(stac="catalog.json", bbox=(-6.05, 53.3, -5.97, 53.36),
                       start_date="2021-11-01", end_date="2022-04-30",
                       bands=["red", "nir"], out="cube.zarr")
    """
    request = build_cube_request(**options)  # type: ignore[arg-type]
    return run_cube(request, progress=progress, notify=notify)
