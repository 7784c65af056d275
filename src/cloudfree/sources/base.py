"""The source seam: anything that turns a query into normalised :class:`~cloudfree.scene.Scene`s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cloudfree.aoi import Aoi
from cloudfree.scene import Scene
from cloudfree.timeframe import TimeRange


@dataclass(frozen=True)
class SearchQuery:
    """What to search for; every source honours every field."""

    aoi: Aoi
    timerange: TimeRange
    collections: tuple[str, ...] = ()
    """Collection ids; empty means every collection the source holds."""
    max_cloud_cover: float | None = None
    """Scene-level ``eo:cloud_cover`` upper bound in percent."""
    max_items: int | None = None
    """Stop after this many scenes (the earliest ones, in time order)."""

    def describe(self) -> str:
        """One line saying what was searched, for messages."""
        parts = [
            self.aoi.description,
            f"from {self.timerange.start} to {self.timerange.end}",
        ]
        if self.collections:
            parts.append("collections " + ", ".join(self.collections))
        if self.max_cloud_cover is not None:
            parts.append(f"cloud cover <= {self.max_cloud_cover}%")
        if self.max_items is not None:
            parts.append(f"at most {self.max_items} items")
        return ", ".join(parts)


class Source(Protocol):
    """A catalog or archive of Sentinel-2 scenes."""

    description: str

    def search(self, query: SearchQuery) -> list[Scene]:
        """Scenes matching ``query``, in time order; an empty list when nothing matches."""
        ...


@dataclass(frozen=True)
class SearchedElsewhere:
    """A request's source where the search already ran: what a Dask worker's request holds.

    A source may hold a token (in a STAC API's URL or headers); the work units bring their
    scenes, so the source never travels with the tasks.
    """

    description: str = "the catalog searched by the client"

    def search(self, query: SearchQuery) -> list[Scene]:
        """Refused: a worker does not search."""
        raise RuntimeError("a work unit's request cannot search: its scenes come with the unit")
