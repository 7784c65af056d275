"""Searching a real STAC API (stac-fastapi-pgstac on PostgreSQL + PostGIS, on loopback)."""

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
from click.testing import CliRunner

import cloudfree
from cloudfree.cli.main import cli
from cloudfree.errors import NoScenesFoundError
from cloudfree.testing.http_server import serve_directory

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pystac")


@pytest.fixture(scope="module")
def cogs(archive):
    """The archive's COGs behind an HTTP server with range requests."""
    with serve_directory(archive.root) as server:
        yield server


@pytest.fixture(scope="module")
def api(stac_api, archive, cogs):
    """The API holding the synthetic archive's collection and items, assets served over HTTP."""
    catalog = pystac.read_file(str(archive.catalog))
    collections, items = [], []
    for collection in catalog.get_all_collections():
        collections.append(collection.to_dict(include_self_link=False, transform_hrefs=False))
        for item in collection.get_items():
            item.make_asset_hrefs_absolute()
            for asset in item.assets.values():
                relative = Path(asset.href).relative_to(archive.root).as_posix()
                asset.href = f"{cogs.url}/{relative}"
            items.append(item.to_dict(include_self_link=False, transform_hrefs=False))
    stac_api.load(collections, items)
    yield stac_api
    stac_api.clear()


def _search(api, *args):
    result = CliRunner().invoke(
        cli, ["search", "--stac", api.url, "--format", "json", *map(str, args)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_search_by_bbox_time_and_cloud_cover(api, archive):
    bbox = archive.overlap_bbox()
    every = _search(api, "--bbox", *bbox, "--start-date", "2021-11-01", "--end-date", "2022-05-01")
    assert len(every) == len(archive.scenes)
    assert {s["crs"] for s in every} == {"EPSG:32629", "EPSG:32630"}
    december = _search(
        api, "--bbox", *bbox, "--start-date", "2021-12-01", "--end-date", "2021-12-31"
    )
    assert december and all(s["datetime"].startswith("2021-12") for s in december)
    clear = _search(
        api,
        "--bbox",
        *bbox,
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2022-05-01",
        "--max-cloud-cover",
        20,
    )
    assert clear and all(s["cloud_cover"] <= 20 for s in clear)
    assert len(clear) < len(every)
    # same-day scenes of the two tiles are grouped under one solar day
    first = every[0]
    assert {
        "id",
        "datetime",
        "solar_day",
        "crs",
        "cloud_cover",
        "processing_baseline",
        "bands",
    } <= (set(first))
    assert set(first["bands"]) >= {"B02", "B03", "B04", "B08", "SCL"}
    assert set(first["bands"]["B04"]) == {"href", "scale", "offset", "nodata"}


def test_paging_and_max_items(api, archive):
    """Pages of 2 items: every scene arrives once; --max-items stops early."""
    from cloudfree.aoi import aoi_from_bbox
    from cloudfree.pipeline import search_query
    from cloudfree.sources import open_source
    from cloudfree.timeframe import time_range

    query = search_query(
        aoi_from_bbox(list(archive.bbox)), time_range("2021-11-01", "2022-05-01"), (), None, None
    )
    source = open_source(api.url)
    source.page_size = 2
    scenes = source.search(query)
    assert sorted(s.id for s in scenes) == sorted(s.id for s in archive.scenes)
    limited = _search(
        api,
        "--bbox",
        *archive.bbox,
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2022-05-01",
        "--max-items",
        3,
    )
    assert len(limited) == 3


def test_empty_search_says_what_was_searched(api, archive):
    with pytest.raises(NoScenesFoundError, match=r"2030-01-01.*2030-02-01"):
        cloudfree.pipeline.find_scenes(
            stac=api.url, bbox=archive.bbox, start_date="2030-01-01", end_date="2030-02-01"
        )


def test_mosaic_through_the_api_equals_the_static_catalog(api, archive, cogs, tmp_path):
    common = dict(
        bbox=archive.overlap_bbox(),
        start_date="2021-11-01",
        end_date="2021-12-31",
        bands=["B04"],
        quicklook=False,
    )
    cloudfree.mosaic(stac=str(archive.catalog), out=str(tmp_path / "file.zarr"), **common)
    cloudfree.mosaic(stac=api.url, out=str(tmp_path / "api.zarr"), **common)
    a, b = xr.open_zarr(tmp_path / "file.zarr"), xr.open_zarr(tmp_path / "api.zarr")
    np.testing.assert_array_equal(a["B04"].values, b["B04"].values)
    ranged = [r for r in cogs.requests.all() if r.path.endswith("B04.tif") and r.range]
    assert ranged  # the pixels came over HTTP range requests
