"""Reading scenes into one output tile.

For every scene and band, odc-geo computes the source window that covers the tile
(:func:`odc.geo.overlap.compute_reproject_roi`); only that window is read, from the coarsest COG
overview that still resolves the output pixels. Windows on the same grid are pasted; others are
warped (bilinear, or what the user chose, for reflectance; always nearest for class and
probability layers).
DNs become int16 reflectance * 10000 with each scene's own scale and offset, and scenes of the
same solar day are merged so a day is counted once: each pixel comes from the first scene with
data, by ascending cloud cover (``same_day="least-cloudy"``) or newest first (``"latest"``, the
CDSE-L3 rule).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import Any

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from cloudfree.access import ResolvedStore, redact_href, redact_message
from cloudfree.bands import BANDS, Band, BandKind
from cloudfree.config import ReadSettings
from cloudfree.errors import InvalidInputError, ReadError
from cloudfree.readers.gdal_band import read_window
from cloudfree.readers.zarr_band import is_zarr_href, read_zarr_window
from cloudfree.scene import BandAsset, Scene
from cloudfree.sources import providers
from cloudfree.stack import (
    NODATA,
    PROBABILITY_NODATA,
    REFLECTANCE_SCALE,
    VALUE_MAX,
    VALUE_MIN,
    Stack,
)

log = logging.getLogger(__name__)

# rasterio's warp of in-memory arrays, run from several threads at once, sometimes reports
# "Dataset has no geotransform" for a dataset it made itself; results are identical to
# single-threaded runs (tests/test_mosaic.py::test_thread_count_does_not_change_the_result).
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.warp")

RESAMPLING_CHOICES = ("nearest", "bilinear", "cubic", "average")
#: How scenes of one solar day are ordered for the merge (first with data wins).
SAME_DAY_CHOICES = ("least-cloudy", "latest")


@dataclass(frozen=True)
class LoadOptions:
    """How a tile is loaded."""

    bands: tuple[Band, ...]
    """Reflectance bands to load, in output order."""
    mask_layers: tuple[Band, ...] = ()
    """Layers the cloud mask reads (``SCL``, ``CLD``, extra bands), loaded into ``Stack.layers``."""
    resampling: str = "bilinear"
    """Resampling for reflectance; class and probability layers are always read with nearest."""
    same_day: str = "least-cloudy"
    """Which scene of a solar day a pixel comes from first: one of :data:`SAME_DAY_CHOICES`."""

    def __post_init__(self) -> None:
        if self.same_day not in SAME_DAY_CHOICES:
            raise InvalidInputError(
                f"Unknown same-day rule {self.same_day!r}; use one of "
                + ", ".join(SAME_DAY_CHOICES)
                + "."
            )
        if self.resampling not in RESAMPLING_CHOICES:
            raise InvalidInputError(
                f"Unknown resampling {self.resampling!r}; use one of "
                + ", ".join(RESAMPLING_CHOICES)
                + "."
            )


def _same_day_order(scenes: list[Scene], rule: str) -> list[Scene]:
    if rule == "latest":
        return sorted(scenes, key=lambda s: (s.datetime, s.id), reverse=True)
    return sorted(
        scenes, key=lambda s: (s.cloud_cover if s.cloud_cover is not None else 100.0, s.id)
    )


def load_stack(
    geobox: GeoBox,
    scenes: Sequence[Scene],
    options: LoadOptions,
    settings: ReadSettings,
    *,
    inside: np.ndarray | None = None,
) -> Stack:
    """Load every scene touching ``geobox`` into a stack with one layer per solar day."""
    by_day: dict[date, list[Scene]] = defaultdict(list)
    for scene in scenes:
        by_day[scene.solar_day].append(scene)
    days: list[date] = []
    layers: list[np.ndarray] = []
    extra: dict[str, list[np.ndarray]] = {b.id: [] for b in options.mask_layers}
    stores = _Stores()
    with rasterio.Env(**settings.gdal_options):
        for day in sorted(by_day):
            ordered = _same_day_order(by_day[day], options.same_day)
            merged = _load_day(geobox, ordered, options, settings, stores)
            if merged is None:
                continue
            data, day_layers = merged
            days.append(day)
            layers.append(data)
            for band_id, layer in day_layers.items():
                extra[band_id].append(layer)
    ny, nx = geobox.shape.yx
    data = (
        np.stack(layers)
        if layers
        else np.full((0, len(options.bands), ny, nx), NODATA, dtype=np.int16)
    )
    stacked = {
        band.id: np.stack(extra[band.id]) if days else _missing(band, (0, ny, nx))
        for band in options.mask_layers
    }
    return Stack(
        geobox=geobox,
        days=tuple(days),
        bands=tuple(b.id for b in options.bands),
        data=data,
        layers=MappingProxyType(stacked),
        inside=inside,
    )


def _missing(band: Band, shape: tuple[int, ...]) -> np.ndarray:
    """An all-missing layer of ``band`` in its stack encoding."""
    if band.is_reflectance:
        return np.full(shape, NODATA, dtype=np.int16)
    if band.categorical:
        return np.zeros(shape, dtype=np.uint8)
    return np.full(shape, PROBABILITY_NODATA, dtype=np.uint8)


def _read_layer(
    scene: Scene,
    band: Band,
    geobox: GeoBox,
    resampling: str,
    settings: ReadSettings,
    stores: _Stores,
) -> np.ndarray | None:
    """One band of a scene in its stack encoding, or ``None`` where the scene misses the tile."""
    if band.is_reflectance:
        dn = _read(scene, band.id, geobox, resampling, settings, stores)
        return None if dn is None else to_reflectance(dn, scene.bands[band.id])
    raw = _read(scene, band.id, geobox, "nearest", settings, stores)
    if raw is None or band.categorical:
        return None if raw is None else raw.astype(np.uint8)
    percent = np.full(raw.shape, PROBABILITY_NODATA, dtype=np.uint8)
    known = ~np.isnan(raw)
    percent[known] = np.clip(np.rint(raw[known]), 0, 100).astype(np.uint8)
    return percent


def _has_value(band: Band, layer: np.ndarray) -> np.ndarray:
    """Where a layer in its stack encoding holds a value."""
    if band.is_reflectance:
        return layer != NODATA
    if band.categorical:
        return layer != 0
    return layer != PROBABILITY_NODATA


def _read_mask_layers(
    scene: Scene,
    geobox: GeoBox,
    options: LoadOptions,
    settings: ReadSettings,
    stores: _Stores,
) -> dict[str, np.ndarray] | None:
    """The mask layers of one scene, or ``None`` when one of them misses the tile."""
    layers: dict[str, np.ndarray] = {}
    for band in options.mask_layers:
        values = _read_layer(scene, band, geobox, options.resampling, settings, stores)
        if values is None:
            return None
        layers[band.id] = values
    return layers


def _load_day(
    geobox: GeoBox,
    scenes: Sequence[Scene],
    options: LoadOptions,
    settings: ReadSettings,
    stores: _Stores,
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Merge the scenes of one solar day: each pixel comes whole from the first scene with data.

    A pixel has data in a scene when every output band and every mask layer has a value there.
    """
    ny, nx = geobox.shape.yx
    data = np.full((len(options.bands), ny, nx), NODATA, dtype=np.int16)
    layers = {b.id: _missing(b, (ny, nx)) for b in options.mask_layers}
    filled = np.zeros((ny, nx), dtype=bool)
    for scene in scenes:
        scene_data = np.full((len(options.bands), ny, nx), NODATA, dtype=np.int16)
        touched = False
        for i, band in enumerate(options.bands):
            values = _read_layer(scene, band, geobox, options.resampling, settings, stores)
            if values is not None:
                scene_data[i] = values
                touched = True
        if not touched:
            continue
        scene_layers = _read_mask_layers(scene, geobox, options, settings, stores)
        if scene_layers is None:
            continue
        present = np.all(scene_data != NODATA, axis=0)
        for band in options.mask_layers:
            present &= _has_value(band, scene_layers[band.id])
        take = present & ~filled
        if not take.any():
            continue
        data[:, take] = scene_data[:, take]
        for band_id, values in scene_layers.items():
            layers[band_id][take] = values[take]
        filled |= take
        if filled.all():
            break
    if not filled.any():
        return None
    return data, layers


def to_reflectance(dn: np.ndarray, asset: BandAsset) -> np.ndarray:
    """float32 DNs (NaN = nodata) to int16 reflectance * 10000 with the asset's scale/offset."""
    factor = asset.scale / REFLECTANCE_SCALE
    shift = asset.offset / REFLECTANCE_SCALE
    value = np.rint(dn * np.float32(factor) + np.float32(shift))
    missing = np.isnan(value)
    value[missing] = 0
    np.clip(value, VALUE_MIN, VALUE_MAX, out=value)
    out = value.astype(np.int16)
    out[missing] = NODATA
    return out


def _read(
    scene: Scene,
    band_id: str,
    geobox: GeoBox,
    resampling: str,
    settings: ReadSettings,
    stores: _Stores,
) -> np.ndarray | None:
    """Read one band of a scene onto ``geobox``, retrying transient failures.

    Returns float32 DNs with NaN for nodata (uint8 classes with 0 for SCL), or ``None`` when the
    scene does not overlap the tile. A permanent failure is a :class:`ReadError` naming the scene
    and the (unsigned, credential-free) href: never silent nodata.
    """
    asset = scene.bands[band_id]
    band = BANDS[band_id]
    if band.kind is BandKind.PROBABILITY and asset.nodata is None:
        # 0 % is a value, not "no data": without a declared nodata every value is valid
        asset = replace(asset, nodata=float("nan"))
    categorical = band.categorical
    store = stores.get(asset)
    delay = settings.retry_backoff
    for attempt in range(1, settings.retries + 1):
        try:
            with _read_env(store, _uncached_on_retry(asset, attempt)):
                return read_band(
                    asset,
                    geobox,
                    resampling,
                    categorical=categorical,
                    crs=scene.crs,
                    storage_options=store.fsspec_options() if store else None,
                )
        except (RasterioError, OSError) as exc:
            if asset.signer is not None:
                providers.signer(asset.signer).invalidate(asset.href)  # maybe it expired
            if attempt == settings.retries:
                raise ReadError(
                    f"Reading band {band_id} of scene {scene.id!r} from "
                    f"{redact_href(asset.href)} failed after {attempt} attempts: "
                    f"{redact_message(str(exc))}"
                ) from None
            log.warning(
                "read of %s %s failed (attempt %d/%d), retrying: %s",
                scene.id,
                band_id,
                attempt,
                settings.retries,
                redact_message(str(exc)),
            )
            time.sleep(delay)
            delay *= 2
    return None  # pragma: no cover - the loop always returns or raises


def _uncached_on_retry(asset: BandAsset, attempt: int) -> dict[str, str]:
    """GDAL remembers a failed URL; a retry must ask the server again, not that memory."""
    if attempt == 1 or "://" not in asset.href:
        return {}
    scheme, rest = asset.href.split("://", 1)
    prefix = "/vsis3/" if scheme == "s3" else f"/vsicurl/{scheme}://"
    return {"CPL_VSIL_CURL_NON_CACHED": prefix + rest.split("?", 1)[0]}


class _Stores:
    """Object stores resolved once per tile load, from this process's environment."""

    def __init__(self) -> None:
        self._resolved: dict[str, ResolvedStore] = {}

    def get(self, asset: BandAsset) -> ResolvedStore | None:
        """The store serving ``asset``, or ``None`` when it is not on one."""
        if asset.store is None or not asset.href.startswith("s3://"):
            return None
        if asset.store not in self._resolved:
            self._resolved[asset.store] = providers.store(asset.store).resolve()
        return self._resolved[asset.store]


def _read_env(store: ResolvedStore | None, options: dict[str, str]) -> Any:
    """The GDAL environment of one read: the object store's, plus per-attempt options."""
    if store is not None:
        return store.rasterio_env(**options)
    return rasterio.Env(**options) if options else contextlib.nullcontext()


def read_band(
    asset: BandAsset,
    geobox: GeoBox,
    resampling: str,
    *,
    categorical: bool,
    crs: str | None,
    storage_options: dict[str, object] | None = None,
) -> np.ndarray | None:
    """Read one asset onto ``geobox`` with the reader its format needs (Zarr array or GDAL)."""
    if is_zarr_href(asset.href):
        if crs is None:
            raise ReadError(f"Zarr band {redact_href(asset.href)} needs its scene's CRS.")
        return read_zarr_window(
            gdal_href(asset),
            geobox,
            resampling,
            categorical=categorical,
            crs=crs,
            nodata=asset.nodata,
            storage_options=storage_options,
        )
    return read_window(
        gdal_href(asset), geobox, resampling, categorical=categorical, nodata=asset.nodata
    )


def gdal_href(asset: BandAsset) -> str:
    """The href GDAL opens: signed here, at read time, when the provider needs it."""
    if asset.signer is None:
        return asset.href
    return providers.signer(asset.signer).sign(asset.href)
