"""One multi-band Cloud-Optimized GeoTIFF per period, through GDAL's COG driver."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.windows import Window

from cloudfree.grid import Plan, geobox_crs
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store import location
from cloudfree.store.overviews import overview_factors, tile_levels, tiles_divide
from cloudfree.store.zarr_store import MosaicStore

#: COG creation options, each with its reason.
COG_OPTIONS = {
    "COMPRESS": "DEFLATE",  # lossless, read by every GDAL build
    "PREDICTOR": "2",  # horizontal differencing: integer reflectance compresses ~30% better
    "OVERVIEW_RESAMPLING": "AVERAGE",  # reflectance overviews average, ignoring nodata
    "BIGTIFF": "IF_SAFER",
}
#: How the final copy runs (not what it writes): blocks are compressed on every core.
COG_WRITE_OPTIONS = {"NUM_THREADS": "ALL_CPUS"}
#: GDAL configuration of the final copy: the overviews are computed on every core too (that is
#: ``GDAL_NUM_THREADS``, not the creation option; the reads' setting of 1 would halve the speed).
COG_COPY_CONFIG = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 256 * 2**20}


def write_period_cog(
    store: MosaicStore,
    plan: Plan,
    band_names: Sequence[str],
    period_index: int,
    url: str,
    encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
    *,
    precompute_overviews: bool = True,
) -> tuple[str, int]:
    """Copy one period of the store into a COG at ``url`` (local path or object-store URL).

    The image is assembled tile by tile in a temporary tiled GeoTIFF (memory bounded by one tile),
    with its overview levels beside it where they can be made tile by tile
    (:mod:`cloudfree.store.overviews`; ``precompute_overviews=False`` leaves them to GDAL); then
    GDAL's COG driver writes the final layout, computing the levels it was not given. Returns
    the file's ``file:checksum`` (sha2-256 multihash) and size in bytes.
    """
    gbox = plan.geobox
    # 512 is the usual COG tile; smaller images get 256 so they still carry an overview level.
    blocksize = 512 if max(gbox.shape.yx) >= 1024 else 256
    profile = {
        "driver": "GTiff",
        "width": gbox.shape.x,
        "height": gbox.shape.y,
        "count": len(band_names),
        "dtype": encoding.dtype,
        "nodata": encoding.nodata,
        "crs": geobox_crs(gbox).to_wkt(),
        "transform": gbox.affine,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        # a scratch file read once by the COG driver: the fastest lossless codec, not the smallest
        "compress": "ZSTD",
        "zstd_level": 1,
        "num_threads": "ALL_CPUS",
        "BIGTIFF": "IF_SAFER",
    }
    factors = overview_factors(gbox.shape.yx, blocksize)
    tiles: list[tuple[slice, slice]] = [
        plan.tiles.roi[iy, ix] for iy, ix in np.ndindex(*plan.tiles.shape.yx)
    ]
    # the levels come tile by tile when every tile's are exactly the image's (GDAL's otherwise)
    own_levels = (
        precompute_overviews
        and bool(factors)
        and encoding.nodata is not None
        and tiles_divide(gbox.shape.yx, tiles, factors[-1])
    )
    with tempfile.TemporaryDirectory(prefix="cloudfree-cog-") as tmp:
        staging = Path(tmp) / "staging.tif"
        levels = [Path(tmp) / f"overview-{f}.tif" for f in factors] if own_levels else []
        with contextlib.ExitStack() as files:
            dst = files.enter_context(rasterio.open(staging, "w", **profile))
            ovr = [
                files.enter_context(rasterio.open(path, "w", **_level_profile(profile, f)))
                for path, f in zip(levels, factors, strict=False)
            ]
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            dst.scales = [encoding.scale] * len(band_names)
            dst.offsets = [encoding.offset] * len(band_names)
            nodata = int(encoding.nodata or 0)
            for ys, xs in tiles:
                # all bands of a tile in one write: the file is pixel-interleaved, so a
                # band at a time would compress each block once per band
                block = np.stack(
                    [store.read_period(name, period_index, ys, xs) for name in band_names]
                )
                dst.write(block, window=_window(ys, xs))
                if ovr:
                    levels_of_tile = tile_levels(block, nodata, len(ovr))
                    for f, level, out in zip(factors, levels_of_tile, ovr, strict=True):
                        out.write(level, window=_window(ys, xs, f))
        source = (
            _with_overviews(staging, levels, profile, band_names, encoding) if levels else staging
        )
        remote = location.is_remote(url)
        final = Path(tmp) / "final.tif" if remote else location.local_path(url)
        final.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.Env(**COG_COPY_CONFIG):
            rasterio.shutil.copy(
                source,
                final,
                driver="COG",
                BLOCKSIZE=str(blocksize),
                **COG_OPTIONS,
                **COG_WRITE_OPTIONS,
            )
        return _checksum_and_upload(final, url if remote else None)


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
