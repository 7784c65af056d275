"""The synthetic archive's public records: tiles, scenes and the archive with its truth.

Two truths are evaluated analytically on any grid: the cloud-free surface
(:meth:`SyntheticArchive.truth`) and, per acquisition, the conditions it was observed under and
which observations they contaminated (:meth:`SyntheticArchive.conditions`,
:meth:`SyntheticArchive.contaminated`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from shapely.geometry import Polygon

from cloudfree.bands import canonical_band
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.testing.fields import TRUTH_BANDS, Cover, World
from cloudfree.testing.geo import (
    LocalPoints,
    Transform6,
    footprint_lonlat,
    grid_local_points,
    inscribed_box,
    tile_extent_m,
)
from cloudfree.testing.render import contamination
from cloudfree.testing.weather import Conditions, Weather

ARCHIVE_FILE = "archive.json"
ARCHIVE_FORMAT = "cloudfree-synthetic-archive"
ARCHIVE_VERSION = 2
"""2: every scene has a cloud probability ``CLD.tif`` (asset ``cloud`` / ``CLD_20m``)."""
CONVENTION_STAC11 = "stac11-bands"
"""Common-name asset keys; ``raster:scale``/``raster:offset`` in each asset's ``bands``."""
CONVENTION_BASELINE = "baseline-only"
"""Uppercase band-id asset keys; no scale/offset; only ``s2:processing_baseline``."""
_SPECIAL_ASSET_KEYS: Mapping[str, Mapping[str, str]] = {
    CONVENTION_STAC11: {"CLD": "cloud"},  # Earth Search c1
    CONVENTION_BASELINE: {"CLD": "CLD_20m"},  # the SAFE product's MSK_CLDPRB_20m
}
"""Asset keys that do not follow a convention's rule (common name / band id)."""

BBox = tuple[float, float, float, float]


def truth_band_id(band: str) -> str:
    """Return the canonical id of a truth band, accepting ids and common names.

    Parameters
    ----------
    band
        ``"B02"``, ``"B03"``, ``"B04"``, ``"B08"`` or ``"blue"``, ``"green"``, ``"red"``,
        ``"nir"`` (any case).

    Returns
    -------
    str
        The band id.

    Raises
    ------
    InvalidInputError
        If the band is unknown or not one the synthetic archive carries.

    """
    band_id = canonical_band(band).id
    if band_id not in TRUTH_BANDS:
        raise InvalidInputError(
            f"The synthetic archive has no band {band!r}; use one of "
            f"{', '.join(TRUTH_BANDS)} (or blue, green, red, nir)."
        )
    return band_id


def _parse_when(text: str) -> date | datetime:
    """Parse ``"YYYY-MM-DD"`` as a date and an ISO 8601 time as a datetime."""
    value = text.strip()
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"Cannot read {text!r} as an acquisition date; use YYYY-MM-DD or an ISO datetime."
        ) from None


@dataclass(frozen=True)
class SyntheticTile:
    """One MGRS-like tile of the synthetic archive.

    Attributes
    ----------
    id
        MGRS tile id, e.g. ``"29UPV"``.
    crs
        The tile's UTM CRS, e.g. ``"EPSG:32629"``.
    transform
        10 m affine coefficients ``(a, b, c, d, e, f)``; origin a multiple of 20 m.
    shape
        ``(height, width)`` in 10 m pixels.
    bbox_lonlat
        Lon/lat bounds of the tile footprint.

    """

    id: str
    crs: str
    transform: Transform6
    shape: tuple[int, int]
    bbox_lonlat: BBox

    def geobox(self, resolution: int = 10) -> GeoBox:
        """Return the tile's grid at 10 m or 20 m (the SCL grid) as an odc-geo GeoBox."""
        if resolution not in (10, 20):
            raise InvalidInputError(f"Tile grids exist at 10 m and 20 m, not {resolution} m.")
        factor = resolution // 10
        a, b, c, d, e, f = self.transform
        affine = Affine(a * factor, b * factor, c, d * factor, e * factor, f)
        return GeoBox((self.shape[0] // factor, self.shape[1] // factor), affine, self.crs)

    def footprint(self) -> Polygon:
        """Return the tile footprint as a densified lon/lat shapely polygon."""
        return footprint_lonlat(self.crs, self.transform, self.shape)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form."""
        return {
            "id": self.id,
            "crs": self.crs,
            "transform": list(self.transform),
            "shape": list(self.shape),
            "bbox_lonlat": list(self.bbox_lonlat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticTile:
        """Rebuild a tile from :meth:`to_dict` output."""
        a, b, c, d, e, f = (float(v) for v in data["transform"])
        height, width = (int(v) for v in data["shape"])
        x0, y0, x1, y1 = (float(v) for v in data["bbox_lonlat"])
        return cls(
            str(data["id"]), str(data["crs"]), (a, b, c, d, e, f), (height, width), (x0, y0, x1, y1)
        )


@dataclass(frozen=True)
class SyntheticScene:
    """One scene (one acquisition on one tile) and how its item was published.

    Attributes
    ----------
    id
        STAC item id.
    tile_id
        The tile.
    datetime
        Sensing time, UTC-aware; identical for both tiles of an acquisition.
    processing_baseline
        ``"03.01"``, ``"04.00"`` or ``"05.00"``.
    offset_applied
        True when DN = reflectance * 10000 + 1000 (else DN = reflectance * 10000).
    convention
        ``"stac11-bands"`` or ``"baseline-only"`` (how the item tells scale/offset).
    almost_cloudy
        More than ~90 % cloud.
    swath_edge
        Part of the tile is beyond the swath edge (DN 0, SCL NO_DATA).
    snow
        A snow date.
    cloud_fraction
        Fraction of valid SCL pixels in classes 8, 9, 10.
    item_path
        The item's JSON file; the COGs ``B02.tif``... ``SCL.tif``, ``CLD.tif`` sit beside it.

    """

    id: str
    tile_id: str
    datetime: datetime
    processing_baseline: str
    offset_applied: bool
    convention: str
    almost_cloudy: bool
    swath_edge: bool
    snow: bool
    cloud_fraction: float
    item_path: Path

    def band_path(self, band: str) -> Path:
        """Return the COG of a band (``"B04"``, ``"red"``, ``"SCL"``, ``"CLD"``...)."""
        return self.item_path.parent / f"{canonical_band(band).id}.tif"

    def asset_key(self, band: str) -> str:
        """Return the item's asset key for a band under this scene's convention.

        ``stac11-bands`` keys are common names or lowercase ids (``red``, ``scl``) and ``cloud``
        for CLD, as Earth Search c1; ``baseline-only`` keys are band ids (``B04``, ``SCL``) and
        ``CLD_20m`` for CLD.
        """
        resolved = canonical_band(band)
        special = _SPECIAL_ASSET_KEYS.get(self.convention, {}).get(resolved.id)
        if special is not None:
            return special
        if self.convention == CONVENTION_STAC11:
            return resolved.common_name or resolved.id.lower()
        return resolved.id

    def to_dict(self, root: Path) -> dict[str, Any]:
        """Return a JSON-serialisable form with ``item_path`` relative to ``root``."""
        return {
            "id": self.id,
            "tile_id": self.tile_id,
            "datetime": self.datetime.isoformat(),
            "processing_baseline": self.processing_baseline,
            "offset_applied": self.offset_applied,
            "convention": self.convention,
            "almost_cloudy": self.almost_cloudy,
            "swath_edge": self.swath_edge,
            "snow": self.snow,
            "cloud_fraction": self.cloud_fraction,
            "item_path": self.item_path.relative_to(root).as_posix(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: Path) -> SyntheticScene:
        """Rebuild a scene from :meth:`to_dict` output."""
        return cls(
            id=str(data["id"]),
            tile_id=str(data["tile_id"]),
            datetime=datetime.fromisoformat(data["datetime"]),
            processing_baseline=str(data["processing_baseline"]),
            offset_applied=bool(data["offset_applied"]),
            convention=str(data["convention"]),
            almost_cloudy=bool(data["almost_cloudy"]),
            swath_edge=bool(data["swath_edge"]),
            snow=bool(data["snow"]),
            cloud_fraction=float(data["cloud_fraction"]),
            item_path=root / data["item_path"],
        )


@dataclass(frozen=True)
class SyntheticArchive:
    """A generated synthetic Sentinel-2 L2A archive and its cloud-free truth.

    Attributes
    ----------
    root
        Archive directory.
    catalog
        ``root / "catalog.json"``, a self-contained STAC 1.1 catalog.
    collection_id
        ``"sentinel-2-l2a"``.
    tiles
        The two tiles (``29UPV`` in EPSG:32629, ``30UUE`` in EPSG:32630).
    scenes
        Every scene, ordered by date then tile.
    bbox
        Lon/lat union of the tile footprints.
    seed
        Generation seed.
    tile_size
        Tile side in 10 m pixels.
    world
        Parameters of the analytic surface fields (what :meth:`truth` evaluates).

    """

    root: Path
    catalog: Path
    collection_id: str
    tiles: tuple[SyntheticTile, ...]
    scenes: tuple[SyntheticScene, ...]
    bbox: BBox
    seed: int = 0
    tile_size: int = 0
    world: World | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> SyntheticArchive:
        """Re-open an archive written by :func:`make_archive` from its ``archive.json``.

        Parameters
        ----------
        root
            The archive directory.

        Returns
        -------
        SyntheticArchive
            The archive.

        Raises
        ------
        SourceError
            If ``root/archive.json`` is missing or not a synthetic archive description.

        """
        root_path = Path(root).resolve()
        path = root_path / ARCHIVE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"Cannot read synthetic archive description {path}: {exc}. "
                "Generate the archive with cloudfree.testing.make_archive (or `cloudfree demo`)."
            ) from exc
        if data.get("format") != ARCHIVE_FORMAT:
            raise SourceError(f"{path} is not a cloudfree synthetic archive description.")
        return cls.from_dict(data, root_path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: Path) -> SyntheticArchive:
        """Build an archive record from the ``archive.json`` contents."""
        x0, y0, x1, y1 = (float(v) for v in data["bbox"])
        return cls(
            root=root,
            catalog=root / data["catalog"],
            collection_id=str(data["collection_id"]),
            tiles=tuple(SyntheticTile.from_dict(t) for t in data["tiles"]),
            scenes=tuple(SyntheticScene.from_dict(s, root) for s in data["scenes"]),
            bbox=(x0, y0, x1, y1),
            seed=int(data["seed"]),
            tile_size=int(data["tile_size"]),
            world=World.from_dict(data["world"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the ``archive.json`` contents (paths relative to ``root``)."""
        if self.world is None:
            raise InvalidInputError("This archive record has no world parameters to save.")
        return {
            "format": ARCHIVE_FORMAT,
            "version": ARCHIVE_VERSION,
            "seed": self.seed,
            "tile_size": self.tile_size,
            "n_dates": len({s.datetime for s in self.scenes}),
            "collection_id": self.collection_id,
            "catalog": self.catalog.relative_to(self.root).as_posix(),
            "bbox": list(self.bbox),
            "overlap_bbox": list(self.overlap_bbox()),
            "tiles": [t.to_dict() for t in self.tiles],
            "scenes": [s.to_dict(self.root) for s in self.scenes],
            "truth": {band: f"truth/{band}.tif" for band in TRUTH_BANDS},
            "world": self.world.to_dict(),
        }

    @property
    def items_path(self) -> Path:
        """The ItemCollection file of all items with absolute hrefs."""
        return self.root / "items.json"

    def tile(self, tile_id: str) -> SyntheticTile:
        """Return the tile with this id."""
        for tile in self.tiles:
            if tile.id == tile_id:
                return tile
        raise InvalidInputError(
            f"No tile {tile_id!r}; tiles are {', '.join(t.id for t in self.tiles)}."
        )

    def truth(self, geobox: GeoBox, band: str) -> np.ndarray:
        """Evaluate the cloud-free surface reflectance at the pixel centres of a GeoBox.

        The same analytic fields the scenes were rendered from are evaluated, so the result is
        exact on any grid and CRS (no resampling).

        Parameters
        ----------
        geobox
            Any odc-geo GeoBox (projected or geographic CRS).
        band
            ``B02``, ``B03``, ``B04``, ``B08`` or ``blue``, ``green``, ``red``, ``nir``.

        Returns
        -------
        numpy.ndarray
            float32 reflectance (0..1) of shape ``geobox.shape``.

        """
        band_id = truth_band_id(band)
        world = self._world()
        points = self._points(geobox)
        return world.surface(points).reflectance[TRUTH_BANDS.index(band_id)]

    @cached_property
    def weather(self) -> Weather:
        """Every acquisition and its sky, rebuilt from the seed (computed once, then cached)."""
        if self.world is None or self.tile_size <= 0:
            raise SourceError(
                "This archive record carries no world parameters or tile size; re-open it with "
                "SyntheticArchive.open."
            )
        n_dates = len({scene.datetime for scene in self.scenes})
        footprints = [tile.footprint() for tile in self.tiles]
        return Weather.plan(
            self.seed, n_dates, self.world, footprints, tile_extent_m(self.tile_size)
        )

    def conditions(
        self, geobox: GeoBox, when: SyntheticScene | datetime | date | str
    ) -> Conditions:
        """Evaluate an acquisition's analytic conditions at the pixel centres of a GeoBox.

        The skies the scenes were rendered from are rebuilt from the archive's seed, so the
        values on a scene's own grid are the ones it was rendered with, and any other grid and
        CRS sees the same sky (both tiles of an acquisition share it).

        Parameters
        ----------
        geobox
            Any odc-geo GeoBox (projected or geographic CRS).
        when
            The acquisition: a scene, its sensing time, or its date (``date`` or
            ``"YYYY-MM-DD"``).

        Returns
        -------
        Conditions
            float32 ``opacity``, ``shadow`` (opacity of the cloud casting a shadow) and
            ``cirrus`` (0..1), and boolean ``nodata`` (beyond the swath) and ``snow``, each of
            shape ``geobox.shape``.

        Raises
        ------
        InvalidInputError
            If no acquisition matches ``when`` or the GeoBox has no CRS.

        """
        index = self._acquisition_index(when)
        points = self._points(geobox)
        world = self._world()
        water = world.cover(points) == Cover.WATER
        return self.weather.conditions(index, points, world.elevation_at(points), water)

    def contaminated(
        self, geobox: GeoBox, when: SyntheticScene | datetime | date | str
    ) -> dict[str, np.ndarray]:
        """Say which observations of an acquisition are contaminated, on any grid.

        The masks threshold :meth:`conditions` where the rendering starts to change the
        reflectance (the thresholds and their reasons are in
        :func:`cloudfree.testing.render.contamination`):

        - ``cloud``: cloud opacity > 0.05 (about +0.02 reflectance in the visible);
        - ``shadow``: casting-cloud opacity > 0.22, where shadows start to darken;
        - ``cirrus``: cirrus > 0.17 (more than ~0.01 reflectance added);
        - ``snow``: snow on the ground;
        - ``nodata``: beyond the swath edge;
        - ``clear``: none of these.

        Parameters
        ----------
        geobox
            Any odc-geo GeoBox.
        when
            The acquisition, as for :meth:`conditions`.

        Returns
        -------
        dict of str to numpy.ndarray
            Boolean masks of shape ``geobox.shape``.

        """
        return contamination(self.conditions(geobox, when))

    def _acquisition_index(self, when: SyntheticScene | datetime | date | str) -> int:
        """Normalise a scene, time or date to the index of its acquisition."""
        times = sorted({scene.datetime for scene in self.scenes})
        if isinstance(when, SyntheticScene):
            when = when.datetime
        if isinstance(when, str):
            when = _parse_when(when)
        if isinstance(when, datetime):
            moment = when if when.tzinfo else when.replace(tzinfo=UTC)
            matches = [i for i, t in enumerate(times) if t == moment]
        else:
            matches = [i for i, t in enumerate(times) if t.date() == when]
        if len(matches) != 1:
            days = ", ".join(t.date().isoformat() for t in times)
            raise InvalidInputError(
                f"The synthetic archive has no acquisition at {when!s}; "
                f"pass a scene, its datetime or one of the dates {days}."
            )
        return matches[0]

    def _world(self) -> World:
        if self.world is None:
            raise SourceError("This archive record carries no world parameters; re-open it.")
        return self.world

    def _points(self, geobox: GeoBox) -> LocalPoints:
        """Local metres of a GeoBox's pixel centres."""
        if geobox.crs is None:
            raise InvalidInputError("The GeoBox has no CRS; truth needs georeferenced pixels.")
        affine = geobox.affine
        transform = (affine.a, affine.b, affine.c, affine.d, affine.e, affine.f)
        shape = (int(geobox.shape[0]), int(geobox.shape[1]))
        return grid_local_points(geobox.crs.proj, transform, shape)

    def truth_path(self, band: str) -> Path:
        """Return the saved truth COG (float32 reflectance, EPSG:32629, 10 m) of a band."""
        return self.root / "truth" / f"{truth_band_id(band)}.tif"

    def overlap_bbox(self) -> BBox:
        """Return a lon/lat box covered by both tiles; it straddles lon -6 (the zone boundary).

        The box is the largest centred axis-aligned box inside the intersection of the tile
        footprints, so every point in it is imaged by both tiles.
        """
        footprints = [tile.footprint() for tile in self.tiles]
        overlap = footprints[0]
        for footprint in footprints[1:]:
            overlap = overlap.intersection(footprint)
        if overlap.is_empty:
            raise SourceError("The archive's tiles do not overlap.")
        return inscribed_box(overlap)
