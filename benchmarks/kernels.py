"""The hand-written kernels against the library calls they replace, on this machine.

- warp: ``cloudfree.readers.warp.warp_window`` (tile-invariant) against GDAL through
  ``odc.geo.warp.rio_reproject``, a 2048 x 2048 output in EPSG:2157 from a 10 m UTM 29N source;
- morphology: ``cloudfree.masks.morphology.dilate`` against ``scipy.ndimage.binary_dilation``
  with the same disk, 8 layers of 2048 x 2048 and a 10 px radius.

Run with ``make bench`` (or ``python benchmarks/kernels.py``). Prints the best of several runs;
the results are checked equal (morphology) or close (warp, within GDAL's coordinate error).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.warp import rio_reproject
from rasterio.enums import Resampling
from scipy import ndimage

from cloudfree.masks.morphology import dilate
from cloudfree.readers.warp import warp_window


def best_of(runs: int, func: Callable[[], object]) -> float:
    """The fastest of ``runs`` calls, after one warm-up (numba compiles on first use)."""
    func()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_warp() -> None:
    rng = np.random.default_rng(0)
    src_gbox = GeoBox((2400, 2400), Affine(10, 0, 600_000, 0, -10, 5_920_000), "EPSG:32629")
    smooth = ndimage.gaussian_filter(rng.random((2400, 2400)), 3)
    block = (1000 + 3000 * smooth).astype(np.uint16)
    bounds = src_gbox.boundingbox.to_crs("EPSG:2157")
    geobox = GeoBox.from_bbox(bounds, "EPSG:2157", resolution=10).pad(-100)[:2048, :2048]
    window = (slice(0, 2400), slice(0, 2400))
    megapixels = geobox.shape.x * geobox.shape.y / 1e6
    for method in ("bilinear", "nearest"):
        ours = warp_window(block, src_gbox, window, geobox, method, categorical=False, src_nodata=0)
        gdal = np.full(geobox.shape.yx, np.nan, np.float32)

        def run_gdal(out: np.ndarray = gdal, method: str = method) -> None:
            rio_reproject(
                block, out, src_gbox, geobox, Resampling[method], src_nodata=0, dst_nodata=np.nan
            )

        run_gdal()
        both = np.isfinite(ours) & np.isfinite(gdal)
        t_ours = best_of(
            5,
            lambda method=method: warp_window(
                block, src_gbox, window, geobox, method, categorical=False, src_nodata=0
            ),
        )
        t_gdal = best_of(5, run_gdal)
        print(
            f"warp {method:8s} cloudfree {megapixels / t_ours:6.0f} Mpix/s   GDAL "
            f"{megapixels / t_gdal:6.0f} Mpix/s   x{t_gdal / t_ours:.1f}   "
            + agreement(np.abs(ours - gdal)[both], method)
        )


def agreement(diff: np.ndarray, method: str) -> str:
    """How close the two warps are: nearest differs only where a centre sits on a boundary."""
    if method == "nearest":
        return f"{np.mean(diff > 0):.2%} of pixels differ (pixel-boundary ties)"
    return f"max |diff| {diff.max():.3f} DN"


def bench_morphology() -> None:
    rng = np.random.default_rng(1)
    layer = ndimage.gaussian_filter(rng.random((2048, 2048)), 20) > 0.5
    mask = np.broadcast_to(layer, (8, 2048, 2048)).copy()
    radius = 10
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = xx**2 + yy**2 <= radius**2
    ours = dilate(mask, radius)
    reference = np.stack([ndimage.binary_dilation(m, structure=disk) for m in mask])
    assert np.array_equal(ours, reference)
    t_ours = best_of(3, lambda: dilate(mask, radius))
    t_scipy = best_of(1, lambda: [ndimage.binary_dilation(m, structure=disk) for m in mask])
    print(
        f"dilation r=10 px, 8 x 2048^2   cloudfree {t_ours:.2f} s   scipy {t_scipy:.2f} s   "
        f"x{t_scipy / t_ours:.1f}   identical"
    )


if __name__ == "__main__":
    bench_warp()
    bench_morphology()
