"""Radiometry decided per scene: reflectance = DN * scale + offset.

Sentinel-2 processing baseline 04.00 and later (including Collection-1 reprocessing of older
acquisitions) carry ``BOA_ADD_OFFSET = -1000``: DN = reflectance * 10000 + 1000. The offset is
decided from the scene's own metadata and its provider's convention, never from the acquisition
date, and applied exactly once.

Provider conventions (:class:`Convention`):

``declared``
    The catalog's ``raster:scale``/``raster:offset`` (item asset, else collection
    ``item_assets``) are right; without them the processing baseline decides. Copernicus Data
    Space, Earth Search Collection-1, EOPF and catalogs cloudfree does not know.
``baseline``
    DNs are ESA's as published and the catalog declares nothing: the processing baseline decides
    (Planetary Computer).
``harmonised-when-flagged``
    Earth Search v0 and the v1 ``sentinel-2-l2a`` collection share one set of COGs whose DNs
    Element 84 shifted back to the pre-04.00 scale for scenes flagged
    ``sentinel:boa_offset_applied``/``earthsearch:boa_offset_applied``: a flagged scene has no
    offset whatever its ``raster:bands`` say (those say -0.1 on many flagged items, which would
    apply the offset twice). An unflagged scene of baseline 04.00+ is ambiguous: the flag is
    known to be wrong for some 2022 and 2025 items (Element84/earth-search#66, #71), so the
    offset of the baseline is applied and a :class:`~cloudfree.errors.RadiometryWarning`
    suggests ``sentinel-2-c1-l2a``, whose DNs are uniform.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from enum import StrEnum

from cloudfree.errors import RadiometryWarning, SourceError

#: DN quantification of Sentinel-2 L2A (QUANTIFICATION_VALUE = 10000).
L2A_SCALE = 1e-4
#: BOA_ADD_OFFSET of baseline 04.00+, as reflectance (-1000 DN * 1e-4).
L2A_BASELINE_04_OFFSET = -0.1
FIRST_OFFSET_BASELINE = (4, 0)

_BASELINE = re.compile(r"^\s*N?(\d{1,2})\.?(\d{2})\s*$")
_BASELINE_IN_PRODUCT_ID = re.compile(r"_N(\d{2})(\d{2})_")


class Convention(StrEnum):
    """How a provider's catalog states (or fails to state) scale and offset."""

    DECLARED = "declared"
    BASELINE = "baseline"
    HARMONISED_WHEN_FLAGGED = "harmonised-when-flagged"


def parse_baseline(text: str) -> tuple[int, int]:
    """Parse ``"04.00"``, ``"4.00"``, ``"N0400"`` or ``"0400"`` to ``(4, 0)``."""
    match = _BASELINE.match(str(text))
    if not match:
        raise SourceError(f"Cannot read processing baseline {text!r}; expected e.g. '04.00'.")
    return int(match.group(1)), int(match.group(2))


def format_baseline(version: tuple[int, int]) -> str:
    """``(4, 0)`` to ``"04.00"``."""
    return f"{version[0]:02d}.{version[1]:02d}"


def baseline_from_product_id(product_id: str) -> str | None:
    """The baseline in an ESA product name (``..._N0301_R077_...`` -> ``"03.01"``), if any."""
    match = _BASELINE_IN_PRODUCT_ID.search(product_id)
    if match is None:
        return None
    return format_baseline((int(match.group(1)), int(match.group(2))))


def offset_for_baseline(baseline: str) -> float:
    """The reflectance offset ESA applies for a processing baseline."""
    if parse_baseline(baseline) >= FIRST_OFFSET_BASELINE:
        return L2A_BASELINE_04_OFFSET
    return 0.0


@dataclass(frozen=True)
class Radiometry:
    """Scale and offset of one band of one scene, and where they came from."""

    scale: float
    offset: float
    source: str
    """``"asset metadata"``, ``"product metadata"``, ``"processing baseline"`` or
    ``"harmonised by provider"``."""


def decide_radiometry(
    *,
    declared_scale: float | None,
    declared_offset: float | None,
    baseline: str | None,
    scene_id: str,
    convention: Convention = Convention.DECLARED,
    harmonised: bool | None = None,
) -> Radiometry:
    """Decide a band's scale and offset under a provider ``convention``.

    ``harmonised`` is the provider's "offset already applied to the DNs" flag, where it has one.
    Neither declared metadata nor a baseline is an error: guessing from the date would be wrong
    for reprocessed products.
    """
    if convention is Convention.HARMONISED_WHEN_FLAGGED:
        return _harmonised_when_flagged(baseline, harmonised, scene_id)
    declared = declared_scale is not None or declared_offset is not None
    if convention is Convention.DECLARED and declared:
        return Radiometry(
            scale=L2A_SCALE if declared_scale is None else float(declared_scale),
            offset=0.0 if declared_offset is None else float(declared_offset),
            source="asset metadata",
        )
    if baseline is not None:
        return Radiometry(L2A_SCALE, offset_for_baseline(baseline), "processing baseline")
    raise SourceError(
        f"Scene {scene_id!r} declares neither a scale/offset nor a processing baseline, so its "
        "reflectance offset cannot be decided. Use a catalog whose items carry raster:scale/"
        "raster:offset or s2:processing_baseline."
    )


def _harmonised_when_flagged(
    baseline: str | None, harmonised: bool | None, scene_id: str
) -> Radiometry:
    if harmonised:
        return Radiometry(L2A_SCALE, 0.0, "harmonised by provider")
    if baseline is None:
        raise SourceError(
            f"Scene {scene_id!r} has no processing baseline and no boa_offset_applied flag, so "
            "its offset cannot be decided."
        )
    offset = offset_for_baseline(baseline)
    if offset:
        warnings.warn(
            f"Scene {scene_id!r} (baseline {baseline}) is not flagged boa_offset_applied; Earth "
            "Search's flag is wrong for some such items, so the -0.1 offset applied here may be "
            "wrong. Collection sentinel-2-c1-l2a has uniform DNs.",
            RadiometryWarning,
            stacklevel=3,
        )
    return Radiometry(L2A_SCALE, offset, "processing baseline")
