"""Every source yields the same scenes and the same pixels: EOPF Zarr, and the archive's COGs."""

from datetime import timedelta

import numpy as np
import pytest
import xarray as xr
from tests.cdse import cdse_items

import cloudfree
from cloudfree.errors import RunFailedError
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


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    """The standard AWS variables pointing at the loopback S3 server (as a user would set them)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    return s3_server


@pytest.mark.parametrize("layout", ["safe", "aws/sentinel-s2-l2a"])
def test_file_layouts_on_s3_give_the_cog_mosaic(
    archive, first_dates, layouts, layout, aws_env, tmp_path
):
    bucket = aws_env.create_bucket()
    aws_env.upload_directory(layouts / layout, bucket, prefix="archive")
    reference = _mosaic(tmp_path, "cog", archive, first_dates, stac=str(archive.catalog))
    other = _mosaic(tmp_path, "s3", archive, first_dates, archive=f"s3://{bucket}/archive")
    _assert_same(reference, other)


def test_s3_archive_lists_only_the_prefixes_it_needs(archive, layouts, aws_env):
    """Finding a month of one tile lists that month's folders, never the bucket."""
    from cloudfree.aoi import aoi_from_bbox
    from cloudfree.sources import select_source
    from cloudfree.sources.base import SearchQuery
    from cloudfree.timeframe import time_range

    bucket = aws_env.create_bucket()
    aws_env.upload_directory(layouts / "aws/sentinel-s2-l2a", bucket)
    source = select_source(archive=f"s3://{bucket}", tiles=["29UPV"])
    listed: list[str] = []
    ls = source.fs.ls

    def counting_ls(path, *args, **kwargs):
        listed.append(str(path))
        return ls(path, *args, **kwargs)

    source.fs.ls = counting_ls
    query = SearchQuery(aoi_from_bbox(list(archive.bbox)), time_range("2021-12-01", "2021-12-31"))
    scenes = source.search(query)
    assert scenes and {s.tile for s in scenes} == {"29UPV"}
    assert all(s.datetime.month == 12 for s in scenes)
    assert all("/tiles/29/U/PV/2021/12" in p for p in listed), listed


@pytest.mark.parametrize("credentials", ["environment", "profile"])
def test_cdse_assets_read_with_credentials_from_env_or_profile(
    archive, first_dates, s3_server, tmp_path, monkeypatch, credentials
):
    items = cdse_items(archive, s3_server, tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDSE_S3_ENDPOINT_URL", s3_server.endpoint_url)
    if credentials == "environment":
        monkeypatch.setenv("CDSE_S3_ACCESS_KEY", s3_server.access_key)
        monkeypatch.setenv("CDSE_S3_SECRET_KEY", s3_server.secret_key)
    else:
        profile = tmp_path / "credentials"
        profile.write_text(
            f"[cdse]\naws_access_key_id = {s3_server.access_key}\n"
            f"aws_secret_access_key = {s3_server.secret_key}\n"
        )
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
        monkeypatch.setenv("CDSE_S3_PROFILE", "cdse")
    reference = _mosaic(tmp_path, "cog", archive, first_dates, stac=str(archive.catalog))
    cdse = _mosaic(tmp_path, "cdse", archive, first_dates, stac=str(items))
    _assert_same(reference, cdse)
    secret = s3_server.secret_key.encode()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "credentials":
            assert secret not in path.read_bytes(), path


def test_cdse_with_a_missing_profile_says_how_to_fix_it(
    archive, first_dates, s3_server, tmp_path, monkeypatch
):
    items = cdse_items(archive, s3_server, tmp_path)
    monkeypatch.delenv("CDSE_S3_ACCESS_KEY", raising=False)
    monkeypatch.setenv("CDSE_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("CDSE_S3_PROFILE", "cdse")
    with pytest.raises(RunFailedError, match=r"Profile 'cdse'.*CDSE_S3_ACCESS_KEY"):
        _mosaic(tmp_path, "cdse", archive, first_dates, stac=str(items))
