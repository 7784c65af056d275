"""Datasets kept open across tiles and lent to one reader thread at a time; GDAL's block cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from cloudfree.config import cache_bytes, read_settings
from cloudfree.errors import InvalidInputError
from cloudfree.readers import datasets
from cloudfree.readers.gdal_band import read_window
from cloudfree.testing.cog import CogSpec, write_cog

CRS = "EPSG:32629"
TRANSFORM = (10.0, 0.0, 600_000.0, 0.0, -10.0, 5_900_000.0)


def cog(path: Path, value: int) -> Path:
    array = np.full((512, 512), value, dtype=np.uint16)
    write_cog(path, array, CogSpec(CRS, TRANSFORM, 0, "average", 256, "B02"))
    return path


def tile() -> GeoBox:
    return GeoBox((256, 256), Affine(*TRANSFORM), CRS)


def borrow(path: str) -> datasets.OpenRaster:
    with datasets.borrowed_raster(path) as raster:
        return raster


def test_a_file_is_opened_once_and_lent_to_one_thread_at_a_time(tmp_path: Path) -> None:
    path = str(cog(tmp_path / "a.tif", 100))
    first = borrow(path)
    assert borrow(path) is first  # returned, then lent again
    assert first.geobox == GeoBox((512, 512), Affine(*TRANSFORM), CRS)
    other: list[datasets.OpenRaster] = []
    with datasets.borrowed_raster(path) as held:
        # while this thread holds it, another thread gets a handle of its own
        worker = threading.Thread(target=lambda: other.append(borrow(path)))
        worker.start()
        worker.join()
        assert held is first and other[0] is not first
        assert other[0].dataset.name == first.dataset.name
    # a thread other than the one that opened it reads through it
    reads: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: reads.append(borrow(path).dataset.read(1)))
    worker.start()
    worker.join()
    assert np.all(reads[0] == 100)
    datasets.close_all()
    assert first.dataset.closed and other[0].dataset.closed


def test_a_handle_whose_read_failed_is_closed_not_lent_again(tmp_path: Path) -> None:
    path = str(cog(tmp_path / "e.tif", 3))
    with pytest.raises(RuntimeError), datasets.borrowed_raster(path) as failed:
        raise RuntimeError("the read failed")
    assert failed.dataset.closed and borrow(path) is not failed
    datasets.close_all()


def test_a_local_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "b.tif"
    cog(path, 100)
    before = read_window(str(path), tile(), "nearest", categorical=False, nodata=0)
    assert before is not None and np.all(before == 100)
    cog(path, 200)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new stamp for sure
    after = read_window(str(path), tile(), "nearest", categorical=False, nodata=0)
    assert after is not None and np.all(after == 200)
    datasets.close_all()


def test_forget_closes_every_handle_of_a_file_signed_or_not(tmp_path: Path) -> None:
    path = str(cog(tmp_path / "c.tif", 7))
    kept = str(cog(tmp_path / "d.tif", 8))
    opened = borrow(path)
    other = borrow(kept)
    datasets.forget(path + "?token=renewed")
    assert opened.dataset.closed and not other.dataset.closed
    assert borrow(path) is not opened
    datasets.close_all()


def test_the_open_handles_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_OPEN", 2)
    paths = [str(cog(tmp_path / f"{i}.tif", i + 1)) for i in range(3)]
    opened = [borrow(p) for p in paths]
    assert opened[0].dataset.closed  # the least recently used went
    assert not opened[1].dataset.closed and not opened[2].dataset.closed
    datasets.close_all()


def test_gdal_cachemax_is_bytes_for_rasterio_whatever_the_user_writes() -> None:
    assert cache_bytes("512") == 512 * 2**20  # GDAL: a small number is megabytes
    assert cache_bytes("512MB") == 512 * 2**20
    assert cache_bytes("536870912") == 536870912
    assert 0 < cache_bytes("1%") < cache_bytes("2%")
    with pytest.raises(InvalidInputError, match="GDAL_CACHEMAX"):
        cache_bytes("lots")
    options = read_settings({"CLOUDFREE_GDAL_GDAL_CACHEMAX": "128"}).gdal_options
    assert options["GDAL_CACHEMAX"] == 128 * 2**20
    with rasterio.Env(**options):  # a string here would be refused by rasterio
        assert rasterio.env.getenv()["GDAL_CACHEMAX"] == 128 * 2**20
    assert read_settings({}).gdal_options["GDAL_CACHEMAX"] >= 4 * 2**20  # megabytes, not bytes
