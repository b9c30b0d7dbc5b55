"""Sender context (issue 24, docs/contracts.md#sender-context): the caller's ``sender_id`` and
``room_id``, checked and hashed before anything counts or stores them.

The ids are the caller's own account or device ids: personal data of its users, which the service
needs only to tell senders apart. So the raw value lives only in the request: it is never
logged, stored, counted or echoed; what the campaign tracker (:mod:`antispam.campaigns`) and
Redis see is ``HMAC-SHA256(key, "sender:" + id)``, 16 bytes in hex.

Why a keyed HMAC rather than SHA-256 with a salt: the ids are low-entropy (user numbers, phone
numbers), so anyone holding the hashes and the salt (a salt is stored beside them, in the
settings of every process) could hash every candidate id and read the hashes back. A key does
the same job only if it is secret, which is what the HMAC construction is made for (and it has
no length-extension quirks). The key is the per-deployment setting ``ANTISPAM_SENDER_KEY``;
every process that shares counts (through one Redis) must have the same key, else one sender
is a different sender in each process. Without a key, a random one is drawn per process: fine
for the in-process counts, which are per process anyway, and the service says so in its log
when Redis is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from antispam.errors import api_error

ID_CHARS = 128  # like data_id
MIN_KEY_CHARS = 16
# Control characters (C0, DEL, C1) and lone surrogates (JSON "\ud800": not text, cannot be hashed).
_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_id(value: Any, where: str) -> str | None:
    """A ``sender_id``/``room_id``: a non-empty string of at most :data:`ID_CHARS` characters
    without control characters or lone surrogates, or None (absent). Anything else: 400 ``invalid_request``
    naming ``where`` (the value itself is not repeated)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise api_error("invalid_request", f"{where} must be a string, got {type(value).__name__}")
    if not value or len(value) > ID_CHARS:
        raise api_error("invalid_request", f"{where} must have 1 to {ID_CHARS} characters, got {len(value)}")
    if _BAD.search(value):
        raise api_error("invalid_request", f"{where} must not contain control characters or lone surrogates")
    return value


def ids_of(body: dict[str, Any], name: str, count: int) -> list[str | None]:
    """Per-text ids of a ``{"texts": [...]}`` body: the list ``<name>s`` (one per text, entries
    may be null), else the one ``<name>`` for every text, else none."""
    many, one = body.get(name + "s"), body.get(name)
    if many is not None:
        if one is not None:
            raise api_error("invalid_request", f"give either {name} or {name}s, not both")
        if not isinstance(many, list) or len(many) != count:
            raise api_error("invalid_request", f"{name}s must be a list with one entry per text ({count})")
        return [check_id(v, f"{name}s[{i}]") for i, v in enumerate(many)]
    return [check_id(one, name)] * count


class SenderHasher:
    """``HMAC-SHA256(key, kind + ":" + id)`` in hex (32 digits); see the module docstring."""

    def __init__(self, key: str = "") -> None:
        if key and len(key) < MIN_KEY_CHARS:
            raise ValueError(f"the sender key must have at least {MIN_KEY_CHARS} characters")
        self.random_key = not key
        self._key = key.encode("utf-8") if key else secrets.token_bytes(32)

    def __call__(self, value: str, kind: str = "sender") -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:  # never the key
        return f"SenderHasher(random_key={self.random_key})"
