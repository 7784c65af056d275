"""The s2cloudless mask (optional extra): options, packaging, post-processing, tiling, real L1C.

Real-pixel figures (eo-learn's TestEOPatch, 5 real L1C scenes, 101 x 100 px at 10 m), measured
with the defaults (threshold 0.4, 160 m mean, 80 m buffer): the mask agrees with the reference
CLM on 100 % of the pixels of all 5 dates (3 clear, 2 fully cloudy). Without the disk mean, the
2015-07-31 scene (cloudy in CLM) is called clear on 3.6 % of its pixels.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox

from cloudfree.errors import InvalidInputError
from cloudfree.grid import pixel_size_metres
from cloudfree.masks import make_mask, mask_options
from cloudfree.masks.morphology import dilate, reach
from cloudfree.masks.s2cloudless import (
    DEFAULT_AVERAGE_OVER_M,
    DEFAULT_DILATION_M,
    INSTALL_HINT,
    MODEL_BANDS,
    S2CloudlessMask,
    averaged_above,
)
from cloudfree.stack import NODATA, REFLECTANCE_SCALE, Stack
from cloudfree.testing.real_masks import reference_scenes_stack, s2cloudless_reference_scenes

needs_package = pytest.mark.skipif(
    __import__("importlib").util.find_spec("s2cloudless") is None,
    reason=f"the s2cloudless extra is not installed ({INSTALL_HINT})",
)


def window(stack: Stack, ys: slice, xs: slice) -> Stack:
    return Stack(
        geobox=stack.geobox[ys, xs],
        days=stack.days,
        bands=stack.bands,
        data=stack.data[..., ys, xs],
        layers=MappingProxyType({k: v[..., ys, xs] for k, v in stack.layers.items()}),
    )


#: L1C spectra (reflectance x 10000, in MODEL_BANDS order): vegetation, scored 0.03 by the
#: model, and a bright cloud, scored 0.99.
CLEAR = (1200, 900, 500, 900, 3000, 3200, 1000, 20, 1600, 800)
CLOUD = (5000, 5000, 5200, 5300, 5600, 5500, 2500, 300, 3500, 2500)


def small_stack(kind: np.ndarray) -> Stack:
    """A stack from a ``(time, y, x)`` map of 0 = clear, 1 = cloud, -1 = no data."""
    spectra = np.array([CLEAR, CLOUD, [NODATA] * 10], dtype=np.int16)
    values = spectra[kind]  # (time, y, x, band)
    layers = {b: np.ascontiguousarray(values[..., i]) for i, b in enumerate(MODEL_BANDS)}
    ny, nx = kind.shape[1:]
    return Stack(
        geobox=GeoBox.from_bbox((0, 0, 10 * nx, 10 * ny), "EPSG:32633", resolution=10),
        days=(),
        bands=("B04",),
        data=layers["B04"][:, np.newaxis],
        layers=MappingProxyType(layers),
    )


# -- packaging -----------------------------------------------------------------------------


def test_module_imports_without_the_package():
    code = (
        "import sys; sys.modules['s2cloudless'] = None\n"
        "import cloudfree.masks.s2cloudless as m\n"
        "from cloudfree.masks import make_mask\n"
        "from cloudfree.errors import InvalidInputError\n"
        "try:\n"
        "    make_mask('s2cloudless')\n"
        "except InvalidInputError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "Cloud mask 's2cloudless'" in out
    assert 'pip install "cloudfree[s2cloudless]"' in out


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "s2cloudless", None)  # makes `import s2cloudless` fail
    with pytest.raises(ValueError, match=r'pip install "cloudfree\[s2cloudless\]"'):
        S2CloudlessMask()
    with pytest.raises(InvalidInputError, match=r"s2cloudless.*cloudfree\[s2cloudless\]"):
        make_mask("s2cloudless")


# -- options -------------------------------------------------------------------------------


@needs_package
def test_defaults_and_halo():
    mask = make_mask("s2cloudless")
    assert isinstance(mask, S2CloudlessMask)
    assert mask.layers == MODEL_BANDS
    assert mask.halo_m() == DEFAULT_AVERAGE_OVER_M + DEFAULT_DILATION_M == 240.0
    assert mask.describe() == (
        "s2cloudless (L1C model): cloud where the probability averaged over 160 m exceeds 0.4, "
        "buffer 80 m"
    )
    assert mask_options("s2cloudless") == {
        "threshold": 0.4,
        "average_over_m": 160.0,
        "dilation_m": 80.0,
    }


@needs_package
def test_options_from_text_and_files_mean_the_same():
    text = make_mask(
        "s2cloudless", {"threshold": "0.6", "average_over_m": "100", "dilation_m": "0"}
    )
    typed = make_mask("s2cloudless", {"threshold": 0.6, "average_over_m": 100, "dilation_m": 0})
    assert text.describe() == typed.describe()
    assert text.halo_m() == 100.0


@needs_package
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": "40"}, r"option threshold must be between 0.0 and 1.0, got '40'"),
        ({"threshold": "high"}, r"option threshold must be a number, got 'high'"),
        ({"average_over_m": -1}, r"option average_over_m must be between 0.0"),
        ({"dilation_m": "nan"}, r"option dilation_m must be between 0.0"),
        ({"average_over": 4}, r"has no option average_over; its options are: threshold, "),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(InvalidInputError, match=message):
        make_mask("s2cloudless", options)


@needs_package
def test_a_stack_without_the_model_bands_is_refused():
    stack = small_stack(np.zeros((1, 4, 4), dtype=np.intp))
    stack = Stack(
        geobox=stack.geobox,
        days=(),
        bands=stack.bands,
        data=stack.data,
        layers=MappingProxyType({b: v for b, v in stack.layers.items() if b != "B10"}),
    )
    with pytest.raises(InvalidInputError, match=r"needs a stack loaded with B01, .*; B10 missing"):
        S2CloudlessMask()(stack, 10.0)


@needs_package
def test_the_band_order_is_the_packages():
    from s2cloudless.utils import MODEL_BANDS as PACKAGE_BANDS

    assert tuple(PACKAGE_BANDS) == MODEL_BANDS


# -- post-processing -----------------------------------------------------------------------


def brute_force(probability, present, radius, threshold):
    """Mean of the present pixels within the disk, then ``> threshold``, the slow way."""
    r = reach(radius)
    out = np.zeros(probability.shape, dtype=bool)
    _, ny, nx = probability.shape
    for t, y, x in np.argwhere(present):
        total = count = 0.0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                yy, xx = y + dy, x + dx
                inside = 0 <= yy < ny and 0 <= xx < nx
                if dy * dy + dx * dx <= radius * radius + 1e-9 and inside and present[t, yy, xx]:
                    total += probability[t, yy, xx]
                    count += 1
        out[t, y, x] = total / count > threshold
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    radius=st.floats(0, 4.5),
    threshold=st.sampled_from([0.2, 0.4, 0.6]),
)
def test_disk_mean_matches_the_definition(seed, radius, threshold):
    rng = np.random.default_rng(seed)
    probability = rng.random((2, 13, 11)).astype(np.float32)
    present = rng.random((2, 13, 11)) > 0.2
    expected = brute_force(probability, present, radius, threshold)
    assert np.array_equal(averaged_above(probability, present, radius, threshold), expected)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    average=st.floats(0, 5),
    dilation=st.floats(0, 3),
    y0=st.integers(0, 30),
    x0=st.integers(0, 30),
    size=st.integers(1, 12),
)
def test_post_processing_of_a_padded_window_equals_the_whole(seed, average, dilation, y0, x0, size):
    """The halo (mean radius + buffer radius) is enough: tiles do not change the mask."""
    rng = np.random.default_rng(seed)
    # smooth-ish fields, so that the threshold cuts real patches
    probability = np.clip(rng.normal(0.4, 0.25, (1, 42, 42)), 0, 1).astype(np.float32)
    present = rng.random((1, 42, 42)) > 0.1

    def run(p, m):
        return dilate(averaged_above(p, m, average, 0.4), dilation)

    whole = run(probability, present)
    halo = reach(average) + reach(dilation)
    ys = slice(max(y0 - halo, 0), min(y0 + size + halo, 42))
    xs = slice(max(x0 - halo, 0), min(x0 + size + halo, 42))
    part = run(probability[:, ys, xs], present[:, ys, xs])
    inner = part[:, y0 - ys.start : y0 - ys.start + size, x0 - xs.start : x0 - xs.start + size]
    assert np.array_equal(inner, whole[:, y0 : y0 + size, x0 : x0 + size])


@needs_package
def test_nodata_pixels_are_not_clear_and_do_not_vote():
    kind = np.zeros((1, 5, 5), dtype=np.intp)
    kind[0, 1, 2] = kind[0, 2, 1] = 1  # two cloudy neighbours of the centre ...
    kind[0, 3, 2] = kind[0, 2, 3] = -1  # ... and two without data
    stack = small_stack(kind)
    mask = S2CloudlessMask(average_over_m=10, dilation_m=0)  # the centre and its 4 neighbours
    probability, present = mask.probability(stack)
    assert np.array_equal(present, kind != -1)
    assert probability[0, 2, 2] < 0.1 and probability[0, 1, 2] > 0.9
    assert np.all(probability[~present] == 0)
    clear = mask(stack, 10.0)
    assert not clear[~present].any()
    # mean over the 3 present pixels (2 clouds + itself) is cloud; counting the 2 missing
    # pixels as probability 0 would have kept it (1.99 / 5 < 0.4)
    assert not clear[0, 2, 2]
    assert clear[0, 0, 0] and clear[0, 4, 4]


@needs_package
def test_the_buffer_grows_around_clouds():
    kind = np.zeros((1, 9, 9), dtype=np.intp)
    kind[0, 4, 4] = 1
    clear = S2CloudlessMask(average_over_m=0, dilation_m=20)(small_stack(kind), 10.0)
    assert (~clear).sum() == 13  # a disk of radius 2 px
    assert not clear[0, 2, 4] and clear[0, 2, 3]


# -- real L1C pixels -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(realdata: Path) -> Stack:
    return reference_scenes_stack(realdata)


@needs_package
@pytest.mark.realdata
def test_probabilities_are_the_packages(scenes):
    """Same inputs, same model: our per-pixel probabilities are the package's own."""
    from s2cloudless import S2PixelCloudDetector

    features = np.stack([scenes.layers[b] for b in MODEL_BANDS], axis=-1).astype(np.float32)
    features *= np.float32(REFLECTANCE_SCALE)
    expected = S2PixelCloudDetector(all_bands=False).get_cloud_probability_maps(features)
    probability, present = S2CloudlessMask().probability(scenes)
    assert present.all()
    np.testing.assert_array_equal(probability, expected)


@needs_package
@pytest.mark.realdata
def test_post_processing_matches_the_package_away_from_edges(scenes):
    """With whole-pixel radii our disks are cv2's; inside the patch the masks are the package's."""
    from s2cloudless import S2PixelCloudDetector

    mask = S2CloudlessMask(threshold=0.7, average_over_m=40, dilation_m=20)
    ours = ~mask(scenes, 10.0)
    probability, _ = mask.probability(scenes)
    package = S2PixelCloudDetector(threshold=0.7, average_over=4, dilation_size=2)
    theirs = package.get_mask_from_prob(probability).astype(bool)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # beyond the mean + buffer reach
    assert 0.05 < ours[inner].mean() < 0.5  # a threshold that cuts the cloudy scene in parts
    assert np.array_equal(ours[inner], theirs[inner])


@needs_package
@pytest.mark.realdata
def test_agrees_with_the_reference_clm_on_clear_and_cloudy_dates(realdata):
    """Measured: 100 % agreement on each of the 5 dates (3 clear, 2 fully cloudy)."""
    figures = s2cloudless_reference_scenes(realdata)
    assert [f.reference_cloudy for f in figures] == [1.0, 1.0, 0.0, 0.0, 0.0]
    for f in figures:
        assert f.agreement.accuracy >= 0.99, f
        assert f.agreement.omission <= 0.01 and f.agreement.commission <= 0.01, f
        # our 10 m probabilities against the reference CLP (run at a coarser grid): measured
        # mean absolute differences 0.004-0.064
        assert f.probability_mae < 0.1, f


@needs_package
@pytest.mark.realdata
def test_the_disk_mean_fixes_the_per_pixel_misses(realdata):
    """Without the mean, 3.6 % of the cloudy 2015-07-31 scene is called clear (measured)."""
    raw = s2cloudless_reference_scenes(realdata, {"average_over_m": 0, "dilation_m": 0})
    cloudy = raw[1]
    assert cloudy.reference_cloudy == 1.0
    assert 0.01 < cloudy.agreement.omission < 0.1


@needs_package
@pytest.mark.realdata
def test_tiles_padded_by_the_halo_give_the_whole_patch_mask(scenes):
    mask = S2CloudlessMask(threshold=0.7)  # default radii: 160 m mean, 80 m buffer
    pixel = pixel_size_metres(scenes.geobox)
    whole = mask(scenes, pixel)
    assert 0.05 < (~whole).mean() < 0.5
    halo = math.ceil(mask.halo_m() / pixel - 1e-9)
    ny, nx = scenes.geobox.shape.yx
    for y0 in range(0, ny, 34):
        for x0 in range(0, nx, 34):
            y1, x1 = min(y0 + 34, ny), min(x0 + 34, nx)
            ys = slice(max(y0 - halo, 0), min(y1 + halo, ny))
            xs = slice(max(x0 - halo, 0), min(x1 + halo, nx))
            part = mask(window(scenes, ys, xs), pixel)
            inner = part[:, y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start]
            assert np.array_equal(inner, whole[:, y0:y1, x0:x1]), (y0, x0)
