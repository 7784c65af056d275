"""The GeoZarr validator: the conformance suite's verdicts, and consistency with the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from cloudfree.cli.main import cli
from cloudfree.convert.validate import validate_geozarr
from cloudfree.errors import SourceError
from cloudfree.store.geozarr import PROJ_CONVENTION, SPATIAL_CONVENTION

SUITE = "eopf_zarr/geozarr_spec_examples/geozarr-spec-test-datasets"
REAL_OUTPUT = (
    "eopf_zarr/geozarr_output/"
    "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613.geozarr_v3_hierarchy.json"
)


def _suite(realdata: Path) -> list[dict]:
    return json.loads((realdata / SUITE / "manifest.json").read_text())["datasets"]


@pytest.mark.realdata
def test_conformance_suite_verdicts(realdata):
    """13 valid stores pass; each of the 5 invalid ones fails for the reason the suite names."""
    datasets = _suite(realdata)
    assert len(datasets) == 18
    for dataset in datasets:
        findings = validate_geozarr(str(realdata / SUITE / dataset["path"]))
        if dataset["valid"]:
            assert findings == [], dataset["path"]
            continue
        convention, phrase = dataset["violation"].split(": ", 1)
        assert len(findings) == 1, (dataset["path"], findings)
        assert findings[0].convention.rstrip(":") == convention
        assert phrase in findings[0].reason, (phrase, findings[0].reason)


@pytest.mark.realdata
def test_cli_validate_exit_codes(realdata):
    runner = CliRunner()
    good = runner.invoke(
        cli, ["validate", str(realdata / SUITE / "valid/spatial/spatial-north-up.zarr")]
    )
    assert good.exit_code == 0 and "valid GeoZarr" in good.output
    bad = runner.invoke(cli, ["validate", str(realdata / SUITE / "invalid/invalid-bad-crs.zarr")])
    assert bad.exit_code == 7
    assert "proj:code pattern mismatch" in bad.output and "'epsg:4326'" in bad.output


@pytest.fixture
def suite_copy(realdata, tmp_path):
    """A writable copy of the Sentinel-2 multiscales store (three levels, all conventions)."""
    target = tmp_path / "s2.zarr"
    shutil.copytree(realdata / SUITE / "valid/multiscales/multiscales-sentinel2.zarr", target)
    # drop the inline consolidated copy so edits to the documents are what is read
    root = json.loads((target / "zarr.json").read_text())
    root.pop("consolidated_metadata", None)
    (target / "zarr.json").write_text(json.dumps(root))
    return target


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document["attributes"])
    path.write_text(json.dumps(document))


@pytest.mark.realdata
def test_level_shape_must_match_its_arrays(suite_copy):
    assert validate_geozarr(str(suite_copy)) == []
    _edit(
        suite_copy / "zarr.json",
        lambda a: a["multiscales"]["layout"][1].update({"spatial:shape": [7, 6]}),
    )
    reasons = [f.reason for f in validate_geozarr(str(suite_copy))]
    assert any("spatial:shape [7, 6] differs from /r20m/ar of shape [6, 6]" in r for r in reasons)
    assert any("does not follow from the parent's [12, 12]" in r for r in reasons)


@pytest.mark.realdata
def test_level_transform_must_follow_the_scale(suite_copy):
    _edit(
        suite_copy / "zarr.json",
        lambda a: a["multiscales"]["layout"][2].update(
            {"spatial:transform": [50.0, 0.0, 500000.0, 0.0, -50.0, 5000120.0]}
        ),
    )
    (finding,) = validate_geozarr(str(suite_copy))
    assert finding.convention == "multiscales"
    assert "pixel size (50.0, -50.0) is not the parent's (10.0, -10.0) times the scale" in (
        finding.reason
    )


@pytest.mark.realdata
def test_derived_from_must_name_an_earlier_level(suite_copy):
    _edit(
        suite_copy / "zarr.json",
        lambda a: a["multiscales"]["layout"][1].update({"derived_from": "r5m"}),
    )
    (finding,) = validate_geozarr(str(suite_copy))
    assert "derived_from 'r5m' is not a level listed before it" in finding.reason


@pytest.mark.realdata
def test_grid_belongs_on_the_levels_not_the_pyramid(suite_copy):
    _edit(suite_copy / "zarr.json", lambda a: a.update({"spatial:shape": [12, 12]}))
    (finding,) = validate_geozarr(str(suite_copy))
    assert finding.convention == "spatial:"
    assert "must not be on a group with a multiscales layout" in finding.reason


def _array(tmp_path: Path, attrs: dict, shape=(4, 5)) -> Path:
    store = tmp_path / "one.zarr"
    root = zarr.open_group(str(store), mode="w", zarr_format=3)
    root.create_array(
        "ar", shape=shape, dtype="uint8", dimension_names=("y", "x"), attributes=attrs
    )
    return store


def test_bbox_must_match_transform_and_shape(tmp_path):
    attrs = {
        "zarr_conventions": [SPATIAL_CONVENTION, PROJ_CONVENTION],
        "proj:code": "EPSG:32632",
        "spatial:dimensions": ["y", "x"],
        "spatial:transform": [10.0, 0.0, 500000.0, 0.0, -10.0, 5000040.0],
        "spatial:bbox": [500000.0, 5000000.0, 500050.0, 5000040.0],
    }
    assert validate_geozarr(str(_array(tmp_path, attrs))) == []
    attrs["spatial:bbox"] = [0.0, 0.0, 0.0, 0.0]  # the real EOPF Explorer outputs' bbox
    (finding,) = validate_geozarr(str(_array(tmp_path, attrs)))
    assert "does not match transform and shape, which give [500000.0, 5000000.0" in finding.reason


def test_spatial_dimensions_must_be_the_arrays(tmp_path):
    attrs = {
        "zarr_conventions": [SPATIAL_CONVENTION],
        "spatial:dimensions": ["lat", "lon"],
    }
    (finding,) = validate_geozarr(str(_array(tmp_path, attrs)))
    assert "spatial:dimensions ['lat', 'lon'] are not among the array's dimensions" in (
        finding.reason
    )


def test_unknown_crs_code_is_reported(tmp_path):
    attrs = {"zarr_conventions": [PROJ_CONVENTION], "proj:code": "EPSG:999999"}
    (finding,) = validate_geozarr(str(_array(tmp_path, attrs)))
    assert finding.convention == "proj:" and "cannot be resolved" in finding.reason


def test_store_without_conventions_is_not_geozarr(tmp_path):
    (finding,) = validate_geozarr(str(_array(tmp_path, {})))
    assert "no node declares a GeoZarr convention" in finding.reason
    with pytest.raises(SourceError, match="not a readable Zarr v3 store"):
        validate_geozarr(str(tmp_path / "missing.zarr"))


@pytest.mark.realdata
def test_real_converter_output_findings(realdata, tmp_path):
    """The EOPF Explorer's real output, rebuilt as metadata: its layout lacks spatial:transform."""
    hierarchy = json.loads((realdata / REAL_OUTPUT).read_text())
    reflectance = hierarchy["members"]["measurements"]["members"]["reflectance"]
    store = tmp_path / "real.zarr"
    _write_metadata(store, reflectance)
    findings = validate_geozarr(str(store))
    assert {f.convention for f in findings} == {"spatial:"}
    assert sum("each layout item needs spatial:transform" in f.reason for f in findings) == 6


def _write_metadata(path: Path, node: dict) -> None:
    """Write a hierarchy's zarr.json documents (no chunks: arrays read as their fill value)."""
    path.mkdir(parents=True, exist_ok=True)
    document = {k: v for k, v in node.items() if k != "members"}
    (path / "zarr.json").write_text(json.dumps(document))
    for name, child in (node.get("members") or {}).items():
        _write_metadata(path / name, child)
