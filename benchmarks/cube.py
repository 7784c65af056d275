"""The data cube on the synthetic archive: wall time, bytes and objects per chunking, and a
monthly median from the cube against the same mosaic from the scenes.

Run with ``python benchmarks/cube.py [--tile-size 512] [--threads 2]``. Prints a Markdown
table; exits 1 if the mosaic from the cube is not bit-identical to the mosaic from the scenes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import cloudfree
from cloudfree.cube import cube
from cloudfree.testing import make_archive

START, END = "2021-11-01", "2022-04-30"
BANDS = ["red", "green", "blue", "nir"]
CHUNKINGS = {
    "8 days per chunk": dict(time_chunk=8),
    "1 day per chunk": dict(time_chunk=1),
    "1 day per chunk, 12 per shard": dict(time_chunk=1, time_shard=12),
}


def _size(store: Path) -> tuple[int, int]:
    files = [p for p in store.rglob("*") if p.is_file() and "_cloudfree" not in p.parts]
    return sum(p.stat().st_size for p in files), len(files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=256)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cloudfree-cube-bench-"))
    archive = make_archive(root / "archive", seed=7, tile_size=args.tile_size)
    common = dict(
        stac=str(archive.catalog),
        bbox=archive.bbox,
        start_date=START,
        end_date=END,
        bands=BANDS,
        crs="EPSG:2157",
        resolution=10.0,
        chunk_size=args.chunk_size,
        threads=args.threads,
    )
    print("| chunking | shape | units | wall s | MB stored | objects |")
    print("|---|---|---|---|---|---|")
    cube_url = ""
    for label, chunking in CHUNKINGS.items():
        out = root / f"{len(cube_url)}-{label.replace(' ', '-').replace(',', '')}.zarr"
        began = time.perf_counter()
        result = cube(out=str(out), **common, **chunking)  # type: ignore[arg-type]
        wall = time.perf_counter() - began
        size, objects = _size(out)
        print(
            f"| {label} | {result.shape} | {result.units} | {wall:.1f} | {size / 1e6:.2f} "
            f"| {objects} |"
        )
        cube_url = str(out)
    mosaic = dict(start_date=START, end_date=END, bands=BANDS, period="month", quicklook=False)
    began = time.perf_counter()
    cloudfree.mosaic(
        out=str(root / "scenes.zarr"),
        **{k: v for k, v in common.items() if k not in ("start_date", "end_date", "bands")},
        **mosaic,
    )
    direct = time.perf_counter() - began
    began = time.perf_counter()
    cloudfree.mosaic(
        out=str(root / "from-cube.zarr"),
        from_cube=cube_url,
        chunk_size=args.chunk_size,
        threads=args.threads,
        **mosaic,
    )
    from_cube = time.perf_counter() - began
    a, b = zarr.open_group(str(root / "scenes.zarr")), zarr.open_group(str(root / "from-cube.zarr"))
    same = all(np.array_equal(a[n][...], b[n][...]) for n in [*BANDS, "observations"])
    print(
        f"\nMonthly median: from the scenes {direct:.1f} s, from the cube {from_cube:.1f} s; "
        f"{'bit-identical' if same else 'DIFFERENT'}. Outputs in {root}."
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
