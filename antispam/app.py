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

import logging
import typing
from importlib import resources
from typing import Any

import tornado.web

from antispam.backends.base import Backend
from antispam.cache import PredictionCache
from antispam.config import ServeConfig, trusted_networks
from antispam.console.handlers import console_routes
from antispam.decisions import DecisionLog, DecisionStorage
from antispam.http.base import BaseHandler
from antispam.http.decisions import DecisionsHandler
from antispam.http.feedback import FeedbackHandler
from antispam.http.logs import log_request
from antispam.http.ops import (
    HealthHandler,
    ListsHandler,
    MetricsHandler,
    ModelsHandler,
    NotFoundHandler,
    OpenAPIHandler,
    ReadyHandler,
)
from antispam.http.predict import PredictHandler
from antispam.http.review import (
    AppealsHandler,
    ReviewDecisionHandler,
    ReviewNextHandler,
    ReviewReleaseHandler,
    ReviewStatsHandler,
)
from antispam.http.services import FeedbackWriter, Services
from antispam.keys import KeyRing
from antispam.metrics import Metrics
from antispam.review import ReviewQueue, review_listener
from antispam.review_stores import review_queue_for
from antispam.scoring import Scorer
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)

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
    r"/decisions": "admin",  # issue 23: the decision log (texts of blocked and reviewed messages)
    # Issue 23: moderators need labeler (their verdicts are trusted feedback); the queue's figures,
    # no texts, are viewer's (the console's Review view shows them); appeals come from the calling
    # backend, on behalf of its user, with its predict key.
    r"/review/next": "labeler",
    r"/review/([0-9]{1,18})/decision": "labeler",
    r"/review/([0-9]{1,18})/release": "labeler",
    r"/review/stats": "viewer",
    r"/appeals": "predict",
    r"/console": None,  # the page itself: it asks for a key on the first 401
    r"/console/([^/]*)": None,
    r"/console/api/info": "viewer",  # thresholds and folder paths
    r"/console/api/live": "viewer",
    r"/console/api/campaigns": "viewer",  # example texts of campaigns, their contacts
    r"/console/api/blocklist": "admin",  # writes the block list file
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
    (r"/decisions", DecisionsHandler),
    (r"/review/next", ReviewNextHandler),
    (r"/review/([0-9]{1,18})/decision", ReviewDecisionHandler),
    (r"/review/([0-9]{1,18})/release", ReviewReleaseHandler),
    (r"/review/stats", ReviewStatsHandler),
    (r"/appeals", AppealsHandler),
]


def openapi_document() -> bytes:
    return resources.files("antispam").joinpath("openapi.json").read_bytes()


def make_app(config: ServeConfig, backend: Backend, *, feedback_store: FeedbackWriter | None = None,
             segmenter: Segmenter | None = None, keyring: KeyRing | None = None,
             decision_log: DecisionLog | None = None,
             review_queue: ReviewQueue | None = None) -> tornado.web.Application:
    """Build the application; ``app.services`` holds what its handlers share. ``decision_log``
    (issue 23): the writer ``/predict`` hands its decisions to (its owner closes it);
    ``review_queue``: the queue its ``review`` decisions enter (default: the one in the
    feedback store's database, :func:`antispam.review_stores.review_queue_for`)."""
    metrics = Metrics()
    cache = PredictionCache(config.cache_size)
    campaigns = None
    if config.redis_url:  # issue 24: campaigns counted across every process (antispam/campaigns.py)
        from antispam.campaigns import make_tracker

        campaigns = make_tracker(config.redis_url, window_seconds=config.campaign_window_s,
                                 min_senders=config.campaign_min_senders, fail=config.redis_fail,
                                 timeout_ms=config.redis_timeout_ms, max_counters=config.campaign_max_counters)
        if not config.sender_key:
            log.warning("ANTISPAM_REDIS_URL is set but ANTISPAM_SENDER_KEY is not: each process hashes sender "
                        "ids with its own random key, so a sender counts once per process in the shared "
                        "campaign counts; set the same key in every process")
    scorer = Scorer(config, backend, segmenter or default_segmenter(), cache, metrics, campaigns=campaigns)
    add_listener = getattr(backend, "add_batch_listener", None)
    if callable(add_listener):
        add_listener(metrics.observe_batch)
        scorer.backend_reports_batches = True
    metrics.watch_backend(backend, config.model_name)
    metrics.watch_cache(cache)
    metrics.watch_campaigns(scorer.campaigns)
    services = Services(config, backend, scorer, cache, metrics, feedback_store, openapi_document())
    if keyring is None and config.keys_file:  # issue 11: keys on (a bad file fails the start)
        keyring = KeyRing(config.keys_file, poll_seconds=config.keys_poll_seconds)
    services.keyring = keyring
    if config.redis_url:  # issue 23: one bucket per key across every process (antispam/ratelimit.py)
        from antispam.ratelimit import make_limiter

        services.buckets = make_limiter(config.redis_url, config.redis_fail, config.redis_timeout_ms)
    services.trusted_proxies = trusted_networks(config.trusted_proxy)
    if decision_log is not None:
        services.decisions = decision_log
        metrics.watch_decisions(decision_log)
    if callable(getattr(feedback_store, "find_decisions", None)):
        services.decision_store = typing.cast(DecisionStorage, feedback_store)
    services.review = review_queue if review_queue is not None else review_queue_for(feedback_store)
    listener: Any = None
    if services.review is not None and services.decisions is not None:
        # review decisions enter the queue in the decision log's writer thread, off the request path
        listener = review_listener(services.review)
        services.decisions.add_listener(listener)
    if services.review is not None:  # issue 23: appeal outcomes to the callers' callback URLs
        from antispam.callbacks import CallbackSender

        services.callbacks = CallbackSender(services.review, keyring, backoff_s=config.callback_backoff_s,
                                            max_attempts=config.callback_max_attempts)
        services.callbacks.ensure_started()  # inside a running loop (serve); else at the first decision
        metrics.watch_review(services.review, services.callbacks, listener)  # queue gauges, verdicts, callbacks
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
        log_function=log_request,
        compress_response=False,
    )
    app.services = services  # type: ignore[attr-defined]
    return app
