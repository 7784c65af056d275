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
import math
import os
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from cloudfree.access import ResolvedStore, redact_href, redact_message
from cloudfree.bands import BANDS, Band, BandKind
from cloudfree.config import ReadSettings
from cloudfree.errors import CloudfreeError, InvalidInputError, ReadError
from cloudfree.grid import pixel_size_metres
from cloudfree.readers.datasets import borrowed_raster, forget
from cloudfree.readers.encode import (
    blank_absent,
    lookup_into,
    reflectance_into,
    reflectance_table,
    settle_into,
    shifted_into,
    whole_shift,
)
from cloudfree.readers.gdal_band import read_window_raw
from cloudfree.readers.window import Pasted
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
    layer_dtype,
    layers_present,
    missing_value,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# rasterio's warp and rasterize of in-memory arrays, run from several threads at once, sometimes
# report "Dataset has no geotransform" for a dataset they made themselves; results are identical
# to single-threaded runs (tests/test_mosaic.py::test_thread_count_does_not_change_the_result).
warnings.filterwarnings(
    "ignore", category=NotGeoreferencedWarning, module=r"rasterio\.(warp|features)"
)

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
    """Load every scene touching ``geobox`` into a stack with one layer per solar day.

    The stack is allocated once, unfilled, and each day is read into its slot, every pixel
    written once (no per-day copies, no final ``np.stack``, no fill pass over the whole stack).
    Up to ``settings.concurrency`` days are read at the same time (:func:`read_pool`); days
    whose scenes turn out to have no pixel in the tile are dropped and the later days moved
    down. Where each day has data (``Stack.has_values``) is known from the merge and handed
    over.
    """
    days = _Days(geobox, scenes, options)
    stores = _Stores()

    def load_day(k: int) -> bool:
        with rasterio.Env(**settings.gdal_options):  # rasterio's environment is per thread
            return _load_day(geobox, days.scenes[k], options, settings, stores, days.slot(k))

    return days.stack(_each(settings, load_day, range(days.count)), inside)


#: Side in output pixels of the blocks :func:`load_mask_first` reads or skips as a whole (a COG
#: block of Sentinel-2's 10 m bands where the output is on their grid).
SKIP_BLOCK = 256


def load_mask_first(
    geobox: GeoBox,
    scenes: Sequence[Scene],
    options: LoadOptions,
    settings: ReadSettings,
    judge: Callable[[Stack], np.ndarray],
    halo: int = 0,
) -> tuple[Stack, np.ndarray]:
    """:func:`load_stack`, reading each day's bands only where the cloud mask keeps a pixel.

    The mask layers of every day come first; ``judge`` (the cloud mask) gets them as a stack
    without bands (:meth:`Stack.for_mask`) and returns ``(time, y, x)`` clear observations.
    Each day's bands are then read only in the blocks (:data:`SKIP_BLOCK` pixels) of the tile
    without its ``halo`` that hold a clear pixel, grouped into one window per run of block rows
    that need the same columns; elsewhere they are "no data". A day whose scenes are several
    (their merge needs every band) is read whole in the first pass. Returns the stack on
    ``geobox`` and ``judge``'s verdict.

    Wherever an observation is clear and has data, the values are those :func:`load_stack`
    reads (windows are read exactly as whole tiles are, for nearest and bilinear resampling);
    unlike :func:`load_stack`, a day is kept when its mask layers touch the tile, even if no
    pixel of it turns out to have data.
    """
    days = _Days(geobox, scenes, options)
    stores = _Stores()
    single = [len(day) == 1 for day in days.scenes]

    def first_pass(k: int) -> bool:
        slot = days.slot(k)
        with rasterio.Env(**settings.gdal_options):
            if single[k]:
                return _read_mask_layers(geobox, days.scenes[k][0], options, settings, stores, slot)
            return _load_day(geobox, days.scenes[k], options, settings, stores, slot)

    loaded = _each(settings, first_pass, range(days.count))
    kept = [k for k in range(days.count) if loaded[k]]
    stack = days.stack(loaded)
    bandless = Stack(
        geobox=geobox,
        days=stack.days,
        bands=(),
        data=np.empty((len(kept), 0, *geobox.shape.yx), dtype=np.int16),
        layers=stack.layers,
    )
    clear = judge(bandless.for_mask())
    del bandless  # its presence of the layers: a day's is made again where its bands are read

    def bands_where_clear(i: int) -> None:
        k = kept[i]
        if not single[k]:
            return
        scene = days.scenes[k][0]
        slot = days.slot(i)  # the stack's day i: the days below it were moved down
        values = slot.data
        windows = clear_windows(clear[i], halo, SKIP_BLOCK)
        # each window's read writes all of it; no-data outside the windows: absent there
        fill_outside(values, windows, NODATA)
        fill_outside(slot.present, windows, False)
        with rasterio.Env(**settings.gdal_options):
            for rows, cols in windows:
                window = geobox[rows, cols]
                for b, band in enumerate(options.bands):
                    out = values[b, rows, cols]
                    present = _Presence(slot.present[rows, cols], first=b == 0)
                    _read_layer(
                        scene, band, window, options.resampling, settings, stores, out, present
                    )
                ok = _layers_ok({k: layer[rows, cols] for k, layer in slot.layers.items()})
                blank_absent(values[:, rows, cols], ok, int(NODATA), slot.present[rows, cols])

    _each(settings, bands_where_clear, range(len(kept)))
    return stack, clear


def clear_windows(clear: np.ndarray, halo: int, block: int) -> list[tuple[slice, slice]]:
    """Windows of ``(y, x)`` ``clear`` covering every clear pixel of its inside ``halo``.

    The inside is cut into ``block`` x ``block`` blocks; each row of blocks gives the columns
    from its first to its last block with a clear pixel, and consecutive rows giving the same
    columns make one window (a COG's blocks of one row lie next to each other in its file).
    """
    ny, nx = clear.shape
    inner = clear[halo : ny - halo, halo : nx - halo]
    if inner.size == 0:
        return []
    iy, ix = inner.shape
    rows_any = np.logical_or.reduceat(inner, np.arange(0, iy, block), axis=0)
    blocks = np.logical_or.reduceat(rows_any, np.arange(0, ix, block), axis=1)
    windows: list[tuple[slice, slice]] = []
    previous: tuple[int, int] | None = None
    for r, row in enumerate(blocks):
        used = np.flatnonzero(row)
        span = None if used.size == 0 else (int(used[0]), int(used[-1]) + 1)
        y0, y1 = halo + r * block, halo + min((r + 1) * block, iy)
        if span is not None and span == previous:
            last_rows, cols = windows[-1]
            windows[-1] = (slice(last_rows.start, y1), cols)
        elif span is not None:
            x0, x1 = halo + span[0] * block, halo + min(span[1] * block, ix)
            windows.append((slice(y0, y1), slice(x0, x1)))
        previous = span
    return windows


def fill_outside(
    values: np.ndarray, windows: Sequence[tuple[slice, slice]], value: int | np.integer
) -> None:
    """``values[..., y, x] = value`` wherever no window covers ``(y, x)``.

    ``windows`` as :func:`clear_windows` gives them: in order of their rows, which do not
    overlap.
    """
    y = 0
    for rows, cols in windows:
        values[..., y : rows.start, :] = value
        values[..., rows, : cols.start] = value
        values[..., rows, cols.stop :] = value
        y = rows.stop
    values[..., y:, :] = value


class _Days:
    """A stack being loaded: the scenes of each solar day and the unfilled arrays they go to."""

    def __init__(self, geobox: GeoBox, scenes: Sequence[Scene], options: LoadOptions) -> None:
        by_day: dict[date, list[Scene]] = defaultdict(list)
        for scene in scenes:
            by_day[scene.solar_day].append(scene)
        self.geobox = geobox
        self.options = options
        self.days = sorted(by_day)
        self.scenes = [_same_day_order(by_day[day], options.same_day) for day in self.days]
        self.count = n = len(self.days)
        ny, nx = geobox.shape.yx
        self.data = _memory.array("data", (n, len(options.bands), ny, nx), np.int16)
        self.layers = {
            band.id: _memory.array(band.id, (n, ny, nx), layer_dtype(band))
            for band in options.mask_layers
        }
        self.present = _memory.array("present", (n, ny, nx), np.bool_)

    def slot(self, k: int) -> _Slot:
        """Where day ``k`` goes."""
        layers = {band_id: layer[k] for band_id, layer in self.layers.items()}
        return _Slot(self.data[k], layers, self.present[k])

    def stack(self, loaded: Sequence[bool], inside: np.ndarray | None = None) -> Stack:
        """The stack of the days ``loaded`` says have data, moved down over those without."""
        kept = [k for k in range(self.count) if loaded[k]]
        for i, k in enumerate(kept):
            if i != k:  # a day without data before this one: move it down
                self.data[i] = self.data[k]
                self.present[i] = self.present[k]
                for layer in self.layers.values():
                    layer[i] = layer[k]
        count = len(kept)
        return Stack(
            geobox=self.geobox,
            days=tuple(self.days[k] for k in kept),
            bands=tuple(b.id for b in self.options.bands),
            data=self.data[:count],
            layers=MappingProxyType({k: v[:count] for k, v in self.layers.items()}),
            inside=inside,
        ).with_has_values(self.present[:count])


def _each(settings: ReadSettings, function: Callable[[int], T], indices: range) -> list[T]:
    """``function`` of every index, on the reader pool when there are several."""
    if settings.concurrency > 1 and len(indices) > 1:
        return list(read_pool(settings.concurrency).map(function, indices))
    return [function(k) for k in indices]


class _StackMemory(threading.local):
    """Stack memory of one thread, kept while :func:`reused_stack_memory` is on."""

    def __init__(self) -> None:
        self.active = False
        self.buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
        """An unfilled array: fresh, or this thread's buffer ``name`` while reuse is on."""
        if not self.active:
            return np.empty(shape, dtype=dtype)
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[name] = np.empty(size, dtype=np.uint8)
        return buffer[:size].view(dtype).reshape(shape)


_memory = _StackMemory()


@contextlib.contextmanager
def reused_stack_memory() -> Iterator[None]:
    """Within it, :func:`load_stack` on this thread reuses one set of arrays for every stack.

    For a worker that loads, reduces and writes one tile after the other (each unit runs in
    its own ``with``): a stack's arrays are overwritten by the next stack this thread loads in
    such a block, so nothing may keep them (or views of them) past the tile. It saves the page
    faults of a fresh few hundred megabytes per tile. The thread keeps its arrays between blocks
    (one tile's worth, the memory its next tile needs) until it ends.
    """
    was = _memory.active
    _memory.active = True
    try:
        yield
    finally:
        _memory.active = was


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forked() -> None:
    """A forked child has none of the parent's threads (nor its lock holders): start afresh."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def read_pool(size: int) -> ThreadPoolExecutor:
    """The process's pool of ``size`` reader threads, shared by every tile being loaded.

    Long-lived; the readers share the process's open datasets
    (:mod:`cloudfree.readers.datasets`). Tiles loaded at the same time queue their days in
    order, so the first tile's days are read first.
    """
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="cloudfree-read")
            _pools[size] = pool
        return pool


@dataclass(frozen=True)
class _Slot:
    """Where one solar day goes in the stack.

    ``(band, y, x)`` values, each mask layer, and ``(y, x)`` where the day has data; undefined
    until a scene is read into it.
    """

    data: np.ndarray
    layers: dict[str, np.ndarray]
    present: np.ndarray

    def clear(self, options: LoadOptions) -> None:
        """All missing."""
        self.data[...] = NODATA
        for band in options.mask_layers:
            self.layers[band.id][...] = missing_value(band)
        self.present[...] = False


def _read_layer(
    scene: Scene,
    band: Band,
    geobox: GeoBox,
    resampling: str,
    settings: ReadSettings,
    stores: _Stores,
    out: np.ndarray,
    present: _Presence | None = None,
) -> bool:
    """Read one band of a scene into ``out`` in its stack encoding, every pixel written.

    Returns ``False`` (``out`` all missing) where the scene misses the tile. A window on the
    output's own grid goes from the decoded integers straight into place. With ``present``
    (reflectance bands), the band's presence is kept in it as it is written.
    """
    if band.is_reflectance:
        dn = _read(scene, band.id, geobox, resampling, settings, stores, raw=True)
        if dn is None:
            out[...] = NODATA
            if present is not None:
                present.array[...] = False
            return False
        asset = scene.bands[band.id]
        if not isinstance(dn, Pasted):
            out[...] = to_reflectance(dn, asset)
            if present is not None:
                present.add(out)
            return True
        if not dn.covers(out.shape):
            out[...] = NODATA
            if present is not None:
                fill_outside(present.array, [(dn.rows, dn.cols)], False)
        factor, shift = _reflectance_factors(asset)
        target = out[dn.rows, dn.cols]
        whole = whole_shift(factor, shift)
        unsigned = dn.block.dtype in (np.uint8, np.uint16)
        if unsigned and whole is not None and float(dn.src_nodata).is_integer():
            low, high, nodata = VALUE_MIN, VALUE_MAX, int(NODATA)
            kept = _NO_LAYERS if present is None else present.array[dn.rows, dn.cols]
            first = present is not None and present.first
            src_nodata = int(dn.src_nodata)
            shifted_into(dn.block, src_nodata, whole, low, high, nodata, target, kept, first)
            return True
        if unsigned:
            table = reflectance_table(
                dn.block.dtype.str, dn.src_nodata, factor, shift, VALUE_MIN, VALUE_MAX
            )
            lookup_into(dn.block, table, target)
        else:
            low, high, nodata = VALUE_MIN, VALUE_MAX, int(NODATA)
            reflectance_into(dn.block, dn.src_nodata, factor, shift, low, high, nodata, target)
        if present is not None:
            present.within(dn.rows, dn.cols).add(target)
        return True
    raw = _read(scene, band.id, geobox, "nearest", settings, stores, raw=band.categorical)
    if raw is None:
        out[...] = missing_value(band)
        return False
    if isinstance(raw, Pasted):
        if not raw.covers(out.shape):
            out[...] = 0
        out[raw.rows, raw.cols] = raw.block  # classes as they are
    elif band.categorical:
        out[...] = raw
    else:
        known = ~np.isnan(raw)
        out[...] = PROBABILITY_NODATA
        out[known] = np.clip(np.rint(raw[known]), 0, 100).astype(np.uint8)
    return True


def _has_layers(slot: _Slot) -> np.ndarray:
    """``(y, x)``: every mask layer of ``slot`` holds a value (all true without layers)."""
    present = layers_present(slot.layers)
    return np.ones(slot.present.shape, dtype=bool) if present is None else present


def _read_scene(
    geobox: GeoBox,
    scene: Scene,
    options: LoadOptions,
    settings: ReadSettings,
    stores: _Stores,
    slot: _Slot,
) -> bool:
    """Read a scene into ``slot``, every pixel written; whether it touches the tile.

    A pixel has data (``slot.present``) when every output band and every mask layer has a value
    there; elsewhere the bands are missing, and the mask layers keep what they hold (a mask
    judges by its own layers). ``False`` (the slot all missing) when the scene misses the tile
    or one of its mask layers does.
    """
    touched = False
    for i, band in enumerate(options.bands):
        touched |= _read_layer(
            scene, band, geobox, options.resampling, settings, stores, slot.data[i]
        )
    if not touched or not _read_mask_layers(geobox, scene, options, settings, stores, slot):
        slot.clear(options)
        return False
    _settle(slot)
    return True


def _settle(slot: _Slot) -> None:
    """``slot.present`` where every band and mask layer has a value; bands missing elsewhere.

    The mask layers keep their values (a mask judges by its own layers).
    """
    settle_into(slot.data, _layers_ok(slot.layers), int(NODATA), slot.present)


_NO_LAYERS = np.empty((0, 0), dtype=bool)
"""What the kernels of :mod:`~cloudfree.readers.encode` take for "no mask layers" (and "no
presence kept")."""


def _layers_ok(layers: Mapping[str, np.ndarray]) -> np.ndarray:
    """Where every mask layer holds a value, as the kernels take it (:data:`_NO_LAYERS`: none)."""
    present = layers_present(layers)
    return _NO_LAYERS if present is None else present


@dataclass(frozen=True)
class _Presence:
    """Where a pixel's bands, read one after the other, all have a value so far.

    ``array`` is ``(y, x)``; the ``first`` band read sets it, the others and theirs into it.
    """

    array: np.ndarray
    first: bool

    def within(self, rows: slice, cols: slice) -> _Presence:
        """The same for the pixels ``[rows, cols]``."""
        return _Presence(self.array[rows, cols], self.first)

    def add(self, values: np.ndarray) -> None:
        """Take in a band's stack values (``values`` the shape of ``array``)."""
        if self.first:
            np.not_equal(values, NODATA, out=self.array)
        else:
            np.logical_and(self.array, values != NODATA, out=self.array)


def _read_mask_layers(
    geobox: GeoBox,
    scene: Scene,
    options: LoadOptions,
    settings: ReadSettings,
    stores: _Stores,
    slot: _Slot,
) -> bool:
    """Read the scene's mask layers into ``slot``; ``False`` (all missing) if one misses."""
    for band in options.mask_layers:
        layer = slot.layers[band.id]
        if not _read_layer(scene, band, geobox, options.resampling, settings, stores, layer):
            slot.clear(options)
            return False
    return True


def _load_day(
    geobox: GeoBox,
    scenes: Sequence[Scene],
    options: LoadOptions,
    settings: ReadSettings,
    stores: _Stores,
    slot: _Slot,
) -> bool:
    """Merge the scenes of one solar day into ``slot``; whether any pixel has data.

    Each pixel comes whole from the first scene with data there.
    A pixel has data in a scene when every output band and every mask layer has a value there;
    where no scene has data, the mask layers come from the first scene that has them (a mask
    judges by its own layers). The first scene touching the tile is read straight into the
    slot; a later one (same day, other tile or orbit) into a scratch slot, from which it fills
    the pixels still empty.
    """
    started = False
    scratch: _Slot | None = None
    for scene in scenes:
        if not started:
            started = _read_scene(geobox, scene, options, settings, stores, slot)
        else:
            if scratch is None:
                scratch = _Slot(
                    np.empty(slot.data.shape, dtype=np.int16),
                    {
                        b.id: np.empty(slot.present.shape, layer_dtype(b))
                        for b in options.mask_layers
                    },
                    np.empty(slot.present.shape, dtype=bool),
                )
            if not _read_scene(geobox, scene, options, settings, stores, scratch):
                continue
            take = scratch.present & ~slot.present
            for values, more in zip(slot.data, scratch.data, strict=True):
                np.copyto(values, more, where=take)
            # the layers with the bands; where no scene has data, from the first with layers
            layers_take = take | (_has_layers(scratch) & ~_has_layers(slot))
            for band_id, layer in slot.layers.items():
                np.copyto(layer, scratch.layers[band_id], where=layers_take)
            np.logical_or(slot.present, take, out=slot.present)
        if started and slot.present.all():
            break
    return started and bool(slot.present.any())


def _reflectance_factors(asset: BandAsset) -> tuple[np.float32, np.float32]:
    """The float32 ``(factor, shift)`` turning the asset's DNs into int16 reflectance * 10000."""
    return (
        np.float32(asset.scale / REFLECTANCE_SCALE),
        np.float32(asset.offset / REFLECTANCE_SCALE),
    )


def to_reflectance(dn: np.ndarray, asset: BandAsset) -> np.ndarray:
    """float32 DNs (NaN = nodata) to int16 reflectance * 10000 with the asset's scale/offset."""
    factor, shift = _reflectance_factors(asset)
    value = np.rint(dn * factor + shift)
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
    *,
    raw: bool = False,
) -> np.ndarray | Pasted | None:
    """Read one band of a scene onto ``geobox``, retrying transient failures.

    Returns float32 DNs with NaN for nodata (uint8 classes with 0 for SCL), or ``None`` when the
    scene does not overlap the tile; with ``raw``, a window on the output's own grid comes back
    as :class:`~cloudfree.readers.window.Pasted` (the decoded pixels and where they go).
    A permanent failure is a :class:`ReadError` naming the scene
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
                    raw=raw,
                )
        except (RasterioError, OSError) as exc:
            forget(asset.href)  # the retry opens the file again
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
    raw: bool = False,
) -> np.ndarray | Pasted | None:
    """Read one asset onto ``geobox`` with the reader its format needs (Zarr array or GDAL).

    ``raw``: see :func:`cloudfree.readers.gdal_band.read_window_raw` (GDAL rasters only).
    """
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
    placed = read_window_raw(
        gdal_href(asset), geobox, resampling, categorical=categorical, nodata=asset.nodata
    )
    if isinstance(placed, Pasted) and not raw:
        return placed.materialise(geobox, categorical=categorical)
    return placed


def source_block_rows(
    scenes: Sequence[Scene], band_id: str, geobox: GeoBox, settings: ReadSettings
) -> int | None:
    """Height of the blocks of ``band_id``'s files on ``geobox``'s pixels, or ``None``.

    Read from the header of the first scene's file (its handle stays open for the reads that
    follow); scenes of one collection share their blocks. ``None`` where it cannot be known
    here: Zarr arrays, no scene with the band, or a file that does not open or a store without
    its credentials (a best guess for the strips: the reads report the failure, with retries).
    """
    asset = next((s.bands[band_id] for s in scenes if band_id in s.bands), None)
    if asset is None or is_zarr_href(asset.href):
        return None
    try:
        with (
            rasterio.Env(**settings.gdal_options),
            _read_env(_Stores().get(asset), {}),
            borrowed_raster(gdal_href(asset)) as src,
        ):
            rows = src.dataset.block_shapes[0][0]
            source_m = pixel_size_metres(src.geobox)
    except (RasterioError, OSError, CloudfreeError):
        return None
    return max(1, math.ceil(rows * source_m / pixel_size_metres(geobox) - 1e-6))


def gdal_href(asset: BandAsset) -> str:
    """The href GDAL opens: signed here, at read time, when the provider needs it."""
    if asset.signer is None:
        return asset.href
    return providers.signer(asset.signer).sign(asset.href)
