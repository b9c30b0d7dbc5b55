"""serving/alerts.yml parses, and every metric (and label) it names is one the service exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from antispam.cache import PredictionCache
from antispam.metrics import Metrics
from antispam.testing.fakes import FakeBackend

ALERTS = Path(__file__).resolve().parents[2] / "serving" / "alerts.yml"
SELECTOR = re.compile(r"\b(antispam_[a-z0-9_]+)\b(?:\{([^}]*)\})?")


class FailingBackend(FakeBackend):
    def load_failures(self) -> dict[int, int]:
        return {3: 1}


def exported() -> dict[str, set[str]]:
    """Every sample name the service can export, with its label names."""
    metrics = Metrics()
    metrics.watch_backend(FailingBackend(), "cnn")
    metrics.watch_cache(PredictionCache(10))
    metrics.observe_request("predict", "GET", 200, 0.01)
    metrics.backend_used.labels("grpc").inc()
    metrics.backend_errors.labels("overloaded").inc()
    metrics.fallbacks.inc()
    metrics.observe_batch(3)
    metrics.request_texts.observe(1)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_alert_rules_parse_and_name_real_metrics() -> None:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {"AntispamModelVersionLoadFailed", "AntispamBackendFallbacks",
                                          "AntispamTooManyRequests", "AntispamUnavailable",
                                          "AntispamPredictLatencyP99"}
    known = exported()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        found = SELECTOR.findall(rule["expr"])
        assert found, rule["alert"]
        for name, selector in found:
            assert name in known, f"{rule['alert']}: no metric {name} (known: {sorted(known)})"
            for label in re.findall(r"([a-z_]+)\s*!?=~?", selector):
                assert label in known[name] | {"instance", "job"}, f"{rule['alert']}: {name} has no label {label}"
