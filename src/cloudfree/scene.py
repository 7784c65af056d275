"""The normalised scene every source produces, so nothing downstream knows where pixels live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from odc.geo.geom import Geometry


@dataclass(frozen=True)
class BandAsset:
    """Where one band of a scene lives and how its DNs become reflectance."""

    href: str
    """Absolute URL or path GDAL can open (never a signed URL in outputs)."""
    scale: float
    """Reflectance = DN * scale + offset."""
    offset: float
    """Additive offset (``-0.1`` for processing baseline 04.00 and later, else 0)."""
    nodata: float | None
    """DN meaning "no data" (0 for Sentinel-2 L2A)."""
    resolution: float | None
    """Native ground sampling distance in metres, where the source says so."""
    store: str | None = None
    """Object store (:data:`cloudfree.sources.providers.STORES`) serving ``s3://`` hrefs."""
    signer: str | None = None
    """Signer the href needs before it is read (resolved at read time, never stored signed)."""


@dataclass(frozen=True)
class Scene:
    """One Sentinel-2 acquisition on one tile, normalised across sources and providers."""

    id: str
    datetime: datetime
    """Acquisition time, timezone-aware UTC."""
    footprint: Geometry
    """Valid-data footprint in EPSG:4326."""
    bands: Mapping[str, BandAsset]
    """Canonical band id (``"B04"``, ``"SCL"``) to asset."""
    crs: str | None
    """Native CRS, e.g. ``"EPSG:32629"``, where the source says so."""
    tile: str | None
    """MGRS tile id, e.g. ``"29UPV"``."""
    cloud_cover: float | None
    """Scene cloud cover in percent."""
    processing_baseline: str | None
    """ESA processing baseline, e.g. ``"04.00"``."""
    provider: str
    """Which provider convention the scene was read with."""
    collection: str | None = None

    def summary(self) -> dict[str, object]:
        """A JSON-ready description (what ``cloudfree search --format json`` prints)."""
        return {
            "id": self.id,
            "datetime": self.datetime.isoformat().replace("+00:00", "Z"),
            "solar_day": self.solar_day.isoformat(),
            "crs": self.crs,
            "tile": self.tile,
            "cloud_cover": self.cloud_cover,
            "processing_baseline": self.processing_baseline,
            "provider": self.provider,
            "collection": self.collection,
            "bands": {
                band: {"href": a.href, "scale": a.scale, "offset": a.offset, "nodata": a.nodata}
                for band, a in sorted(self.bands.items())
            },
        }

    @property
    def solar_day(self) -> date:
        """The local solar day of the acquisition (UTC time shifted by longitude / 15 h).

        Scenes of one overpass share it even when UTC midnight falls between them.
        """
        lon = self.footprint.centroid.coords[0][0]
        local = self.datetime.astimezone(UTC) + timedelta(hours=lon / 15.0)
        return local.date()
