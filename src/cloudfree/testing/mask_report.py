"""How good is each cloud mask? Measured on the synthetic archive, written to ``docs/masks.md``.

``python -m cloudfree.testing.mask_report`` (``make mask-report``) generates the archive, and for
every mask configuration in :data:`CONFIGS`:

- scores each observation of tile 29UPV on its own 10 m grid against the archive's analytic
  contamination truth (omission: contaminated observations called clear; commission: truly clear
  observations rejected; see :class:`~cloudfree.testing.evaluate.MaskScores`);
- makes a median mosaic of both tiles (EPSG:2157, 10 m) and measures its error against the
  cloud-free truth.

Where ``../shared/realdata`` is present it adds the figures on real pixels
(:mod:`cloudfree.testing.real_masks`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from cloudfree.grid import context_pixels
from cloudfree.pipeline import build_request, load_masked, mosaic, search
from cloudfree.testing import make_archive
from cloudfree.testing.evaluate import (
    MaskScores,
    composite_errors,
    mask_scores,
    stack_contamination,
)
from cloudfree.testing.model import SyntheticArchive

START, END = "2021-11-01", "2022-04-30"
SCORED_TILE = "29UPV"


@dataclass(frozen=True)
class MaskConfig:
    """One row of the report: a mask and its options."""

    label: str
    mask: str
    options: Mapping[str, object] = field(default_factory=dict)


CONFIGS: tuple[MaskConfig, ...] = (
    MaskConfig("none", "none"),
    MaskConfig("scl, classes only", "scl", {"opening_m": 0, "dilation_m": 0}),
    MaskConfig("scl (default: opening 20 m, buffer 60 m)", "scl"),
    MaskConfig("scl, buffer 120 m", "scl", {"dilation_m": 120}),
    MaskConfig("scl strict", "scl", {"preset": "strict"}),
    MaskConfig(
        "scl cdse-l3 (no clean-up)", "scl", {"preset": "cdse-l3", "opening_m": 0, "dilation_m": 0}
    ),
    MaskConfig("probability 20 %", "probability", {"threshold": 20}),
    MaskConfig("probability 40 % (default)", "probability"),
    MaskConfig("probability 60 %", "probability", {"threshold": 60}),
    MaskConfig("probability 40 %, no clean-up", "probability", {"opening_m": 0, "dilation_m": 0}),
)


@dataclass(frozen=True)
class MaskRow:
    """The measured figures of one configuration."""

    config: MaskConfig
    scores: MaskScores
    mae: Mapping[str, float]
    """Composite mean absolute error per band, reflectance."""
    observations: float
    """Mean clear observations per mosaic pixel."""


def score_observations(archive: SyntheticArchive, config: MaskConfig, workdir: Path) -> MaskScores:
    """Score the mask on every observation of one tile, on the tile's own grid."""
    tile = archive.tile(SCORED_TILE)
    request = build_request(
        stac=str(archive.catalog),
        bbox=tile.bbox_lonlat,
        start_date=START,
        end_date=END,
        bands=["red"],
        cloud_mask=config.mask,
        mask_options=config.options,
        out=str(workdir / "unused.zarr"),
    )
    geobox = tile.geobox()
    halo = context_pixels(request.mask.halo_m(), 10.0)
    stack, clear, _ = load_masked(request, geobox, search(request), halo, 10.0)
    truth = stack_contamination([archive.contaminated(geobox, day) for day in stack.days])
    return mask_scores(clear, truth)


def measure(
    archive: SyntheticArchive, configs: Sequence[MaskConfig], workdir: Path
) -> list[MaskRow]:
    """Every configuration's scores and composite error."""
    rows = []
    for index, config in enumerate(configs):
        scores = score_observations(archive, config, workdir)
        median = _mosaic(archive, config, workdir / f"median-{index}.zarr", "median")
        quartile = _mosaic(archive, config, workdir / f"q25-{index}.zarr", "quantile")
        errors = composite_errors(median, archive, min_observations=1)
        q_errors = composite_errors(quartile, archive, min_observations=1)
        observations = float(xr.open_zarr(median)["observations"].values.mean())
        mae = {b: e.mae for b, e in errors.items()} | {"red q25": q_errors["red"].mae}
        rows.append(MaskRow(config, scores, mae, observations))
    return rows


def _mosaic(archive: SyntheticArchive, config: MaskConfig, out: Path, method: str) -> str:
    """A mosaic of both tiles with this mask: the median, or the first quartile."""
    mosaic(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date=START,
        end_date=END,
        bands=["red", "nir"],
        crs="EPSG:2157",
        resolution=10.0,
        cloud_mask=config.mask,
        mask_options=config.options,
        method=method,
        quantile=0.25 if method == "quantile" else None,
        chunk_size=512,
        quicklook=False,
        out=str(out),
    )
    return str(out)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f} %"


def synthetic_table(rows: Sequence[MaskRow]) -> list[str]:
    """The synthetic-archive table in Markdown."""
    lines = [
        "| mask | omission | cloud | shadow | cirrus | snow | commission | median MAE red "
        "| median MAE nir | q25 MAE red | clear obs / px |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        kinds = row.scores.kinds
        lines.append(
            f"| {row.config.label} | {_pct(row.scores.omission)} "
            + " ".join(
                f"| {_pct(kinds[k].omission)}" for k in ("cloud", "shadow", "cirrus", "snow")
            )
            + f" | {_pct(row.scores.commission)} | {row.mae['red']:.4f} | {row.mae['nir']:.4f} "
            f"| {row.mae['red q25']:.4f} | {row.observations:.1f} |"
        )
    return lines


def render(
    archive: SyntheticArchive, rows: Sequence[MaskRow], real: Sequence[str], seconds: float
) -> str:
    """The whole ``docs/masks.md``."""
    scores = rows[0].scores
    parts = [
        "# Cloud masks, measured",
        "",
        "Generated by `make mask-report` (`python -m cloudfree.testing.mask_report`); do not edit "
        "by hand.",
        "",
        "## On the synthetic archive",
        "",
        f"Archive: seed {archive.seed}, two {archive.tile_size} px tiles, "
        f"{len(archive.scenes)} scenes. Observations are scored on tile {SCORED_TILE}'s own 10 m "
        f"grid ({scores.observations} observations with data, {scores.contaminated} of them "
        "contaminated) against the analytic truth: cloud opacity > 0.05, shadow of a cloud of "
        "opacity > 0.22, cirrus > 0.17, or snow. **Omission** is the share of contaminated "
        "observations the mask calls clear (per kind in the next four columns); **commission** is "
        "the share of truly clear observations it rejects. The composite is a median of both "
        "tiles in EPSG:2157 at 10 m, and the first quartile (as the CDSE-L3 preset) of red, "
        "which shadows and dark fringes pull down; MAE is against the cloud-free truth "
        "(reflectance), over pixels with at least one clear observation.",
        "",
        *synthetic_table(rows),
        "",
        "s2cloudless is not in this table: it needs bands B01, B09 and B10 that the synthetic "
        "archive does not render; it is measured on real pixels below.",
        "",
    ]
    if real:
        parts += ["## On real pixels", "", *real, ""]
    parts += [f"Measured in {seconds:.0f} s.", ""]
    return "\n".join(parts)


def real_sections(realdata: Path) -> list[str]:
    """Figures on the real pixels, when the shared real data is present."""
    if not (realdata / "MANIFEST.md").exists():
        return []
    from cloudfree.testing.real_masks import markdown

    return markdown(realdata)


def main(argv: Sequence[str] | None = None) -> None:
    """Regenerate the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/masks.md")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument(
        "--realdata", default=str(Path(__file__).resolve().parents[4] / "shared" / "realdata")
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        archive = make_archive(Path(tmp) / "archive", seed=args.seed, tile_size=args.tile_size)
        rows = measure(archive, CONFIGS, Path(tmp))
        real = real_sections(Path(args.realdata))
        text = render(archive, rows, real, time.perf_counter() - started)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
