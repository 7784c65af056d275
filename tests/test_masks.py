"""Cloud masks: the registry and plug-ins, options, SCL classes and clean-up, halos."""

from __future__ import annotations

import json
import math
import sys
import textwrap
import threading
from datetime import date

import numpy as np
import pytest
from odc.geo.geobox import GeoBox
from scipy import ndimage

from cloudfree.bands import SclClass
from cloudfree.errors import InvalidInputError
from cloudfree.masks import (
    CDSE_L3_VALID,
    DEFAULT_VALID,
    STRICT_VALID,
    CloudMask,
    SclMask,
    load_mask_config,
    make_mask,
    mask_names,
    parse_option_pairs,
)
from cloudfree.masks.morphology import dilate, erode, opening
from cloudfree.parallel import KERNEL_LOCK
from cloudfree.pipeline import clear_enough
from cloudfree.stack import NODATA, PROBABILITY_NODATA, Stack

GRID = GeoBox.from_bbox((600000, 5900000, 605120, 5905120), "EPSG:32629", resolution=10)


def stack_of(layers: dict[str, np.ndarray], geobox: GeoBox | None = None) -> Stack:
    first = next(iter(layers.values()))
    t, ny, nx = first.shape
    data = np.full((t, 1, ny, nx), 500, dtype=np.int16)
    if "SCL" in layers:
        data[:, 0][layers["SCL"] == 0] = NODATA
    return Stack(
        geobox=geobox or GRID[:ny, :nx],
        days=tuple(date(2022, 1, d + 1) for d in range(t)),
        bands=("B04",),
        data=data,
        layers=layers,
    )


def random_scl(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Blobby clouds with shadows and speckle over vegetation, water and some no data."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), (0, 6, 6))
    scl = np.full(shape, SclClass.VEGETATION, dtype=np.uint8)
    scl[smooth < np.quantile(smooth, 0.2)] = SclClass.WATER
    scl[smooth > np.quantile(smooth, 0.8)] = SclClass.CLOUD_HIGH_PROBABILITY
    scl[(smooth > np.quantile(smooth, 0.72)) & (smooth <= np.quantile(smooth, 0.8))] = (
        SclClass.CLOUD_SHADOWS
    )
    scl[rng.random(shape) < 0.01] = SclClass.CLOUD_MEDIUM_PROBABILITY  # speckle
    scl[rng.random(shape) < 0.005] = SclClass.SNOW
    scl[:, :, :7] = SclClass.NO_DATA  # a swath edge
    return scl


# -- morphology ------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.5, 1, 2, 2.5, 6, 10.3])
def test_morphology_matches_scipy_with_a_disk(radius):
    mask = ndimage.gaussian_filter(np.random.default_rng(1).random((3, 200, 180)), (0, 4, 4)) > 0.51
    r = math.floor(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= radius**2

    def per_layer(op, **kw):
        return np.stack([op(layer, structure=disk, **kw) for layer in mask])

    np.testing.assert_array_equal(dilate(mask, radius), per_layer(ndimage.binary_dilation))
    eroded = per_layer(ndimage.binary_erosion, border_value=1)
    np.testing.assert_array_equal(erode(mask, radius), eroded)
    np.testing.assert_array_equal(
        opening(mask, radius),
        np.stack([ndimage.binary_dilation(layer, structure=disk) for layer in eroded]),
    )


def test_opening_drops_specks_and_keeps_blobs():
    mask = np.zeros((1, 60, 60), dtype=bool)
    mask[0, 10, 10] = True  # one pixel
    mask[0, 30:32, 30:32] = True  # 2 x 2
    mask[0, 40:55, 5:25] = True  # a blob
    opened = opening(mask, 2)
    assert not opened[0, :35].any()
    assert opened[0, 42:53, 7:23].all()  # only the blob's corners are rounded off
    assert not (opened & ~mask).any()


def test_morphology_waits_for_the_kernel_lock():
    # numba releases the GIL for a parallel region, so two tiles' masks could launch their
    # kernels at once (numba's workqueue layer aborts the process on that)
    mask = np.zeros((2, 64, 64), dtype=bool)
    mask[:, 32, 32] = True
    dilate(mask, 2)  # compiled before the lock is taken
    result = {}
    finished = threading.Event()

    def run() -> None:
        result["mask"] = dilate(mask, 2)
        finished.set()

    with KERNEL_LOCK:
        worker = threading.Thread(target=run)
        worker.start()
        assert not finished.wait(0.3), "dilate launched its kernel without KERNEL_LOCK"
    worker.join(timeout=60)
    assert finished.is_set()
    assert result["mask"].sum() == 2 * 13  # a disk of radius 2 around each marked pixel


# -- the registry ------------------------------------------------------------------------------


def test_registry_lists_the_built_in_masks():
    assert {"none", "scl", "probability"} <= set(mask_names())
    for name in ("none", "scl", "probability"):
        assert isinstance(make_mask(name), CloudMask)


def test_unknown_mask_and_option_name_the_fix():
    with pytest.raises(InvalidInputError, match=r"Unknown cloud mask 'sky'.*scl"):
        make_mask("sky")
    with pytest.raises(InvalidInputError, match=r"no option dilaton_m.*dilation_m"):
        make_mask("scl", {"dilaton_m": 10})
    with pytest.raises(InvalidInputError, match="dilation_m must be between 0"):
        make_mask("scl", {"dilation_m": "-5"})
    with pytest.raises(InvalidInputError, match="threshold must be a number"):
        make_mask("probability", {"threshold": "high"})
    with pytest.raises(InvalidInputError, match="unknown preset 'lax'"):
        make_mask("scl", {"preset": "lax"})
    with pytest.raises(InvalidInputError, match=r"Cannot load cloud mask 'nosuch\.module:X'"):
        make_mask("nosuch.module:X")


PLUGIN = textwrap.dedent(
    """
    import numpy as np

    class BrightMask:
        name = "bright"
        layers = ()

        def __init__(self, limit="1000"):
            self.limit = int(limit)

        def halo_m(self):
            return 0.0

        def __call__(self, stack, pixel_size_m):
            return stack.has_data & np.all(stack.data < self.limit, axis=1)

        def describe(self):
            return f"reflectance below {self.limit}"

    class NotAMask:
        pass
    """
)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A plug-in module and an installed distribution declaring it as an entry point."""
    (tmp_path / "bright_plugin.py").write_text(PLUGIN)
    info = tmp_path / "bright_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bright-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cloudfree.masks]\nbright = bright_plugin:BrightMask\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("bright_plugin", None)


def test_plugins_by_entry_point_and_import_path(plugin_dir):
    assert "bright" in mask_names()
    stack = stack_of({"SCL": np.full((2, 4, 4), 4, np.uint8)})
    stack.data[0, 0, 0, 0] = 3000
    for name in ("bright", "bright_plugin:BrightMask"):
        mask = make_mask(name, {"limit": "2000"})
        clear = mask(stack, 10.0)
        assert clear.sum() == 2 * 16 - 1 and not clear[0, 0, 0]
    with pytest.raises(InvalidInputError, match="does not follow the CloudMask protocol"):
        make_mask("bright_plugin:NotAMask")


# -- options -----------------------------------------------------------------------------------


def test_option_pairs_and_config_files(tmp_path):
    assert parse_option_pairs(["dilation_m=60", "valid-classes=vegetation,water"]) == {
        "dilation_m": "60",
        "valid_classes": "vegetation,water",
    }
    with pytest.raises(InvalidInputError, match="given twice"):
        parse_option_pairs(["a=1", "a=2"])
    toml = tmp_path / "mask.toml"
    toml.write_text('cloud_mask = "scl"\nvalid_classes = ["vegetation", 6]\ndilation_m = 30\n')
    assert load_mask_config(toml) == ("scl", {"valid_classes": ["vegetation", 6], "dilation_m": 30})
    js = tmp_path / "mask.json"
    js.write_text(json.dumps({"mask": {"threshold": 55}}))
    assert load_mask_config(js) == (None, {"threshold": 55})
    bad = tmp_path / "mask.toml.txt"
    bad.write_text("x = 1")
    with pytest.raises(InvalidInputError, match=r"must be a \.toml or \.json"):
        load_mask_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("x = [")
    with pytest.raises(InvalidInputError, match="is not valid"):
        load_mask_config(broken)
    # the same mask from text, a file's types and Python objects
    a = make_mask("scl", {"valid_classes": "vegetation,6", "dilation_m": "30"})
    b = make_mask("scl", {"valid_classes": ["vegetation", 6], "dilation_m": 30})
    c = SclMask(valid_classes={SclClass.VEGETATION, SclClass.WATER}, dilation_m=30.0)
    assert a.describe() == b.describe() == c.describe()


# -- the SCL mask ------------------------------------------------------------------------------


def test_presets_are_named_class_sets():
    assert SclMask().valid_classes == DEFAULT_VALID
    assert SclMask(preset="cdse-l3").valid_classes == CDSE_L3_VALID
    assert {int(c) for c in CDSE_L3_VALID} == {2, 4, 5, 6, 11}
    assert SclMask(preset="strict").valid_classes == STRICT_VALID
    assert {int(c) for c in STRICT_VALID} == {4, 5, 6}
    with pytest.raises(InvalidInputError, match="no_data cannot be a valid class"):
        make_mask("scl", {"valid_classes": "no_data,vegetation"})


def test_scl_without_cleanup_is_a_class_lookup():
    scl = random_scl(3, (2, 64, 64))
    clear = SclMask(opening_m=0, dilation_m=0)(stack_of({"SCL": scl}), 10.0)
    expected = np.isin(scl, [int(c) for c in DEFAULT_VALID])
    np.testing.assert_array_equal(clear, expected)


def test_cleanup_drops_speckle_and_buffers_clouds_not_snow_or_nodata():
    scl = np.full((1, 80, 80), SclClass.VEGETATION, np.uint8)
    scl[0, 5, 5] = SclClass.CLOUD_MEDIUM_PROBABILITY  # a speck: accepted after opening
    scl[0, 30:50, 30:50] = SclClass.CLOUD_HIGH_PROBABILITY  # a cloud: buffered by 60 m = 6 px
    scl[0, 60:75, 5:20] = SclClass.SNOW  # rejected, but not buffered
    scl[0, :, 77:] = SclClass.NO_DATA  # swath edge: not clear, not buffered
    clear = SclMask(opening_m=20, dilation_m=60)(stack_of({"SCL": scl}), 10.0)[0]
    assert clear[5, 5]
    # the cloud and a 6 px buffer on its sides (the opening rounds corners; the buffer covers them)
    assert not clear[24:56, 34:46].any() and not clear[34:46, 24:56].any()
    assert not clear[30:50, 30:50].any()
    assert clear[23, 40] and clear[40, 57]  # just outside the 6 px buffer
    assert not clear[62:73, 7:18].any() and clear[59, 10] and clear[67, 20]
    assert not clear[:, 77:].any() and clear[10, 76]


def test_halo_makes_cleanup_independent_of_the_tile():
    """The mask of a tile loaded with its halo equals the same pixels of the whole grid."""
    scl = random_scl(5, (3, 300, 300))
    mask = SclMask(opening_m=25, dilation_m=70)
    whole = mask(stack_of({"SCL": scl}), 10.0)
    halo = math.ceil(mask.halo_m() / 10.0)
    for y0, x0, size in [(0, 0, 64), (100, 37, 64), (150, 150, 128), (236, 236, 64), (40, 200, 97)]:
        y1, x1 = min(y0 + size, 300), min(x0 + size, 300)
        py0, px0 = max(y0 - halo, 0), max(x0 - halo, 0)
        py1, px1 = min(y1 + halo, 300), min(x1 + halo, 300)
        part = mask(stack_of({"SCL": scl[:, py0:py1, px0:px1]}), 10.0)
        inner = part[:, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        np.testing.assert_array_equal(inner, whole[:, y0:y1, x0:x1])
    # without the halo the edges differ: the halo is needed, not decoration
    part = mask(stack_of({"SCL": scl[:, 100:164, 100:164]}), 10.0)
    assert (part != whole[:, 100:164, 100:164]).any()


def test_probability_mask_thresholds_and_treats_missing_as_not_clear():
    prob = np.zeros((1, 40, 40), np.uint8)
    prob[0, 10:20, 10:20] = 80
    prob[0, 30, 30] = 45  # an isolated cloudy pixel: dropped by the opening
    prob[0, :, 38:] = PROBABILITY_NODATA
    stack = stack_of({"CLD": prob})
    clear = make_mask("probability", {"threshold": 40, "dilation_m": 30})(stack, 10.0)[0]
    assert not clear[7:23, 12:18].any() and not clear[10:20, 10:20].any() and clear[6, 15]
    assert clear[30, 30]
    assert not clear[:, 38:].any()
    strict = make_mask("probability", {"threshold": 40, "opening_m": 0, "dilation_m": 0})
    assert not strict(stack, 10.0)[0, 30, 30]


def test_days_mostly_cloudy_in_a_tile_are_dropped():
    has = np.ones((3, 10, 10), bool)
    has[2, :, 5:] = False  # half the tile has no data on day 3
    clear = np.ones((3, 10, 10), bool)
    clear[0, :8] = False  # 20 % clear
    clear[1, :3] = False  # 70 % clear
    clear[2, :6] = False  # 4 of 50 data pixels: 8 % clear
    assert clear_enough(clear & has, has, 0.5).tolist() == [False, True, False]


# -- masks in the pipeline ---------------------------------------------------------------------


def mosaic_of(archive, tmp_path, name, **options):
    import cloudfree

    defaults = dict(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date="2021-11-01",
        end_date="2022-04-30",
        bands=["red"],
        crs="EPSG:2157",
        resolution=10.0,
        quicklook=False,
        out=str(tmp_path / f"{name}.zarr"),
    )
    return cloudfree.mosaic(**(defaults | options))


@pytest.mark.parametrize(
    ("mask", "options"),
    [("scl", {"opening_m": 30, "dilation_m": 100}), ("probability", {"dilation_m": 80})],
)
def test_mosaic_with_256_px_tiles_equals_2048_px_tiles(archive, tmp_path, mask, options):
    import xarray as xr

    small = mosaic_of(
        archive, tmp_path, "small", cloud_mask=mask, mask_options=options, chunk_size=256
    )
    big = mosaic_of(
        archive, tmp_path, "big", cloud_mask=mask, mask_options=options, chunk_size=2048
    )
    a, b = xr.open_zarr(small.out), xr.open_zarr(big.out)
    assert small.units > big.units == 1
    for name in ("red", "observations"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_cleanup_changes_the_mosaic_and_is_in_its_lineage(archive, tmp_path):
    import xarray as xr

    plain = mosaic_of(archive, tmp_path, "plain", mask_options={"opening_m": 0, "dilation_m": 0})
    buffered = mosaic_of(
        archive, tmp_path, "buffered", mask_options={"opening_m": 0, "dilation_m": 100}
    )
    a, b = xr.open_zarr(plain.out), xr.open_zarr(buffered.out)
    assert (b.observations.values <= a.observations.values).all()
    assert (b.observations.values < a.observations.values).mean() > 0.05
    assert "cloud/shadow buffer 100 m" in b.attrs["cloudfree:lineage"]
    assert "buffer" not in a.attrs["cloudfree:lineage"]


def test_min_clear_fraction_drops_days(archive, tmp_path):
    import xarray as xr

    every = mosaic_of(archive, tmp_path, "every", chunk_size=128)
    some = mosaic_of(archive, tmp_path, "some", chunk_size=128, min_clear_fraction=0.6)
    a, b = xr.open_zarr(every.out), xr.open_zarr(some.out)
    assert (b.observations.values <= a.observations.values).all()
    assert b.observations.values.sum() < a.observations.values.sum()
    assert "under 60% clear in a tile dropped" in b.attrs["cloudfree:lineage"]


def test_mask_layers_missing_from_scenes_fail_before_reading(archive, tmp_path):
    with pytest.raises(InvalidInputError, match="The probability cloud mask reads CLD") as info:
        mosaic_of(
            archive,
            tmp_path,
            "x",
            cloud_mask="probability",
            stac=str(_items_without(archive, tmp_path, "cloud", "CLD_20m")),
        )
    assert "another --cloud-mask" in str(info.value)
    assert not (tmp_path / "x.zarr").exists()


def _items_without(archive, tmp_path, *keys):
    """The archive's ItemCollection with some asset keys removed."""
    items = json.loads(archive.items_path.read_text())
    for feature in items["features"]:
        for key in keys:
            feature["assets"].pop(key, None)
    path = tmp_path / "items-without.json"
    path.write_text(json.dumps(items))
    return path


def test_s2cloudless_on_l2a_scenes_says_which_bands_are_missing(archive, tmp_path):
    pytest.importorskip("s2cloudless", reason="the s2cloudless extra is not installed")
    with pytest.raises(InvalidInputError, match="has no asset for B01, B05") as info:
        mosaic_of(archive, tmp_path, "s2c", cloud_mask="s2cloudless")
    assert "The s2cloudless cloud mask reads B01" in str(info.value)
    assert not (tmp_path / "s2c.zarr").exists()
