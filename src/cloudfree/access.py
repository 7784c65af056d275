"""How pixels are reached: object stores (endpoint, credentials) and URL signing.

Scenes name an object store or a signer (``BandAsset.store`` / ``BandAsset.signer``); both are
resolved where the read happens, from that process's environment. So scenes, task graphs,
outputs and logs never carry a secret or a signed URL, and a worker can renew what expires.

Credentials come, in order, from the store's key/secret environment variables, then from an
AWS-style profile (``[name]`` in ``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``).
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cloudfree.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreEnvironment:
    """Names of the environment variables that configure one object store."""

    endpoint: str
    access_key: str
    secret_key: str
    session_token: str | None
    profile: str
    region: str


AWS_ENVIRONMENT = StoreEnvironment(
    endpoint="AWS_ENDPOINT_URL_S3",
    access_key="AWS_ACCESS_KEY_ID",
    secret_key="AWS_SECRET_ACCESS_KEY",
    session_token="AWS_SESSION_TOKEN",
    profile="AWS_PROFILE",
    region="AWS_REGION",
)


@dataclass(frozen=True)
class Credentials:
    """An access key pair; ``repr`` never shows the secret."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class ResolvedStore:
    """An object store as configured in this process: what GDAL and fsspec need."""

    name: str
    endpoint_url: str | None
    region: str | None
    requester_pays: bool
    credentials: Credentials | None

    def gdal_options(self) -> dict[str, str]:
        """GDAL ``/vsis3/`` configuration options."""
        options: dict[str, str] = {}
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options["AWS_S3_ENDPOINT"] = parts.netloc or parts.path
            options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if self.region:
            options["AWS_REGION"] = self.region
        if self.requester_pays:
            options["AWS_REQUEST_PAYER"] = "requester"
        if self.credentials is not None:
            options["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
            options["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
            if self.credentials.session_token:
                options["AWS_SESSION_TOKEN"] = self.credentials.session_token
        return options

    def rasterio_env(self, **options: object) -> Any:
        """A ``rasterio.Env`` reaching this store.

        Credentials travel in a session, as rasterio requires, never as plain options.
        """
        import rasterio
        from rasterio.session import AWSSession

        gdal = {k: v for k, v in self.gdal_options().items() if not k.startswith(_SECRET_KEYS)}
        session = None
        if self.credentials is not None:
            session = AWSSession(
                aws_access_key_id=self.credentials.access_key,
                aws_secret_access_key=self.credentials.secret_key,
                aws_session_token=self.credentials.session_token,
                region_name=self.region,
                endpoint_url=gdal.get("AWS_S3_ENDPOINT"),
                requester_pays=self.requester_pays,
            )
        return rasterio.Env(session=session, **gdal, **options)

    def fsspec_options(self) -> dict[str, object]:
        """``s3fs.S3FileSystem`` keyword arguments."""
        options: dict[str, object] = {}
        client: dict[str, object] = {}
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            options["client_kwargs"] = client
        if self.requester_pays:
            options["requester_pays"] = True
        if self.credentials is not None:
            options["key"] = self.credentials.access_key
            options["secret"] = self.credentials.secret_key
            if self.credentials.session_token:
                options["token"] = self.credentials.session_token
        return options


@dataclass(frozen=True)
class ObjectStore:
    """An S3-compatible store: defaults here, overrides and credentials from the environment."""

    name: str
    environment: StoreEnvironment
    endpoint_url: str | None = None
    """Default endpoint; ``None`` is AWS itself."""
    region: str | None = None
    requester_pays: bool = False

    def resolve(self, environ: Mapping[str, str] | None = None) -> ResolvedStore:
        """The store as configured by ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        names = self.environment
        endpoint = env.get(names.endpoint) or self.endpoint_url
        if names.endpoint == AWS_ENVIRONMENT.endpoint:
            endpoint = endpoint or env.get("AWS_ENDPOINT_URL")
        return ResolvedStore(
            name=self.name,
            endpoint_url=endpoint,
            region=env.get(names.region) or self.region,
            requester_pays=self.requester_pays,
            credentials=_credentials(names, env),
        )

    def worker_environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Variables that make another process resolve this store as this one does.

        Credentials found in a profile become the store's key/secret variables, so a worker
        without the profile file still reaches the store. A profile that cannot be read is left
        out: reads then fail where they happen, with the profile's own error.
        """
        env = os.environ if environ is None else environ
        names = self.environment
        out = {name: env[name] for name in (names.endpoint, names.region) if env.get(name)}
        try:
            credentials = _credentials(names, env)
        except SourceError as exc:
            log.debug("store %s: credentials not forwarded: %s", self.name, exc)
            return out
        if credentials is not None:
            out[names.access_key] = credentials.access_key
            out[names.secret_key] = credentials.secret_key
            if credentials.session_token and names.session_token:
                out[names.session_token] = credentials.session_token
        return out


def _credentials(names: StoreEnvironment, env: Mapping[str, str]) -> Credentials | None:
    key, secret = env.get(names.access_key), env.get(names.secret_key)
    if key and secret:
        token = env.get(names.session_token) if names.session_token else None
        return Credentials(key, secret, token)
    profile = env.get(names.profile)
    if not profile:
        return None
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.ConfigParser()
    if not parser.read(path) or not parser.has_section(profile):
        raise SourceError(
            f"Profile {profile!r} (from {names.profile}) is not in {path}; add it there or set "
            f"{names.access_key} and {names.secret_key}."
        )
    section = parser[profile]
    if "aws_access_key_id" not in section or "aws_secret_access_key" not in section:
        raise SourceError(f"Profile {profile!r} in {path} lacks aws_access_key_id/secret.")
    return Credentials(
        section["aws_access_key_id"],
        section["aws_secret_access_key"],
        section.get("aws_session_token"),
    )


_QUERY_IN_URL = re.compile(r"((?:https?|s3)://[^\s'\"?]+)\?[^\s'\"]*")


def redact_href(href: str) -> str:
    """An href safe for messages and logs: no query string (signatures), no user info."""
    parts = urlsplit(href)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_message(text: str) -> str:
    """A library error message with every URL's query string (signature, token) removed."""
    return _QUERY_IN_URL.sub(r"\1", text)


#: Query parameters that carry a credential or a signature (S3 presigned URLs, Azure SAS, GCS
#: signed URLs, API keys and tokens), compared in lower case.
SECRET_QUERY_PARAMETERS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "googleaccessid",
        "signature",
        "sig",
        "token",
        "access_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
    }
)


def href_secret(href: str) -> str | None:
    """Say what credential or signature ``href`` carries, or ``None`` when it carries none.

    Looks at user info (``user:password@host``) and at query parameters named in
    :data:`SECRET_QUERY_PARAMETERS`. The answer names the part, never its value.
    """
    parts = urlsplit(href)
    if "@" in parts.netloc:
        return "user information in the host part"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in SECRET_QUERY_PARAMETERS:
            return f"query parameter {name!r}"
    return None


# --- URL signing ---------------------------------------------------------------------------


class Signer:
    """Signs asset URLs with short-lived SAS tokens fetched from a token service.

    Tokens are cached per (account, container) and renewed ``margin`` seconds before they
    expire, or at once after the asset server refused one (:meth:`invalidate`). Signed URLs are
    only ever handed to GDAL; messages and outputs use the unsigned href.
    """

    def __init__(
        self,
        token_url: str,
        *,
        margin: float = 300.0,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url.rstrip("/")
        self.margin = margin
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for another process) without its tokens and lock: tokens are fetched there."""
        state = dict(self.__dict__)
        state["_tokens"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def sign(self, href: str) -> str:
        """``href`` with a valid token in its query string."""
        parts = urlsplit(href)
        key = _account_container(href)
        token = self._token(key)
        query = [*parse_qsl(parts.query), *parse_qsl(token)]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def invalidate(self, href: str) -> None:
        """Forget the token for ``href``'s container (the server refused it)."""
        with self._lock:
            self._tokens.pop(_account_container(href), None)

    def _token(self, key: tuple[str, str]) -> str:
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[1] - self.margin > self._clock():
                return cached[0]
            token, expiry = self._fetch(*key)
            self._tokens[key] = (token, expiry)
            return token

    def _fetch(self, account: str, container: str) -> tuple[str, float]:
        url = f"{self.token_url}/{account}/{container}"
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceError(
                f"Could not get a signing token for {account}/{container} from "
                f"{self.token_url}: {exc}"
            ) from None
        try:
            token = str(body["token"])
            expiry = datetime.fromisoformat(str(body["msft:expiry"]).replace("Z", "+00:00"))
        except (KeyError, ValueError) as exc:
            raise SourceError(f"Token service {self.token_url} answered without {exc}.") from None
        log.debug("signing token for %s/%s valid until %s", account, container, expiry)
        return token, expiry.timestamp()


def _account_container(href: str) -> tuple[str, str]:
    """Storage account and container of a blob URL (``https://<account>.blob.../<container>/``)."""
    parts = urlsplit(href)
    account = (parts.hostname or "").split(".")[0]
    container = parts.path.lstrip("/").split("/", 1)[0]
    if not account or not container:
        raise SourceError(
            f"Cannot sign {parts.scheme}://{parts.netloc}{parts.path}: not a blob URL."
        )
    return account, container
