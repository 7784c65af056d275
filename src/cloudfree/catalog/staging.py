"""The objects ``cloudfree publish`` sends: a local catalog read, made public and validated.

``read_catalog`` reads a collection (or one item) with its items from a local path or an fsspec
URL; ``prepare`` drops the links a STAC API writes itself, makes every href absolute and
reachable (local files mapped onto ``--href-base``), refuses hrefs with a credential or a
signature, adds tile-viewer links, and validates every object offline. Nothing here talks to
the API.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import fsspec

from cloudfree.access import href_secret, redact_href, redact_message
from cloudfree.catalog.validation import StacValidationError, validate_stac
from cloudfree.errors import InvalidInputError
from cloudfree.store import location

__all__ = [
    "API_LINK_RELS",
    "HrefPolicy",
    "InvalidCatalogError",
    "LocalCatalog",
    "PreparedCatalog",
    "StacDocument",
    "ViewerLinks",
    "prepare",
    "read_catalog",
    "resolve_href",
]

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
