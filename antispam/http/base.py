"""The base of every route: edge limits answered as JSON, API keys and roles, the drain count,
errors in the one JSON shape, and JSON bodies read within their limits.

Every route streams its request body, so :meth:`BaseHandler.prepare` sees every request's head
before Tornado reads a byte of its body. :class:`JsonBodyHandler` keeps the body (up to
``max_body_bytes``) and parses it. Both are shared by :mod:`antispam.app` and
:mod:`antispam.console`, which import this module and not each other.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
from typing import Any

import tornado.web

from antispam.errors import ApiError, api_error, to_response
from antispam.http.heap import TRIM_AFTER_BYTES, trim_heap
from antispam.http.services import Services
from antispam.keys import ApiKey
from antispam.ratelimit import LimiterUnavailable
from antispam.request_ids import request_id_from

# The service's handlers log under the name they always had (operators filter on it).
log = logging.getLogger("antispam.app")

_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


def parse_int(digits: str) -> int:
    """JSON integers, refusing the huge ones before Python's own limit does (its message names
    ``sys.set_int_max_str_digits()``, an interpreter detail that means nothing to a client)."""
    if len(digits.lstrip("-")) > 100:
        raise api_error("malformed_json", f"request body has a number of {len(digits.lstrip('-'))} "
                        "digits; numbers may have at most 100")
    return int(digits)


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Every route streams its request body, so :meth:`prepare` sees every request's head before
    Tornado reads a byte of its body: the edge limits (414, 431, framing 400, 413 on
    ``Content-Length``) are answered here, as JSON, not by Tornado closing the connection.
    Routes without a body (GET, HEAD) count the bytes of one they are sent and drop them."""

    route = "unknown"
    accepts_body = False  # True: keep the body (up to max_body_bytes) for the handler

    def initialize(self, services: Services, role: str | None = None) -> None:
        self.services = services
        # The key role the route needs when keys are on (None: open); from ROUTE_ROLES only.
        self.role = role
        self._counted = False
        # The body as it arrived, in Tornado's chunks (at most 64 KiB each): no growing buffer
        # to reallocate and copy; joined once, when the handler reads it.
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._too_large = False
        self.key_id = "anonymous"  # who sent the request: a key id, never the key
        self.key: ApiKey | None = None  # its key, when keys are on and the route needs one

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # no "TornadoServer/x.y" banner
        # Also runs again when an error clears the headers, so errors carry the id too.
        if not hasattr(self, "request_id"):
            self.request_id = request_id_from(self.request.headers.get("X-Request-Id"))
        self.set_header("X-Request-Id", self.request_id)

    def prepare(self) -> None:
        if self.services.trusted_proxies:
            self.request.remote_ip = client_address(self.request.remote_ip or "", self.request.headers,
                                                    self.services.trusted_proxies)
        self.check_head()
        if self.services.draining:
            self.set_header("Connection", "close")
            raise api_error("shutting_down", "the service is shutting down")
        self.services.request_started()
        self._counted = True
        self.authorize()

    def authorize(self) -> None:
        """Keys on and the route needs a role: 401 without a known key, 403 without the role,
        429 with ``Retry-After`` when the key's token bucket is empty (docs/contracts.md#auth)."""
        ring = self.services.keyring
        if ring is None or self.role is None:
            return
        headers = self.request.headers
        presented = headers.get("X-Api-Key", "").strip()
        auth = headers.get("Authorization", "")
        if not presented and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="antispam"'}
        if not presented:
            raise api_error("unauthorized", "this route needs an API key: send Authorization: Bearer "
                            "<key> or X-Api-Key: <key>", challenge)
        key = ring.lookup(presented)
        if key is None:
            raise api_error("unauthorized", "unknown API key", challenge)
        self.key_id, self.key = key.key_id, key
        if not key.allows(self.role):
            raise api_error("forbidden", f"key {key.key_id} lacks the {self.role!r} role for this route")
        try:
            wait = self.services.buckets.take(key.key_id, key.rate)
        except LimiterUnavailable as exc:  # Redis down and ANTISPAM_REDIS_FAIL=closed (issue 23)
            raise api_error("rate_limiter_unavailable", str(exc)) from None
        if wait > 0:
            raise api_error("rate_limited", f"key {key.key_id} is over its rate of {key.rate:g} "
                            "requests per second", {"Retry-After": str(max(1, math.ceil(wait)))})

    @property
    def sees_allow_terms(self) -> bool:
        """Whether answers may name the allow terms that matched (issue 21): with keys off
        everyone may, with keys on only ``admin`` keys; a sender must not learn which phrase
        exempts text."""
        return self.services.keyring is None or (self.key is not None and "admin" in self.key.roles)

    def check_head(self) -> None:
        """The project's own limits on the request line and headers, and the body's framing.

        Tornado reads heads up to a larger hard cap (:func:`server_options`) so that these
        answer with JSON; past the cap it closes the connection itself.
        """
        config = self.services.config
        target = len(self.request.uri or "")  # Tornado decodes the request line as Latin-1: bytes
        if target > config.max_url_bytes:
            raise api_error("url_too_long", f"the request target has {target} bytes; the limit is "
                            f"{config.max_url_bytes} (POST long texts as JSON)")
        head = sum(len(name) + len(value) + 4 for name, value in self.request.headers.get_all())
        if head > config.max_header_bytes:
            raise api_error("headers_too_large", f"the request headers have {head} bytes; the "
                            f"limit is {config.max_header_bytes}")
        headers = self.request.headers
        lengths = {part.strip() for value in headers.get_list("Content-Length") for part in value.split(",")}
        encodings = headers.get_list("Transfer-Encoding")
        if lengths and (len(lengths) != 1 or not _CONTENT_LENGTH.fullmatch(next(iter(lengths)))):
            raise api_error("bad_request", "Content-Length must be one non-negative integer")
        if encodings and (lengths or [e.strip().lower() for e in encodings] != ["chunked"]):
            raise api_error("bad_request", "Transfer-Encoding must be chunked alone, without Content-Length")
        limit = config.max_body_bytes
        if lengths and int(next(iter(lengths))) > limit:
            raise api_error("body_too_large", f"request body of {next(iter(lengths))} bytes is over "
                            f"the limit of {limit}")

    def data_received(self, chunk: bytes) -> None:
        """Keep the body (JSON routes) or count it (the rest); past ``max_body_bytes`` answer
        413 at once and drop what was buffered (the connection then closes)."""
        if self._too_large:
            return
        self._body_bytes += len(chunk)
        limit = self.services.config.max_body_bytes
        if self._body_bytes > limit:
            self._too_large = True
            self._body = []
            if not self._finished:
                error = api_error("body_too_large", f"request body is over the limit of {limit} bytes")
                self.send_error(error.status, exc_info=(ApiError, error, None))
            return
        if self.accepts_body:
            self._body.append(chunk)

    def on_finish(self) -> None:
        self._body = []
        if self._counted:
            self._counted = False
            self.services.request_finished()
        self.services.metrics.observe_request(self.route, self.request.method or "",
                                              self.get_status(), self.request.request_time())

    def on_connection_close(self) -> None:
        # The client left (an aborted upload, a body timeout, a dropped connection): release the
        # buffered body now, and end the request's wait for the rest of it (Tornado's own
        # on_connection_close), so nothing of it outlives the connection.
        released = self._body_bytes
        self._body = []
        self._too_large = True
        super().on_connection_close()
        if released >= TRIM_AFTER_BYTES:
            trim_heap()
        if self._counted:  # the client left before we answered; do not wait for it at drain
            self._counted = False
            self.services.request_finished()

    def send_json(self, payload: Any, status: int = 200) -> None:
        if isinstance(payload, dict):
            payload = {**payload, "request_id": self.request_id}
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        status, body, _unexpected = to_response(exc, status_code)
        self.set_status(status)
        if isinstance(exc, ApiError):
            for name, value in exc.headers.items():  # Retry-After, WWW-Authenticate
                self.set_header(name, value)
        if status == 405:
            self.set_header("Allow", ", ".join(self._allowed_methods()))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps({**body, "request_id": self.request_id}))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        status, body, unexpected = to_response(value)
        if unexpected:
            log.error("unexpected error on %s %s", shown(self.request.method), shown(self.request.path),
                      exc_info=(typ, value, tb))  # type: ignore[arg-type]  # value is set here
        elif status >= 500:
            log.warning("%s %s: %d %s", shown(self.request.method), shown(self.request.path), status,
                        body["error"]["message"])

    def _allowed_methods(self) -> list[str]:
        return [m for m in ("GET", "HEAD", "POST") if getattr(type(self), m.lower()) is not
                getattr(tornado.web.RequestHandler, m.lower())]


class JsonBodyHandler(BaseHandler):
    """Reads a JSON body with the limits checked before and while it arrives, not after."""

    accepts_body = True

    def prepare(self) -> None:
        super().prepare()
        if self.request.method != "POST":
            return
        content_type = self.request.headers.get("Content-Type", "")
        mime, _, params = content_type.partition(";")
        mime = mime.strip().lower()
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.I)
        if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))) \
                or (charset and charset.group(1).lower() not in ("utf-8", "utf8")):
            given = content_type if len(content_type) <= 100 else content_type[:100] + "..."
            raise api_error("unsupported_media_type",
                            f"send JSON with Content-Type: application/json (got {given or 'none'!r})")

    def json_object(self) -> dict[str, Any]:
        if self._too_large:
            raise api_error("body_too_large", "request body is over the limit of "
                            f"{self.services.config.max_body_bytes} bytes")
        try:
            body, self._body = b"".join(self._body), []
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise api_error("invalid_utf8", f"request body is not UTF-8 (byte {exc.start})") from None
        try:
            payload = json.loads(text, parse_int=parse_int)
        except ApiError:
            raise
        except (ValueError, RecursionError) as exc:
            raise api_error("malformed_json", f"request body is not valid JSON: {exc}"[:300]) from None
        if not isinstance(payload, dict):
            raise api_error("invalid_request", f"request body must be a JSON object, got "
                            f"{type(payload).__name__}")
        return payload


def client_address(peer: str, headers: Any, trusted: tuple[Any, ...]) -> str:
    """The client's address for the access log (issue 21), in the way of Tornado's ``xheaders``
    but only when the peer is a trusted proxy: any client can send X-Forwarded-For, so from an
    untrusted peer it would let the client write what the log shows.

    X-Forwarded-For is read from the right (each proxy appends the address it saw), skipping
    trusted proxies; the first other address is the client. Without the header, X-Real-Ip.
    Anything that is not an IP address leaves the peer address.
    """
    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not is_trusted(peer):
        return peer
    hops = [h.strip() for h in ",".join(headers.get_list("X-Forwarded-For")).split(",") if h.strip()]
    candidate = None
    for hop in reversed(hops):
        candidate = hop
        if not is_trusted(hop):
            break
    if candidate is None:
        candidate = headers.get("X-Real-Ip", "").strip() or None
    if candidate is None:
        return peer
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def shown(value: str | None, limit: int = 100) -> str:
    """A client-chosen string (path, method) as it may appear in a log line or an error message."""
    value = value or ""
    return value if len(value) <= limit else f"{value[:limit]}...(+{len(value) - limit} chars)"
