"""The STAC API test server (stac-fastapi-pgstac on pgSTAC) searched with pystac-client."""

from __future__ import annotations

import pytest
from pystac_client import Client

COLLECTION = "test-s2-l2a"


def _collection() -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": COLLECTION,
        "description": "Three small Sentinel-2-like items for the STAC API server test.",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-7.0, 53.0, -5.0, 54.0]]},
            "temporal": {"interval": [["2022-01-01T00:00:00Z", "2022-03-31T23:59:59Z"]]},
        },
        "links": [],
    }


def _item(item_id: str, lon: float, when: str, cloud: float) -> dict:
    west, south, east, north = lon, 53.2, lon + 0.5, 53.7
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v2.0.0/schema.json"],
        "id": item_id,
        "collection": COLLECTION,
        "bbox": [west, south, east, north],
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[west, south], [east, south], [east, north], [west, north], [west, south]]
            ],
        },
        "properties": {"datetime": when, "eo:cloud_cover": cloud, "platform": "sentinel-2a"},
        "assets": {
            "B04": {
                "href": f"https://example.com/{item_id}/B04.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        },
        "links": [],
    }


ITEMS = [
    _item("west-jan", -6.8, "2022-01-10T11:30:00Z", 5.0),
    _item("west-feb", -6.8, "2022-02-14T11:30:00Z", 60.0),
    _item("east-mar", -5.6, "2022-03-20T11:30:00Z", 12.5),
]


@pytest.fixture(scope="module")
def client(stac_api):
    stac_api.load([_collection()], ITEMS)
    client = Client.open(stac_api.url)
    # stac-fastapi 7 declares item-search#sort v1.1.0; pystac-client 0.9 looks for v1.0.0
    client.add_conforms_to("SORT")
    yield client
    stac_api.clear()


def _ids(search) -> set[str]:
    return {item.id for item in search.items()}


def test_api_serves_the_collection(client, stac_api):
    assert stac_api.url.startswith("http://127.0.0.1:")
    assert stac_api.startup_seconds > 0
    assert [c.id for c in client.get_collections()] == [COLLECTION]
    assert client.conforms_to("ITEM_SEARCH")


def test_search_by_bbox(client):
    search = client.search(collections=[COLLECTION], bbox=[-6.9, 53.3, -6.5, 53.6])
    assert _ids(search) == {"west-jan", "west-feb"}
    search = client.search(collections=[COLLECTION], bbox=[-5.5, 53.3, -5.2, 53.6])
    assert _ids(search) == {"east-mar"}


def test_search_by_datetime(client):
    search = client.search(collections=[COLLECTION], datetime="2022-02-01/2022-03-31")
    assert _ids(search) == {"west-feb", "east-mar"}
    search = client.search(collections=[COLLECTION], datetime="2022-01-10")
    assert _ids(search) == {"west-jan"}


def test_search_by_cloud_cover(client):
    search = client.search(collections=[COLLECTION], query={"eo:cloud_cover": {"lte": 20}})
    assert _ids(search) == {"west-jan", "east-mar"}
    search = client.search(
        collections=[COLLECTION],
        bbox=[-7.0, 53.0, -5.0, 54.0],
        datetime="2022-01-01/2022-02-28",
        query={"eo:cloud_cover": {"lt": 50}},
    )
    assert _ids(search) == {"west-jan"}


def test_paging(client):
    search = client.search(collections=[COLLECTION], limit=1, sortby="-properties.datetime")
    pages = list(search.pages())
    assert [[item.id for item in page] for page in pages] == [
        ["east-mar"],
        ["west-feb"],
        ["west-jan"],
    ]
    search = client.search(collections=[COLLECTION], limit=1, max_items=2, sortby="datetime")
    assert [item.id for item in search.items()] == ["west-jan", "west-feb"]


def test_load_upserts(stac_api, client):
    changed = _item("west-feb", -6.8, "2022-02-14T11:30:00Z", 3.0)
    stac_api.load([], [changed])
    search = client.search(collections=[COLLECTION], query={"eo:cloud_cover": {"lte": 20}})
    assert _ids(search) == {"west-jan", "west-feb", "east-mar"}
    stac_api.load([], [ITEMS[1]])
    search = client.search(collections=[COLLECTION], query={"eo:cloud_cover": {"lte": 20}})
    assert _ids(search) == {"west-jan", "east-mar"}


@pytest.mark.parametrize(
    ("euid", "outcome"), [(0, pytest.fail.Exception), (1000, pytest.skip.Exception)]
)
def test_missing_postgres_fails_as_root_and_skips_otherwise(monkeypatch, tmp_path, euid, outcome):
    from tests.servers import stac_api as module

    monkeypatch.setattr(module, "PG_BIN", tmp_path / "bin")
    monkeypatch.setattr(module, "POSTGIS_CONTROL", tmp_path / "postgis.control")
    monkeypatch.setattr(module.os, "geteuid", lambda: euid)
    with pytest.raises(outcome, match="postgresql-15, postgresql-15-postgis-3") as raised:
        module._check_installed()
    assert "make test" in str(raised.value)
