"""A static-file HTTP server on 127.0.0.1 with byte ranges, fault injection and a request log.

Tests and benchmarks serve a directory (e.g. a synthetic archive) with :func:`serve_directory`
and read it through GDAL ``/vsicurl/`` as they would read a real object store:

- ``GET``/``HEAD`` with ``Content-Length``, ``Accept-Ranges: bytes`` and ``Range`` requests of
  the forms ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (``206`` with ``Content-Range``;
  ``416`` with ``Content-Range: bytes */size`` when unsatisfiable). A request naming several
  ranges gets the whole file (``200``), which RFC 9110 allows a server to do; GDAL asks for one
  range at a time (``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES`` merges adjacent ones into one).
- :class:`Faults`: make the next *N* requests for a path answer with a status (``503``,
  ``429``...) and an optional ``Retry-After``, or make a path fail on every request.
- :class:`RequestLog`: method, path, range, status and body bytes of every request, so a test
  can assert how much was fetched.
- An optional token check: every request must carry a query parameter (``?token=...``) whose
  value a callable accepts, otherwise ``403`` (for testing URL signing). Query strings are
  otherwise ignored when mapping a URL to a file.

Connections are HTTP/1.1 keep-alive, one thread per connection. Nothing is printed.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "Faults",
    "RequestLog",
    "RequestRecord",
    "ServedDirectory",
    "TokenCheck",
    "parse_range",
    "serve_directory",
]

log = logging.getLogger(__name__)

TokenCheck = Callable[[str], bool]
"""Accepts or refuses the value of the token query parameter."""

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One answered request.

    Attributes
    ----------
    method
        ``"GET"`` or ``"HEAD"``.
    path
        URL path, percent-decoded, always starting with ``/`` (no query string).
    query
        The raw query string (``""`` when absent).
    range
        The raw ``Range`` header, or ``None``.
    status
        Status code sent.
    bytes_sent
        Body bytes sent (0 for ``HEAD`` and for a response cut short by the client).

    """

    method: str
    path: str
    query: str
    range: str | None
    status: int
    bytes_sent: int


def _normalise(path: str) -> str:
    """Return a request path or a path relative to the served root as ``/a/b``."""
    return "/" + unquote(path).lstrip("/")


class RequestLog:
    """Thread-safe log of the requests a server answered, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        """Record one answered request."""
        with self._lock:
            self._records.append(record)

    def all(self) -> list[RequestRecord]:
        """Return a snapshot of every record so far."""
        with self._lock:
            return list(self._records)

    def for_path(self, path: str, method: str | None = None) -> list[RequestRecord]:
        """Return the records for a path (``"a/b.tif"`` or ``"/a/b.tif"``), of one or any method."""
        wanted = _normalise(path)
        return [
            r
            for r in self.all()
            if r.path == wanted and (method is None or r.method == method.upper())
        ]

    def bytes_sent(self, path: str | None = None) -> int:
        """Return the body bytes sent, for one path or in total."""
        records = self.all() if path is None else self.for_path(path)
        return sum(r.bytes_sent for r in records)

    def replace(self, old: RequestRecord, new: RequestRecord) -> None:
        """Swap a logged record (the same object) for a corrected one."""
        with self._lock:
            for index in range(len(self._records) - 1, -1, -1):
                if self._records[index] is old:
                    self._records[index] = new
                    return

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        """Return the number of records."""
        with self._lock:
            return len(self._records)


@dataclass
class _Fault:
    status: int
    retry_after: str | None
    remaining: int | None  # None: every request


class Faults:
    """Thread-safe fault injection, keyed by URL path (query strings do not matter).

    A path given as ``"a/b.tif"`` or ``"/a/b.tif"`` means the file ``root/a/b.tif``. Transient
    faults (:meth:`fail_next`) are used up before a permanent one (:meth:`fail_always`) applies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transient: dict[str, list[_Fault]] = {}
        self._permanent: dict[str, _Fault] = {}

    def fail_next(
        self,
        path: str,
        count: int = 1,
        status: int = 503,
        retry_after: float | str | None = None,
    ) -> None:
        """Make the next ``count`` requests for ``path`` answer ``status``.

        Parameters
        ----------
        path
            URL path relative to the served root.
        count
            How many requests fail (queued after any faults already pending for the path).
        status
            The status to answer with, e.g. 503 or 429.
        retry_after
            Value of a ``Retry-After`` header (seconds or an HTTP date), or ``None`` for none.

        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        fault = _Fault(status, _header_value(retry_after), count)
        with self._lock:
            self._transient.setdefault(_normalise(path), []).append(fault)

    def fail_always(
        self, path: str, status: int = 500, retry_after: float | str | None = None
    ) -> None:
        """Make every request for ``path`` answer ``status`` until :meth:`clear`."""
        with self._lock:
            self._permanent[_normalise(path)] = _Fault(status, _header_value(retry_after), None)

    def clear(self, path: str | None = None) -> None:
        """Remove the faults of one path, or all faults."""
        with self._lock:
            if path is None:
                self._transient.clear()
                self._permanent.clear()
            else:
                key = _normalise(path)
                self._transient.pop(key, None)
                self._permanent.pop(key, None)

    def pending(self, path: str) -> int:
        """Return how many transient failures are still queued for ``path``."""
        with self._lock:
            return sum(f.remaining or 0 for f in self._transient.get(_normalise(path), []))

    def take(self, path: str) -> tuple[int, str | None] | None:
        """Consume the fault for one request to ``path``: ``(status, retry_after)`` or ``None``."""
        key = _normalise(path)
        with self._lock:
            queue = self._transient.get(key)
            if queue:
                fault = queue[0]
                assert fault.remaining is not None
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
                if not queue:
                    del self._transient[key]
                return fault.status, fault.retry_after
            permanent = self._permanent.get(key)
            if permanent is not None:
                return permanent.status, permanent.retry_after
        return None


def _header_value(value: float | str | None) -> str | None:
    """Format a ``Retry-After`` value: whole seconds as an integer, else as given."""
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Resolve a single-range ``Range`` header against a file size.

    Returns
    -------
    tuple[int, int]
        Inclusive ``(first, last)`` byte positions.

    Raises
    ------
    ValueError
        If the header is not one ``bytes=`` range (the caller then serves the whole file, as
        RFC 9110 asks for a header it does not understand).
    IndexError
        If the range is syntactically valid but unsatisfiable (answer 416).

    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        raise ValueError(f"not a single byte range: {header!r}")
    first_text, dash, last_text = (part.strip() for part in spec.partition("-"))
    valid = (first_text.isdigit() and (not last_text or last_text.isdigit())) or (
        not first_text and last_text.isdigit()
    )
    if not dash or not valid:
        raise ValueError(f"malformed byte range: {header!r}")
    if not first_text:  # bytes=-n: the last n bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise IndexError(header)
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else max(first, size - 1)
    if last < first:
        raise ValueError(f"malformed byte range: {header!r}")
    if first >= size:
        raise IndexError(header)
    return first, min(last, size - 1)


class _Server(ThreadingHTTPServer):
    """The HTTP server, holding the state its handlers share."""

    daemon_threads = True

    def __init__(
        self,
        root: Path,
        faults: Faults,
        requests: RequestLog,
        token_check: TokenCheck | None,
        token_param: str,
    ) -> None:
        self.root = root
        self.faults = faults
        self.request_log = requests
        self.token_check = token_check
        self.token_param = token_param
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection so :meth:`close_connections` can end idle keep-alives."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection when its handler is done with it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler's exception at debug level instead of printing it to stderr."""
        log.debug("error answering %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open client connection (their handler threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Serve files below the server's root; see the module docstring."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "cloudfree-test-http"
    # An idle keep-alive connection is dropped after this many seconds.
    timeout = 30
    # Headers and body go out in separate writes: with Nagle's algorithm a small body waits for
    # the client's delayed ACK of the headers (40 ms per request on Linux), which no real
    # object store or web server does.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Answer a GET request."""
        self._serve(body=True)

    def do_HEAD(self) -> None:
        """Answer a HEAD request."""
        self._serve(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: the request log is :class:`RequestLog`."""

    def _serve(self, body: bool) -> None:
        split = urlsplit(self.path)
        path = _normalise(split.path)
        self._record = RequestRecord(
            self.command, path, split.query, self.headers.get("Range"), 0, 0
        )
        self._answer(path, split.query, body)

    def _answer(self, path: str, query: str, body: bool) -> None:
        """Choose and send the response: fault, 403, 404, 416, 206 or 200."""
        fault = self.server.faults.take(path)
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            self._send_message(status, "injected fault", body, headers)
            return
        check = self.server.token_check
        if check is not None:
            tokens = parse_qs(query, keep_blank_values=True).get(self.server.token_param, [])
            if len(tokens) != 1 or not check(tokens[0]):
                self._send_message(HTTPStatus.FORBIDDEN, "bad or missing token", body)
                return
        file = self._resolve(path)
        if file is None:
            self._send_message(HTTPStatus.NOT_FOUND, "not found", body)
            return
        size = file.stat().st_size
        first, last = 0, size - 1
        status = HTTPStatus.OK
        headers = {"Content-Type": _content_type(file), "Accept-Ranges": "bytes"}
        range_header = self._record.range
        if range_header is not None:
            try:
                first, last = parse_range(range_header, size)
            except IndexError:
                self._send_message(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    "range not satisfiable",
                    body,
                    {"Content-Range": f"bytes */{size}"},
                )
                return
            except ValueError:
                pass  # several ranges or a malformed header: the whole file
            else:
                status = HTTPStatus.PARTIAL_CONTENT
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        self._respond(status, headers, (file, first, last - first + 1), body)

    def _resolve(self, path: str) -> Path | None:
        """Map a URL path to a regular file inside the root, or ``None``."""
        root = self.server.root
        try:
            candidate = (root / path.lstrip("/")).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                return candidate
        except (OSError, ValueError):  # e.g. a NUL byte in the path
            pass
        return None

    def _send_message(
        self,
        status: int,
        message: str,
        body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a short plain-text response."""
        payload = f"{int(status)} {message}\n".encode()
        all_headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        self._respond(status, all_headers, payload, body)

    def _respond(
        self,
        status: int,
        headers: dict[str, str],
        content: bytes | tuple[Path, int, int],
        body: bool,
    ) -> None:
        """Send status, headers and (for GET) the content: bytes, or ``(file, offset, length)``.

        The request is logged just before the response's last write, so a client that has read
        a whole response always finds its request in the log (and in the order it made them).
        """
        length = len(content) if isinstance(content, bytes) else content[2]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        logged: RequestRecord | None = None
        sent = 0
        try:
            if not body or length == 0:
                logged = self._log(status, 0)
                self.end_headers()
                return
            self.end_headers()
            for chunk in _chunks(content):
                if sent + len(chunk) >= length:
                    logged = self._log(status, length)
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if logged is None:  # the client went away, or the file shrank under us
            self.close_connection = True
            self._log(status, sent)
        elif body and sent != length:
            self.server.request_log.replace(logged, replace(logged, bytes_sent=sent))

    def _log(self, status: int, sent: int) -> RequestRecord:
        record = replace(self._record, status=int(status), bytes_sent=sent)
        self.server.request_log.append(record)
        return record


def _chunks(content: bytes | tuple[Path, int, int]) -> Iterator[bytes]:
    """Yield the content: the bytes, or ``length`` bytes of a file from ``offset``, in chunks."""
    if isinstance(content, bytes):
        yield content
        return
    file, offset, length = content
    with file.open("rb") as stream:
        stream.seek(offset)
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _content_type(file: Path) -> str:
    """Guess a media type, with the ones GDAL and STAC clients care about."""
    suffix = file.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "image/tiff"
    if suffix == ".jp2":
        return "image/jp2"
    if suffix == ".json":
        return "application/json"
    guessed, _ = mimetypes.guess_type(file.name)
    return guessed or "application/octet-stream"


class ServedDirectory:
    """A running server: where it is, its faults and its request log.

    Attributes
    ----------
    root
        The directory served (resolved).
    port
        The TCP port on 127.0.0.1.
    url
        ``http://127.0.0.1:<port>`` (no trailing slash).
    faults
        :class:`Faults` for this server.
    requests
        :class:`RequestLog` of this server.

    """

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.root: Path = server.root
        self.port: int = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.faults: Faults = server.faults
        self.requests: RequestLog = server.request_log

    def url_for(self, path: str | os.PathLike[str], token: str | None = None) -> str:
        """Return the URL of a file, given relative to the root (or absolute inside it).

        ``token`` adds the token query parameter.
        """
        relative = Path(path)
        if relative.is_absolute():
            relative = relative.resolve().relative_to(self.root)
        url = f"{self.url}/{quote(relative.as_posix())}"
        if token is not None:
            url += f"?{self._server.token_param}={quote(token, safe='')}"
        return url

    def vsicurl(self, path: str | os.PathLike[str], token: str | None = None) -> str:
        """Return the GDAL ``/vsicurl/`` path of a file (see :meth:`url_for`)."""
        return "/vsicurl/" + self.url_for(path, token)


@contextmanager
def serve_directory(
    root: str | os.PathLike[str],
    *,
    token_check: TokenCheck | None = None,
    token_param: str = "token",
) -> Iterator[ServedDirectory]:
    """Serve ``root`` on a free port of 127.0.0.1 until the ``with`` block ends.

    Parameters
    ----------
    root
        Directory to serve; files only (a directory URL is 404).
    token_check
        If given, every request needs the ``token_param`` query parameter, and this callable
        must accept its value, else the answer is 403. Injected faults apply first.
    token_param
        Name of the token query parameter.

    Yields
    ------
    ServedDirectory
        The running server. On exit it stops, closes open connections and frees the port.

    """
    directory = Path(root).resolve()
    if not directory.is_dir():
        raise NotADirectoryError(f"not a directory: {directory}")
    server = _Server(directory, Faults(), RequestLog(), token_check, token_param)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"http-server-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    try:
        yield ServedDirectory(server)
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
