"""``GET /decisions?request_id=...|data_id=...`` (role ``admin``, issue 23): what the service
decided for a request or a client's text, and why, from the decision log
(docs/contracts.md#decision-log). The store is read in an executor thread; a store that is down
is a 503 JSON answer, never a hung request."""

from __future__ import annotations

import asyncio
import functools

from antispam.decisions import FIND_LIMIT
from antispam.errors import api_error
from antispam.http.base import BaseHandler, log
from antispam.request_ids import check_data_id

PARAMETERS = ("request_id", "data_id", "limit")


class DecisionsHandler(BaseHandler):
    route = "decisions"

    async def get(self) -> None:
        query = self.request.query_arguments
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise api_error("invalid_request", f"unknown parameter {unknown[0]!r}; give request_id= and/or "
                            "data_id=, and optionally limit=")
        values: dict[str, str] = {}
        for name in PARAMETERS:
            given = query.get(name, [])
            if len(given) > 1:
                raise api_error("invalid_request", f"give {name} at most once")
            if given:
                try:
                    values[name] = given[0].decode("utf-8")
                except UnicodeDecodeError:
                    raise api_error("invalid_utf8", f"the {name} parameter is not UTF-8") from None
        for name in ("request_id", "data_id"):
            if values.get(name) == "":
                raise api_error("invalid_request", f"{name} is empty")
        request_id = check_data_id(values.get("request_id"), "request_id")
        data_id = check_data_id(values.get("data_id"), "data_id")
        if request_id is None and data_id is None:
            raise api_error("invalid_request", "give request_id= (the /predict answer's) or data_id= "
                            "(your id of the text), or both")
        limit = _limit(values.get("limit"))
        store = self.services.decision_store
        if store is None:
            raise api_error("decisions_unavailable", "this service has no store for the decision log "
                            "(feedback_db is empty)")
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, functools.partial(
                store.find_decisions, request_id=request_id, data_id=data_id, limit=limit))
        except Exception:
            log.exception("reading the decision log failed")
            raise api_error("decisions_unavailable", "the decision log's store failed; try again") from None
        self.send_json({"data": [decision.as_dict() for decision in found], "count": len(found),
                        "limit": limit})


def _limit(raw: str | None) -> int:
    if raw is None:
        return 100
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= FIND_LIMIT:
        raise api_error("invalid_request", f"limit must be a whole number from 1 to {FIND_LIMIT}")
    return int(raw)
