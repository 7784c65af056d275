"""Generate the synthetic Sentinel-2 L2A archive: COGs, STAC catalog, truth and description."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
from shapely.geometry import Polygon

from cloudfree.errors import InvalidInputError, OutputExistsError
from cloudfree.testing.cog import CogSpec, write_cog
from cloudfree.testing.fields import TRUTH_BANDS, World
from cloudfree.testing.geo import (
    TILE_SPECS,
    TileSpec,
    Transform6,
    footprint_lonlat,
    grid_local_points,
    reference_grid,
    tile_extent_m,
    tile_transform,
)
from cloudfree.testing.model import (
    ARCHIVE_FILE,
    CONVENTION_BASELINE,
    CONVENTION_STAC11,
    SyntheticArchive,
    SyntheticScene,
    SyntheticTile,
)
from cloudfree.testing.render import (
    PROBABILITY_NODATA,
    Ground,
    cloud_fraction,
    scene_cloud_probability,
    scene_reflectance,
    scene_scl,
    to_dn,
)
from cloudfree.testing.stac import (
    COLLECTION_ID,
    build_catalog,
    build_item,
    item_dir,
    item_id,
    save_catalog,
    write_item_collection,
)
from cloudfree.testing.weather import (
    STREAM_CLOUD_PROBABILITY,
    STREAM_NOISE,
    STREAM_SPECKS,
    STREAM_WORLD,
    Acquisition,
    Weather,
    stream,
)

__all__ = ["SyntheticArchive", "SyntheticScene", "SyntheticTile", "make_archive"]

OFFSET_SINCE = datetime(2022, 1, 25, tzinfo=UTC)
"""Acquisitions from this date on are processed with baseline 04.00 (DN offset 1000)."""
REPROCESSED_TILE = "30UUE"
"""The tile whose second acquisition was reprocessed with baseline 05.00 (with offset)."""
REPROCESSED_INDEX = 1
CONVENTIONS: Mapping[str, str] = MappingProxyType(
    {"29UPV": CONVENTION_STAC11, "30UUE": CONVENTION_BASELINE}
)
"""Which provider convention each tile's items follow."""
REFERENCE_CRS = "EPSG:32629"
"""CRS of the saved truth COGs."""
GENERATED = ("catalog.json", "items.json", ARCHIVE_FILE, COLLECTION_ID, "truth")
"""Everything :func:`make_archive` writes under the root (and replaces when regenerating)."""
WRITERS = 2


@dataclass(frozen=True)
class _Plan:
    """Everything decided before rendering."""

    root: Path
    seed: int
    tile_size: int
    tiles: tuple[SyntheticTile, ...]
    footprints: tuple[Polygon, ...]
    world: World
    weather: Weather
    blocksize: int


def _validate(
    seed: int, tile_size: int, n_dates: int, tiles: Sequence[str] | None
) -> tuple[TileSpec, ...]:
    """Reject arguments the generator cannot honour; return the tiles to generate."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(tile_size, int | np.integer) or tile_size % 32 or not 64 <= tile_size <= 4096:
        raise InvalidInputError(
            f"tile_size must be a multiple of 32 between 64 and 4096 pixels, got {tile_size!r}."
        )
    if not isinstance(n_dates, int | np.integer) or not 1 <= n_dates <= 100:
        raise InvalidInputError(f"n_dates must be between 1 and 100, got {n_dates!r}.")
    if tiles is None:
        return TILE_SPECS
    known = {spec.id: spec for spec in TILE_SPECS}
    if isinstance(tiles, str) or not tiles or any(t not in known for t in tiles):
        raise InvalidInputError(
            f"tiles must be a non-empty list of {', '.join(known)}, got {tiles!r}."
        )
    return tuple(spec for spec in TILE_SPECS if spec.id in set(tiles))


def _prepare_root(root: Path) -> Path:
    """Create the root, or clear a previous synthetic archive there; never clobber other data."""
    root = root.resolve()
    if root.exists() and not root.is_dir():
        raise OutputExistsError(f"{root} exists and is not a directory; choose another path.")
    if root.is_dir() and any(root.iterdir()):
        if not (root / ARCHIVE_FILE).is_file():
            raise OutputExistsError(
                f"{root} is not empty and holds no synthetic archive; "
                "choose an empty or new directory."
            )
        for name in GENERATED:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _make_tile(spec: TileSpec, tile_size: int) -> tuple[SyntheticTile, Polygon]:
    """Place a tile and return it with its lon/lat footprint."""
    crs = f"EPSG:{spec.epsg}"
    transform = tile_transform(spec, tile_size)
    shape = (tile_size, tile_size)
    footprint = footprint_lonlat(crs, transform, shape)
    x0, y0, x1, y1 = footprint.bounds
    return SyntheticTile(spec.id, crs, transform, shape, (x0, y0, x1, y1)), footprint


def _plan(
    root: Path, seed: int, tile_size: int, n_dates: int, specs: tuple[TileSpec, ...]
) -> _Plan:
    """Place the tiles, draw the world and plan every acquisition's sky."""
    extent = tile_extent_m(tile_size)
    placed = [_make_tile(spec, tile_size) for spec in specs]
    tiles = tuple(tile for tile, _ in placed)
    footprints = tuple(footprint for _, footprint in placed)
    world = World.random(stream(seed, STREAM_WORLD), extent)
    return _Plan(
        root=root,
        seed=seed,
        tile_size=tile_size,
        tiles=tiles,
        footprints=footprints,
        world=world,
        weather=Weather.plan(seed, n_dates, world, footprints, extent),
        blocksize=max(128, min(256, tile_size // 2)),
    )


def _radiometry(acquisition: Acquisition, tile_id: str) -> tuple[str, bool]:
    """Return ``(processing baseline, offset applied)`` of a scene."""
    if acquisition.index == REPROCESSED_INDEX and tile_id == REPROCESSED_TILE:
        return "05.00", True
    if acquisition.datetime >= OFFSET_SINCE:
        return "04.00", True
    return "03.01", False


def _scl_grid(tile: SyntheticTile) -> tuple[Transform6, tuple[int, int]]:
    """Return the tile's 20 m (SCL) grid: same origin, half the pixels."""
    a, b, c, d, e, f = tile.transform
    return (2 * a, 2 * b, c, 2 * d, 2 * e, f), (tile.shape[0] // 2, tile.shape[1] // 2)


def _render_tile(
    plan: _Plan, tile_index: int, pool: ThreadPoolExecutor
) -> Iterator[tuple[SyntheticScene, list[Future[None]]]]:
    """Render every acquisition on one tile, submitting its COG writes to ``pool``."""
    tile = plan.tiles[tile_index]
    scl_transform, scl_shape = _scl_grid(tile)
    ground10 = Ground.sample(plan.world, tile.crs, tile.transform, tile.shape)
    ground20 = Ground.sample(plan.world, tile.crs, scl_transform, scl_shape)
    weather = plan.weather
    stencil10 = weather.lattice.stencil(ground10.points.x, ground10.points.y)
    stencil20 = weather.lattice.stencil(ground20.points.x, ground20.points.y)
    water10, water20 = ground10.water, ground20.water
    convention = CONVENTIONS[tile.id]
    for acquisition, sky in zip(weather.acquisitions, weather.skies, strict=True):
        index = acquisition.index
        cond10 = weather.conditions(index, ground10.points, ground10.elevation, water10, stencil10)
        cond20 = weather.conditions(index, ground20.points, ground20.elevation, water20, stencil20)
        noise = stream(plan.seed, STREAM_NOISE, index, tile_index)
        specks = stream(plan.seed, STREAM_SPECKS, index, tile_index)
        reflectance = scene_reflectance(ground10, cond10, acquisition, sky, noise)
        scl = scene_scl(ground20, cond20, specks)
        # Its own stream: adding the probability layer left the DNs and SCL byte-identical.
        probability = scene_cloud_probability(
            cond20, stream(plan.seed, STREAM_CLOUD_PROBABILITY, index, tile_index)
        )
        baseline, offset = _radiometry(acquisition, tile.id)
        dn = to_dn(reflectance, cond10.nodata, offset)
        scene_id = item_id(
            tile.id, convention, acquisition.platform, acquisition.datetime, baseline
        )
        directory = item_dir(plan.root, scene_id)
        directory.mkdir(parents=True, exist_ok=True)
        scene = SyntheticScene(
            id=scene_id,
            tile_id=tile.id,
            datetime=acquisition.datetime,
            processing_baseline=baseline,
            offset_applied=offset,
            convention=convention,
            almost_cloudy=acquisition.almost_cloudy,
            swath_edge=bool(cond10.nodata.any()),
            snow=acquisition.snow,
            cloud_fraction=round(float(cloud_fraction(scl)), 6),
            item_path=directory / f"{scene_id}.json",
        )
        futures = []
        for band_index, band_id in enumerate(TRUTH_BANDS):
            spec = CogSpec(tile.crs, tile.transform, 0, "average", plan.blocksize, band_id)
            futures.append(
                pool.submit(write_cog, directory / f"{band_id}.tif", dn[band_index], spec)
            )
        spec = CogSpec(tile.crs, scl_transform, 0, "nearest", plan.blocksize, "SCL")
        futures.append(pool.submit(write_cog, directory / "SCL.tif", scl, spec))
        spec = CogSpec(
            tile.crs, scl_transform, PROBABILITY_NODATA, "nearest", plan.blocksize, "CLD"
        )
        futures.append(pool.submit(write_cog, directory / "CLD.tif", probability, spec))
        yield scene, futures


def _write_truth(plan: _Plan, pool: ThreadPoolExecutor) -> list[Future[None]]:
    """Evaluate the truth on the reference grid and submit its float32 COG writes."""
    transform, shape = reference_grid(REFERENCE_CRS, plan.footprints)
    points = grid_local_points(REFERENCE_CRS, transform, shape)
    reflectance = plan.world.surface(points).reflectance
    directory = plan.root / "truth"
    directory.mkdir(parents=True, exist_ok=True)
    futures = []
    for band_index, band_id in enumerate(TRUTH_BANDS):
        spec = CogSpec(REFERENCE_CRS, transform, None, "average", 256, band_id)
        path = directory / f"{band_id}.tif"
        futures.append(pool.submit(write_cog, path, reflectance[band_index], spec))
    return futures


def _union_bbox(tiles: tuple[SyntheticTile, ...]) -> tuple[float, float, float, float]:
    """Lon/lat union of the tiles' bounds."""
    boxes = np.array([tile.bbox_lonlat for tile in tiles])
    return (
        float(boxes[:, 0].min()),
        float(boxes[:, 1].min()),
        float(boxes[:, 2].max()),
        float(boxes[:, 3].max()),
    )


def _publish(plan: _Plan, scenes: list[SyntheticScene]) -> SyntheticArchive:
    """Write the STAC catalog, the ItemCollection and ``archive.json``."""
    bbox = _union_bbox(plan.tiles)
    platforms = {acq.datetime: acq.platform for acq in plan.weather.acquisitions}
    tiles = {
        tile.id: (tile, footprint)
        for tile, footprint in zip(plan.tiles, plan.footprints, strict=True)
    }
    items = [
        build_item(
            scene, tiles[scene.tile_id][0], platforms[scene.datetime], tiles[scene.tile_id][1]
        )
        for scene in scenes
    ]
    catalog = build_catalog(scenes, items, bbox, plan.seed)
    save_catalog(catalog, plan.root)
    write_item_collection([scene.item_path for scene in scenes], plan.root / "items.json")
    archive = SyntheticArchive(
        root=plan.root,
        catalog=plan.root / "catalog.json",
        collection_id=COLLECTION_ID,
        tiles=plan.tiles,
        scenes=tuple(scenes),
        bbox=bbox,
        seed=plan.seed,
        tile_size=plan.tile_size,
        world=plan.world,
    )
    text = json.dumps(archive.to_dict(), indent=2) + "\n"
    (plan.root / ARCHIVE_FILE).write_text(text, encoding="utf-8")
    return archive


def make_archive(
    root: str | os.PathLike[str],
    *,
    seed: int = 42,
    tile_size: int = 512,
    n_dates: int = 12,
    tiles: Sequence[str] | None = None,
) -> SyntheticArchive:
    """Generate a deterministic synthetic Sentinel-2 L2A archive with a known truth.

    Two overlapping tiles near Dublin (``29UPV`` in EPSG:32629, ``30UUE`` in EPSG:32630,
    straddling lon -6), each acquired on ``n_dates`` dates 15 days apart from 2021-11-03,
    with clouds, cirrus, shadows, snow, swath edges, two radiometric baselines and two
    STAC provider conventions. Each scene has B02, B03, B04, B08 (10 m), SCL and a cloud
    probability CLD (20 m). The same seed gives byte-identical files.

    Parameters
    ----------
    root
        Output directory: new, empty, or holding a previous synthetic archive (whose
        generated files are replaced).
    seed
        Non-negative seed of every random choice.
    tile_size
        Tile side in 10 m pixels (multiple of 32; SCL is ``tile_size // 2`` at 20 m).
    n_dates
        Number of acquisitions.
    tiles
        Generate only these of ``29UPV`` and ``30UUE`` (default both). The sky is planned over
        the generated tiles, so a one-tile archive is consistent with itself (its truth and
        conditions), not a subset of the two-tile archive.

    Returns
    -------
    SyntheticArchive
        The archive, also described in ``root/archive.json``.

    Raises
    ------
    InvalidInputError
        If an argument is out of range.
    OutputExistsError
        If ``root`` holds other data.

    """
    specs = _validate(seed, tile_size, n_dates, tiles)
    plan = _plan(_prepare_root(Path(root)), int(seed), int(tile_size), int(n_dates), specs)
    scenes: list[SyntheticScene] = []
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for tile_index in range(len(plan.tiles)):
            for scene, writes in _render_tile(plan, tile_index, pool):
                scenes.append(scene)
                futures.extend(writes)
        futures.extend(_write_truth(plan, pool))
        for future in futures:
            future.result()
    order = {tile.id: i for i, tile in enumerate(plan.tiles)}
    scenes.sort(key=lambda s: (s.datetime, order[s.tile_id]))
    return _publish(plan, scenes)
