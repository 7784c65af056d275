"""Composite error and cloud-mask scores against the synthetic archive's known truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from cloudfree.composite.base import PROVENANCE_LAYERS
from cloudfree.errors import InvalidInputError
from cloudfree.testing.render import CONTAMINATION_KINDS

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
        if name == "observations" or name in PROVENANCE_LAYERS:
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


@dataclass(frozen=True)
class KindScore:
    """How a mask did on the observations contaminated in one way (cloud, shadow...)."""

    kind: str
    contaminated: int
    """Observations with data that are truly contaminated this way."""
    missed: int
    """Of those, the ones the mask calls clear."""

    @property
    def omission(self) -> float:
        """``missed / contaminated``; NaN when nothing was contaminated this way."""
        return _ratio(self.missed, self.contaminated)


@dataclass(frozen=True)
class MaskScores:
    """How a cloud mask's clear observations compare with the truly clear ones.

    Only observations with data count (``truth["nodata"]`` false); what a mask says beyond the
    swath is ignored. An observation is *contaminated* when any kind in
    :data:`~cloudfree.testing.render.CONTAMINATION_KINDS` (cloud, shadow, cirrus, snow) marks
    it, and *truly clear* otherwise.

    ``omission`` is the fraction of contaminated observations the mask calls clear (they leak
    into composites); ``commission`` is the fraction of truly clear observations the mask
    rejects (they are lost to composites). Note that this commission is a false-alarm rate
    over the truly clear, not the share of the mask's rejections that were clear.
    """

    observations: int
    """Observations with data."""
    contaminated: int
    """Observations with data and some contamination."""
    missed: int
    """Contaminated observations the mask calls clear."""
    clear: int
    """Truly clear observations (with data, no contamination)."""
    rejected: int
    """Truly clear observations the mask does not call clear."""
    kinds: Mapping[str, KindScore]
    """Omission per kind of contamination; kinds overlap, so their counts do not add up."""

    @property
    def omission(self) -> float:
        """``missed / contaminated``; NaN when nothing was contaminated."""
        return _ratio(self.missed, self.contaminated)

    @property
    def commission(self) -> float:
        """``rejected / clear``; NaN when nothing was truly clear."""
        return _ratio(self.rejected, self.clear)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def mask_scores(clear_pred: np.ndarray, truth: Mapping[str, np.ndarray]) -> MaskScores:
    """Score a cloud mask's clear observations against the contamination truth.

    Parameters
    ----------
    clear_pred
        Boolean array, e.g. ``(time, y, x)``: where the mask calls an observation clear.
    truth
        Boolean arrays of the same shape keyed ``cloud``, ``shadow``, ``cirrus``, ``snow`` and
        ``nodata``, e.g. :meth:`SyntheticArchive.contaminated` of each date stacked with
        :func:`stack_contamination` (any ``clear`` entry is ignored: it is derived).

    Returns
    -------
    MaskScores
        Counts, omission and commission (definitions in :class:`MaskScores`).

    Raises
    ------
    InvalidInputError
        If a truth mask is missing or a shape differs from ``clear_pred``'s.

    """
    predicted = np.asarray(clear_pred, dtype=bool)
    needed = (*CONTAMINATION_KINDS, "nodata")
    missing = [key for key in needed if key not in truth]
    if missing:
        raise InvalidInputError(
            f"The contamination truth lacks {', '.join(missing)}; pass the masks of "
            "SyntheticArchive.contaminated."
        )
    masks = {key: np.asarray(truth[key], dtype=bool) for key in needed}
    for key, mask in masks.items():
        if mask.shape != predicted.shape:
            raise InvalidInputError(
                f"Truth mask {key!r} has shape {mask.shape} but the predicted clear mask has "
                f"{predicted.shape}; evaluate both on the same grid and dates."
            )
    has_data = ~masks["nodata"]
    contaminated = np.zeros_like(has_data)
    kinds: dict[str, KindScore] = {}
    for kind in CONTAMINATION_KINDS:
        this = masks[kind] & has_data
        contaminated |= this
        kinds[kind] = KindScore(
            kind, int(np.count_nonzero(this)), int(np.count_nonzero(this & predicted))
        )
    clear = has_data & ~contaminated
    return MaskScores(
        observations=int(np.count_nonzero(has_data)),
        contaminated=int(np.count_nonzero(contaminated)),
        missed=int(np.count_nonzero(contaminated & predicted)),
        clear=int(np.count_nonzero(clear)),
        rejected=int(np.count_nonzero(clear & ~predicted)),
        kinds=kinds,
    )


def stack_contamination(per_date: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-date contamination masks (same grid) into ``(time, y, x)`` arrays by key."""
    if not per_date:
        raise InvalidInputError("No contamination masks to stack; pass at least one date.")
    return {key: np.stack([masks[key] for masks in per_date]) for key in per_date[0]}
