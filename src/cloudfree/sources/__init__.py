"""Sources of scenes: STAC APIs and catalogs, the AWS tile-path layout, SAFE products.

Every source yields the same normalised :class:`~cloudfree.scene.Scene`.
"""

from __future__ import annotations

from collections.abc import Iterable

from cloudfree.errors import InvalidInputError
from cloudfree.sources.base import SearchQuery, Source
from cloudfree.sources.stac import StacSource, open_source

__all__ = ["SearchQuery", "Source", "StacSource", "open_source", "select_source"]


def select_source(
    *,
    stac: str | None = None,
    provider: str | None = None,
    archive: str | None = None,
    tiles: Iterable[str] = (),
) -> Source:
    """The one source named by the options (``--stac``/``--provider`` or ``--archive``)."""
    tiles = tuple(tiles)
    if archive is not None:
        if stac is not None or provider is not None:
            raise InvalidInputError(
                "Give --archive or a STAC catalog (--stac/--provider), not both."
            )
        from cloudfree.sources.archive import open_archive

        return open_archive(archive, tiles=tiles)
    if tiles:
        raise InvalidInputError("--tile only applies to --archive; STAC searches use the area.")
    if stac is None and provider is None:
        raise InvalidInputError(
            "Name the scenes' source: --stac URL, --provider NAME or --archive URL."
        )
    return open_source(stac, provider=provider)
