"""Exceptions that carry a message meant for a person (CLI) or a client (HTTP), and the one
place that turns any exception into the HTTP error shape ``{"error": {"code", "message"}}``.

Handlers raise; they never build error bodies themselves. That way every status and code a
client can see is listed here (and in ``openapi.json``), and an unexpected exception still ends
as a JSON answer (500, logged) instead of an HTML page or a dropped connection.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input or setup the user can fix; the CLI prints it and exits non-zero."""

    exit_code = 2


class ApiError(Exception):
    """A client-visible failure with its HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}  # sent with the error (Retry-After, WWW-Authenticate)


class BackendError(Exception):
    """No usable answer from the model backend (down, deadline passed, overloaded): the client
    gets 503 with :attr:`code`. Defined here beside the other exception types, and re-exported
    by :mod:`antispam.backends.base` (the backend interface), so that :func:`to_response` needs
    no import of the backends (issue 22: no import cycles)."""

    code = "backend_unavailable"


class DeadlineExceeded(BackendError):
    code = "deadline_exceeded"


class Overloaded(BackendError):
    code = "overloaded"


class NotReady(BackendError):
    code = "not_ready"


# Every code the HTTP API can answer with, and its status. The OpenAPI document lists the same
# set (a test keeps them equal); clients may switch on the code, so codes never change meaning.
ERROR_CODES: dict[str, int] = {
    "missing_text": 400,       # no text / texts given, or an empty list
    "empty_text": 400,         # a text that is empty once normalized (only emoji, punctuation ...)
    "invalid_text": 400,       # not a string, or not valid Unicode (lone surrogates)
    "invalid_utf8": 400,       # query string or body bytes are not UTF-8
    "malformed_json": 400,     # body is not JSON
    "invalid_request": 400,    # JSON of the wrong shape (not an object, both text and texts ...)
    "invalid_label": 400,      # feedback label is not spam/pass/0/1
    "too_many_texts": 400,     # more than max_texts in one request
    "unknown_policy": 400,     # policy= names no configured policy (the message lists them)
    "bad_request": 400,        # any other malformed request (HTTP framing, request line, headers)
    "not_found": 404,
    "method_not_allowed": 405,
    "text_too_long": 413,      # one text over max_chars characters
    "body_too_large": 413,     # request body over max_body_bytes
    "too_many_chars": 413,     # the texts of one request total over max_request_chars characters
    "url_too_long": 414,       # request target over max_url_bytes
    "unsupported_media_type": 415,  # POST body that is not application/json
    "headers_too_large": 431,  # request header lines over max_header_bytes
    "unauthorized": 401,       # keys are on and no key, or an unknown key, was given
    "forbidden": 403,          # the key's roles do not include the route's
    "rate_limited": 429,       # the key's token bucket is empty (Retry-After)
    "quota_exceeded": 429,     # the key's daily feedback quota is used up (Retry-After)
    "feedback_store_full": 507,  # the feedback store is at its cap (rows or bytes)
    "internal_error": 500,     # a bug: logged with its traceback
    "not_ready": 503,          # no model version loaded yet
    "backend_unavailable": 503,  # the model backend failed
    "deadline_exceeded": 503,  # no answer within the deadline
    "overloaded": 503,         # the model queue is full
    "shutting_down": 503,      # the process is draining before exit
    "feedback_unavailable": 503,  # no feedback store configured, or it failed
    "decisions_unavailable": 503,  # GET /decisions: no store for the decision log, or it failed
    "rate_limiter_unavailable": 503,  # the shared rate limiter (Redis) is down and fails closed
    "campaign_tracker_unavailable": 503,  # the shared campaign tracker (Redis) is down and fails closed
    "keys_file_invalid": 503,  # /readyz: keys are on and the keys file cannot be used (fail closed)
    # issue 23: the review queue and appeals (docs/contracts.md#review-queue, #appeals)
    "lease_lost": 409,         # a review verdict from someone who no longer holds the item's lease
    "already_decided": 409,    # a review item decided before (by this holder with another verdict, or by another)
    "not_blocked": 409,        # an appeal of a decision that was not a block
    "text_unavailable": 422,   # an appeal of a decision whose text was not kept (send it; checked by hash)
    "review_unavailable": 503,  # no review store (no feedback store, no decision log), or it failed
}

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 414: "url_too_long", 415: "unsupported_media_type",
               431: "headers_too_large", 503: "backend_unavailable"}


def api_error(code: str, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """An :class:`ApiError` whose status comes from :data:`ERROR_CODES`."""
    return ApiError(ERROR_CODES[code], code, message, headers)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def to_response(exc: BaseException | None, status: int = 500) -> tuple[int, dict[str, Any], bool]:
    """Map any exception to ``(status, body, unexpected)``.

    ``unexpected`` is True when the exception is a bug (the caller logs its traceback); known
    failures are answers, not incidents. ``status`` is what the framework chose when there is no
    exception object (e.g. Tornado's own 404/405).
    """
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.code, exc.message), False
    if isinstance(exc, BackendError):
        return 503, error_body(exc.code, str(exc) or exc.code.replace("_", " ")), False
    import http.client

    import tornado.web

    message = None
    if isinstance(exc, tornado.web.HTTPError):
        status = exc.status_code
        message = exc.get_message()
    elif exc is not None:
        return 500, error_body("internal_error", "internal error"), True
    if status >= 500 and status != 503:
        return 500, error_body("internal_error", "internal error"), exc is not None
    code = _HTTP_CODES.get(status, "bad_request")
    message = message or http.client.responses.get(status, "error").lower()
    return status, error_body(code, message), False
