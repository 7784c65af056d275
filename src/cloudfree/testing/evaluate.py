"""Composite error against the synthetic archive's known truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from cloudfree.testing.archive import SyntheticArchive


@dataclass(frozen=True)
class BandError:
    """Error statistics of one band of one period, in reflectance units."""

    band: str
    pixels: int
    """Pixels compared (those with at least ``min_observations`` clear days)."""
    mae: float
    rmse: float
    p95: float
    """95th percentile of the absolute error."""
    bias: float


def composite_errors(
    store: str,
    archive: SyntheticArchive,
    *,
    period_index: int = 0,
    min_observations: int = 3,
) -> dict[str, BandError]:
    """Compare every band of one period of a mosaic store with the truth on the store's grid."""
    import odc.geo.xr  # noqa: F401 - registers the .odc accessor

    ds = xr.open_zarr(store)
    observations = ds["observations"].isel(time=period_index).values
    geobox = ds.odc.geobox
    errors: dict[str, BandError] = {}
    for name in ds.data_vars:
        if name == "observations":
            continue
        composite = ds[name].isel(time=period_index).values
        truth = archive.truth(geobox, str(name))
        use = (observations >= min_observations) & np.isfinite(composite)
        diff = (composite - truth)[use]
        if diff.size == 0:
            errors[str(name)] = BandError(str(name), 0, np.nan, np.nan, np.nan, np.nan)
            continue
        absolute = np.abs(diff)
        errors[str(name)] = BandError(
            band=str(name),
            pixels=int(diff.size),
            mae=float(absolute.mean()),
            rmse=float(np.sqrt(np.mean(diff**2))),
            p95=float(np.percentile(absolute, 95)),
            bias=float(diff.mean()),
        )
    return errors
