"""The keyword arguments of a small mosaic or cube of the session's synthetic archive, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WINTER = ("2021-11-01", "2022-04-30")
"""The archive's whole date range."""


def job_options(
    archive: Any, out: Path | str, *, dates: tuple[str, str] = WINTER, **extra: Any
) -> dict[str, Any]:
    """Red and NIR at 20 m on the Irish grid in 64 px tiles (a mosaic's or a cube's).

    ``extra`` overrides or adds.
    """
    start, end = dates
    options: dict[str, Any] = dict(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date=start,
        end_date=end,
        bands=["red", "nir"],
        crs="EPSG:2157",
        resolution=20.0,
        chunk_size=64,
        out=str(out),
    )
    return options | extra


def mosaic_options(
    archive: Any, out: Path | str, *, dates: tuple[str, str] = WINTER, **extra: Any
) -> dict[str, Any]:
    """:func:`job_options` of a mosaic without a quick-look."""
    return job_options(archive, out, dates=dates, **({"quicklook": False} | extra))
