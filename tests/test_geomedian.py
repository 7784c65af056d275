import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.kernel_checks import I16_NODATA, realistic_stack, with_one_and_two_threads

from cloudfree.composite.kernels.geomedian import DEFAULT_EPS, geomedian


def weiszfeld(points, eps, max_iterations):
    """Slow float64 reference: Weiszfeld from the mean with the Vardi-Zhang step, as hdstats."""
    y = points.mean(axis=0)
    iterations = 0
    while iterations < max_iterations:
        dist = np.sqrt(((points - y) ** 2).sum(axis=1))
        at = dist == 0
        if at.all():
            break
        w = 1.0 / dist[~at]
        target = (w[:, None] * points[~at]).sum(axis=0) / w.sum()
        eta = int(at.sum())
        if eta == 0:
            nxt = target
        else:
            r = np.linalg.norm((target - y) * w.sum())
            g = eta / r if r > 0 else 0.0
            nxt = max(0.0, 1.0 - g) * target + min(1.0, g) * y
        iterations += 1
        step = np.linalg.norm(nxt - y)
        y = nxt
        if step < eps:
            break
    return y, iterations


def usable_points(data, valid, nodata, iy, ix):
    pixel = data[:, :, iy, ix]
    use = valid[:, iy, ix] & (pixel != nodata).all(axis=1)
    return pixel[use].astype(np.float64)


def objective(points, y):
    return np.sqrt(((points - y) ** 2).sum(axis=1)).sum()


@st.composite
def stacks(draw, max_t=8):
    dtype = draw(st.sampled_from([np.int16, np.uint16]))
    nodata = I16_NODATA if dtype == np.int16 else 0
    t = draw(st.integers(1, max_t))
    nb = draw(st.integers(1, 4))
    ny, nx = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    if dtype == np.int16:
        lo, hi = draw(st.sampled_from([(-3, 3), (-2000, 12000), (-32767, 32767)]))
    else:
        lo, hi = draw(st.sampled_from([(1, 4), (1, 15000), (60000, 65535)]))
    data = draw(hnp.arrays(dtype, (t, nb, ny, nx), elements=st.integers(lo, hi)))
    holes = draw(hnp.arrays(np.bool_, (t, nb, ny, nx), elements=st.integers(0, 9).map(bool)))
    data[~holes] = nodata  # about one value in ten
    valid = draw(hnp.arrays(np.bool_, (t, ny, nx), elements=st.booleans()))
    return data, valid, nodata


@settings(max_examples=150, deadline=None)
@given(stack=stacks())
def test_matches_a_float64_reference_weiszfeld(stack):
    # The kernel runs the same iteration in float32, accumulating the step relative to the
    # current estimate, so a step differs from float64 by ~1e-7 of the observations' spread.
    # Where the two stop at different steps (a step within rounding of eps) they are one step,
    # less than eps, apart. Hence |kernel - reference| <= 0.5 (the kernel rounds) + eps +
    # 1e-5 * spread (100 times a step's float32 error), and the step counts differ by <= 1.
    data, valid, nodata = stack
    values, iterations = geomedian(data, valid, nodata)
    for iy, ix in np.ndindex(data.shape[2:]):
        points = usable_points(data, valid, nodata, iy, ix)
        if len(points) == 0:
            assert (values[:, iy, ix] == nodata).all()
            assert iterations[iy, ix] == 0
            continue
        ref, ref_iterations = weiszfeld(points, DEFAULT_EPS, 1000)
        spread = float(np.ptp(points, axis=0).max())
        got = values[:, iy, ix].astype(np.float64)
        assert np.abs(got - ref).max() <= 0.5 + DEFAULT_EPS + 1e-5 * (1 + spread), (points, ref)
        if ref_iterations < 1000:
            assert abs(int(iterations[iy, ix]) - ref_iterations) <= 1


@settings(max_examples=100, deadline=None)
@given(stack=stacks())
def test_result_is_no_worse_than_the_mean_or_any_observation(stack):
    # Weiszfeld-Vardi-Zhang never increases the sum of distances, so the result is at least as
    # good as the mean it starts from; run to convergence it beats every observation too.
    # Rounding each band moves the point by at most sqrt(bands) / 2, which can add up to
    # n * sqrt(bands) / 2 to the sum of n distances.
    data, valid, nodata = stack
    values, _ = geomedian(data, valid, nodata, eps=1e-3, max_iterations=65535)
    nb = data.shape[1]
    for iy, ix in np.ndindex(data.shape[2:]):
        points = usable_points(data, valid, nodata, iy, ix)
        if len(points) == 0:
            continue
        got = objective(points, values[:, iy, ix].astype(np.float64))
        slack = len(points) * np.sqrt(nb) / 2 + 1e-6 * (1 + got)
        assert got <= objective(points, points.mean(axis=0)) + slack
        assert got <= min(objective(points, p) for p in points) + slack


def one_pixel(*observations, dtype=np.int16):
    """A (time, band, 1, 1) stack from band vectors, all valid."""
    data = np.array(observations, dtype=dtype)[:, :, None, None]
    return data, np.ones((data.shape[0], 1, 1), dtype=bool)


def test_all_masked_pixel_is_nodata():
    data, valid = one_pixel([100, 200], [300, 400])
    values, iterations = geomedian(data, ~valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [I16_NODATA, I16_NODATA]
    assert iterations[0, 0] == 0


def test_one_usable_observation_is_returned_as_is():
    data, valid = one_pixel([100, -200, 7], [300, 400, 9], [1, 2, 3])
    valid[[0, 2]] = False
    values, iterations = geomedian(data, valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [300, 400, 9]
    assert iterations[0, 0] == 0


def test_two_observations_give_their_mean_rounded_half_to_even():
    # every point between two observations is a minimiser; Weiszfeld from the mean stays there
    data, valid = one_pixel([1, 2, -3, 10], [2, 3, -4, 11])
    values, iterations = geomedian(data, valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [2, 2, -4, 10]  # 1.5, 2.5, -3.5, 10.5 -> even
    assert iterations[0, 0] == 1


def test_identical_observations_need_no_iteration():
    data, valid = one_pixel([5, 6], [5, 6], [5, 6])
    values, iterations = geomedian(data, valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [5, 6]
    assert iterations[0, 0] == 0


def test_collinear_observations_give_the_middle_one():
    # on a line the geometric median is the 1-D median, here an observation the iterates approach
    data, valid = one_pixel([0, 0], [30, 40], [36, 48], [600, 800], [-300, -400])
    values, iterations = geomedian(data, valid, I16_NODATA)
    assert values[:, 0, 0].tolist() == [30, 40]
    assert 0 < iterations[0, 0] < 1000


def test_corners_of_a_square_give_its_centre_and_outliers_barely_move_it():
    data, valid = one_pixel([0, 0], [0, 100], [100, 0], [100, 100])
    assert geomedian(data, valid, I16_NODATA)[0][:, 0, 0].tolist() == [50, 50]
    data, valid = one_pixel([1000, 1000], [1010, 1000], [1000, 1010], [1010, 1010], [9000, 9000])
    values, _ = geomedian(data, valid, I16_NODATA)
    assert np.abs(values[:, 0, 0] - 1005).max() <= 3  # the mean would be 2604


def test_nodata_in_one_band_excludes_the_observation_in_all_bands():
    data, valid = one_pixel([100, 100], [I16_NODATA, 9000], [120, 100], [140, 100])
    values, _ = geomedian(data, valid, I16_NODATA)
    reference, _ = geomedian(data[[0, 2, 3]], valid[[0, 2, 3]], I16_NODATA)
    assert values[:, 0, 0].tolist() == reference[:, 0, 0].tolist() == [120, 100]


def test_int16_negative_values():
    data, valid = one_pixel([-100, -5], [-120, -7], [-110, -30000], [-90, -6])
    values, _ = geomedian(data, valid, I16_NODATA)
    ref, _ = weiszfeld(data[:, :, 0, 0].astype(np.float64), DEFAULT_EPS, 1000)
    assert values.dtype == np.int16
    assert np.abs(values[:, 0, 0] - ref).max() <= 0.5 + DEFAULT_EPS


def test_uint16_near_the_top_of_the_range_with_nodata_zero():
    data, valid = one_pixel(
        [65535, 65535], [65534, 65535], [65535, 65533], [0, 65535], [1, 1], dtype=np.uint16
    )
    values, _ = geomedian(data, valid, 0)
    assert values.dtype == np.uint16
    ref, _ = weiszfeld(data[[0, 1, 2, 4], :, 0, 0].astype(np.float64), DEFAULT_EPS, 1000)
    assert np.abs(values[:, 0, 0].astype(np.float64) - ref).max() <= 0.5 + DEFAULT_EPS
    assert values[:, 0, 0].min() >= 65533


def test_zero_iterations_give_the_rounded_mean():
    data, valid = one_pixel([0, 1], [1, 2], [9, 2], [0, 0])
    values, iterations = geomedian(data, valid, I16_NODATA, max_iterations=0)
    assert values[:, 0, 0].tolist() == [2, 1]  # 2.5 -> 2, 1.25 -> 1
    assert iterations[0, 0] == 0


def test_no_time_steps():
    values, iterations = geomedian(
        np.zeros((0, 2, 3, 4), np.int16), np.zeros((0, 3, 4), bool), I16_NODATA
    )
    assert (values == I16_NODATA).all() and values.shape == (2, 3, 4)
    assert (iterations == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"max_iterations": 70000}, ValueError, "max_iterations"),
        ({"nodata": 70000}, ValueError, "nodata"),
        ({"data": np.zeros((2, 1, 3, 4), np.float32)}, TypeError, "int16 or uint16"),
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
        geomedian(args.pop("data"), args.pop("valid"), args.pop("nodata"), **args)


def test_same_result_with_one_or_two_threads():
    data, valid = realistic_stack()
    one, two = with_one_and_two_threads(geomedian, data, valid, I16_NODATA)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


@functools.cache
def full_result():
    data, valid = realistic_stack(seed=1)
    return data, valid, geomedian(data, valid, I16_NODATA)


@settings(max_examples=25, deadline=None)
@given(
    y=st.lists(st.integers(0, 40), min_size=2, max_size=2, unique=True).map(sorted),
    x=st.lists(st.integers(0, 300), min_size=2, max_size=2, unique=True).map(sorted),
)
def test_a_crop_gives_the_crop_of_the_result(y, x):
    data, valid, (values, iterations) = full_result()
    window = (slice(*y), slice(*x))
    crop = geomedian(data[(..., *window)], valid[(..., *window)], I16_NODATA)
    assert np.array_equal(crop[0], values[(..., *window)])
    assert np.array_equal(crop[1], iterations[window])


def test_lane_count_does_not_change_results():
    # pixels land in other lanes, and lane loops of other lengths take other (vector or scalar)
    # code paths: every pixel's arithmetic must stay the same
    from cloudfree.composite.kernels.geomedian import _geomedian

    data, valid, (values, iterations) = full_result()
    for lanes in (1, 7, 16, 200):
        other = np.empty_like(values)
        steps = np.zeros_like(iterations)
        eps2 = DEFAULT_EPS * DEFAULT_EPS
        _geomedian(data, valid, np.int16(I16_NODATA), False, eps2, 1000, lanes, other, steps)
        assert np.array_equal(other, values) and np.array_equal(steps, iterations)
