"""A reverse proxy on 127.0.0.1 in front of a real HTTP API: a required header, faults, a log.

Tests put it in front of the ``stac_api`` server to check what a client sends and how it copes:

- ``required_header=(name, value)``: a request without exactly that header gets ``401`` and is
  not forwarded, like an API behind an authenticating gateway.
- :meth:`ApiProxy.fail_next`: the next *N* requests of a method (and path prefix) answer a
  status (``503``, ``429``...) with an optional ``Retry-After``, without reaching the API.
- :meth:`ApiProxy.drop_after_forwarding`: the next *N* matching requests reach the API, then the
  connection is closed without an answer, as when a gateway times out after the write happened.
- :meth:`ApiProxy.hide_conformance`: leave conformance classes out of ``/conformance``, to
  play an API without some extension.
- :attr:`ApiProxy.log`: method, path, status and whether the header was right, for every
  request. The header's value is never recorded.

Everything else is forwarded as is (method, path, query, body, headers but ``Host``).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ApiProxy", "ProxyRecord", "proxy_api"]

_HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding"})
# answers come back uncompressed, so the proxy can edit them (see ``hide_conformance``)
_NOT_FORWARDED = _HOP_HEADERS | {"accept-encoding"}


@dataclass(frozen=True)
class ProxyRecord:
    """One request the proxy answered (or dropped: ``status`` 0)."""

    method: str
    path: str
    status: int
    authorized: bool


@dataclass
class _Fault:
    method: str
    prefix: str
    count: int
    status: int
    retry_after: str | None
    drop: bool
    echo_headers: bool = False


class ApiProxy:
    """A running proxy; ``url`` replaces the API's URL in the client under test."""

    def __init__(self, server: _ProxyServer) -> None:
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    @property
    def log(self) -> list[ProxyRecord]:
        """Every request so far, in order."""
        with self._server.lock:
            return list(self._server.records)

    def clear_log(self) -> None:
        """Forget the requests so far."""
        with self._server.lock:
            self._server.records.clear()

    def fail_next(
        self,
        method: str,
        *,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        prefix: str = "/",
        echo_headers: bool = False,
    ) -> None:
        """Answer the next ``count`` ``method`` requests under ``prefix`` with ``status``.

        ``echo_headers`` puts the request's headers into the error's ``description``, as some
        careless APIs do (to test that a client hides its credentials in messages).
        """
        header = None if retry_after is None else f"{retry_after:g}"
        fault = _Fault(method, prefix, count, status, header, False, echo_headers)
        with self._server.lock:
            self._server.faults.append(fault)

    def hide_conformance(self, *parts: str) -> None:
        """Leave out of ``/conformance`` every class containing one of ``parts``."""
        with self._server.lock:
            self._server.hidden_conformance.extend(parts)

    def drop_after_forwarding(self, method: str, *, count: int = 1, prefix: str = "/") -> None:
        """Forward the next ``count`` matching requests, then close without answering."""
        with self._server.lock:
            self._server.faults.append(_Fault(method, prefix, count, 0, None, True))


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, required_header: tuple[str, str] | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.required_header = required_header
        self.lock = threading.Lock()
        self.records: list[ProxyRecord] = []
        self.faults: list[_Fault] = []
        self.hidden_conformance: list[str] = []

    def take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and path.startswith(fault.prefix) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def record(self, record: ProxyRecord) -> None:
        with self.lock:
            self.records.append(record)


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read ProxyRecords

    def do_GET(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = urlsplit(self.path).path
        authorized = True
        if self.server.required_header is not None:
            name, value = self.server.required_header
            authorized = self.headers.get(name) == value
        if not authorized:
            self.server.record(ProxyRecord(self.command, path, 401, False))
            self._answer(401, b'{"code":"Unauthorized","description":"missing or wrong token"}')
            return
        fault = self.server.take_fault(self.command, path)
        if fault is not None and not fault.drop:
            self.server.record(ProxyRecord(self.command, path, fault.status, True))
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            description = "injected"
            if fault.echo_headers:
                description += ": " + "; ".join(f"{k}: {v}" for k, v in self.headers.items())
            body = json.dumps({"code": "Injected", "description": description}).encode()
            self._answer(fault.status, body, extra)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
        connection = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=60
        )
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            status = response.status
            answer_headers = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in _HOP_HEADERS and k.lower() != "content-length"
            }
        finally:
            connection.close()
        hidden = self.server.hidden_conformance
        if path == "/conformance" and status == 200 and hidden:
            data = json.loads(payload)
            data["conformsTo"] = [
                c for c in data.get("conformsTo", []) if not any(h in c for h in hidden)
            ]
            payload = json.dumps(data).encode()
        if fault is not None:  # drop: the API did the work, the client never hears of it
            self.server.record(ProxyRecord(self.command, path, 0, True))
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.server.record(ProxyRecord(self.command, path, status, True))
        self._answer(status, payload, answer_headers)

    def _answer(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        merged = {"Content-Type": "application/json", **(headers or {})}
        for name, value in merged.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def proxy_api(
    upstream: str, *, required_header: tuple[str, str] | None = None
) -> Iterator[ApiProxy]:
    """Run a proxy to ``upstream`` on a free port of 127.0.0.1 until the block ends."""
    server = _ProxyServer(upstream, required_header)
    thread = threading.Thread(target=server.serve_forever, name="api-proxy", daemon=True)
    thread.start()
    try:
        yield ApiProxy(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
