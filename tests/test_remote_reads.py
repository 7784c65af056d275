"""Reading over HTTP: retries with Retry-After, permanent failures reported, URL signing renewed.

Real servers on loopback (``cloudfree.testing.http_server``): COGs with range requests, faults
injected per path, and a token service plus token-checking asset server for signing.
"""

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr

import cloudfree
from cloudfree.errors import RunFailedError
from cloudfree.sources import providers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pystac")


def _served_items(archive, base_url, path):
    """The archive's items as an ItemCollection whose assets are on ``base_url``."""
    features = []
    for item in pystac.read_file(str(archive.catalog)).get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        for asset in item.assets.values():
            asset.href = f"{base_url}/{Path(asset.href).relative_to(archive.root).as_posix()}"
        features.append(item.to_dict(include_self_link=False, transform_hrefs=False))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _mosaic(archive, tmp_path, name, bands=("B04",), **source):
    out = tmp_path / f"{name}.zarr"
    cloudfree.mosaic(
        **source,
        out=str(out),
        bbox=archive.overlap_bbox(),
        start_date="2021-11-01",
        end_date="2021-11-20",
        bands=list(bands),
        quicklook=False,
    )
    return out


@pytest.fixture
def reference(archive, tmp_path):
    local = _mosaic(archive, tmp_path, "local", bands=("B04", "B08"), stac=str(archive.catalog))
    return xr.open_zarr(local)


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("CLOUDFREE_GDAL_GDAL_HTTP_MAX_RETRY", "0")  # our own retry loop decides


def test_transient_503_and_429_are_retried(archive, http_server, tmp_path, reference, fast_retries):
    server = http_server(archive.root)
    items = _served_items(archive, server.url, tmp_path / "items.json")
    b04 = next(r for r in archive.scenes if r.tile_id == "29UPV").band_path("B04")
    path = Path(b04).relative_to(archive.root).as_posix()
    server.faults.fail_next(path, count=1, status=503, retry_after=1)
    server.faults.fail_next(path, count=1, status=429, retry_after=0)
    result = xr.open_zarr(_mosaic(archive, tmp_path, "http", stac=str(items)))["B04"]
    np.testing.assert_array_equal(result.values, reference["B04"].values)
    statuses = [r.status for r in server.requests.for_path(path)]
    assert statuses[:2] == [503, 429]
    assert {200, 206} & set(statuses[2:])


def test_a_permanent_failure_names_the_scene_and_url_never_nodata(
    archive, http_server, tmp_path, fast_retries, caplog
):
    server = http_server(archive.root)
    items = _served_items(archive, server.url, tmp_path / "items.json")
    scene = next(r for r in archive.scenes if r.tile_id == "29UPV")
    path = Path(scene.band_path("B04")).relative_to(archive.root).as_posix()
    server.faults.fail_always(path, status=500)
    with pytest.raises(RunFailedError) as failure:
        _mosaic(archive, tmp_path, "broken", stac=str(items))
    message = str(failure.value)
    assert scene.id in message and f"{server.url}/{path}" in message
    assert not (tmp_path / "broken.stac").exists()  # no catalog claiming a finished mosaic


def test_signed_urls_are_renewed_and_never_written(
    archive, http_server, tmp_path, reference, monkeypatch, caplog
):
    """Planetary-Computer-style signing: tokens from a token service, renewed when refused."""
    tokens = tmp_path / "tokens"
    valid = {"current": "tok-1"}

    def issue(token, expires_in):
        expiry = (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat()
        target = tokens / "127" / "sentinel-2-l2a"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"token": f"sig={token}", "msft:expiry": expiry}))
        valid["current"] = token

    issue("tok-1", 3600)
    token_service = http_server(tokens)
    assets = http_server(
        archive.root, token_check=lambda t: t == valid["current"], token_param="sig"
    )
    items = _served_items(archive, assets.url, tmp_path / "items.json")
    monkeypatch.setenv("CLOUDFREE_PC_TOKEN_URL", token_service.url)
    providers.signer.cache_clear()
    try:
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="cloudfree")  # a CLI run with -q earlier raised it
        first = _mosaic(archive, tmp_path, "signed", stac=str(items), provider="planetary-computer")
        np.testing.assert_array_equal(xr.open_zarr(first)["B04"].values, reference["B04"].values)
        fetched = len(token_service.requests.all())
        assert fetched == 1  # one token per container, cached
        issue("tok-2", 3600)  # the service rotates: tok-1 is refused from now on
        second = _mosaic(
            archive,
            tmp_path,
            "resigned",
            bands=("B08",),  # not yet in GDAL's cache: read with the cached, now refused, token
            stac=str(items),
            provider="planetary-computer",
        )
        np.testing.assert_array_equal(xr.open_zarr(second)["B08"].values, reference["B08"].values)
        assert len(token_service.requests.all()) == fetched + 1
        assert any(r.status == 403 for r in assets.requests.all())
    finally:
        providers.signer.cache_clear()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", "")]
    for path in written:
        if "tokens" in path.parts or path.name == "items.json":
            continue
        text = path.read_bytes()
        assert b"tok-1" not in text and b"tok-2" not in text and b"sig=" not in text, path
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("cloudfree")]
    assert ours and not any("tok-" in message for message in ours)
