"""A small HTTP/1.1 client that keeps its connections open: the REST backend's transport.

Tornado's ``AsyncHTTPClient`` (``simple_httpclient``) sends ``Connection: close`` and opens a
TCP connection for every request: on loopback that is about half of a one-text REST call's
client time, and against a real TF Serving host a handshake per request. This client keeps up to
``max_connections`` connections to one server open and reuses them, most recently used first.

Why our own and not another client (the choice is recorded in docs/architecture.md):

* Tornado's ``curl_httpclient`` reuses connections too (pycurl installs from a PyPI wheel with
  its own libcurl and OpenSSL), but it adds a C dependency with its own TLS stack to the light
  frontend install and its lock file, and maps every failure to HTTP 599 with a curl error
  number to decode;
* aiohttp or httpx would bring a second HTTP stack (and their dependencies) beside Tornado;
* the protocol work is already in Tornado: each exchange is one ``tornado.http1connection.
  HTTP1Connection`` over a pooled ``IOStream``, the way Tornado's own server serves many
  requests over one stream. What is here is the pool, the deadline and the retry.

Behaviour:

* **Deadline**: one ``timeout`` covers everything: waiting for a free connection, connecting,
  sending, and reading the whole answer. When it passes the connection in use is closed (its
  state is unknown) and :class:`PoolTimeout` is raised.
* **Dropped keep-alive connections**: a server may close a connection while it sits idle.
  Before reuse, a peek at the socket (one non-blocking ``recv(MSG_PEEK)``) finds a connection the
  server closed, and it is skipped. If the server closes it just as a request goes out (the race
  every keep-alive client has), the request failed on a *reused* connection before any byte of an
  answer came back: it is sent again, once, on a fresh connection, within the same deadline.
  Only idempotent requests go through this client (TF Serving's status and predict), so
  resending is safe. A failure on a fresh connection is raised.
* A connection is not kept when the server answers ``Connection: close``, answers HTTP/1.0
  without ``keep-alive``, or ends the answer by closing it, nor after any error; connections idle
  longer than ``idle_seconds`` are closed instead of reused.

Counters for tests and measurements: ``opened`` (TCP connections made), ``reused`` (requests sent
on a kept connection) and ``retried`` (requests resent after a dropped keep-alive connection).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

MAX_CONNECTIONS = 32
IDLE_SECONDS = 30.0  # a kept connection idle longer than this is closed, not reused
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class PoolTimeout(Exception):
    """The request's deadline passed (waiting for a connection, connecting, or for the answer)."""


class ConnectionDropped(ConnectionError):
    """The server closed the connection before the whole answer arrived."""


@dataclass
class Response:
    code: int
    reason: str
    headers: httputil.HTTPHeaders
    body: bytes


class _Collector(httputil.HTTPMessageDelegate):
    """Gathers one answer; notes whether any of it arrived (a resend is safe only if none did)."""

    def __init__(self) -> None:
        self.start_line: httputil.ResponseStartLine | None = None
        self.headers = httputil.HTTPHeaders()
        self.chunks: list[bytes] = []
        self.finished = False

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        assert isinstance(start_line, httputil.ResponseStartLine)
        self.start_line = start_line
        self.headers = headers

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        self.finished = True

    def on_connection_close(self) -> None:
        pass


class _Connection:
    def __init__(self, stream: IOStream) -> None:
        self.stream = stream
        self.idle_since = time.monotonic()
        self.used = 0  # requests sent on it


def _keeps_alive(start_line: httputil.ResponseStartLine, headers: httputil.HTTPHeaders) -> bool:
    connection = headers.get("Connection", "").lower()
    if start_line.version == "HTTP/1.1":
        return connection != "close"
    return connection == "keep-alive"


class KeepAliveClient:
    """Requests to one HTTP server (``base_url``: scheme, host and port) over kept connections.

    Create and use it inside one running event loop; :meth:`close` closes every connection.
    """

    def __init__(self, base_url: str, *, max_connections: int = MAX_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.max_connections = max_connections
        self.idle_seconds = idle_seconds
        self._params = HTTP1ConnectionParameters(max_body_size=max_answer_bytes, decompress=False)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._tcp = TCPClient()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False
        self.opened = 0
        self.reused = 0
        self.retried = 0

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def fetch(self, method: str, path: str, *, body: bytes | None = None,
                    headers: Mapping[str, str] | None = None, timeout: float) -> Response:
        """Send one request and return the whole answer (any status code).

        Raises :class:`PoolTimeout` when ``timeout`` seconds pass first, and ``OSError`` (for
        example ``ConnectionRefusedError`` or :class:`ConnectionDropped`), ``StreamClosedError``
        or ``tornado.httputil.HTTPInputError`` (a malformed answer) when the exchange fails.
        """
        if self._closed:
            raise RuntimeError("KeepAliveClient used after close()")
        deadline = time.monotonic() + timeout
        try:
            return await asyncio.wait_for(self._fetch(method, path, body, headers or {}, deadline),
                                          max(timeout, 0.0))
        except (asyncio.TimeoutError, TimeoutError):
            raise PoolTimeout(f"no answer from {self.host}:{self.port} within {timeout:.3g} s") from None

    async def _fetch(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
                     deadline: float) -> Response:
        async with self._slots:
            connection = self._take_idle()
            if connection is not None:
                self.reused += 1
                try:
                    return await self._exchange(connection, method, path, body, headers)
                except _Unanswered:
                    self.retried += 1  # dropped while idle: once more, on a new connection
            if self._closed:
                raise ConnectionDropped("KeepAliveClient closed during the request")
            connection = await self._connect(deadline)
            try:
                return await self._exchange(connection, method, path, body, headers)
            except _Unanswered as exc:
                raise exc.error from None

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to be dropped
            if not _alive(connection.stream) or now - connection.idle_since > self.idle_seconds:
                connection.stream.close()
                continue
            self._busy.add(connection)
            return connection
        return None

    async def _connect(self, deadline: float) -> _Connection:
        # Its own timeout too, so a connection that completes after our deadline is closed by
        # Tornado's connector rather than left half-made.
        stream = await self._tcp.connect(self.host, self.port, ssl_options=self._ssl,
                                         max_buffer_size=self._params.max_body_size,
                                         timeout=datetime.timedelta(seconds=max(deadline - time.monotonic(), 0.001)))
        stream.set_nodelay(True)
        self.opened += 1
        connection = _Connection(stream)
        if self._closed:  # closed while connecting
            stream.close()
            raise ConnectionDropped("KeepAliveClient closed during the request")
        self._busy.add(connection)
        return connection

    async def _exchange(self, connection: _Connection, method: str, path: str, body: bytes | None,
                        headers: Mapping[str, str]) -> Response:
        """One request on ``connection``; it goes back to the pool only after a clean answer."""
        stream = connection.stream
        collector = _Collector()
        keep = False
        try:
            http = HTTP1Connection(stream, True, self._params)
            request_headers = httputil.HTTPHeaders({"Host": self.host_header, **headers})
            if body is not None or method in ("POST", "PUT", "PATCH"):
                request_headers["Content-Length"] = str(len(body or b""))
            connection.used += 1
            try:
                await http.write_headers(httputil.RequestStartLine(method, path, "HTTP/1.1"), request_headers,
                                         body or None)
                http.finish()
                await http.read_response(collector)
            except (StreamClosedError, ConnectionError) as exc:
                error = _dropped(exc)
                if collector.start_line is None and connection.used > 1:
                    raise _Unanswered(error) from exc
                raise error from exc
            if collector.start_line is None or not collector.finished:
                # Tornado logs and swallows a malformed answer, closing the stream: same outcome.
                error = ConnectionDropped(f"{self.host}:{self.port} closed the connection before a whole "
                                          f"answer (or sent a malformed one)")
                if collector.start_line is None and connection.used > 1:
                    raise _Unanswered(error)
                raise error
            keep = not stream.closed() and _keeps_alive(collector.start_line, collector.headers)
            return Response(collector.start_line.code, collector.start_line.reason, collector.headers,
                            b"".join(collector.chunks))
        finally:
            self._busy.discard(connection)
            if keep and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                stream.close()

    def close(self) -> None:
        """Close every connection, idle or in use (requests in flight fail)."""
        self._closed = True
        for connection in (*self._idle, *self._busy):
            connection.stream.close()
        self._idle.clear()
        self._busy.clear()
        self._tcp.close()


def _alive(stream: IOStream) -> bool:
    """Whether an idle connection is still open: a peek at its socket (plain TCP only).

    Tornado does not watch an idle stream, so a connection the server closed looks open until
    it is used. An idle HTTP connection has nothing to read: end of stream means the server
    closed it, and bytes mean it sent something unasked (also unusable). Over TLS the socket may
    hold protocol records (session tickets), so there the resend after a failure is what counts.
    """
    if stream.closed():
        return False
    sock = stream.socket
    if sock is None or isinstance(sock, ssl.SSLSocket):
        return sock is not None
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing to read: open and quiet
    except OSError:
        return False
    return False


class _Unanswered(Exception):
    """A reused connection failed before any answer came back: safe to send again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _dropped(exc: BaseException) -> Exception:
    if isinstance(exc, StreamClosedError) and exc.real_error is not None:
        real = exc.real_error
        return real if isinstance(real, Exception) else ConnectionDropped(str(real))
    if isinstance(exc, ConnectionError):
        return exc
    return ConnectionDropped(f"connection closed: {exc}")
