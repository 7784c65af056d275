"""The dry run's peak-memory estimate against the measured peak of a real run.

Builds the synthetic archive (``--tile-size`` px scenes), then, in a fresh process each:

1. warms up (imports, numba compilation, GDAL) on a one-tile job and takes the resident set size
   as the process base;
2. runs the job with one thread and ``--chunk-size`` tiles and reads the process's peak RSS.

Prints, per chunk size, the estimate (:func:`cloudfree.pipeline.describe_plan`) of one unit and
of the worker, against the measured peak above the base and the measured peak, and their ratio.
Run with ``python benchmarks/memory_estimate.py [--tile-size 512] [--chunk-size 256 512 1024]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
import psutil
import cloudfree
from cloudfree.pipeline import build_request, describe_plan, plan, search
opts = json.loads(sys.argv[1])
warm = dict(opts, out=opts["out"] + ".warm", chunk_size=64, max_items=2)
cloudfree.mosaic(**warm)
base = psutil.Process().memory_info().rss
request = build_request(**opts)
summary = describe_plan(request, plan(request, search(request)), threads_per_worker=1)
cloudfree.mosaic(**opts)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "unit": summary.unit_peak_bytes,
                  "worker": summary.worker_peak_bytes, "process": summary.process_base_bytes,
                  "units": summary.units}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    from cloudfree.testing import make_archive

    work = Path(tempfile.mkdtemp(prefix="cloudfree-memory-"))
    archive = make_archive(work / "archive", seed=42, tile_size=args.tile_size)
    print("| chunk | units | est. unit | measured unit | ratio | est. worker | measured peak |")
    print("|---|---|---|---|---|---|---|")
    mib = 2**20
    for chunk in args.chunk_size:
        opts = {
            "stac": str(archive.catalog),
            "bbox": list(archive.bbox),
            "start_date": "2021-11-01",
            "end_date": "2022-04-30",
            "bands": ["red", "green", "blue", "nir"],
            "crs": "EPSG:2157",
            "resolution": 10.0,
            "chunk_size": chunk,
            "threads": 1,
            "out": str(work / f"m{chunk}.zarr"),
            "quicklook": False,
        }
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(opts)],
            capture_output=True,
            text=True,
            check=True,
            env={**__import__("os").environ, "NUMBA_NUM_THREADS": "1"},
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        measured = row["peak"] - row["base"]
        print(
            f"| {chunk} | {row['units']} | {row['unit'] / mib:.0f} MiB | {measured / mib:.0f} MiB "
            f"| {row['unit'] / max(measured, 1):.2f} | {row['worker'] / mib:.0f} MiB "
            f"| {row['peak'] / mib:.0f} MiB (base {row['base'] / mib:.0f} MiB) |"
        )
    _ = resource


if __name__ == "__main__":
    main()
