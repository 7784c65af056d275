"""Peak memory of ``cloudfree convert`` on a large EOPF-structured product.

Writes a Sentinel-2 L2A product with the real hierarchy's groups and chunking (10 m bands in 2 x 2
chunks, coarser groups in one chunk) at ``--size`` pixels a side at 10 m, then converts it in a
fresh process and reports that process's peak RSS (``VmHWM`` of ``/proc/self/status``, Linux,
which starts afresh at ``exec`` unlike ``ru_maxrss``), next to the peak of a process that only
imports the converter, and the product's raw size.

    PYTHONPATH=src python benchmarks/convert_memory.py --size 5490 --dir /tmp/convert-bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numcodecs
import numpy as np
import pystac
import zarr
from zarr.storage import LocalStore

BANDS = {
    10: ("b02", "b03", "b04", "b08"),
    20: ("b02", "b03", "b04", "b05", "b06", "b07", "b8a", "b11", "b12"),
    60: ("b01", "b02", "b03", "b04", "b05", "b06", "b07", "b09", "b11", "b12", "b8a"),
}
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
X0, Y0 = 600000.0, 5700000.0
SCL = "conditions/mask/l2a_classification"


def write_product(path: Path, size: int) -> tuple[pystac.Item, int]:
    """A product at ``path``; returns its item and raw size in bytes."""
    root = zarr.open_group(LocalStore(path), mode="w", zarr_format=2)
    rng = np.random.default_rng(0)
    raw = 0
    for metres, bands in BANDS.items():
        n = size * 10 // metres
        splits = 2 if metres == 10 else 1
        chunk = -(-n // splits)
        groups = (("measurements/reflectance", bands), (SCL, ("scl",)))
        for parent, names in groups:
            if parent == SCL and metres == 10:
                continue
            group = root.require_group(f"{parent}/r{metres}m")
            centres = (np.arange(n) + 0.5) * metres
            for dim, values in (("x", X0 + centres), ("y", Y0 - centres)):
                coord = group.create_array(
                    dim, shape=(n,), dtype="<i8", chunks=(n,), fill_value=None
                )
                coord[...] = np.rint(values).astype("<i8")
            for band in names:
                categorical = band == "scl"
                attrs = {"_ARRAY_DIMENSIONS": ["y", "x"]}
                if not categorical:
                    attrs |= {"scale_factor": 0.0001, "add_offset": -0.1, "fill_value": 0}
                array = group.create_array(
                    band,
                    shape=(n, n),
                    chunks=(chunk, chunk),
                    dtype="uint8" if categorical else "uint16",
                    fill_value=None if categorical else 0,
                    compressors=COMPRESSOR,
                    attributes=attrs,
                )
                for r0 in range(0, n, chunk):  # written chunk row by chunk row
                    rows = min(chunk, n - r0)
                    if categorical:
                        block = rng.integers(1, 12, size=(rows, n), dtype=np.uint8)
                    else:
                        yy = np.arange(r0, r0 + rows)[:, None]
                        block = (1000 + (yy + np.arange(n)[None, :]) % 3000).astype(np.uint16)
                        block += rng.integers(0, 50, size=block.shape, dtype=np.uint16)
                    array[r0 : r0 + rows] = block
                raw += array.nbytes
    zarr.consolidate_metadata(LocalStore(path), zarr_format=2)
    item = pystac.Item(
        id=path.name.removesuffix(".zarr"),
        geometry={"type": "Point", "coordinates": [4.4, 51.4]},
        bbox=[4.4, 51.4, 4.4, 51.4],
        datetime=datetime(2025, 6, 1, 10, 30, tzinfo=UTC),
        properties={"product:type": "S02MSIL2A", "proj:code": "EPSG:32631"},
    )
    item.add_asset("product", pystac.Asset(href=str(path), media_type="application/vnd.zarr"))
    return item, raw


_REPORT_PEAK = (
    "\nimport re, pathlib\n"
    "status = pathlib.Path('/proc/self/status').read_text()\n"
    "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)))\n"
)


def peak_rss_mib(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; its peak RSS in MiB and its wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT_PEAK], check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    return int(done.stdout.split()[-1]) / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5490, help="10 m pixels a side")
    parser.add_argument("--dir", type=Path, default=Path("convert-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    product = args.dir / "S2X_MSIL2A_BENCH.zarr"
    item, raw = write_product(product, args.size)
    item_file = args.dir / "item.json"
    item_file.write_text(json.dumps(item.to_dict(transform_hrefs=False)))
    imports, _ = peak_rss_mib("import cloudfree.convert, cloudfree.convert.validate")
    out = args.dir / "out.zarr"
    code = f"from cloudfree.convert import convert; convert({str(item_file)!r}, {str(out)!r})"
    peak, seconds = peak_rss_mib(code)
    largest = (args.size**2) * 2 / 2**20
    print(f"product: {raw / 2**20:.0f} MiB raw, largest band {largest:.0f} MiB ({args.size} px)")
    print(f"peak RSS: import only {imports:.0f} MiB, conversion {peak:.0f} MiB ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
