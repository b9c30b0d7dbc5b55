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
import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import tornado.web

from antispam.backends.base import Backend
from antispam.cache import PredictionCache
from antispam.config import ServeConfig
from antispam.errors import api_error, to_response
from antispam.labels import parse_label
from antispam.metrics import Metrics
from antispam.scoring import Scorer
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)
access_log = logging.getLogger("antispam.access")


class FeedbackStore(Protocol):
    def add(self, text: str, normalized: str, label: int, model_version: int | None) -> dict: ...


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


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


class BaseHandler(tornado.web.RequestHandler):
    route = "unknown"

    def initialize(self, services: Services) -> None:
        self.services = services
        self._counted = False
        self._body = bytearray()
        self._too_large = False

    def prepare(self) -> None:
        if self.services.draining:
            self.set_header("Connection", "close")
            raise api_error("shutting_down", "the service is shutting down")
        self.services.request_started()
        self._counted = True

    def on_finish(self) -> None:
        if self._counted:
            self._counted = False
            self.services.request_finished()
        self.services.metrics.observe_request(self.route, self.request.method or "",
                                              self.get_status(), self.request.request_time())

    def on_connection_close(self) -> None:
        if self._counted:  # the client left before we answered; do not wait for it at drain
            self._counted = False
            self.services.request_finished()

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(_dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        status, body, _unexpected = to_response(exc, status_code)
        self.set_status(status)
        if status == 405:
            self.set_header("Allow", ", ".join(self._allowed_methods()))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(_dumps(body))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        status, body, unexpected = to_response(value)
        if unexpected:
            log.error("unexpected error on %s %s", self.request.method, self.request.path,
                      exc_info=(typ, value, tb))  # type: ignore[arg-type]  # value is set here
        elif status >= 500:
            log.warning("%s %s: %d %s", self.request.method, self.request.path, status,
                        body["error"]["message"])

    def _allowed_methods(self) -> list[str]:
        return [m for m in ("GET", "POST") if getattr(type(self), m.lower()) is not
                getattr(tornado.web.RequestHandler, m.lower())]


@tornado.web.stream_request_body
class JsonBodyHandler(BaseHandler):
    """Reads a JSON body with the limits checked before and while it arrives, not after."""

    def prepare(self) -> None:
        super().prepare()
        if self.request.method != "POST":
            return
        limit = self.services.config.max_body_bytes
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise api_error("body_too_large", f"request body of {length} bytes is over the limit "
                            f"of {limit}")
        content_type = self.request.headers.get("Content-Type", "")
        mime, _, params = content_type.partition(";")
        mime = mime.strip().lower()
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.I)
        if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))) \
                or (charset and charset.group(1).lower() not in ("utf-8", "utf8")):
            raise api_error("unsupported_media_type",
                            f"send JSON with Content-Type: application/json (got {content_type or 'none'!r})")
        # Chunked bodies have no length up front: read a bounded amount, then stop the connection.
        # An HTTP1Connection (Tornado types it as the HTTPConnection interface, which lacks this).
        self.request.connection.set_max_body_size(2 * limit + 65536)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if self._too_large:
            return
        if len(self._body) + len(chunk) > self.services.config.max_body_bytes:
            self._too_large = True
            self._body = bytearray()
            return
        self._body += chunk

    def json_object(self) -> dict[str, Any]:
        if self._too_large:
            raise api_error("body_too_large", "request body is over the limit of "
                            f"{self.services.config.max_body_bytes} bytes")
        try:
            text = bytes(self._body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise api_error("invalid_utf8", f"request body is not UTF-8 (byte {exc.start})") from None
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise api_error("malformed_json", f"request body is not valid JSON: {exc}"[:300]) from None
        if not isinstance(payload, dict):
            raise api_error("invalid_request", f"request body must be a JSON object, got "
                            f"{type(payload).__name__}")
        return payload


class PredictHandler(JsonBodyHandler):
    route = "predict"

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
        scorer = self.services.scorer
        items = await scorer.score([text], scorer.normalize_all([text]))
        self.send_json({"data": items[0]})

    async def post(self) -> None:
        body = self.json_object()
        scorer = self.services.scorer
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
            items = await scorer.score(texts, scorer.normalize_all(texts, "texts"))
            self.send_json({"data": items})
        elif "text" in body:
            text = body["text"]
            items = await scorer.score([text], scorer.normalize_all([text]))
            self.send_json({"data": items[0]})
        else:
            raise api_error("missing_text", 'give {"text": "..."} or {"texts": ["...", ...]}')


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
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(None, store.add, text, normalized, label, version)
        except Exception:
            log.exception("storing feedback failed")
            raise api_error("feedback_unavailable", "the feedback store failed; try again") from None
        self.send_json({"data": record}, status=202)


class HealthHandler(BaseHandler):
    route = "healthz"

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    route = "readyz"

    def get(self) -> None:
        backend = self.services.backend
        if not backend.ready:
            raise api_error("not_ready", f"no model version is usable yet ({backend.name} backend)")
        self.send_json({"ready": True, "backend": backend.name,
                        "model": {"name": self.services.config.model_name,
                                  "version": backend.current_version}})


class ModelsHandler(BaseHandler):
    route = "models"

    def get(self) -> None:
        self.send_json(self.services.backend.status())


class MetricsHandler(BaseHandler):
    route = "metrics"

    def get(self) -> None:
        self.set_header("Content-Type", self.services.metrics.content_type)
        self.finish(self.services.metrics.exposition())


class OpenAPIHandler(BaseHandler):
    route = "openapi"

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(self.services.openapi)


class NotFoundHandler(BaseHandler):
    route = "not_found"

    def prepare(self) -> None:
        super().prepare()
        raise api_error("not_found", f"no route {self.request.path}; see /openapi.json")


ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/predict", PredictHandler),
    (r"/feedback", FeedbackHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/models", ModelsHandler),
    (r"/metrics", MetricsHandler),
    (r"/openapi.json", OpenAPIHandler),
]


def openapi_document() -> bytes:
    return resources.files("antispam").joinpath("openapi.json").read_bytes()


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: successes only with -v (a line per request costs throughput), problems always."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.WARNING
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %.1fms", status, handler._request_summary(),
                       1000.0 * handler.request.request_time())


def server_options(config: ServeConfig) -> dict[str, Any]:
    """``HTTPServer`` settings that go with the app: bodies past the JSON handlers' own bounded
    read (twice ``max_body_bytes``) are cut by Tornado itself."""
    return {"max_body_size": 2 * config.max_body_bytes + 65536, "idle_connection_timeout": 75}


def make_app(config: ServeConfig, backend: Backend, *, feedback_store: FeedbackStore | None = None,
             segmenter: Segmenter | None = None) -> tornado.web.Application:
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
