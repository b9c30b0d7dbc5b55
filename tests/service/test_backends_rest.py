"""The REST backend against the stand-in TF Serving, and against a server that answers nonsense."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np
import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

from antispam import versions as layout
from antispam.backends.base import BackendError, NotReady, Overloaded
from antispam.backends.remote import BadResponse, Unreachable, UnreachableDeadline
from antispam.backends.rest import RestBackend, RowEncoder, parse_predictions
from antispam.config import ServeConfig
from antispam.features import FIRST_WINDOW, Featurizer, Windowing
from antispam.testing.standin_tfs import StandinTFS
from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT, tiny_vectors
from antispam.text import tokenize
from tests.helpers.standin import remote_config, run_started, standin_serving
from tests.helpers.timing import within

MODEL = "rest_cnn"
SPAM, PASS = tokenize(SPAM_TEXT), tokenize(PASS_TEXT)


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    return standin_serving(MODEL)


def config(tfs: StandinTFS, **overrides: Any) -> ServeConfig:
    return remote_config(tfs, MODEL, **overrides)


def run(backend: RestBackend, scenario: Callable[[RestBackend], Awaitable[Any]]) -> Any:
    return run_started(backend, scenario)


def test_scores_spam_and_pass_with_the_pinned_version(tfs: StandinTFS) -> None:
    result = run(RestBackend(config(tfs)), lambda b: b.predict([SPAM, PASS], timeout=5))
    assert result.backend == "rest" and result.model_name == MODEL
    assert result.version == max(tfs.states(MODEL))
    assert result.spam_probability[0] > 0.5 > result.spam_probability[1]


def test_a_64_text_batch_keeps_its_order(tfs: StandinTFS) -> None:
    pattern = [i % 5 < 2 for i in range(64)]
    batch = [SPAM if spam else PASS for spam in pattern]
    result = run(RestBackend(config(tfs)), lambda b: b.predict(batch, timeout=5))
    assert [bool(p > 0.5) for p in result.spam_probability] == pattern


@pytest.mark.parametrize("windowing", [FIRST_WINDOW, Windowing(stride=5)], ids=["first-20", "windows"])
def test_row_encoder_sends_exactly_the_featurized_float32_tensor(windowing: Windowing) -> None:
    featurizer = Featurizer(tiny_vectors(), windowing)
    # An unknown word made of known characters (back-off row) and a long message (many windows).
    batch = [SPAM, PASS, ["never", "seen"], [], ["妈我"], SPAM * 5]
    plan = featurizer.plan(batch)
    body = json.loads(RowEncoder(featurizer.vectors).body(plan))
    assert body["signature_name"] == "serving_default"
    sent = np.asarray(body["instances"], dtype=np.float32)
    np.testing.assert_array_equal(sent, featurizer.rows(plan))
    assert len(sent) == (6 if windowing == FIRST_WINDOW else 5 + len(windowing.spans(len(SPAM) * 5)))


def test_sequential_requests_reuse_one_kept_connection(tfs: StandinTFS) -> None:
    """Keep-alive: the stand-in's REST server accepts one connection for 100 predicts (and the
    status polls), where Tornado's simple client opened one per request."""
    async def scenario(backend: RestBackend) -> tuple[int, int]:
        await backend.predict([SPAM], timeout=5)
        await asyncio.sleep(0.1)  # the poller's first look may run beside the first predict
        before = tfs.rest_connections()
        for _ in range(100):
            result = await backend.predict([SPAM], timeout=5)
            assert result.spam_probability[0] > 0.5
        assert backend.client is not None
        return tfs.rest_connections() - before - 1, backend.client.opened  # less the count query's own

    accepted, opened = run(RestBackend(config(tfs, poll_seconds=60)), scenario)
    assert accepted == 0 and opened <= 2, (accepted, opened)


def test_connections_dropped_by_the_server_are_reopened_without_a_failed_request(tfs: StandinTFS) -> None:
    async def scenario(backend: RestBackend) -> None:
        assert backend.client is not None
        await asyncio.gather(*(backend.predict([SPAM, PASS], timeout=5) for _ in range(8)))
        kept = backend.client.idle_connections
        assert kept >= 2
        for round_ in range(5):
            assert tfs.drop_rest_connections() >= 1  # every kept connection, closed by the server
            if round_ % 2:
                await asyncio.sleep(0.05)
            for _ in range(3):
                result = await backend.predict([SPAM, PASS], timeout=5)
                assert result.spam_probability[0] > 0.5 > result.spam_probability[1]
        assert backend.errors == 0

    run(RestBackend(config(tfs, poll_seconds=60)), scenario)


def test_an_unknown_model_is_not_ready(tfs: StandinTFS) -> None:
    async def scenario(backend: RestBackend) -> None:
        assert not backend.ready
        with pytest.raises(NotReady):
            await backend.predict([SPAM], timeout=1)

    run(RestBackend(config(tfs, model_name="no_such_model")), scenario)


@pytest.mark.timing
def test_a_closed_port_is_unreachable_at_once(tfs: StandinTFS) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def scenario(backend: RestBackend) -> float:
        await backend.versions.apply({1: "AVAILABLE"})
        started = time.monotonic()
        with pytest.raises(Unreachable) as info:
            await backend.predict([SPAM], timeout=3)
        assert not isinstance(info.value, UnreachableDeadline)
        return time.monotonic() - started

    # model 1's vectors come from the stand-in's folder; nothing answers at url
    assert run(RestBackend(config(tfs, tfs_rest=url, poll_seconds=60)), scenario) < within(1.0)


@pytest.mark.timing
def test_a_server_that_does_not_answer_costs_exactly_the_deadline(tfs: StandinTFS) -> None:
    async def scenario(backend: RestBackend) -> float:
        assert backend.ready
        tfs.pause()
        started = time.monotonic()
        with pytest.raises(UnreachableDeadline):
            await backend.predict([SPAM], timeout=0.3)
        return time.monotonic() - started

    try:
        elapsed = run(RestBackend(config(tfs)), scenario)
    finally:
        tfs.resume()
    assert 0.29 <= elapsed < within(0.6)


# --- answer formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"predictions": [{"probabilities": [0.25, 0.75], "classes": 1}, {"probabilities": [0.5, 0.5], "classes": 0}]},
    {"predictions": [[0.25, 0.75], [0.5, 0.5]]},
    {"outputs": {"probabilities": [[0.25, 0.75], [0.5, 0.5]], "classes": [1, 0]}},
    {"outputs": [[0.25, 0.75], [0.5, 0.5]]},
], ids=["rows of dicts", "rows of lists", "columnar dict", "columnar list"])
def test_every_tf_serving_answer_shape_is_read(body: dict[str, Any]) -> None:
    assert np.asarray(parse_predictions(json.dumps(body).encode())).tolist() == [[0.25, 0.75], [0.5, 0.5]]


@pytest.fixture
def vectors_base(tmp_path: Path) -> Path:
    """Version 1's assets without a SavedModel: enough for a frontend, no TensorFlow needed."""
    assets = tmp_path / "models" / MODEL / "1" / layout.ASSETS_DIR
    tiny_vectors().save(assets)
    (assets / layout.PREPROCESSING_FILE).write_text(json.dumps(layout.preprocessing_settings()))
    return tmp_path / "models"


STATUS_OK = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

ANSWERS: dict[str, tuple[int, str, type[BackendError]]] = {
    "not JSON": (200, "<html>oops</html>", BadResponse),
    "a list": (200, "[[0.1, 0.9]]", BadResponse),
    "no predictions": (200, '{"result": []}', BadResponse),
    "predictions not a list": (200, '{"predictions": 3}', BadResponse),
    "dict without probabilities": (200, '{"predictions": [{"classes": 0}, {"classes": 1}]}', BadResponse),
    "wrong count": (200, '{"predictions": [[0.1, 0.9]]}', BadResponse),
    "ragged": (200, '{"predictions": [[0.1, 0.9], [0.5]]}', BadResponse),
    "strings": (200, '{"predictions": [["a", "b"], ["c", "d"]]}', BadResponse),
    "NaN": (200, '{"predictions": [[NaN, 0.5], [0.5, 0.5]]}', BadResponse),
    "negative": (200, '{"predictions": [[-0.5, 1.5], [0.5, 0.5]]}', BadResponse),
    "columnar without probabilities": (200, '{"outputs": {"classes": [0, 1]}}', BadResponse),
    "server error": (500, '{"error": "boom"}', BackendError),
    "bad request": (400, '{"error": "Input size mismatch"}', BackendError),
    "overloaded": (429, '{"error": "too many"}', Overloaded),
    "proxy says down": (503, "upstream down", Unreachable),
}


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
def test_malformed_or_error_answers_are_backend_errors(vectors_base: Path, answer: tuple[int, str, type]) -> None:
    status, body, expected = answer

    class Predict(tornado.web.RequestHandler):
        def post(self, *args: str) -> None:
            self.set_status(status)
            self.finish(body)

    class Status(tornado.web.RequestHandler):
        def get(self, *args: str) -> None:
            self.finish(STATUS_OK)

    async def main() -> None:
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application([
            (r"/v1/models/([^/:]+)/versions/(\d+):predict", Predict),
            (r"/v1/models/([^/:]+)", Status),
        ]))
        server.add_sockets([sock])
        backend = RestBackend(ServeConfig(model_base=str(vectors_base), model_name=MODEL,
                                          tfs_rest=f"http://127.0.0.1:{port}", poll_seconds=60))
        try:
            await backend.start()
            assert backend.ready
            with pytest.raises(expected) as info:
                await backend.predict([SPAM, PASS], timeout=3)
            if expected is BackendError:
                assert str(status) in str(info.value)
        finally:
            await backend.close()
            server.stop()

    asyncio.run(main())
