import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.kernel_checks import I16_NODATA, realistic_stack, with_one_and_two_threads

from cloudfree.composite.kernels.medoid import medoid


def reference_medoid(data, valid, nodata):
    """Slow reference: per pixel, numpy's median of the usable observations, then the nearest."""
    _, nb, ny, nx = data.shape
    values = np.full((nb, ny, nx), nodata, dtype=data.dtype)
    index = np.full((ny, nx), -1, dtype=np.int16)
    for iy, ix in np.ndindex(ny, nx):
        pixel = data[:, :, iy, ix]
        use = valid[:, iy, ix] & (pixel != nodata).all(axis=1)
        if not use.any():
            continue
        obs = pixel.astype(np.float64)
        centre = np.median(obs[use], axis=0)
        dist = np.linalg.norm(obs - centre, axis=1)
        dist[~use] = np.inf
        best = int(np.argmin(dist))  # the first of equal distances
        index[iy, ix] = best
        values[:, iy, ix] = pixel[best]
    return values, index


@st.composite
def stacks(draw):
    dtype = draw(st.sampled_from([np.int16, np.uint16]))
    nodata = I16_NODATA if dtype == np.int16 else 0
    t = draw(st.integers(1, 9))
    nb = draw(st.integers(1, 4))
    ny, nx = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    if dtype == np.int16:
        lo, hi = draw(st.sampled_from([(-3, 3), (-2000, 12000), (-32767, 32767)]))
    else:
        lo, hi = draw(st.sampled_from([(1, 4), (1, 15000), (60000, 65535)]))
    data = draw(hnp.arrays(dtype, (t, nb, ny, nx), elements=st.integers(lo, hi)))
    keep = draw(hnp.arrays(np.bool_, (t, nb, ny, nx), elements=st.integers(0, 9).map(bool)))
    data[~keep] = nodata  # about one value in ten
    valid = draw(hnp.arrays(np.bool_, (t, ny, nx), elements=st.booleans()))
    return data, valid, nodata


@settings(max_examples=300, deadline=None)
@given(stack=stacks())
def test_equals_the_reference_exactly(stack):
    # small value ranges make many ties (equal distances, equal medians): the earliest wins
    data, valid, nodata = stack
    values, index = medoid(data, valid, nodata)
    expected_values, expected_index = reference_medoid(data, valid, nodata)
    assert values.dtype == data.dtype and index.dtype == np.int16
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(values, expected_values)


def one_pixel(*observations, dtype=np.int16):
    """A (time, band, 1, 1) stack from band vectors, all valid."""
    data = np.array(observations, dtype=dtype)[:, :, None, None]
    return data, np.ones((data.shape[0], 1, 1), dtype=bool)


def test_all_masked_pixel_is_nodata_and_index_minus_one():
    data, valid = one_pixel([100, 200], [300, 400])
    values, index = medoid(data, ~valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [I16_NODATA, I16_NODATA]
    assert index[0, 0] == -1


def test_one_usable_observation_is_chosen():
    data, valid = one_pixel([100, 200], [300, 400], [500, 600])
    valid[[0, 2]] = False
    values, index = medoid(data, valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [300, 400]
    assert index[0, 0] == 1


def test_all_bands_come_from_one_observation():
    # band-wise medians (20, 20) mix observations; the medoid is one of them, the nearest
    data, valid = one_pixel([10, 30], [20, 20], [30, 10], [21, 40])
    values, index = medoid(data, valid, I16_NODATA)
    assert index[0, 0] == 1
    assert values[:, 0, 0].tolist() == [20, 20]


def test_even_count_median_is_not_rounded():
    # median of 0, 1 is 0.5: both are 0.5 away, so the earliest wins; rounding it to 0 (half
    # to even) would pick the later observation 0 instead
    data, valid = one_pixel([1], [0])
    values, index = medoid(data, valid, I16_NODATA)
    assert index[0, 0] == 0 and values[0, 0, 0] == 1


def test_ties_go_to_the_earliest_observation():
    data, valid = one_pixel([5, 5], [1, 1], [9, 9], [5, 5])
    values, index = medoid(data, valid, I16_NODATA)
    assert index[0, 0] == 0
    assert values[:, 0, 0].tolist() == [5, 5]


def test_nodata_in_one_band_excludes_the_observation_in_all_bands():
    # observation 1 lacks band 1; counted in band 0 alone it would move that band's median
    # from 105 to 107.5 and make observation 1 (110 in band 0) a candidate
    data, valid = one_pixel([100, 100], [110, I16_NODATA], [120, 130], [105, 90], [108, 98])
    values, index = medoid(data, valid, I16_NODATA)
    without, without_index = medoid(data[[0, 2, 3, 4]], valid[[0, 2, 3, 4]], I16_NODATA)
    assert values[:, 0, 0].tolist() == without[:, 0, 0].tolist()
    assert index[0, 0] == [0, 2, 3, 4][without_index[0, 0]]


def test_int16_negative_values():
    data, valid = one_pixel([-100, -5], [-120, -7], [-110, -30000], [-90, -6])
    values, index = medoid(data, valid, I16_NODATA)
    expected = reference_medoid(data, valid, I16_NODATA)
    assert index[0, 0] == expected[1][0, 0]
    assert values[:, 0, 0].tolist() == expected[0][:, 0, 0].tolist()


def test_uint16_near_the_top_of_the_range_with_nodata_zero():
    data, valid = one_pixel([65535, 65535], [65534, 65535], [0, 65533], [65535, 1], dtype=np.uint16)
    values, index = medoid(data, valid, 0)
    assert values.dtype == np.uint16
    # usable: 0, 1, 3 -> median (65535, 65535): observation 0 itself
    assert index[0, 0] == 0
    assert values[:, 0, 0].tolist() == [65535, 65535]


def test_no_time_steps():
    values, index = medoid(np.zeros((0, 2, 3, 4), np.int16), np.zeros((0, 3, 4), bool), -1)
    assert (values == -1).all() and values.shape == (2, 3, 4)
    assert (index == -1).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"nodata": 70000}, ValueError, "nodata"),
        ({"data": np.zeros((2, 1, 3, 4), np.float32)}, TypeError, "int16 or uint16"),
        ({"data": np.zeros((2, 3, 4), np.int16)}, ValueError, "time, band, y, x"),
        ({"valid": np.zeros((2, 3, 5), bool)}, ValueError, "does not match"),
        ({"valid": np.zeros((2, 3, 4), np.uint8)}, TypeError, "bool"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {
        "data": np.zeros((2, 1, 3, 4), np.int16),
        "valid": np.zeros((2, 3, 4), bool),
        "nodata": I16_NODATA,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        medoid(args["data"], args["valid"], args["nodata"])


def test_realistic_stack_equals_the_reference():
    # wider than one 512-pixel block of the kernel
    data, valid = realistic_stack(nx=600, ny=2)
    values, index = medoid(data, valid, I16_NODATA)
    expected_values, expected_index = reference_medoid(data, valid, I16_NODATA)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(values, expected_values)


def test_same_result_with_one_or_two_threads():
    data, valid = realistic_stack(nx=700)
    one, two = with_one_and_two_threads(medoid, data, valid, I16_NODATA)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


@functools.cache
def full_result():
    data, valid = realistic_stack(seed=1, nx=700)
    return data, valid, medoid(data, valid, I16_NODATA)


@settings(max_examples=25, deadline=None)
@given(
    y=st.lists(st.integers(0, 40), min_size=2, max_size=2, unique=True).map(sorted),
    x=st.lists(st.integers(0, 700), min_size=2, max_size=2, unique=True).map(sorted),
)
def test_a_crop_gives_the_crop_of_the_result(y, x):
    data, valid, (values, index) = full_result()
    window = (slice(*y), slice(*x))
    crop = medoid(data[(..., *window)], valid[(..., *window)], I16_NODATA)
    assert np.array_equal(crop[0], values[(..., *window)])
    assert np.array_equal(crop[1], index[window])
