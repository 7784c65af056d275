import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from cloudfree.composite.kernels.distance import cloud_distance
from cloudfree.grid import context_pixels


def reference_distance(rejected, pixel_size_m, max_distance_m):
    """scipy's exact EDT in pixels, times the pixel size, capped, rounded once to float32."""
    out = np.empty(rejected.shape, dtype=np.float32)
    for t, layer in enumerate(rejected):
        if layer.any():
            metres = ndimage.distance_transform_edt(~layer) * pixel_size_m
            out[t] = np.minimum(metres, max_distance_m).astype(np.float32)
        else:
            out[t] = np.float32(max_distance_m)
    return out


def blobs(shape, fraction, seed):
    """Cloud-like patches: smoothed noise above a threshold, about ``fraction`` of the pixels."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=(0, 4, 4))
    return noise > np.quantile(noise, 1 - fraction, axis=(1, 2), keepdims=True)


masks = st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda shape: hnp.arrays(np.bool_, shape, elements=st.booleans() | st.just(False))
)


@settings(max_examples=150, deadline=None)
@given(
    rejected=masks,
    pixel_size_m=st.sampled_from([10.0, 20.0, 60.0, 7.5]),
    max_distance_m=st.sampled_from([5.0, 30.0, 75.0, 100.0, 3000.0]),
)
def test_equals_scipy_exact_edt_capped(rejected, pixel_size_m, max_distance_m):
    got = cloud_distance(rejected, pixel_size_m, max_distance_m)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, reference_distance(rejected, pixel_size_m, max_distance_m))


def test_blobs_on_a_larger_layer_equal_scipy():
    rejected = blobs((2, 150, 170), 0.3, seed=1)
    got = cloud_distance(rejected, 10.0, 150.0)
    np.testing.assert_array_equal(got, reference_distance(rejected, 10.0, 150.0))
    assert got.max() == np.float32(150.0)  # some pixels are farther than the cap


@settings(max_examples=40, deadline=None)
@given(
    y0=st.integers(0, 90),
    x0=st.integers(0, 100),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    max_distance_m=st.sampled_from([95.0, 100.0, 250.0]),
)
def test_padded_window_interior_equals_whole_array(y0, x0, height, width, max_distance_m):
    rejected = blobs((2, 130, 140), 0.15, seed=2)
    whole = cloud_distance(rejected, 10.0, max_distance_m)
    pad = context_pixels(max_distance_m, 10.0)
    ys, xs = max(y0 - pad, 0), max(x0 - pad, 0)
    window = rejected[:, ys : y0 + height + pad, xs : x0 + width + pad]
    got = cloud_distance(window, 10.0, max_distance_m)
    interior = got[:, y0 - ys : y0 - ys + height, x0 - xs : x0 - xs + width]
    np.testing.assert_array_equal(interior, whole[:, y0 : y0 + height, x0 : x0 + width])


def test_a_smaller_halo_is_not_enough():
    # one rejected pixel 10 px left of the window: the cap (100 m) reaches it
    rejected = np.zeros((1, 5, 30), dtype=bool)
    rejected[0, 2, 5] = True
    whole = cloud_distance(rejected, 10.0, 100.0)
    assert whole[0, 2, 15] == 100.0 and whole[0, 2, 14] == 90.0
    short = cloud_distance(rejected[:, :, 6:], 10.0, 100.0)  # window misses the pixel
    assert short[0, 2, 14 - 6] == 100.0


def test_edges_no_cloud_all_cloud_and_shapes():
    clear = np.zeros((2, 4, 5), dtype=bool)
    assert np.all(cloud_distance(clear, 10.0, 250.0) == 250.0)
    assert np.all(cloud_distance(~clear, 10.0, 250.0) == 0.0)
    one = np.zeros((1, 1, 4), dtype=bool)
    one[0, 0, 0] = True
    assert cloud_distance(one, 20.0, 1000.0).tolist() == [[[0.0, 20.0, 40.0, 60.0]]]
    assert cloud_distance(np.zeros((3, 0, 4), dtype=bool), 10.0, 50.0).shape == (3, 0, 4)
    assert cloud_distance(clear[0], 10.0, 50.0).shape == (4, 5)  # a single (y, x) layer
    diagonal = np.zeros((1, 4, 4), dtype=bool)
    diagonal[0, 0, 0] = True
    assert cloud_distance(diagonal, 10.0, 1e4)[0, 3, 3] == np.float32(np.sqrt(18) * 10.0)


def test_thread_count_does_not_change_the_result():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    rejected = blobs((3, 97, 131), 0.4, seed=3)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cloud_distance(rejected, 10.0, 300.0)
        numba.set_num_threads(2)
        two = cloud_distance(rejected, 10.0, 300.0)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_halo_pixels_and_bad_arguments():
    assert context_pixels(3000.0, 10.0) == 300
    assert context_pixels(25.0, 10.0) == 3
    assert context_pixels(0.3, 0.1) == 3  # no spurious extra pixel from 0.3 / 0.1 = 2.9999...
    with pytest.raises(ValueError, match="pixel size"):
        cloud_distance(np.zeros((1, 2, 2), dtype=bool), 0.0, 100.0)
    with pytest.raises(ValueError, match="cap"):
        cloud_distance(np.zeros((1, 2, 2), dtype=bool), 10.0, float("inf"))
    with pytest.raises(TypeError, match="bool"):
        cloud_distance(np.zeros((1, 2, 2), dtype=np.uint8), 10.0, 100.0)
