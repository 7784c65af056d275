"""Write single-band Cloud-Optimized GeoTIFFs with GDAL's COG driver."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import MemoryFile


@dataclass(frozen=True)
class CogSpec:
    """How to encode one COG.

    Attributes
    ----------
    crs
        CRS string, e.g. ``"EPSG:32629"``.
    transform
        Affine coefficients ``(a, b, c, d, e, f)``.
    nodata
        Nodata value, or ``None``.
    resampling
        Overview resampling (``"average"`` for reflectance, ``"nearest"`` for classes).
    blocksize
        Internal tile size in pixels.
    description
        Band description (the band id).

    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    nodata: float | None
    resampling: str
    blocksize: int
    description: str


def overview_count(shape: tuple[int, int], blocksize: int) -> int:
    """Return how many 2x overview levels to build: until one block holds it, at least one."""
    count = 1
    while max(shape) / 2**count > blocksize:
        count += 1
    return count


def write_cog(path: Path, array: np.ndarray, spec: CogSpec) -> None:
    """Write a 2-D array as a deflate-compressed, tiled COG with overviews.

    Parameters
    ----------
    path
        Destination file.
    array
        2-D array; its dtype is the file's dtype.
    spec
        Georeferencing and encoding.

    """
    height, width = array.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": spec.crs,
        "transform": Affine(*spec.transform),
        "nodata": spec.nodata,
    }
    predictor = 3 if np.issubdtype(array.dtype, np.floating) else 2
    with MemoryFile() as memfile, memfile.open(**profile) as dataset:
        dataset.write(array, 1)
        dataset.set_band_description(1, spec.description)
        rasterio.shutil.copy(
            dataset,
            str(path),
            driver="COG",
            compress="DEFLATE",
            predictor=predictor,
            blocksize=spec.blocksize,
            overview_resampling=spec.resampling.upper(),
            overview_count=overview_count((height, width), spec.blocksize),
        )
