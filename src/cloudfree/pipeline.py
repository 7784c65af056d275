"""The mosaic pipeline: a thin chain of named stages.

``mosaic(**options)`` = ``build_request`` (validate everything, before any expensive work) ->
``search`` -> ``make_plan`` -> ``prepare_outputs`` -> ``run_units`` (load -> mask -> reduce ->
write, per tile and period) -> ``finish`` (COGs, quick-looks, STAC).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numba
import numpy as np
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox

from cloudfree import __version__
from cloudfree.access import redact_message
from cloudfree.aoi import Aoi, aoi_from_bbox, aoi_from_file
from cloudfree.bands import Band, canonical_band, resolve_bands
from cloudfree.budget import (
    PlanSummary,
    check_memory,
    estimate_plan,
    parse_memory,
    unit_strip_rows,
    worker_budget,
)
from cloudfree.catalog.stac_output import (
    PeriodOutput,
    build_collection,
    collection_id_for,
    default_catalog_dir,
    item_id,
    save_collection,
)
from cloudfree.composite import (
    PROVENANCE_LAYERS,
    Composite,
    Compositor,
    Observations,
    make_compositor,
)
from cloudfree.config import ReadSettings, default_threads, read_settings, tune_allocator
from cloudfree.engine import (
    EngineSpec,
    Notify,
    ProgressCallback,
    ShippedUnitTask,
    engine_spec,
    open_engine,
    run_units,
)
from cloudfree.errors import InvalidInputError, NoScenesFoundError, RunFailedError
from cloudfree.grid import (
    DEFAULT_CHUNK_SIZE,
    Plan,
    WorkUnit,
    area_geobox,
    check_chunk_size,
    check_resolution,
    context_pixels,
    make_plan,
    parse_crs,
    pixel_size_metres,
    utm_crs_for,
)
from cloudfree.load import (
    LoadOptions,
    load_mask_first,
    load_stack,
    reused_stack_memory,
    source_block_rows,
)
from cloudfree.masks import CloudMask, make_mask
from cloudfree.options import check_run_flags, merged_options, with_mask_config
from cloudfree.parallel import KERNEL_LOCK
from cloudfree.readers.warp import is_tile_invariant
from cloudfree.scene import Scene
from cloudfree.sources import SearchQuery, Source, select_source
from cloudfree.sources.cube import CubeSource, open_cube_source
from cloudfree.stack import ENCODINGS, NODATA, Stack, ValueEncoding
from cloudfree.store import location
from cloudfree.store.cog import COG_CODECS, DEFAULT_COG_CODEC, RunCogs
from cloudfree.store.manifest import Manifest
from cloudfree.store.quicklook import quicklook_png
from cloudfree.store.zarr_store import MosaicStore, create_store
from cloudfree.timeframe import Period, PeriodSpec, TimeRange, parse_period, time_range

log = logging.getLogger(__name__)

StackLoader = Callable[[GeoBox, Sequence[Scene], LoadOptions, ReadSettings], Stack]
"""Loads a (padded) tile from the unit's scenes: :func:`load_stack`, or a cube's reader."""


@dataclass(frozen=True)
class Preset:
    """A named set of choices from a published product definition."""

    name: str
    mask: str
    mask_options: Mapping[str, object]
    method: str
    period: str
    same_day: str
    description: str


PRESETS: dict[str, Preset] = {
    "cdse-l3": Preset(
        name="cdse-l3",
        mask="scl",
        mask_options={"preset": "cdse-l3", "opening_m": 0, "dilation_m": 0},
        method="cdse-l3",
        period="quarter",
        same_day="latest",
        description=(
            "Copernicus Sentinel-2 L3 quarterly mosaic: SCL classes 2,4,5,6,11 valid (no "
            "morphological clean-up), first quartile as the sorted valid observation at index "
            "floor(n/4), the newest scene of a day where several overlap, int16 with nodata "
            "-32768, an observations band"
        ),
    )
}


@dataclass(frozen=True)
class MosaicRequest:
    """A fully validated mosaic job."""

    source: Source
    query: SearchQuery
    bands: tuple[tuple[str, Band], ...]
    """(requested name, band) in request order; outputs use the requested names."""
    crs: CRS | None
    """Output CRS; ``None`` picks the UTM zone of the area's centre."""
    resolution: float | None
    mask: CloudMask
    min_clear_fraction: float
    """A solar day whose clear fraction in a tile is below this is dropped from that tile."""
    compositor: Compositor
    provenance: bool
    """Write the method's provenance layers (chosen date, score) beside ``observations``."""
    period: PeriodSpec
    out: str
    cog_dir: str | None
    catalog_dir: str | None
    quicklook: bool
    chunk_size: int
    load: LoadOptions
    """Bands, SCL and resampling of every tile read."""
    overwrite: bool
    resume: bool
    """Continue a stopped run: skip the units the store's manifest records as finished."""
    limit: int | None
    """Process at most this many (unfinished) units, then stop."""
    threads: int
    settings: ReadSettings = field(default_factory=ReadSettings)
    loader: StackLoader = load_stack
    """Where tiles come from: the scenes (:func:`load_stack`) or a cube (``--from-cube``)."""
    engine: EngineSpec = field(default_factory=EngineSpec)
    """Where the units run: threads here (default) or a Dask cluster."""
    memory_limit: int | None = None
    """Bytes one worker may use (``--memory-limit``); default the cluster's or the machine's."""
    cog_compression: str = DEFAULT_COG_CODEC
    """The COGs' codec (a key of :data:`~cloudfree.store.cog.COG_CODECS`)."""

    @property
    def encoding(self) -> ValueEncoding:
        """How the composite's values are stored."""
        return ENCODINGS[self.compositor.output]

    @property
    def band_names(self) -> tuple[str, ...]:
        """Output variable names, as requested."""
        return tuple(name for name, _ in self.bands)

    @property
    def stack_limit(self) -> int:
        """The largest stack a unit holds at once (a larger tile is composited in row strips).

        No limit with ``min_clear_fraction``: a day's clear share is the whole tile's.
        """
        return sys.maxsize if self.min_clear_fraction > 0 else self.settings.stack_bytes

    def lineage(self) -> str:
        """How the composite was made, in one line."""
        return (
            f"{self.compositor.describe()} per {self.period.text} period, "
            f"{self.mask.describe()}"
            + (
                f", days under {self.min_clear_fraction:.0%} clear in a tile dropped"
                if self.min_clear_fraction
                else ""
            )
            + f", same-solar-day scenes merged ({self.load.same_day} first), "
            f"{self.load.resampling} resampling"
        )


@dataclass(frozen=True)
class MosaicResult:
    """What a run wrote."""

    out: str
    periods: tuple[Period, ...]
    scenes: tuple[Scene, ...]
    units: int
    remaining: int
    """Units not yet finished (``--limit``); outputs beyond the store are written at 0."""
    cogs: tuple[str, ...]
    catalog: str | None
    shape: tuple[int, int, int]
    crs: str


def build_request(
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
    cloud_mask: str | None = None,
    mask_options: Mapping[str, object] | None = None,
    mask_config: str | Path | None = None,
    min_clear_fraction: float = 0.0,
    method: str | None = None,
    quantile: float | None = None,
    method_options: Mapping[str, object] | None = None,
    provenance: bool = False,
    preset: str | None = None,
    period: str | None = None,
    cog_dir: str | None = None,
    cog_compression: str = DEFAULT_COG_CODEC,
    catalog_dir: str | None = None,
    quicklook: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resampling: str | None = None,
    same_day: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    limit: int | None = None,
    threads: int | None = None,
    from_cube: str | None = None,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    dask_gateway: str | None = None,
    coiled: bool = False,
    memory_limit: str | int | None = None,
) -> MosaicRequest:
    """Validate every option and return a request; raises before any expensive work.

    ``from_cube``: read a cube made by :func:`cloudfree.cube.cube` instead of scenes; the
    mosaic is on the cube's grid and area, and no search option may be given.
    """
    cube: CubeSource | None = None
    if from_cube is not None:
        cube = open_cube_source(
            location.absolute(from_cube),
            crs=crs,
            resolution=resolution,
            search_options={
                "--stac": stac, "--provider": provider, "--archive": archive,
                "--tile": tuple(tiles), "--bbox": bbox, "--geometry-file": geometry_file,
                "--collection": tuple(collections), "--max-cloud-cover": max_cloud_cover,
                "--max-items": max_items,
            },
        )  # fmt: skip
        crs, resolution = cube.crs_text, cube.resolution
    aoi = cube.info.aoi if cube else area_of(bbox, geometry_file)
    timerange = time_range(start_date, end_date)
    resolved_bands = resolve_bands(bands)
    target_crs = parse_crs(crs) if crs else None
    if target_crs is not None and resolution is not None:
        check_resolution(target_crs, resolution)
    elif resolution is not None:
        check_resolution(utm_crs_for(aoi), resolution)

    cloud_mask, mask_options = with_mask_config(cloud_mask, mask_options, mask_config)
    mask_name, method_name, period_text, preset_options = _apply_preset(
        preset, cloud_mask, method, period
    )
    if preset is not None and mask_options:
        raise InvalidInputError(
            f"Preset {preset} fixes the cloud mask and its options; drop the mask options "
            "or the preset."
        )
    mask = make_mask(mask_name, merged_options(preset_options, mask_options))
    mask_layers = tuple(canonical_band(name) for name in mask.layers)
    if not 0.0 <= min_clear_fraction < 1.0:
        raise InvalidInputError(
            f"--min-clear-fraction is a fraction of a tile (0 <= F < 1), got {min_clear_fraction}."
        )
    compositor = _compositor(method_name, quantile, method_options)
    unknown = sorted(set(compositor.provenance) - set(PROVENANCE_LAYERS))
    if unknown:
        raise InvalidInputError(
            f"Method {method_name} declares provenance layer(s) {', '.join(unknown)}; cloudfree "
            f"stores {', '.join(PROVENANCE_LAYERS)}."
        )
    band_ids = {band.id for _, band in resolved_bands}
    needed: dict[str, str] = getattr(compositor, "required_bands", dict)()
    for band_id, why in needed.items():
        if band_id not in band_ids:
            raise InvalidInputError(
                f"Method {method_name} needs band {band_id} among --bands for {why}."
            )

    query = search_query(aoi, timerange, collections, max_cloud_cover, max_items)
    check_chunk_size(chunk_size)
    engine = engine_spec(
        workers=workers,
        dask_scheduler=dask_scheduler,
        dask_gateway=dask_gateway,
        coiled=coiled,
        threads=threads,
    )
    memory_bytes = parse_memory(memory_limit) if memory_limit is not None else None
    # Local outputs become absolute so STAC hrefs resolve wherever the catalog is read from.
    out = location.absolute(out)
    cog_dir = location.absolute(cog_dir) if cog_dir else None
    if cog_compression not in COG_CODECS:
        raise InvalidInputError(
            f"--cog-compression {cog_compression!r} is not a COG codec here; use one of "
            f"{', '.join(COG_CODECS)} (deflate, the default, is read by every TIFF reader)."
        )
    catalog = location.absolute(catalog_dir) if catalog_dir else default_catalog_dir(out)
    check_run_flags(resume=resume, overwrite=overwrite, limit=limit)
    if resume:
        if not location.exists(out):
            raise InvalidInputError(f"--resume: there is no store at {out} to continue.")
    else:
        for url, what in (
            (out, "Output store"),
            (cog_dir, "COG folder"),
            (catalog, "Catalog folder"),
        ):
            if url:
                location.check_writable(url, overwrite=overwrite, what=what)
    same_day = same_day or (PRESETS[preset].same_day if preset else None)
    if cube is not None:
        resampling, same_day = cube.check_mosaic(
            bands=[b for _, b in resolved_bands],
            mask_layers=mask_layers,
            start=timerange.start,
            end=timerange.end,
            resampling=resampling,
            same_day=same_day,
        )
    source = cube or select_source(stac=stac, provider=provider, archive=archive, tiles=tiles)
    return MosaicRequest(
        source=source,
        query=query,
        bands=resolved_bands,
        crs=target_crs,
        resolution=resolution,
        mask=mask,
        min_clear_fraction=min_clear_fraction,
        compositor=compositor,
        provenance=provenance,
        period=parse_period(period_text),
        out=out,
        cog_dir=cog_dir,
        cog_compression=cog_compression,
        catalog_dir=catalog,
        quicklook=quicklook,
        chunk_size=chunk_size,
        load=LoadOptions(
            bands=tuple(b for _, b in resolved_bands),
            mask_layers=mask_layers,
            resampling=resampling or "bilinear",
            same_day=same_day or "least-cloudy",
        ),
        overwrite=overwrite,
        resume=resume,
        limit=limit,
        threads=threads if threads is not None else default_threads(),
        settings=read_settings(),
        loader=cube.load_stack if cube else load_stack,
        engine=engine,
        memory_limit=memory_bytes,
    )


def find_scenes(
    *,
    stac: str | None = None,
    provider: str | None = None,
    archive: str | None = None,
    tiles: Iterable[str] = (),
    bbox: Sequence[float] | None = None,
    geometry_file: str | Path | None = None,
    start_date: str | date,
    end_date: str | date,
    collections: Iterable[str] = (),
    max_cloud_cover: float | None = None,
    max_items: int | None = None,
) -> list[Scene]:
    """The scenes a mosaic with these options would use (``cloudfree search``)."""
    query = search_query(
        area_of(bbox, geometry_file),
        time_range(start_date, end_date),
        collections,
        max_cloud_cover,
        max_items,
    )
    source = select_source(stac=stac, provider=provider, archive=archive, tiles=tiles)
    return search_or_fail(source, query)


def search_query(
    aoi: Aoi,
    timerange: TimeRange,
    collections: Iterable[str],
    max_cloud_cover: float | None,
    max_items: int | None,
) -> SearchQuery:
    """The search of a request, its filters checked."""
    if max_cloud_cover is not None and not 0 <= max_cloud_cover <= 100:
        raise InvalidInputError(
            f"--max-cloud-cover is a percentage (0-100), got {max_cloud_cover}."
        )
    if max_items is not None and max_items < 1:
        raise InvalidInputError(f"--max-items must be at least 1, got {max_items}.")
    return SearchQuery(
        aoi=aoi,
        timerange=timerange,
        collections=tuple(collections),
        max_cloud_cover=max_cloud_cover,
        max_items=max_items,
    )


def search_or_fail(source: Source, query: SearchQuery) -> list[Scene]:
    """Search ``source``; no scene is an error that says how to widen the search."""
    scenes = source.search(query)
    if not scenes:
        raise NoScenesFoundError(
            f"No scenes found in {source.description} for {query.describe()}. "
            "Widen the dates or area, raise --max-cloud-cover, or check --collection."
        )
    return scenes


def area_of(bbox: Sequence[float] | None, geometry_file: str | Path | None) -> Aoi:
    """The area of a request: a bbox or a geometry file, exactly one of them."""
    if bbox is not None and geometry_file is not None:
        raise InvalidInputError("Give either a bbox or a geometry file, not both.")
    if bbox is not None:
        return aoi_from_bbox(list(bbox))
    if geometry_file is not None:
        return aoi_from_file(geometry_file)
    raise InvalidInputError("No area given; pass --bbox MINX MINY MAXX MAXY or --geometry-file.")


def _apply_preset(
    preset: str | None,
    cloud_mask: str | None,
    method: str | None,
    period: str | None,
) -> tuple[str, str, str, Mapping[str, object]]:
    if preset is None:
        return cloud_mask or "scl", method or "median", period or "all", {}
    try:
        chosen = PRESETS[preset]
    except KeyError:
        raise InvalidInputError(
            f"Unknown preset {preset!r}; use one of {', '.join(sorted(PRESETS))}."
        ) from None
    for given, fixed, what in (
        (cloud_mask, chosen.mask, "cloud mask"),
        (method, chosen.method, "method"),
    ):
        if given is not None and given != fixed:
            raise InvalidInputError(
                f"Preset {preset} fixes the {what} to {fixed}; drop the {what} option "
                "or the preset."
            )
    return chosen.mask, chosen.method, period or chosen.period, chosen.mask_options


def _compositor(
    method: str, quantile: float | None, options: Mapping[str, object] | None
) -> Compositor:
    """The method, with ``--quantile Q`` as a shorthand for ``--method-option quantile=Q``."""
    options = dict(options or {})
    if quantile is not None:
        if method != "quantile":
            raise InvalidInputError(f"--quantile only applies to --method quantile, not {method}.")
        if "quantile" in options and float(options["quantile"]) != quantile:  # type: ignore[arg-type]
            raise InvalidInputError("--quantile and --method-option quantile=... disagree.")
        options["quantile"] = quantile
    if method == "quantile" and "quantile" not in options:
        raise InvalidInputError("--method quantile needs --quantile Q (0 <= Q <= 1).")
    return make_compositor(method, options)


def search(request: MosaicRequest) -> list[Scene]:
    """Stage 1: the scenes to use, checked to hold every band the job needs."""
    scenes = search_or_fail(request.source, request.query)
    check_assets(scenes, [b for _, b in request.bands], request.load.mask_layers, request.mask)
    return scenes


def check_assets(
    scenes: Sequence[Scene], bands: Sequence[Band], mask_layers: Sequence[Band], mask: CloudMask
) -> None:
    """Refuse scenes without an asset for a band or a layer the mask reads, saying which."""
    for_mask = [b.id for b in mask_layers]
    needed = [b.id for b in bands] + for_mask
    for scene in scenes:
        missing = [b for b in needed if b not in scene.bands]
        if missing:
            raise InvalidInputError(
                f"Scene {scene.id!r} has no asset for {', '.join(missing)} (it has "
                f"{', '.join(sorted(scene.bands)) or 'no band assets'}). "
                + (
                    f"The {mask.name} cloud mask reads {', '.join(for_mask)}; choose "
                    "another --cloud-mask (or none) or a source that has them."
                    if set(missing) & set(for_mask)
                    else "Choose other bands."
                )
            )


def plan(request: MosaicRequest, scenes: Sequence[Scene]) -> Plan:
    """Stage 2: the output grid, its tiles, the periods and the work units."""
    geobox = area_geobox(request.query.aoi, request.crs, request.resolution)
    job = make_plan(
        aoi=request.query.aoi,
        geobox=geobox,
        periods=request.period.split(request.query.timerange),
        scenes=scenes,
        chunk_size=request.chunk_size,
        halo=context_pixels(request.mask.halo_m(), pixel_size_metres(geobox))
        + context_pixels(request.compositor.context_m(), pixel_size_metres(geobox)),
    )
    if request.loader is not load_stack or not request.load.bands:
        return job  # a cube's tiles are read by its chunks
    first = request.load.bands[0].id
    return replace(job, block_rows=source_block_rows(scenes, first, geobox, request.settings))


def fingerprint(request: MosaicRequest, job: Plan) -> dict[str, object]:
    """What makes a store's values: a resumed run must match it exactly."""
    return {
        "crs": str(job.geobox.crs),
        "transform": list(job.geobox.affine)[:6],
        "shape": list(job.shape),
        "chunk_size": job.chunk_size,
        "halo": job.halo,
        "periods": [p.label for p in job.periods],
        "bands": list(request.band_names),
        "lineage": request.lineage(),
        "scenes": sorted(s.id for s in job.scenes),
        "units": sorted(u.key for u in job.units),
    }


def prepare_outputs(request: MosaicRequest, job: Plan) -> MosaicStore:
    """Stage 3: replace outputs when asked to, and create the empty store (or reopen it)."""
    if request.resume:
        recorded = Manifest(request.out).plan()
        expected = json.loads(json.dumps(fingerprint(request, job)))
        if recorded != expected:
            differ = sorted(
                k for k in expected if recorded is None or recorded.get(k) != expected[k]
            )
            raise InvalidInputError(
                f"--resume: {request.out} was made by a different job (it differs in "
                f"{', '.join(differ)}); rerun with the options that made it, or use --overwrite."
            )
        return MosaicStore(request.out)
    if request.overwrite:
        if location.exists(request.out):
            Manifest(request.out).ensure_unlocked()  # never delete a store a live run writes
        for url in (request.out, request.cog_dir, request.catalog_dir):
            if url:
                location.remove(url)
    attrs = {
        "title": "cloudfree Sentinel-2 L2A composite",
        "cloudfree:version": __version__,
        "cloudfree:lineage": request.lineage(),
        "cloudfree:scenes": len(job.scenes),
        "cloudfree:request": json.dumps(
            {
                "bands": list(request.band_names),
                "start": request.query.timerange.start.isoformat(),
                "end": request.query.timerange.end.isoformat(),
                "period": request.period.text,
                "aoi_bbox": list(request.query.aoi.bbox),
            }
        ),
    }
    create_store(
        request.out,
        job,
        request.band_names,
        attrs=attrs,
        encoding=request.encoding,
        provenance=request.compositor.provenance if request.provenance else (),
    )
    Manifest(request.out).save_plan(fingerprint(request, job))
    return MosaicStore(request.out)


def composite_unit(request: MosaicRequest, job: Plan, unit: WorkUnit) -> Composite:
    """Stage 4: load (with the mask's and the method's context), mask, and reduce one work unit.

    A tile whose stack would be larger than ``request.stack_limit`` is composited in row strips
    (:func:`~cloudfree.budget.strip_rows`), each loaded with its own context, and the strips'
    results are stacked: the same values as one pass, in a fraction of the memory.
    """
    ny = unit.geobox.shape.y
    layers = len(request.load.mask_layers)
    rows = unit_strip_rows(unit, job, len(request.load.bands), layers, request.stack_limit)
    if rows >= ny:
        return _composite_window(request, job, unit.geobox, unit)
    parts = [
        _composite_window(request, job, unit.geobox[y : min(y + rows, ny), :], unit)
        for y in range(0, ny, rows)
    ]
    return Composite(
        values=np.concatenate([p.values for p in parts], axis=1),
        observations=np.concatenate([p.observations for p in parts], axis=0),
        provenance={
            name: np.concatenate([p.provenance[name] for p in parts], axis=0)
            for name in parts[0].provenance
        },
    )


def _composite_window(
    request: MosaicRequest, job: Plan, window: GeoBox, unit: WorkUnit
) -> Composite:
    """Load, mask and reduce ``window`` (the unit's tile or a strip of it)."""
    pixel_size_m = pixel_size_metres(job.geobox)
    margin = context_pixels(request.compositor.context_m(), pixel_size_m)
    geobox = window.pad(margin) if margin else window
    aoi = request.query.aoi
    inside = aoi.inside(geobox) if aoi.clip else None
    stack, clear, rejected = load_masked(
        request, geobox, unit.scenes, job.halo - margin, pixel_size_m, inside
    )
    if request.min_clear_fraction > 0:
        core = (slice(None), slice(margin, margin + window.shape.y),
                slice(margin, margin + window.shape.x))  # fmt: skip
        keep = clear_enough(clear[core], stack.has_data[core], request.min_clear_fraction)
        clear &= keep[:, np.newaxis, np.newaxis]
    observations = Observations(
        data=stack.data,
        valid=clear,
        nodata=int(NODATA),
        days=stack.days,
        period=job.periods[unit.period_index],
        bands=tuple(band.id for band in request.load.bands),
        rejected=rejected,
        pixel_size_m=pixel_size_m,
        margin=margin,
    )
    with KERNEL_LOCK:  # the methods' kernels run on every core already
        return request.compositor(observations)


def composite_checksum(composite: Composite) -> str:
    """sha256 of every array a unit writes, in a fixed order."""
    digest = hashlib.sha256()
    for array in (
        composite.values,
        composite.observations,
        *(composite.provenance[name] for name in sorted(composite.provenance)),
    ):
        # the bytes in place (no copy of a contiguous array), of any dtype
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def load_masked(
    request: MosaicRequest,
    geobox: GeoBox,
    scenes: Sequence[Scene],
    halo: int,
    pixel_size_m: float,
    inside: np.ndarray | None = None,
) -> tuple[Stack, np.ndarray, np.ndarray | None]:
    """Load ``geobox`` padded by ``halo`` pixels, mask it, and crop back to ``geobox``.

    Returns the stack, its ``(time, y, x)`` clear observations (with data), and the observations
    with data that the mask rejected (``None`` for a method that ``reads_clear_only``). The
    mask judges by its own layers (:meth:`~cloudfree.stack.Stack.for_mask`); where it may, the
    bands are read after it and only where it keeps a pixel (:func:`reads_bands_where_clear`).
    """
    padded = geobox.pad(halo) if halo else geobox
    if reads_bands_where_clear(request, padded):
        stack, clear = load_mask_first(
            padded,
            scenes,
            request.load,
            request.settings,
            lambda bandless: request.mask(bandless, pixel_size_m),
            halo,
        )
    else:
        stack = request.loader(padded, scenes, request.load, request.settings)
        clear = request.mask(stack.for_mask(), pixel_size_m)
    stack = stack.crop(halo, inside)
    if halo:
        clear = clear[:, halo:-halo, halo:-halo]
    has_data = stack.has_data
    if getattr(request.compositor, "reads_clear_only", False):
        return stack, np.logical_and(clear, has_data), None
    clear_out = np.empty(has_data.shape, dtype=bool)
    rejected = np.empty(has_data.shape, dtype=bool)
    split_verdict(clear, has_data, clear_out, rejected)
    return stack, clear_out, rejected


def reads_bands_where_clear(request: MosaicRequest, geobox: GeoBox) -> bool:
    """Whether a tile's bands can be read after its mask, only where it keeps a pixel.

    The result is then the same as reading every band everywhere: the tile comes from the
    scenes (not a cube); the mask reads nothing but its layers (``reads_layers_only``) and has
    some; the method uses nothing but the clear observations (``reads_clear_only``; not
    best-pixel, which measures the distance to rejected ones); no day is dropped by its clear
    share (which counts every observation with data); and a window of the tile is resampled
    exactly as the whole tile is (nearest or bilinear on a grid without rotation).
    """
    return (
        request.loader is load_stack
        and bool(request.load.mask_layers)
        and getattr(request.mask, "reads_layers_only", False)
        and getattr(request.compositor, "reads_clear_only", False)
        and request.min_clear_fraction == 0
        and is_tile_invariant(geobox, request.load.resampling)
    )


@numba.njit(cache=True, nogil=True)
def split_verdict(
    clear: np.ndarray, has_data: np.ndarray, clear_out: np.ndarray, rejected: np.ndarray
) -> None:
    """``clear_out = clear & has_data`` and ``rejected = has_data & ~clear`` in one pass."""
    nt, ny, nx = has_data.shape
    for t in range(nt):
        for y in range(ny):
            for x in range(nx):
                here = has_data[t, y, x]
                ok = clear[t, y, x]
                clear_out[t, y, x] = here and ok
                rejected[t, y, x] = here and not ok


def clear_enough(clear: np.ndarray, has_data: np.ndarray, fraction: float) -> np.ndarray:
    """``(time,)`` bool: days whose clear share of their data pixels is at least ``fraction``."""
    data_pixels = has_data.sum(axis=(1, 2))
    clear_pixels = clear.sum(axis=(1, 2))
    return np.asarray(clear_pixels >= fraction * np.maximum(data_pixels, 1))


def cog_urls(request: MosaicRequest, job: Plan) -> list[str]:
    """Where each period's COG goes: ``<cog dir>/<period start>.tif``."""
    assert request.cog_dir is not None
    return [location.join(request.cog_dir, f"{period.label}.tif") for period in job.periods]


def finish(
    request: MosaicRequest, job: Plan, store: MosaicStore, staged: RunCogs | None = None
) -> tuple[tuple[str, ...], str | None]:
    """Stage 5: consolidate the store, write COGs, quick-looks and the STAC collection.

    ``staged`` holds the run's COGs, staged while its units ran (``None`` without ``--cog``).
    """
    store.finish()
    cogs: list[str] = cog_urls(request, job) if request.cog_dir else []
    written = staged.results() if staged is not None else []
    outputs: list[PeriodOutput] = []
    for index, period in enumerate(job.periods):
        cog_url: str | None = None
        checksum: str | None = None
        size: int | None = None
        if cogs:
            cog_url = cogs[index]
            checksum, size = written[index]
        ql_url = png = None
        if request.quicklook and request.catalog_dir:
            png = quicklook_png(
                store, request.band_names, index, job.geobox.shape.yx, request.encoding
            )
            item = item_id(collection_id_for(request.out, "cloudfree-mosaic"), period)
            ql_url = location.join(request.catalog_dir, item, "thumbnail.png")
            location.write_bytes(ql_url, png)
        outputs.append(
            PeriodOutput(
                period=period,
                cog_url=cog_url,
                cog_checksum=checksum,
                cog_size=size,
                quicklook_url=ql_url,
                quicklook_png=png,
            )
        )
    catalog_href = None
    if request.catalog_dir:
        collection = build_collection(
            collection_id=collection_id_for(request.out, "cloudfree-mosaic"),
            geobox=job.geobox,
            bands=request.bands,
            outputs=outputs,
            store_url=request.out,
            lineage=request.lineage(),
            scene_count=len(job.scenes),
            encoding=request.encoding,
        )
        catalog_href = save_collection(collection, request.catalog_dir)
    return tuple(cogs), catalog_href


class UnitRunner(ShippedUnitTask):
    """Composite one unit, write its region, and record it in the manifest (or its failure).

    What every engine runs for every unit; it ships to Dask workers without the read settings
    (:class:`~cloudfree.engine.ShippedUnitTask`). The store is reopened once in each process.
    """

    def __init__(
        self,
        request: MosaicRequest,
        job: Plan,
        store: MosaicStore | None = None,
        written: Callable[[WorkUnit, np.ndarray], None] | None = None,
    ) -> None:
        self.request = request
        self.job = job
        self._store = store
        self._written = written  # in this process only: it does not ship to Dask workers

    def reopened(self) -> None:
        """Open the store again in the worker's process, on first use (nothing to hand over)."""
        self._store = None
        self._written = None

    def __call__(self, unit: WorkUnit) -> None:
        """Run one unit (idempotent: it writes exactly its own region)."""
        manifest = Manifest(self.request.out)
        with reused_stack_memory():  # one tile after the other on this thread
            try:
                if self._store is None:
                    self._store = MosaicStore(self.request.out)
                composite = composite_unit(self.request, self.job, unit)
                self._store.write(self.job, unit, self.request.band_names, composite)
            except Exception as exc:
                manifest.record_failure(unit.key, redact_message(str(exc)))
                raise
            manifest.record_done(unit.key, composite_checksum(composite))
        if self._written is not None:
            # a copy: the COG stages it on its own thread while this one goes on
            self._written(unit, composite.values.copy())


def output_variables(request: MosaicRequest) -> list[tuple[str, np.dtype]]:
    """``(name, dtype)`` of every variable a mosaic's work units write."""
    from cloudfree.store.zarr_store import OBSERVATIONS, PROVENANCE_STORAGE

    variables = [(name, np.dtype(request.encoding.dtype)) for name in request.band_names]
    variables.append((OBSERVATIONS, np.dtype("uint16")))
    if request.provenance:
        variables += [
            (n, np.dtype(PROVENANCE_STORAGE[n][0])) for n in request.compositor.provenance
        ]
    return variables


def describe_plan(
    request: MosaicRequest,
    job: Plan,
    *,
    threads_per_worker: int | None = None,
    memory_limit: int | None = None,
    units: Sequence[WorkUnit] | None = None,
) -> PlanSummary:
    """The job's size and cost (``--dry-run``), from its plan alone.

    ``threads_per_worker`` and ``memory_limit`` default to what the request's engine will have
    (for a cluster that is not started here: one unit at a time, the user's ``--memory-limit``).
    """
    per_worker, limit = worker_budget(request.engine, request.threads, request.memory_limit)
    return estimate_plan(
        job,
        bands=request.load.bands,
        mask_layers=request.load.mask_layers,
        variables=output_variables(request),
        gdal_options=request.settings.gdal_options,
        threads_per_worker=threads_per_worker or per_worker,
        memory_limit=memory_limit or limit,
        stack_limit=request.stack_limit,
        units=units,
    )


def dry_run(request: MosaicRequest) -> PlanSummary:
    """Search and plan, and say what a run would cost; no pixel is read, nothing written.

    With ``--resume`` and ``--limit`` the summary covers the units the run would do.
    """
    job = plan(request, search(request))
    units = list(job.units)
    if request.resume:
        finished = Manifest(request.out).finished()
        units = [u for u in units if u.key not in finished]
    if request.limit is not None:
        units = units[: request.limit]
    return describe_plan(request, job, units=units)


def run(
    request: MosaicRequest,
    *,
    progress: ProgressCallback | None = None,
    notify: Notify | None = None,
) -> MosaicResult:
    """Run a validated request through every stage.

    ``notify`` receives messages for the user, such as a Dask cluster's dashboard link.
    """
    tune_allocator()  # before the threads of the search, the store and the engine start
    scenes = search(request)
    job = plan(request, scenes)
    log.info(
        "%d scenes, %d periods, output %s in %s, %d work units",
        len(scenes),
        len(job.periods),
        job.shape,
        job.geobox.crs,
        len(job.units),
    )
    with open_engine(
        request.engine,
        threads=request.threads,
        memory_limit=request.memory_limit,
        notify=notify,
    ) as engine:
        # refused before the store is created or a pixel read
        check_memory(
            describe_plan(
                request,
                job,
                threads_per_worker=engine.threads_per_worker,
                memory_limit=request.memory_limit or engine.memory_limit,
            )
        )
        store = prepare_outputs(request, job)
        manifest = Manifest(request.out)
        lock = manifest.acquire()
        staged: RunCogs | None = None
        try:
            finished = set(manifest.finished()) if request.resume else set()
            todo = [u for u in job.units if u.key not in finished]
            if finished:
                log.info(
                    "resuming: %d of %d work units already finished",
                    len(finished),
                    len(job.units),
                )
            if request.limit is not None:
                todo = todo[: request.limit]
            remaining = len(job.units) - len(finished) - len(todo)
            # The COGs are staged as the units finish, so only the last period's final copy is
            # left after the last unit: units in this process hand over the values they wrote;
            # those in other processes (Dask) are read back from the store. --limit runs that
            # stop short write no COG.
            if request.cog_dir and not remaining:
                staged = RunCogs(
                    store,
                    job,
                    request.band_names,
                    cog_urls(request, job),
                    request.encoding,
                    finished_before=finished,
                    codec=request.cog_compression,
                )
            handed = staged.unit_finished if staged and engine.in_process else None
            try:
                run_units(
                    todo,
                    UnitRunner(request, job, store, written=handed),
                    key=lambda u: u.key,
                    progress=progress,
                    engine=engine,
                    finished=staged.unit_finished if staged and not handed else None,
                )
            except RunFailedError as exc:
                # a unit records its own failure, unless its worker died under it
                if exc.unit_key and exc.unit_key not in manifest.failures():
                    manifest.record_failure(exc.unit_key, redact_message(str(exc)))
                raise
            if remaining:
                log.warning(
                    "--limit: %d work units remain; rerun with --resume to continue", remaining
                )
                cogs: tuple[str, ...] = ()
                catalog: str | None = None
            else:
                cogs, catalog = finish(request, job, store, staged)
        finally:
            if staged:
                staged.discard()
            manifest.release(lock)
    return MosaicResult(
        out=request.out,
        periods=job.periods,
        scenes=tuple(scenes),
        units=len(job.units),
        remaining=remaining,
        cogs=cogs,
        catalog=catalog,
        shape=job.shape,
        crs=str(job.geobox.crs),
    )


def mosaic(
    *,
    progress: ProgressCallback | None = None,
    notify: Notify | None = None,
    **options: object,
) -> MosaicResult:
    """Make a cloud-free mosaic; the options are those of :func:`build_request`.

    ``progress`` receives (finished, total) units; ``notify`` messages such as the Dask
    dashboard link.

    Example::

        cloudfree.mosaic(stac="catalog.json", bbox=(-6.05, 53.3, -5.97, 53.36),
                         start_date="2021-11-01", end_date="2022-04-30",
                         bands=["red", "green", "blue"], out="mosaic.zarr")
    """
    request = build_request(**options)  # type: ignore[arg-type]
    return run(request, progress=progress, notify=notify)
