"""Appeal outcomes posted to the caller's callback URL (issue 23; docs/contracts.md#appeals).

The notification is a row written in the moderator's decision transaction
(:class:`antispam.review.Notification`); this module delivers the due rows:

* **At least once**: a row is marked delivered only after a 2xx answer; anything else (refused,
  timeout, 5xx, 4xx) is retried with exponential backoff (``callback_backoff_s`` × 2^(n-1), at most
  an hour, ±20 % jitter) until ``callback_max_attempts``, then kept as ``failed`` (counted in
  ``GET /review/stats``). A row being sent is claimed for :data:`CLAIM_SECONDS` in the store, so
  two processes do not send it at the same moment; a process that dies mid-send leaves the claim
  to run out and another (or the restarted one) sends it again. Receivers deduplicate with
  ``X-Antispam-Delivery`` (the row id, the same on every attempt).
* **Signed**: ``X-Antispam-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
  with the key's ``callback_secret`` from the keys file (never stored in the database). The
  receiver recomputes it over the raw body, compares in constant time, and refuses a ``t`` more
  than :data:`TOLERANCE_SECONDS` from its clock (replay). :func:`verify` is that check.
* The URL and secret are read from the keys file when the row is sent, so a rotated secret or a
  moved receiver applies to pending rows too; a key with no callback any more fails the row at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from antispam.review import Notification, ReviewQueue, backoff

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Antispam-Signature"
DELIVERY_HEADER = "X-Antispam-Delivery"
EVENT_HEADER = "X-Antispam-Event"
TOLERANCE_SECONDS = 300
CLAIM_SECONDS = 30.0
REQUEST_TIMEOUT_S = 5.0
POLL_SECONDS = 2.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None,
           tolerance: float = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the header parses, its time is within ``tolerance`` of now, and
    one of its ``v1`` signatures is the HMAC of ``"<t>." + body`` (several ``v1`` are accepted, so
    a sender may sign with an old and a new secret while a rotation is under way)."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _s, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, _s, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not signatures:
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, s) for s in signatures)


class CallbackSender:
    """Delivers due notifications from the queue's store, on the service's event loop."""

    def __init__(self, queue: ReviewQueue, keyring: Any, *, backoff_s: float, max_attempts: int,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.queue = queue
        self.keyring = keyring  # antispam.keys.KeyRing or None (keys off: no key has a callback)
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.sent = 0  # delivered (2xx)
        self.retried = 0  # attempts that failed and will be tried again
        self.failed = 0  # rows given up (max attempts, or no callback URL any more)

    def ensure_started(self) -> None:
        """Start the loop on the running event loop (once), or wake it for a new row."""
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        elif self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store down: try again at the next poll
                log.warning("appeal callbacks: %s: %s", type(exc).__name__, exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def deliver_due(self) -> int:
        """Send every due row once; how many were delivered."""
        loop = asyncio.get_running_loop()
        due = await loop.run_in_executor(None, lambda: self.queue.due_notifications(claim_seconds=CLAIM_SECONDS))
        delivered = 0
        for note in due:
            error = await self._send(note)
            if error is None:
                await loop.run_in_executor(None, self.queue.notification_done, note.id)
                delivered += 1
                self.sent += 1
                continue
            attempts = note.attempts + 1
            retry = None if attempts >= self.max_attempts or error.startswith("no callback") else \
                time.time() + backoff(attempts, self.backoff_s)
            if retry is None:
                self.failed += 1
                log.warning("appeal callback %d for key %s given up after %d attempts: %s", note.id,
                            note.key_id, attempts, error)
            else:
                self.retried += 1
            await loop.run_in_executor(None, self.queue.notification_failed, note.id, error, retry)
        return delivered

    def _target(self, key_id: str) -> tuple[str, str] | None:
        ring = self.keyring
        if ring is None:
            return None
        ring.refresh()
        for key in ring.keys.values():
            if key.key_id == key_id and key.callback_url and key.callback_secret:
                return key.callback_url, key.callback_secret
        return None

    async def _send(self, note: Notification) -> str | None:
        """None when delivered, else why not."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        target = self._target(note.key_id)
        if target is None:
            return f"no callback_url for key {note.key_id} in the keys file"
        url, secret = target
        body = json.dumps({**note.payload, "delivery": note.id}, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time())),
                   DELIVERY_HEADER: str(note.id), EVENT_HEADER: str(note.payload.get("event", ""))}
        request = HTTPRequest(url, method="POST", body=body, headers=headers, request_timeout=REQUEST_TIMEOUT_S,
                              connect_timeout=REQUEST_TIMEOUT_S, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPClientError as exc:
            return f"HTTP {exc.code}"
        except Exception as exc:  # noqa: BLE001 - refused, DNS, timeout: all mean "try again later"
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.code < 300:
            return None
        return f"HTTP {response.code}" if response.code != 599 else f"{response.error}"[:300]
