"""The moto S3 server: GDAL /vsis3/ (GeoTIFF and JPEG 2000) and s3fs listings against it."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import s3fs
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.session import AWSSession
from rasterio.windows import Window

from cloudfree.testing.cog import CogSpec, write_cog

TRANSFORM = (10.0, 0.0, 600_000.0, 0.0, -10.0, 5_900_000.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``B04.tif`` (COG), ``B08.jp2`` (lossless JPEG 2000) and ``meta/info.json``."""
    root = tmp_path_factory.mktemp("s3tree")
    rng = np.random.default_rng(11)
    red = rng.integers(0, 10_000, (512, 512), dtype=np.uint16)
    nir = rng.integers(0, 10_000, (512, 512), dtype=np.uint16)
    spec = CogSpec("EPSG:32629", TRANSFORM, 0, "average", 256, "B04")
    write_cog(root / "B04.tif", red, spec)
    profile = {
        "driver": "GTiff",
        "width": 512,
        "height": 512,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32629",
        "transform": Affine(*TRANSFORM),
    }
    with MemoryFile() as memfile, memfile.open(**profile) as dataset:
        dataset.write(nir, 1)
        rasterio.shutil.copy(
            dataset,
            str(root / "B08.jp2"),
            driver="JP2OpenJPEG",
            reversible="YES",
            quality="100",
            blockxsize="256",
            blockysize="256",
        )
    (root / "meta").mkdir()
    (root / "meta" / "info.json").write_text('{"tile": "29UPV"}')
    return root, red, nir


def test_vsis3_reads_geotiff_and_jp2_windows(s3_server, tree):
    root, red, nir = tree
    bucket = s3_server.create_bucket()
    keys = s3_server.upload_directory(root, bucket, prefix="tiles/29UPV")
    assert keys == ["tiles/29UPV/B04.tif", "tiles/29UPV/B08.jp2", "tiles/29UPV/meta/info.json"]

    # rasterio.Env takes the credentials as a session (it refuses AWS_ACCESS_KEY_ID as an
    # option); endpoint, scheme, path-style addressing and region are plain GDAL options.
    session = AWSSession(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
    )
    options = {
        "AWS_S3_ENDPOINT": f"127.0.0.1:{s3_server.port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_REGION": s3_server.region,
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }
    with rasterio.Env(session=session, **options):
        with rasterio.open(f"/vsis3/{bucket}/tiles/29UPV/B04.tif") as dataset:
            assert dataset.crs.to_epsg() == 32629
            window = dataset.read(1, window=Window(100, 200, 50, 40))
        np.testing.assert_array_equal(window, red[200:240, 100:150])

        with rasterio.open(f"/vsis3/{bucket}/tiles/29UPV/B08.jp2") as dataset:
            assert dataset.driver == "JP2OpenJPEG"
            assert dataset.transform == Affine(*TRANSFORM)
            window = dataset.read(1, window=Window(300, 10, 64, 64))
        np.testing.assert_array_equal(window, nir[10:74, 300:364])


def test_s3fs_lists_a_prefix_with_delimiter(s3_server, tree):
    root, _, _ = tree
    bucket = s3_server.create_bucket()
    s3_server.upload_directory(root, bucket, prefix="tiles/29UPV")
    s3_server.upload_file(root / "B04.tif", bucket, "tiles/30UUE/B04.tif")

    fs = s3fs.S3FileSystem(
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        client_kwargs={"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
        use_listings_cache=False,
    )
    assert fs.ls(f"{bucket}/tiles", detail=False) == [
        f"{bucket}/tiles/29UPV",
        f"{bucket}/tiles/30UUE",
    ]
    entries = fs.ls(f"{bucket}/tiles/29UPV", detail=True)
    kinds = {entry["name"].rsplit("/", 1)[-1]: entry["type"] for entry in entries}
    assert kinds == {"B04.tif": "file", "B08.jp2": "file", "meta": "directory"}
    sizes = {e["name"].rsplit("/", 1)[-1]: e["size"] for e in entries if e["type"] == "file"}
    assert sizes["B04.tif"] == (root / "B04.tif").stat().st_size

    # the delimiter listing as the S3 API gives it, through boto3
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="tiles/", Delimiter="/")
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["tiles/29UPV/", "tiles/30UUE/"]

    # and fsspec with storage options, as the library will be given them
    fs2 = s3fs.S3FileSystem(**s3_server.storage_options(), use_listings_cache=False)
    with fs2.open(f"{bucket}/tiles/29UPV/meta/info.json") as stream:
        assert stream.read() == b'{"tile": "29UPV"}'


def test_fixture_rasterio_env(s3_server, tree):
    root, red, _ = tree
    bucket = s3_server.create_bucket()
    s3_server.upload_file(root / "B04.tif", bucket, "B04.tif")
    with s3_server.rasterio_env(), rasterio.open(f"/vsis3/{bucket}/B04.tif") as dataset:
        np.testing.assert_array_equal(dataset.read(1, window=Window(0, 0, 8, 8)), red[:8, :8])
    # the reason for rasterio_env(): rasterio refuses credentials as plain options
    with pytest.raises(rasterio.errors.EnvError):
        rasterio.Env(**s3_server.gdal_options())
