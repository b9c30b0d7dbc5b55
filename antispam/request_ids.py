"""Request and item ids (docs/contracts.md#request-ids): the service's id for each request and
the client's own ``data_id`` per text, so a decision can be found again from either side.

``request_id``: the client's ``X-Request-Id`` when it is sane (1-64 characters of
``[A-Za-z0-9._-]``), else a new uuid4 in hex. It is in every JSON answer, the ``X-Request-Id``
response header and the access log line. ``data_id``: an optional string per text, echoed in
that text's item and accepted by ``POST /feedback``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from antispam.errors import api_error

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATA_ID_CHARS = 128


def request_id_from(header: str | None) -> str:
    """The client's id if it is sane, else a fresh one (a client's bad id is replaced, not refused)."""
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def check_data_id(value: Any, where: str = "data_id") -> str | None:
    """A ``data_id`` (or a ``request_id`` sent back with feedback) is a string of at most
    :data:`DATA_ID_CHARS` characters, or null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise api_error("invalid_request", f"{where} must be a string, got {type(value).__name__}")
    if len(value) > DATA_ID_CHARS:
        raise api_error("invalid_request", f"{where} has {len(value)} characters; the limit is {DATA_ID_CHARS}")
    return value


def data_ids_of(body: dict[str, Any], count: int) -> list[str | None]:
    """The ``data_ids`` of a ``{"texts": [...], "data_ids": [...]}`` body: one per text, or none."""
    ids = body.get("data_ids")
    if ids is None:
        return [None] * count
    if not isinstance(ids, list) or len(ids) != count:
        raise api_error("invalid_request", f"data_ids must be a list with one entry per text ({count})")
    return [check_data_id(v, f"data_ids[{i}]") for i, v in enumerate(ids)]
