"""End-to-end tests of the ``cloudfree`` command line over the synthetic archive."""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pystac
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner, Result

import cloudfree
from cloudfree.cli.main import cli
from cloudfree.testing import SyntheticArchive, SyntheticScene, make_archive

TILE_SIZE = 256
START, END = "2021-11-01", "2022-04-30"  # the whole synthetic archive
BAND_KEYS = {"B02", "B03", "B04", "B08", "SCL", "CLD"}
TILE_CRS = {"29UPV": "EPSG:32629", "30UUE": "EPSG:32630"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> SyntheticArchive:
    return make_archive(tmp_path_factory.mktemp("cli-archive"), tile_size=TILE_SIZE)


def invoke(*args: object, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def bbox_args(bbox: tuple[float, float, float, float]) -> list[str]:
    return ["--bbox", *(repr(v) for v in bbox)]


def months_between(start: str, end: str) -> list[str]:
    """First day of every calendar month touched by [start, end], as YYYY-MM-DD."""
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current.isoformat())
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def scene_on(archive: SyntheticArchive, tile_id: str, day: str) -> SyntheticScene:
    (scene,) = [
        s for s in archive.scenes if s.tile_id == tile_id and s.datetime.date().isoformat() == day
    ]
    return scene


def search_json(archive: SyntheticArchive, *extra: object, stac: Path | None = None) -> list[dict]:
    result = invoke(
        "search",
        "--stac",
        stac or archive.catalog,
        *bbox_args(archive.bbox),
        "--start-date",
        START,
        "--end-date",
        END,
        "--format",
        "json",
        *extra,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


# --- 1. bad input: exit 2, a clear message, nothing written ------------------------------------


@dataclass(frozen=True)
class Outputs:
    work: Path
    out: Path
    stac: Path
    cogs: Path

    def args(self) -> list[str]:
        return ["--out", str(self.out), "--cog", str(self.cogs)]

    def assert_untouched(self) -> None:
        assert not self.out.exists()
        assert not self.stac.exists()
        assert not self.cogs.exists()
        assert list(self.work.iterdir()) == []


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    work = tmp_path / "work"
    work.mkdir()
    return Outputs(work, work / "mosaic.zarr", work / "mosaic.stac", work / "cogs")


@dataclass(frozen=True)
class Bad:
    replace: dict[str, list[str]]
    """Options replacing the valid defaults (an empty list drops the option)."""
    expected: list[str]
    """Fragments of the error message."""
    extra: tuple[str, ...] = ()


BAD_MOSAIC_OPTIONS = {
    "swapped bbox": Bad(
        {"--bbox": ["-5.97", "53.33", "-6.03", "53.36"]},
        ["swapped", "MINX -5.97 >= MAXX -6.03"],
    ),
    # lat/lon order (Boulder, Colorado): -105.3 cannot be a latitude
    "lat/lon bbox": Bad(
        {"--bbox": ["40.0", "-105.3", "40.1", "-105.2"]}, ["lat/lon order", "MINY=-105.3"]
    ),
    "end before start": Bad(
        {"--start-date": ["2022-01-31"], "--end-date": ["2021-11-01"]},
        ["End date 2021-11-01 is before start date 2022-01-31"],
    ),
    "malformed date": Bad(
        {"--start-date": ["2021/11/01"]},
        ["--start-date", "'2021/11/01' is not a valid date", "YYYY-MM-DD"],
    ),
    "impossible date": Bad(
        {"--end-date": ["2021-02-30"]}, ["--end-date", "'2021-02-30' is not a valid date"]
    ),
    "no area": Bad({"--bbox": []}, ["No area given"]),
    "unknown crs": Bad({}, ["--crs", "Unknown CRS 'EPSG:999999'"], ("--crs", "EPSG:999999")),
    "unknown band": Bad({}, ["--bands", "Unknown band 'B13'"], ("--bands", "B13")),
    "quantile without q": Bad({}, ["--method quantile needs --quantile"], ("--method", "quantile")),
    "preset vs method": Bad(
        {},
        ["Preset cdse-l3 fixes the method to cdse-l3"],
        ("--preset", "cdse-l3", "--method", "median"),
    ),
    "option the mask does not take": Bad(
        {},
        ["Cloud mask 'none' has no option valid_classes", "its options are: none"],
        ("--cloud-mask", "none", "--mask-option", "valid_classes=vegetation"),
    ),
    "unknown scl class": Bad(
        {},
        ["Unknown SCL class 'vegetatoin'", "vegetation"],
        ("--mask-option", "valid_classes=vegetatoin"),
    ),
    "option without value": Bad({}, ["is not KEY=VALUE"], ("--mask-option", "dilation_m")),
    "unknown mask": Bad({}, ["Unknown cloud mask 'sky'", "scl"], ("--cloud-mask", "sky")),
    "unknown method": Bad({}, ["Unknown method 'mode'", "median"], ("--method", "mode")),
    "option the method does not take": Bad(
        {},
        ["Method 'mean' has no option quantile"],
        ("--method", "mean", "--method-option", "quantile=0.3"),
    ),
    "bad method option value": Bad(
        {},
        ["Method 'best-pixel'", "option doy_points must be 3 numbers"],
        ("--method", "best-pixel", "--method-option", "doy_points=180"),
    ),
    "haze score without blue": Bad(
        {"--bands": ["B04", "--bands", "B08"]},
        ["Method best-pixel needs band B02 among --bands for the haze score", "haze_weight=0"],
        ("--method", "best-pixel"),
    ),
    "quantile with another method": Bad(
        {},
        ["--quantile only applies to --method quantile"],
        ("--method", "mean", "--quantile", "0.3"),
    ),
    "metres in degrees": Bad(
        {}, ["EPSG:4326", "in degrees"], ("--crs", "EPSG:4326", "--resolution", "10")
    ),
}


@pytest.mark.parametrize("case", list(BAD_MOSAIC_OPTIONS))
def test_mosaic_bad_input_exits_2_before_writing(
    archive: SyntheticArchive, outputs: Outputs, case: str
) -> None:
    bad = BAD_MOSAIC_OPTIONS[case]
    options = {
        "--stac": [str(archive.catalog)],
        "--bbox": [repr(v) for v in archive.overlap_bbox()],
        "--start-date": [START],
        "--end-date": [END],
        **bad.replace,
    }
    args = [part for key, values in options.items() if values for part in (key, *values)]
    result = invoke("mosaic", *args, *bad.extra, *outputs.args())
    assert result.exit_code == 2, result.output
    for text in bad.expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert "Wrote" not in result.stdout
    outputs.assert_untouched()


def test_mosaic_corrupt_geometry_file_exits_2(
    archive: SyntheticArchive, tmp_path: Path, outputs: Outputs
) -> None:
    geometry = tmp_path / "area.geojson"
    geometry.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    result = invoke(
        "mosaic",
        "--stac",
        archive.catalog,
        "--geometry-file",
        geometry,
        "--start-date",
        START,
        "--end-date",
        END,
        *outputs.args(),
    )
    assert result.exit_code == 2, result.output
    assert "Cannot read geometry file" in result.stderr
    assert str(geometry) in result.stderr
    outputs.assert_untouched()


def test_mosaic_missing_stac_exits_2(
    archive: SyntheticArchive, tmp_path: Path, outputs: Outputs
) -> None:
    missing = tmp_path / "nowhere" / "catalog.json"
    result = invoke(
        "mosaic",
        "--stac",
        missing,
        *bbox_args(archive.overlap_bbox()),
        "--start-date",
        START,
        "--end-date",
        END,
        *outputs.args(),
    )
    assert result.exit_code == 2, result.output
    assert f"STAC location '{missing}' does not exist" in result.stderr
    outputs.assert_untouched()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bbox", "-5.97", "53.33", "-6.03", "53.36"], "swapped"),
        (
            ["--bbox", "-6.03", "53.33", "-5.97", "53.36", "--end-date", "2021-10-01"],
            "before start date",
        ),
        ([], "No area given"),
    ],
    ids=["swapped bbox", "end before start", "no area"],
)
def test_search_bad_input_exits_2(
    archive: SyntheticArchive, args: list[str], expected: str
) -> None:
    if "--end-date" not in args:
        args = [*args, "--end-date", END]
    result = invoke("search", "--stac", archive.catalog, "--start-date", START, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ([], "Name the scenes' source"),
        (["--archive", "/nonexistent/archive"], "does not exist"),
        (["--archive", ".", "--tile", "29UPV"], "neither an AWS tile-path layout"),
        (["--stac", "x.json", "--tile", "29UPV"], "--tile only applies to --archive"),
        (["--archive", ".", "--tile", "99ZZZ"], "tile"),
        (["--provider", "landsatlook"], "landsatlook"),
    ],
    ids=[
        "no source",
        "missing archive",
        "not an archive",
        "tile without archive",
        "bad tile",
        "unknown provider",
    ],
)
def test_search_bad_source_exits_2(source: list[str], expected: str, tmp_path: Path) -> None:
    result = invoke(
        "search",
        *source,
        "--bbox",
        -6.05,
        53.3,
        -5.97,
        53.36,
        "--start-date",
        START,
        "--end-date",
        END,
    )
    assert result.exit_code == 2, result.output
    assert expected in result.stderr


# --- 2. nothing found: exit 3 and say what was searched ----------------------------------------


@pytest.mark.parametrize("command", ["search", "mosaic"])
def test_no_scenes_exits_3_and_says_what_was_searched(
    archive: SyntheticArchive, outputs: Outputs, command: str
) -> None:
    bbox = archive.overlap_bbox()
    extra = outputs.args() if command == "mosaic" else []
    result = invoke(
        command,
        "--stac",
        archive.catalog,
        *bbox_args(bbox),
        "--start-date",
        "2019-01-01",
        "--end-date",
        "2019-03-31",
        *extra,
    )
    assert result.exit_code == 3, result.output
    assert "No scenes found" in result.stderr
    assert "from 2019-01-01 to 2019-03-31" in result.stderr
    assert "bbox [" + ", ".join(repr(v) for v in bbox) + "]" in result.stderr
    assert "Traceback" not in result.output
    outputs.assert_untouched()


# --- 3. an existing output is refused unless --overwrite -----------------------------------------


def test_existing_out_is_refused_then_overwritten(
    archive: SyntheticArchive, tmp_path: Path
) -> None:
    out = tmp_path / "mosaic.zarr"
    out.mkdir()
    marker = out / "precious.txt"
    marker.write_text("keep me")
    args = [
        "-q",
        "mosaic",
        "--stac",
        archive.catalog,
        *bbox_args(archive.overlap_bbox()),
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2021-11-30",
        "--no-quicklook",
        "--out",
        out,
    ]

    refused = invoke(*args)
    assert refused.exit_code == 2, refused.output
    assert "already exists" in refused.stderr
    assert str(out) in refused.stderr
    assert "--overwrite" in refused.stderr
    assert marker.read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    assert not (tmp_path / "mosaic.stac").exists()

    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert not marker.exists()
    assert (out / "zarr.json").is_file()
    assert (tmp_path / "mosaic.stac" / "collection.json").is_file()


# --- 4. a successful mosaic ----------------------------------------------------------------------


@dataclass(frozen=True)
class MosaicRun:
    result: Result
    out: Path
    cogs: Path
    start: str
    end: str


@pytest.fixture(scope="module")
def monthly(archive: SyntheticArchive, tmp_path_factory: pytest.TempPathFactory) -> MosaicRun:
    work = tmp_path_factory.mktemp("cli-mosaic")
    out, cogs = work / "dublin.zarr", work / "cogs"
    start, end = "2021-11-10", "2022-01-20"  # calendar months start on the 1st regardless
    result = invoke(
        "mosaic",
        "--stac",
        archive.catalog,
        *bbox_args(archive.bbox),
        "--start-date",
        start,
        "--end-date",
        end,
        "--period",
        "month",
        "--bands",
        "red",
        "--bands",
        "B08",
        "--out",
        out,
        "--cog",
        cogs,
    )
    return MosaicRun(result, out, cogs, start, end)


def test_mosaic_prints_summary(monthly: MosaicRun) -> None:
    result = monthly.result
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    months = months_between(monthly.start, monthly.end)
    # 2021-11-18 .. 2022-01-17: 5 dates x 2 tiles
    assert lines[0].startswith(
        f"Wrote {monthly.out}: {len(months)} period(s), shape ({len(months)}, "
    )
    assert "in EPSG:32629, from 10 scenes in" in lines[0]
    assert [line for line in lines if line.startswith("COG ")] == [
        f"COG {monthly.cogs / f'{m}.tif'}" for m in months
    ]
    stac = monthly.out.parent / "dublin.stac" / "collection.json"
    assert lines[-1] == f"STAC {stac}"


def test_mosaic_writes_store(monthly: MosaicRun) -> None:
    assert monthly.result.exit_code == 0, monthly.result.output
    with xr.open_zarr(monthly.out) as ds:
        assert {"red", "B08"} <= set(ds.data_vars)
        assert [str(t)[:10] for t in ds["time"].values] == months_between(
            monthly.start, monthly.end
        )
        red = ds["red"].values
    assert (red != -32768).mean() > 0.5  # mostly cloud-free pixels were found


def test_mosaic_writes_a_cog_per_month(monthly: MosaicRun) -> None:
    assert monthly.result.exit_code == 0, monthly.result.output
    months = months_between(monthly.start, monthly.end)
    assert months == ["2021-11-01", "2021-12-01", "2022-01-01"]
    assert sorted(p.name for p in monthly.cogs.iterdir()) == [f"{m}.tif" for m in months]
    with rasterio.open(monthly.cogs / f"{months[0]}.tif") as cog:
        assert cog.count == 2
        assert cog.crs.to_epsg() == 32629
        assert cog.res == (10.0, 10.0)


def test_mosaic_writes_stac_beside_the_store(monthly: MosaicRun) -> None:
    assert monthly.result.exit_code == 0, monthly.result.output
    collection_path = monthly.out.parent / "dublin.stac" / "collection.json"
    assert collection_path.is_file()
    collection = pystac.Collection.from_file(str(collection_path))
    assert collection.id == "dublin"
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [
        f"dublin-{m}" for m in months_between(monthly.start, monthly.end)
    ]
    for item in items:
        assert Path(str(item.assets["cog"].get_absolute_href())).is_file()
        assert Path(str(item.assets["zarr"].get_absolute_href())) == monthly.out


def test_quiet_mosaic_from_item_collection(archive: SyntheticArchive, tmp_path: Path) -> None:
    out = tmp_path / "quiet.zarr"
    result = invoke(
        "-q",
        "mosaic",
        "--stac",
        archive.items_path,
        *bbox_args(archive.overlap_bbox()),
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2021-12-31",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # -q: no summary, no progress bar
    assert "compositing tiles" not in result.stderr
    assert (out / "zarr.json").is_file()
    assert (tmp_path / "quiet.stac" / "collection.json").is_file()


def test_mask_config_file_and_options(archive: SyntheticArchive, tmp_path: Path) -> None:
    """A TOML file names the mask and its options; --mask-option wins over the file."""
    config = tmp_path / "mask.toml"
    config.write_text('cloud_mask = "probability"\nthreshold = 30\ndilation_m = 100\n')
    out = tmp_path / "masked.zarr"
    result = invoke(
        "-q",
        "mosaic",
        "--stac",
        archive.items_path,
        *bbox_args(archive.overlap_bbox()),
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2021-12-31",
        "--mask-config",
        config,
        "--mask-option",
        "dilation_m=50",
        "--min-clear-fraction",
        "0.2",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    with xr.open_zarr(out) as ds:
        lineage = ds.attrs["cloudfree:lineage"]
    assert "cloud probability below 30 % (opening 20 m, buffer 50 m)" in lineage
    assert "days under 20% clear in a tile dropped" in lineage


def test_masks_command_lists_masks_and_options() -> None:
    result = invoke("masks")
    assert result.exit_code == 0
    for expected in ("scl", "probability", "s2cloudless", "none", "dilation_m", "threshold"):
        assert expected in result.output


def test_stac_hrefs_resolve_with_relative_paths(
    archive: SyntheticArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "-q",
        "mosaic",
        "--stac",
        archive.catalog,
        *bbox_args(archive.overlap_bbox()),
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2021-11-30",
        "--out",
        "rel.zarr",
        "--cog",
        "cogs",
    )
    assert result.exit_code == 0, result.output
    collection = pystac.Collection.from_file(str(tmp_path / "rel.stac" / "collection.json"))
    (item,) = collection.get_items()
    for key in ("zarr", "cog", "thumbnail"):
        assert Path(str(item.assets[key].get_absolute_href())).exists(), item.assets[key].href


# --- 5. search ------------------------------------------------------------------------------------


def test_search_json_lists_every_scene(archive: SyntheticArchive) -> None:
    rows = search_json(archive)
    assert sorted(r["id"] for r in rows) == sorted(s.id for s in archive.scenes)
    assert [r["datetime"] for r in rows] == sorted(r["datetime"] for r in rows)
    scenes = {s.id: s for s in archive.scenes}
    for row in rows:
        scene = scenes[row["id"]]
        assert set(row) >= {
            "id",
            "datetime",
            "solar_day",
            "crs",
            "cloud_cover",
            "processing_baseline",
            "bands",
        }
        assert row["datetime"] == scene.datetime.isoformat().replace("+00:00", "Z")
        assert row["crs"] == TILE_CRS[scene.tile_id]
        assert row["processing_baseline"] == scene.processing_baseline
        item = json.loads(scene.item_path.read_text())
        assert row["cloud_cover"] == pytest.approx(item["properties"]["eo:cloud_cover"])
        assert set(row["bands"]) == BAND_KEYS
        for name, band in row["bands"].items():
            assert set(band) == {"href", "scale", "offset", "nodata"}
            assert Path(band["href"]).resolve() == scene.band_path(name).resolve()
            if name in ("SCL", "CLD"):
                assert (band["scale"], band["offset"]) == (1.0, 0.0)
            else:
                assert band["scale"] == pytest.approx(1e-4)
                assert band["offset"] == pytest.approx(-0.1 if scene.offset_applied else 0.0)


def test_search_json_offsets_and_solar_days(archive: SyntheticArchive) -> None:
    rows = {r["id"]: r for r in search_json(archive)}
    new = rows[scene_on(archive, "30UUE", "2021-11-18").id]
    old = rows[scene_on(archive, "29UPV", "2021-11-18").id]
    assert new["processing_baseline"] == "05.00"
    assert old["processing_baseline"] == "03.01"
    for band in ("B02", "B03", "B04", "B08"):
        assert new["bands"][band]["offset"] == pytest.approx(-0.1)
        assert old["bands"][band]["offset"] == 0.0
    by_date: dict[str, set[str]] = {}
    for scene in archive.scenes:
        by_date.setdefault(scene.datetime.date().isoformat(), set()).add(
            rows[scene.id]["solar_day"]
        )
    assert len(by_date) == 12
    assert all(days == {day} for day, days in by_date.items())


def test_search_max_items(archive: SyntheticArchive) -> None:
    everything = search_json(archive)
    first = search_json(archive, "--max-items", 3)
    assert len(first) == 3
    assert [r["id"] for r in first] == [r["id"] for r in everything[:3]]  # the earliest


@pytest.mark.parametrize("limit", [10, 20, 45])
def test_search_max_cloud_cover(archive: SyntheticArchive, limit: float) -> None:
    everything = search_json(archive)
    kept = [r["id"] for r in everything if r["cloud_cover"] <= limit]
    if limit == 20:
        assert 0 < len(kept) < len(everything)  # the threshold really filters
    if not kept:  # every synthetic scene is above 10 %: nothing left to list
        result = invoke(
            "search",
            "--stac",
            archive.catalog,
            *bbox_args(archive.bbox),
            "--start-date",
            START,
            "--end-date",
            END,
            "--max-cloud-cover",
            limit,
        )
        assert result.exit_code == 3, result.output
        assert f"cloud cover <= {float(limit)}%" in result.stderr
        return
    rows = search_json(archive, "--max-cloud-cover", limit)
    assert [r["id"] for r in rows] == kept


@pytest.mark.parametrize("columns", ["200", "80"])
def test_search_table_lists_full_ids(archive: SyntheticArchive, columns: str) -> None:
    """Ids are whole at any terminal width, also at 80 columns or when piped."""
    result = invoke(
        "search",
        "--stac",
        archive.catalog,
        *bbox_args(archive.bbox),
        "--start-date",
        "2021-11-01",
        "--end-date",
        "2021-11-30",
        env={"COLUMNS": columns},
    )
    assert result.exit_code == 0, result.output
    for header in ("solar day", "id", "crs", "baseline", "offset"):
        assert header in result.stdout
    november = [s for s in archive.scenes if s.datetime.month == 11]
    assert len(november) == 4
    for scene in november:
        assert scene.id in result.stdout
    assert "EPSG:32629" in result.stdout and "EPSG:32630" in result.stdout
    assert "2021-11-03" in result.stdout and "2021-11-18" in result.stdout


# --- 6. an ItemCollection file works as --stac ---------------------------------------------------


def test_search_item_collection_matches_catalog(archive: SyntheticArchive) -> None:
    assert archive.items_path.is_file()
    from_items = search_json(archive, stac=archive.items_path)
    from_catalog = search_json(archive)
    assert len(from_items) == len(archive.scenes)
    assert from_items == from_catalog


# --- 7. version -----------------------------------------------------------------------------------


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cloudfree, version {cloudfree.__version__}"
    assert cloudfree.__version__ == importlib.metadata.version("cloudfree")
