"""End-to-end benchmark: a mosaic of the synthetic archive, wall time and peak memory.

Run with ``make bench`` (or ``python benchmarks/run.py --tile-size 1024``). Prints one table row
per configuration; numbers are for this machine, not assertions.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import cloudfree
from cloudfree.testing import make_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudfree-bench-"))
    try:
        start = time.perf_counter()
        archive = make_archive(work / "archive", tile_size=args.tile_size)
        print(
            f"archive: {len(archive.scenes)} scenes of {args.tile_size}^2 px in "
            f"{time.perf_counter() - start:.1f} s"
        )
        print(f"{'threads':>7} {'output px':>12} {'wall s':>7} {'Mpx/s':>6}")
        for threads in args.threads:
            out = work / f"mosaic-{threads}.zarr"
            start = time.perf_counter()
            result = cloudfree.mosaic(
                stac=str(archive.catalog),
                bbox=archive.bbox,
                start_date="2021-11-01",
                end_date="2022-04-30",
                bands=["red", "green", "blue", "nir"],
                crs="EPSG:2157",
                resolution=10.0,
                chunk_size=512,
                threads=threads,
                quicklook=False,
                out=str(out),
            )
            wall = time.perf_counter() - start
            pixels = result.shape[1] * result.shape[2]
            print(f"{threads:>7} {pixels:>12} {wall:>7.2f} {pixels / wall / 1e6:>6.2f}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the process: {peak_mb:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
