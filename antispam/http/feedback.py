"""``POST /feedback``: a client's verdict on a text, stored for the nightly retrain
(docs/contracts.md#feedback); the store's refusals are answers (429 quota, 507 full)."""

from __future__ import annotations

import asyncio
import functools
import math
import time

from antispam.errors import api_error
from antispam.feedback import FeedbackRefused
from antispam.http.base import JsonBodyHandler, log
from antispam.labels import parse_label
from antispam.request_ids import check_data_id


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
        except ValueError as exc:  # a text the store cannot keep (PostgreSQL: a NUL character)
            raise api_error("invalid_text", str(exc)) from None
        except Exception:
            log.exception("storing feedback failed")
            raise api_error("feedback_unavailable", "the feedback store failed; try again") from None
        self.send_json({"data": record}, status=202)
