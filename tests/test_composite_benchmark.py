"""Smoke test of benchmarks/composite.py: a tiny stack, every method's row, exit status 0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "composite.py"


def harness_methods() -> dict[str, str | None]:
    """The harness's method rows: label -> registry name (``None``: not a registry method)."""
    spec = importlib.util.spec_from_file_location("cloudfree_composite_benchmark", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclasses; nothing is compiled or run here
    try:
        spec.loader.exec_module(module)
        return {m.label: m.name for m in module.METHODS}
    finally:
        del sys.modules[spec.name]


def registry() -> tuple[str, ...]:
    try:
        from cloudfree.composite import compositor_names
    except ImportError:
        return ()
    return tuple(compositor_names())


def test_harness_runs_and_prints_every_method(tmp_path):
    out = tmp_path / "table.md"
    # Run as a script, as users do: its numba kernels cache under that module. numbagg compiles
    # for ~15 s in every process (its cache is off by default) and xarray's quantile goes through
    # it: both are left out here; the other references run.
    command = [sys.executable, str(HARNESS), "--size", "64", "--dates", "6", "--out", str(out)]
    command += ["--skip", "numbagg", "xarray", "--runs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    printed = done.stdout
    assert done.returncode == 0, printed + done.stderr
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method |")
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    names = registry()
    methods = harness_methods()
    assert "median" in methods and "geomedian" in methods
    for label, name in methods.items():
        assert label in rows, f"no row for {label}"
        row = rows[label]
        if name is not None and name not in names:
            assert "not available" in row
        elif "not available" not in row:
            assert "| yes: " in row, row
    for label in ("floor: one pass, 1 band", "numpy nanmedian", "numpy sort + gather"):
        assert any(name.startswith(label) for name in rows), label
    assert "EXTRAPOLATED" in rows["numpy nanquantile(0.25)"]
    assert "not available" in rows["numbagg nanquantile([0.5, 0.25])"]
    assert "Targets:" in printed
    assert "| method |" in out.read_text()
