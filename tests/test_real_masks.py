"""Cloud masks on real Sentinel-2 pixels: the figures docs/masks.md states, with margins.

Measured values are in the comments; the assertions leave room around them but fail if the
behaviour they describe changes (a mask that stops masking, a clean-up that stops cleaning).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import rasterize
from rasterio.warp import Resampling, reproject

import cloudfree
from cloudfree.aoi import aoi_from_bbox
from cloudfree.bands import SclClass
from cloudfree.masks import SclMask
from cloudfree.stack import NODATA, Stack
from cloudfree.testing.real_masks import (
    RKH_PIXELS,
    eolearn_composites,
    local_rkh_item,
    markdown,
    s2cloudless_postprocessing_fit,
    scl_29rkh,
)

pytestmark = pytest.mark.realdata

# A lon/lat box in the cloudy north-east of tile 29RKH (about 38 x 21 km).
RKH_BBOX = (-11.37, 25.09, -10.99, 25.285)


# -- (a) SCL of S2A_29RKH_20200219 ----------------------------------------------------------


@pytest.fixture(scope="module")
def scl_figures(realdata: Path):
    return scl_29rkh(realdata)


def test_scl_class_shares(scl_figures):
    shares = scl_figures.class_fractions
    assert sum(shares.values()) == pytest.approx(1.0)
    # measured: not vegetated 95.94 %, thin cirrus 3.46 %, cloud medium 0.32 %, high 0.28 %,
    # unclassified 3 px, dark area 1 px, no data 0
    assert 0.95 < shares["not_vegetated"] < 0.97
    assert 0.03 < shares["thin_cirrus"] < 0.04
    cloud = shares["cloud_medium_probability"] + shares["cloud_high_probability"]
    assert 0.005 < cloud < 0.007
    assert shares["no_data"] == 0.0
    assert scl_figures.pixels == 549 * 549


def test_scl_presets_keep_their_classes(scl_figures):
    shares, clear = scl_figures.class_fractions, scl_figures.clear_fraction
    # measured: default and cdse-l3 keep 95.939 % (no snow here), strict 95.938 % (one dark px)
    kept = {
        "default": ("dark_area_pixels", "vegetation", "not_vegetated", "water"),
        "cdse-l3": ("dark_area_pixels", "vegetation", "not_vegetated", "water", "snow"),
        "strict": ("vegetation", "not_vegetated", "water"),
    }
    for preset, classes in kept.items():
        assert clear[preset] == pytest.approx(sum(shares[c] for c in classes), abs=1e-12)
    assert clear["strict"] < clear["default"] == clear["cdse-l3"]


def test_scl_cleanup_on_the_decimated_grid(scl_figures):
    plain = scl_figures.clear_fraction["default"]
    default, scaled, strong = scl_figures.cleanup["default"]
    # the 20 m opening and 60 m buffer are below one 200 m pixel: they change nothing
    assert (default.opening_m, default.dilation_m) == (20.0, 60.0)
    assert default.clear_fraction == plain
    assert default.speckle_removed == default.buffer_added == 0
    # x10 (200 m / 600 m), measured: opening gives back 808 px, buffer takes 5750, clear 94.30 %
    assert 400 < scaled.speckle_removed < 1600
    assert 3000 < scaled.buffer_added < 10000
    assert scaled.clear_fraction < plain
    # 400 m / 600 m, measured: 1764 px given back, 4672 taken, clear 94.97 %
    assert strong.speckle_removed > scaled.speckle_removed
    assert strong.buffer_added < scaled.buffer_added
    assert scaled.clear_fraction < strong.clear_fraction < plain


def scl_on(realdata: Path, geobox: GeoBox) -> np.ndarray:
    """The product's SCL read onto ``geobox`` with nearest, independently of cloudfree.load."""
    out = np.zeros(geobox.shape.yx, dtype=np.uint8)
    with rasterio.open(realdata / RKH_PIXELS / "SCL.tif") as src:
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=geobox.affine,
            dst_crs=geobox.crs.to_wkt(),
            resampling=Resampling.nearest,
        )
    return out


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default-options"),
        pytest.param({"opening_m": 400, "dilation_m": 600}, id="cleanup-with-halo"),
    ],
)
def test_mosaic_is_nodata_exactly_where_the_scl_mask_rejects(realdata, tmp_path, options):
    item = local_rkh_item(realdata, tmp_path / "stac")
    result = cloudfree.mosaic(
        stac=str(item),
        bbox=RKH_BBOX,
        start_date="2020-02-19",
        end_date="2020-02-19",
        bands=["red"],
        resolution=200,
        crs="EPSG:32629",
        cloud_mask="scl",
        mask_options=options,
        chunk_size=64,  # several tiles, so the clean-up must cross tile edges through the halo
        out=str(tmp_path / "m.zarr"),
        quicklook=False,
    )
    ds = xr.open_zarr(result.out)
    observations = ds["observations"].isel(time=0).values
    red = ds["red"].isel(time=0).values
    geobox = ds.odc.geobox

    # the mask computed directly on the output grid, with enough context for its clean-up
    mask = SclMask(**options)
    halo = math.ceil(mask.halo_m() / 200)
    padded = geobox.pad(halo) if halo else geobox
    scl = scl_on(realdata, padded)
    # the grid lies inside the tile; its halo may reach past the tile's edge (no data there)
    assert (scl[halo : scl.shape[0] - halo, halo : scl.shape[1] - halo] != SclClass.NO_DATA).all()
    stack = Stack(
        geobox=padded,
        days=(),
        bands=("B04",),
        data=np.ones((1, 1, *padded.shape.yx), dtype=np.int16),
        layers=MappingProxyType({"SCL": scl[np.newaxis]}),
    )
    clear = mask(stack, 200.0)[0]
    plain = SclMask(opening_m=0, dilation_m=0)(stack, 200.0)[0]
    if halo:
        clear, plain = clear[halo:-halo, halo:-halo], plain[halo:-halo, halo:-halo]
    # with the clean-up the mask differs from the plain class test, so this checks the halo
    assert np.array_equal(clear, plain) == (not options)
    aoi = aoi_from_bbox(list(RKH_BBOX))
    inside = np.asarray(rasterize(aoi.geometry, geobox).values) if aoi.clip else np.ones_like(clear)

    expected = clear & inside
    assert 0.5 < expected.mean() < 0.95  # the box holds both clouds and clear ground
    assert np.array_equal(observations == 1, expected)
    assert np.array_equal(np.isfinite(red), expected)
    assert int(NODATA) == ds["red"].encoding["_FillValue"]


# -- (b) eo-learn's NDVI series: probability masks vs the reference CLM -----------------------


@pytest.fixture(scope="module")
def composites(realdata: Path):
    return {score.mask: score for score in eolearn_composites(realdata)}


def by_threshold(composites, threshold, cleaned):
    name = f"cloud probability below {threshold} % " + (
        "(opening 20 m, buffer 60 m)" if cleaned else "(opening 0 m, buffer 0 m)"
    )
    return composites[name]


def test_no_mask_is_far_from_the_reference_composite(composites):
    none = composites["no cloud mask"]
    # measured: every cloudy observation kept (omission 1.0), NDVI MAE 0.165, 0.3 % within 0.05
    assert none.agreement.omission == 1.0 and none.agreement.commission == 0.0
    assert none.mae > 0.1
    assert none.within_005 < 0.05
    assert none.agreement.observations == 68 * 101 * 100


def test_probability_mask_near_the_reference_threshold_reproduces_it(composites):
    none = composites["no cloud mask"]
    p40 = by_threshold(composites, 40, cleaned=False)
    # measured: accuracy 96.7 %, omission 6.5 %, commission 1.2 %, MAE 0.0081, 99.1 % within 0.05
    assert p40.agreement.accuracy > 0.95
    assert p40.mae < 0.02 and p40.mae < none.mae / 10
    assert p40.within_005 > 0.97
    assert p40.missing == 0


def test_threshold_trades_omission_for_commission(composites):
    raw = [by_threshold(composites, t, cleaned=False).agreement for t in (20, 40, 60)]
    # measured omission 0.8 / 6.5 / 15.8 %, commission 13.9 / 1.2 / 0.03 %
    assert raw[0].omission < raw[1].omission < raw[2].omission
    assert raw[0].commission > raw[1].commission > raw[2].commission


def test_cleanup_lowers_omission_at_every_threshold(composites):
    for threshold in (20, 40, 60):
        raw = by_threshold(composites, threshold, cleaned=False).agreement
        cleaned = by_threshold(composites, threshold, cleaned=True).agreement
        # measured at 40 %: omission 6.5 % -> 0.3 %, commission 1.2 % -> 5.3 %
        assert cleaned.omission < raw.omission
        assert cleaned.commission >= raw.commission


def test_reference_masks_were_made_at_a_fine_processing_grid(realdata):
    """CLM is reproduced from CLP best by a 80-160 m mean, not by the 640 m of a 160 m run."""
    fits = {(f.average_over_m, f.dilation_m): f for f in s2cloudless_postprocessing_fit(realdata)}
    # measured accuracy: raw 96.6 %, 80/40 m 98.9 %, 160/80 m 98.2 %, 320/160 m 95.9 %,
    # 640/320 m 94.3 %
    default = fits[(160.0, 80.0)].agreement
    assert default.accuracy > 0.97
    assert default.omission < 0.03 and default.commission < 0.03
    assert default.accuracy > fits[(640.0, 320.0)].agreement.accuracy + 0.02
    assert default.accuracy > fits[(0.0, 0.0)].agreement.accuracy + 0.01


def test_markdown_sections_for_the_report(realdata):
    text = "\n".join(markdown(realdata))
    for title in (
        "### SCL mask on S2A_29RKH_20200219",
        "### Probability mask on eo-learn's test patch",
        "### How the reference CLM was made",
        "### s2cloudless mask on 5 real L1C scenes",
    ):
        assert title in text
    assert "unclassified 3 px" in text
    assert "| no cloud mask | 60.4 % | 100.0 % | 0.0 % |" in text
