"""``cloudfree publish`` against a real STAC API (stac-fastapi-pgstac on pgSTAC).

Catalogs are real: a mosaic of the synthetic archive made by ``cloudfree.mosaic``, and a
GeoZarr item shaped like the EOPF Explorer's. Faults and the auth gateway are a real reverse
proxy on loopback (``cloudfree.testing.api_proxy``) in front of the API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from click.testing import CliRunner, Result
from pystac_client import Client
from tests.servers import free_port

import cloudfree
from cloudfree.catalog.publish import Outcome, publish
from cloudfree.catalog.stac_api import ApiAuth, StacApiClient
from cloudfree.catalog.staging import (
    HrefPolicy,
    InvalidCatalogError,
    ViewerLinks,
    prepare,
    read_catalog,
    resolve_href,
)
from cloudfree.cli.main import cli
from cloudfree.config import PublishSettings
from cloudfree.errors import InvalidInputError, PublishError
from cloudfree.testing.api_proxy import proxy_api

VIEWER = "https://raster.example.com/collections/{collection}/items/{item}"
ZARR_V3 = "application/vnd.zarr; version=3"
GEOZARR = "application/vnd.zarr; version=3; profile=multiscales"
FAST = PublishSettings(retries=2, backoff=0.0, max_wait=0.0, timeout=30.0)
SECRET = "s3cr3t-publish-token-0123456789"


@pytest.fixture(scope="module")
def mosaic_root(archive: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quarterly mosaic (three items) with COGs, quick-looks and its STAC folder ``m.stac``."""
    root = tmp_path_factory.mktemp("publish-mosaic")
    cloudfree.mosaic(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date="2021-11-01",
        end_date="2022-04-30",
        bands=["red", "green", "blue"],
        crs="EPSG:2157",
        resolution=20.0,
        chunk_size=256,
        period="quarter",
        out=str(root / "m.zarr"),
        cog_dir=str(root / "cogs"),
    )
    return root


@pytest.fixture
def mosaic(mosaic_root: Path, tmp_path: Path) -> Path:
    """A copy of the mosaic's folder that a test may edit; returns the copy's root."""
    root = tmp_path / "out"
    shutil.copytree(mosaic_root, root)
    return root


@pytest.fixture
def api(stac_api: Any) -> Iterator[Any]:
    """The shared STAC API; every collection a test publishes is deleted afterwards."""
    with psycopg.connect(stac_api.dsn, autocommit=True) as conn:
        before = {row[0] for row in conn.execute("SELECT id FROM pgstac.collections")}
    yield stac_api
    with psycopg.connect(stac_api.dsn, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.collections")]
        for collection_id in ids:
            if collection_id not in before:
                conn.execute("SELECT pgstac.delete_collection(%s)", (collection_id,))


def invoke(*args: object, env: dict[str, str | None] | None = None) -> Result:
    base: dict[str, str | None] = {
        "CLOUDFREE_PUBLISH_RETRIES": "1",
        "CLOUDFREE_STAC_API_TOKEN": None,
    }
    return CliRunner().invoke(cli, ["-q", *map(str, args)], env={**base, **(env or {})})


def item_path(root: Path, period: str) -> Path:
    return root / "m.stac" / f"m-{period}" / f"m-{period}.json"


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def api_state(url: str, collection_id: str) -> dict[str, Any]:
    """The API's collection and items, as it serves them."""
    collection = requests.get(f"{url}/collections/{collection_id}", timeout=30).json()
    items = requests.get(
        f"{url}/collections/{collection_id}/items", params={"limit": 100}, timeout=30
    ).json()
    return {"collection": collection, "items": sorted(items["features"], key=lambda i: i["id"])}


def publish_mosaic(
    root: Path, api_url: str, *extra: object, env: dict[str, str | None] | None = None
) -> Result:
    return invoke(
        "publish",
        root / "m.stac",
        "--api",
        api_url,
        "--href-base",
        "https://data.example.com/out",
        "--viewer",
        VIEWER,
        "--report",
        root / "report.json",
        *extra,
        env=env,
    )


def test_mosaic_is_published_searchable_and_complete(mosaic, api, http_server):
    served = http_server(mosaic)
    result = invoke(
        "publish",
        mosaic / "m.stac",
        "--api",
        api.url,
        "--href-base",
        served.url,
        "--viewer",
        VIEWER,
        "--report",
        mosaic / "report.json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((mosaic / "report.json").read_text())
    assert report["collection"] == "created"
    assert report["counts"] == {"created": 4}

    client = Client.open(api.url)
    found = list(
        client.search(
            collections=["m"], bbox=[-6.02, 53.34, -5.99, 53.36], datetime="2022-01-15"
        ).items()
    )
    assert [i.id for i in found] == ["m-2022-01-01"]
    by_ids = client.search(ids=["m-2021-10-01", "m-2022-04-01"], collections=["m"])
    assert sorted(i.id for i in by_ids.items()) == ["m-2021-10-01", "m-2022-04-01"]

    item = found[0].to_dict()
    props = item["properties"]
    assert props["proj:code"] == "EPSG:2157"
    assert props["proj:transform"][0] == 20.0 and len(props["proj:shape"]) == 2
    assert "median" in props["processing:lineage"]
    assert props["start_datetime"] == "2022-01-01T00:00:00Z"
    zarr = item["assets"]["zarr"]
    assert zarr["type"] == ZARR_V3 and "data" in zarr["roles"]
    assert zarr["href"] == f"{served.url}/m.zarr"
    for key in ("zarr", "cog"):
        assert [b["name"] for b in item["assets"][key]["bands"]] == ["red", "green", "blue"]
        for band in item["assets"][key]["raster:bands"]:
            assert band["scale"] == pytest.approx(1e-4)
            assert band["offset"] == 0 and band["nodata"] == -32768
    # every file asset carries a checksum that matches what its published href serves
    for key in ("cog", "thumbnail"):
        asset = item["assets"][key]
        body = requests.get(asset["href"], timeout=30).content
        assert asset["file:checksum"] == "1220" + hashlib.sha256(body).hexdigest()
        assert asset["file:size"] == len(body)
    assert "thumbnail" in item["assets"]["thumbnail"]["roles"]
    links = {link["rel"]: link for link in item["links"]}
    endpoint = "https://raster.example.com/collections/m/items/m-2022-01-01"
    assert links["viewer"]["href"] == f"{endpoint}/viewer"
    assert links["xyz"]["href"].startswith(f"{endpoint}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}")
    assert "asset_bidx=cog%7C1,2,3" in links["xyz"]["href"]
    assert links["tilejson"]["type"] == "application/json"
    assert links["self"]["href"].startswith(api.url)  # the API's own links

    # a rerun changes nothing, and the API serves exactly the same
    before = api_state(api.url, "m")
    again = invoke(
        "publish",
        mosaic / "m.stac",
        "--api",
        api.url,
        "--href-base",
        served.url,
        "--viewer",
        VIEWER,
        "--report",
        mosaic / "report.json",
    )
    assert again.exit_code == 0, again.output
    assert json.loads((mosaic / "report.json").read_text())["counts"] == {"unchanged": 4}
    assert api_state(api.url, "m") == before


def test_one_changed_item_is_one_update(mosaic, api):
    assert publish_mosaic(mosaic, api.url).exit_code == 0
    edit_json(
        item_path(mosaic, "2022-01-01"),
        lambda d: d["assets"]["thumbnail"].update(title="Quick-look, retouched"),
    )
    with proxy_api(api.url) as proxy:
        result = publish_mosaic(mosaic, proxy.url)
        assert result.exit_code == 0, result.output
        writes = [
            (r.method, r.path) for r in proxy.log if r.method != "GET" and r.path != "/search"
        ]
        searches = [r for r in proxy.log if r.path == "/search"]
    report = json.loads((mosaic / "report.json").read_text())
    assert report["counts"] == {"unchanged": 3, "updated": 1}
    assert report["items"]["m-2022-01-01"] == "updated"
    assert writes == [("PUT", "/collections/m/items/m-2022-01-01")]
    assert len(searches) == 1  # the three published items were read in one search
    served = requests.get(f"{api.url}/collections/m/items/m-2022-01-01", timeout=30).json()
    assert served["assets"]["thumbnail"]["title"] == "Quick-look, retouched"


def test_invalid_item_fails_before_any_request(mosaic, api):
    edit_json(
        item_path(mosaic, "2022-04-01"), lambda d: d["properties"].update({"proj:shape": "big"})
    )
    with proxy_api(api.url) as proxy:
        result = publish_mosaic(mosaic, proxy.url)
        assert proxy.log == []
    assert result.exit_code == 2
    assert "m-2022-04-01" in result.stderr and "proj:shape" in result.stderr
    assert "nothing was sent" in result.stderr


def test_local_and_signed_hrefs_are_refused_before_any_request(mosaic, api):
    with proxy_api(api.url) as proxy:
        local = invoke("publish", mosaic / "m.stac", "--api", proxy.url)
        signed_path = item_path(mosaic, "2021-10-01")
        edit_json(
            signed_path,
            lambda d: d["assets"]["cog"].update(
                href="https://bucket.example.com/m.tif?X-Amz-Credential=AKIAX&X-Amz-Signature=ab12"
            ),
        )
        signed = publish_mosaic(mosaic, proxy.url)
        assert proxy.log == []
    assert local.exit_code == 2
    assert "asset 'zarr'" in local.stderr and "--href-base" in local.stderr
    assert signed.exit_code == 2
    assert "'X-Amz-Credential'" in signed.stderr and "AKIAX" not in signed.stderr
    assert "ab12" not in signed.stderr


def test_unreadable_catalog_is_bad_input(tmp_path):
    result = invoke("publish", tmp_path / "nothing.json", "--api", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "nothing.json" in result.stderr


def test_server_down_is_a_clear_error(mosaic):
    url = f"http://127.0.0.1:{free_port()}"
    result = publish_mosaic(mosaic, url)
    assert result.exit_code == 6
    assert f"cannot reach the STAC API at {url}" in result.stderr
    assert "connection refused" in result.stderr


def test_api_without_transactions_is_refused(mosaic, http_server, tmp_path):
    static = tmp_path / "static-api"
    static.mkdir()
    (static / "conformance").write_text(
        json.dumps({"conformsTo": ["https://api.stacspec.org/v1.0.0/core"]})
    )
    server = http_server(static)
    result = publish_mosaic(mosaic, server.url)
    assert result.exit_code == 6
    assert "does not declare the transactions extension" in result.stderr
    assert [r.method for r in server.requests.all()] == ["GET"]


def test_auth_header_is_sent_and_never_leaked(mosaic, api, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cloudfree")  # a CLI run with -q earlier raised it
    with proxy_api(api.url, required_header=("Authorization", f"Bearer {SECRET}")) as proxy:
        refused = publish_mosaic(mosaic, proxy.url)
        assert refused.exit_code == 6
        assert "answered 401" in refused.stderr and "--auth-env" in refused.stderr
        proxy.clear_log()
        result = invoke(
            "-vv",
            "publish",
            mosaic / "m.stac",
            "--api",
            proxy.url,
            "--href-base",
            "https://data.example.com/out",
            "--report",
            mosaic / "report.json",
            env={"CLOUDFREE_STAC_API_TOKEN": SECRET},
        )
        assert result.exit_code == 0, result.output
        assert proxy.log and all(r.authorized for r in proxy.log)
        # an API that echoes the request's headers in an error: the message still hides it
        proxy.fail_next("PUT", status=400, echo_headers=True)
        edit_json(item_path(mosaic, "2021-10-01"), lambda d: d["assets"]["zarr"].update(title="z"))
        failed = invoke(
            "publish",
            mosaic / "m.stac",
            "--api",
            proxy.url,
            "--href-base",
            "https://data.example.com/out",
            env={"CLOUDFREE_STAC_API_TOKEN": SECRET},
        )
        assert failed.exit_code == 6
        assert "Authorization: [redacted]" in failed.stderr
    assert "GET /conformance" in caplog.text  # the requests were logged, at debug level
    token_part = SECRET.split("-")[-1]
    for text in (
        result.output,
        refused.output,
        failed.output,
        caplog.text,
        (mosaic / "report.json").read_text(),
    ):
        assert SECRET not in text and token_part not in text
    assert SECRET not in json.dumps(api_state(api.url, "m"))
    assert SECRET not in repr(ApiAuth.from_token(SECRET))


def test_custom_header_from_a_named_variable(mosaic, api):
    with proxy_api(api.url, required_header=("X-Api-Key", SECRET)) as proxy:
        missing = publish_mosaic(mosaic, proxy.url, "--auth-header", "X-Api-Key")
        assert missing.exit_code == 2 and "CLOUDFREE_STAC_API_TOKEN" in missing.stderr
        result = publish_mosaic(
            mosaic,
            proxy.url,
            "--auth-header",
            "X-Api-Key",
            "--auth-env",
            "MY_KEY",
            env={"MY_KEY": SECRET},
        )
        assert result.exit_code == 0, result.output
        assert all(r.authorized for r in proxy.log)
    assert SECRET not in missing.output + result.output


def test_transient_failures_are_retried_where_safe(mosaic, api):
    catalog = read_catalog(str(mosaic / "m.stac"))
    prepared = prepare(catalog, hrefs=HrefPolicy("https://data.example.com/out"))
    with proxy_api(api.url) as proxy:
        client = StacApiClient(proxy.url, settings=FAST)
        proxy.fail_next("GET", status=503, retry_after=0, prefix="/conformance")
        proxy.fail_next("POST", status=429, retry_after=0, prefix="/search")  # a read: retried
        # the API creates the collection, but the answer is lost: publish must look, not repeat
        proxy.drop_after_forwarding("POST", prefix="/collections")
        # an item's POST answered 503 without reaching the API: looked up, absent, sent again
        proxy.fail_next("POST", status=503, retry_after=0, prefix="/collections/m/items")
        report = publish(prepared, client)
        posts = [
            (r.path, r.status) for r in proxy.log if r.method == "POST" and r.path != "/search"
        ]
        statuses = [(r.method, r.path, r.status) for r in proxy.log]
    assert report.counts() == {"created": 4}
    assert ("GET", "/conformance", 503) in statuses and ("GET", "/conformance", 200) in statuses
    assert sum(1 for s in statuses if s[2] == 429) == 1
    # one lost POST for the collection, then a GET finds it: no second POST of the collection
    assert posts == [
        ("/collections", 0),
        ("/collections/m/items", 503),
        ("/collections/m/items", 201),
        ("/collections/m/items", 201),
        ("/collections/m/items", 201),
    ]
    assert ("GET", "/collections/m/items/m-2021-10-01", 404) in statuses
    assert len(api_state(api.url, "m")["items"]) == 3


def test_validation_error_of_the_api_is_not_retried(mosaic, api):
    prepared = prepare(
        read_catalog(str(mosaic / "m.stac")), hrefs=HrefPolicy("https://data.example.com/out")
    )
    with proxy_api(api.url) as proxy:
        proxy.fail_next("POST", status=400, prefix="/collections/m/items")
        with pytest.raises(PublishError) as caught:
            publish(prepared, StacApiClient(proxy.url, settings=FAST))
        posts = [r for r in proxy.log if r.method == "POST" and r.path != "/search"]
    assert len(posts) == 2  # the collection, then the first item once
    message = str(caught.value)
    assert "creating item 'm-2021-10-01'" in message and "answered 400" in message


def _break_dates(data: dict[str, Any]) -> None:
    props = data["properties"]
    props["start_datetime"], props["end_datetime"] = props["end_datetime"], props["start_datetime"]


def test_failure_midway_is_reported_and_a_rerun_completes_it(mosaic, api):
    # valid STAC, but pgSTAC refuses an item whose range ends before it starts
    edit_json(item_path(mosaic, "2022-01-01"), _break_dates)
    failed = publish_mosaic(mosaic, api.url)
    assert failed.exit_code == 6
    message = failed.stderr
    assert "creating item 'm-2022-01-01'" in message
    assert "Published (1): m-2021-10-01." in message
    assert "Failed (1): m-2022-01-01." in message
    assert "Not published (1): m-2022-04-01." in message
    assert "rerun the same command" in message
    report = json.loads((mosaic / "report.json").read_text())
    assert report["items"] == {
        "m-2021-10-01": "created",
        "m-2022-01-01": "failed",
        "m-2022-04-01": "not published",
    }
    assert [i["id"] for i in api_state(api.url, "m")["items"]] == ["m-2021-10-01"]

    edit_json(item_path(mosaic, "2022-01-01"), _break_dates)  # fixed
    done = publish_mosaic(mosaic, api.url)
    assert done.exit_code == 0, done.output
    report = json.loads((mosaic / "report.json").read_text())
    assert report["counts"] == {"unchanged": 2, "created": 2}
    assert len(api_state(api.url, "m")["items"]) == 3


def test_rollback_restores_what_the_api_held(mosaic, api):
    assert publish_mosaic(mosaic, api.url).exit_code == 0
    before = api_state(api.url, "m")
    edit_json(item_path(mosaic, "2021-10-01"), lambda d: d["assets"]["zarr"].update(title="new"))
    edit_json(item_path(mosaic, "2022-01-01"), _break_dates)
    failed = publish_mosaic(mosaic, api.url, "--rollback")
    assert failed.exit_code == 6
    assert "Rolled back: 1 object(s)" in failed.stderr
    report = json.loads((mosaic / "report.json").read_text())
    assert report["rolled_back"] is True
    assert report["items"]["m-2021-10-01"] == "rolled back"
    assert api_state(api.url, "m") == before


def test_failed_first_publish_with_rollback_leaves_nothing(mosaic, api):
    edit_json(mosaic / "m.stac" / "collection.json", lambda d: d.update(id="m-fresh"))
    edit_json(item_path(mosaic, "2022-04-01"), _break_dates)
    failed = publish_mosaic(mosaic, api.url, "--rollback")
    assert failed.exit_code == 6
    assert "Rolled back: 3 object(s)" in failed.stderr
    assert requests.get(f"{api.url}/collections/m-fresh", timeout=30).status_code == 404


def _geozarr_item(collection_id: str) -> dict[str, Any]:
    """A small item shaped like the EOPF Explorer's GeoZarr items (realdata geozarr_output)."""
    store = "s3://eopf-bucket/geozarr/S2A_MSIL2A_20250831T103701_T31TFL.zarr"
    west, south, east, north = 3.0, 44.0, 3.1, 44.1
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "id": "S2A_MSIL2A_20250831T103701_T31TFL",
        "collection": collection_id,
        "bbox": [west, south, east, north],
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[west, south], [east, south], [east, north], [west, north], [west, south]]
            ],
        },
        "properties": {"datetime": "2025-08-31T10:37:01Z", "proj:code": "EPSG:32631"},
        "links": [
            {"rel": "store", "href": store, "type": "application/octet-stream"},
            {
                "rel": "derived_from",
                "href": "https://stac.core.eopf.eodc.eu/collections/sentinel-2-l2a/items/x",
                "type": "application/json",
            },
        ],
        "assets": {
            "reflectance": {
                "href": f"{store}/measurements/reflectance",
                "type": GEOZARR,
                "roles": ["data", "reflectance"],
                "title": "Surface Reflectance",
                "proj:code": "EPSG:32631",
                "proj:shape": [10980, 10980],
            },
            "thumbnail": {"href": "./thumbnail.png", "type": "image/png", "roles": ["thumbnail"]},
        },
    }


def test_geozarr_item_into_an_existing_collection(api, tmp_path):
    api.load(
        [
            {
                "type": "Collection",
                "stac_version": "1.1.0",
                "id": "eopf-geozarr",
                "description": "GeoZarr conversions",
                "license": "other",
                "extent": {
                    "spatial": {"bbox": [[-180, -90, 180, 90]]},
                    "temporal": {"interval": [["2025-01-01T00:00:00Z", None]]},
                },
                "links": [],
            }
        ]
    )
    folder = tmp_path / "converted.stac" / "S2A_MSIL2A_20250831T103701_T31TFL"
    folder.mkdir(parents=True)
    (folder / "thumbnail.png").write_bytes(b"\x89PNG\r\n")
    item_file = folder / "S2A_MSIL2A_20250831T103701_T31TFL.json"
    item = _geozarr_item("somewhere-else")
    item_file.write_text(json.dumps(item))

    missing = invoke("publish", item_file, "--api", api.url, "--href-base", "https://x.example")
    assert missing.exit_code == 6 and "'somewhere-else' does not exist" in missing.stderr

    result = invoke(
        "publish",
        item_file,
        "--api",
        api.url,
        "--collection",
        "eopf-geozarr",
        "--href-base",
        "https://data.example.com/eopf",
        "--viewer",
        VIEWER,
    )
    assert result.exit_code == 0, result.output
    served = requests.get(
        f"{api.url}/collections/eopf-geozarr/items/S2A_MSIL2A_20250831T103701_T31TFL", timeout=30
    ).json()
    asset = served["assets"]["reflectance"]
    assert asset["type"] == GEOZARR and asset["roles"] == ["data", "reflectance"]
    assert asset["href"] == item["assets"]["reflectance"]["href"]  # s3:// stays as it is
    assert served["assets"]["thumbnail"]["href"] == (
        "https://data.example.com/eopf/converted.stac/S2A_MSIL2A_20250831T103701_T31TFL/"
        "thumbnail.png"
    )
    rels = [link["rel"] for link in served["links"]]
    assert {"store", "derived_from", "viewer", "xyz", "tilejson"} <= set(rels)
    xyz = next(link for link in served["links"] if link["rel"] == "xyz")
    assert "?" not in xyz["href"]  # no COG: no default rendering query
    again = invoke(
        "publish",
        item_file,
        "--api",
        api.url,
        "--collection",
        "eopf-geozarr",
        "--href-base",
        "https://data.example.com/eopf",
        "--viewer",
        VIEWER,
        "--report",
        tmp_path / "r.json",
    )
    assert again.exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["counts"] == {"unchanged": 1}


def test_hrefs_resolve_against_any_catalog_location():
    assert resolve_href("../../m.zarr", "s3://b/out/m.stac/i/i.json") == "s3://b/out/m.zarr"
    assert resolve_href("./t.png", "https://h.example/c/i/i.json") == "https://h.example/c/i/t.png"
    assert resolve_href("https://x.example/a", "/tmp/c.json") == "https://x.example/a"
    assert resolve_href("a/b.tif", "/data/cat/c.json") == str(Path("/data/cat/a/b.tif").resolve())


def test_viewer_template_with_a_secret_is_refused(mosaic):
    catalog = read_catalog(str(mosaic / "m.stac"))
    viewer = ViewerLinks(VIEWER, query="assets=cog&access_token=abc")
    with pytest.raises(InvalidInputError, match="--viewer-query carries a credential"):
        prepare(catalog, hrefs=HrefPolicy("https://d.example"), viewer=viewer)
    with pytest.raises(InvalidCatalogError):
        edit_json(item_path(mosaic, "2021-10-01"), lambda d: d.update(bbox="x"))
        prepare(read_catalog(str(mosaic / "m.stac")), hrefs=HrefPolicy("https://d.example"))
    assert Outcome.UNCHANGED == "unchanged"


def test_catalog_read_from_an_object_store_url(mosaic_root, api, tmp_path):
    """A catalog uploaded to a store keeps relative hrefs, which resolve to the store's URLs."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(mosaic_root / "m.stac"), "/publish-test/m.stac", recursive=True)
    try:
        result = invoke("publish", "memory://publish-test/m.stac", "--api", api.url)
        assert result.exit_code == 0, result.output
        served = requests.get(f"{api.url}/collections/m/items/m-2022-04-01", timeout=30).json()
        assert served["assets"]["zarr"]["href"] == "memory://publish-test/m.zarr"
        assert served["assets"]["thumbnail"]["href"] == (
            "memory://publish-test/m.stac/m-2022-04-01/thumbnail.png"
        )
        mapped = invoke(
            "publish",
            "memory://publish-test/m.stac/collection.json",
            "--api",
            api.url,
            "--href-base",
            "https://cdn.example.com/mosaics",
            "--report",
            str(tmp_path / "remote-report.json"),
        )
        assert mapped.exit_code == 0, mapped.output
        report = json.loads((tmp_path / "remote-report.json").read_text())
        assert report["counts"] == {"unchanged": 1, "updated": 3}
        served = requests.get(f"{api.url}/collections/m/items/m-2022-04-01", timeout=30).json()
        assert (
            served["assets"]["cog"]["href"] == "https://cdn.example.com/mosaics/cogs/2022-04-01.tif"
        )
    finally:
        fs.rm("/publish-test", recursive=True)


def test_api_without_item_search_is_read_item_by_item(mosaic, api):
    assert publish_mosaic(mosaic, api.url).exit_code == 0
    edit_json(item_path(mosaic, "2022-04-01"), lambda d: d["assets"]["zarr"].update(title="z"))
    with proxy_api(api.url) as proxy:
        proxy.hide_conformance("item-search")
        result = publish_mosaic(mosaic, proxy.url)
        assert result.exit_code == 0, result.output
        requests_seen = [(r.method, r.path) for r in proxy.log]
    assert ("POST", "/search") not in requests_seen
    item_reads = [p for m, p in requests_seen if m == "GET" and "/items/" in p]
    assert len(item_reads) == 3
    report = json.loads((mosaic / "report.json").read_text())
    assert report["counts"] == {"unchanged": 3, "updated": 1}


@pytest.mark.parametrize(
    ("href", "found"),
    [
        ("https://h.example/a.tif", None),
        ("https://h.example/a.tif?rescale=0,3000&assets=cog", None),
        ("https://user:pw@h.example/a.tif", "user information in the host part"),
        ("https://acc.blob.core.windows.net/c/a.tif?sv=2021&sig=abc", "query parameter 'sig'"),
        (
            "https://b.s3.amazonaws.com/a.tif?X-Amz-Signature=abc",
            "query parameter 'X-Amz-Signature'",
        ),
        (
            "https://tiles.example/{z}/{x}/{y}.png?access_token=pk.1",
            "query parameter 'access_token'",
        ),
    ],
)
def test_href_secret_names_the_part_never_the_value(href, found):
    from cloudfree.access import href_secret

    assert href_secret(href) == found
