"""Requests to a STAC API: one auth header never shown, timeouts, retries where they are safe.

GET, PUT and DELETE are repeated after a connection error or a 429/502/503/504 answer, waiting
``Retry-After`` when the API sends one (else an exponential backoff). POST is never repeated
here: the caller must first look whether an unclear POST was applied (see
:mod:`cloudfree.catalog.publish`). Every text taken from the API is scrubbed of URL query
strings and of the auth value before it goes into a message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from cloudfree.access import href_secret, redact_href, redact_message
from cloudfree.config import PublishSettings
from cloudfree.errors import InvalidInputError, PublishError

__all__ = ["RETRY_STATUSES", "ApiAuth", "StacApiClient"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
_MAX_MESSAGE = 400


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
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        read_only: bool = False,
    ) -> requests.Response:
        """Send one request; repeat it when that is safe and worth it (see the class).

        ``read_only`` marks a POST that changes nothing (a search), so it is repeated like a GET.

        Raises
        ------
        PublishError
            The API could not be reached after the retries (connection refused, timeout).

        """
        url = self.url + path
        safe = method in _IDEMPOTENT or read_only
        attempts = 1 + (self.settings.retries if safe else 0)
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
                log.info(
                    "%s %s failed (%s); retrying in %.1f s",
                    method,
                    path,
                    self.scrub(_reason(exc)),
                    wait,
                )
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

    def wait(self, attempt: int, retry_after: str | None = None) -> None:
        """Sleep before attempt ``attempt + 1`` (``Retry-After`` when given, else backoff)."""
        self._sleep(self._backoff(attempt, retry_after))

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
