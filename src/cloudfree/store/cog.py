"""One multi-band Cloud-Optimized GeoTIFF per period, through GDAL's COG driver."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.windows import Window

from cloudfree.grid import Plan, WorkUnit, geobox_crs
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store import location
from cloudfree.store.overviews import overview_factors, tile_levels, tiles_divide
from cloudfree.store.zarr_store import MosaicStore

#: COG creation options, each with its reason (the codec's are in :data:`COG_CODECS`).
COG_OPTIONS = {
    "PREDICTOR": "2",  # horizontal differencing: integer reflectance compresses ~30% better
    "OVERVIEW_RESAMPLING": "AVERAGE",  # reflectance overviews average, ignoring nodata
    "BIGTIFF": "IF_SAFER",
}
#: The codecs a COG may be written with (``--cog-compression``), each at level 1.
COG_CODECS = {
    # Lossless and read by every TIFF reader; libdeflate's level 1 on differenced reflectance
    # takes 37 % less CPU than the default 6 and is no larger (real Sentinel-2 L2A 2 % smaller).
    "deflate": {"COMPRESS": "DEFLATE", "LEVEL": "1"},
    # About 3x faster to write (3.6x on real Sentinel-2 L2A pixels alone) and faster to read,
    # 8 % larger there; read by GDAL 2.3+ (QGIS, rasterio, titiler) and geotiff.js, not by
    # every TIFF reader.
    "zstd": {"COMPRESS": "ZSTD", "LEVEL": "1"},
}
DEFAULT_COG_CODEC = "deflate"
#: How the final copy runs (not what it writes): blocks are compressed on every core.
COG_WRITE_OPTIONS = {"NUM_THREADS": "ALL_CPUS"}
#: GDAL configuration of the final copy: the overviews are computed on every core too (that is
#: ``GDAL_NUM_THREADS``, not the creation option; the reads' setting of 1 would halve the speed).
COG_COPY_CONFIG = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 256 * 2**20}


class PeriodCog:
    """One period's COG, staged tile by tile (as its tiles are finished), written at the end.

    Each tile is copied from the store into a temporary tiled GeoTIFF (memory bounded by one
    tile), with its overview levels beside it where they can be made tile by tile
    (:mod:`cloudfree.store.overviews`; ``precompute_overviews=False`` leaves them to GDAL);
    :meth:`write` then stages the tiles not yet staged and has GDAL's COG driver write the final
    layout, computing the levels it was not given. Not thread-safe: one thread stages and writes.
    """

    def __init__(
        self,
        store: MosaicStore,
        plan: Plan,
        band_names: Sequence[str],
        period_index: int,
        encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
        *,
        precompute_overviews: bool = True,
        codec: str = DEFAULT_COG_CODEC,
    ) -> None:
        self._store = store
        self._plan = plan
        self._bands = tuple(band_names)
        self._period = period_index
        self._encoding = encoding
        self._codec = COG_CODECS[codec]
        gbox = plan.geobox
        # 512 is the usual COG tile; smaller images get 256 so they still carry an overview level.
        self._blocksize = 512 if max(gbox.shape.yx) >= 1024 else 256
        self._profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": gbox.shape.x,
            "height": gbox.shape.y,
            "count": len(band_names),
            "dtype": encoding.dtype,
            "nodata": encoding.nodata,
            "crs": geobox_crs(gbox).to_wkt(),
            "transform": gbox.affine,
            "tiled": True,
            "blockxsize": self._blocksize,
            "blockysize": self._blocksize,
            # a scratch file read once by the COG driver: the fastest lossless codec, not the
            # smallest, on the staging thread alone (it runs beside the units; GDAL's own
            # compression threads held about 15 MB more at the run's peak)
            "compress": "ZSTD",
            "zstd_level": 1,
            "BIGTIFF": "IF_SAFER",
        }
        self._factors = overview_factors(gbox.shape.yx, self._blocksize)
        tiles = [plan.tiles.roi[iy, ix] for iy, ix in np.ndindex(*plan.tiles.shape.yx)]
        # the levels come tile by tile when every tile's are exactly the image's (GDAL's
        # otherwise)
        self._own_levels = (
            precompute_overviews
            and bool(self._factors)
            and encoding.nodata is not None
            and tiles_divide(gbox.shape.yx, tiles, self._factors[-1])
        )
        self._staged: set[tuple[int, int]] = set()
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudfree-cog-")
        self._files = contextlib.ExitStack()
        self._staging = Path(self._tmp.name) / "staging.tif"
        self._levels = (
            [Path(self._tmp.name) / f"overview-{f}.tif" for f in self._factors]
            if self._own_levels
            else []
        )
        try:
            self._dst = self._files.enter_context(
                rasterio.open(self._staging, "w", **self._profile)
            )
            self._ovr = [
                self._files.enter_context(
                    rasterio.open(path, "w", **_level_profile(self._profile, f))
                )
                for path, f in zip(self._levels, self._factors, strict=False)
            ]
            for i, name in enumerate(self._bands, start=1):
                self._dst.set_band_description(i, name)
            self._dst.scales = [encoding.scale] * len(self._bands)
            self._dst.offsets = [encoding.offset] * len(self._bands)
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> PeriodCog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def stage(self, tile: tuple[int, int], values: np.ndarray | None = None) -> None:
        """Copy tile ``(row, column)`` of the plan into the staging files (once).

        ``values`` are the tile's ``(band, y, x)`` stored values, as the unit wrote them;
        without them the tile's region of the store is read (it must be finished).
        """
        if tile in self._staged:
            return
        ys, xs = self._plan.tiles.roi[tile]
        # all bands of a tile in one write: the file is pixel-interleaved, so a band at a time
        # would compress each block once per band
        block = (
            values
            if values is not None
            else np.stack(
                [self._store.read_period(name, self._period, ys, xs) for name in self._bands]
            )
        )
        self._dst.write(block, window=_window(ys, xs))
        if self._ovr:
            nodata = int(self._encoding.nodata or 0)
            levels_of_tile = tile_levels(block, nodata, len(self._ovr))
            for f, level, out in zip(self._factors, levels_of_tile, self._ovr, strict=True):
                out.write(level, window=_window(ys, xs, f))
        self._staged.add(tile)

    def write(self, url: str) -> tuple[str, int]:
        """Stage the tiles not staged yet and write the COG at ``url`` (local path or URL).

        Returns the file's ``file:checksum`` (sha2-256 multihash) and size in bytes. The staging
        files are removed afterwards.
        """
        try:
            for tile in np.ndindex(*self._plan.tiles.shape.yx):
                self.stage((int(tile[0]), int(tile[1])))
            self._files.close()
            tmp = Path(self._tmp.name)
            source = (
                _with_overviews(
                    self._staging, self._levels, self._profile, self._bands, self._encoding
                )
                if self._levels
                else self._staging
            )
            remote = location.is_remote(url)
            final = tmp / "final.tif" if remote else location.local_path(url)
            final.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.Env(**COG_COPY_CONFIG):
                rasterio.shutil.copy(
                    source,
                    final,
                    driver="COG",
                    BLOCKSIZE=str(self._blocksize),
                    **COG_OPTIONS,
                    **self._codec,
                    **COG_WRITE_OPTIONS,
                )
            return _checksum_and_upload(final, url if remote else None)
        finally:
            self.discard()

    def discard(self) -> None:
        """Close and remove the staging files (nothing is written)."""
        self._files.close()
        self._tmp.cleanup()


class RunCogs:
    """A run's COGs, one per period, made while the run's other units are still running.

    Each finished unit is reported (:meth:`unit_finished`, from any thread), with the values it
    wrote where the unit ran in this process; its tile is staged on one background thread (from
    those values, or read back from the store), and a period's COG is written as soon
    as every unit of the period has finished (in this run or in the one it resumes), so only
    the last period's final copy is left when the last unit ends. :meth:`results` waits for
    that thread and writes the COGs still missing; :meth:`discard` drops everything unwritten.
    Every dataset is opened, written and closed on the one staging thread.
    """

    def __init__(
        self,
        store: MosaicStore,
        plan: Plan,
        band_names: Sequence[str],
        urls: Sequence[str],
        encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
        *,
        finished_before: Collection[str] = (),
        codec: str = DEFAULT_COG_CODEC,
    ) -> None:
        self._store = store
        self._plan = plan
        self._bands = tuple(band_names)
        self._urls = tuple(urls)
        self._encoding = encoding
        self._codec = codec
        self._unfinished: dict[int, set[tuple[int, int]]] = {i: set() for i in range(len(urls))}
        for unit in plan.units:
            if unit.key not in finished_before:
                self._unfinished[unit.period_index].add(unit.tile)
        self._staging: dict[int, PeriodCog] = {}
        self._written: dict[int, tuple[str, int]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudfree-cog")
        self._work: list[Future[None]] = []
        self._discarded = False

    def unit_finished(self, unit: WorkUnit, values: np.ndarray | None = None) -> None:
        """Stage ``unit``'s tile in the background (its region of the store is complete).

        ``values``: the ``(band, y, x)`` values the unit wrote, if at hand (the store is read
        otherwise). They must not change afterwards.
        """
        self._work.append(self._pool.submit(self._stage, unit.period_index, unit.tile, values))

    def _period(self, index: int) -> PeriodCog:
        cog = self._staging.get(index)
        if cog is None:
            cog = self._staging[index] = PeriodCog(
                self._store, self._plan, self._bands, index, self._encoding, codec=self._codec
            )
        return cog

    def _stage(self, index: int, tile: tuple[int, int], values: np.ndarray | None) -> None:
        self._period(index).stage(tile, values)
        unfinished = self._unfinished[index]
        unfinished.discard(tile)
        if not unfinished:
            self._written[index] = self._staging.pop(index).write(self._urls[index])

    def results(self) -> list[tuple[str, int]]:
        """Every period's ``(file:checksum, size)``, once all are written.

        Runs on the staging thread after everything staged so far (rasterio datasets stay on
        the thread that opened them).
        """
        return self._pool.submit(self._write_all).result()

    def _write_all(self) -> list[tuple[str, int]]:
        for work in self._work:
            error = work.exception()  # done: submitted before this task on the same thread
            if error is not None:
                raise error
        for index, url in enumerate(self._urls):
            if index not in self._written:
                self._written[index] = self._period(index).write(url)
                del self._staging[index]
        return [self._written[i] for i in range(len(self._urls))]

    def discard(self) -> None:
        """Stop staging and remove what was staged (COGs already written stay)."""
        if self._discarded:
            return
        self._discarded = True
        for work in self._work:
            work.cancel()
        self._pool.submit(self._drop_staging).result()
        self._pool.shutdown(wait=True)

    def _drop_staging(self) -> None:
        for cog in self._staging.values():
            cog.discard()
        self._staging.clear()


def write_period_cog(
    store: MosaicStore,
    plan: Plan,
    band_names: Sequence[str],
    period_index: int,
    url: str,
    encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
    *,
    precompute_overviews: bool = True,
    codec: str = DEFAULT_COG_CODEC,
) -> tuple[str, int]:
    """Copy one period of the store into a COG at ``url`` (local path or object-store URL).

    Every tile at once (:class:`PeriodCog`). Returns the file's ``file:checksum`` (sha2-256
    multihash) and size in bytes.
    """
    cog = PeriodCog(
        store,
        plan,
        band_names,
        period_index,
        encoding,
        precompute_overviews=precompute_overviews,
        codec=codec,
    )
    return cog.write(url)


def _window(ys: slice, xs: slice, factor: int = 1) -> Window:
    """The window of a tile's rows and columns, at 1 / ``factor`` of the resolution."""
    return Window(
        xs.start // factor,
        ys.start // factor,
        (xs.stop - xs.start) // factor,
        (ys.stop - ys.start) // factor,
    )


def _level_profile(profile: dict[str, Any], factor: int) -> dict[str, Any]:
    """The staging profile of the overview level ``factor`` times coarser."""
    return {
        **profile,
        "width": profile["width"] // factor,
        "height": profile["height"] // factor,
        "transform": profile["transform"] * Affine.scale(factor),
    }


def _with_overviews(
    staging: Path,
    levels: Sequence[Path],
    profile: dict[str, Any],
    band_names: Sequence[str],
    encoding: ValueEncoding,
) -> Path:
    """A VRT of ``staging`` whose bands carry ``levels`` as their overviews."""
    root = ET.Element(
        "VRTDataset", rasterXSize=str(profile["width"]), rasterYSize=str(profile["height"])
    )
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = profile["crs"]
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in profile["transform"].to_gdal()
    )
    data_type = typename_fwd[dtype_rev[np.dtype(encoding.dtype).name]]
    for i, name in enumerate(band_names, start=1):
        band = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(i))
        ET.SubElement(band, "Description").text = name
        ET.SubElement(band, "NoDataValue").text = str(encoding.nodata)
        ET.SubElement(band, "Offset").text = repr(encoding.offset)
        ET.SubElement(band, "Scale").text = repr(encoding.scale)
        for path in (staging, *levels):
            tag = "SimpleSource" if path == staging else "Overview"
            source = ET.SubElement(band, tag)
            ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(path)
            ET.SubElement(source, "SourceBand").text = str(i)
    vrt = staging.with_suffix(".vrt")
    ET.ElementTree(root).write(vrt)
    return vrt


def _checksum_and_upload(path: Path, url: str | None) -> tuple[str, int]:
    """Stream a file once: its sha2-256 multihash and size, copying it to ``url`` if given."""
    digest = hashlib.sha256()
    size = 0
    with (
        open(path, "rb") as src,
        fsspec.open(url, "wb") if url else contextlib.nullcontext() as out,
    ):
        while chunk := src.read(8 * 1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    return location.sha256_multihash(digest), size
