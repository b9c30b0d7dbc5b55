"""One worker's life: build the backend, the feedback store and the app, serve until a stop
signal, drain the requests in flight, close.

Shutdown (SIGTERM or SIGINT): stop accepting connections, answer requests already in flight
(new requests on open connections get 503 ``shutting_down``), close the backend, return 0.
The app, Tornado and the backends are imported inside :func:`serve`, after the fork.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from antispam.config import ServeConfig
from antispam.errors import UserError
from antispam.runtime.sockets import display_url

if TYPE_CHECKING:  # pragma: no cover
    from antispam.backends.base import Backend
    from antispam.decisions import DecisionLog
    from antispam.feedback import FeedbackStorage

log = logging.getLogger("antispam.serve")  # the name the service's start and stop lines always had

# Seconds a worker may spend answering requests in flight after a stop signal, beyond the
# deadline those requests already have.
DRAIN_EXTRA_SECONDS = 5.0
# Seconds the decision log may take at shutdown to store what is queued (the rest is dropped
# and counted): a PostgreSQL that is down must not hold a stopping pod until it is killed.
DECISION_FLUSH_SECONDS = 5.0


def make_backend(config: ServeConfig) -> Backend:
    """The factory decides (local | grpc | rest | auto)."""
    from antispam.backends.factory import make_backend as factory  # numpy: in the worker, not at import

    return factory(config)


def make_feedback_store(config: ServeConfig) -> FeedbackStorage | None:
    """The feedback store ``--feedback-db`` names: a SQLite file, or PostgreSQL for a
    ``postgresql://`` URL (issue 23: any replica accepts /feedback); None when not set (``POST
    /feedback`` answers 503 ``feedback_unavailable``). Nothing is opened yet: the first /feedback
    does, so a database that is down is a 503 there, not a failed start."""
    if not config.feedback_db:
        return None
    from antispam.feedback import FeedbackError
    from antispam.feedback_stores import open_store

    try:
        return open_store(config.feedback_db, max_rows=config.feedback_max_rows,
                          max_bytes=config.feedback_max_bytes, daily_count=config.feedback_daily_count,
                          daily_bytes=config.feedback_daily_bytes, mask_contacts=config.feedback_mask_contacts)
    except FeedbackError as exc:  # a PostgreSQL URL without psycopg installed
        raise UserError(str(exc)) from None


def make_decision_log(config: ServeConfig, store: FeedbackStorage | None) -> DecisionLog | None:
    """The decision log's writer (issue 23), on the feedback store: on by default whenever a
    store is configured (the quickstart's SQLite file included), off with
    ``--no-decision-log``. Its thread starts now; nothing touches the store before the first decision."""
    if not config.decision_log or store is None:
        return None
    from antispam.decisions import DecisionLog, TextRetention

    return DecisionLog(store, queue_size=config.decision_queue,
                       retention=TextRetention.parse(config.decision_text_days, config.decision_text_for))


async def serve(config: ServeConfig, sockets: list[socket.socket], port: int,
                worker: int | None = None) -> int:
    """One worker's life: build everything, serve until a stop signal, drain, close."""
    from antispam.app import make_app
    from antispam.http.logs import cap_log_messages
    from antispam.http.server import HTTPServer, server_options

    started = time.monotonic()
    cap_log_messages()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backend = make_backend(config)
    store = make_feedback_store(config)
    decision_log = make_decision_log(config, store)
    try:
        app = make_app(config, backend, feedback_store=store, decision_log=decision_log)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    server = HTTPServer(app, **server_options(config))
    server.add_sockets(sockets)
    who = f" (worker {worker}, pid {os.getpid()})" if worker is not None else f" (pid {os.getpid()})"
    url = display_url(config.host, port)
    log.info("listening on %s%s; starting the %s backend (event loop %s)", url, who, config.backend,
             type(loop).__module__.partition(".")[0])

    starting = loop.create_task(backend.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    freeze_heap()
    if starting.done():
        if starting.exception() is not None:
            error = starting.exception()
            log.error("the %s backend failed to start: %s", config.backend, error, exc_info=error)
            stop.set()
            code = 1
        elif backend.ready:
            log.info("ready on %s%s: backend %s, model %s version %s, started in %.1f s", url, who,
                     backend.name, config.model_name, backend.current_version,
                     time.monotonic() - started)
        else:
            log.info("ready on %s%s: backend %s, no model version of %s yet (/readyz answers 503 "
                     "until one appears), started in %.1f s", url, who, backend.name,
                     config.model_name, time.monotonic() - started)
    else:
        starting.cancel()
    freezer = loop.create_task(keep_heap_frozen(backend, max(config.poll_seconds, 1.0)))
    await stopping
    freezer.cancel()

    services = app.services  # type: ignore[attr-defined]
    log.info("stopping%s: no new connections, %d requests in flight", who, services.inflight)
    server.stop()
    drained = await services.drain(config.deadline_ms / 1000.0 + DRAIN_EXTRA_SECONDS)
    if not drained:
        log.warning("%d requests still in flight after the drain period; closing anyway",
                    services.inflight)
    try:
        await asyncio.wait_for(server.close_all_connections(), 5.0)
    except asyncio.TimeoutError:
        log.warning("some connections did not close in time")
    await backend.close()
    if decision_log is not None:  # store what the answered requests decided, for a bounded time
        await loop.run_in_executor(None, decision_log.close, DECISION_FLUSH_SECONDS)
    close = getattr(store, "close", None)
    if callable(close):
        close()
    log.info("stopped%s", who)
    return code


def freeze_heap() -> None:
    """Hide everything alive now (TensorFlow, the model, jieba's dictionary) from the cyclic GC.

    With TensorFlow loaded a full collection walks millions of objects and holds the event loop
    for ~200 ms; a maximal request allocates enough (300,000 tokens) to trigger several. Frozen
    objects are skipped, so a collection only walks what requests allocate (issue 11:
    /healthz answers within 50 ms while a maximal request is scored).
    """
    gc.collect()
    gc.freeze()


async def keep_heap_frozen(backend: Any, interval: float) -> None:
    """Freeze again after each version switch (unfreezing first, so the old version's objects
    can be collected: one ~200 ms collection per switch)."""
    version = backend.current_version
    while True:
        await asyncio.sleep(interval)
        if backend.current_version != version:
            version = backend.current_version
            gc.unfreeze()
            freeze_heap()
