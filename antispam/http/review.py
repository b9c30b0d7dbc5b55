"""The review queue and appeals over HTTP (issue 23; docs/contracts.md#review-queue, #appeals).

- ``POST /review/next`` (``labeler``): lease the oldest item nobody holds; the answer carries the
  lease token the verdict must present, the item's text with the serving version's explanation,
  and the version and policy that asked for review.
- ``POST /review/<id>/decision`` (``labeler``): ``{"lease", "verdict": "spam"|"pass", "reason"}``,
  once; the verdict becomes trusted feedback in the same transaction (:mod:`antispam.review`).
- ``POST /review/<id>/release`` (``labeler``): give a held item back (the console's skip).
- ``GET /review/stats`` (``viewer``): depth, age of the oldest item, the depth over the last hours.
- ``POST /appeals`` (``predict``): the calling backend appeals one of its blocks for its user.

The stores are blocking (SQLite, psycopg): every call runs on the executor. A store that is down
is 503 ``review_unavailable`` JSON, never a 500.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import time
from typing import Any, Callable, TypeVar

from antispam.errors import api_error
from antispam.feedback import FeedbackError, FeedbackRefused
from antispam.http.base import BaseHandler, JsonBodyHandler
from antispam.request_ids import check_data_id
from antispam.review import MAX_EXCLUDE, MAX_REASON_CHARS, ReviewError, ReviewItem, ReviewQueue, decision_item

log = logging.getLogger("antispam.app")
T = TypeVar("T")
MAX_HISTORY_HOURS = 48.0


async def call_store(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A store call on the executor, its failures as API errors."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
    except ReviewError as exc:
        raise api_error(exc.code, str(exc)) from None
    except FeedbackRefused as exc:
        if exc.reason == "quota_exceeded":
            raise api_error("quota_exceeded", str(exc),
                            {"Retry-After": str(max(1, math.ceil(86400 - time.time() % 86400)))}) from None
        raise api_error("feedback_store_full", str(exc)) from None
    except FeedbackError as exc:
        log.warning("review store: %s", exc)
        raise api_error("review_unavailable", "the review store failed; try again") from None
    except ValueError as exc:  # a text the store cannot keep
        raise api_error("invalid_text", str(exc)) from None


class ReviewBase(JsonBodyHandler):
    route = "review"

    @property
    def queue(self) -> ReviewQueue:
        queue = getattr(self.services, "review", None)
        if queue is None:
            raise api_error("review_unavailable", "this service has no review queue (it needs a feedback "
                            "store: ANTISPAM_FEEDBACK_DB)")
        return queue

    def lease_of(self, body: dict[str, Any]) -> str:
        token = body.get("lease")
        if not isinstance(token, str) or not 0 < len(token) <= 200:
            raise api_error("invalid_request", 'give the lease token POST /review/next answered: {"lease": "..."}')
        return token

    def has_callback(self, key_id: str) -> bool:
        """Whether the keys file gives ``key_id`` a callback URL (an appeal's outcome is then
        written as a notification to deliver; called in the decision's transaction)."""
        ring = self.services.keyring
        return ring is not None and any(k.key_id == key_id and k.callback_url for k in ring.keys.values())

    def start_callbacks(self) -> None:
        sender = getattr(self.services, "callbacks", None)
        if sender is not None:
            sender.ensure_started()


def shown_item(item: ReviewItem) -> dict[str, Any]:
    return item.public()


class ReviewNextHandler(ReviewBase):
    async def post(self) -> None:
        body = self.json_object()
        exclude = body.get("exclude", [])
        if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE or \
                not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 10**18 for i in exclude):
            raise api_error("invalid_request", f"exclude must be a list of at most {MAX_EXCLUDE} item ids")
        seconds = self.services.config.review_lease_seconds
        item = await call_store(self.queue.take, self.key_id, seconds, exclude=exclude)
        if item is None:
            self.send_json({"data": None, "message": "the review queue is empty"})
            return
        shown = shown_item(item)
        shown["lease"] = {"token": item.lease_token, "until": item.lease_until, "seconds": seconds}
        shown["explanation"] = await self.explain(item)
        self.send_json({"data": shown})

    async def explain(self, item: ReviewItem) -> dict[str, Any]:
        """The serving version's reading of the text (``reasons`` as ``explain=true`` gives them),
        under the item's policy when it still exists; an explanation that cannot be had (no model
        yet, the backend down) leaves only the decision's own list matches, not the take."""
        scorer = self.services.scorer
        try:
            await scorer.refresh()
            policy = scorer.policies.get(item.policy or "") if item.policy else None
            normalized = scorer.normalize_all([item.text])
            scored = await scorer.score([item.text], normalized, policy=policy, explain=True,
                                        reveal_allow=self.sees_allow_terms)
        except Exception as exc:  # noqa: BLE001 - the item is still worth reviewing without it
            return {"reasons": [], "problem": f"no explanation: {type(exc).__name__}: {exc}"[:200]}
        answer = scored[0]
        model: dict[str, Any] = answer["model"] if isinstance(answer.get("model"), dict) else {}
        return {"reasons": answer.get("reasons", []), "model_version": model.get("version"),
                "spam_probability": answer.get("spam_probability"), "suggestion": answer.get("suggestion")}


class ReviewDecisionHandler(ReviewBase):
    async def post(self, item_id: str) -> None:
        body = self.json_object()
        token = self.lease_of(body)
        verdict = body.get("verdict")
        if verdict not in ("spam", "pass"):
            raise api_error("invalid_label", "verdict must be 'spam' or 'pass'")
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise api_error("invalid_request", f"reason must be a string of at most {MAX_REASON_CHARS} characters")
        scorer = self.services.scorer

        def normalize(text: str) -> str:
            return scorer.normalize_all([text])[0]

        item, repeated = await call_store(self.queue.decide, int(item_id), token, self.key_id, verdict, reason,
                                          normalize, notify=self.has_callback)
        if not repeated:
            self.services.metrics.observe_review_verdict(item.source, verdict)
        if item.source == "appeal":
            self.start_callbacks()
        self.send_json({"data": {**shown_item(item), "repeated": repeated}})


class ReviewReleaseHandler(ReviewBase):
    async def post(self, item_id: str) -> None:
        token = self.lease_of(self.json_object())
        await call_store(self.queue.release, int(item_id), token, self.key_id)
        self.send_json({"data": {"id": int(item_id), "released": True}})


class ReviewStatsHandler(BaseHandler):
    route = "review"

    async def get(self) -> None:
        raw = self.get_query_argument("hours", "6")
        try:
            hours = float(raw)
        except ValueError:
            hours = -1.0
        if not (0 < hours <= MAX_HISTORY_HOURS):
            raise api_error("invalid_request", f"hours must be a number above 0 and at most {MAX_HISTORY_HOURS:g}")
        queue = getattr(self.services, "review", None)
        if queue is None:
            raise api_error("review_unavailable", "this service has no review queue (it needs a feedback store)")
        stats = await call_store(queue.stats, hours=hours)
        self.send_json({"data": stats})


class AppealsHandler(ReviewBase):
    """``POST /appeals {request_id | data_id, index?, reason, text?}``: the decision is looked up in
    the decision log; only a ``block`` of the calling key may be appealed, once (a repeat answers
    the appeal already made)."""

    route = "appeals"

    async def post(self) -> None:
        body = self.json_object()
        request_id = body.get("request_id")
        data_id = body.get("data_id")
        if request_id is None and data_id is None:
            raise api_error("invalid_request", 'give the decision to appeal: {"request_id": ...} or {"data_id": ...}')
        request_id = check_data_id(request_id, "request_id") if request_id is not None else None
        data_id = check_data_id(data_id, "data_id") if data_id is not None else None
        index = body.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 10_000):
            raise api_error("invalid_request", "index must be the text's position in its request (0 ...)")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
            raise api_error("invalid_request", f"reason is required: why the block is wrong, at most "
                            f"{MAX_REASON_CHARS} characters")
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise api_error("invalid_text", "text must be a string (the blocked text, when the service did "
                            "not keep it)")
        queue = self.queue
        self.limit_appeals()
        decision = await self.find_decision(request_id, data_id, index)
        if decision.get("suggestion") != "block":
            raise api_error("not_blocked", f"decision {decision.get('request_id')}#{decision.get('index', 0)} was "
                            f"{decision.get('suggestion')!r}; only a block can be appealed")
        existing = await call_store(queue.find_appeal, str(decision.get("request_id")), int(decision.get("index") or 0))
        if existing is None:
            text = self.text_of(decision, text)
            item = {**decision, "source": "appeal", "text": text, "appeal_reason": reason.strip(),
                    "key_id": decision.get("key_id") or self.key_id}
            [(item_id, added)] = await call_store(queue.enqueue, [item])
            existing = await call_store(queue.get, item_id)
        else:
            added = False
        assert existing is not None
        self.send_json({"data": appeal_view(existing, new=added)}, status=202 if added else 200)

    def limit_appeals(self) -> None:
        rate = self.services.config.appeals_per_minute / 60.0
        try:
            wait = self.services.buckets.take(f"appeals:{self.key_id}", rate)
        except Exception:  # noqa: BLE001 - the shared limiter failing closed (issue 23)
            raise api_error("rate_limiter_unavailable", "the shared rate limiter is unreachable") from None
        if wait > 0:
            raise api_error("rate_limited", f"key {self.key_id} is over its appeal rate of "
                            f"{self.services.config.appeals_per_minute:g} per minute",
                            {"Retry-After": str(max(1, math.ceil(wait)))})

    async def find_decision(self, request_id: str | None, data_id: str | None,
                            index: int | None) -> dict[str, Any]:
        """The decision appealed, as review-item fields (plus ``text_sha256``); 404 when this
        key has none by that id, 400 when the id names several texts and no index picks one."""
        store = self.services.decision_store
        if store is None:
            raise api_error("review_unavailable", "this service keeps no decision log, so no decision can be appealed")
        query: dict[str, Any] = {"request_id": request_id} if request_id is not None else {"data_id": data_id}
        if self.services.keyring is not None:  # a key sees (and appeals) only its own decisions
            query["key_id"] = self.key_id
        found = await call_store(store.find_decisions, **query)
        decisions = [{**decision_item(d), "text_sha256": d.text_sha256} for d in found]
        if index is not None:
            decisions = [d for d in decisions if int(d.get("index") or 0) == index]
        if not decisions:
            which = f"request_id {request_id}" if request_id is not None else f"data_id {data_id}"
            raise api_error("not_found", f"no decision of this key with {which}"
                            + (f" and index {index}" if index is not None else ""))
        blocks = [d for d in decisions if d.get("suggestion") == "block"]
        if len(decisions) == 1:
            return decisions[0]
        if len(blocks) == 1:
            return blocks[0]
        if request_id is None and blocks:  # a data id decided several times: its latest block
            return max(blocks, key=lambda d: float(d.get("time") or 0))
        raise api_error("invalid_request", f"that id names {len(decisions)} decisions; give index to pick one")

    @staticmethod
    def text_of(decision: dict[str, Any], given: str | None) -> str:
        """The blocked text: the decision log's, or the caller's when it matches the logged hash."""
        kept = decision.get("text")
        if isinstance(kept, str) and kept:
            return kept
        digest = decision.get("text_sha256")
        if given is not None and digest and \
                hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest() == digest:
            return given
        if given is not None:
            raise api_error("text_unavailable", "the text given does not match the decision's text hash")
        raise api_error("text_unavailable", "the service did not keep this decision's text (retention); send "
                        "it as \"text\" with the appeal (it is checked against the logged hash)")


def appeal_view(item: ReviewItem, *, new: bool) -> dict[str, Any]:
    return {"appeal_id": item.id, "new": new, "state": item.state, "verdict": item.verdict,
            "reversed": item.verdict == "pass" if item.state == "decided" else None,
            "request_id": item.request_id, "index": item.index, "data_id": item.data_id,
            "enqueued_at": item.enqueued_at, "reviewed_at": item.reviewed_at}
