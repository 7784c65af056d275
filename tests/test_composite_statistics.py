"""Quantile, CDSE-L3, mean/min/max/count kernels and compositors against slow references."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cloudfree.composite import Observations, make_compositor
from cloudfree.composite.kernels.quantiles import (
    masked_quantiles,
    order_statistic,
    selection_network,
    sorting_network,
)
from cloudfree.composite.kernels.statistics import count_valid, masked_statistic
from cloudfree.errors import InvalidInputError
from cloudfree.stack import NODATA, Output

NODATA_I = int(NODATA)


def usable(data, valid, nodata, band, idx):
    """One pixel's usable values of one band, in time order."""
    series = data[(slice(None), band, *idx)]
    return series[valid[(slice(None), *idx)] & (series != nodata)]


def per_pixel(data, valid, nodata, reduce, dtype=None):
    """Slow reference: ``reduce(values)`` per band and pixel; nodata where none usable."""
    _, nb, ny, nx = data.shape
    out = np.full((nb, ny, nx), nodata, dtype=dtype or data.dtype)
    for b in range(nb):
        for idx in np.ndindex(ny, nx):
            values = usable(data, valid, nodata, b, idx)
            if values.size:
                out[(b, *idx)] = reduce(values)
    return out


def stacks(dtype, nodata):
    info = np.iinfo(dtype)
    low = info.min + (1 if nodata == info.min else 0)
    elements = st.one_of(st.integers(low, info.max), st.just(nodata), st.integers(-5, 5).map(abs))
    return st.integers(1, 30).flatmap(
        lambda t: st.tuples(
            hnp.arrays(dtype, (t, 2, 3, 5), elements=elements),
            hnp.arrays(np.bool_, (t, 3, 5)),
        )
    )


INT16 = stacks(np.int16, NODATA_I)
UINT16 = stacks(np.uint16, 0)
QS = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.75, 0.9, 1.0]) | st.floats(0, 1)


@settings(max_examples=200, deadline=None)
@given(stack=INT16 | UINT16, q=QS)
def test_quantile_is_numpy_linear_on_the_usable_values_rounded_half_to_even(stack, q):
    data, valid = stack
    nodata = NODATA_I if data.dtype == np.int16 else 0
    (got,) = masked_quantiles(data, valid, [q], nodata)
    want = per_pixel(data, valid, nodata, lambda v: np.rint(np.quantile(v.astype(np.float64), q)))
    np.testing.assert_array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(stack=INT16 | UINT16)
def test_several_quantiles_in_one_sort_equal_single_ones(stack):
    data, valid = stack
    nodata = NODATA_I if data.dtype == np.int16 else 0
    both = masked_quantiles(data, valid, [0.5, 0.25], nodata)
    np.testing.assert_array_equal(both[0], masked_quantiles(data, valid, [0.5], nodata)[0])
    np.testing.assert_array_equal(both[1], masked_quantiles(data, valid, [0.25], nodata)[0])


@settings(max_examples=150, deadline=None)
@given(stack=INT16 | UINT16)
def test_cdse_first_quartile_is_the_sorted_observation_at_floor_n_over_4(stack):
    data, valid = stack
    nodata = NODATA_I if data.dtype == np.int16 else 0
    got = order_statistic(data, valid, 1, 4, nodata)
    np.testing.assert_array_equal(
        got, per_pixel(data, valid, nodata, lambda v: np.sort(v)[len(v) // 4])
    )


@settings(max_examples=150, deadline=None)
@given(stack=INT16 | UINT16, statistic=st.sampled_from(["mean", "min", "max", "count"]))
def test_statistics_equal_numpy(stack, statistic):
    data, valid = stack
    nodata = NODATA_I if data.dtype == np.int16 else 0
    got = masked_statistic(data, valid, statistic, nodata)
    if statistic == "count":
        want = [
            len(usable(data, valid, nodata, b, idx))
            for b in range(data.shape[1])
            for idx in np.ndindex(data.shape[2:])
        ]
        assert got.dtype == np.uint16 and got.ravel().tolist() == want
        return
    reduce = {
        "mean": lambda v: np.rint(np.mean(v.astype(np.float64))),
        "min": np.min,
        "max": np.max,
    }[statistic]
    np.testing.assert_array_equal(got, per_pixel(data, valid, nodata, reduce))


@pytest.mark.parametrize("n", range(1, 33))
def test_sorting_network_sorts_every_zero_one_input(n):
    # The 0-1 principle: a comparator network sorts everything iff it sorts all 0-1 inputs.
    network = np.array(sorting_network(n)).reshape(-1, 2)
    rng = np.random.default_rng(n)
    inputs = (
        np.array(np.meshgrid(*[[0, 1]] * n)).reshape(n, -1)
        if n <= 16
        else (rng.random((n, 20000)) < rng.random(20000)).astype(np.int8)
    )
    a = inputs.copy()
    for i, j in network:
        lo, hi = np.minimum(a[i], a[j]), np.maximum(a[i], a[j])
        a[i], a[j] = lo, hi
    np.testing.assert_array_equal(a, np.sort(inputs, axis=0))


def test_selection_network_keeps_only_what_the_ranks_need():
    full = len(sorting_network(24))
    assert len(selection_network(24, 23)) == full
    assert len(selection_network(24, 6)) < len(selection_network(24, 12)) < full


def test_edges_all_masked_one_value_even_count_ties_and_negative():
    data = np.array(
        [[[[5, -300, 7, 1, 4]]], [[[9, -100, 8, 2, 4]]], [[[1, 50, 9, 3, 5]]]], dtype=np.int16
    )
    valid = np.array(
        [
            [[False, True, True, True, True]],
            [[False, True, False, True, True]],
            [[False, False, False, False, False]],
        ]
    )
    (median,) = masked_quantiles(data, valid, [0.5], NODATA_I)
    # all masked -> nodata; -300,-100 -> -200; one valid -> itself; 1,2 -> 1.5 -> 2; 4,4 -> 4
    assert median[0].tolist() == [[NODATA_I, -200, 7, 2, 4]]
    assert count_valid(valid).tolist() == [[0, 2, 1, 2, 2]]
    assert masked_statistic(data, valid, "count", NODATA_I)[0].tolist() == [[0, 2, 1, 2, 2]]


def test_each_bands_own_nodata_is_honoured():
    data = np.zeros((3, 2, 1, 1), dtype=np.int16)
    data[:, 0, 0, 0] = [100, 200, 300]
    data[:, 1, 0, 0] = [NODATA_I, 400, 600]
    valid = np.ones((3, 1, 1), dtype=bool)
    result = make_compositor("median")(Observations(data=data, valid=valid, nodata=NODATA_I))
    assert result.values[:, 0, 0].tolist() == [200, 500]
    assert result.observations[0, 0] == 3


def test_results_do_not_depend_on_tile_size_or_thread_count():
    rng = np.random.default_rng(7)
    data = rng.integers(-2000, 12000, (17, 2, 96, 1100), dtype=np.int16)
    valid = rng.random((17, 96, 1100)) < 0.6
    whole = masked_quantiles(data, valid, [0.5, 0.25], NODATA_I)
    tiles = np.concatenate(
        [
            np.concatenate(
                [masked_quantiles(data[..., y : y + 32, x : x + 300], valid[:, y : y + 32,
                 x : x + 300], [0.5, 0.25], NODATA_I) for x in range(0, 1100, 300)],
                axis=-1,
            )
            for y in range(0, 96, 32)
        ],
        axis=-2,
    )  # fmt: skip
    np.testing.assert_array_equal(whole, tiles)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = masked_quantiles(data, valid, [0.5, 0.25], NODATA_I)
        mean_one = masked_statistic(data, valid, "mean", NODATA_I)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(whole, one)
    np.testing.assert_array_equal(mean_one, masked_statistic(data, valid, "mean", NODATA_I))


def test_compositor_options_are_checked():
    with pytest.raises(InvalidInputError, match=r"quantile must be between 0\.0 and 1\.0"):
        make_compositor("quantile", {"quantile": 1.5})
    with pytest.raises(InvalidInputError, match="has no option"):
        make_compositor("median", {"quantile": 0.5})
    with pytest.raises(InvalidInputError, match="Unknown method"):
        make_compositor("nope")
    assert make_compositor("quantile", {"quantile": "0.25"}).quantile == 0.25


def test_count_method_returns_counts_not_reflectance():
    from cloudfree.stack import Output

    data = np.full((4, 1, 1, 2), 500, dtype=np.int16)
    valid = np.array([True, True, False, True])[:, None, None] & np.ones((4, 1, 2), bool)
    method = make_compositor("count")
    assert method.output is Output.COUNT
    result = method(Observations(data=data, valid=valid, nodata=NODATA_I))
    assert result.values.dtype == np.uint16 and result.values.tolist() == [[[3, 3]]]


class Darkest:
    """A plug-in method: the smallest value (a class outside the registry)."""

    name = "darkest"
    output = Output.REFLECTANCE
    provenance = ()

    def context_m(self):
        return 0.0

    def __call__(self, obs):
        return make_compositor("min")(obs)

    def describe(self):
        return "darkest"


class NotAMethod:
    """Lacks most of the protocol."""


def test_methods_plug_in_by_import_path_and_are_checked():
    data = np.array([[[[5]]], [[[3]]]], dtype=np.int16)
    obs = Observations(data=data, valid=np.ones((2, 1, 1), bool), nodata=NODATA_I)
    method = make_compositor("tests.test_composite_statistics:Darkest")
    assert method(obs).values.tolist() == [[[3]]]
    with pytest.raises(InvalidInputError, match="does not follow the Compositor protocol"):
        make_compositor("tests.test_composite_statistics:NotAMethod")
    with pytest.raises(InvalidInputError, match="Cannot load method"):
        make_compositor("tests.nowhere:Nothing")
