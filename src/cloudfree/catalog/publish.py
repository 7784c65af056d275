"""Publish a STAC collection and its items to a STAC API with the transactions extension.

The chain (each stage can be used alone; the first two live in :mod:`cloudfree.catalog.staging`,
the requests in :mod:`cloudfree.catalog.stac_api`):

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

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pystac.utils import str_to_datetime

from cloudfree.access import redact_href
from cloudfree.catalog.stac_api import RETRY_STATUSES, ApiAuth, StacApiClient
from cloudfree.catalog.staging import (
    API_LINK_RELS,
    HrefPolicy,
    PreparedCatalog,
    ViewerLinks,
    prepare,
    read_catalog,
)
from cloudfree.config import PublishSettings
from cloudfree.errors import PublishError

__all__ = ["Outcome", "PublishReport", "publish", "publish_catalog", "same_content"]

log = logging.getLogger(__name__)

#: Conformance classes of the transactions extension (any version), for items and collections.
ITEM_TRANSACTIONS = "/ogcapi-features/extensions/transaction"
COLLECTION_TRANSACTIONS = "/collections/extensions/transaction"
#: Item search, used to read the published items 100 at a time before comparing them.
ITEM_SEARCH = "/item-search"
SEARCH_BATCH = 100
TIMESTAMP_KEYS = frozenset({"datetime", "start_datetime", "end_datetime", "created", "updated"})
_OGC_ITEM_TRANSACTIONS = (
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete"
)


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
    """Our copy and the API's, made comparable.

    ``None`` members and the API's own links are dropped, and timestamps are read as instants
    (pgSTAC serves ``...:21Z`` for ``...:21.000000Z``).
    """
    if isinstance(value, dict):
        out = {
            k: _instant(v) if k in TIMESTAMP_KEYS else _normalise(v)
            for k, v in value.items()
            if v is not None and k != "links"
        }
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


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return str_to_datetime(value).astimezone(UTC)
        except ValueError:
            return value
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
        self.can_search = False

    def check_conformance(self, need_collections: bool) -> None:
        data = self.client.get_json("/conformance", "the conformance classes")
        if data is None:
            raise PublishError(
                f"{redact_href(self.client.url)} has no /conformance: it is not a STAC API "
                "(give the API's root URL to --api)"
            )
        classes = [str(c) for c in data.get("conformsTo", [])]
        self.can_search = any(c.endswith(ITEM_SEARCH) for c in classes)
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

    def fetch_items(self, collection_id: str, ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """The API's copies of the items, by id, read with item search (100 per request).

        ``None`` when the API has no item search: then each item is read on its own.
        """
        if not self.can_search or not ids:
            return None
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), SEARCH_BATCH):
            chunk = ids[start : start + SEARCH_BATCH]
            query = {"collections": [collection_id], "ids": chunk, "limit": len(chunk)}
            response = self.client.send("POST", "/search", query, read_only=True)
            if response.status_code != 200:
                raise PublishError(self.client.failure(response, "searching the published items"))
            try:
                features = response.json().get("features", [])
            except (ValueError, AttributeError):
                raise PublishError(
                    "searching the published items: the API did not answer JSON"
                ) from None
            for feature in features:
                if isinstance(feature, dict) and feature.get("collection") == collection_id:
                    found[str(feature.get("id"))] = feature
        return found

    def upsert(
        self,
        key: str,
        body: dict[str, Any],
        parent: str,
        path: str,
        what: str,
        known: Mapping[str, dict[str, Any]] | None = None,
    ) -> Outcome:
        """Create ``body`` at ``path`` (POST to ``parent``) or replace it (PUT) unless identical.

        ``known``: the API's copies already read (by id); otherwise the object is read here.
        """
        current = known.get(key) if known is not None else self.client.get_json(path, what)
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
            if response is not None and (
                response.status_code not in RETRY_STATUSES or attempt >= settings.retries
            ):
                raise PublishError(self.client.failure(response, f"creating {what}"))
            # unclear: the POST may or may not have been applied. Look before repeating it.
            retry_after = response.headers.get("Retry-After") if response is not None else None
            self.client.wait(attempt, retry_after)
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
        known = worker.fetch_items(cid, list(report.items))
        for done, item in enumerate(prepared.items, start=1):
            current_id = str(item["id"])
            path = f"{collection_path}/items/{quote(current_id, safe='')}"
            report.items[current_id] = worker.upsert(
                current_id, item, f"{collection_path}/items", path, f"item {current_id!r}", known
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
