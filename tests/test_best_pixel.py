import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize

from cloudfree.composite.kernels.best_pixel import (
    BapParameters,
    Combine,
    DoyShape,
    best_pixel,
    day_offsets,
    fit_sigmoid,
    observation_scores,
)
from cloudfree.errors import InvalidInputError

NODATA_I16 = -32768


# --- a slow reference, written from FORCE's formulas (bap-hl.c), one pixel at a time ----------


def ref_logistic(z):
    return 0.0 if z > 700.0 else 1.0 / (1.0 + math.exp(z))


def ref_doy_score(params, doy):
    p0, p1, p2 = params.doy_points
    s0, s1, s2 = params.doy_scores
    o0 = p0 - p1 - 365 if p0 > p1 else p0 - p1
    o2 = p2 - p1 + 365 if p2 < p1 else p2 - p1
    dt = (doy - p1 + 182) % 365 - 182  # nearest occurrence of the target
    if s1 > s0 and s1 > s2:  # Gaussian, sigmas from target_function()
        sigma = abs(o0) / math.sqrt(-2 * math.log(s0 / s1)) if dt < 0 else None
        if dt >= 0:
            sigma = abs(o2) / math.sqrt(-2 * math.log(s2 / s1))
        return s1 * math.exp(dt * dt / (-2 * sigma * sigma))
    a, b = params.curve  # the sigmoid fit is tested on its own below
    if s0 > s2:
        return 0.0 if dt < o0 else s0 / (1 + math.exp(a * dt + b))
    return 0.0 if dt > o2 else s2 / (1 + math.exp(a * dt + b))


def ref_pixel(data, valid, nodata, doy, distance, params, blue, red, scale, offset, y, x):
    """Returns (chosen index or -1, its total score, per-observation list of dicts)."""
    wd, wc, wh = params.doy_weight, params.cloud_weight, params.haze_weight
    obs = []
    for t in range(data.shape[0]):
        usable = bool(valid[t, y, x]) and all(
            data[t, b, y, x] != nodata for b in range(data.shape[1])
        )
        if not usable:
            obs.append(None)
            continue
        d = ref_doy_score(params, int(doy[t]))
        c = 0.0
        if wc > 0:
            dreq = params.dreq_m
            c = ref_logistic((-10.0 / dreq) * (float(distance[t, y, x]) - dreq / 2.0))
        h = 0.0
        if wh > 0:
            b_ = int(data[t, blue, y, x]) * scale + offset
            r_ = int(data[t, red, y, x]) * scale + offset
            hot = b_ - 0.5 * r_ - 0.08
            h = ref_logistic((10.0 / params.haze_width) * (hot - params.haze_midpoint))
        if params.combine is Combine.MULTIPLY:
            total = 1.0
            for w, s in ((wd, d), (wc, c), (wh, h)):
                if w > 0:
                    total *= w * s
        else:
            total = 0.0
            for w, s in ((wd, d), (wc, c), (wh, h)):
                if w > 0:
                    total += w * s
            total /= sum(w for w in (wd, wc, wh) if w > 0)
        season = params.off_season or d >= 0.01
        obs.append({"d": d, "c": c, "h": h, "total": total, "season": season})
    # haze_stats(): mean and sample sd of h over usable in-season observations
    hs = [o["h"] for o in obs if o is not None and o["season"]]
    haze_filter = False
    if wh > 0 and not params.use_hazy and len(hs) >= 2:
        mean = sum(hs) / len(hs)
        squares = 0.0
        for v in hs:
            squares += (v - mean) * (v - mean)
        haze_filter = mean > 0.01 and math.sqrt(squares / (len(hs) - 1)) > 0.01
    best, best_total = -1, -1.0
    for t, o in enumerate(obs):
        if o is None:
            continue
        keep = o["season"]
        if haze_filter and o["h"] < 0.01:
            keep = False
        if wc > 0 and not params.use_cloudy and o["c"] < 0.01:
            keep = False
        o["eligible"] = keep
        if keep and o["total"] > best_total:
            best, best_total = t, o["total"]
    return best, best_total, obs


# --- strategies ------------------------------------------------------------------------------


@st.composite
def parameters(draw):
    weights = (
        draw(st.sampled_from([1.0, 0.5, 0.0])),
        draw(st.sampled_from([0.4, 1.0, 0.0])),
        draw(st.sampled_from([0.3, 0.7, 0.0])),
    )
    if sum(weights) == 0:
        weights = (1.0, 0.0, 0.0)
    return BapParameters(
        doy_points=draw(st.sampled_from([(120, 180, 240), (330, 30, 90), (300, 330, 30)])),
        doy_scores=draw(
            st.sampled_from(
                [(0.01, 0.99, 0.01), (0.3, 0.9, 0.6), (0.99, 0.5, 0.01), (0.2, 0.6, 0.9)]
            )
        ),
        doy_weight=weights[0],
        cloud_weight=weights[1],
        haze_weight=weights[2],
        dreq_m=draw(st.sampled_from([3000.0, 500.0])),
        combine=draw(st.sampled_from(list(Combine))),
        off_season=draw(st.booleans()),
        use_cloudy=draw(st.booleans()),
        use_hazy=draw(st.booleans()),
    )


@st.composite
def stacks(draw, dtype=np.int16, nodata=NODATA_I16):
    t = draw(st.integers(1, 7))
    nb = draw(st.integers(2, 4))
    shape = (t, nb, 3, 4)
    values = st.integers(-500, 4000) if dtype == np.int16 else st.integers(0, 5000)
    data = draw(hnp.arrays(dtype, shape, elements=values | st.just(nodata)))
    valid = draw(hnp.arrays(np.bool_, (t, 3, 4), elements=st.booleans() | st.just(True)))
    distance = draw(
        hnp.arrays(
            np.float32,
            (t, 3, 4),
            elements=st.floats(0, 3000, width=32) | st.sampled_from([0.0, 1500.0, 3000.0]),
        )
    )
    doy = np.array(draw(st.lists(st.integers(1, 366), min_size=t, max_size=t)), dtype=np.int64)
    return data, valid, doy, distance


def check_against_reference(stack, params, nodata, scale, offset):
    data, valid, doy, distance = stack
    blue, red = (0, 1) if params.haze_weight > 0 else (None, None)
    values, index, score = best_pixel(
        data, valid, nodata, doy, distance, params,
        blue=blue, red=red, reflectance_scale=scale, reflectance_offset=offset,
    )  # fmt: skip
    scores = observation_scores(
        data, valid, nodata, doy, distance, params,
        blue=blue, red=red, reflectance_scale=scale, reflectance_offset=offset,
    )  # fmt: skip
    for y in range(data.shape[2]):
        for x in range(data.shape[3]):
            best, total, obs = ref_pixel(
                data, valid, nodata, doy, distance, params, blue, red, scale, offset, y, x
            )
            assert index[y, x] == best
            if best < 0:
                assert np.all(values[:, y, x] == nodata)
                assert np.isnan(score[y, x])
            else:
                np.testing.assert_array_equal(values[:, y, x], data[best, :, y, x])
                assert score[y, x] == np.float32(total)  # bit-identical
            for t, o in enumerate(obs):
                if o is None:
                    assert not scores.eligible[t, y, x]
                    assert np.isnan(scores.total[t, y, x])
                    continue
                assert scores.eligible[t, y, x] == o["eligible"]
                assert scores.total[t, y, x] == np.float32(o["total"])
                assert scores.cloud[t, y, x] == np.float32(o["c"])
                assert scores.haze[t, y, x] == np.float32(o["h"])
                assert scores.doy[t] == o["d"]


@settings(max_examples=150, deadline=None)
@given(stack=stacks(), params=parameters())
def test_int16_matches_the_reference_bit_for_bit(stack, params):
    check_against_reference(stack, params, NODATA_I16, 1e-4, 0.0)


@settings(max_examples=40, deadline=None)
@given(stack=stacks(dtype=np.uint16, nodata=0), params=parameters())
def test_uint16_with_an_offset_matches_the_reference(stack, params):
    # Sentinel-2 L2A since processing baseline 04.00: reflectance = DN / 10000 - 0.1, nodata 0
    check_against_reference(stack, params, 0, 1e-4, -0.1)


# --- the score functions at FORCE's anchor points ---------------------------------------------


@pytest.mark.parametrize(
    ("points", "scores"),
    [
        ((120, 180, 240), (0.01, 0.99, 0.01)),
        ((330, 30, 90), (0.2, 0.9, 0.5)),
        ((300, 330, 30), (0.4, 0.8, 0.1)),
    ],
)
def test_gaussian_doy_score_passes_through_the_three_points(points, scores):
    params = BapParameters(doy_points=points, doy_scores=scores)
    assert params.shape is DoyShape.GAUSSIAN
    got = params.doy_score(list(points))
    np.testing.assert_allclose(got, scores, rtol=1e-13)
    # the peak, and a fall on each side across the year end
    p1 = points[1]
    assert params.doy_score([p1])[0] == scores[1]
    offsets = params.offsets
    before = [(p1 + o) % 365 or 365 for o in range(offsets[0], 0)]
    after = [(p1 + o - 1) % 365 + 1 for o in range(0, offsets[2] + 1)]
    assert np.all(np.diff(params.doy_score(before)) > 0)
    assert np.all(np.diff(params.doy_score(after)) < 0)


def test_winter_target_wraps_the_year():
    params = BapParameters(doy_points=(330, 30, 90))
    assert params.offsets == (-65, 0, 60)
    days = [30, 1, 366, 365, 330, 200, 213]
    assert day_offsets(days, 30).tolist() == [0, -29, -29, -30, -65, 170, -182]
    near_new_year = params.doy_score([360, 5, 100])
    assert near_new_year[0] > 0.2 and near_new_year[1] > 0.45 and near_new_year[2] < 0.01
    assert params.doy_score([1])[0] == params.doy_score([366])[0]  # leap day 366 is day 1


def test_default_scores_where_force_defines_them():
    params = BapParameters()
    assert params.doy_points == (120, 180, 240) and params.doy_scores == (0.01, 0.99, 0.01)
    assert (params.doy_weight, params.cloud_weight, params.haze_weight) == (1.0, 0.4, 0.3)
    assert params.dreq_m == 3000.0 and params.combine is Combine.ADD
    assert not (params.off_season or params.use_cloudy or params.use_hazy)
    # cloud score 0.5 at DREQ / 2 and 1 / (1 + e**-5) at DREQ; haze score 0.5 at the midpoint
    t = 4
    data = np.zeros((t, 2, 1, 1), dtype=np.int16)
    data[:, 0, 0, 0] = [1000, 1000, 1000, 1000]
    # HOT = blue - 0.5 red - 0.08 = -0.015 at blue 0.1, red 0.07; then +-0.01 (0.5 * width)
    data[:, 1, 0, 0] = [700, 700, 500, 900]
    valid = np.ones((t, 1, 1), dtype=bool)
    distance = np.array([1500, 3000, 1500, 1500], dtype=np.float32).reshape(t, 1, 1)
    scores = observation_scores(data, valid, NODATA_I16, [180] * t, distance, params, blue=0, red=1)
    assert scores.cloud[0, 0, 0] == np.float32(0.5)
    assert scores.cloud[1, 0, 0] == np.float32(1 / (1 + math.exp(-5)))
    # higher HOT is hazier: red 0.05 gives HOT = -0.005 (midpoint + width / 2), red 0.09 -0.025
    expected = [0.5, 1 / (1 + math.exp(5)), 1 / (1 + math.exp(-5))]
    np.testing.assert_allclose(scores.haze[[0, 2, 3], 0, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("points", "scores", "shape", "closeness"),
    [
        ((120, 180, 240), (0.99, 0.5, 0.01), DoyShape.DESCENDING, 0.02),
        ((330, 30, 90), (0.01, 0.5, 0.99), DoyShape.ASCENDING, 0.02),
        # a sigmoid whose top is s0 cannot pass near all three of these: the best fit is loose
        ((100, 150, 250), (0.9, 0.6, 0.2), DoyShape.DESCENDING, 0.15),
    ],
)
def test_sigmoid_is_the_least_squares_fit_force_aims_at(points, scores, shape, closeness):
    params = BapParameters(doy_points=points, doy_scores=scores)
    assert params.shape is shape
    top = scores[0] if shape is DoyShape.DESCENDING else scores[2]
    x = np.array(params.offsets, dtype=float)

    def rmse(p):
        return math.sqrt(np.mean((np.array(scores) - top / (1 + np.exp(p[0] * x + p[1]))) ** 2))

    reference = optimize.minimize(
        rmse,
        [0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000},
    )
    assert rmse(params.curve) <= reference.fun + 1e-12
    assert rmse(params.curve) < closeness / 2
    np.testing.assert_allclose(params.doy_score(list(points)), scores, atol=closeness)
    # zero beyond the open end, monotone in between
    o0, _, o2 = params.offsets
    inside = params.doy_score([(points[1] + o - 1) % 365 + 1 for o in range(o0, o2 + 1)])
    assert (
        np.all(np.diff(inside) < 0) if shape is DoyShape.DESCENDING else np.all(np.diff(inside) > 0)
    )
    outside = (points[0] - 1 - 1) % 365 + 1 if shape is DoyShape.DESCENDING else points[2] % 365 + 1
    assert params.doy_score([outside])[0] == 0.0


def test_fit_sigmoid_recovers_an_exact_curve():
    a, b = 0.05, -0.3
    x = (-60.0, 0.0, 60.0)
    y = [0.9 / (1 + math.exp(a * v + b)) for v in x]
    got = fit_sigmoid(x, y, 0.9)
    np.testing.assert_allclose(got, (a, b), rtol=1e-6)


# --- edges -------------------------------------------------------------------------------------


def one_pixel(values, valid, distance=3000.0):
    data = np.asarray(values, dtype=np.int16).reshape(len(values), -1, 1, 1)
    t = data.shape[0]
    return (
        data,
        np.asarray(valid, dtype=bool).reshape(t, 1, 1),
        np.full((t, 1, 1), distance, dtype=np.float32),
    )


def test_all_masked_gives_nodata_minus_one_and_nan():
    data, valid, distance = one_pixel([[500, 400], [600, 300]], [False, False])
    values, index, score = best_pixel(
        data, valid, NODATA_I16, [180, 181], distance, BapParameters(), blue=0, red=1
    )
    assert values[:, 0, 0].tolist() == [NODATA_I16, NODATA_I16]
    assert index[0, 0] == -1 and index.dtype == np.int16
    assert np.isnan(score[0, 0]) and score.dtype == np.float32


def test_one_usable_observation_is_chosen_and_nodata_in_one_band_excludes():
    data, valid, distance = one_pixel(
        [[500, NODATA_I16], [-120, 300], [700, 350]], [True, True, False]
    )
    values, index, score = best_pixel(
        data, valid, NODATA_I16, [180, 150, 180], distance, BapParameters(), blue=0, red=1
    )
    assert index[0, 0] == 1  # 0 lacks band 1, 2 is masked; negative reflectance is fine
    assert values[:, 0, 0].tolist() == [-120, 300]
    assert 0 < score[0, 0] < 1


def test_ties_go_to_the_earliest_observation():
    data, valid, distance = one_pixel([[500, 400], [500, 400], [500, 400]], [True, True, True])
    _, index, _ = best_pixel(
        data, valid, NODATA_I16, [200, 160, 160], distance, BapParameters(), blue=0, red=1
    )
    assert index[0, 0] == 0  # 20 days either side of the symmetric target score the same
    _, index, _ = best_pixel(
        data, valid, NODATA_I16, [150, 160, 160], distance, BapParameters(), blue=0, red=1
    )
    assert index[0, 0] == 1


def test_force_filters_and_their_switches():
    params = BapParameters(haze_weight=0.0)
    # off season (DOY score < 0.01): dropped, even as the only observation
    data, valid, distance = one_pixel([[500, 400]], [True])
    _, index, _ = best_pixel(data, valid, NODATA_I16, [10], distance, params, blue=None, red=None)
    assert index[0, 0] == -1
    off = BapParameters(haze_weight=0.0, off_season=True)
    _, index, _ = best_pixel(data, valid, NODATA_I16, [10], distance, off, blue=None, red=None)
    assert index[0, 0] == 0
    # next to a cloud (cloud score < 0.01, closer than 121 m at DREQ 3000 m): dropped
    data, valid, distance = one_pixel([[500, 400]], [True], distance=100.0)
    _, index, _ = best_pixel(data, valid, NODATA_I16, [180], distance, params, blue=None, red=None)
    assert index[0, 0] == -1
    cloudy = BapParameters(haze_weight=0.0, use_cloudy=True)
    _, index, _ = best_pixel(data, valid, NODATA_I16, [180], distance, cloudy, blue=None, red=None)
    assert index[0, 0] == 0


def test_hazy_observations_are_dropped_unless_the_pixel_is_always_hazy():
    params = BapParameters(doy_weight=0.1)
    # blue 0.3 / red 0.1: HOT = 0.17, haze score ~0 -- at the target DOY it would win on DOY
    data, valid, distance = one_pixel([[3000, 1000], [800, 700], [800, 700]], [True] * 3)
    _, index, _ = best_pixel(
        data, valid, NODATA_I16, [180, 150, 210], distance, params, blue=0, red=1
    )
    assert index[0, 0] == 1
    always = one_pixel([[3000, 1000], [3100, 1000], [3200, 1000]], [True] * 3)
    _, index, _ = best_pixel(
        always[0], always[1], NODATA_I16, [180, 150, 210], always[2], params, blue=0, red=1
    )
    assert index[0, 0] == 0  # all hazy: nothing dropped, the DOY decides
    hazy_ok = BapParameters(doy_weight=0.1, use_hazy=True)
    scores = observation_scores(
        data, valid, NODATA_I16, [180, 150, 210], distance, hazy_ok, blue=0, red=1
    )
    assert scores.eligible[:, 0, 0].tolist() == [True, True, True]


def test_multiply_combines_as_a_product_of_weighted_scores():
    params = BapParameters(combine="multiply", haze_weight=0.0)
    data, valid, distance = one_pixel([[500, 400]], [True], distance=1500.0)
    _, _, score = best_pixel(data, valid, NODATA_I16, [180], distance, params, blue=None, red=None)
    assert score[0, 0] == np.float32(1.0 * 0.99 * 0.4 * 0.5)


def test_a_window_gives_the_same_pixels_as_the_whole_stack():
    rng = np.random.default_rng(5)
    t, ny, nx = 6, 20, 30
    data = rng.integers(0, 3000, (t, 3, ny, nx)).astype(np.int16)
    valid = rng.random((t, ny, nx)) < 0.7
    distance = rng.uniform(0, 3000, (t, ny, nx)).astype(np.float32)
    doy = rng.integers(100, 260, t)
    whole = best_pixel(data, valid, NODATA_I16, doy, distance, BapParameters(), blue=0, red=2)
    cut = (slice(3, 17), slice(5, 26))
    window = [np.ascontiguousarray(a[..., cut[0], cut[1]]) for a in (data, valid, distance)]
    part = best_pixel(
        window[0], window[1], NODATA_I16, doy, window[2], BapParameters(), blue=0, red=2
    )
    for w, p in zip(whole, part, strict=True):
        np.testing.assert_array_equal(w[..., cut[0], cut[1]], p)


def test_thread_count_does_not_change_the_result():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    rng = np.random.default_rng(6)
    t, ny, nx = 8, 64, 48
    data = rng.integers(-200, 4000, (t, 4, ny, nx)).astype(np.int16)
    data[rng.random(data.shape) < 0.05] = NODATA_I16
    valid = rng.random((t, ny, nx)) < 0.6
    distance = rng.uniform(0, 3000, (t, ny, nx)).astype(np.float32)
    doy = rng.integers(1, 367, t)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = best_pixel(data, valid, NODATA_I16, doy, distance, BapParameters(), blue=0, red=2)
        numba.set_num_threads(2)
        two = best_pixel(data, valid, NODATA_I16, doy, distance, BapParameters(), blue=0, red=2)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


# --- errors ------------------------------------------------------------------------------------


def test_haze_weight_needs_blue_and_red():
    data, valid, distance = one_pixel([[500, 400]], [True])
    with pytest.raises(InvalidInputError, match=r"blue \(B02\) and red \(B04\)"):
        best_pixel(data, valid, NODATA_I16, [180], distance, BapParameters(), blue=None, red=None)
    with pytest.raises(InvalidInputError, match="band index 5"):
        best_pixel(data, valid, NODATA_I16, [180], distance, BapParameters(), blue=5, red=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"doy_points": (120, 120, 240)}, "must differ from the target"),
        ({"doy_points": (0, 180, 240)}, "1..365"),
        ({"doy_scores": (0.0, 0.9, 0.1)}, "strictly between 0 and 1"),
        ({"doy_scores": (0.5, 0.2, 0.5)}, "none of FORCE's DOY functions"),
        ({"cloud_weight": 1.5}, r"cloud_weight must lie in \[0, 1\]"),
        ({"doy_weight": 0.0, "cloud_weight": 0.0, "haze_weight": 0.0}, "All score weights are 0"),
        ({"dreq_m": 0.0}, "dreq_m must be a positive"),
        ({"combine": "max"}, "combine must be one of add, multiply"),
    ],
)
def test_parameters_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BapParameters(**kwargs)


def test_inputs_are_validated():
    data, valid, distance = one_pixel([[500, 400]], [True])
    params = BapParameters(haze_weight=0.0)
    with pytest.raises(InvalidInputError, match=r"1\.\.366"):
        best_pixel(data, valid, NODATA_I16, [0], distance, params, blue=None, red=None)
    with pytest.raises(InvalidInputError, match="one day of year per time layer"):
        best_pixel(data, valid, NODATA_I16, [1, 2], distance, params, blue=None, red=None)
    with pytest.raises(InvalidInputError, match="cloud_distance"):
        best_pixel(data, valid, NODATA_I16, [1], distance[:, :, :0], params, blue=None, red=None)
    with pytest.raises(InvalidInputError, match="int16 or uint16"):
        best_pixel(data.astype(np.int32), valid, 0, [1], distance, params, blue=None, red=None)
