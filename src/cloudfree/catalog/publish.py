"""Publish a STAC collection and its items to a STAC API with the transactions extension.

The chain (each stage can be used alone):

``read_catalog(source)`` -> :class:`LocalCatalog`
    the collection JSON (or one item plus the id of a collection already in the API) and its
    items, as plain dicts with the URL each was read from.
``prepare(catalog, hrefs=..., viewer=...)`` -> :class:`PreparedCatalog`
    what is sent: links the API manages dropped, every href absolute and reachable (local files
    mapped onto ``--href-base``), no href with a credential or signature, tile-viewer links added,
    every object validated offline. A bad catalog fails here, before any request.
``publish(prepared, client)`` -> :class:`PublishReport`
    an upsert: the API's copy of each object is read first, and an object is created (POST),
    replaced (PUT) or left alone when it is already identical, so a rerun changes nothing.

The collection goes first, then the items in catalog order. When an item fails, publishing
stops: the error lists the items published and those not, and the API keeps what was published
(rerunning the same command completes it, since published items compare as unchanged). With
``rollback=True`` the objects this run created are deleted and those it replaced are restored
to the API's previous copy instead.

The API token is held by :class:`ApiAuth`, sent as one header, and never logged or put into a
message: any text from the API is scrubbed of it before it is shown.
"""

from __future__ import annotations

import email.utils
import json
import logging
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import fsspec
import requests

from cloudfree.access import href_secret, redact_href, redact_message
from cloudfree.catalog.validation import StacValidationError, validate_stac
from cloudfree.config import PublishSettings
from cloudfree.errors import InvalidInputError, PublishError
from cloudfree.store import location

__all__ = [
    "ApiAuth",
    "HrefPolicy",
    "InvalidCatalogError",
    "LocalCatalog",
    "Outcome",
    "PreparedCatalog",
    "PublishReport",
    "StacApiClient",
    "ViewerLinks",
    "prepare",
    "publish",
    "publish_catalog",
    "read_catalog",
]

log = logging.getLogger(__name__)

#: Link relations a STAC API writes itself (structure and navigation): never sent, and ignored
#: when comparing the API's copy with ours.
API_LINK_RELS = frozenset(
    {
        "self",
        "root",
        "parent",
        "collection",
        "items",
        "item",
        "child",
        "next",
        "prev",
        "http://www.opengis.net/def/rel/ogc/1.0/queryables",
    }
)
#: Conformance classes of the transactions extension, for items and for collections.
ITEM_TRANSACTIONS = "/ogcapi-features/extensions/transaction"
COLLECTION_TRANSACTIONS = "/collections/extensions/transaction"
_OGC_ITEM_TRANSACTIONS = (
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete"
)
#: Answers after which a request may be repeated (when repeating it is safe).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
_MAX_MESSAGE = 400


# --- reading a local catalog ----------------------------------------------------------------


@dataclass(frozen=True)
class StacDocument:
    """One STAC JSON object and the URL (or absolute path) it was read from."""

    url: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LocalCatalog:
    """What ``publish`` reads: a collection and its items, or items for an existing collection."""

    source: str
    collection_id: str
    collection: StacDocument | None
    """``None`` when items go into a collection that must already be in the API."""
    items: tuple[StacDocument, ...]
    root: str
    """The folder (or URL prefix) holding the catalog folder: the default ``--local-root``."""


def _is_local(url: str) -> bool:
    return not location.is_remote(url)


def _read_json(url: str, what: str) -> dict[str, Any]:
    try:
        if _is_local(url):
            text = location.local_path(url).read_text(encoding="utf-8")
        else:
            with fsspec.open(url, "rt", encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot read {what} {redact_href(url)}: {redact_message(str(exc))}"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} {redact_href(url)} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} {redact_href(url)} is not a JSON object")
    return data


def _parent(url: str) -> str:
    """The folder holding ``url`` (a local absolute path or a URL)."""
    if _is_local(url):
        return str(Path(url).parent)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, posixpath.dirname(parts.path), "", ""))


def resolve_href(href: str, base: str) -> str:
    """Resolve ``href`` against the document URL ``base``: an absolute local path or a URL."""
    parts = urlsplit(href)
    if len(parts.scheme) > 1 and parts.scheme != "file":
        return href
    if parts.scheme == "file":
        return str(Path(parts.path).resolve())
    if href.startswith("/"):
        return str(Path(href).resolve()) if _is_local(base) else _url_join(base, href)
    if _is_local(base):
        return str((Path(base).parent / href).resolve())
    return _url_join(base, href)


def _url_join(base: str, href: str) -> str:
    """Join a relative href onto a URL of any scheme (``urljoin`` ignores ``s3://``)."""
    parts = urlsplit(base)
    relative = urlsplit(href)
    path = relative.path
    if not path.startswith("/"):
        path = posixpath.dirname(parts.path) + "/" + path
    normal = posixpath.normpath(path) + ("/" if relative.path.endswith("/") else "")
    return urlunsplit((parts.scheme, parts.netloc, normal, relative.query, ""))


def read_catalog(source: str, *, collection_id: str | None = None) -> LocalCatalog:
    """Read a collection (``collection.json`` or a folder holding one) with its items, or one item.

    Parameters
    ----------
    source
        A local path or fsspec URL of a ``collection.json``, of a folder holding one, or of one
        item JSON (then ``collection_id`` names the collection in the API it goes into).
    collection_id
        For a single item: the collection it is published into (default: the item's own
        ``collection``). For a collection: must equal its id when given.

    Raises
    ------
    InvalidInputError
        When the source cannot be read, is not a Collection or an Item, or names no collection.

    """
    url = location.absolute(source)
    if _is_local(url) and Path(url).is_dir():
        url = str(Path(url) / "collection.json")
        if not Path(url).is_file():
            raise InvalidInputError(
                f"{source} holds no collection.json; give the collection.json of the catalog "
                "(cloudfree mosaic writes it to <store>.stac/) or an item JSON with --collection"
            )
    elif not _is_local(url) and not url.endswith(".json"):
        url = url.rstrip("/") + "/collection.json"
    data = _read_json(url, "STAC catalog")
    kind = data.get("type")
    if kind == "Collection":
        cid = str(data.get("id", ""))
        if collection_id is not None and collection_id != cid:
            raise InvalidInputError(
                f"{source} is collection {cid!r}, but --collection says {collection_id!r}; "
                "drop --collection (it is for publishing a single item)"
            )
        items = []
        for link in data.get("links", []):
            if isinstance(link, dict) and link.get("rel") == "item" and link.get("href"):
                item_url = resolve_href(str(link["href"]), url)
                items.append(StacDocument(item_url, _read_json(item_url, "STAC item")))
        return LocalCatalog(
            source=url,
            collection_id=cid,
            collection=StacDocument(url, data),
            items=tuple(items),
            root=_parent(_parent(url)),
        )
    if kind == "Feature":
        target = collection_id or data.get("collection")
        if not target:
            raise InvalidInputError(
                f"item {data.get('id')!r} in {source} names no collection; pass --collection ID "
                "(a collection that is already in the API)"
            )
        folder = _parent(url)
        # layout <catalog>/<item id>/<item id>.json: the catalog folder is one level up
        catalog_folder = _parent(folder) if posixpath.basename(folder) == data.get("id") else folder
        return LocalCatalog(
            source=url,
            collection_id=str(target),
            collection=None,
            items=(StacDocument(url, data),),
            root=_parent(catalog_folder),
        )
    raise InvalidInputError(
        f"{source} is a STAC {kind or 'document without a type'}; publish takes a Collection "
        "(collection.json) or an Item with --collection"
    )


# --- preparing what is sent -----------------------------------------------------------------


@dataclass(frozen=True)
class HrefPolicy:
    """How local hrefs become hrefs the API's users can reach."""

    base_url: str | None = None
    """Public URL at which ``local_root`` is served (an object store or HTTP root)."""
    local_root: str | None = None
    """The local folder (or URL prefix) that ``base_url`` serves; default: the folder holding
    the catalog folder, where ``cloudfree mosaic`` puts the store beside ``<store>.stac``."""
    allow_local: bool = False
    """Publish local files as ``file://`` URLs (a single-machine setup) instead of refusing."""


@dataclass(frozen=True)
class ViewerLinks:
    """Tile-viewer links for each item, for titiler-style item endpoints.

    ``template`` is the item's endpoint with ``{collection}`` and ``{item}`` placeholders, e.g.
    ``https://raster.example.com/collections/{collection}/items/{item}`` (titiler-pgstac,
    titiler-eopf). Items get ``viewer`` (``<endpoint>/viewer``), ``xyz``
    (``<endpoint>/tiles/WebMercatorQuad/{z}/{x}/{y}.png``) and ``tilejson``
    (``<endpoint>/WebMercatorQuad/tilejson.json``) links, as the EOPF Explorer's items do.
    """

    template: str
    query: str | None = None
    """Rendering parameters for the xyz and tilejson links (placeholders allowed). Default: for
    items with a ``cog`` asset holding red, green and blue, titiler-pgstac's true colour
    (``assets=cog&asset_bidx=cog|R,G,B&rescale=0,3000``); otherwise none."""

    def links(self, collection_id: str, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The three links of one item."""
        item_id = str(item["id"])

        def fill(text: str) -> str:
            return text.replace("{collection}", quote(collection_id, safe="")).replace(
                "{item}", quote(item_id, safe="")
            )

        endpoint = fill(self.template).rstrip("/")
        query = fill(self.query) if self.query is not None else _true_colour_query(item)
        suffix = f"?{query}" if query else ""
        return [
            {
                "rel": "viewer",
                "href": f"{endpoint}/viewer",
                "type": "text/html",
                "title": f"Viewer for {item_id}",
            },
            {
                "rel": "xyz",
                "href": f"{endpoint}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png{suffix}",
                "type": "image/png",
                "title": f"Tiles of {item_id}",
            },
            {
                "rel": "tilejson",
                "href": f"{endpoint}/WebMercatorQuad/tilejson.json{suffix}",
                "type": "application/json",
                "title": f"TileJSON for {item_id}",
            },
        ]


_VIEWER_RELS = frozenset({"viewer", "xyz", "tilejson"})


def _true_colour_query(item: Mapping[str, Any]) -> str | None:
    cog = item.get("assets", {}).get("cog")
    if not isinstance(cog, dict):
        return None
    names = [str(b.get("eo:common_name", b.get("name"))) for b in cog.get("bands", [])]
    if not {"red", "green", "blue"} <= set(names):
        return None
    bidx = ",".join(str(names.index(name) + 1) for name in ("red", "green", "blue"))
    return f"assets=cog&asset_bidx=cog%7C{bidx}&rescale=0%2C3000"


@dataclass(frozen=True)
class PreparedCatalog:
    """The exact JSON objects to send, validated."""

    collection_id: str
    collection: dict[str, Any] | None
    items: tuple[dict[str, Any], ...]
    source: str


class _Hrefs:
    """Turns one document's hrefs into published ones, or says clearly why it cannot."""

    def __init__(self, policy: HrefPolicy, default_root: str) -> None:
        self.policy = policy
        root = policy.local_root or default_root
        self.root = location.absolute(root).rstrip("/")
        self.base = policy.base_url.rstrip("/") if policy.base_url else None
        if self.base is not None:
            if _is_local(self.base):
                raise InvalidInputError(
                    f"--href-base {self.base!r} is not a URL; give the public http(s):// or "
                    "object-store URL at which the outputs are served"
                )
            secret = href_secret(self.base)
            if secret:
                raise InvalidInputError(
                    f"--href-base {redact_href(self.base)} carries a credential ({secret}); "
                    "published hrefs must not. Give the unsigned URL: readers sign at read time"
                )

    def publish(self, href: str, document: StacDocument, where: str) -> str:
        resolved = resolve_href(href, document.url)
        if self.base is not None:
            relative = self._under_root(resolved)
            if relative is not None:
                resolved = self.base + "/" + quote(relative)
        if _is_local(resolved):
            if not self.policy.allow_local:
                hint = (
                    f"it is outside --local-root {self.root}; set --local-root to a folder "
                    "that holds it"
                    if self.base is not None
                    else "upload the outputs and pass --href-base URL (the public URL of "
                    f"{self.root}), or --allow-local-hrefs for a single-machine setup"
                )
                raise InvalidInputError(
                    f"{where} is a local file ({resolved}) that the API's users cannot reach: "
                    f"{hint}"
                )
            resolved = Path(resolved).as_uri()
        secret = href_secret(resolved)
        if secret:
            raise InvalidInputError(
                f"{where} has an href with a credential or signature ({secret}): "
                f"{redact_href(resolved)}. Publish the unsigned URL; readers sign at read time"
            )
        return resolved

    def _under_root(self, resolved: str) -> str | None:
        if _is_local(resolved) != _is_local(self.root):
            return None
        if _is_local(resolved):
            try:
                return Path(resolved).relative_to(self.root).as_posix()
            except ValueError:
                return None
        prefix = self.root + "/"
        return resolved[len(prefix) :] if resolved.startswith(prefix) else None


def _object_payload(
    document: StacDocument, hrefs: _Hrefs, label: str, extra_links: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A document with the API's links dropped and every other href made public."""
    data = json.loads(json.dumps(document.data))  # a deep copy
    links = []
    for link in data.get("links", []):
        if not isinstance(link, dict) or link.get("rel") in API_LINK_RELS:
            continue
        if extra_links and link.get("rel") in _VIEWER_RELS:
            continue  # replaced by this run's viewer links
        link["href"] = hrefs.publish(
            str(link.get("href", "")), document, f"{label}: link {link.get('rel')!r}"
        )
        links.append(link)
    data["links"] = [*links, *extra_links]
    for key, asset in data.get("assets", {}).items():
        if isinstance(asset, dict) and "href" in asset:
            asset["href"] = hrefs.publish(str(asset["href"]), document, f"{label}: asset {key!r}")
    return data


def prepare(
    catalog: LocalCatalog,
    *,
    hrefs: HrefPolicy | None = None,
    viewer: ViewerLinks | None = None,
) -> PreparedCatalog:
    """Build and validate every object to send; nothing is sent.

    Raises
    ------
    InvalidInputError
        An href cannot be published (local without ``--href-base``, outside the local root, or
        carrying a credential), or the viewer template carries one.
    InvalidCatalogError
        An object is not valid STAC (named, with the schema, the JSON path and the reason).

    """
    policy = _Hrefs(hrefs or HrefPolicy(), catalog.root)
    if viewer is not None:
        for text, what in ((viewer.template, "--viewer"), (viewer.query or "", "--viewer-query")):
            secret = href_secret(text if "://" in text else "http://x/?" + text)
            if secret:
                raise InvalidInputError(
                    f"{what} carries a credential ({secret}); viewer links are public"
                )
    cid = catalog.collection_id
    collection = None
    if catalog.collection is not None:
        collection = _object_payload(catalog.collection, policy, f"collection {cid!r}")
    items = []
    seen: set[str] = set()
    for document in catalog.items:
        item_id = str(document.data.get("id", ""))
        if item_id in seen:
            raise InvalidInputError(f"item id {item_id!r} appears twice in {catalog.source}")
        seen.add(item_id)
        links = viewer.links(cid, document.data) if viewer is not None else []
        item = _object_payload(document, policy, f"item {item_id!r}", links)
        item["collection"] = cid
        items.append(item)
    for obj in [*([collection] if collection is not None else []), *items]:
        _validate(obj, cid, catalog.source)
    return PreparedCatalog(cid, collection, tuple(items), catalog.source)


class InvalidCatalogError(StacValidationError, InvalidInputError):
    """An object of the catalog to publish is not valid STAC; nothing was sent."""


def _validate(obj: dict[str, Any], collection_id: str, source: str) -> None:
    """Validate one object as the API will serve it.

    STAC requires a ``collection`` link beside an item's ``collection`` field; the API writes
    that link, so a stand-in is added for validation only.
    """
    data = obj
    if obj.get("type") == "Feature":
        stand_in = {"rel": "collection", "href": f"https://stac-api.invalid/{collection_id}"}
        data = {**obj, "links": [*obj.get("links", []), stand_in]}
    try:
        validate_stac(data)
    except StacValidationError as exc:
        raise InvalidCatalogError(f"{exc} (in {source}); nothing was sent to the API") from None


# --- the API client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiAuth:
    """One request header that authenticates to the API; ``repr`` never shows the value."""

    header: str
    value: str = field(repr=False)

    @classmethod
    def from_token(cls, token: str, header: str = "Authorization") -> ApiAuth:
        """Authenticate with ``token``.

        ``Authorization: Bearer <token>`` (as is when the token names its scheme, e.g.
        ``Basic ...``), or the raw token in any other header.
        """
        if header.lower() == "authorization" and " " not in token:
            return cls(header, f"Bearer {token}")
        return cls(header, token)


class StacApiClient:
    """Requests to one STAC API, with the auth header, timeouts and safe retries.

    GET, PUT and DELETE are repeated after a connection error or a 429/502/503/504 answer,
    waiting ``Retry-After`` when the API sends it (else an exponential backoff). POST is never
    repeated here: :func:`publish` re-reads the object after an unclear POST before it repeats.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: ApiAuth | None = None,
        settings: PublishSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidInputError(f"--api {url!r} is not an http(s) URL of a STAC API")
        secret = href_secret(url)
        if secret:
            raise InvalidInputError(
                f"--api {redact_href(url)} carries a credential ({secret}); pass it with "
                "--auth-env instead, so it is never shown"
            )
        self.url = url.rstrip("/")
        self.settings = settings or PublishSettings()
        self._secret = auth.value if auth is not None else None
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if auth is not None:
            self._session.headers[auth.header] = auth.value

    def close(self) -> None:
        """Close the connection pool."""
        self._session.close()

    def scrub(self, text: str) -> str:
        """``text`` without URL query strings and without the auth value."""
        clean = redact_message(text)
        if self._secret:
            clean = clean.replace(self._secret, "[redacted]")
            token = self._secret.split(" ", 1)[-1]
            clean = clean.replace(token, "[redacted]")
        return clean

    def send(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """Send one request; repeat it when that is safe and worth it (see the class).

        Raises
        ------
        PublishError
            The API could not be reached after the retries (connection refused, timeout).

        """
        url = self.url + path
        attempts = 1 + (self.settings.retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            try:
                response = self._session.request(
                    method, url, json=body, timeout=self.settings.timeout
                )
            except requests.RequestException as exc:
                if attempt + 1 >= attempts:
                    raise PublishError(
                        f"cannot reach the STAC API at {redact_href(self.url)} ({method} {path}): "
                        f"{self.scrub(_reason(exc))}; check --api and that the server is up"
                    ) from None
                wait = self._backoff(attempt)
                log.info("%s %s failed (%s); retrying in %.1f s", method, path, _reason(exc), wait)
                self._sleep(wait)
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                wait = self._backoff(attempt, response.headers.get("Retry-After"))
                log.info(
                    "%s %s answered %d; retrying in %.1f s",
                    method,
                    path,
                    response.status_code,
                    wait,
                )
                self._sleep(wait)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        wait = self.settings.backoff * 2**attempt
        if retry_after:
            wait = _retry_after_seconds(retry_after, wait)
        return float(min(max(wait, 0.0), self.settings.max_wait))

    def get_json(self, path: str, what: str) -> dict[str, Any] | None:
        """GET a JSON object; ``None`` when the API answers 404."""
        response = self.send("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PublishError(self.failure(response, f"reading {what}"))
        try:
            data = response.json()
        except ValueError:
            raise PublishError(
                f"reading {what}: {redact_href(self.url)}{path} did not answer JSON"
            ) from None
        if not isinstance(data, dict):
            raise PublishError(f"reading {what}: the API answered {type(data).__name__}")
        return data

    def failure(self, response: requests.Response, doing: str) -> str:
        """A clear, scrubbed message for an unexpected answer."""
        hint = ""
        if response.status_code in (401, 403):
            hint = (
                "; the API refused the credentials: check --auth-header and the variable "
                "--auth-env names"
            )
        return (
            f"{doing}: the STAC API answered {response.status_code} "
            f"({response.request.method} {urlsplit(response.url).path}): "
            f"{self.scrub(_api_message(response))}{hint}"
        )


def _reason(exc: requests.RequestException) -> str:
    """A short reason for a transport error (the innermost cause, not urllib3's retry text)."""
    cause: BaseException = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    text = str(cause) or type(cause).__name__
    if "refused" in str(exc).lower() or isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return text[:_MAX_MESSAGE]


def _retry_after_seconds(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _api_message(response: requests.Response) -> str:
    """The API's own explanation (``description``, ``detail``), without echoed input."""
    try:
        data = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:_MAX_MESSAGE]
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, list):
            parts = []
            for entry in detail[:3]:
                if isinstance(entry, dict):
                    loc = ".".join(str(p) for p in entry.get("loc", ()) if p != "body")
                    parts.append(f"{loc}: {entry.get('msg', '')}")
            return "; ".join(parts)[:_MAX_MESSAGE]
        for key in ("description", "detail", "message", "code"):
            if data.get(key):
                return str(data[key])[:_MAX_MESSAGE]
    return json.dumps(data)[:_MAX_MESSAGE]


# --- publishing -------------------------------------------------------------------------------


class Outcome(StrEnum):
    """What happened to one object."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    NOT_PUBLISHED = "not published"
    ROLLED_BACK = "rolled back"


@dataclass
class PublishReport:
    """What one run did to each object, in the order they were sent."""

    api_url: str
    collection_id: str
    collection: Outcome | None = None
    """``None`` when only items were published into an existing collection."""
    items: dict[str, Outcome] = field(default_factory=dict)
    error: str | None = None
    rolled_back: bool = False

    def counts(self) -> Counter[str]:
        """Objects per outcome, the collection included."""
        outcomes = list(self.items.values())
        if self.collection is not None:
            outcomes.append(self.collection)
        return Counter(str(o) for o in outcomes)

    def ids(self, *outcomes: Outcome) -> list[str]:
        """The item ids with one of ``outcomes``."""
        return [i for i, o in self.items.items() if o in outcomes]

    def summary(self) -> str:
        """One line: counts per outcome."""
        counts = self.counts()
        order = [o for o in Outcome if counts[str(o)]]
        parts = ", ".join(f"{counts[str(o)]} {o}" for o in order)
        return f"collection {self.collection_id!r} at {redact_href(self.api_url)}: {parts}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--report``)."""
        return {
            "api": redact_href(self.api_url),
            "collection_id": self.collection_id,
            "collection": None if self.collection is None else str(self.collection),
            "items": {k: str(v) for k, v in self.items.items()},
            "counts": dict(self.counts()),
            "error": self.error,
            "rolled_back": self.rolled_back,
        }


def _normalise(value: Any) -> Any:
    """Drop ``None`` members and the API's own links, so our copy and the API's compare."""
    if isinstance(value, dict):
        out = {k: _normalise(v) for k, v in value.items() if v is not None and k != "links"}
        if "links" in value and isinstance(value["links"], list):
            out["links"] = [
                _normalise(link)
                for link in value["links"]
                if not (isinstance(link, dict) and link.get("rel") in API_LINK_RELS)
            ]
        return out
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def same_content(sent: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether the API's copy (with the links it adds) holds exactly what we would send."""
    return bool(_normalise(dict(sent)) == _normalise(dict(current)))


def _restorable(current: Mapping[str, Any]) -> dict[str, Any]:
    """The API's copy of an object without the links it adds, to PUT it back.

    pgSTAC leaves out ``"datetime": null`` when it serves an item with a range, but refuses an
    item without it, so it is put back.
    """
    data = dict(current)
    properties = data.get("properties")
    if data.get("type") == "Feature" and isinstance(properties, dict):
        data["properties"] = {"datetime": None, **properties}
    data["links"] = [
        link
        for link in current.get("links", [])
        if not (isinstance(link, dict) and link.get("rel") in API_LINK_RELS)
    ]
    return data


@dataclass
class _Action:
    """One write of this run, with what undoes it."""

    key: str
    """The item id, or ``""`` for the collection."""
    outcome: Outcome
    path: str
    previous: dict[str, Any] | None


class _Publisher:
    def __init__(self, client: StacApiClient, report: PublishReport) -> None:
        self.client = client
        self.report = report
        self.done: list[_Action] = []

    def check_conformance(self, need_collections: bool) -> None:
        data = self.client.get_json("/conformance", "the conformance classes")
        if data is None:
            raise PublishError(
                f"{redact_href(self.client.url)} has no /conformance: it is not a STAC API "
                "(give the API's root URL to --api)"
            )
        classes = [str(c) for c in data.get("conformsTo", [])]
        items_ok = any(
            c.endswith(ITEM_TRANSACTIONS) or c == _OGC_ITEM_TRANSACTIONS for c in classes
        )
        collections_ok = any(c.endswith(COLLECTION_TRANSACTIONS) for c in classes)
        missing = []
        if not items_ok:
            missing.append(f"items (…{ITEM_TRANSACTIONS})")
        if need_collections and not collections_ok:
            missing.append(f"collections (…{COLLECTION_TRANSACTIONS})")
        if missing:
            raise PublishError(
                f"the STAC API at {redact_href(self.client.url)} does not declare the "
                f"transactions extension for {' and '.join(missing)} in /conformance, so it "
                "cannot take new or changed objects; enable transactions on the server "
                "(stac-fastapi: ENABLE_TRANSACTIONS_EXTENSIONS=TRUE). Nothing was sent"
            )

    def upsert(self, key: str, body: dict[str, Any], parent: str, path: str, what: str) -> Outcome:
        """Create ``body`` at ``path`` (POST to ``parent``) or replace it (PUT) unless identical."""
        current = self.client.get_json(path, what)
        if current is not None:
            return self._replace(key, body, path, what, current)
        settings = self.client.settings
        for attempt in range(1 + settings.retries):
            try:
                response = self.client.send("POST", parent, body)
            except PublishError:
                if attempt >= settings.retries:
                    raise
                response = None
            if response is not None and response.status_code in (200, 201):
                self.done.append(_Action(key, Outcome.CREATED, path, None))
                return Outcome.CREATED
            if response is not None and response.status_code == 409:
                # created meanwhile (by another run, or by our own unclear earlier attempt)
                current = self.client.get_json(path, what)
                if current is None:
                    raise PublishError(self.client.failure(response, f"creating {what}"))
                return self._replace(key, body, path, what, current)
            if response is not None and response.status_code not in RETRY_STATUSES:
                raise PublishError(self.client.failure(response, f"creating {what}"))
            if attempt >= settings.retries:
                assert response is not None
                raise PublishError(self.client.failure(response, f"creating {what}"))
            # unclear: the POST may or may not have been applied. Look before repeating it.
            retry_after = response.headers.get("Retry-After") if response is not None else None
            self.client._sleep(self.client._backoff(attempt, retry_after))
            current = self.client.get_json(path, what)
            if current is not None:
                if same_content(body, current):
                    self.done.append(_Action(key, Outcome.CREATED, path, None))
                    return Outcome.CREATED
                return self._replace(key, body, path, what, current)
        raise AssertionError("unreachable")  # pragma: no cover

    def _replace(
        self, key: str, body: dict[str, Any], path: str, what: str, current: dict[str, Any]
    ) -> Outcome:
        if same_content(body, current):
            return Outcome.UNCHANGED
        response = self.client.send("PUT", path, body)
        if response.status_code not in (200, 201, 204):
            raise PublishError(self.client.failure(response, f"updating {what}"))
        self.done.append(_Action(key, Outcome.UPDATED, path, _restorable(current)))
        return Outcome.UPDATED

    def rollback(self) -> list[str]:
        """Undo this run's writes, newest first; returns what could not be undone."""
        problems = []
        for action in reversed(self.done):
            try:
                if action.outcome is Outcome.CREATED:
                    response = self.client.send("DELETE", action.path)
                    ok = response.status_code in (200, 204, 404)
                else:
                    response = self.client.send("PUT", action.path, action.previous)
                    ok = response.status_code in (200, 201, 204)
            except PublishError as exc:
                problems.append(f"{action.path}: {exc}")
                continue
            if not ok:
                problems.append(self.client.failure(response, f"undoing {action.path}"))
        return problems


def publish(
    prepared: PreparedCatalog,
    client: StacApiClient,
    *,
    rollback: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PublishReport:
    """Upsert the collection, then its items, one by one; see the module docstring.

    Returns
    -------
    PublishReport
        Created / updated / unchanged per object.

    Raises
    ------
    PublishError
        The API is unreachable, lacks the transactions extension, the collection is missing
        (single items), or an object was refused. Its message names the object and the API's
        reason, lists the items published and not, and says how to complete; ``report`` holds
        the same as a :class:`PublishReport`.

    """
    cid = prepared.collection_id
    report = PublishReport(api_url=client.url, collection_id=cid)
    report.items = {str(i["id"]): Outcome.NOT_PUBLISHED for i in prepared.items}
    worker = _Publisher(client, report)
    worker.check_conformance(need_collections=prepared.collection is not None)
    collection_path = f"/collections/{quote(cid, safe='')}"
    current_id = None
    try:
        if prepared.collection is not None:
            report.collection = Outcome.NOT_PUBLISHED
            report.collection = worker.upsert(
                "", prepared.collection, "/collections", collection_path, f"collection {cid!r}"
            )
            log.info("collection %s: %s", cid, report.collection)
        elif client.get_json(collection_path, f"collection {cid!r}") is None:
            raise PublishError(
                f"collection {cid!r} does not exist in the STAC API at "
                f"{redact_href(client.url)}; publish its collection.json first, or give the "
                "id of an existing collection with --collection. Nothing was sent"
            )
        for done, item in enumerate(prepared.items, start=1):
            current_id = str(item["id"])
            path = f"{collection_path}/items/{quote(current_id, safe='')}"
            report.items[current_id] = worker.upsert(
                current_id, item, f"{collection_path}/items", path, f"item {current_id!r}"
            )
            log.info("item %s: %s", current_id, report.items[current_id])
            if progress is not None:
                progress(done, len(prepared.items))
            current_id = None
    except PublishError as exc:
        if current_id is not None:
            report.items[current_id] = Outcome.FAILED
        elif report.collection is Outcome.NOT_PUBLISHED:
            report.collection = Outcome.FAILED
        raise PublishError(_failure_message(str(exc), report, worker, rollback), report) from None
    return report


def _failure_message(reason: str, report: PublishReport, worker: _Publisher, rollback: bool) -> str:
    published = report.ids(Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED)
    failed = report.ids(Outcome.FAILED)
    waiting = report.ids(Outcome.NOT_PUBLISHED)
    lines = [reason]
    if not worker.done and not published:
        lines.append("Nothing was changed in the API.")
        report.error = reason
        return "\n".join(lines)
    if rollback:
        problems = worker.rollback()
        report.rolled_back = not problems
        for action in worker.done if not problems else ():
            if action.key:
                report.items[action.key] = Outcome.ROLLED_BACK
            else:
                report.collection = Outcome.ROLLED_BACK
        if problems:
            lines.append("Rollback was incomplete: " + "; ".join(problems))
        else:
            lines.append(
                f"Rolled back: {len(worker.done)} object(s) this run created or changed were "
                "deleted or restored; the API holds what it held before."
            )
        report.error = reason
        return "\n".join(lines)
    lines.append(f"Published ({len(published)}): {', '.join(published) or 'none'}.")
    lines.append(f"Failed ({len(failed)}): {', '.join(failed) or 'none'}.")
    lines.append(f"Not published ({len(waiting)}): {', '.join(waiting) or 'none'}.")
    lines.append(
        f"Collection {report.collection_id!r} is published in part. Fix the cause and rerun "
        "the same command: objects already published compare as unchanged and are skipped. "
        "(Or rerun with --rollback to undo a run's changes when one fails.)"
    )
    report.error = reason
    return "\n".join(lines)


def publish_catalog(
    source: str,
    *,
    api_url: str,
    collection_id: str | None = None,
    hrefs: HrefPolicy | None = None,
    viewer: ViewerLinks | None = None,
    auth: ApiAuth | None = None,
    settings: PublishSettings | None = None,
    rollback: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PublishReport:
    """Read, prepare and publish a catalog: the whole ``cloudfree publish`` command."""
    catalog = read_catalog(source, collection_id=collection_id)
    prepared = prepare(catalog, hrefs=hrefs, viewer=viewer)
    client = StacApiClient(api_url, auth=auth, settings=settings)
    try:
        return publish(prepared, client, rollback=rollback, progress=progress)
    finally:
        client.close()


def iter_documents(prepared: PreparedCatalog) -> Iterator[dict[str, Any]]:
    """The collection (if any) then the items, as sent."""
    if prepared.collection is not None:
        yield prepared.collection
    yield from prepared.items
