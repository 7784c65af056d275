from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real Sentinel-2 material, or a skip saying where it was looked for."""
    if not (REALDATA / "MANIFEST.md").exists():
        pytest.skip(
            f"real third-party data not found at {REALDATA} (it sits beside the checkout in CI)"
        )
    return REALDATA


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    """A small synthetic archive (two 256 x 256 px tiles in two UTM zones, 12 dates)."""
    from cloudfree.testing import make_archive

    return make_archive(tmp_path_factory.mktemp("archive"), seed=7, tile_size=256)


# Real servers on 127.0.0.1 (tests/servers/): http_server, s3_server, stac_api, dask_cluster.
pytest_plugins = [
    "tests.servers.http",
    "tests.servers.s3",
    "tests.servers.stac_api",
    "tests.servers.dask",
]
