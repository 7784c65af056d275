"""One multi-band Cloud-Optimized GeoTIFF per period, through GDAL's COG driver."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import fsspec
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from cloudfree.grid import Plan, geobox_crs
from cloudfree.stack import NODATA, REFLECTANCE_SCALE
from cloudfree.store import location
from cloudfree.store.zarr_store import MosaicStore

#: COG creation options, each with its reason.
COG_OPTIONS = {
    "COMPRESS": "DEFLATE",  # lossless, read by every GDAL build
    "PREDICTOR": "2",  # horizontal differencing: integer reflectance compresses ~30% better
    "OVERVIEW_RESAMPLING": "AVERAGE",  # reflectance overviews average, ignoring nodata
    "BIGTIFF": "IF_SAFER",
}


def write_period_cog(
    store: MosaicStore,
    plan: Plan,
    band_names: Sequence[str],
    period_index: int,
    url: str,
) -> None:
    """Copy one period of the store into a COG at ``url`` (local path or object-store URL).

    The image is assembled tile by tile in a temporary tiled GeoTIFF (memory bounded by one tile),
    then GDAL's COG driver adds overviews and writes the final layout.
    """
    gbox = plan.geobox
    # 512 is the usual COG tile; smaller images get 256 so they still carry an overview level.
    blocksize = 512 if max(gbox.shape.yx) >= 1024 else 256
    profile = {
        "driver": "GTiff",
        "width": gbox.shape.x,
        "height": gbox.shape.y,
        "count": len(band_names),
        "dtype": "int16",
        "nodata": int(NODATA),
        "crs": geobox_crs(gbox).to_wkt(),
        "transform": gbox.affine,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "DEFLATE",
        "BIGTIFF": "IF_SAFER",
    }
    with tempfile.TemporaryDirectory(prefix="cloudfree-cog-") as tmp:
        staging = Path(tmp) / "staging.tif"
        with rasterio.open(staging, "w", **profile) as dst:
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            dst.scales = [REFLECTANCE_SCALE] * len(band_names)
            dst.offsets = [0.0] * len(band_names)
            ny, nx = plan.tiles.shape.y, plan.tiles.shape.x
            for iy in range(ny):
                for ix in range(nx):
                    ys, xs = plan.tiles.roi[iy, ix]
                    window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
                    for i, name in enumerate(band_names, start=1):
                        block = store.read_period(name, period_index, ys, xs)
                        dst.write(block, i, window=window)
        if location.is_remote(url):
            final = Path(tmp) / "final.tif"
            rasterio.shutil.copy(
                staging, final, driver="COG", BLOCKSIZE=str(blocksize), **COG_OPTIONS
            )
            with open(final, "rb") as src, fsspec.open(url, "wb") as out:
                out.write(src.read())
        else:
            target = location.local_path(url)
            target.parent.mkdir(parents=True, exist_ok=True)
            rasterio.shutil.copy(
                staging, target, driver="COG", BLOCKSIZE=str(blocksize), **COG_OPTIONS
            )
