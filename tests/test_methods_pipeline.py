"""Every compositing method end to end on the synthetic archive, measured against its truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

import cloudfree
from cloudfree.cli.main import cli
from cloudfree.composite import compositor_names
from cloudfree.testing.evaluate import composite_errors

START, END = "2021-11-01", "2022-04-30"
BANDS = ["red", "green", "blue", "nir"]

#: Largest mean absolute reflectance error against the truth, per method (median is ~0.002).
MAX_MAE = {
    "median": 0.004,
    "cdse-l3": 0.004,
    "mean": 0.005,
    "best-pixel": 0.005,
    "medoid": 0.005,
    "geomedian": 0.005,
    "min": 0.008,
    "max": 0.015,
}


def run(archive, tmp_path, name, **options):
    defaults = dict(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date=START,
        end_date=END,
        bands=BANDS,
        crs="EPSG:2157",
        resolution=10.0,
        chunk_size=128,
        out=str(tmp_path / f"{name}.zarr"),
    )
    return cloudfree.mosaic(**{**defaults, **options})


@pytest.mark.parametrize("method", sorted(MAX_MAE))
def test_method_is_close_to_the_cloud_free_truth(archive, tmp_path, method):
    if method not in compositor_names():
        pytest.fail(f"method {method} is not registered")
    options = {"method_options": {"dreq_m": 300}} if method == "best-pixel" else {}
    result = run(archive, tmp_path, method, method=method, **options)
    errors = composite_errors(result.out, archive)
    for band, error in errors.items():
        assert error.pixels > 10_000, band
        assert error.mae < MAX_MAE[method], (band, error)


def test_quantiles_order_and_count(archive, tmp_path):
    q10 = xr.open_zarr(run(archive, tmp_path, "q10", method="quantile", quantile=0.1).out)
    q90 = xr.open_zarr(run(archive, tmp_path, "q90", method="quantile", quantile=0.9).out)
    count = xr.open_zarr(run(archive, tmp_path, "count", method="count").out)
    both = np.isfinite(q10.red.values) & np.isfinite(q90.red.values)
    assert both.sum() > 10_000 and np.all(q10.red.values[both] <= q90.red.values[both])
    # counts are stored as plain uint16 counts, equal to the observations where bands have data
    assert count.red.dtype == np.uint16 and "scale_factor" not in count.red.encoding
    np.testing.assert_array_equal(count.red.values, count.observations.values)


def test_best_pixel_provenance_and_tile_size_invariance(archive, tmp_path):
    options = dict(method="best-pixel", method_options={"dreq_m": 250}, provenance=True)
    small = run(archive, tmp_path, "bap128", chunk_size=128, **options)
    large = run(archive, tmp_path, "bap384", chunk_size=384, **options)
    a, b = xr.open_zarr(small.out), xr.open_zarr(large.out)
    for name in [*BANDS, "observations", "score"]:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    np.testing.assert_array_equal(a.date.values, b.date.values)
    # the date decodes to datetime64, is an acquisition day of the period, NaT where no data
    dates = a.date.values[0]
    assert np.issubdtype(dates.dtype, np.datetime64)
    chosen = pd.DatetimeIndex(dates[~np.isnat(dates)].ravel())
    acquired = {s.solar_day for s in small.scenes}
    assert set(chosen.date) <= acquired and len(set(chosen.date)) > 2
    assert np.all(np.isnat(dates) == ~np.isfinite(a.red.values[0]))
    score = a.score.values[0]
    assert np.all((score[np.isfinite(score)] > 0) & (score[np.isfinite(score)] <= 1))
    assert "best available pixel as FORCE" in a.attrs["cloudfree:lineage"]


def test_provenance_only_when_asked_and_only_what_the_method_has(archive, tmp_path):
    plain = xr.open_zarr(run(archive, tmp_path, "plain", method="best-pixel").out)
    median = xr.open_zarr(run(archive, tmp_path, "med", provenance=True).out)
    assert "date" not in plain and "score" not in plain
    assert "date" not in median and "observations" in median


def test_cli_method_options_and_provenance(archive, tmp_path):
    out = tmp_path / "medoid.zarr"
    west, south, east, north = archive.bbox
    result = CliRunner().invoke(
        cli,
        ["mosaic", "--stac", str(archive.catalog), "--bbox", str(west), str(south), str(east),
         str(north), "--start-date", START, "--end-date", END, "--crs", "EPSG:2157",
         "--resolution", "20", "--method", "geomedian", "--method-option", "eps=0.5",
         "--provenance", "--out", str(out), "--no-quicklook"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = xr.open_zarr(out)
    assert "date" not in ds  # a geomedian chooses no single observation
    assert "step < 0.5 DN" in ds.attrs["cloudfree:lineage"]


def test_methods_command_lists_every_method_with_options():
    result = CliRunner().invoke(cli, ["methods"])
    assert result.exit_code == 0, result.output
    for name in compositor_names():
        assert f"{name}:" in result.output
    assert "best-pixel:" in result.output and "[provenance: date, score]" in result.output
    assert "dreq_m  (default 3000.0)" in result.output
