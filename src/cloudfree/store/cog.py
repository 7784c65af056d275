"""One multi-band Cloud-Optimized GeoTIFF per period, through GDAL's COG driver."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import fsspec
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from cloudfree.grid import Plan, geobox_crs
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store import location
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
) -> tuple[str, int]:
    """Copy one period of the store into a COG at ``url`` (local path or object-store URL).

    The image is assembled tile by tile in a temporary tiled GeoTIFF (memory bounded by one tile),
    then GDAL's COG driver adds overviews and writes the final layout. Returns the file's
    ``file:checksum`` (sha2-256 multihash) and size in bytes.
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
    with tempfile.TemporaryDirectory(prefix="cloudfree-cog-") as tmp:
        staging = Path(tmp) / "staging.tif"
        with rasterio.open(staging, "w", **profile) as dst:
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            dst.scales = [encoding.scale] * len(band_names)
            dst.offsets = [encoding.offset] * len(band_names)
            ny, nx = plan.tiles.shape.y, plan.tiles.shape.x
            for iy in range(ny):
                for ix in range(nx):
                    ys, xs = plan.tiles.roi[iy, ix]
                    window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
                    # all bands of a tile in one write: the file is pixel-interleaved, so a
                    # band at a time would compress each block once per band
                    blocks = [store.read_period(name, period_index, ys, xs) for name in band_names]
                    dst.write(np.stack(blocks), window=window)
        remote = location.is_remote(url)
        final = Path(tmp) / "final.tif" if remote else location.local_path(url)
        final.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.Env(**COG_COPY_CONFIG):
            rasterio.shutil.copy(
                staging,
                final,
                driver="COG",
                BLOCKSIZE=str(blocksize),
                **COG_OPTIONS,
                **COG_WRITE_OPTIONS,
            )
        return _checksum_and_upload(final, url if remote else None)


def _checksum_and_upload(path: Path, url: str | None) -> tuple[str, int]:
    """Stream a file once: its sha2-256 multihash and size, copying it to ``url`` if given."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as src, fsspec.open(url, "wb") if url else nullcontext() as out:
        while chunk := src.read(8 * 1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    return location.sha256_multihash(digest), size
