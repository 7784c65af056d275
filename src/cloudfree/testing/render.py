"""Render one scene: observed reflectance and DNs at 10 m, SCL and cloud probability at 20 m.

:func:`contamination` says, from the same analytic conditions, which observations the rendering
changed: the truth against which cloud masks' omission and commission are measured.
"""

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
SHADE_START = 0.22
"""Opacity of the casting cloud from which its shadow darkens the ground."""
SHADE_RAMP = 0.16
"""Opacity range over which a shadow deepens from nothing to ``Acquisition.shadow_factor``."""
HAZE_LEVEL = 0.05
"""Cloud opacity above which an observation counts as cloud-contaminated (see
:func:`contamination`)."""
CIRRUS_TRACE = 0.17
"""Cirrus strength above which an observation counts as cirrus-contaminated (adds > 0.01)."""
PROBABILITY_NODATA = 255
"""Cloud-probability value of pixels without data (beyond the swath)."""
PROBABILITY_MIDPOINT = 0.2
"""Cloud opacity at which the rendered cloud probability is 50 %."""
PROBABILITY_WIDTH = 0.06
"""Opacity scale of the probability's logistic rise (10 % to 90 % over 0.07 to 0.33)."""
PROBABILITY_CIRRUS = 40.0
"""Percent added by full-strength cirrus."""
PROBABILITY_SNOW = 15.0
"""Percent added over snow, which Sen2Cor's brightness tests partly take for cloud."""
PROBABILITY_NOISE = 3.0
"""Standard deviation in percent of the per-pixel probability noise."""
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
    shade = np.clip((conditions.shadow - SHADE_START) / SHADE_RAMP, 0.0, 1.0)
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


def scene_cloud_probability(conditions: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Return a Sen2Cor-like cloud probability (``MSK_CLDPRB``) of a scene in percent.

    The probability rises logistically with cloud opacity (50 % at opacity
    :data:`PROBABILITY_MIDPOINT`, so a few percent on clear ground and ~100 % under thick cloud),
    plus :data:`PROBABILITY_CIRRUS` percent per unit of cirrus and :data:`PROBABILITY_SNOW` on
    snow, plus gaussian noise of :data:`PROBABILITY_NOISE` percent; clipped to 0..100 and
    rounded. Pixels beyond the swath are :data:`PROBABILITY_NODATA`.

    Parameters
    ----------
    conditions
        The acquisition's conditions on the scene's 20 m grid.
    rng
        Generator for the noise (its own stream, so the other layers do not change with it).

    Returns
    -------
    numpy.ndarray
        uint8 percent.

    """
    logit = (conditions.opacity.astype(np.float64) - PROBABILITY_MIDPOINT) / PROBABILITY_WIDTH
    percent = 100.0 / (1.0 + np.exp(-logit))
    percent += PROBABILITY_CIRRUS * conditions.cirrus
    percent += PROBABILITY_SNOW * conditions.snow
    percent += PROBABILITY_NOISE * rng.standard_normal(percent.shape)
    out = np.clip(np.rint(percent), 0, 100).astype(np.uint8)
    out[conditions.nodata] = PROBABILITY_NODATA
    return out


CONTAMINATION_KINDS = ("cloud", "shadow", "cirrus", "snow")
"""The ways an observation can differ from the clear surface, in :func:`contamination`."""


def contamination(conditions: Conditions) -> dict[str, np.ndarray]:
    """Say which observations the rendering changed from the clear surface, and how.

    Each kind is a threshold on the analytic conditions, set where :func:`scene_reflectance`
    starts to change the reflectance by more than the noise could hide:

    ``cloud``: opacity > :data:`HAZE_LEVEL` (0.05)
        Reflectance becomes ``r (1 - o) + c o (0.85 + 0.15 o)`` with cloud tops ``c`` of
        ~0.6; at ``o`` = 0.05 that adds ~0.02 to dark vegetation in the visible and ~0.01 in
        the NIR, 3 to 8 times the noise (0.003). It includes the haze fringe SCL misses
        (opacity 0.05 to 0.3); thinner haze changes the visible by less than ~0.02.
    ``shadow``: opacity of the casting cloud > :data:`SHADE_START` (0.22)
        Where the shadow begins to darken the ground, linearly down to ``shadow_factor``
        (0.35-0.5) times the clear reflectance at 0.38; SCL only flags it above 0.3.
    ``cirrus``: cirrus > :data:`CIRRUS_TRACE` (0.17)
        Cirrus adds ``0.060 * cirrus`` (blue) to ``0.052 * cirrus`` (NIR), so more than
        ~0.01 from 0.17 on; SCL flags thin cirrus only above 0.5.
    ``snow``
        Snow replaces the surface outright.
    ``nodata``
        Beyond the swath edge: no observation at all.
    ``clear``
        None of the above.

    Kinds overlap (a shadow under a cloud is both). Conditions are sampled at pixel centres,
    so a coarse pixel is judged by its centre, not by the area it covers.

    Parameters
    ----------
    conditions
        An acquisition's conditions on some grid.

    Returns
    -------
    dict of str to numpy.ndarray
        Boolean masks ``cloud``, ``shadow``, ``cirrus``, ``snow``, ``nodata`` and ``clear``.

    """
    masks = {
        "cloud": conditions.opacity > HAZE_LEVEL,
        "shadow": conditions.shadow > SHADE_START,
        "cirrus": conditions.cirrus > CIRRUS_TRACE,
        "snow": conditions.snow.copy(),
        "nodata": conditions.nodata.copy(),
    }
    clear = ~masks["nodata"]
    for kind in CONTAMINATION_KINDS:
        clear &= ~masks[kind]
    masks["clear"] = clear
    return masks
