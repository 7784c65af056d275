"""Smoke test of benchmarks/end_to_end.py: a tiny archive, the table, cloudfree = odc-stac."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "end_to_end.py"

pytest.importorskip("odc.stac")
pytest.importorskip("rio_cogeo")


def test_harness_runs_and_the_outputs_agree(tmp_path):
    out = tmp_path / "report.md"
    # The quantile path: xarray's median goes through numbagg, which compiles for ~20 s in
    # every process; the harness compares the stores and the COGs the same way for both.
    command = [sys.executable, str(HARNESS), "--size", "256", "--dates", "4"]
    command += ["--methods", "quantile", "--skip", "scaling", "--cache", str(tmp_path / "cache")]
    command += ["--work", str(tmp_path / "work"), "--out", str(out), "--repeat", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    printed = done.stdout
    assert done.returncode == 0, printed + done.stderr
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| contender | wall (s) |")
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert set(rows) == {"floor", "cloudfree quantile", "odc-stac quantile"}
    assert not any("FAILED" in row for row in rows.values())
    # every contender ran twice and is reported by its median, with the range beside it
    assert all("2 runs: wall " in row for row in rows.values()), table
    agreement = [line for line in printed.splitlines() if line.startswith("- agree")]
    # four bands in the Zarr stores, the two COGs, cloudfree's COG against its store
    assert len(agreement) == 6, printed
    assert all("100.0000% identical, max |diff| 0 DN" in line for line in agreement), printed
    assert "DISAGREE" not in printed
    assert "Targets" in out.read_text()
    # the outputs exist and hold data: not two empty stores agreeing
    import rasterio

    cog = next((tmp_path / "work").glob("cloudfree-quantile/cog/*.tif"))
    with rasterio.open(cog) as src:
        values = src.read()
        assert values.shape == (4, 256, 256)
        assert (values != src.nodata).mean() > 0.5
