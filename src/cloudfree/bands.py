"""The band registry: Sentinel-2 band names across providers, native resolutions, SCL classes.

One place maps every spelling a provider uses (``B04``, ``red``, ``B04_10m``, ``b04``; ``cloud``,
``CLD_20m``, ``MSK_CLDPRB_20m``) to a canonical band id, so nothing downstream compares asset
keys.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cloudfree.errors import InvalidInputError


class BandKind(enum.Enum):
    """What a band's pixel values mean, which decides how it is scaled, resampled and used."""

    REFLECTANCE = "reflectance"
    """Surface reflectance DNs, scaled by the product's scale and offset; compositable."""
    CLASSIFICATION = "classification"
    """Class codes (SCL): never scaled, only ever resampled with nearest."""
    PROBABILITY = "probability"
    """A percentage (0-100) from Sen2Cor's quality masks: never scaled, used by cloud masks."""


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 L2A layer: an MSI band, the scene classification or a probability mask."""

    id: str
    """Canonical id, e.g. ``"B04"`` or ``"SCL"``."""
    common_name: str | None
    """STAC ``eo:common_name`` (``"red"``), or ``None`` where the band has none."""
    resolution: int
    """Native ground sampling distance in metres."""
    center_wavelength: float | None
    """Centre wavelength in micrometres (``None`` for SCL and the probability masks)."""
    full_width_half_max: float | None
    """Band width in micrometres (``None`` for SCL and the probability masks)."""
    kind: BandKind = BandKind.REFLECTANCE
    """What the pixel values mean."""

    @property
    def categorical(self) -> bool:
        """Whether values are class codes, which must only ever be resampled with nearest."""
        return self.kind is BandKind.CLASSIFICATION

    @property
    def is_reflectance(self) -> bool:
        """Whether pixel values are surface reflectance DNs (scaled by scale and offset)."""
        return self.kind is BandKind.REFLECTANCE


BANDS: dict[str, Band] = {
    b.id: b
    for b in (
        Band("B01", "coastal", 60, 0.443, 0.027),
        Band("B02", "blue", 10, 0.490, 0.098),
        Band("B03", "green", 10, 0.560, 0.045),
        Band("B04", "red", 10, 0.665, 0.038),
        Band("B05", "rededge", 20, 0.704, 0.019),
        Band("B06", "rededge", 20, 0.740, 0.018),
        Band("B07", "rededge", 20, 0.783, 0.028),
        Band("B08", "nir", 10, 0.842, 0.145),
        Band("B8A", "nir08", 20, 0.865, 0.033),
        Band("B09", "nir09", 60, 0.945, 0.026),
        Band("B10", "cirrus", 60, 1.375, 0.030),  # L1C only: L2A products have no B10
        Band("B11", "swir16", 20, 1.610, 0.143),
        Band("B12", "swir22", 20, 2.190, 0.242),
        Band("SCL", None, 20, None, None, kind=BandKind.CLASSIFICATION),
        # Sen2Cor's quality masks MSK_CLDPRB / MSK_SNWPRB: cloud and snow probability, percent
        Band("CLD", None, 20, None, None, kind=BandKind.PROBABILITY),
        Band("SNW", None, 20, None, None, kind=BandKind.PROBABILITY),
    )
}

# Names providers use for a band that are not its id or (unique) common name.
_ALIASES: dict[str, str] = {
    "scl": "SCL",
    "cloud": "CLD",  # Earth Search (sentinel-2-l2a and -c1-l2a) asset keys
    "snow": "SNW",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
}

_PROVIDER_KEY = re.compile(
    r"^(?:(?P<band>B\d[\dA]|SCL|CLD|SNW)|MSK_(?P<mask>CLDPRB|SNWPRB))(?:_(?P<res>\d+)m)?$",
    re.IGNORECASE,
)
# Sen2Cor's QI_DATA file stems (``MSK_CLDPRB_20m.jp2``) for the probability masks.
_MASK_FILES = {"CLDPRB": "CLD", "SNWPRB": "SNW"}


_PROBABILITY_OF = {"CLD": "cloud", "SNW": "snow"}


def canonical_band(name: str) -> Band:
    """Return the band a user or provider name refers to.

    Accepts ids (``B04``, ``b04``, ``B8A``, ``CLD``), common names (``red``, ``nir``,
    ``swir16``), Earth Search keys (``cloud``, ``snow``), resolution-suffixed keys (``B04_10m``,
    ``SCL_20m``, ``CLD_20m``) and Sen2Cor mask names (``MSK_CLDPRB``, ``MSK_CLDPRB_20m``).
    """
    key = name.strip()
    alias = _ALIASES.get(key.lower())
    if alias is not None:
        return BANDS[alias]
    match = _PROVIDER_KEY.match(key)
    if match:
        band_id = match["band"].upper() if match["band"] else _MASK_FILES[match["mask"].upper()]
        if band_id in BANDS:
            return BANDS[band_id]
    known = ", ".join(sorted(BANDS)) + "; or common names " + ", ".join(sorted(_ALIASES))
    raise InvalidInputError(f"Unknown band {name!r}. Use a Sentinel-2 band id or name: {known}.")


def resolve_bands(names: Iterable[str]) -> tuple[tuple[str, Band], ...]:
    """Resolve requested names to bands, keeping the requested names and their order.

    Raises when a name is unknown, when two names mean the same band, or when SCL or a
    probability mask (CLD, SNW) is asked for as a composite band (use a cloud mask instead).
    """
    resolved: list[tuple[str, Band]] = []
    seen: dict[str, str] = {}
    for name in names:
        band = canonical_band(name)
        if band.categorical:
            raise InvalidInputError(
                f"Band {name!r} is the scene classification layer; it cannot be composited. "
                "Use --cloud-mask scl to mask with it."
            )
        if band.kind is BandKind.PROBABILITY:
            raise InvalidInputError(
                f"Band {name!r} is the {_PROBABILITY_OF[band.id]} probability layer ({band.id}); "
                "it cannot be composited. Use --cloud-mask probability to mask with the cloud "
                "probability."
            )
        if band.id in seen:
            raise InvalidInputError(
                f"Bands {seen[band.id]!r} and {name!r} both mean {band.id}; request it once."
            )
        seen[band.id] = name
        resolved.append((name, band))
    if not resolved:
        raise InvalidInputError("No bands requested; pass at least one, e.g. --bands B04.")
    return tuple(resolved)


class SclClass(enum.IntEnum):
    """Sentinel-2 L2A scene classification (SCL) classes, with ESA's meanings."""

    NO_DATA = 0
    SATURATED_OR_DEFECTIVE = 1
    DARK_AREA_PIXELS = 2
    CLOUD_SHADOWS = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW = 11

    @classmethod
    def parse(cls, value: str | int) -> SclClass:
        """Parse a class from its name (any case, ``-`` or ``_``) or its number."""
        if isinstance(value, int) or str(value).strip().isdigit():
            number = int(value)
            try:
                return cls(number)
            except ValueError:
                raise InvalidInputError(
                    f"SCL class {number} does not exist; classes are 0-11."
                ) from None
        key = str(value).strip().upper().replace("-", "_").replace(" ", "_")
        try:
            return cls[key]
        except KeyError:
            names = ", ".join(c.name.lower() for c in cls)
            raise InvalidInputError(f"Unknown SCL class {value!r}; use one of {names}.") from None
