"""Sources of scenes: STAC APIs, static catalogs and ItemCollection files."""

from cloudfree.sources.base import SearchQuery, Source
from cloudfree.sources.stac import StacSource, open_source

__all__ = ["SearchQuery", "Source", "StacSource", "open_source"]
