"""The HTTP API (docs/contracts.md#http-api), built by an application factory.

:func:`make_app` receives its collaborators (config, backend, feedback store) and hands them to
the handlers through :class:`Services`; nothing is a module global and nothing heavy happens at
import (the segmenter is created by the factory, TensorFlow only by a backend's ``start``).

A request's path: validate → normalize → dedup cache → jieba (cache misses only) → backend
(awaited, with a deadline) → response. Everything between reading the request and writing the
answer is :class:`antispam.scoring.Scorer`; this module wires it to HTTP. Every failure is an
exception mapped to the JSON error shape in one place (:func:`antispam.errors.to_response`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import tornado.httpserver
import tornado.iostream
import tornado.web

from antispam.backends.base import Backend
from antispam.cache import PredictionCache
from antispam.config import ServeConfig
from antispam.errors import ApiError, api_error, error_body, to_response
from antispam.feedback import FeedbackRefused
from antispam.keys import ApiKey, KeyRing, TokenBuckets
from antispam.labels import parse_label
from antispam.metrics import Metrics
from antispam.request_ids import check_data_id, data_ids_of, request_id_from
from antispam.scoring import Scorer
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)
access_log = logging.getLogger("antispam.access")

# Longest log message the service writes (docs/contracts.md#limits): a rejected 60 KB text or a
# 60 KB header value never reaches the log whole. Tracebacks are kept.
LOG_MESSAGE_CHARS = 300
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


class FeedbackStore(Protocol):
    def add(self, text: str, normalized: str, label: int, model_version: int | None,
            **refs: str) -> dict: ...  # refs: key_id (only when keys are on), request_id, data_id


@dataclass
class Services:
    """Everything a handler may use; one per application."""

    config: ServeConfig
    backend: Backend
    scorer: Scorer
    cache: PredictionCache
    metrics: Metrics
    feedback_store: FeedbackStore | None
    openapi: bytes
    inflight: int = 0
    draining: bool = False
    idle: asyncio.Event | None = field(default=None, repr=False)
    keyring: KeyRing | None = None  # issue 11: None = keys off, every route open
    buckets: TokenBuckets = field(default_factory=TokenBuckets, repr=False)

    def request_started(self) -> None:
        self.inflight += 1

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.idle is not None:
            self.idle.set()

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait for the ones in flight; False if time ran out."""
        self.draining = True
        if self.inflight == 0:
            return True
        self.idle = asyncio.Event()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


# An aborted upload of at least this much gives the freed memory back to the OS (see _trim_heap).
_TRIM_AFTER_BYTES = 256 * 1024
_TRIM_INTERVAL_SECONDS = 1.0
_last_trim = 0.0
_trim_pending = False
_malloc_trim: Any = None


def _trim_heap() -> None:
    """``malloc_trim(0)`` soon: at once, or at the end of the current one-second interval if
    it ran less than a second ago (glibc only; elsewhere nothing).

    An aborted upload frees megabytes in 64 KiB pieces scattered through the heap; glibc keeps
    such holes as resident memory, and a burst of aborted uploads would leave RSS hundreds of
    MB higher although nothing of them is alive (scripts/abuse.py).
    """
    global _trim_pending
    if _trim_pending:
        return
    wait = _last_trim + _TRIM_INTERVAL_SECONDS - time.monotonic()
    if wait <= 0:
        _trim_now()
        return
    _trim_pending = True
    asyncio.get_running_loop().call_later(wait, _trim_now)


def _trim_now() -> None:
    global _last_trim, _malloc_trim, _trim_pending
    _trim_pending = False
    _last_trim = time.monotonic()
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def _parse_int(digits: str) -> int:
    """JSON integers, refusing the huge ones before Python's own limit does (its message names
    ``sys.set_int_max_str_digits()``, an interpreter detail that means nothing to a client)."""
    if len(digits.lstrip("-")) > 100:
        raise api_error("malformed_json", f"request body has a number of {len(digits.lstrip('-'))} "
                        "digits; numbers may have at most 100")
    return int(digits)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Every route streams its request body, so :meth:`prepare` sees every request's head before
    Tornado reads a byte of its body: the edge limits (414, 431, framing 400, 413 on
    ``Content-Length``) are answered here, as JSON, not by Tornado closing the connection.
    Routes without a body (GET, HEAD) count the bytes of one they are sent and drop them."""

    route = "unknown"
    accepts_body = False  # True: keep the body (up to max_body_bytes) for the handler
    role: str | None = None  # the key role the route needs when keys are on; None: open

    def initialize(self, services: Services) -> None:
        self.services = services
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
        wait = self.services.buckets.take(key.key_id, key.rate)
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
        if released >= _TRIM_AFTER_BYTES:
            _trim_heap()
        if self._counted:  # the client left before we answered; do not wait for it at drain
            self._counted = False
            self.services.request_finished()

    def send_json(self, payload: Any, status: int = 200) -> None:
        if isinstance(payload, dict):
            payload = {**payload, "request_id": self.request_id}
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(_dumps(payload))

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
        self.finish(_dumps({**body, "request_id": self.request_id}))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        status, body, unexpected = to_response(value)
        if unexpected:
            log.error("unexpected error on %s %s", _shown(self.request.method), _shown(self.request.path),
                      exc_info=(typ, value, tb))  # type: ignore[arg-type]  # value is set here
        elif status >= 500:
            log.warning("%s %s: %d %s", _shown(self.request.method), _shown(self.request.path), status,
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
            shown = content_type if len(content_type) <= 100 else content_type[:100] + "..."
            raise api_error("unsupported_media_type",
                            f"send JSON with Content-Type: application/json (got {shown or 'none'!r})")

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
            payload = json.loads(text, parse_int=_parse_int)
        except ApiError:
            raise
        except (ValueError, RecursionError) as exc:
            raise api_error("malformed_json", f"request body is not valid JSON: {exc}"[:300]) from None
        if not isinstance(payload, dict):
            raise api_error("invalid_request", f"request body must be a JSON object, got "
                            f"{type(payload).__name__}")
        return payload


class PredictHandler(JsonBodyHandler):
    route = "predict"
    role = "predict"

    def compute_etag(self) -> str | None:
        """No ``ETag``: every answer carries a fresh ``request_id``, so a client could never
        revalidate one, and Tornado would hash each GET body (SHA-1) for nothing (issue 14)."""
        return None

    async def get(self) -> None:
        values = self.request.query_arguments.get("text")
        if not values:
            raise api_error("missing_text", "give the text to score as ?text=...")
        if len(values) > 1:
            raise api_error("invalid_request", "give exactly one text parameter; "
                            "POST {\"texts\": [...]} scores several")
        try:
            text = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise api_error("invalid_utf8", "the text parameter is not UTF-8") from None
        data_id = self.get_query_argument("data_id", None)
        scorer = self.services.scorer
        await scorer.refresh()  # the policy named below is one of the policies serving now
        options = _score_options(self, scorer, self.get_query_argument("policy", None),
                                 self.get_query_argument("explain", None), self.get_query_argument("contacts", None))
        items = await scorer.score([text], await scorer.normalize_all_async([text]), **options)
        self.send_json({"data": _with_data_ids(items, [check_data_id(data_id)])[0]})

    async def post(self) -> None:
        body = self.json_object()
        scorer = self.services.scorer
        await scorer.refresh()
        options = _score_options(self, scorer, body.get("policy", self.get_query_argument("policy", None)),
                                 body.get("explain", self.get_query_argument("explain", None)),
                                 body.get("contacts", self.get_query_argument("contacts", None)))
        if "texts" in body and "text" in body:
            raise api_error("invalid_request", "give either text or texts, not both")
        if "texts" in body:
            texts = body["texts"]
            if not isinstance(texts, list):
                raise api_error("invalid_request", "texts must be a list of strings")
            if not texts:
                raise api_error("missing_text", "texts is empty")
            limit = self.services.config.max_texts
            if len(texts) > limit:
                raise api_error("too_many_texts", f"{len(texts)} texts in one request; the limit is {limit}")
            data_ids = data_ids_of(body, len(texts))
            items = await scorer.score(texts, await scorer.normalize_all_async(texts, "texts"), **options)
            self.send_json({"data": _with_data_ids(items, data_ids)})
        elif "text" in body:
            text = body["text"]
            data_id = check_data_id(body.get("data_id"))
            items = await scorer.score([text], await scorer.normalize_all_async([text]), **options)
            self.send_json({"data": _with_data_ids(items, [data_id])[0]})
        else:
            raise api_error("missing_text", 'give {"text": "..."} or {"texts": ["...", ...]}')


def _score_options(handler: BaseHandler, scorer: Scorer, policy: Any, explain: Any,
                   contacts: Any = None) -> dict[str, Any]:
    """``policy=``, ``explain=`` and ``contacts=`` of a predict request (query, or body for POST),
    and whether its client may see allow terms."""
    return {"policy": scorer.policy(policy), "explain": _flag("explain", explain),
            "contacts": _flag("contacts", contacts), "reveal_allow": handler.sees_allow_terms}


def _flag(name: str, value: Any) -> bool:
    """A true/false request option: JSON true/false, or true/1/false/0 in a query; unset: false."""
    if isinstance(value, str):
        value = {"true": True, "1": True, "false": False, "0": False}.get(value.lower(), value)
    if value is None:
        value = False
    if not isinstance(value, bool):
        raise api_error("invalid_request", f"{name} must be true or false")
    return value


def _with_data_ids(items: list[dict[str, Any]], data_ids: list[str | None]) -> list[dict[str, Any]]:
    """Echo each text's ``data_id`` in its item (only where the client gave one)."""
    for item, data_id in zip(items, data_ids):
        if data_id is not None:
            item["data_id"] = data_id
    return items


class FeedbackHandler(JsonBodyHandler):
    route = "feedback"
    role = "feedback"

    async def post(self) -> None:
        body = self.json_object()
        if "text" not in body:
            raise api_error("missing_text", 'give {"text": "...", "label": "spam" | "pass"}')
        text = body["text"]
        normalized = self.services.scorer.normalize_all([text])[0]
        if "label" not in body:
            raise api_error("invalid_label", "label is required: 'spam', 'pass', 0 or 1")
        try:
            label = parse_label(body["label"])
        except ValueError as exc:
            raise api_error("invalid_label", str(exc)) from None
        store = self.services.feedback_store
        if store is None:
            raise api_error("feedback_unavailable", "this service has no feedback store configured")
        version = self.services.backend.current_version
        # Which decision this feedback disputes: the request_id of that /predict answer and the
        # client's data_id of the text (both optional; stored with the row).
        refs = {name: str(check_data_id(body[name], name)) for name in ("request_id", "data_id")
                if body.get(name) is not None}
        loop = asyncio.get_running_loop()
        if self.services.keyring:
            refs["key_id"] = self.key_id
        try:
            record = await loop.run_in_executor(
                None, functools.partial(store.add, text, normalized, label, version, **refs))
        except FeedbackRefused as exc:
            if exc.reason == "quota_exceeded":
                now = time.time()
                raise api_error("quota_exceeded", str(exc),
                                {"Retry-After": str(max(1, math.ceil(86400 - now % 86400)))}) from None
            raise api_error("feedback_store_full", str(exc)) from None
        except Exception:
            log.exception("storing feedback failed")
            raise api_error("feedback_unavailable", "the feedback store failed; try again") from None
        self.send_json({"data": record}, status=202)


class HealthHandler(BaseHandler):
    route = "healthz"

    def get(self) -> None:
        self.send_json({"status": "ok"})

    def head(self) -> None:  # the same status and headers; Tornado sends no body for HEAD
        self.get()


class ReadyHandler(BaseHandler):
    route = "readyz"

    def get(self) -> None:
        backend = self.services.backend
        if not backend.ready:
            raise api_error("not_ready", f"no model version is usable yet ({backend.name} backend)")
        body: dict[str, Any] = {"ready": True, "backend": backend.name,
                                "model": {"name": self.services.config.model_name,
                                          "version": backend.current_version}}
        # Degraded stays ready (200): the serving version still answers correctly, and taking
        # every replica out of rotation because a bad version was published would turn one bad
        # file into an outage. The reason is here, in antispam_degraded and in an alert.
        reason = backend.degraded
        if reason:
            body["degraded"] = reason
        self.send_json(body)

    def head(self) -> None:
        self.get()


class ModelsHandler(BaseHandler):
    route = "models"
    role = "admin"

    def get(self) -> None:
        self.send_json(self.services.backend.status())


class MetricsHandler(BaseHandler):
    route = "metrics"

    def get(self) -> None:
        self.set_header("Content-Type", self.services.metrics.content_type)
        self.finish(self.services.metrics.exposition())


class ListsHandler(BaseHandler):
    """``GET /lists``: the term lists loaded now, their files and errors, and the policies (with
    their file's state)."""

    route = "lists"

    async def get(self) -> None:
        scorer = self.services.scorer
        body = (await scorer.refresh()).status()
        body["folder"] = str(scorer.lists.folder)
        body["policies"] = {name: p.as_dict() for name, p in sorted(scorer.policies.items())}
        body["policies_file"] = scorer.policy_watcher.status()
        self.send_json(body)


class OpenAPIHandler(BaseHandler):
    route = "openapi"

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(self.services.openapi)


class NotFoundHandler(BaseHandler):
    route = "not_found"

    def prepare(self) -> None:
        super().prepare()
        raise api_error("not_found", f"no route {_shown(self.request.path)}; see /openapi.json")


ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/predict", PredictHandler),
    (r"/feedback", FeedbackHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/models", ModelsHandler),
    (r"/metrics", MetricsHandler),
    (r"/openapi.json", OpenAPIHandler),
    (r"/lists", ListsHandler),
]


def openapi_document() -> bytes:
    return resources.files("antispam").joinpath("openapi.json").read_bytes()


def _shown(value: str | None, limit: int = 100) -> str:
    """A client-chosen string (path, method) as it may appear in a log line or an error message."""
    value = value or ""
    return value if len(value) <= limit else f"{value[:limit]}...(+{len(value) - limit} chars)"


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: successes only with -v (a line per request costs throughput), problems always.

    The line names the path and the query's size, never the query itself: a rejected
    ``GET /predict?text=...`` must not copy the client's text into the log.
    """
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.WARNING
    if access_log.isEnabledFor(level):
        request = handler.request
        query = f"?<{len(request.query)} bytes>" if request.query else ""
        access_log.log(level, "%d %s %s%s (%s key=%s) %.1fms rid=%s", status, _shown(request.method, 20),
                       _shown(request.path), query, request.remote_ip, getattr(handler, "key_id", "-"),
                       1000.0 * request.request_time(), getattr(handler, "request_id", "-"))


class CappedLogMessages(logging.Filter):
    """Cuts every log message to ``limit`` characters (tracebacks are kept whole).

    Installed on the root handlers by ``antispam serve``; it also caps what Tornado logs about
    malformed requests, whose messages quote the offending header.
    """

    def __init__(self, limit: int = LOG_MESSAGE_CHARS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.limit:
            record.msg = f"{message[:self.limit]}...(+{len(message) - self.limit} chars)"
            record.args = None
        return True


def cap_log_messages(limit: int = LOG_MESSAGE_CHARS) -> None:
    """Install :class:`CappedLogMessages` on every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CappedLogMessages) for f in handler.filters):
            handler.addFilter(CappedLogMessages(limit))


# Tornado answers a request it cannot parse (request line, header lines, chunk framing) with
# exactly these bytes, before any handler exists; HTTPServer below sends the JSON error instead.
_TORNADO_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_JSON_400_BODY = json.dumps(error_body("bad_request", "malformed HTTP request (request line, "
                                       "headers or body framing)")).encode()
_JSON_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=UTF-8\r\n"
             b"Content-Length: " + str(len(_JSON_400_BODY)).encode() + b"\r\nConnection: close\r\n\r\n"
             + _JSON_400_BODY)


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer, except that its own protocol errors are JSON too.

    When Tornado's HTTP/1 reader rejects a message before a handler could (a request line or
    header line it cannot parse, a bad chunk size), it writes a bare ``400 Bad Request`` to the
    stream and closes it. Each connection's stream here swaps those exact bytes for the JSON
    error shape (``bad_request``); everything else goes through untouched. Heads past the hard
    cap of :func:`server_options` and timeouts still end with the connection closed, as there is
    nothing to answer.
    """

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple) -> None:
        write = stream.write

        def write_json_errors(data: bytes | memoryview, *args: Any, **kwargs: Any) -> Any:
            if type(data) is bytes and data == _TORNADO_BARE_400:
                data = _JSON_400
            return write(data, *args, **kwargs)

        stream.write = write_json_errors  # type: ignore[method-assign]
        super().handle_stream(stream, address)


def server_options(config: ServeConfig) -> dict[str, Any]:
    """``HTTPServer`` settings that go with the app.

    * Heads (request line and headers) are read up to a hard cap above the project's own limits
      (``max_url_bytes`` + ``max_header_bytes``, twice over, plus 64 KiB), so that a head over
      those limits reaches a handler and is answered 414/431 in JSON; Tornado closes the
      connection only past the cap.
    * Bodies: the handlers answer 413 at ``max_body_bytes``; Tornado's own cut (twice that) is
      a backstop.
    * ``body_timeout``: the whole body must arrive within ``body_timeout_s`` (a client that
      trickles it is cut); ``idle_connection_timeout``: idle keep-alive connections and slow heads.
    """
    return {
        "max_header_size": 2 * (config.max_url_bytes + config.max_header_bytes) + 65536,
        "max_body_size": 2 * config.max_body_bytes + 65536,
        "body_timeout": config.body_timeout_s,
        "idle_connection_timeout": config.idle_timeout_s,
    }


def make_app(config: ServeConfig, backend: Backend, *, feedback_store: FeedbackStore | None = None,
             segmenter: Segmenter | None = None, keyring: KeyRing | None = None) -> tornado.web.Application:
    """Build the application; ``app.services`` holds what its handlers share."""
    metrics = Metrics()
    cache = PredictionCache(config.cache_size)
    scorer = Scorer(config, backend, segmenter or default_segmenter(), cache, metrics)
    add_listener = getattr(backend, "add_batch_listener", None)
    if callable(add_listener):
        add_listener(metrics.observe_batch)
        scorer.backend_reports_batches = True
    metrics.watch_backend(backend, config.model_name)
    metrics.watch_cache(cache)
    services = Services(config, backend, scorer, cache, metrics, feedback_store, openapi_document())
    if keyring is None and config.keys_file:  # issue 11: keys on (a bad file fails the start)
        keyring = KeyRing(config.keys_file, poll_seconds=config.keys_poll_seconds)
    services.keyring = keyring
    args = {"services": services}
    from antispam.console.handlers import console_routes  # the moderator's console (issue 13); imports this module

    app = tornado.web.Application(
        [*((path, handler, args) for path, handler in ROUTES), *console_routes(services)],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
        compress_response=False,
    )
    app.services = services  # type: ignore[attr-defined]
    return app
