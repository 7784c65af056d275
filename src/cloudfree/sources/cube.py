"""A data cube made by ``cloudfree cube`` as the source of a mosaic (``mosaic --from-cube``).

The cube's time layers are already loaded, merged solar days, so the source yields one
:class:`~cloudfree.scene.Scene` per layer (its time, the union of its scenes' footprints), and
:meth:`CubeSource.load_stack` replaces :func:`cloudfree.load.load_stack`: it reads a tile (plus
the mask's halo and the method's margin) for all the layers it needs at once, whole chunks, and
builds the same :class:`~cloudfree.stack.Stack` a load from the scenes gives. Masks and methods
then run unchanged, so a mosaic from a cube equals a mosaic from the scenes the cube was made
from, with the same bands, mask layers, resampling and same-day rule, wherever the cube's margin
covers the mask's halo and the method's context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from types import MappingProxyType

import numpy as np
from odc.geo.geobox import GeoBox

from cloudfree.bands import Band
from cloudfree.config import ReadSettings
from cloudfree.errors import InvalidInputError
from cloudfree.grid import geobox_crs, output_geobox, parse_crs
from cloudfree.load import LoadOptions
from cloudfree.scene import BandAsset, Scene
from cloudfree.sources.base import SearchQuery
from cloudfree.stack import NODATA, REFLECTANCE_SCALE, Stack, layer_dtype, missing_value
from cloudfree.store.cube_store import (
    VALID_BAND,
    CubeInfo,
    CubeStore,
    read_info,
)

PROVIDER = "cloudfree-cube"


class CubeSource:
    """The time layers of a cube, as scenes, and the loader that reads them."""

    def __init__(self, url: str, info: CubeInfo) -> None:
        self.url = url
        self.info = info
        self.description = f"the cube {url}"
        self._store: CubeStore | None = None

    def __getstate__(self) -> dict[str, object]:
        """Pickled (for another process) without the open store; it reopens there."""
        return {**self.__dict__, "_store": None}

    def _opened(self) -> CubeStore:
        # opened once (consolidated metadata: one read); zarr arrays read from many threads
        if self._store is None:
            self._store = CubeStore(self.url, mode="r")
        return self._store

    @property
    def crs_text(self) -> str:
        """The cube's CRS as ``--crs`` takes it."""
        crs = geobox_crs(self.info.geobox)
        return f"EPSG:{crs.epsg}" if crs.epsg is not None else crs.to_wkt()

    @property
    def resolution(self) -> float:
        """The cube's pixel size, as ``--resolution`` takes it."""
        return float(abs(self.info.geobox.resolution.x))

    def search(self, query: SearchQuery) -> list[Scene]:
        """One scene per time layer whose first acquisition is in the query's dates."""
        scenes = []
        for index, day in enumerate(self.info.days):
            when = self.info.first_times[index]
            if query.timerange.start <= when.date() <= query.timerange.end:
                scenes.append(self._scene(index, day))
        return scenes

    def _scene(self, index: int, day: date) -> Scene:
        assets = {}
        for var in (*self.info.bands, *self.info.layers):
            if var.band == VALID_BAND:  # a verdict, not a layer a mask reads
                continue
            band = var.spec
            assets[var.band] = BandAsset(
                href=f"{self.url}#{var.name}",
                scale=REFLECTANCE_SCALE if band.is_reflectance else 1.0,
                offset=0.0,
                nodata=float(missing_value(band)),
                resolution=None,
            )
        return Scene(
            id=f"{day.isoformat()}",
            datetime=self.info.first_times[index],
            footprint=self.info.footprints[index],
            bands=assets,
            crs=str(geobox_crs(self.info.geobox)),
            tile=None,
            cloud_cover=None,
            processing_baseline=None,
            provider=PROVIDER,
        )

    def load_stack(
        self,
        geobox: GeoBox,
        scenes: Sequence[Scene],
        options: LoadOptions,
        settings: ReadSettings,
    ) -> Stack:
        """The stack :func:`cloudfree.load.load_stack` would give for ``geobox``, from the cube.

        Pixels of ``geobox`` outside the cube are "no data"; layers without a pixel with data
        are dropped, as days without data are in a load from scenes.
        """
        del settings  # the cube is read with zarr, not GDAL
        index = {day.isoformat(): i for i, day in enumerate(self.info.days)}
        times = sorted(index[scene.id] for scene in scenes)
        row0, col0 = self._offset(geobox)
        ny, nx = geobox.shape.yx
        cy, cx = self.info.geobox.shape.yx
        ys = slice(max(row0, 0), min(row0 + ny, cy))
        xs = slice(max(col0, 0), min(col0 + nx, cx))
        inner = (slice(ys.start - row0, ys.stop - row0), slice(xs.start - col0, xs.stop - col0))
        store = self._opened()
        span = slice(times[0], times[-1] + 1) if times else slice(0, 0)
        picked = [t - span.start for t in times]

        def read(band: Band) -> np.ndarray:
            name = self.info.variable_for(band.id)
            if name is None:  # checked when the request was built
                raise InvalidInputError(f"The cube {self.url} has no {band.id}.")
            values = np.full((len(times), ny, nx), missing_value(band), dtype=layer_dtype(band))
            if times and ys.stop > ys.start and xs.stop > xs.start:
                values[(slice(None), *inner)] = store.read(name, span, ys, xs)[picked]
            return values

        data = np.stack([read(band) for band in options.bands], axis=1)
        layers = {band.id: read(band) for band in options.mask_layers}
        present = np.all(data != NODATA, axis=1)
        for band in options.mask_layers:
            present &= layers[band.id] != missing_value(band)
        keep = present.any(axis=(1, 2))
        return Stack(
            geobox=geobox,
            days=tuple(self.info.days[t] for t, k in zip(times, keep, strict=True) if k),
            bands=tuple(b.id for b in options.bands),
            data=data[keep],
            layers=MappingProxyType({k: v[keep] for k, v in layers.items()}),
        )

    def _offset(self, geobox: GeoBox) -> tuple[int, int]:
        """Row and column of ``geobox``'s first pixel in the cube's grid (same pixel lattice)."""
        col, row = ~self.info.geobox.affine * (geobox.affine.c, geobox.affine.f)
        if (
            abs(col - round(col)) > 1e-6
            or abs(row - round(row)) > 1e-6
            or not math.isclose(geobox.affine.a, self.info.geobox.affine.a)
        ):
            raise InvalidInputError(
                f"A tile grid is not on the pixel lattice of the cube {self.url}."
            )
        return round(row), round(col)

    # -- checks of a mosaic request against the cube -------------------------------------------

    def check_mosaic(
        self,
        *,
        bands: Sequence[Band],
        mask_layers: Sequence[Band],
        start: date,
        end: date,
        resampling: str | None,
        same_day: str | None,
    ) -> tuple[str, str]:
        """Refuse what the cube cannot give; returns its (resampling, same-day rule)."""
        info = self.info
        missing = [b.id for b in (*bands, *mask_layers) if info.variable_for(b.id) is None]
        if missing:
            held = ", ".join(v.band for v in (*info.bands, *info.layers))
            raise InvalidInputError(
                f"The cube {self.url} has no {', '.join(missing)} (it holds {held}); choose "
                "bands and a --cloud-mask whose layers it holds, or make a cube with them."
            )
        if start < info.start or end > info.end:
            raise InvalidInputError(
                f"The cube {self.url} covers {info.start} to {info.end}; choose dates "
                "inside that range."
            )
        for given, made, option in (
            (resampling, info.resampling, "--resampling"),
            (same_day, info.same_day, "--same-day"),
        ):
            if given is not None and given != made:
                raise InvalidInputError(
                    f"The cube {self.url} was loaded with {option} {made}; drop {option} {given} "
                    f"(or a preset that implies it), or make a cube with {option} {given}."
                )
        return info.resampling, info.same_day


def open_cube_source(
    url: str,
    *,
    crs: str | None,
    resolution: float | None,
    search_options: Mapping[str, object],
) -> CubeSource:
    """The cube at ``url`` as a source; its grid is the mosaic's (error if asked for another).

    ``search_options`` maps the options that choose scenes (``--stac``, ``--bbox``, ...) to
    their values: a cube's layers and area are fixed, so none may be given.
    """
    given = [name for name, value in search_options.items() if value not in (None, (), [])]
    if given:
        raise InvalidInputError(
            f"--from-cube mosaics the cube's scenes, area and grid; drop {', '.join(given)}."
        )
    info = read_info(url)
    cube_crs = geobox_crs(info.geobox)
    if crs is not None and parse_crs(crs) != cube_crs:
        raise InvalidInputError(
            f"The cube {url} is in {cube_crs}; drop --crs {crs} (a mosaic from a cube is on "
            "the cube's grid)."
        )
    res = abs(info.geobox.resolution.x)
    if resolution is not None and not math.isclose(resolution, res):
        raise InvalidInputError(
            f"The cube {url} has {res:g} pixels; drop --resolution {resolution:g} (a mosaic "
            "from a cube is on the cube's grid)."
        )
    if output_geobox(info.aoi, cube_crs, res) != info.area_geobox:
        raise InvalidInputError(f"The grid of the cube {url} cannot be rebuilt from its area.")
    return CubeSource(url=url, info=info)
