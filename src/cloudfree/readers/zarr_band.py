"""Read a window of one EOPF Sentinel-2 Zarr band onto an output grid.

An EOPF product keeps each band as a 2-D array in a resolution group
(``<product>.zarr/measurements/reflectance/r10m/b02``) beside that group's ``x``/``y`` pixel-centre
coordinate arrays. The array's grid is rebuilt from those coordinates and the scene's CRS; the
source window that covers the output grid comes from :func:`~cloudfree.readers.window.how_to_read`
(exactly the pixels under it on the band's own lattice, odc-geo's padded window otherwise), only
that slice is read (Zarr fetches only the chunks it touches), and the window is pasted when the
grids align or warped otherwise, exactly as :mod:`cloudfree.load` does for GeoTIFFs
(:func:`place_window` is the shared step).

Coarser resolution groups of the same band (``r20m``, ``r60m``) serve as overviews when the output
is coarse enough, like COG overviews do.

Values are raw integer DNs: the array's ``scale_factor``/``add_offset`` are *not* applied here.
The caller applies the scene's scale and offset exactly once; :func:`zarr_band_radiometry` reads
the array's own values so a source can check or derive them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.math import affine_from_axis
from odc.geo.overlap import ReprojectInfo
from zarr.abc.store import Store
from zarr.errors import NodeNotFoundError
from zarr.storage import FsspecStore, LocalStore

from cloudfree.errors import ReadError
from cloudfree.readers.window import how_to_read, place_window, source_window

__all__ = [
    "ZarrLevel",
    "open_zarr_array",
    "open_zarr_level",
    "open_zarr_store",
    "place_window",
    "read_zarr_window",
    "zarr_band_radiometry",
]

_RESOLUTION_GROUP = re.compile(r"^r(?P<metres>\d+)m$")
OVERVIEW_RESOLUTIONS = (10, 20, 60)
"""Resolution groups of an EOPF product, in metres; coarser ones are tried as overviews."""


@dataclass(frozen=True)
class ZarrLevel:
    """One resolution of one band: the lazily read array and its grid."""

    array: zarr.Array
    geobox: GeoBox


def is_zarr_href(href: str) -> bool:
    """Whether ``href`` points at an array inside a Zarr product (``....zarr/<group>/<band>``)."""
    return ".zarr/" in href.split("?", 1)[0]


def read_zarr_window(
    href: str,
    geobox: GeoBox,
    resampling: str,
    *,
    categorical: bool,
    crs: str,
    nodata: float | None,
    storage_options: Mapping[str, object] | None = None,
) -> np.ndarray | None:
    """Read the part of one Zarr band covering ``geobox``, from the best resolution group.

    The contract is :func:`cloudfree.load.read_window`'s: float32 DNs with NaN for nodata, or
    uint8 classes with 0 for nodata when ``categorical`` (always read with nearest), on
    ``geobox``; ``None`` when the band does not overlap it.

    DNs are returned raw: the array's ``scale_factor``/``add_offset`` attributes are **not**
    applied, because the caller converts DNs with the scene's scale and offset exactly once (see
    :func:`zarr_band_radiometry` for the array's own values).

    Parameters
    ----------
    href
        The band array inside a product, e.g.
        ``s3://bucket/P.zarr/measurements/reflectance/r10m/b02``: a local path, ``file://``,
        ``http(s)://``, ``s3://`` or any fsspec URL.
    geobox
        The output grid.
    resampling
        Resampling for reflectance (``nearest``, ``bilinear``, ``cubic``, ``average``).
    categorical
        Whether the band holds classes (SCL).
    crs
        The scene's CRS (the product's ``x``/``y`` coordinates carry none).
    nodata
        The DN meaning "no data" (``None`` means 0, as for GeoTIFF assets).
    storage_options
        fsspec options for remote URLs (credentials, endpoint, anonymous access...).

    Returns
    -------
    numpy.ndarray or None
        The window on ``geobox``, or ``None`` without overlap.

    Raises
    ------
    ReadError
        If the href is not a band of a resolution group or its coordinates are not a regular grid.
    OSError
        If the store cannot be read (retried by the caller like GeoTIFF failures).

    """
    base, group, name = _split_href(href)
    store = _open_store(base, storage_options)
    level = open_zarr_level(store, f"{group}/{name}", crs)
    method = "nearest" if categorical else resampling
    how = how_to_read(level.geobox, geobox, method)
    if isinstance(how, ReprojectInfo):
        coarser = _overview(store, group, name, crs, how.read_shrink)
        if coarser is not None:
            level = coarser
            how = how_to_read(level.geobox, geobox, method)
    if how is None:
        return None
    block = np.asarray(level.array[source_window(how)])
    return place_window(
        block,
        level.geobox,
        geobox,
        how,
        resampling,
        categorical=categorical,
        src_nodata=0 if nodata is None else nodata,
    )


def zarr_band_radiometry(
    href: str, storage_options: Mapping[str, object] | None = None
) -> tuple[float, float, float | None]:
    """Return a band's own ``(scale_factor, add_offset, nodata)`` from its array metadata.

    Reflectance = DN * scale + offset. Arrays without the attributes (SCL) give ``(1.0, 0.0, ...)``;
    nodata is the CF ``_FillValue`` attribute if present, else EOPF's ``fill_value`` attribute,
    else the Zarr fill value, else ``None``.
    """
    base, group, name = _split_href(href)
    array = _open_array(_open_store(base, storage_options), f"{group}/{name}")
    attrs = array.attrs
    fill = attrs.get("_FillValue", attrs.get("fill_value", array.metadata.fill_value))
    return (
        _number(attrs.get("scale_factor"), 1.0),
        _number(attrs.get("add_offset"), 0.0),
        None if fill is None else _number(fill, 0.0),
    )


def open_zarr_level(store: Store, path: str, crs: str) -> ZarrLevel:
    """Open a band array and build its grid from the sibling ``x``/``y`` coordinate arrays.

    Parameters
    ----------
    store
        The store holding the resolution group.
    path
        ``"<group>/<band>"`` inside the store, e.g. ``"r10m/b02"``.
    crs
        The CRS of the coordinates.

    Returns
    -------
    ZarrLevel
        The array (nothing read yet) and its GeoBox.

    Raises
    ------
    ReadError
        If the coordinates are missing, too short or not the array's shape.

    """
    array = _open_array(store, path)
    group = path.rpartition("/")[0]
    x = np.asarray(_open_array(store, f"{group}/x")[:], dtype=np.float64)
    y = np.asarray(_open_array(store, f"{group}/y")[:], dtype=np.float64)
    if array.ndim != 2 or array.shape != (y.size, x.size) or min(x.size, y.size) < 2:
        raise ReadError(
            f"Zarr band {path!r} of shape {array.shape} does not match its coordinates "
            f"(y: {y.size}, x: {x.size}); expected a 2-D (y, x) array with 2 or more pixels a side."
        )
    return ZarrLevel(array, GeoBox((y.size, x.size), affine_from_axis(x, y), crs))


def _overview(store: Store, group: str, name: str, crs: str, shrink: int) -> ZarrLevel | None:
    """The coarsest sibling resolution group holding the band whose decimation fits ``shrink``."""
    match = _RESOLUTION_GROUP.match(group)
    if match is None or shrink < 2:
        return None
    native = int(match["metres"])
    for metres in sorted(OVERVIEW_RESOLUTIONS, reverse=True):
        if metres <= native or metres % native or metres // native > shrink:
            continue
        try:
            return open_zarr_level(store, f"r{metres}m/{name}", crs)
        except (NodeNotFoundError, ReadError):
            continue
    return None


def _number(value: object, default: float) -> float:
    """A numeric attribute as float; ``default`` when absent."""
    if value is None:
        return default
    if not isinstance(value, int | float | str | np.number):
        raise ReadError(f"Expected a number in the Zarr attributes, got {value!r}.")
    return float(value)


def _split_href(href: str) -> tuple[str, str, str]:
    """``".../reflectance/r10m/b02"`` -> ``(".../reflectance", "r10m", "b02")``."""
    parts = href.rstrip("/").rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ReadError(
            f"{href!r} is not a Zarr band path; expected <product>.zarr/.../<group>/<band>, "
            "e.g. .../measurements/reflectance/r10m/b02."
        )
    base, group, name = parts
    return base, group, name


def _open_store(url: str, storage_options: Mapping[str, object] | None) -> Store:
    """A read-only store rooted at ``url``: local directories directly, anything else via fsspec."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(url2pathname(parts.path), read_only=True)
    if "://" not in url:
        return LocalStore(url, read_only=True)
    return FsspecStore.from_url(url, storage_options=dict(storage_options or {}), read_only=True)


def _open_array(store: Store, path: str) -> zarr.Array:
    """Open an existing array read-only: Zarr v2 (EOPF products) first, then v3."""
    try:
        return zarr.open_array(store, path=path, mode="r", zarr_format=2)
    except NodeNotFoundError:
        return zarr.open_array(store, path=path, mode="r", zarr_format=3)


def open_zarr_store(url: str, storage_options: Mapping[str, object] | None = None) -> Store:
    """A read-only store rooted at ``url`` (a local path, ``file://`` or any fsspec URL)."""
    return _open_store(url, storage_options)


def open_zarr_array(store: Store, path: str) -> zarr.Array:
    """Open an existing array read-only, Zarr v2 (EOPF products) or v3."""
    return _open_array(store, path)
