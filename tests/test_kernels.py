import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cloudfree.composite import make_compositor
from cloudfree.composite.kernels import masked_quantiles
from cloudfree.stack import NODATA

NODATA_I = int(NODATA)


def reference_quantile(values, valid, q):
    """Slow reference: numpy's linear quantile of each pixel's valid values, rounded half-even."""
    out = np.full(values.shape[1:], NODATA_I, dtype=np.int16)
    for idx in np.ndindex(values.shape[1:]):
        pixel = values[(slice(None), *idx)][valid[(slice(None), *idx)]]
        if pixel.size:
            out[idx] = np.rint(np.quantile(pixel.astype(np.float64), q, method="linear"))
    return out


stacks = st.integers(1, 9).flatmap(
    lambda t: st.tuples(
        hnp.arrays(np.int16, (t, 3, 4), elements=st.integers(-32767, 32767)),
        hnp.arrays(np.bool_, (t, 3, 4)),
    )
)


@settings(max_examples=150, deadline=None)
@given(stack=stacks, q=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))
def test_masked_quantile_equals_numpy_on_valid_values(stack, q):
    values, valid = stack
    (got,) = masked_quantiles(values, valid, [q], NODATA_I)
    np.testing.assert_array_equal(got, reference_quantile(values, valid, q))


@settings(max_examples=60, deadline=None)
@given(stack=stacks)
def test_several_quantiles_in_one_pass_match_single_ones(stack):
    values, valid = stack
    both = masked_quantiles(values, valid, [0.5, 0.25], NODATA_I)
    assert np.array_equal(both[0], masked_quantiles(values, valid, [0.5], NODATA_I)[0])
    assert np.array_equal(both[1], masked_quantiles(values, valid, [0.25], NODATA_I)[0])


def test_edges_all_masked_single_value_even_count_and_negative():
    values = np.array([[[5, -300, 7, 1]], [[9, -100, 8, 2]], [[1, 50, 9, 3]]], dtype=np.int16)
    valid = np.array(
        [[[False, True, True, True]], [[False, True, False, True]], [[False, False, False, False]]]
    )
    (median,) = masked_quantiles(values, valid, [0.5], NODATA_I)
    # all masked -> nodata; -300,-100 -> -200; one valid -> itself; 1,2 -> 1.5 -> 2 (half to even)
    assert median.tolist() == [[NODATA_I, -200, 7, 2]]


def test_compositor_honours_each_bands_own_nodata():
    data = np.zeros((3, 2, 1, 1), dtype=np.int16)
    data[:, 0, 0, 0] = [100, 200, 300]
    data[:, 1, 0, 0] = [NODATA_I, 400, 600]
    valid = np.ones((3, 1, 1), dtype=bool)
    result = make_compositor("median")(data, valid)
    assert result.values[:, 0, 0].tolist() == [200, 500]
    assert result.observations[0, 0] == 3


def test_quantile_out_of_range():
    from cloudfree.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="between 0 and 1"):
        make_compositor("quantile", quantile=1.5)
