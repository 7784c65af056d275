"""The range HTTP server (cloudfree.testing.http_server) with GDAL /vsicurl/ as its client."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from cloudfree.testing.cog import CogSpec, write_cog
from cloudfree.testing.http_server import parse_range

# No sidecar probing, quick retries: every request in the log is one the test caused.
GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.1",
    "VSI_CACHE": "FALSE",
}


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    """A 1024 x 1024 int16 COG with 256 px tiles (about 2.5 MB: random values)."""
    root = tmp_path_factory.mktemp("cogs")
    array = np.random.default_rng(3).integers(0, 10_000, (1024, 1024), dtype=np.int16)
    spec = CogSpec(
        crs="EPSG:32629",
        transform=(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_900_000.0),
        nodata=-32768,
        resampling="average",
        blocksize=256,
        description="B04",
    )
    write_cog(root / "B04.tif", array, spec)
    return root, array


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_window_read_uses_ranges(http_server, cog):
    root, array = cog
    server = http_server(root)
    size = (root / "B04.tif").stat().st_size
    with rasterio.Env(**GDAL), rasterio.open(server.vsicurl("B04.tif")) as dataset:
        assert dataset.profile["blockxsize"] == 256
        window = dataset.read(1, window=Window(300, 300, 100, 100))
    np.testing.assert_array_equal(window, array[300:400, 300:400])

    records = server.requests.for_path("B04.tif")
    gets = [r for r in records if r.method == "GET"]
    assert gets, records
    assert all(r.status == 206 and r.range is not None for r in gets)
    # the header plus the 4 tiles under the window, far from the whole file
    assert server.requests.bytes_sent("B04.tif") < size / 4
    assert {r.path for r in server.requests.all()} == {"/B04.tif"}


def test_retry_after_then_success(http_server, cog):
    root, array = cog
    server = http_server(root)
    server.faults.fail_next("/B04.tif", count=1, status=503, retry_after=1)
    assert server.faults.pending("B04.tif") == 1
    with rasterio.Env(**GDAL), rasterio.open(server.vsicurl("B04.tif")) as dataset:
        window = dataset.read(1, window=Window(0, 0, 64, 64))
    np.testing.assert_array_equal(window, array[:64, :64])
    statuses = [r.status for r in server.requests.for_path("B04.tif")]
    assert statuses[0] == 503
    assert set(statuses[1:]) <= {200, 206}
    assert server.faults.pending("B04.tif") == 0


def test_permanent_failure_reaches_gdal(http_server, cog):
    root, _ = cog
    server = http_server(root)
    server.faults.fail_always("B04.tif", status=404)
    with (
        rasterio.Env(**GDAL),
        pytest.raises(rasterio.errors.RasterioIOError),
        rasterio.open(server.vsicurl("B04.tif")),
    ):
        pass
    assert {r.status for r in server.requests.all()} == {404}
    server.faults.clear("B04.tif")
    status, _, _ = _get(server.url_for("B04.tif"), {"Range": "bytes=0-9"})
    assert status == 206


def test_range_forms_and_head(http_server, tmp_path):
    (tmp_path / "data.bin").write_bytes(bytes(range(100)))
    server = http_server(tmp_path)
    url = server.url_for("data.bin") + "?ignored=1"

    status, headers, body = _get(url, {"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (
        206,
        bytes(range(10, 20)),
        "bytes 10-19/100",
    )
    status, headers, body = _get(url, {"Range": "bytes=95-"})
    assert (status, body, headers["Content-Range"]) == (
        206,
        bytes(range(95, 100)),
        "bytes 95-99/100",
    )
    status, headers, body = _get(url, {"Range": "bytes=-3"})
    assert (status, body, headers["Content-Length"]) == (206, bytes([97, 98, 99]), "3")
    status, headers, body = _get(url, {"Range": "bytes=90-200"})
    assert (status, headers["Content-Range"], len(body)) == (206, "bytes 90-99/100", 10)
    status, headers, _ = _get(url, {"Range": "bytes=100-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */100")
    status, headers, body = _get(url, {"Range": "bytes=0-1,5-6"})  # several: the whole file
    assert (status, len(body), headers["Accept-Ranges"]) == (200, 100, "bytes")
    status, _, _ = _get(server.url_for("missing.bin"))
    assert status == 404
    status, _, _ = _get(f"{server.url}/../etc/passwd")
    assert status == 404
    status, _, _ = _get(f"{server.url}/data%00.bin")
    assert status == 404

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("HEAD", "/data.bin")
    response = connection.getresponse()
    assert (response.status, response.getheader("Content-Length"), response.read()) == (
        200,
        "100",
        b"",
    )
    connection.close()

    methods = [(r.method, r.range, r.status) for r in server.requests.for_path("data.bin")]
    assert methods[0] == ("GET", "bytes=10-19", 206)
    assert methods[-1] == ("HEAD", None, 200)
    assert server.requests.for_path("data.bin")[0].query == "ignored=1"


def test_token_check(http_server, tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x" * 10)
    server = http_server(tmp_path, token_check=lambda token: token == "good")
    assert _get(server.url_for("a.tif"))[0] == 403
    assert _get(server.url_for("a.tif", token="bad"))[0] == 403
    status, _, body = _get(server.url_for("a.tif", token="good"))
    assert (status, body) == (200, b"x" * 10)
    # injected faults apply before the token check, like an unavailable front end
    server.faults.fail_next("a.tif", count=2, status=429, retry_after="2")
    status, headers, _ = _get(server.url_for("a.tif", token="good"))
    assert (status, headers["Retry-After"]) == (429, "2")
    assert server.faults.pending("a.tif") == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=5-", (5, 9)),
        ("bytes=-20", (0, 9)),
        ("bytes = 2 - 3", (2, 3)),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize(
    "header", ["items=0-1", "bytes=0-1,3-4", "bytes=x-1", "bytes=5-2", "bytes"]
)
def test_parse_range_malformed(header):
    with pytest.raises(ValueError):
        parse_range(header, 10)


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=-0", "bytes=12-20"])
def test_parse_range_unsatisfiable(header):
    with pytest.raises(IndexError):
        parse_range(header, 10)
