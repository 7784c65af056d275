"""cloudfree: cloud-free Sentinel-2 mosaics and analysis-ready data cubes."""

__version__ = "0.1.0"

__all__ = ["__version__", "cube", "mosaic"]


def __getattr__(name: str) -> object:
    # The pipeline imports GDAL, zarr and xarray; load it only when asked for.
    if name == "mosaic":
        from cloudfree.pipeline import mosaic

        return mosaic
    if name == "cube":
        from cloudfree.cube import cube

        return cube
    raise AttributeError(name)
