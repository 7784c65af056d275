"""Offline STAC 1.1 validation against the core schema and the vendored extension schemas."""

from __future__ import annotations

import copy
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import pytest
from pystac.extensions.projection import ProjectionExtension

from cloudfree.catalog.validation import (
    StacValidationError,
    _registry,
    local_extension_schemas,
    validate_stac,
    validate_stac_tree,
)
from cloudfree.errors import CloudfreeError

REALDATA = Path(__file__).parents[1].parent / "shared" / "realdata"
EOPF_ITEM = (
    REALDATA / "stac_items/eopf/S2A_MSIL2A_20251113T102311_N0511_R065_T32TNQ_20251113T142515"
    ".eopf_stac.json"
)
CDSE_ITEM = (
    REALDATA / "stac_items/cdse/S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440"
    ".cdse.json"
)
CDSE_COLLECTION = REALDATA / "stac_items/cdse/collection-sentinel-2-l2a.cdse.json"
STACTOOLS_ITEM = (
    REALDATA / "stac_items/other/stactools_S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE"
    ".stactools_expected.json"
)
ES_V1_ITEM = (
    REALDATA / "stac_items/earth_search_v1/S2B_24MWV_20250731_0_L2A.es_v1_sentinel-2-l2a.json"
)

EXT = "https://stac-extensions.github.io/"
PROJ_V2 = EXT + "projection/v2.0.0/schema.json"
RASTER_V2 = EXT + "raster/v2.0.0/schema.json"
PROCESSING_V1_1 = EXT + "processing/v1.1.0/schema.json"

realdata = pytest.mark.skipif(
    not REALDATA.is_dir(), reason=f"real STAC test material not present at {REALDATA}"
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to open a socket (e.g. to download a schema)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def only_local_extensions(obj: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Copy `obj` with the extensions that have no vendored schema removed; also return those."""
    out = copy.deepcopy(obj)
    local = local_extension_schemas()
    out["stac_extensions"] = [u for u in obj["stac_extensions"] if u in local]
    return out, set(obj["stac_extensions"]) - local


# --- the offline registry ---------------------------------------------------------------------


def test_required_extension_schemas_are_vendored() -> None:
    for name in ("projection/v2.0.0", "eo/v2.0.0", "file/v2.1.0", "mgrs/v1.0.0", "grid/v1.1.0"):
        assert f"{EXT}{name}/schema.json" in local_extension_schemas()
    # not obtainable byte-exact offline (see schemas/README.md): must not be pretended
    assert RASTER_V2 not in local_extension_schemas()
    assert EXT + "processing/v1.2.0/schema.json" not in local_extension_schemas()


def test_every_ref_in_every_local_schema_resolves_offline() -> None:
    registry, _ = _registry()
    checked = 0
    for uri in registry:
        if uri.startswith(("http://json-schema.org/", "https://json-schema.org/")):
            continue  # metaschemas, shipped with jsonschema
        resource = registry[uri]
        base = (resource.id() or uri).rstrip("#")
        resolver = registry.resolver(base_uri=base)
        stack: list[Any] = [resource.contents]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    resolver.lookup(node["$ref"])  # raises Unresolvable if missing
                    checked += 1
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert checked > 50


def test_dangling_ref_is_reported_not_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import jsonschema

    from cloudfree.catalog import validation

    registry, _ = _registry()
    dangling = jsonschema.Draft7Validator({"$ref": RASTER_V2}, registry=registry)
    monkeypatch.setattr(validation, "_validator", lambda url: dangling)
    with pytest.raises(StacValidationError, match=r"references '.*raster/v2\.0\.0.*not available"):
        validate_stac(make_item())


# --- pystac-built objects ---------------------------------------------------------------------


def make_item(item_id: str = "T32TNQ-20251113") -> pystac.Item:
    item = pystac.Item(
        id=item_id,
        geometry={
            "type": "Polygon",
            "coordinates": [[[9.0, 44.1], [10.4, 44.1], [10.4, 45.2], [9.0, 45.2], [9.0, 44.1]]],
        },
        bbox=[9.0, 44.1, 10.4, 45.2],
        datetime=datetime(2025, 11, 13, 10, 23, 11, tzinfo=UTC),
        properties={},
    )
    item.add_asset("B04", pystac.Asset(href="./B04.tif", media_type=pystac.MediaType.COG))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code="EPSG:32632",
        shape=[10980, 10980],
        transform=[10.0, 0.0, 499980.0, 0.0, -10.0, 5000040.0],
    )
    return item


def test_pystac_item_with_projection_v2_validates() -> None:
    item = make_item()
    assert PROJ_V2 in item.stac_extensions
    validate_stac(item)
    validate_stac(item.to_dict())


def test_pystac_item_with_bad_proj_code_fails() -> None:
    item = make_item()
    item.properties["proj:code"] = 32632
    with pytest.raises(StacValidationError) as exc:
        validate_stac(item)
    msg = str(exc.value)
    assert "'T32TNQ-20251113'" in msg
    assert PROJ_V2 in msg
    assert "$.properties['proj:code']" in msg
    assert "is not of type 'string', 'null'" in msg
    assert isinstance(exc.value, CloudfreeError)


def test_pystac_item_with_processing_v1_1_validates_and_bad_software_fails() -> None:
    item = make_item()
    item.stac_extensions.append(PROCESSING_V1_1)
    item.properties.update(
        {
            "processing:lineage": "cloud-free median composite of Sentinel-2 L2A scenes",
            "processing:level": "L3",
            "processing:software": {"cloudfree": "0.1.0"},
        }
    )
    validate_stac(item)

    item.properties["processing:software"] = "cloudfree 0.1.0"
    with pytest.raises(StacValidationError) as exc:
        validate_stac(item)
    msg = str(exc.value)
    assert PROCESSING_V1_1 in msg
    assert "$.properties['processing:software']" in msg
    assert "is not of type 'object'" in msg


def test_unsupported_stac_version_and_type_are_errors() -> None:
    d = make_item().to_dict()
    with pytest.raises(StacValidationError, match=r"stac_version '1\.0\.0' cannot be validated"):
        validate_stac({**d, "stac_version": "1.0.0"})
    with pytest.raises(StacValidationError, match="unsupported type 'FeatureCollection'"):
        validate_stac({"type": "FeatureCollection", "features": []})


def test_tree_of_catalog_collection_items(tmp_path: Path) -> None:
    catalog = pystac.Catalog(id="cloudfree-test", description="offline validation test")
    collection = pystac.Collection(
        id="mosaics",
        description="test collection",
        extent=pystac.Extent(
            pystac.SpatialExtent([[9.0, 44.1, 10.4, 45.2]]),
            pystac.TemporalExtent([[datetime(2025, 11, 1, tzinfo=UTC), None]]),
        ),
        license="CC-BY-4.0",
    )
    catalog.add_child(collection)
    collection.add_items([make_item("a"), make_item("b")])
    catalog.normalize_hrefs(str(tmp_path))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)

    assert validate_stac_tree(tmp_path / "catalog.json") == 4
    assert validate_stac_tree(tmp_path) == 4

    item_file = tmp_path / "mosaics" / "b" / "b.json"
    broken = load(item_file)
    del broken["properties"]["datetime"]
    item_file.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(StacValidationError) as exc:
        validate_stac_tree(tmp_path)
    msg = str(exc.value)
    assert str(item_file) in msg
    assert "Item 'b'" in msg
    assert "'datetime' is a required property" in msg


def test_tree_refuses_remote_links(tmp_path: Path) -> None:
    root = pystac.Catalog(id="r", description="d").to_dict(include_self_link=False)
    root["links"].append({"rel": "child", "href": "https://example.com/catalog.json"})
    (tmp_path / "catalog.json").write_text(json.dumps(root), encoding="utf-8")
    with pytest.raises(StacValidationError, match="cannot follow non-local link"):
        validate_stac_tree(tmp_path / "catalog.json")


# --- real STAC 1.1 items ----------------------------------------------------------------------


@realdata
@pytest.mark.realdata
def test_real_eopf_item_validates() -> None:
    item, dropped = only_local_extensions(load(EOPF_ITEM))
    assert dropped == {
        RASTER_V2,
        EXT + "processing/v1.2.0/schema.json",
        EXT + "product/v0.1.0/schema.json",
        "https://cs-si.github.io/eopf-stac-extension/v1.2.0/schema.json",
    }
    assert {PROJ_V2, EXT + "eo/v2.0.0/schema.json", EXT + "mgrs/v1.0.0/schema.json"} <= set(
        item["stac_extensions"]
    )
    validate_stac(item)


@realdata
@pytest.mark.realdata
def test_real_eopf_item_as_published_names_missing_schemas() -> None:
    with pytest.raises(StacValidationError) as exc:
        validate_stac(load(EOPF_ITEM))
    assert "no local schema for extension(s)" in str(exc.value)
    assert RASTER_V2 in str(exc.value)


BREAKAGES = [
    pytest.param(
        lambda d: d["properties"].__setitem__("proj:code", 32632),
        PROJ_V2,
        "$.properties['proj:code']: 32632 is not of type 'string', 'null'",
        id="proj-code-int",
    ),
    pytest.param(
        lambda d: d["properties"].pop("datetime"),
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
        "$.properties: 'datetime' is a required property",
        id="missing-datetime",
    ),
    pytest.param(
        lambda d: d["properties"].__setitem__("eo:cloud_cover", 120),
        EXT + "eo/v2.0.0/schema.json",
        "$.properties['eo:cloud_cover']: 120 is greater than the maximum of 100",
        id="eo-cloud-cover-range",
    ),
    pytest.param(
        lambda d: d["assets"]["SR_10m"]["bands"][0].__setitem__("eo:common_name", "uv"),
        EXT + "eo/v2.0.0/schema.json",
        "$.assets.SR_10m.bands[0]['eo:common_name']: 'uv' is not one of",
        id="eo-common-name-in-bands",
    ),
    pytest.param(
        lambda d: d["properties"].__setitem__("grid:code", "32TNQ"),
        EXT + "grid/v1.1.0/schema.json",
        "$.properties['grid:code']: '32TNQ' does not match",
        id="grid-code-pattern",
    ),
    pytest.param(
        lambda d: d["properties"].__setitem__("mgrs:utm_zone", "32"),
        EXT + "mgrs/v1.0.0/schema.json",
        "$.properties['mgrs:utm_zone']: '32' is not of type 'integer'",
        id="mgrs-utm-zone-type",
    ),
]


@realdata
@pytest.mark.realdata
@pytest.mark.parametrize(("breakage", "schema", "expected"), BREAKAGES)
def test_hand_broken_eopf_item_fails(breakage: Any, schema: str, expected: str) -> None:
    item, _ = only_local_extensions(load(EOPF_ITEM))
    breakage(item)
    with pytest.raises(StacValidationError) as exc:
        validate_stac(item)
    msg = str(exc.value)
    assert msg.startswith(f"Item '{item['id']}' is invalid against {schema} at ")
    assert expected in msg


@realdata
@pytest.mark.realdata
def test_unknown_extension_url_is_an_error_not_skipped() -> None:
    item, _ = only_local_extensions(load(EOPF_ITEM))
    item["stac_extensions"].append("https://example.com/my-ext/v9.9.9/schema.json")
    with pytest.raises(StacValidationError, match=r"my-ext/v9\.9\.9/schema\.json"):
        validate_stac(item)


@realdata
@pytest.mark.realdata
def test_real_cdse_item_lacks_collection_link() -> None:
    # The CDSE generator's example has "collection" but no rel=collection link, which the
    # STAC 1.1.0 item schema forbids (the API adds the links when it serves the item).
    item, _ = only_local_extensions(load(CDSE_ITEM))
    with pytest.raises(StacValidationError, match=r"item\.json at \$\.collection: "):
        validate_stac(item)
    item["links"].append(
        {
            "rel": "collection",
            "href": "https://stac.dataspace.copernicus.eu/v1/collections/sentinel-2-l2a",
            "type": "application/json",
        }
    )
    validate_stac(item)  # proj v2, eo v2, file v2.1, grid, classification, timestamps all pass


@realdata
@pytest.mark.realdata
@pytest.mark.parametrize("path", [CDSE_COLLECTION, STACTOOLS_ITEM], ids=["cdse-coll", "stactools"])
def test_other_real_stac_1_1_objects_validate(path: Path) -> None:
    obj, _ = only_local_extensions(load(path))
    validate_stac(obj)


@realdata
@pytest.mark.realdata
def test_stac_1_0_item_is_refused_clearly() -> None:
    with pytest.raises(StacValidationError, match=r"only the STAC 1\.1\.0 core schema"):
        validate_stac(load(ES_V1_ITEM))
