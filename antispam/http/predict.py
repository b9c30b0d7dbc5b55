"""``GET /predict?text=...`` and ``POST /predict``: read the request, score through
:class:`antispam.scoring.Scorer`, answer in the request's order (docs/contracts.md#http-api).
After the answer is written, each text's decision goes to the decision log's queue (issue 23,
:mod:`antispam.decisions`): no waiting for the store, no failure of the request because of it."""

from __future__ import annotations

from typing import Any

from antispam.decisions import from_items
from antispam.errors import api_error
from antispam.http.base import BaseHandler, JsonBodyHandler, log
from antispam.request_ids import check_data_id, data_ids_of
from antispam.scoring import Scorer
from antispam.senders import check_id, ids_of


class PredictHandler(JsonBodyHandler):
    route = "predict"

    def compute_etag(self) -> str | None:
        """No ``ETag``: every answer carries a fresh ``request_id``, so a client could never
        revalidate one, and Tornado would hash each GET body (SHA-1) for nothing (issue 14)."""
        return None

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
        data_id = self.get_query_argument("data_id", None)
        # Issue 24: checked here, hashed by the scorer before anything counts them, never echoed.
        sender = check_id(self.get_query_argument("sender_id", None, strip=False), "sender_id")
        check_id(self.get_query_argument("room_id", None, strip=False), "room_id")
        scorer = self.services.scorer
        await scorer.refresh()  # the policy named below is one of the policies serving now
        options = _score_options(self, scorer, self.get_query_argument("policy", None),
                                 self.get_query_argument("explain", None), self.get_query_argument("contacts", None))
        items = await scorer.score([text], await scorer.normalize_all_async([text]), senders=[sender], **options)
        self.send_json({"data": _with_data_ids(items, [check_data_id(data_id)])[0]})
        self.log_decisions(items)

    async def post(self) -> None:
        body = self.json_object()
        scorer = self.services.scorer
        await scorer.refresh()
        options = _score_options(self, scorer, body.get("policy", self.get_query_argument("policy", None)),
                                 body.get("explain", self.get_query_argument("explain", None)),
                                 body.get("contacts", self.get_query_argument("contacts", None)))
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
            data_ids = data_ids_of(body, len(texts))
            senders = ids_of(body, "sender_id", len(texts))
            ids_of(body, "room_id", len(texts))
            items = await scorer.score(texts, await scorer.normalize_all_async(texts, "texts"), senders=senders,
                                       **options)
            self.send_json({"data": _with_data_ids(items, data_ids)})
            self.log_decisions(items)
        elif "text" in body:
            text = body["text"]
            data_id = check_data_id(body.get("data_id"))
            for name in ("sender_ids", "room_ids"):
                if name in body:
                    raise api_error("invalid_request", f"{name} goes with texts; with text give {name[:-1]}")
            sender = check_id(body.get("sender_id"), "sender_id")
            check_id(body.get("room_id"), "room_id")
            items = await scorer.score([text], await scorer.normalize_all_async([text]), senders=[sender],
                                       **options)
            self.send_json({"data": _with_data_ids(items, [data_id])[0]})
            self.log_decisions(items)
        else:
            raise api_error("missing_text", 'give {"text": "..."} or {"texts": ["...", ...]}')

    def log_decisions(self, items: list[dict[str, Any]]) -> None:
        """Hand the answer's decisions to the log's queue (a no-op when the log is off). The
        answer is already written; this neither waits nor raises (DecisionLog.submit)."""
        decision_log = self.services.decisions
        if decision_log is None:
            return
        try:
            records = from_items(items, [item["text"] for item in items], request_id=self.request_id,
                                 key_id=self.key_id, data_ids=[item.get("data_id") for item in items])
        except Exception:  # a bug in building the records must not turn a sent answer into a 500
            log.exception("building decision records failed")
            return
        decision_log.submit(records)


def _score_options(handler: BaseHandler, scorer: Scorer, policy: Any, explain: Any,
                   contacts: Any = None) -> dict[str, Any]:
    """``policy=``, ``explain=`` and ``contacts=`` of a predict request (query, or body for POST),
    and whether its client may see allow terms."""
    return {"policy": scorer.policy(policy), "explain": _flag("explain", explain),
            "contacts": _flag("contacts", contacts), "reveal_allow": handler.sees_allow_terms}


def _flag(name: str, value: Any) -> bool:
    """A true/false request option: JSON true/false, or true/1/false/0 in a query; unset: false."""
    if isinstance(value, str):
        value = {"true": True, "1": True, "false": False, "0": False}.get(value.lower(), value)
    if value is None:
        value = False
    if not isinstance(value, bool):
        raise api_error("invalid_request", f"{name} must be true or false")
    return value


def _with_data_ids(items: list[dict[str, Any]], data_ids: list[str | None]) -> list[dict[str, Any]]:
    """Echo each text's ``data_id`` in its item (only where the client gave one)."""
    for item, data_id in zip(items, data_ids):
        if data_id is not None:
            item["data_id"] = data_id
    return items


