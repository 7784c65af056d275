"""The static synthetic world: analytic land-cover and surface-reflectance fields.

Everything here is a pure function of local metres (see :mod:`cloudfree.testing.geo`) and of
a :class:`World`'s parameters, so any grid, in any CRS, sees exactly the same surface.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloudfree.testing.geo import LocalPoints

TRUTH_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
"""Bands the synthetic archive carries, in array order (blue, green, red, nir)."""

NDVI_VEGETATION = 0.3
"""Clear land with NDVI above this is classified ``VEGETATION``, otherwise ``NOT_VEGETATED``."""


class Cover(enum.IntEnum):
    """Internal land-cover classes of the synthetic world (not SCL classes)."""

    VEGETATION = 0
    BARE = 1
    URBAN = 2
    WATER = 3


# Reflectance = BASE + SLOPE_S * s + SLOPE_T * t, with textures s, t in 0..1.
# Rows follow ``Cover``; columns follow ``TRUTH_BANDS``.
def _table(rows: list[Any]) -> np.ndarray:
    """Return a read-only float64 table."""
    table = np.array(rows, dtype=np.float64)
    table.setflags(write=False)
    return table


_BARE = np.array([0.08, 0.11, 0.14, 0.22])
_URBAN = np.array([0.10, 0.11, 0.12, 0.16])
_WATER = np.array([0.04, 0.05, 0.03, 0.01])
_BASE = _table([[0.03, 0.06, 0.06, 0.25], 0.8 * _BARE, 0.8 * _URBAN, 0.9 * _WATER])
_SLOPE_S = _table([[0.0, 0.0, -0.03, 0.20], 0.4 * _BARE, np.zeros(4), np.zeros(4)])
_SLOPE_T = _table([[0.02, 0.03, 0.0, 0.0], np.zeros(4), 0.5 * _URBAN, 0.2 * _WATER])


@dataclass(frozen=True)
class FourierField:
    """A smooth random field: a normalised sum of plane cosine waves.

    ``f(x, y) = sqrt(2 / n) * sum_i cos(kx_i x + ky_i y + phase_i)`` has zero mean and unit
    variance over large areas, is defined everywhere and is cheap to evaluate on any points.
    """

    kx: tuple[float, ...]
    ky: tuple[float, ...]
    phase: tuple[float, ...]

    @classmethod
    def random(
        cls, rng: np.random.Generator, n_modes: int, wavelength_min: float, wavelength_max: float
    ) -> FourierField:
        """Draw a field with log-uniform wavelengths and uniform directions.

        Parameters
        ----------
        rng
            Random generator.
        n_modes
            Number of cosine waves.
        wavelength_min, wavelength_max
            Wavelength range in metres.

        Returns
        -------
        FourierField
            The field.

        """
        log_wl = rng.uniform(math.log(wavelength_min), math.log(wavelength_max), n_modes)
        k = 2.0 * np.pi / np.exp(log_wl)
        theta = rng.uniform(0.0, 2.0 * np.pi, n_modes)
        phase = rng.uniform(0.0, 2.0 * np.pi, n_modes)
        return cls(
            kx=tuple(float(v) for v in k * np.cos(theta)),
            ky=tuple(float(v) for v in k * np.sin(theta)),
            phase=tuple(float(v) for v in phase),
        )

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate the field at local-metre points.

        Parameters
        ----------
        x, y
            Local metres, same shape.

        Returns
        -------
        numpy.ndarray
            float64 values, same shape as ``x``.

        """
        out = np.zeros(np.shape(x), dtype=np.float64)
        work = np.empty_like(out)
        for kx, ky, phase in zip(self.kx, self.ky, self.phase, strict=True):
            np.multiply(x, kx, out=work)
            work += ky * y
            work += phase
            np.cos(work, out=work)
            out += work
        out *= math.sqrt(2.0 / max(len(self.kx), 1))
        return out

    def to_dict(self) -> dict[str, list[float]]:
        """Return a JSON-serialisable form (floats round-trip exactly)."""
        return {"kx": list(self.kx), "ky": list(self.ky), "phase": list(self.phase)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FourierField:
        """Rebuild a field from :meth:`to_dict` output."""
        return cls(
            kx=tuple(float(v) for v in data["kx"]),
            ky=tuple(float(v) for v in data["ky"]),
            phase=tuple(float(v) for v in data["phase"]),
        )


@dataclass(frozen=True)
class Lake:
    """An elliptical lake with a wobbly shore, in local metres."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    shore: FourierField
    shore_amplitude: float

    def contains(self, points: LocalPoints) -> np.ndarray:
        """Return a boolean mask of the points that are lake water."""
        dx, dy = points.x - self.cx, points.y - self.cy
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        u = (dx * cos_a + dy * sin_a) / self.rx
        v = (-dx * sin_a + dy * cos_a) / self.ry
        radius = u * u + v * v
        return radius + self.shore_amplitude * self.shore.evaluate(points.x, points.y) < 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form."""
        return {
            "cx": self.cx,
            "cy": self.cy,
            "rx": self.rx,
            "ry": self.ry,
            "angle": self.angle,
            "shore": self.shore.to_dict(),
            "shore_amplitude": self.shore_amplitude,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lake:
        """Rebuild a lake from :meth:`to_dict` output."""
        return cls(
            cx=float(data["cx"]),
            cy=float(data["cy"]),
            rx=float(data["rx"]),
            ry=float(data["ry"]),
            angle=float(data["angle"]),
            shore=FourierField.from_dict(data["shore"]),
            shore_amplitude=float(data["shore_amplitude"]),
        )


@dataclass(frozen=True)
class Surface:
    """Static surface at some points: reflectance and land cover.

    Attributes
    ----------
    reflectance
        float32 array ``(4, *shape)`` in ``TRUTH_BANDS`` order.
    cover
        int8 array of :class:`Cover` codes.

    """

    reflectance: np.ndarray
    cover: np.ndarray

    @property
    def vegetated(self) -> np.ndarray:
        """Boolean mask where NDVI exceeds ``NDVI_VEGETATION``."""
        red = self.reflectance[2].astype(np.float64)
        nir = self.reflectance[3].astype(np.float64)
        return (nir - red) > NDVI_VEGETATION * (nir + red)


@dataclass(frozen=True)
class World:
    """Parameters of the static synthetic landscape.

    Attributes
    ----------
    landcover
        Large-scale field: vegetation where above ``vegetation_threshold``, else bare soil.
    urban
        Patchy field: urban where above ``urban_threshold``.
    texture_s, texture_t
        Within-class variation fields.
    elevation
        Smooth "elevation" field; snow falls where it is high.
    lake
        The lake.
    vegetation_threshold, urban_threshold
        Class thresholds on the fields.

    """

    landcover: FourierField
    urban: FourierField
    texture_s: FourierField
    texture_t: FourierField
    elevation: FourierField
    lake: Lake
    vegetation_threshold: float
    urban_threshold: float

    @classmethod
    def random(cls, rng: np.random.Generator, extent: float) -> World:
        """Draw a world for tiles of side ``extent`` metres.

        Parameters
        ----------
        rng
            Random generator.
        extent
            Tile side length in metres; the lake is placed in the tiles' overlap.

        Returns
        -------
        World
            The world.

        """
        lake = Lake(
            cx=float(rng.uniform(-0.19, -0.06) * extent),
            cy=float(rng.uniform(-0.15, 0.15) * extent),
            rx=float(rng.uniform(0.10, 0.14) * extent),
            ry=float(rng.uniform(0.06, 0.09) * extent),
            angle=float(rng.uniform(0.0, math.pi)),
            shore=FourierField.random(rng, 6, 0.03 * extent, 0.12 * extent),
            shore_amplitude=0.12,
        )
        return cls(
            landcover=FourierField.random(rng, 14, 700.0, 3000.0),
            urban=FourierField.random(rng, 16, 500.0, 1500.0),
            texture_s=FourierField.random(rng, 16, 100.0, 900.0),
            texture_t=FourierField.random(rng, 16, 100.0, 900.0),
            elevation=FourierField.random(rng, 6, 1500.0, 6000.0),
            lake=lake,
            vegetation_threshold=-0.6,
            urban_threshold=1.9,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form (floats round-trip exactly)."""
        return {
            "landcover": self.landcover.to_dict(),
            "urban": self.urban.to_dict(),
            "texture_s": self.texture_s.to_dict(),
            "texture_t": self.texture_t.to_dict(),
            "elevation": self.elevation.to_dict(),
            "lake": self.lake.to_dict(),
            "vegetation_threshold": self.vegetation_threshold,
            "urban_threshold": self.urban_threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> World:
        """Rebuild a world from :meth:`to_dict` output."""
        return cls(
            landcover=FourierField.from_dict(data["landcover"]),
            urban=FourierField.from_dict(data["urban"]),
            texture_s=FourierField.from_dict(data["texture_s"]),
            texture_t=FourierField.from_dict(data["texture_t"]),
            elevation=FourierField.from_dict(data["elevation"]),
            lake=Lake.from_dict(data["lake"]),
            vegetation_threshold=float(data["vegetation_threshold"]),
            urban_threshold=float(data["urban_threshold"]),
        )

    def cover(self, points: LocalPoints) -> np.ndarray:
        """Return the :class:`Cover` code of each point as int8."""
        cover = np.full(np.shape(points.x), Cover.BARE, dtype=np.int8)
        cover[self.landcover.evaluate(points.x, points.y) > self.vegetation_threshold] = (
            Cover.VEGETATION
        )
        cover[self.urban.evaluate(points.x, points.y) > self.urban_threshold] = Cover.URBAN
        cover[self.lake.contains(points)] = Cover.WATER
        return cover

    def surface(self, points: LocalPoints) -> Surface:
        """Evaluate the noise-free surface reflectance and land cover at points.

        Parameters
        ----------
        points
            Local-metre coordinates.

        Returns
        -------
        Surface
            Reflectance (float32, 0..1) and cover.

        """
        cover = self.cover(points)
        s = 0.5 + 0.5 * np.tanh(self.texture_s.evaluate(points.x, points.y))
        t = 0.5 + 0.5 * np.tanh(self.texture_t.evaluate(points.x, points.y))
        reflectance = np.empty((len(TRUTH_BANDS), *cover.shape), dtype=np.float32)
        for band in range(len(TRUTH_BANDS)):
            value = _BASE[:, band][cover] + _SLOPE_S[:, band][cover] * s
            value += _SLOPE_T[:, band][cover] * t
            reflectance[band] = value
        return Surface(reflectance=reflectance, cover=cover)

    def elevation_at(self, points: LocalPoints) -> np.ndarray:
        """Return the smooth elevation field (unitless, ~N(0, 1)) at points."""
        return self.elevation.evaluate(points.x, points.y)
