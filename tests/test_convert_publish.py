"""The issue's whole path: an EOPF item URL in, a browsable and mappable item in a STAC API out.

The product and its item are served over HTTP (as EOPF's are), converted to GeoZarr, and the
converted collection is published to stac-fastapi-pgstac on loopback, then searched back.
"""

from __future__ import annotations

import json

import pytest
import requests
import zarr
from click.testing import CliRunner
from pystac_client import Client

from cloudfree.cli.main import cli
from cloudfree.convert.stac_item import MULTISCALES_MEDIA_TYPE
from cloudfree.testing.eopf import write_eopf_archive

VIEWER = "https://raster.example.com/collections/{collection}/items/{item}"


@pytest.fixture
def clean_api(stac_api):
    yield stac_api
    stac_api.clear()


def test_item_url_to_published_geozarr_item(archive, http_server, clean_api, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    server = http_server(served)
    scene = archive.scenes[0]
    written = write_eopf_archive(archive, served, scene_ids=[scene.id], base_url=server.url)
    source_item = written.products[0].item
    (served / "item.json").write_text(json.dumps(source_item.to_dict(transform_hrefs=False)))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    public = http_server(outputs)

    runner = CliRunner(env={"CLOUDFREE_STAC_API_TOKEN": None})
    converted = runner.invoke(
        cli, ["-q", "convert", server.url_for("item.json"), "--out", str(outputs / "S2.zarr")]
    )
    assert converted.exit_code == 0, converted.output
    published = runner.invoke(
        cli,
        ["-q", "publish", str(outputs / "S2.stac"), "--api", clean_api.url,
         "--href-base", public.url, "--local-root", str(outputs), "--viewer", VIEWER],
    )  # fmt: skip
    assert published.exit_code == 0, published.output

    found = list(Client.open(clean_api.url).search(ids=[source_item.id]).items())
    assert len(found) == 1
    item = found[0].to_dict()
    assert item["properties"]["proj:code"] == source_item.properties["proj:code"]
    assert item["properties"]["datetime"] == source_item.to_dict()["properties"]["datetime"]
    zarr_assets = {k: a for k, a in item["assets"].items() if a["type"] == MULTISCALES_MEDIA_TYPE}
    assert zarr_assets and all("data" in a["roles"] for a in zarr_assets.values())
    # the published hrefs serve the converted store: its levels open over HTTP
    reflectance = next(a for a in zarr_assets.values() if "reflectance" in a["href"])
    assert reflectance["href"].startswith(public.url)
    group = zarr.open_group(
        store=zarr.storage.FsspecStore.from_url(reflectance["href"], read_only=True), mode="r"
    )
    assert "multiscales" in group.attrs and "r10m" in group
    thumbnail = item["assets"]["thumbnail"]
    assert requests.get(thumbnail["href"], timeout=30).content[:8] == b"\x89PNG\r\n\x1a\n"
    rels = {link["rel"]: link["href"] for link in item["links"]}
    assert rels["derived_from"] == server.url_for("item.json")
    assert rels["xyz"].startswith(VIEWER.format(collection=item["collection"], item=item["id"]))

    # a rerun of both commands changes nothing in the API
    again = runner.invoke(
        cli,
        ["publish", str(outputs / "S2.stac"), "--api", clean_api.url,
         "--href-base", public.url, "--local-root", str(outputs), "--viewer", VIEWER],
    )  # fmt: skip
    assert again.exit_code == 0 and "created" not in again.output and "updated" not in again.output
