"""Masking with the L2A scene classification layer (SCL), with morphological clean-up.

Classes are named by :class:`~cloudfree.bands.SclClass` (``vegetation``, ``cloud_shadows``),
never bare numbers in code. Clean-up follows odc-algo's ``mask_cleanup`` and openEO's
``mask_scl_dilation``: an opening of the rejected pixels drops speckle (isolated pixels Sen2Cor
calls cloud on bright roofs or sand), then a dilation grows a buffer around clouds and their
shadows, whose fringes SCL misses. Both radii are in metres, converted with the output grid's
pixel size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numba
import numpy as np

from cloudfree.bands import SclClass
from cloudfree.errors import InvalidInputError
from cloudfree.masks.base import register_mask
from cloudfree.masks.morphology import dilate, opening, radius_pixels
from cloudfree.options import as_float, as_names
from cloudfree.stack import Stack

#: Classes the Copernicus Sentinel-2 L3 quarterly mosaic keeps (dark area, vegetation,
#: not vegetated, water, snow).
CDSE_L3_VALID = frozenset(
    {
        SclClass.DARK_AREA_PIXELS,
        SclClass.VEGETATION,
        SclClass.NOT_VEGETATED,
        SclClass.WATER,
        SclClass.SNOW,
    }
)
#: Default valid classes: clear land and water (dark area, vegetation, not vegetated, water).
#: Clouds (8, 9), cirrus (10), shadows (3), defective (1), unclassified (7, often cloud fringes),
#: no data (0) and snow (11, transient cover that is not the surface a cloud-free mosaic shows)
#: are excluded. The ``cdse-l3`` preset keeps snow, as the published product does.
DEFAULT_VALID = frozenset(
    {
        SclClass.DARK_AREA_PIXELS,
        SclClass.VEGETATION,
        SclClass.NOT_VEGETATED,
        SclClass.WATER,
    }
)
#: Strict: only vegetation, bare ground and water. Dark area pixels (2) are dropped too, since
#: Sen2Cor puts many unflagged shadow pixels there.
STRICT_VALID = frozenset({SclClass.VEGETATION, SclClass.NOT_VEGETATED, SclClass.WATER})

PRESETS: Mapping[str, frozenset[SclClass]] = MappingProxyType(
    {"default": DEFAULT_VALID, "cdse-l3": CDSE_L3_VALID, "strict": STRICT_VALID}
)

#: Rejected classes the buffer grows around: clouds, cirrus and cloud shadows.
BUFFERED = frozenset(
    {
        SclClass.CLOUD_SHADOWS,
        SclClass.CLOUD_MEDIUM_PROBABILITY,
        SclClass.CLOUD_HIGH_PROBABILITY,
        SclClass.THIN_CIRRUS,
    }
)
#: Default clean-up radii in metres (measured on the synthetic archive: docs/masks.md).
DEFAULT_OPENING_M = 20.0
NO_DATA = int(SclClass.NO_DATA)
DEFAULT_DILATION_M = 60.0


def parse_classes(values: Iterable[str | int | SclClass]) -> frozenset[SclClass]:
    """Classes named by name (``vegetation``), number (``4``) or member."""
    classes = frozenset(v if isinstance(v, SclClass) else SclClass.parse(v) for v in values)
    if not classes:
        raise InvalidInputError("The SCL mask needs at least one valid class.")
    if SclClass.NO_DATA in classes:
        raise InvalidInputError("SCL class no_data cannot be a valid class.")
    return classes


def _lookup(classes: Iterable[SclClass]) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[[int(c) for c in classes]] = True
    return table


@register_mask("scl")
class SclMask:
    """Clear where the SCL class is valid, after removing speckle and buffering clouds.

    Parameters
    ----------
    preset
        ``default`` (2, 4, 5, 6), ``cdse-l3`` (2, 4, 5, 6, 11) or ``strict`` (4, 5, 6).
    valid_classes
        Classes to keep, by name or number; overrides the preset's.
    opening_m
        Radius in metres of the opening that drops small patches of rejected pixels (0: off).
    dilation_m
        Radius in metres of the buffer grown around clouds, cirrus and shadows (0: off).
    buffer_classes
        Rejected classes the buffer grows around (default: shadows, clouds, cirrus).

    """

    name = "scl"
    layers = ("SCL",)
    reads_layers_only = True

    def __init__(
        self,
        preset: str = "default",
        valid_classes: Iterable[str | int | SclClass] | str | None = None,
        opening_m: float | str = DEFAULT_OPENING_M,
        dilation_m: float | str = DEFAULT_DILATION_M,
        buffer_classes: Iterable[str | int | SclClass] | str = BUFFERED,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        self.preset = preset
        chosen = PRESETS[preset] if valid_classes is None else as_names(valid_classes)
        self.valid_classes = parse_classes(chosen)
        self.buffer_classes = frozenset(
            c if isinstance(c, SclClass) else SclClass.parse(c) for c in as_names(buffer_classes)
        )
        self.opening_m = as_float(opening_m, "opening_m")
        self.dilation_m = as_float(dilation_m, "dilation_m")
        self._valid = _lookup(self.valid_classes)
        self._buffered = _lookup(self.buffer_classes - self.valid_classes)

    def halo_m(self) -> float:
        """Context for the opening (erosion and dilation: twice its radius) and the buffer."""
        return 2 * self.opening_m + self.dilation_m

    def __call__(self, stack: Stack, pixel_size_m: float) -> np.ndarray:
        """Clear observations of the stack."""
        scl = stack.layers.get("SCL")
        if scl is None:
            raise InvalidInputError("The SCL mask needs a stack loaded with its SCL layer.")
        cleaned = radius_pixels(self.opening_m, pixel_size_m) or radius_pixels(
            self.dilation_m, pixel_size_m
        )
        clear = np.empty(scl.shape, dtype=bool)
        # the rejected observations only feed the clean-up
        rejected = np.empty(scl.shape if cleaned else (0, 0, 0), dtype=bool)
        _verdict(scl, stack.has_data, self._valid, clear, rejected)
        if cleaned:
            kept = self.cleanup(rejected, scl, pixel_size_m)
            clear |= rejected  # every observation with data and a class
            clear &= ~kept
        return clear

    def cleanup(self, rejected: np.ndarray, scl: np.ndarray, pixel_size_m: float) -> np.ndarray:
        """Opening of the rejected pixels, then the buffer around the buffered classes."""
        open_px = radius_pixels(self.opening_m, pixel_size_m)
        grow_px = radius_pixels(self.dilation_m, pixel_size_m)
        kept = opening(rejected, open_px)
        if grow_px > 0:
            kept |= dilate(kept & self._buffered[scl], grow_px)
        return kept

    def describe(self) -> str:
        """One line for lineage."""
        names = ", ".join(c.name.lower() for c in sorted(self.valid_classes))
        cleanup = []
        if self.opening_m:
            cleanup.append(f"opening {self.opening_m:g} m")
        if self.dilation_m:
            cleanup.append(f"cloud/shadow buffer {self.dilation_m:g} m")
        return f"SCL mask keeping {names}" + (f" ({', '.join(cleanup)})" if cleanup else "")


@numba.njit(cache=True, nogil=True)
def _verdict(
    scl: np.ndarray,
    has_data: np.ndarray,
    valid: np.ndarray,
    clear: np.ndarray,
    rejected: np.ndarray,
) -> None:
    """Per observation with data and a class: ``clear`` if the class is valid, else ``rejected``.

    One pass over the stack instead of a boolean temporary per step; an empty ``rejected`` is
    not written.
    """
    nt, ny, nx = scl.shape
    track = rejected.size > 0
    for t in range(nt):
        for y in range(ny):
            for x in range(nx):
                cls = scl[t, y, x]
                here = has_data[t, y, x] and cls != NO_DATA
                good = valid[cls]
                clear[t, y, x] = here and good
                if track:
                    rejected[t, y, x] = here and not good
