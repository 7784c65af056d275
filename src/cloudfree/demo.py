"""``cloudfree demo``: the synthetic archive, a monthly mosaic of it, and its measured error."""

from __future__ import annotations

from pathlib import Path

from cloudfree.engine import ProgressCallback
from cloudfree.pipeline import mosaic
from cloudfree.testing import make_archive
from cloudfree.testing.evaluate import composite_errors


def run_demo(
    workdir: Path, *, seed: int = 42, tile_size: int = 512, progress: ProgressCallback | None = None
) -> str:
    """Build the archive under ``workdir`` and mosaic it; returns a plain-text report."""
    archive = make_archive(workdir / "archive", seed=seed, tile_size=tile_size)
    out = workdir / "mosaic.zarr"
    result = mosaic(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date="2021-11-01",
        end_date="2022-04-30",
        bands=["red", "green", "blue", "nir"],
        crs="EPSG:2157",
        resolution=10.0,
        cloud_mask="scl",
        method="median",
        period="all",
        cog_dir=str(workdir / "cogs"),
        chunk_size=512,
        overwrite=True,
        progress=progress,
        out=str(out),
    )
    lines = [
        f"Synthetic archive: {archive.root} ({len(archive.scenes)} scenes on "
        f"{len(archive.tiles)} tiles in two UTM zones)",
        f"Mosaic: {result.out} shape {result.shape} in {result.crs} "
        f"(Irish Transverse Mercator, across the zone 29/30 boundary)",
        f"COGs: {', '.join(result.cogs)}",
        f"STAC: {result.catalog}",
        "Error against the cloud-free truth (pixels with >= 3 clear days), reflectance units:",
    ]
    for band, err in composite_errors(str(out), archive).items():
        lines.append(
            f"  {band:>5}: MAE {err.mae:.4f}  RMSE {err.rmse:.4f}  p95 {err.p95:.4f}  "
            f"bias {err.bias:+.4f}  over {err.pixels} px"
        )
    return "\n".join(lines)
