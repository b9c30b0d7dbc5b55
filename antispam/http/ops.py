"""The operator's routes: probes (``/healthz``, ``/readyz``), ``/metrics``, ``/models``,
``/lists``, ``/openapi.json``, and the JSON 404 of any other path."""

from __future__ import annotations

from typing import Any

from antispam.errors import api_error
from antispam.http.base import BaseHandler, shown


class HealthHandler(BaseHandler):
    route = "healthz"

    def get(self) -> None:
        self.send_json({"status": "ok"})

    def head(self) -> None:  # the same status and headers; Tornado sends no body for HEAD
        self.get()


class ReadyHandler(BaseHandler):
    route = "readyz"

    def get(self) -> None:
        ring = self.services.keyring
        if ring is not None:  # issue 21: a bad keys file is seen here even with no keyed traffic
            ring.refresh()
            if ring.problem is not None:
                # The details (path, line, key id) go to the log, not to this open route.
                raise api_error("keys_file_invalid", "the API keys file is invalid, so no key "
                                "authenticates until it is fixed (fail closed); the service log and "
                                "`antispam keys list` name the problem")
        backend = self.services.backend
        if not backend.ready:
            raise api_error("not_ready", f"no model version is usable yet ({backend.name} backend)")
        body: dict[str, Any] = {"ready": True, "backend": backend.name,
                                "model": {"name": self.services.config.model_name,
                                          "version": backend.current_version}}
        # Degraded stays ready (200): the serving version still answers correctly, and taking
        # every replica out of rotation because a bad version was published would turn one bad
        # file into an outage. The reason is here, in antispam_degraded and in an alert.
        reason = backend.degraded
        if reason:
            body["degraded"] = reason
        self.send_json(body)

    def head(self) -> None:
        self.get()


class ModelsHandler(BaseHandler):
    route = "models"

    def get(self) -> None:
        body = self.services.backend.status()
        body["decision"] = self.services.scorer.decision_status()
        self.send_json(body)


class MetricsHandler(BaseHandler):
    route = "metrics"

    async def get(self) -> None:
        await self.services.metrics.refresh()  # store-read gauges, on the executor, bounded wait
        self.set_header("Content-Type", self.services.metrics.content_type)
        self.finish(self.services.metrics.exposition())


class ListsHandler(BaseHandler):
    """``GET /lists``: the term lists loaded now, their files and errors, and the policies (with
    their file's state)."""

    route = "lists"

    async def get(self) -> None:
        scorer = self.services.scorer
        body = (await scorer.refresh()).status()
        body["folder"] = str(scorer.lists.folder)
        body["policies"] = {name: p.as_dict() for name, p in sorted(scorer.policies.items())}
        body["policies_file"] = scorer.policy_watcher.status()
        self.send_json(body)


class OpenAPIHandler(BaseHandler):
    route = "openapi"

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(self.services.openapi)


class NotFoundHandler(BaseHandler):
    route = "not_found"

    def prepare(self) -> None:
        super().prepare()
        raise api_error("not_found", f"no route {shown(self.request.path)}; see /openapi.json")
