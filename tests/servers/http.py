"""The ``http_server`` fixture: serve a directory on 127.0.0.1 with byte ranges and faults.

Usage::

    def test_read(http_server, tmp_path):
        server = http_server(tmp_path)  # a cloudfree.testing.http_server.ServedDirectory
        server.faults.fail_next("a.tif", count=1, status=503, retry_after=1)
        with rasterio.open(server.vsicurl("a.tif")) as dataset:
            ...
        assert server.requests.for_path("a.tif")

Every server the factory starts is stopped when the test ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from cloudfree.testing.http_server import ServedDirectory, TokenCheck, serve_directory

HttpServerFactory = Callable[..., ServedDirectory]


@pytest.fixture
def http_server() -> Iterator[HttpServerFactory]:
    """Start range-capable HTTP servers: ``http_server(root, *, token_check, token_param)``."""
    with ExitStack() as stack:

        def serve(
            root: str | os.PathLike[str],
            *,
            token_check: TokenCheck | None = None,
            token_param: str = "token",
        ) -> ServedDirectory:
            return stack.enter_context(
                serve_directory(root, token_check=token_check, token_param=token_param)
            )

        yield serve
