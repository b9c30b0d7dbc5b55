"""The HTTP API (docs/contracts.md#http-api), built by an application factory.

:func:`make_app` receives its collaborators (config, backend, feedback store) and hands them to
the handlers through :class:`antispam.http.services.Services`; nothing is a module global and
nothing heavy happens at import (the segmenter is created by the factory, TensorFlow only by a
backend's ``start``). What every route shares (services, base handlers) is in
:mod:`antispam.http`, which the console's handlers import too.

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
import time
from importlib import resources
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web

from antispam.backends.base import Backend
from antispam.cache import PredictionCache
from antispam.config import ServeConfig, trusted_networks
from antispam.console.handlers import console_routes
from antispam.errors import api_error, error_body
from antispam.feedback import FeedbackRefused
from antispam.http.base import BaseHandler, JsonBodyHandler, shown
from antispam.http.services import FeedbackWriter, Services
from antispam.keys import KeyRing
from antispam.labels import parse_label
from antispam.metrics import Metrics
from antispam.request_ids import check_data_id, data_ids_of
from antispam.scoring import Scorer
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)  # "antispam.app", as antispam.http.base's
access_log = logging.getLogger("antispam.access")

# Longest log message the service writes (docs/contracts.md#limits): a rejected 60 KB text or a
# 60 KB header value never reaches the log whole. Tracebacks are kept.
LOG_MESSAGE_CHARS = 300


class PredictHandler(JsonBodyHandler):
    route = "predict"

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
        ring = self.services.keyring
        if ring is not None:  # issue 21: a bad keys file is seen here even with no keyed traffic
            ring.refresh()
            if ring.problem is not None:
                # The details (path, line, key id) go to the log, not to this open route.
                raise api_error("keys_file_invalid", "the API keys file is invalid, so no key "
                                "authenticates until it is fixed (fail closed); the service log and "
                                "`antispam keys list` name the problem")
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

    def get(self) -> None:
        body = self.services.backend.status()
        body["decision"] = self.services.scorer.decision_status()
        self.send_json(body)


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
        raise api_error("not_found", f"no route {shown(self.request.path)}; see /openapi.json")


# Issue 21: the one table of which key role each route needs when keys are on (None: open to
# anyone). Every route make_app registers must be here, or the app refuses to build: no route is
# added without a role decision. tests/service/test_route_roles.py walks the app with keys on and
# checks each route against this table, and keeps docs/operations.md#api-keys-roles-and-quotas
# equal to it. Role inheritance (admin implies viewer, ...) is antispam.keys.IMPLIES.
ROUTE_ROLES: dict[str, str | None] = {
    r"/predict": "predict",
    r"/feedback": "feedback",
    r"/healthz": None,  # probes
    r"/readyz": None,
    r"/metrics": None,  # Prometheus scrapes inside the cluster; no texts, no keys (operations.md)
    r"/openapi.json": None,
    r"/models": "viewer",  # read-only status; the console's Models view
    r"/lists": "admin",  # thresholds, folder paths, list parse errors quoting terms
    r"/console": None,  # the page itself: it asks for a key on the first 401
    r"/console/([^/]*)": None,
    r"/console/api/info": "viewer",  # thresholds and folder paths
    r"/console/api/live": "viewer",
    r"/console/api/promotions": "viewer",
    r"/console/api/versions": "viewer",
    r"/console/api/versions/([0-9]{1,9})": "viewer",
    r"/console/api/versions/([0-9]{1,9})/report/(curves|confusion)\.png": "viewer",
}

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
        access_log.log(level, "%d %s %s%s (%s key=%s) %.1fms rid=%s", status, shown(request.method, 20),
                       shown(request.path), query, request.remote_ip, getattr(handler, "key_id", "-"),
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


def make_app(config: ServeConfig, backend: Backend, *, feedback_store: FeedbackWriter | None = None,
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
    services.trusted_proxies = trusted_networks(config.trusted_proxy)
    if keyring is not None:
        metrics.watch_keys(keyring)
    args: dict[str, Any] = {"services": services}
    rules = [*((path, handler, args) for path, handler in ROUTES), *console_routes(services)]
    missing = [path for path, _handler, _args in rules if path not in ROUTE_ROLES]
    if missing:
        raise RuntimeError(f"routes without a role decision in antispam.app.ROUTE_ROLES: {missing}")
    app = tornado.web.Application(
        [(path, handler, {**kwargs, "role": ROUTE_ROLES[path]}) for path, handler, kwargs in rules],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
        compress_response=False,
    )
    app.services = services  # type: ignore[attr-defined]
    return app
