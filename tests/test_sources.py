"""Every source yields the same scenes and the same pixels: EOPF Zarr, and the archive's COGs."""

from datetime import timedelta

import numpy as np
import pytest
import xarray as xr

import cloudfree
from cloudfree.testing.eopf import write_eopf_archive

BANDS = ["B04", "B08"]


@pytest.fixture(scope="module")
def first_dates(archive):
    """The first four acquisition dates (both tiles each), as an inclusive date range."""
    days = sorted({scene.datetime.date() for scene in archive.scenes})[:4]
    return days[0].isoformat(), (days[-1] + timedelta(days=1)).isoformat()


def _mosaic(tmp_path, name, synthetic, dates, **source):
    out = tmp_path / f"{name}.zarr"
    cloudfree.mosaic(
        **source,
        out=str(out),
        bbox=synthetic.overlap_bbox(),
        start_date=dates[0],
        end_date=dates[1],
        bands=BANDS,
        quicklook=False,
    )
    return xr.open_zarr(out)


def _assert_same(a, b):
    for name in [*BANDS, "observations"]:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert int(a["observations"].max()) > 0


def test_eopf_zarr_products_give_the_cog_mosaic(archive, first_dates, tmp_path):
    """Items with Zarr assets (EOPF): same pixels as the COGs, scale/offset applied once."""
    start, end = (np.datetime64(d) for d in first_dates)
    ids = [s.id for s in archive.scenes if start <= np.datetime64(s.datetime.date()) < end]
    eopf = write_eopf_archive(archive, tmp_path / "eopf", scene_ids=ids)
    reference = _mosaic(tmp_path, "cog", archive, first_dates, stac=str(archive.catalog))
    zarr = _mosaic(tmp_path, "zarr", archive, first_dates, stac=str(eopf.items_path))
    _assert_same(reference, zarr)


@pytest.fixture(scope="module")
def layouts(archive, tmp_path_factory):
    """The archive as SAFE products and in the AWS tile-path layout (JPEG 2000 bands)."""
    from cloudfree.testing.layouts import write_aws_tile_layout, write_safe_products

    root = tmp_path_factory.mktemp("layouts")
    write_safe_products(archive, root / "safe")
    write_aws_tile_layout(archive, root / "aws")
    return root


@pytest.mark.parametrize("layout", ["safe", "aws/sentinel-s2-l2a"])
def test_file_layouts_give_the_cog_mosaic(archive, first_dates, layouts, layout, tmp_path):
    reference = _mosaic(tmp_path, "cog", archive, first_dates, stac=str(archive.catalog))
    other = _mosaic(tmp_path, "other", archive, first_dates, archive=str(layouts / layout))
    _assert_same(reference, other)
