"""What the service writes to its logs about requests: the access log line (never the query or
the body) and a cap on every message's length (docs/contracts.md#limits)."""

from __future__ import annotations

import logging

import tornado.web

from antispam.http.base import shown

access_log = logging.getLogger("antispam.access")

# Longest log message the service writes (docs/contracts.md#limits): a rejected 60 KB text or a
# 60 KB header value never reaches the log whole. Tracebacks are kept.
LOG_MESSAGE_CHARS = 300


def log_request(handler: tornado.web.RequestHandler) -> None:
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
