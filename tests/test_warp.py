"""The tile-invariant warp: coordinate accuracy, agreement with GDAL, tile and thread invariance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_is_empty
from odc.geo.warp import rio_reproject
from pyproj import Transformer
from rasterio.enums import Resampling

from cloudfree.errors import ReadError
from cloudfree.readers.gdal_band import read_window
from cloudfree.readers.warp import lattice_origin, node_grid, source_coordinates, warp_window
from cloudfree.readers.window import place_window

NODATA = 0

# 10 m UTM sources; each pair is (name, source grid, output CRS, output resolution).
UTM29 = GeoBox((1500, 1500), Affine(10, 0, 600_000, 0, -10, 5_900_000), "EPSG:32629")
# near the 31/32 zone boundary (6 E), where the neighbouring zone is most distorted
UTM31 = GeoBox((1500, 1500), Affine(10, 0, 700_000, 0, -10, 5_560_000), "EPSG:32631")


@dataclass(frozen=True)
class Pair:
    name: str
    src: GeoBox
    crs: str
    resolution: float

    def output(self) -> GeoBox:
        """An output grid covering the source with a margin outside it."""
        bbox = self.src.extent.to_crs(self.crs).boundingbox
        return GeoBox.from_bbox(bbox, self.crs, resolution=self.resolution).pad(12)


PAIRS = [
    Pair("utm31-utm32", UTM31, "EPSG:32632", 10),
    Pair("utm29-itm", UTM29, "EPSG:2157", 10),
    Pair("utm29-wgs84", UTM29, "EPSG:4326", 0.0001),
    Pair("utm29-webmercator", UTM29, "EPSG:3857", 10),
]
PAIR_IDS = [p.name for p in PAIRS]


def exact_coordinates(src: GeoBox, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel pyproj: source pixel coordinates of every output pixel centre."""
    ny, nx = geobox.shape.yx
    cols, rows = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    x, y = geobox.affine * (cols, rows)
    x, y = Transformer.from_crs(geobox.crs.proj, src.crs.proj, always_xy=True).transform(x, y)
    return ~src.affine * (x, y)


def smooth(shape: tuple[int, int]) -> np.ndarray:
    """Smooth uint16 DNs in 500..4000, no zeros."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    field = 800 * np.sin(cols / 37) * np.cos(rows / 23) + 300 * np.sin((cols + rows) / 11)
    return (2000 + field).round().astype(np.uint16)


def with_holes(data: np.ndarray, seed: int = 1) -> np.ndarray:
    """Nodata discs and scattered single nodata pixels."""
    rng = np.random.default_rng(seed)
    out = data.copy()
    rows, cols = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    for r, c, radius in zip(
        rng.integers(0, data.shape[0], 30),
        rng.integers(0, data.shape[1], 30),
        rng.uniform(1, 25, 30),
        strict=True,
    ):
        out[(rows - r) ** 2 + (cols - c) ** 2 < radius**2] = NODATA
    out[rng.random(data.shape) < 0.002] = NODATA
    return out


def noise(shape: tuple[int, int], seed: int = 2) -> np.ndarray:
    """White-noise DNs with nodata holes: every coordinate difference shows."""
    data = np.random.default_rng(seed).integers(1, 10_000, shape, dtype=np.uint16)
    return with_holes(data, seed)


def read_tile(
    data: np.ndarray, src: GeoBox, tile: GeoBox, resampling: str, *, categorical: bool = False
) -> np.ndarray:
    """What the readers do: the padded source window of ``tile``, placed on it."""
    roi = compute_reproject_roi(src, tile, padding=2)
    if roi_is_empty(roi.roi_dst) or roi_is_empty(roi.roi_src):
        if categorical:
            return np.zeros(tile.shape.yx, dtype=np.uint8)
        return np.full(tile.shape.yx, np.nan, dtype=np.float32)
    return place_window(
        data[roi.roi_src],
        src,
        tile,
        roi,
        resampling,
        categorical=categorical,
        src_nodata=NODATA,
    )


# --- coordinates -------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_node_interpolation_error_is_below_a_thousandth_of_a_pixel(pair):
    out = pair.output()
    u, v = source_coordinates(pair.src, out)
    eu, ev = exact_coordinates(pair.src, out)
    assert np.abs(u - eu).max() < 1e-3
    assert np.abs(v - ev).max() < 1e-3


def test_a_tile_has_the_nodes_of_its_grid():
    """Tiles of one grid, whose affines differ from exact multiples by ulps, agree exactly."""
    gbox = PAIRS[2].output()
    whole = node_grid(UTM29, gbox)
    tile = gbox[37:300, 1001:1500]
    nodes = node_grid(UTM29, tile)
    first_row = (37 + whole.row_offset) // 16
    first_col = (1001 + whole.col_offset) // 16
    rows, cols = nodes.u.shape
    np.testing.assert_array_equal(
        nodes.u, whole.u[first_row : first_row + rows, first_col : first_col + cols]
    )
    assert nodes.row_offset == (37 + whole.row_offset) % 16
    assert nodes.col_offset == (1001 + whole.col_offset) % 16


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(-(10**7), 10**7),
    micro=st.integers(0, 999_999),
    ulps=st.integers(-4, 4),
    step=st.sampled_from([10.0, -10.0, 20.0, 60.0, 1e-4, -1e-4, 8.983e-5, 0.3]),
)
def test_lattice_origin_ignores_last_bit_noise(index, micro, ulps, step):
    origin = (index + micro / 1e6) * step
    noisy = origin
    for _ in range(abs(ulps)):
        noisy = math.nextafter(noisy, math.inf if ulps > 0 else -math.inf)
    start, phase = lattice_origin(origin, step)
    assert lattice_origin(noisy, step) == (start, phase)
    assert 0 <= phase < 1
    assert abs((start + phase) * step - origin) <= 2e-6 * abs(step)


# --- agreement with GDAL -----------------------------------------------------------------------


@dataclass(frozen=True)
class GdalRun:
    """GDAL's and our output, and GDAL's and our source coordinates, on one grid."""

    ours: np.ndarray
    gdal: np.ndarray
    du: np.ndarray
    dv: np.ndarray
    u: np.ndarray
    v: np.ndarray
    gu: np.ndarray
    gv: np.ndarray


def gdal_coordinates(src: GeoBox, out: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's own source coordinates, read back by warping ramps with bilinear.

    Bilinear interpolation of ``value = column index`` gives ``u - 0.5`` exactly away from the
    raster edge, so this exposes the coordinates GDAL's warper used (its approximate transformer).
    """
    roi = compute_reproject_roi(src, out, padding=2)
    (r0, r1), (c0, c1) = ((s.start, s.stop) for s in roi.roi_src)
    rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    result = []
    for ramp in (cols, rows):
        dst = np.full(out.shape.yx, np.nan)
        rio_reproject(ramp, dst, src[roi.roi_src], out, Resampling.bilinear, dst_nodata=np.nan)
        result.append(dst + 0.5)
    return result[0], result[1]


def gdal_run(pair: Pair, data: np.ndarray, resampling: str) -> GdalRun:
    # a 300 px grid inside the source: GDAL's linear approximation of the transform along each
    # row and column grows with the square of the window size
    out = pair.output()
    ny, nx = out.shape.yx
    out = out[ny // 2 - 150 : ny // 2 + 150, nx // 2 - 150 : nx // 2 + 150]
    roi = compute_reproject_roi(pair.src, out, padding=2)
    block = data[roi.roi_src]
    ours = read_tile(data, pair.src, out, resampling)
    gdal = np.full(out.shape.yx, np.nan, dtype=np.float32)
    rio_reproject(
        block,
        gdal,
        pair.src[roi.roi_src],
        out,
        Resampling[resampling],
        src_nodata=NODATA,
        dst_nodata=np.nan,
    )
    u, v = source_coordinates(pair.src, out)
    gu, gv = gdal_coordinates(pair.src, out)
    return GdalRun(ours, gdal, np.abs(u - gu), np.abs(v - gv), u, v, gu, gv)


def lipschitz(data: np.ndarray) -> tuple[float, float]:
    """Largest DN step between neighbouring valid pixels, along columns and rows."""
    d = data.astype(float)
    d[data == NODATA] = np.nan
    return float(np.nanmax(np.abs(np.diff(d, axis=1)))), float(
        np.nanmax(np.abs(np.diff(d, axis=0)))
    )


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_gdal_uses_nearly_the_same_coordinates(pair):
    """GDAL's warper approximates the transform linearly between exactly transformed points
    (its default error threshold is 0.125 px; rasterio's ``tolerance=0`` does not reach it).
    Measured on these 300 px windows: up to 0.006 px (UTM zones) and 0.0104 px (EPSG:4326) from
    the exact transform, while ours is within 1e-3 px of it."""
    run = gdal_run(pair, smooth(pair.src.shape.yx), "bilinear")
    assert np.nanmax(run.du) < 0.02 and np.nanmax(run.dv) < 0.02


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("holes", [False, True], ids=["smooth", "holes"])
def test_bilinear_agrees_with_gdal(pair, holes):
    """Values differ by at most what the coordinate difference explains.

    The bilinear interpolant moves by at most (largest neighbour step) x (distance moved) per
    axis, so ``|ours - gdal| <= Lx |du| + Ly |dv|`` plus float32 rounding (1e-3 DN). With the
    smooth field (L ~ 60 DN/px) and |du|, |dv| < 0.02 px this is under 2.5 DN; measured: at most
    0.05 DN between UTM zones, 0.008 DN to EPSG:2157 and 0.65 DN to EPSG:4326.
    Near nodata the comparison is restricted to pixels where both sample the same 2 x 2 source
    neighbourhood, which then has no nodata. An output pixel has a value when the source pixel
    containing its centre is valid (GDAL's rule), so validity may differ only where GDAL's and our
    coordinates fall in different source pixels.
    """
    data = smooth(pair.src.shape.yx)
    if holes:
        data = with_holes(data)
    run = gdal_run(pair, data, "bilinear")
    lx, ly = lipschitz(data)
    same = _same_cells(run, 0.5) & _same_cells(run, 0.0)
    both = np.isfinite(run.ours) & np.isfinite(run.gdal)
    clean = both & same & _neighbourhood_valid(data, run.u, run.v)
    bound = lx * run.du + ly * run.dv + 1e-3
    assert clean.mean() > (0.7 if holes else 0.95)
    assert np.all(np.abs(run.ours - run.gdal)[clean] <= bound[clean])
    # validity differs only where the two coordinates pick different source pixels
    differ = np.isnan(run.ours) != np.isnan(run.gdal)
    assert not np.any(differ & same)


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_nearest_agrees_with_gdal_except_at_pixel_boundary_ties(pair):
    """Identical except where GDAL's and our coordinates straddle a source pixel boundary.

    Those ties are counted. Measured: 0.01% (UTM -> EPSG:2157) to 0.67% (EPSG:4326, where GDAL's
    coordinates are up to 0.01 px off) of the pixels; every differing pixel is such a tie.
    """
    data = with_holes(smooth(pair.src.shape.yx))
    run = gdal_run(pair, data, "nearest")
    ties = ~_same_cells(run, 0.0)
    differ = ~((run.ours == run.gdal) | (np.isnan(run.ours) & np.isnan(run.gdal)))
    assert not np.any(differ & ~ties)
    assert differ.sum() <= ties.sum() < 0.01 * ties.size


def _same_cells(run: GdalRun, shift: float) -> np.ndarray:
    """Whether GDAL's and our coordinates, less ``shift``, fall in the same source pixel."""
    same_col = np.floor(run.u - shift) == np.floor(run.gu - shift)
    return same_col & (np.floor(run.v - shift) == np.floor(run.gv - shift))


def _neighbourhood_valid(data: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the 2 x 2 source neighbourhood of each coordinate is inside and has no nodata."""
    left = np.floor(u - 0.5).astype(int)
    top = np.floor(v - 0.5).astype(int)
    ny, nx = data.shape
    ok = (left >= 0) & (top >= 0) & (left + 1 < nx) & (top + 1 < ny)
    left, top = np.where(ok, left, 0), np.where(ok, top, 0)
    for dr in (0, 1):
        for dc in (0, 1):
            ok &= data[top + dr, left + dc] != NODATA
    return ok


# --- tile invariance ---------------------------------------------------------------------------


@cache
def whole(pair_index: int, resampling: str, categorical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source data and the whole output grid read in one piece."""
    pair = PAIRS[pair_index]
    data = noise(pair.src.shape.yx)
    if categorical:
        data = (data % 12).astype(np.uint8)
    return data, read_tile(data, pair.src, pair.output(), resampling, categorical=categorical)


@settings(max_examples=120, deadline=None)
@given(
    pair_index=st.integers(0, len(PAIRS) - 1),
    mode=st.sampled_from([("bilinear", False), ("nearest", False), ("nearest", True)]),
    y0=st.integers(-40, 1700),
    x0=st.integers(-40, 1700),
    height=st.integers(64, 700),
    width=st.integers(64, 700),
)
def test_any_sub_tile_equals_the_whole(pair_index, mode, y0, x0, height, width):
    """GeoBox slices at odd offsets and sizes, partly outside the raster, match bit for bit."""
    pair = PAIRS[pair_index]
    resampling, categorical = mode
    data, full = whole(pair_index, resampling, categorical)
    gbox = pair.output()
    window = _clip(gbox, y0, x0, height, width)
    got = read_tile(data, pair.src, gbox[window], resampling, categorical=categorical)
    np.testing.assert_array_equal(got, full[window])


def _clip(gbox: GeoBox, y0: int, x0: int, height: int, width: int) -> tuple[slice, slice]:
    """A window of ``gbox`` (GeoBox slicing does not clip: a tile past the edge grows the grid)."""
    ny, nx = gbox.shape.yx
    y0, x0 = min(max(y0, 0), ny - 1), min(max(x0, 0), nx - 1)
    return slice(y0, min(y0 + height, ny)), slice(x0, min(x0 + width, nx))


def test_tiles_cover_real_data():
    """The invariance tests compare real values, not just nodata."""
    for index in range(len(PAIRS)):
        _, full = whole(index, "bilinear", False)
        assert 0.3 < np.isfinite(full).mean() < 0.99


FILE_GRID = GeoBox((1000, 1000), Affine(10, 0, 610_000, 0, -10, 5_895_000), "EPSG:32629")
"""The grid of the files the reader tests write (10 km of UTM 29N)."""

READS = [("b04", "bilinear", False), ("b04", "nearest", False), ("scl", "nearest", True)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Tiled GeoTIFFs with overviews and nodata holes: reflectance DNs and classes."""
    folder = tmp_path_factory.mktemp("warp")
    b04 = noise(FILE_GRID.shape.yx, seed=5)
    scl = with_holes((b04 % 11 + 1).astype(np.uint8), seed=6)
    return {
        name: _write(folder / f"{name}.tif", data) for name, data in (("b04", b04), ("scl", scl))
    }


def _write(path, data: np.ndarray) -> str:
    profile = dict(
        driver="GTiff",
        width=FILE_GRID.shape.x,
        height=FILE_GRID.shape.y,
        count=1,
        dtype=data.dtype.name,
        crs=FILE_GRID.crs.to_wkt(),
        transform=FILE_GRID.affine,
        nodata=NODATA,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.build_overviews([2, 4], Resampling.nearest)
    return str(path)


def _file_output(crs: str, resolution: float) -> GeoBox:
    bbox = FILE_GRID.extent.to_crs(crs).boundingbox
    return GeoBox.from_bbox(bbox, crs, resolution=resolution).pad(5)


def _read(href: str, gbox: GeoBox, resampling: str, categorical: bool) -> np.ndarray:
    got = read_window(href, gbox, resampling, categorical=categorical, nodata=NODATA)
    if got is not None:
        return got
    if categorical:
        return np.zeros(gbox.shape.yx, dtype=np.uint8)
    return np.full(gbox.shape.yx, np.nan, dtype=np.float32)


@pytest.mark.parametrize("crs, resolution", [("EPSG:2157", 10), ("EPSG:4326", 0.0001)])
@pytest.mark.parametrize("name, resampling, categorical", READS)
def test_reader_tiles_of_any_size_assemble_to_the_whole(
    files, crs, resolution, name, resampling, categorical
):
    """read_window on a file: tiles of 128, 256 and 700 px give exactly the one-piece read."""
    gbox = _file_output(crs, resolution)
    full = _read(files[name], gbox, resampling, categorical)
    assert 0.5 < np.mean(full != 0 if categorical else np.isfinite(full)) < 0.99
    for size in (128, 256, 700):
        tiles = GeoboxTiles(gbox, (size, size))
        mosaic = np.empty_like(full)
        for index in np.ndindex(*tiles.shape.yx):
            mosaic[tiles.roi[index]] = _read(files[name], tiles[index], resampling, categorical)
        np.testing.assert_array_equal(mosaic, full, err_msg=f"tile size {size}")


@settings(max_examples=40, deadline=None)
@given(
    read=st.sampled_from(READS),
    y0=st.integers(0, 1100),
    x0=st.integers(0, 1100),
    height=st.integers(64, 700),
    width=st.integers(64, 700),
)
def test_reader_windows_of_random_tiles_equal_the_whole(files, read, y0, x0, height, width):
    name, resampling, categorical = read
    gbox = _file_output("EPSG:2157", 10)
    full = _whole_read(files[name], resampling, categorical)
    window = _clip(gbox, y0, x0, height, width)
    got = _read(files[name], gbox[window], resampling, categorical)
    np.testing.assert_array_equal(got, full[window])


@cache
def _whole_read(href: str, resampling: str, categorical: bool) -> np.ndarray:
    return _read(href, _file_output("EPSG:2157", 10), resampling, categorical)


# --- threads, errors, fallbacks ----------------------------------------------------------------


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has a single thread")
@pytest.mark.parametrize("resampling", ["bilinear", "nearest"])
def test_thread_count_does_not_change_the_result(resampling):
    pair = PAIRS[1]
    data = noise(pair.src.shape.yx)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = read_tile(data, pair.src, pair.output(), resampling)
        numba.set_num_threads(2)
        two = read_tile(data, pair.src, pair.output(), resampling)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_a_window_too_small_is_an_error_not_a_tile_dependent_value():
    pair = PAIRS[1]
    data = smooth(pair.src.shape.yx)
    out = pair.output()[500:700, 500:700]
    roi = compute_reproject_roi(pair.src, out, padding=2)
    rows, cols = roi.roi_src
    tight = (slice(rows.start + 3, rows.stop), cols)
    with pytest.raises(ReadError, match="outside the window"):
        warp_window(
            data[tight], pair.src, tight, out, "bilinear", categorical=False, src_nodata=NODATA
        )


def test_rotated_output_and_cubic_go_to_gdal():
    pair = PAIRS[1]
    data = smooth(pair.src.shape.yx)
    out = pair.output()[500:700, 500:700]
    rotated = GeoBox(out.shape, out.affine * Affine.rotation(10), out.crs)
    for gbox, resampling in ((rotated, "bilinear"), (out, "cubic"), (out, "average")):
        got = read_tile(data, pair.src, gbox, resampling)
        assert np.isfinite(got).mean() > 0.5
    with pytest.raises(ValueError, match="rotation-free"):
        warp_window(
            data,
            pair.src,
            (slice(0, 1500), slice(0, 1500)),
            rotated,
            "bilinear",
            categorical=False,
            src_nodata=NODATA,
        )
