"""Scenes from file archives: the AWS tile-path layout and SAFE products, local or on S3.

Both are found by listing only the prefixes the query needs (a tile's months, a date's
folder), never the whole bucket. Radiometry comes from the product's own metadata
(``MTD_MSIL2A.xml``: quantification and ``BOA_ADD_OFFSET`` per band), the processing baseline
only where that file is missing. Bands are JPEG 2000, read by window like any other asset.

Layouts
    AWS ``sentinel-s2-l2a``: ``tiles/{zone}/{band}/{square}/{yyyy}/{m}/{d}/{n}/`` with
    ``tileInfo.json``, ``R10m/B02.jp2`` ... ``R20m/SCL.jp2``, and the product's
    ``metadata.xml`` at ``tileInfo.productPath``.
    SAFE: ``<root>/<product>.SAFE/`` (or ``<root>/{yyyy}/{mm}/{dd}/<product>.SAFE/`` as the
    Copernicus archive nests them) with ``MTD_MSIL2A.xml`` and
    ``GRANULE/<granule>/IMG_DATA/R10m/T{tile}_{time}_B02_10m.jp2``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, overload

import fsspec
from fsspec import AbstractFileSystem
from odc.geo.geom import Geometry

from cloudfree.access import redact_href
from cloudfree.bands import BANDS, canonical_band
from cloudfree.errors import InvalidInputError, SourceError
from cloudfree.mgrs import parse_tile_id, tile_geobox, tiles_for
from cloudfree.radiometry import L2A_SCALE, offset_for_baseline
from cloudfree.scene import BandAsset, Scene
from cloudfree.sources.base import SearchQuery
from cloudfree.sources.providers import store
from cloudfree.sources.s2_metadata import (
    ProductMetadata,
    parse_product_metadata,
    parse_tile_info,
    parse_tile_metadata,
)

log = logging.getLogger(__name__)

#: Object store of ``s3://`` archives (endpoint and credentials from the ``AWS_*`` environment).
ARCHIVE_STORE = "aws"

_SAFE_NAME = re.compile(
    r"^(?P<id>S2[A-D]_MSIL2A_(?P<time>\d{8}T\d{6})_N\d{4}_R\d{3}_T(?P<tile>\d{2}[A-Z]{3})_"
    r"\d{8}T\d{6})\.SAFE$"
)
_BAND_FILE = re.compile(r"_(?P<band>B\d[\dA]|SCL)_(?P<res>\d{2})m\.jp2$")


def open_archive(url: str, *, tiles: Iterable[str] = ()) -> ArchiveSource:
    """Open an archive folder or ``s3://`` prefix, recognising its layout."""
    fs, root = _filesystem(url)
    tile_ids = tuple(parse_tile_id(t).id for t in tiles)
    if not fs.exists(root):
        raise InvalidInputError(f"Archive {redact_href(url)} does not exist.")
    if fs.exists(f"{root}/tiles"):
        return AwsTileSource(url, fs, root, tile_ids)
    names = [_name(p) for p in fs.ls(root, detail=False)]
    if any(n.endswith(".SAFE") for n in names) or any(re.fullmatch(r"\d{4}", n) for n in names):
        return SafeSource(url, fs, root, tile_ids)
    raise InvalidInputError(
        f"{redact_href(url)} is neither an AWS tile-path layout (no tiles/ folder) nor a folder "
        "of .SAFE products (or of YYYY/MM/DD folders holding them)."
    )


class ArchiveSource:
    """What both layouts share: a filesystem, the tiles to look at, scene assembly."""

    kind = "archive"

    def __init__(self, url: str, fs: AbstractFileSystem, root: str, tiles: tuple[str, ...]) -> None:
        self.url = url
        self.fs = fs
        self.root = root
        self.tiles = tiles
        self.description = f"{self.kind} {redact_href(url)}"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a Dask worker) without the filesystem, which holds the credentials."""
        state = dict(self.__dict__)
        del state["fs"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fs, _ = _filesystem(self.url)  # credentials of the process that unpickles it

    def search(self, query: SearchQuery) -> list[Scene]:
        """Scenes of the query's tiles and dates that touch its area, in time order."""
        tiles = self.tiles or tuple(tiles_for(query.aoi.geometry))
        found: dict[str, Scene] = {}
        for scene in self._scenes(tiles, query):
            if not query.timerange.contains(scene.datetime):
                continue
            cover, limit = scene.cloud_cover, query.max_cloud_cover
            if limit is not None and cover is not None and cover > limit:
                continue
            if scene.footprint.intersects(query.aoi.geometry):
                found.setdefault(scene.id, scene)
        ordered = sorted(found.values(), key=lambda s: (s.datetime, s.id))
        return ordered[: query.max_items] if query.max_items is not None else ordered

    def _scenes(self, tiles: tuple[str, ...], query: SearchQuery) -> Iterator[Scene]:
        raise NotImplementedError

    def _href(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    @overload
    def _read(self, path: str) -> bytes: ...

    @overload
    def _read(self, path: str, *, missing_ok: bool) -> bytes | None: ...

    def _read(self, path: str, *, missing_ok: bool = False) -> bytes | None:
        try:
            with self.fs.open(path, "rb") as handle:
                return bytes(handle.read())
        except FileNotFoundError:
            if missing_ok:
                return None
            raise SourceError(f"{redact_href(self._href(path))} does not exist.") from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"Cannot read {redact_href(self._href(path))}: {exc}") from None

    def _list(self, path: str) -> list[str]:
        """Child names of a folder; an absent folder has none."""
        try:
            return sorted(_name(p) for p in self.fs.ls(path, detail=False))
        except FileNotFoundError:
            return []

    def _scene(self, parts: SceneParts) -> Scene:
        bands: dict[str, BandAsset] = {}
        for band_id, (path, resolution) in parts.band_paths.items():
            reflectance = BANDS[band_id].is_reflectance
            scale, offset = _radiometry(parts, band_id) if reflectance else (1.0, 0.0)
            href = self._href(path)
            bands[band_id] = BandAsset(
                href=href,
                scale=scale,
                offset=offset,
                nodata=0.0,
                resolution=float(resolution),
                store=ARCHIVE_STORE if href.startswith("s3://") else None,
            )
        return Scene(
            id=parts.id,
            datetime=parts.datetime,
            footprint=parts.footprint,
            bands=bands,
            crs=parts.crs,
            tile=parts.tile,
            cloud_cover=parts.cloud_cover,
            processing_baseline=parts.baseline,
            provider=self.kind,
        )


@dataclass(frozen=True)
class SceneParts:
    """What a layout found about one product on one tile."""

    id: str
    datetime: datetime
    tile: str
    crs: str
    footprint: Geometry
    cloud_cover: float | None
    baseline: str | None
    product: ProductMetadata | None
    band_paths: Mapping[str, tuple[str, int]]
    """Canonical band id to (path, resolution in metres)."""


def _radiometry(parts: SceneParts, band_id: str) -> tuple[float, float]:
    if parts.product is not None:
        decided = parts.product.radiometry(band_id)
        return decided.scale, decided.offset
    if parts.baseline is None:
        raise SourceError(
            f"Scene {parts.id!r} has neither product metadata nor a processing baseline; its "
            "reflectance offset cannot be decided."
        )
    return L2A_SCALE, offset_for_baseline(parts.baseline)


class AwsTileSource(ArchiveSource):
    """The ``sentinel-s2-l2a`` tile-path layout."""

    kind = "aws-tiles"

    def _scenes(self, tiles: tuple[str, ...], query: SearchQuery) -> Iterator[Scene]:
        for tile in tiles:
            yield from self._tile_scenes(tile, query)

    def _tile_scenes(self, tile: str, query: SearchQuery) -> Iterator[Scene]:
        mgrs = parse_tile_id(tile)
        base = f"{self.root}/tiles/{mgrs.zone}/{mgrs.band}/{mgrs.square}"
        first, last = _utc_dates(query)
        for year, month in _months(first, last):
            for day_name in self._list(f"{base}/{year}/{month}"):
                if not day_name.isdigit() or not first <= date(year, month, int(day_name)) <= last:
                    continue
                for sequence in self._list(f"{base}/{year}/{month}/{day_name}"):
                    yield self._scene(self._parts(f"{base}/{year}/{month}/{day_name}/{sequence}"))

    def _parts(self, folder: str) -> SceneParts:
        info = parse_tile_info(
            self._read(f"{folder}/tileInfo.json"), name=f"{folder}/tileInfo.json"
        )
        product = None
        if info.product_path:
            path = f"{self.root}/{info.product_path}/metadata.xml"
            text = self._read(path, missing_ok=True)
            if text is not None:
                product = parse_product_metadata(text, name=path)
        band_paths: dict[str, tuple[str, int]] = {}
        for resolution in (60, 20, 10):
            for name in self._list(f"{folder}/R{resolution}m"):
                band = _band_of(name.removesuffix(".jp2"))
                if band is not None and name.endswith(".jp2"):
                    band_paths[band] = (f"{folder}/R{resolution}m/{name}", resolution)
        baseline = product.processing_baseline if product else info.processing_baseline
        return SceneParts(
            id=info.product_name,
            datetime=info.timestamp,
            tile=info.tile_id,
            crs=info.crs,
            footprint=info.data_footprint(),
            cloud_cover=info.cloud_cover,
            baseline=baseline,
            product=product,
            band_paths=band_paths,
        )


class SafeSource(ArchiveSource):
    """A folder (or prefix) of ``.SAFE`` products, flat or nested by date."""

    kind = "safe"

    def _scenes(self, tiles: tuple[str, ...], query: SearchQuery) -> Iterator[Scene]:
        first, last = _utc_dates(query)
        for folder in self._product_folders(first, last):  # listed once for every tile
            match = _SAFE_NAME.match(_name(folder))
            if match is None or match.group("tile") not in tiles:
                continue
            sensed = datetime.strptime(match.group("time"), "%Y%m%dT%H%M%S").date()
            if first <= sensed <= last:
                yield self._scene(self._parts(folder, match.group("id")))

    def _product_folders(self, first: date, last: date) -> Iterator[str]:
        names = self._list(self.root)
        for name in names:
            if name.endswith(".SAFE"):
                yield f"{self.root}/{name}"
        if any(re.fullmatch(r"\d{4}", n) for n in names):
            day = first
            while day <= last:
                folder = f"{self.root}/{day:%Y/%m/%d}"
                for name in self._list(folder):
                    if name.endswith(".SAFE"):
                        yield f"{folder}/{name}"
                day += timedelta(days=1)

    def _parts(self, folder: str, product_id: str) -> SceneParts:
        product = parse_product_metadata(
            self._read(f"{folder}/MTD_MSIL2A.xml"), name=f"{product_id}/MTD_MSIL2A.xml"
        )
        granules = self._list(f"{folder}/GRANULE")
        if len(granules) != 1:
            raise SourceError(f"{product_id} has {len(granules)} granules; expected one.")
        granule = f"{folder}/GRANULE/{granules[0]}"
        tile = parse_tile_metadata(
            self._read(f"{granule}/MTD_TL.xml"), name=f"{granule}/MTD_TL.xml"
        )
        band_paths: dict[str, tuple[str, int]] = {}
        for resolution in (60, 20, 10):
            for name in self._list(f"{granule}/IMG_DATA/R{resolution}m"):
                match = _BAND_FILE.search(name)
                if match is not None:
                    band_id = canonical_band(match.group("band")).id
                    band_paths[band_id] = (f"{granule}/IMG_DATA/R{resolution}m/{name}", resolution)
        return SceneParts(
            id=product_id,
            datetime=product.sensing_start,
            tile=tile.tile_id,
            crs=tile.crs,
            footprint=tile_geobox(tile.tile_id).extent.to_crs("EPSG:4326"),
            cloud_cover=product.cloud_cover,
            baseline=product.processing_baseline,
            product=product,
            band_paths=band_paths,
        )


def _band_of(name: str) -> str | None:
    try:
        return canonical_band(name).id
    except InvalidInputError:
        return None


def _filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    options: dict[str, Any] = {}
    if url.startswith("s3://"):
        options = store(ARCHIVE_STORE).resolve().fsspec_options()
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, str(root).rstrip("/")


def _name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _utc_dates(query: SearchQuery) -> tuple[date, date]:
    """The UTC dates the query spans (archive folders are named by UTC date)."""
    return query.timerange.start, query.timerange.end


def _months(first: date, last: date) -> Iterator[tuple[int, int]]:
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
