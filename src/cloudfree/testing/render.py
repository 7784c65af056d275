"""Render one scene: observed reflectance and DNs at 10 m, the SCL layer at 20 m."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.bands import SclClass
from cloudfree.testing.fields import Cover, Surface, World
from cloudfree.testing.geo import LocalPoints, Transform6, grid_local_points
from cloudfree.testing.weather import Acquisition, Conditions, Sky

DN_SCALE = 10000.0
"""Reflectance to DN scale (DN = reflectance * 10000 [+ 1000])."""
DN_OFFSET = 1000
"""DN offset of processing baselines >= 04.00 (``BOA_ADD_OFFSET`` = -1000)."""
NOISE_SIGMA = 0.003
"""Per-pixel reflectance noise."""


def _spectrum(values: tuple[float, float, float, float]) -> np.ndarray:
    """Return a read-only float32 (B02, B03, B04, B08) spectrum."""
    spectrum = np.array(values, dtype=np.float32)
    spectrum.setflags(write=False)
    return spectrum


SNOW_REFLECTANCE = _spectrum((0.75, 0.75, 0.75, 0.65))
CLOUD_REFLECTANCE = _spectrum((0.64, 0.61, 0.59, 0.57))
"""Cloud-top reflectance, slightly brighter in blue (scaled per date)."""
CIRRUS_REFLECTANCE = _spectrum((0.060, 0.058, 0.056, 0.052))
"""Reflectance added by full-strength cirrus."""
CLOUD_LEVEL = 0.3
"""Opacity above which SCL flags medium-probability cloud."""
THICK_LEVEL = 0.6
"""Opacity above which SCL flags high-probability cloud."""
CIRRUS_LEVEL = 0.5
"""Cirrus strength above which SCL flags thin cirrus."""
SHADOW_LEVEL = 0.3
"""Opacity of the casting cloud above which SCL flags cloud shadow."""
CLOUDY_CLASSES = (
    SclClass.CLOUD_MEDIUM_PROBABILITY,
    SclClass.CLOUD_HIGH_PROBABILITY,
    SclClass.THIN_CIRRUS,
)
"""SCL classes counted by ``eo:cloud_cover``."""


@dataclass(frozen=True)
class Ground:
    """The static world sampled on one grid.

    Attributes
    ----------
    points
        Local metres of the pixel centres.
    surface
        Truth reflectance and cover.
    elevation
        Elevation field.

    """

    points: LocalPoints
    surface: Surface
    elevation: np.ndarray

    @classmethod
    def sample(
        cls, world: World, crs: str, transform: Transform6, shape: tuple[int, int]
    ) -> Ground:
        """Evaluate the world at the pixel centres of a grid."""
        points = grid_local_points(crs, transform, shape)
        return cls(points, world.surface(points), world.elevation_at(points))

    @property
    def water(self) -> np.ndarray:
        """Lake mask."""
        return self.surface.cover == Cover.WATER


def _snow_reflectance(elevation: np.ndarray, snow_line: float) -> np.ndarray:
    """Snow reflectance ``(4, N)`` at ``N`` snowy pixels: a little brighter higher up."""
    excess = np.clip(elevation - snow_line, 0.0, 1.0).astype(np.float32)
    return SNOW_REFLECTANCE[:, np.newaxis] * (0.93 + 0.07 * excess)[np.newaxis, :]


def scene_reflectance(
    ground: Ground,
    conditions: Conditions,
    acquisition: Acquisition,
    sky: Sky,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return the observed top-of-canopy reflectance of a scene, before quantisation.

    Parameters
    ----------
    ground
        The world on the scene's 10 m grid.
    conditions
        The acquisition's conditions on the same grid.
    acquisition
        The acquisition (gain, cloud brightness, shadow darkness).
    sky
        Its sky (snow line).
    rng
        Generator for the per-pixel noise.

    Returns
    -------
    numpy.ndarray
        float32 ``(4, H, W)``.

    """
    refl = ground.surface.reflectance * np.float32(acquisition.gain)
    if sky.snow_line is not None and conditions.snow.any():
        snowy = conditions.snow
        refl[:, snowy] = _snow_reflectance(ground.elevation[snowy], sky.snow_line)
    shade = np.clip((conditions.shadow - 0.22) / 0.16, 0.0, 1.0)
    refl *= 1.0 - np.float32(1.0 - acquisition.shadow_factor) * shade
    refl += CIRRUS_REFLECTANCE[:, None, None] * conditions.cirrus
    opacity = conditions.opacity
    cloud_top = CLOUD_REFLECTANCE[:, None, None] * np.float32(acquisition.cloud_brightness)
    refl *= 1.0 - opacity
    refl += cloud_top * (opacity * (0.85 + 0.15 * opacity))
    refl += rng.standard_normal(refl.shape, dtype=np.float32) * np.float32(NOISE_SIGMA)
    return refl


def to_dn(reflectance: np.ndarray, nodata: np.ndarray, offset_applied: bool) -> np.ndarray:
    """Quantise reflectance to Sentinel-2 L2A DNs.

    Parameters
    ----------
    reflectance
        float32 ``(bands, H, W)``.
    nodata
        ``(H, W)`` mask of pixels without data (DN 0 in every band).
    offset_applied
        Add the baseline >= 04.00 offset of 1000.

    Returns
    -------
    numpy.ndarray
        uint16 DNs, valid pixels clipped to 1..65535.

    """
    dn = np.rint(reflectance * np.float32(DN_SCALE))
    if offset_applied:
        dn += np.float32(DN_OFFSET)
    np.clip(dn, 1, 65535, out=dn)
    out = dn.astype(np.uint16)
    out[:, nodata] = 0
    return out


def scene_scl(ground: Ground, conditions: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Classify a scene on its 20 m grid like Sen2Cor's scene classification.

    Parameters
    ----------
    ground
        The world on the scene's 20 m grid.
    conditions
        The acquisition's conditions on the same grid.
    rng
        Generator for the sparse dark-area and unclassified specks.

    Returns
    -------
    numpy.ndarray
        uint8 SCL codes.

    """
    scl = np.where(ground.surface.vegetated, SclClass.VEGETATION, SclClass.NOT_VEGETATED).astype(
        np.uint8
    )
    scl[ground.water] = SclClass.WATER
    land = scl != SclClass.WATER
    scl[land & (rng.random(scl.shape) < 0.002)] = SclClass.DARK_AREA_PIXELS
    scl[conditions.snow] = SclClass.SNOW
    haze = (conditions.opacity > 0.1) & (conditions.opacity <= CLOUD_LEVEL)
    scl[haze & (rng.random(scl.shape) < 0.35)] = SclClass.UNCLASSIFIED
    scl[conditions.shadow > SHADOW_LEVEL] = SclClass.CLOUD_SHADOWS
    scl[conditions.cirrus > CIRRUS_LEVEL] = SclClass.THIN_CIRRUS
    scl[conditions.opacity > CLOUD_LEVEL] = SclClass.CLOUD_MEDIUM_PROBABILITY
    scl[conditions.opacity > THICK_LEVEL] = SclClass.CLOUD_HIGH_PROBABILITY
    scl[conditions.nodata] = SclClass.NO_DATA
    return scl


def cloud_fraction(scl: np.ndarray) -> float:
    """Return the fraction of valid SCL pixels in the cloud and cirrus classes."""
    valid = np.count_nonzero(scl != SclClass.NO_DATA)
    if valid == 0:
        return 0.0
    cloudy = np.count_nonzero(np.isin(scl, [int(c) for c in CLOUDY_CLASSES]))
    return cloudy / valid
