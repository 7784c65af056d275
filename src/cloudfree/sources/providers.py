"""The provider registry: every catalog, endpoint and convention cloudfree knows, in one place.

No URL of a provider appears anywhere else in the code. A provider says where its STAC API is,
which collection to search by default, how its items state radiometry
(:class:`~cloudfree.radiometry.Convention`, per collection where it differs), which object store
serves its ``s3://`` hrefs and which signer its ``https://`` hrefs need. Items read from files
or unknown URLs are matched to a provider by their properties and hrefs
(:func:`detect_provider`).

Environment overrides: ``CDSE_S3_ENDPOINT_URL``, ``CDSE_S3_ACCESS_KEY``, ``CDSE_S3_SECRET_KEY``,
``CDSE_S3_PROFILE`` for Copernicus Data Space; ``PC_SDK_SUBSCRIPTION_KEY`` and
``CLOUDFREE_PC_TOKEN_URL`` for Planetary Computer signing; the standard ``AWS_*`` variables for
AWS.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import pystac

from cloudfree.access import AWS_ENVIRONMENT, ObjectStore, Signer, StoreEnvironment
from cloudfree.errors import InvalidInputError
from cloudfree.radiometry import Convention

#: Object stores by name (``BandAsset.store``).
STORES: Mapping[str, ObjectStore] = {
    "aws": ObjectStore("aws", AWS_ENVIRONMENT),
    "cdse": ObjectStore(
        "cdse",
        StoreEnvironment(
            endpoint="CDSE_S3_ENDPOINT_URL",
            access_key="CDSE_S3_ACCESS_KEY",
            secret_key="CDSE_S3_SECRET_KEY",
            session_token=None,
            profile="CDSE_S3_PROFILE",
            region="CDSE_S3_REGION",
        ),
        endpoint_url="https://eodata.dataspace.copernicus.eu",
        region="default",
    ),
}

PLANETARY_COMPUTER_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"


@dataclass(frozen=True)
class Provider:
    """A Sentinel-2 L2A catalog and how to read what it points at."""

    name: str
    description: str
    stac_url: str | None
    collections: tuple[str, ...]
    """Collections searched when the user names none."""
    convention: Convention
    collection_conventions: Mapping[str, Convention] = field(default_factory=dict)
    """Collections whose convention differs from ``convention``."""
    store: str = "aws"
    """Object store of the provider's ``s3://`` hrefs."""
    signer: str | None = None
    """Signer its ``https://`` asset hrefs need, if any."""
    property_prefixes: tuple[str, ...] = ()
    """Item property prefixes only this provider writes (for detection)."""
    href_markers: tuple[str, ...] = ()
    """Substrings of asset hrefs only this provider uses (for detection)."""
    media_markers: tuple[str, ...] = ()
    """Substrings of asset media types only this provider uses (for detection)."""

    def convention_for(self, collection: str | None) -> Convention:
        """The radiometry convention of items in ``collection``."""
        return self.collection_conventions.get(collection or "", self.convention)


PROVIDERS: Mapping[str, Provider] = {
    provider.name: provider
    for provider in (
        Provider(
            name="earth-search",
            description="Element 84 Earth Search v1 (COGs on AWS)",
            stac_url="https://earth-search.aws.element84.com/v1",
            collections=("sentinel-2-c1-l2a",),
            convention=Convention.DECLARED,
            collection_conventions={"sentinel-2-l2a": Convention.HARMONISED_WHEN_FLAGGED},
            property_prefixes=("earthsearch:",),
            href_markers=("e84-earth-search-sentinel-data",),
        ),
        Provider(
            name="earth-search-v0",
            description="Element 84 Earth Search v0, legacy sentinel-s2-l2a-cogs",
            stac_url="https://earth-search.aws.element84.com/v0",
            collections=("sentinel-s2-l2a-cogs",),
            convention=Convention.HARMONISED_WHEN_FLAGGED,
            property_prefixes=("sentinel:",),
        ),
        Provider(
            name="planetary-computer",
            description="Microsoft Planetary Computer (COGs on Azure, signed URLs)",
            stac_url="https://planetarycomputer.microsoft.com/api/stac/v1",
            collections=("sentinel-2-l2a",),
            convention=Convention.BASELINE,
            signer="planetary-computer",
            href_markers=(".blob.core.windows.net/",),
        ),
        Provider(
            name="cdse",
            description="Copernicus Data Space Ecosystem (JP2 on its S3 endpoint)",
            stac_url="https://stac.dataspace.copernicus.eu/v1",
            collections=("sentinel-2-l2a",),
            convention=Convention.DECLARED,
            store="cdse",
            href_markers=("s3://eodata/", "eodata.dataspace.copernicus.eu"),
        ),
        Provider(
            name="eopf",
            description="ESA EOPF Sentinel Zarr Samples (Zarr products)",
            stac_url="https://stac.core.eopf.eodc.eu",
            collections=("sentinel-2-l2a",),
            convention=Convention.DECLARED,
            media_markers=("zarr",),
        ),
    )
}

#: Catalogs with no provider-specific behaviour (static catalogs, the user's own API).
GENERIC = Provider(
    name="stac",
    description="STAC catalog",
    stac_url=None,
    collections=(),
    convention=Convention.DECLARED,
)


def get_provider(name: str) -> Provider:
    """The registered provider called ``name``."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise InvalidInputError(
            f"Unknown provider {name!r}; use one of {', '.join(PROVIDERS)} or --stac URL."
        ) from None


def provider_for_url(url: str) -> Provider | None:
    """The registered provider whose STAC API is at ``url``, if any."""
    wanted = url.rstrip("/")
    for provider in PROVIDERS.values():
        if provider.stac_url and provider.stac_url.rstrip("/") == wanted:
            return provider
    return None


def detect_provider(item: pystac.Item) -> Provider:
    """The provider whose conventions ``item`` follows (``GENERIC`` when none matches)."""
    keys = tuple(item.properties)
    data = [a for a in item.assets.values() if "data" in (a.roles or ["data"])]
    hrefs = tuple(asset.href for asset in data)
    media = tuple((asset.media_type or "").lower() for asset in data)
    for provider in PROVIDERS.values():
        if any(k.startswith(provider.property_prefixes) for k in keys):
            return provider
        if any(marker in href for href in hrefs for marker in provider.href_markers):
            return provider
        if any(marker in m for m in media for marker in provider.media_markers):
            return provider
    return GENERIC


@functools.cache
def signer(name: str) -> Signer:
    """The process-wide signer called ``name`` (tokens are cached in it)."""
    if name != "planetary-computer":
        raise InvalidInputError(f"Unknown signer {name!r}.")
    key = os.environ.get("PC_SDK_SUBSCRIPTION_KEY")
    return Signer(
        os.environ.get("CLOUDFREE_PC_TOKEN_URL") or PLANETARY_COMPUTER_TOKEN_URL,
        headers={"Ocp-Apim-Subscription-Key": key} if key else None,
    )


def store(name: str) -> ObjectStore:
    """The object store called ``name``."""
    try:
        return STORES[name]
    except KeyError:
        raise InvalidInputError(
            f"Unknown object store {name!r}; use {', '.join(STORES)}."
        ) from None
