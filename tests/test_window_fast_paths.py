"""Windows on the output's own grid: pasted or repeated, and exactly what the warp gives."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_is_empty

from cloudfree.load import to_reflectance
from cloudfree.readers.encode import (
    lookup_into,
    reflectance_into,
    reflectance_table,
    shifted_into,
    upsample_into,
    whole_shift,
)
from cloudfree.readers.warp import warp_window
from cloudfree.readers.window import Pasted, aligned_read, place_window, place_window_raw
from cloudfree.scene import BandAsset
from cloudfree.stack import NODATA, VALUE_MAX, VALUE_MIN

SRC_NODATA = 0
CRS = "EPSG:32629"


def source(resolution: int) -> GeoBox:
    """A 10/20/30 m source grid whose origin is a multiple of 60 m."""
    size = 1200 // resolution * 10
    return GeoBox((size, size), Affine(resolution, 0, 600_000, 0, -resolution, 5_900_020), CRS)


def values(shape: tuple[int, int], *, categorical: bool, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if categorical:
        data = rng.integers(0, 12, shape).astype(np.uint8)  # 0 is nodata
    else:
        data = rng.integers(1, 12_000, shape).astype(np.uint16)
        data[rng.random(shape) < 0.02] = SRC_NODATA
    return data


def both_paths(
    data: np.ndarray, src: GeoBox, tile: GeoBox, resampling: str, categorical: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the readers' result, the warp of the padded window as before the fast paths).

    ``None`` where the read finds no overlap (the readers' "scene misses the tile").
    """
    roi = compute_reproject_roi(src, tile, padding=2)
    warped = None
    if not (roi_is_empty(roi.roi_dst) or roi_is_empty(roi.roi_src)):
        rows, cols = roi.roi_src
        padded = slice(rows.start, rows.stop), slice(cols.start, cols.stop)
        warped = warp_window(
            data[padded],
            src,
            padded,
            tile,
            resampling,
            categorical=categorical,
            src_nodata=SRC_NODATA,
        )
    aligned = aligned_read(src, tile, "nearest" if categorical else resampling)
    assert aligned is not None
    if aligned.window is None:
        return None, warped
    placed = aligned.place(
        data[aligned.window], tile, categorical=categorical, src_nodata=SRC_NODATA
    )
    if isinstance(placed, Pasted):
        return placed.materialise(tile, categorical=categorical), warped
    return placed, warped


CASES = [
    (10, "bilinear", False),
    (10, "nearest", False),
    (20, "nearest", True),
    (30, "nearest", True),
    (20, "nearest", False),
]
"""(source resolution, resampling, categorical) onto a 10 m grid aligned with the source."""


@settings(max_examples=150, deadline=None)
@given(
    case=st.sampled_from(CASES),
    y0=st.integers(-300, 1500),
    x0=st.integers(-300, 1500),
    height=st.integers(1, 700),
    width=st.integers(1, 700),
)
def test_same_grid_windows_equal_the_warp(case, y0, x0, height, width):
    """Any 10 m tile of the source's grid (partly outside it, odd offsets): bit-identical."""
    resolution, resampling, categorical = case
    src = source(resolution)
    data = values(src.shape.yx, categorical=categorical)
    grid = GeoBox((1, 1), Affine(10, 0, 600_000, 0, -10, 5_900_020), CRS)
    tile = GeoBox((height, width), grid.affine * Affine.translation(x0, y0), CRS)
    got, warped = both_paths(data, src, tile, resampling, categorical)
    if got is None:  # no overlap: the warp, if odc-geo's padding reached the source, has no data
        assert warped is None or (warped == 0 if categorical else np.isnan(warped)).all()
        return
    assert warped is not None
    np.testing.assert_array_equal(got, warped)
    # odc-geo's padded window through place_window (a warp, not an aligned read): the same
    roi = compute_reproject_roi(src, tile, padding=2)
    rows, cols = roi.roi_src
    padded = place_window(
        data[rows.start : rows.stop, cols.start : cols.stop],
        src,
        tile,
        roi,
        resampling,
        categorical=categorical,
        src_nodata=SRC_NODATA,
    )
    np.testing.assert_array_equal(padded, warped)


@pytest.mark.parametrize("resolution, resampling", [(10, "bilinear"), (20, "nearest")])
def test_aligned_reads_take_no_padding(resolution, resampling):
    src = source(resolution)
    tile = GeoBox((256, 256), Affine(10, 0, 600_000 + 2560, 0, -10, 5_900_020 - 2560), CRS)
    aligned = aligned_read(src, tile, resampling)
    assert aligned is not None and aligned.window is not None
    rows, cols = aligned.window
    side = 256 * 10 // resolution
    start = 256 * 10 // resolution
    assert (rows.start, rows.stop, cols.start, cols.stop) == (start, start + side) * 2
    data = values(src.shape.yx, categorical=False)
    placed = aligned.place(data[rows, cols], tile, categorical=False, src_nodata=SRC_NODATA)
    assert isinstance(placed, Pasted) == (resolution == 10)


def test_aligned_reads_outside_the_source_find_no_overlap():
    src = source(20)  # 600 x 600 px of 20 m
    beyond = GeoBox((64, 64), Affine(10, 0, 600_000 + 12_000, 0, -10, 5_900_020), CRS)
    aligned = aligned_read(src, beyond, "nearest")
    assert aligned is not None and aligned.window is None
    # half in: the last 20 m column under the first two 10 m ones
    edge = GeoBox((8, 8), Affine(10, 0, 600_000 + 11_980, 0, -10, 5_900_020), CRS)
    aligned = aligned_read(src, edge, "nearest")
    assert aligned is not None and aligned.window == (slice(0, 4), slice(599, 600))


@pytest.mark.parametrize("resampling", ["cubic", "average"])
def test_other_resamplings_are_not_aligned_reads(resampling):
    src = source(10)
    tile = GeoBox((64, 64), Affine(10, 0, 600_100, 0, -10, 5_900_000), CRS)
    assert aligned_read(src, tile, resampling) is None
    assert aligned_read(source(20), tile, "bilinear") is None  # 20 m bilinear is a real warp


def test_other_grids_are_still_warped():
    """Half a pixel off the source's grid: no aligned read, and place_window warps."""
    src = source(10)
    tile = GeoBox((64, 64), Affine(10, 0, 600_005, 0, -10, 5_900_000), CRS)
    assert aligned_read(src, tile, "bilinear") is None
    roi = compute_reproject_roi(src, tile, padding=2)
    rows, cols = roi.roi_src
    data = values(src.shape.yx, categorical=False)
    placed = place_window_raw(
        data[rows.start : rows.stop, cols.start : cols.stop],
        src,
        tile,
        roi,
        "bilinear",
        categorical=False,
        src_nodata=SRC_NODATA,
    )
    assert not isinstance(placed, Pasted)


@settings(max_examples=60, deadline=None)
@given(
    scale=st.sampled_from([1e-4, 2.5e-5, 1e-3, 0.0001234]),
    offset=st.sampled_from([0.0, -0.1, 0.05, -0.12345]),
    seed=st.integers(0, 2**16),
)
def test_direct_conversion_equals_to_reflectance(scale, offset, seed):
    """DNs straight to int16 reflectance: the same values as float32 DNs through to_reflectance."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 65_535, (40, 50)).astype(np.uint16)
    block[:3] = 0
    asset = BandAsset(href="x.tif", scale=scale, offset=offset, nodata=0, resolution=10.0)
    dn = block.astype(np.float32)
    dn[block == 0] = np.nan
    expected = to_reflectance(dn, asset)
    got = np.full(block.shape, NODATA, dtype=np.int16)
    factor = np.float32(scale / 1e-4)
    shift = np.float32(offset / 1e-4)
    reflectance_into(block, 0.0, factor, shift, VALUE_MIN, VALUE_MAX, int(NODATA), got)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    scale=st.sampled_from([1e-4, 2.5e-5, 1e-3, 0.0001234]),
    offset=st.sampled_from([0.0, -0.1, 0.05, -0.12345]),
    nodata=st.sampled_from([0.0, 255.0, 65535.0, -9999.0]),
    dtype=st.sampled_from(["uint8", "uint16"]),
    seed=st.integers(0, 2**16),
)
def test_the_lookup_table_gives_what_the_conversion_gives(scale, offset, nodata, dtype, seed):
    """Unsigned DNs through the table: every value, nodata and clipping as reflectance_into."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    block = rng.integers(0, top + 1, (30, 70)).astype(dtype)
    block[0, :3] = (0, top, min(int(abs(nodata)), top))
    factor = np.float32(scale / 1e-4)
    shift = np.float32(offset / 1e-4)
    expected = np.empty(block.shape, dtype=np.int16)
    reflectance_into(block, nodata, factor, shift, VALUE_MIN, VALUE_MAX, int(NODATA), expected)
    table = reflectance_table(block.dtype.str, nodata, factor, shift, VALUE_MIN, VALUE_MAX)
    got = np.empty((40, 90), dtype=np.int16)[5:35, 10:80]  # a view, as the stack's windows are
    lookup_into(block, table, got)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    offset=st.sampled_from([0.0, -0.1, 0.05, -3.3, 3.3]),
    nodata=st.sampled_from([0.0, 255.0, 65535.0, -9999.0]),
    dtype=st.sampled_from(["uint8", "uint16"]),
    seed=st.integers(0, 2**16),
)
def test_a_whole_shift_in_integers_gives_what_the_conversion_gives(offset, nodata, dtype, seed):
    """DN + shift (scale 1e-4: factor 1): every value, nodata and clipping as reflectance_into."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    block = rng.integers(0, top + 1, (30, 70)).astype(dtype)
    block[0, :3] = (0, top, min(int(abs(nodata)), top))
    factor = np.float32(1e-4 / 1e-4)
    shift = np.float32(offset / 1e-4)
    whole = whole_shift(factor, shift)
    assert whole is not None
    expected = np.empty(block.shape, dtype=np.int16)
    reflectance_into(block, nodata, factor, shift, VALUE_MIN, VALUE_MAX, int(NODATA), expected)
    got = np.empty((40, 90), dtype=np.int16)[5:35, 10:80]
    limits = (VALUE_MIN, VALUE_MAX, int(NODATA))
    shifted_into(block, int(nodata), whole, *limits, got, np.empty((0, 0), dtype=bool), True)
    np.testing.assert_array_equal(got, expected)
    # the presence kept on the way: set by a first band, and-ed by the next
    present = np.zeros((40, 90), dtype=bool)[5:35, 10:80]
    again = np.empty_like(got)
    shifted_into(block, int(nodata), whole, *limits, again, present, True)
    np.testing.assert_array_equal(present, expected != NODATA)
    shifted_into(np.roll(block, 7), int(nodata), whole, *limits, again, present, False)
    np.testing.assert_array_equal(present, (expected != NODATA) & (again != NODATA))
    if offset == 3.3:  # 33000 added to large DNs passes the int16 range: clipped, not wrapped
        assert (got == VALUE_MAX).any()


def test_only_a_factor_of_one_and_a_whole_shift_are_integer_arithmetic():
    assert whole_shift(np.float32(1), np.float32(-1000)) == -1000
    assert whole_shift(np.float32(2.5), np.float32(0)) is None
    assert whole_shift(np.float32(1), np.float32(-1000.5)) is None


@pytest.mark.parametrize(
    "factors", [(2, 2, 0, 0), (2, 2, 1, 1), (3, 2, 2, 1), (2, 6, 1, 5), (1, 1, 0, 0)]
)
def test_nearest_upsampling_by_whole_factors(factors):
    fy, fx, oy, ox = factors
    rng = np.random.default_rng(sum(factors))
    block = rng.integers(0, 12, (37, 41)).astype(np.uint8)
    ny, nx = 37 * fy - oy - 3, 41 * fx - ox - 2
    expected = block[(oy + np.arange(ny)) // fy][:, (ox + np.arange(nx)) // fx]
    got = np.empty((ny + 4, nx + 6), dtype=np.uint8)[2 : 2 + ny, 3 : 3 + nx]
    upsample_into(block, fy, fx, oy, ox, got)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fx", [1, 2, 3, 6])
def test_nearest_upsampling_at_every_offset_and_width(fx):
    # windows narrower than one source pixel, ending inside one, or on the block's last column
    rng = np.random.default_rng(fx)
    block = rng.integers(0, 250, (3, 9)).astype(np.uint8)
    for ox in range(fx):
        for nx in range(1, 9 * fx - ox + 1):
            expected = block[:, (ox + np.arange(nx)) // fx]
            got = np.full((3, nx + 2), 255, dtype=np.uint8)
            upsample_into(block, 1, fx, 0, ox, got[:, 1 : 1 + nx])
            np.testing.assert_array_equal(got[:, 1 : 1 + nx], expected, err_msg=f"{ox} {nx}")
            assert (got[:, 0] == 255).all() and (got[:, -1] == 255).all()


def test_an_overview_on_the_outputs_lattice_is_read_without_padding(tmp_path, monkeypatch):
    """A 20 m output over a 10 m COG: its 2x overview is read exactly under the tile."""
    import rasterio.io

    from cloudfree.readers.gdal_band import read_window_raw
    from cloudfree.testing.cog import CogSpec, write_cog

    data = values((512, 512), categorical=False)
    spec = CogSpec(CRS, (10, 0, 600_000, 0, -10, 5_900_020), SRC_NODATA, "nearest", 128, "B04")
    path = tmp_path / "b04.tif"
    write_cog(path, data, spec)
    tile = GeoBox((64, 64), Affine(20, 0, 600_000 + 1280, 0, -20, 5_900_020 - 640), CRS)
    windows = []
    read = rasterio.io.DatasetReader.read

    def recording(self, *args, **kwargs):
        windows.append((self.width, kwargs["window"]))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", recording)
    placed = read_window_raw(str(path), tile, "nearest", categorical=False, nodata=SRC_NODATA)
    assert len(windows) == 1
    width, window = windows[0]
    assert width == 256  # the overview, not the 10 m image
    assert (window.row_off, window.col_off, window.height, window.width) == (32, 64, 64, 64)
    assert isinstance(placed, Pasted) and placed.covers((64, 64))
    monkeypatch.undo()
    with rasterio.open(path, overview_level=0) as overview:
        np.testing.assert_array_equal(placed.block, overview.read(1)[32:96, 64:128])
