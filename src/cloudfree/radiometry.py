"""Radiometry decided per scene: reflectance = DN * scale + offset.

Sentinel-2 processing baseline 04.00 and later (including Collection-1 reprocessing of older
acquisitions) carry ``BOA_ADD_OFFSET = -1000``: DN = reflectance * 10000 + 1000. The offset is
decided from the scene's own metadata and its provider's convention, never from the acquisition
date, and applied exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloudfree.errors import SourceError

#: DN quantification of Sentinel-2 L2A (QUANTIFICATION_VALUE = 10000).
L2A_SCALE = 1e-4
#: BOA_ADD_OFFSET of baseline 04.00+, as reflectance (-1000 DN * 1e-4).
L2A_BASELINE_04_OFFSET = -0.1
FIRST_OFFSET_BASELINE = (4, 0)

_BASELINE = re.compile(r"^\s*N?(\d{1,2})\.?(\d{2})\s*$")


def parse_baseline(text: str) -> tuple[int, int]:
    """Parse ``"04.00"``, ``"4.00"``, ``"N0400"`` or ``"0400"`` to ``(4, 0)``."""
    match = _BASELINE.match(str(text))
    if not match:
        raise SourceError(f"Cannot read processing baseline {text!r}; expected e.g. '04.00'.")
    return int(match.group(1)), int(match.group(2))


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
    """``"asset metadata"`` or ``"processing baseline"``."""


def decide_radiometry(
    *,
    declared_scale: float | None,
    declared_offset: float | None,
    baseline: str | None,
    scene_id: str,
) -> Radiometry:
    """Decide a band's scale and offset.

    Declared metadata (STAC ``raster:scale``/``raster:offset`` or ``raster:bands``) wins; without
    it the processing baseline decides. Neither present is an error: guessing from the date would
    be wrong for reprocessed products.
    """
    if declared_scale is not None or declared_offset is not None:
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
