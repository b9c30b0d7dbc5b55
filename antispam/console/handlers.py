"""The console's routes: its static files and its read-only JSON endpoints.

Every answer carries a Content-Security-Policy that allows only the service's own scripts,
styles, images and connections (no inline script or style, no other origin). Nothing here takes
a path from the request: static files come from a fixed list read from the package at start, a
version is an integer and becomes ``<model_base>/<model_name>/<n>/``, a report image is one of
two fixed names under ``<report_dir>/<model_name>-v<n>/``. Anything else is the API's 404
``not_found``. Which key role each route needs is :data:`antispam.app.ROUTE_ROLES` (the page is
open; its data needs ``viewer``).

Endpoints (``docs/contracts.md#console``):

- ``GET /console`` → redirect to ``/console/``; ``GET /console/<file>``: the page;
- ``GET /console/api/info``: thresholds, limits, policies (none yet), where the files are;
- ``GET /console/api/versions``: every version on disk with its headline test scores;
- ``GET /console/api/versions/<n>``: that version's ``metrics.json`` and its training report;
- ``GET /console/api/versions/<n>/report/curves.png`` (or ``confusion.png``): the trainer's PNGs;
- ``GET /console/api/promotions?limit=N``: the last N lines of ``promotion.jsonl``, parsed;
- ``GET /console/api/live?minutes=M``: the last minutes from the app's own metrics;
- ``GET /console/api/campaigns?limit=N``: the largest active campaigns (issue 24), each with
  one example, its contacts (offsets into the example) and whether each is on the block list;
- ``POST /console/api/blocklist``: add a contact to the block list (role ``admin``; the one
  route here that writes, :mod:`antispam.blocklist`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TypeVar

from antispam import __version__, blocklist, versions
from antispam.campaigns import TrackerUnavailable
from antispam.console.live import MAX_MINUTES, LiveStats, shared_window
from antispam.errors import api_error
from antispam.http.base import BaseHandler, JsonBodyHandler
from antispam.http.services import Services
from antispam.lists import DEFAULT_SET
from antispam.privacy import redact_record

log = logging.getLogger(__name__)
SHARED_WAIT_SECONDS = 1.5  # longest the Live view waits for the decision log's counts
T = TypeVar("T")

# The page may load and connect to nothing but this origin; no inline script or style. Images may
# also be blob: URLs the page made itself: report PNGs are fetched with the API key header (once
# keys exist) and shown from a blob, since an <img src> cannot send a header.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
CONTENT_TYPES = {
    ".html": "text/html; charset=UTF-8",
    ".js": "text/javascript; charset=UTF-8",
    ".css": "text/css; charset=UTF-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg|png)$")
INDEX = "index.html"
# The trainer's report files (network/report.py: CURVES_FILE, CONFUSION_FILE, SCORES_FILE; the app
# layer may not import the trainer, a test keeps the names equal).
REPORT_IMAGES = {"curves": "curves.png", "confusion": "confusion.png"}
REPORT_SCORES = "scores.json"
# Keys a report's scores.json shares with the version's metrics.json (both are the trainer's
# summary of one run): equal values tie the report folder to this version, not to an older run
# that had the same number under another model folder.
SAME_RUN_KEYS = ("source_vectors", "wall_seconds", "best_epoch", "history")
PROMOTION_LOG = "promotion.jsonl"
MAX_JSON_BYTES = 8_000_000
MAX_IMAGE_BYTES = 20_000_000
TAIL_BYTES = 4_000_000
MAX_VERSIONS_LISTED = 50


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: name -> (bytes, content type)."""
    root = resources.files("antispam.console").joinpath("static")
    files = {}
    for entry in root.iterdir():
        if entry.is_file() and STATIC_NAME.match(entry.name):
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[Path(entry.name).suffix])
    return files


def _read_json(path: Path, limit: int = MAX_JSON_BYTES) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why not)``."""
    try:
        if not path.is_file():
            return None, f"no {path.name}"
        if path.stat().st_size > limit:
            return None, f"{path.name} is over {limit} bytes"
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{path.name} is unreadable: {exc}"[:300]


def tail_lines(path: Path, count: int, max_bytes: int = TAIL_BYTES) -> list[bytes]:
    """The last ``count`` non-empty lines of a file, reading at most its last ``max_bytes``."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        start = max(0, size - max_bytes)
        handle.seek(start)
        data = handle.read()
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first one is cut
    return [line for line in lines if line.strip()][-count:]


@dataclass
class Console:
    """What the console's handlers share: the app's services, the live stats, the page's files."""

    services: Services
    live: LiveStats
    static: dict[str, tuple[bytes, str]]

    @property
    def model_dir(self) -> Path:
        config = self.services.config
        return versions.model_dir(config.model_base, config.model_name)

    @property
    def report_dir(self) -> Path:
        return Path(self.services.config.report_dir)

    def ensure_sampling(self) -> None:
        if not self.live.running:
            try:
                self.live.start()
            except RuntimeError:  # no running loop
                self.live.sample_if_due()

    # -- reading the model folder (called on an executor thread) ---------------------------

    def metrics_of(self, version: int) -> tuple[dict[str, Any] | None, str | None]:
        path = versions.version_dir(self.model_dir, version) / versions.ASSETS_DIR / versions.METRICS_FILE
        value, problem = _read_json(path)
        if problem is None and not isinstance(value, dict):
            return None, f"{versions.METRICS_FILE} is not a JSON object"
        return value, problem

    def report_of(self, version: int, metrics: dict[str, Any] | None) -> dict[str, Any]:
        folder = self.report_dir / f"{self.services.config.model_name}-v{version}"
        report: dict[str, Any] = {"dir": str(folder), "images": {}, "note": None}
        if not folder.is_dir():
            report["note"] = ("no training report for this version (antispam train writes one to "
                              "--report-dir; the retrain job writes none)")
            return report
        scores, problem = _read_json(folder / REPORT_SCORES)
        if problem is not None or not isinstance(scores, dict):
            report["note"] = f"the report folder has no usable {REPORT_SCORES} ({problem or 'not an object'})"
            return report
        if not self._same_run(version, scores, metrics):
            report["note"] = (f"the report folder belongs to another training run (its {REPORT_SCORES} "
                              f"does not match this version's {versions.METRICS_FILE}); not shown")
            return report
        for kind, name in REPORT_IMAGES.items():
            if (folder / name).is_file():
                report["images"][kind] = f"console/api/versions/{version}/report/{name}"  # from the service root
        if not report["images"]:
            report["note"] = "the report folder holds no images"
        return report

    @staticmethod
    def _same_run(version: int, scores: dict[str, Any], metrics: dict[str, Any] | None) -> bool:
        if metrics is None or scores.get("version") != version:
            return False
        if metrics.get("source_vectors") is None or metrics.get("history") is None:
            return False
        return all(scores.get(key) == metrics.get(key) for key in SAME_RUN_KEYS)

    def image_path(self, version: int, kind: str) -> Path | None:
        if version not in versions.list_versions(self.model_dir):
            return None
        metrics, _problem = self.metrics_of(version)
        report = self.report_of(version, metrics)
        if kind not in report["images"]:
            return None
        path = Path(report["dir"]) / REPORT_IMAGES[kind]
        return path if path.stat().st_size <= MAX_IMAGE_BYTES else None

    def version_list(self) -> dict[str, Any]:
        found = versions.list_versions(self.model_dir)
        listed = []
        for version in sorted(found, reverse=True)[:MAX_VERSIONS_LISTED]:
            metrics, problem = self.metrics_of(version)
            test = (metrics or {}).get("test")
            headline = ({key: test.get(key) for key in ("f1", "precision", "recall", "accuracy", "roc_auc", "count")}
                        if isinstance(test, dict) else None)
            report = self.report_of(version, metrics)
            listed.append({
                "version": version,
                "model": (metrics or {}).get("model"),
                "exported_at": (metrics or {}).get("exported_at"),
                "test": headline,
                "retrain": isinstance((metrics or {}).get("retrain"), dict),
                "metrics_problem": problem,
                "report_images": sorted(report["images"]),
            })
        return {"model": self.services.config.model_name, "model_dir": str(self.model_dir),
                "high_water_mark": versions.highest_published(self.model_dir),
                "count": len(found), "versions": listed}

    def version_detail(self, version: int) -> dict[str, Any] | None:
        if version not in versions.list_versions(self.model_dir):
            return None
        metrics, problem = self.metrics_of(version)
        return {"version": version, "model": self.services.config.model_name,
                "path": str(versions.version_dir(self.model_dir, version)),
                "metrics": metrics, "metrics_problem": problem, "report": self.report_of(version, metrics)}

    def promotions(self, limit: int) -> dict[str, Any]:
        path = self.model_dir / PROMOTION_LOG
        records: list[dict[str, Any]] = []
        exists = path.is_file()
        if exists:
            for line in tail_lines(path, limit):
                try:
                    value = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    value = None
                if isinstance(value, dict):
                    # Lines written before issue 21 carry conflicting feedback texts: shown redacted.
                    records.append(redact_record(value))
                else:
                    records.append({"unparsed": line[:300].decode("utf-8", "replace"),
                                    "problem": "this line is not a JSON object"})
        return {"path": str(path), "exists": exists, "limit": limit, "records": records}


class ConsoleHandler(BaseHandler):
    """Base of the console's handlers: the CSP and friends on every answer, errors included."""

    route = "console"

    def initialize(self, services: Services, role: str | None = None,
                   console: Console | None = None) -> None:
        super().initialize(services, role)
        assert console is not None
        self.console = console

    def set_default_headers(self) -> None:
        super().set_default_headers()  # request id, no Server banner
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")

    def prepare(self) -> None:
        super().prepare()
        self.console.ensure_sampling()

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Disk reads (the model folder may be a network volume) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def int_argument(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise api_error("invalid_request", f"{name} must be an integer from {low} to {high}")
        return int(raw)


class RedirectHandler(ConsoleHandler):
    def get(self) -> None:
        self.redirect("console/")  # relative: keeps a path prefix a proxy may add


class StaticHandler(ConsoleHandler):
    def get(self, name: str) -> None:
        found = self.console.static.get(name or INDEX)
        if found is None:
            raise api_error("not_found", f"no console file {self.request.path}")
        body, content_type = found
        self.set_header("Content-Type", content_type)
        # Revalidate every time (an ETag makes that a 304): a new release never meets a stale page.
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)


class InfoHandler(ConsoleHandler):
    def get(self) -> None:
        config = self.services.config
        console = self.console
        # The default policy's thresholds for the version serving now (issue 20: its operating
        # points unless the service sets thresholds).
        backend = self.services.backend
        version = backend.current_version
        assets = backend.version_assets(version) if version is not None else None
        points = assets.operating_points if assets is not None else None
        default = self.services.scorer.policy(None)
        review, block = default.thresholds(points)
        source = ("service" if default.review_threshold is not None and default.block_threshold is not None
                  else "version" if points is not None else "legacy")
        self.send_json({"data": {
            "service_version": __version__,
            "model": config.model_name,
            "backend_setting": config.backend,
            "workers": config.workers,
            "thresholds": {"review": review, "block": block, "source": source, "version": version,
                           "min_tokens_to_block": config.min_tokens_to_block},
            "limits": {"max_texts": config.max_texts, "max_chars": config.max_chars},
            # The API has no policies yet; the page shows a picker once this lists some.
            "policies": [],
            "feedback": self.services.feedback_store is not None,
            "model_dir": str(console.model_dir),
            "report_dir": str(console.report_dir),
            "promotion_log": str(console.model_dir / PROMOTION_LOG),
            "live": {"interval_seconds": console.live.interval, "max_minutes": MAX_MINUTES},
        }})


class VersionsHandler(ConsoleHandler):
    async def get(self) -> None:
        self.send_json({"data": await self.off_loop(self.console.version_list)})


class VersionHandler(ConsoleHandler):
    async def get(self, number: str) -> None:
        detail = await self.off_loop(self.console.version_detail, int(number))
        if detail is None:
            raise api_error("not_found", f"{self.services.config.model_name} has no version {int(number)} on disk")
        self.send_json({"data": detail})


class ReportImageHandler(ConsoleHandler):
    async def get(self, number: str, kind: str) -> None:
        path = await self.off_loop(self.console.image_path, int(number), kind)
        if path is None:
            raise api_error("not_found", f"no {kind} image for version {int(number)} of "
                            f"{self.services.config.model_name}")
        body = await self.off_loop(path.read_bytes)
        self.set_header("Content-Type", CONTENT_TYPES[".png"])
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)


class PromotionsHandler(ConsoleHandler):
    async def get(self) -> None:
        limit = self.int_argument("limit", 20, 1, 200)
        self.send_json({"data": await self.off_loop(self.console.promotions, limit)})


class LiveHandler(ConsoleHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("minutes", "5")
        try:
            minutes = float(raw)
        except ValueError:
            minutes = -1.0
        if not 0 < minutes <= MAX_MINUTES:
            raise api_error("invalid_request", f"minutes must be a number above 0 and at most {MAX_MINUTES:g}")
        summary = self.console.live.summary(minutes)
        summary["process"] = {"pid": os.getpid(), "covers": "latency, cache, backends, errors, routes"}
        summary["shared"] = await self.shared(summary["minutes_asked"] * 60.0)
        self.send_json({"data": summary})

    async def shared(self, seconds: float) -> dict[str, Any]:
        """Issue 23: verdicts and rates over every process from the decision log, when it is in a
        shared store (PostgreSQL); else why not (the page then shows this process's)."""
        from antispam.feedback import is_postgres

        services = self.services
        store = services.decision_store
        if store is None or services.decisions is None:
            return {"source": "process", "why": "the decision log is off"}
        if not is_postgres(store.location):
            return {"source": "process", "why": "the decision log is in a SQLite file, not a shared store"}
        now = time.time()
        try:
            counts = await asyncio.wait_for(self.off_loop(store.decision_counts, now - seconds), SHARED_WAIT_SECONDS)
        except Exception as exc:  # down, slow: this process's figures, and say so
            log.warning("live view: the decision log's store did not answer: %s: %s", type(exc).__name__, exc)
            return {"source": "process", "why": f"the decision log's store did not answer ({type(exc).__name__})"}
        return shared_window(counts, seconds, store.location)


MAX_CAMPAIGNS_LISTED = 50


def merge_campaigns(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per campaign from the tracker's counters, largest first.

    The tracker counts a text under its near-duplicate cluster *and* under each contact it
    carries, so one advert crossing the threshold shows up as two or three counters. Entries
    whose examples are the same text or share a contact (kind and value) are one campaign here:
    shown with the example of its counter with the most senders, ``by`` listing every way it was
    found (``text``, ``contact``) and ``counters`` how many counters it merged. ``senders`` and
    ``size`` are that counter's (the others count the same messages in part: adding would count
    them twice)."""
    groups: list[dict[str, Any]] = []
    index: dict[str, int] = {}  # example text or contact -> group

    def keys_of(entry: dict[str, Any]) -> list[str]:
        example = entry.get("example") or {}
        keys = [f"text:{example.get('text')}"]
        keys += [f"contact:{c.get('kind')}:{c.get('value')}" for c in example.get("contacts") or []]
        return keys

    for entry in entries:  # most senders first (top()'s order), so a group's first entry leads it
        keys = keys_of(entry)
        hits = sorted({index[k] for k in keys if k in index})
        if hits:
            target = hits[0]
            for other in hits[1:]:  # the entry joins two groups: fold the later into the first
                merged = groups[other]
                groups[target]["by"] = sorted(set(groups[target]["by"]) | set(merged["by"]))
                groups[target]["counters"] += merged["counters"]
                groups[target]["first_seen"] = min(groups[target]["first_seen"], merged["first_seen"])
                for k, g in list(index.items()):
                    if g == other:
                        index[k] = target
                groups[other] = {}
            group = groups[target]
            group["by"] = sorted(set(group["by"]) | {entry.get("by")})
            group["counters"] += 1
            group["first_seen"] = min(group["first_seen"], entry.get("first_seen", group["first_seen"]))
        else:
            target = len(groups)
            groups.append({**entry, "by": [entry.get("by")], "counters": 1})
        for k in keys:
            index[k] = target
    return [g for g in groups if g]


def campaigns_of(services: Services, limit: int) -> dict[str, Any]:
    """The tracker's largest active campaigns, each contact marked ``listed`` when the default
    block list already has it (read from the file: what the next reload serves)."""
    tracker = services.scorer.campaigns
    folder = services.config.lists_dir
    listed: dict[str, bool] = {}
    try:
        text = blocklist.block_file(folder).read_text(encoding="utf-8")
        keys = blocklist.listed_keys(text)
    except (OSError, UnicodeDecodeError):
        keys = set()
    try:
        # A copy: the in-process tracker hands out its own example dicts, and "listed" is added.
        # Counters, not campaigns: several counters of one campaign are merged below.
        found = merge_campaigns(copy.deepcopy(tracker.top(limit * 4)))[:limit]
        active = tracker.active()
    except TrackerUnavailable as exc:
        return {"unavailable": str(exc) or "the campaign tracker cannot answer",
                "campaigns": [], "limit": limit, "lists_dir": folder}
    for campaign in found:
        for contact in (campaign.get("example") or {}).get("contacts") or []:
            value = str(contact.get("value", ""))
            if value not in listed:
                listed[value] = blocklist.term_key(value) in keys
            contact["listed"] = listed[value]
    return {"window_seconds": tracker.window_seconds, "min_senders": tracker.min_senders,
            "active_counters": active, "limit": limit, "campaigns": found, "lists_dir": folder,
            "block_file": str(blocklist.block_file(folder)),
            "reload_seconds": services.config.lists_poll_seconds}


class CampaignsHandler(ConsoleHandler):
    async def get(self) -> None:
        limit = self.int_argument("limit", 10, 1, MAX_CAMPAIGNS_LISTED)
        # Off the loop: the tracker may ask Redis, and the block list is read from disk.
        self.send_json({"data": await self.off_loop(campaigns_of, self.services, limit)})


class BlockListHandler(ConsoleHandler, JsonBodyHandler):
    """``POST {"kind": "mobile", "value": "13800138000"}`` (optional ``list_set``): the contact
    is appended to that set's block list unless it is there (``added`` says which); the lists
    of this worker are reloaded now, the others' at their next poll."""

    async def post(self) -> None:
        body = self.json_object()
        kind, value, list_set = body.get("kind"), body.get("value"), body.get("list_set", DEFAULT_SET)
        if not isinstance(kind, str) or not isinstance(value, str) or not isinstance(list_set, str):
            raise api_error("invalid_request", 'give {"kind": "<contact kind>", "value": "<contact>"} '
                            "(strings; list_set optional)")
        folder = self.services.config.lists_dir
        try:
            term = blocklist.contact_term(kind, value)
            result = await self.off_loop(blocklist.add_term, folder, term, kind, list_set)
        except blocklist.TermRejected as exc:
            raise api_error("invalid_request", str(exc)) from None
        if result.added:
            log.info("console: %s %r added to %s", kind, term, result.path)
            await self.services.scorer.lists.refresh_async()
        self.send_json({"data": {"kind": kind, "term": result.term, "added": result.added,
                                 "list_set": list_set, "file": str(result.path),
                                 "reload_seconds": self.services.config.lists_poll_seconds}})


ROUTES: list[tuple[str, type[ConsoleHandler]]] = [
    (r"/console", RedirectHandler),
    (r"/console/([^/]*)", StaticHandler),
    (r"/console/api/info", InfoHandler),
    (r"/console/api/live", LiveHandler),
    (r"/console/api/campaigns", CampaignsHandler),
    (r"/console/api/blocklist", BlockListHandler),
    (r"/console/api/promotions", PromotionsHandler),
    (r"/console/api/versions", VersionsHandler),
    (r"/console/api/versions/([0-9]{1,9})", VersionHandler),
    (r"/console/api/versions/([0-9]{1,9})/report/(curves|confusion)\.png", ReportImageHandler),
]


def console_routes(services: Services) -> list[tuple[str, type[ConsoleHandler], dict[str, Any]]]:
    """The console's routes for :func:`antispam.app.make_app`, sharing one :class:`Console`."""
    console = Console(services, LiveStats(services.metrics.registry), load_static())
    try:
        console.live.start()  # built inside a running loop (``antispam serve``): sample from now on
    except RuntimeError:
        pass  # no loop yet (tests): the first console request starts it
    args = {"services": services, "console": console}
    return [(pattern, handler, args) for pattern, handler in ROUTES]
