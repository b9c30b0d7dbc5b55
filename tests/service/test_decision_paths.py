"""Issue 20 on the serving paths: a version's calibration and operating points.

The same texts give the same calibrated probabilities from the local, gRPC and REST backends; a
version without the record still serves (uncalibrated, the legacy thresholds, and ``/models`` says
so); the operating points ``/models`` shows are the ones the default policy applies, swapped with
the model on reload; a policy that sets thresholds keeps its own.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tornado.testing import AsyncHTTPTestCase

from antispam import versions
from antispam.app import make_app
from antispam.backends.grpc import GrpcBackend
from antispam.backends.local import LocalBackend
from antispam.backends.rest import RestBackend
from antispam.calibration import Calibration
from antispam.config import ServeConfig
from antispam.operating_points import LEGACY_BLOCK, LEGACY_REVIEW, OperatingPoints, Point
from antispam.testing.standin_tfs import StandinTFS
from antispam.text import tokenize
from tests.helpers import tinymodel
from tests.helpers.standin import remote_config, run_started, shared_standin

MODEL = "decision_cnn"
# The tiny model says ~0.88 for its spam text and ~0.04 for its pass text; this map pulls both
# towards the middle, so calibrated and raw probabilities differ visibly.
CALIBRATION = Calibration("platt", params=(0.6, 0.3))
POINTS = OperatingPoints(block=Point(0.6, 0.99, 0.995, 0.85, 0.4, 0.004),
                         review=Point(0.3, 0.95, 0.9, 0.95, 0.5, 0.04), count=100)
TEXTS = [tinymodel.SPAM_TEXT, tinymodel.PASS_TEXT, "代开发票", "妈妈回家"]


def decision_record() -> dict[str, object]:
    return versions.preprocessing_settings(None, CALIBRATION, POINTS)


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    server = shared_standin(wait=False)
    if not (server.model_base / MODEL).is_dir():
        tinymodel.build_version(server.model_base / MODEL, preprocessing=decision_record())
    server.wait_ready().wait_until(MODEL, 1)
    return server


def scores(backend: Any) -> np.ndarray:
    async def scenario(b: Any) -> np.ndarray:
        result = await b.predict([tokenize(t) for t in TEXTS], timeout=10)
        return np.asarray(result.spam_probability)

    return np.asarray(run_started(backend, scenario))


def test_local_grpc_and_rest_give_the_same_calibrated_probabilities(tfs: StandinTFS) -> None:
    config = remote_config(tfs, MODEL)
    local = scores(LocalBackend(config))
    grpc = scores(GrpcBackend(config))
    rest = scores(RestBackend(config))
    loaded = versions.load_version(tfs.model_base / MODEL, 1)
    raw = loaded.spam_probability(TEXTS, calibrated=False)
    expected = CALIBRATION.apply(raw)
    assert not np.allclose(raw, expected, atol=0.05)  # the map really moves them
    np.testing.assert_allclose(local, expected, atol=1e-6)
    np.testing.assert_allclose(grpc, expected, atol=1e-6)
    np.testing.assert_allclose(rest, expected, atol=1e-6)
    np.testing.assert_allclose(loaded.spam_probability(TEXTS), expected, atol=1e-9)


def test_the_remote_backends_know_each_versions_points(tfs: StandinTFS) -> None:
    async def scenario(b: Any) -> Any:
        await b.predict([tokenize(TEXTS[0])], timeout=10)
        assets = b.version_assets(b.current_version)
        return assets.operating_points, b.status()

    points, status = run_started(GrpcBackend(remote_config(tfs, MODEL)), scenario)
    assert points == POINTS
    row = next(r for r in status["versions"] if r["version"] == 1)
    assert row["calibrated"] is True and row["operating_points"]["block"]["threshold"] == 0.6


def test_a_bad_decision_record_is_refused_not_served_otherwise(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    tinymodel.build_version(model_dir, preprocessing={"calibration": {"method": "platt", "a": -2, "b": 0}})
    with pytest.raises(versions.VersionError, match="decision record"):
        versions.load_assets(model_dir, 1)


class DecisionApiTest(AsyncHTTPTestCase):
    """Through HTTP with the in-process backend: what ``/models`` shows is what ``/predict`` does."""

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="antispam-decision-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.model_dir = self.tmp / "models" / "cnn"
        self.config = ServeConfig(model_base=str(self.tmp / "models"), model_name="cnn", poll_seconds=0.05,
                                  min_tokens_to_block=0, **self.settings)
        self.backend = LocalBackend(self.config)
        super().setUp()

    def get_app(self) -> Any:
        return make_app(self.config, self.backend)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.backend.close, timeout=30)
        super().tearDown()

    def start(self, **build: Any) -> None:
        tinymodel.build_version(self.model_dir, **build)
        self.io_loop.run_sync(self.backend.start, timeout=120)

    def get_json(self, path: str) -> Any:
        response = self.fetch(path)
        self.assertEqual(response.code, 200, response.body)
        return json.loads(response.body)

    def predict(self, text: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"text": text, **params})
        return self.get_json(f"/predict?{query}")["data"]


class CalibratedVersionTest(DecisionApiTest):
    def test_models_shows_the_points_the_default_policy_applies(self) -> None:
        self.start(preprocessing=decision_record())
        decision = self.get_json("/models")["decision"]
        self.assertTrue(decision["calibrated"])
        self.assertEqual(decision["operating_points"], POINTS.to_record())
        self.assertEqual(decision["policies"]["default"], {"review": 0.3, "block": 0.6, "from": "version"})
        item = self.predict(tinymodel.SPAM_TEXT)
        p = item["spam_probability"]
        # Calibrated: between the version's block point and the legacy one, so the version's
        # point (not 0.9) decides: block.
        self.assertTrue(POINTS.block.threshold <= p < LEGACY_BLOCK, p)
        self.assertEqual(item["suggestion"], "block")
        low = self.predict(tinymodel.PASS_TEXT)
        self.assertLess(low["spam_probability"], POINTS.review.threshold)
        self.assertEqual(low["suggestion"], "pass")

    def test_hot_reload_swaps_points_with_the_model(self) -> None:
        self.start(preprocessing=decision_record())
        self.assertEqual(self.predict(tinymodel.SPAM_TEXT)["suggestion"], "block")
        stricter = OperatingPoints(block=Point(0.99, 0.99, 1.0, 0.1, 0.05, 0.0), review=POINTS.review, count=100)
        tinymodel.build_version(self.model_dir, preprocessing=versions.preprocessing_settings(
            None, CALIBRATION, stricter))

        async def wait_for_v2() -> None:
            for _ in range(400):
                if self.backend.current_version == 2:
                    return
                await asyncio.sleep(0.025)
            raise AssertionError("version 2 never served")

        self.io_loop.run_sync(wait_for_v2, timeout=30)
        item = self.predict(tinymodel.SPAM_TEXT)
        self.assertEqual(item["model"]["version"], 2)
        self.assertEqual(item["suggestion"], "review")  # same probability, the new version's block point
        self.assertEqual(self.get_json("/models")["decision"]["policies"]["default"]["block"], 0.99)


class UncalibratedVersionTest(DecisionApiTest):
    def test_an_old_version_without_the_record_still_serves_at_the_legacy_thresholds(self) -> None:
        self.start()
        decision = self.get_json("/models")["decision"]
        self.assertFalse(decision["calibrated"])
        self.assertIsNone(decision["operating_points"])
        self.assertEqual(decision["policies"]["default"],
                         {"review": LEGACY_REVIEW, "block": LEGACY_BLOCK, "from": "legacy"})
        loaded = versions.load_version(self.model_dir)
        item = self.predict(tinymodel.SPAM_TEXT)
        self.assertAlmostEqual(item["spam_probability"], float(loaded.spam_probability([tinymodel.SPAM_TEXT])[0]),
                               places=6)
        self.assertEqual(item["suggestion"], "block" if item["spam_probability"] >= LEGACY_BLOCK else "review")


class PolicyWithThresholdsTest(DecisionApiTest):
    settings = {"block_threshold": 0.95, "review_threshold": 0.2}

    def test_thresholds_set_by_the_service_win_over_the_versions(self) -> None:
        self.start(preprocessing=decision_record())
        self.assertEqual(self.get_json("/models")["decision"]["policies"]["default"],
                         {"review": 0.2, "block": 0.95, "from": "policy"})
        self.assertEqual(self.predict(tinymodel.SPAM_TEXT)["suggestion"], "review")
