"""Bad input, never a 500: random requests against the real app over real sockets.

The app runs with the in-process backend on a tiny model version (antispam/testing/tinymodel.py), so every
layer a client can reach is exercised: Tornado's request parsing, the handlers, the text
pipeline, the micro-batcher and the model. The property is the same for every request: the
answer is a documented status, errors have the JSON error shape with a code whose status is that
status, and the process keeps answering afterwards.
"""

from __future__ import annotations

import http.client
import json
import string
import time
import urllib.parse
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from antispam.config import ServeConfig
from antispam.errors import ERROR_CODES

DOCUMENTED = {200, 202, 400, 404, 405, 413, 414, 415, 431, 503}
MAX_CHARS = 300
MAX_BODY = 20_000
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from antispam.backends.local import LocalBackend
    from antispam.feedback import FeedbackStore
    from antispam.testing.tinymodel import build_version
    from tests.helpers.live_server import LiveServer

    root = tmp_path_factory.mktemp("fuzz")
    build_version(root / "models" / "cnn")
    config = ServeConfig(model_base=str(root / "models"), model_name="cnn", max_chars=MAX_CHARS,
                         max_body_bytes=MAX_BODY, max_texts=20, poll_seconds=0, cache_size=100,
                         deadline_ms=5000)
    store = FeedbackStore(root / "feedback.db", synchronous="NORMAL")
    server = LiveServer(config, LocalBackend, feedback_store=store).start()
    try:
        yield server
    finally:
        server.stop()
        store.close()


def request(live: Any, method: str, target: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=15)
    try:
        conn.request(method, target, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def check(status: int, headers: dict[str, str], body: bytes) -> Any:
    """The property: documented status, JSON body, and for errors the one error shape."""
    assert status in DOCUMENTED, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    payload = json.loads(body)
    # every answer names its request, in the body and the header (docs/contracts.md#request-ids)
    assert payload.get("request_id") == headers.get("x-request-id") and payload["request_id"], payload
    if status >= 400:
        assert set(payload) == {"error", "request_id"}, payload
        error = payload["error"]
        assert set(error) == {"code", "message"} and isinstance(error["message"], str)
        assert ERROR_CODES.get(error["code"]) == status, payload
    else:
        assert "data" in payload
    return payload


def get_predict(live: Any, raw_query: str) -> Any:
    return check(*request(live, "GET", "/predict?" + raw_query))


def post_json_bytes(live: Any, path: str, body: bytes, content_type: str = "application/json") -> Any:
    return check(*request(live, "POST", path, body, {"Content-Type": content_type}))


def quote_bytes(raw: bytes) -> str:
    return urllib.parse.quote_from_bytes(raw, safe="")


# -- GET /predict ------------------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=60))
@example("")
@example("\x00\x01\x7f\u200b")
@example("😀😀")
@example("①②③ ＡＢＣ")
def test_get_any_unicode_text(live: Any, text: str) -> None:
    payload = get_predict(live, "text=" + quote_bytes(text.encode("utf-8", "surrogatepass")))
    if "data" in payload:
        assert payload["data"]["text"] == text
        assert 0.0 <= payload["data"]["spam_probability"] <= 1.0


@FUZZ
@given(st.binary(max_size=40))
@example(b"\xed\xa0\x80")  # a UTF-8-encoded lone surrogate (invalid UTF-8)
@example(b"\xff\xfe")
@example(b"\xc3")  # truncated sequence
def test_get_any_bytes_in_the_query(live: Any, raw: bytes) -> None:
    get_predict(live, "text=" + quote_bytes(raw))


@FUZZ
@given(st.text(alphabet=string.printable, max_size=40))
@example("text=a&text=b")
@example("text")
@example("%zz=%")
@example("text=%E4%BD%A0%")
def test_get_any_query_string(live: Any, query: str) -> None:
    safe = urllib.parse.quote(query, safe="=&%;+")  # keep the structure, make it sendable
    get_predict(live, safe)


def test_get_huge_and_limit_texts(live: Any) -> None:
    assert get_predict(live, "text=" + "a" * MAX_CHARS)["data"]["text"] == "a" * MAX_CHARS
    too_long = get_predict(live, "text=" + "a" * (MAX_CHARS + 1))
    assert too_long["error"]["code"] == "text_too_long"
    # The longest legal text fits in Tornado's 64 KiB header limit even fully percent-encoded.
    longest = get_predict(live, "text=" + quote_bytes("好".encode() * MAX_CHARS))
    assert longest["data"]["text"] == "好" * MAX_CHARS
    # A request line past that limit is cut by Tornado before the app sees it: the connection is
    # closed without an answer (Tornado has no 414/431). The process must shrug it off.
    try:
        status, headers, body = request(live, "GET", "/predict?text=" + "a" * 70_000)
    except (ConnectionError, http.client.HTTPException):
        pass
    else:
        check(status, headers, body)
    assert live.get_json("/healthz")[0] == 200
    assert get_predict(live, "")["error"]["code"] == "missing_text"
    assert get_predict(live, "text=")["error"]["code"] in ("missing_text", "empty_text")


# -- POST /predict and /feedback ---------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=15,
)
PREDICT_BODIES = (
    JSON_VALUES
    | st.fixed_dictionaries({"texts": JSON_VALUES})
    | st.fixed_dictionaries({"text": JSON_VALUES})
    | st.fixed_dictionaries({"texts": st.lists(st.text(max_size=30), max_size=25)})
    | st.fixed_dictionaries({"text": st.text(max_size=30)}, optional={"texts": JSON_VALUES})
)


@FUZZ
@given(PREDICT_BODIES)
@example({"texts": []})
@example({"texts": ["ok", 1]})
@example({"texts": ["好"] * 21})
@example({"texts": ["\ud800"]})
@example({"text": "\udfff"})
@example([])
def test_post_predict_any_json(live: Any, body: Any) -> None:
    raw = json.dumps(body).encode("utf-8")  # \ud800 travels as a JSON escape, as a client may send
    payload = post_json_bytes(live, "/predict", raw)
    if "data" in payload and isinstance(body, dict) and "texts" in body:
        assert [item["text"] for item in payload["data"]] == body["texts"]


@FUZZ
@given(st.binary(max_size=200))
@example(b"")
@example(b"{")
@example(b'{"texts": ["a"]')
@example(b"\xff\xfe{}")
@example(b"[" * 5000 + b"]" * 5000)
@example(b'{"texts": ["\xed\xa0\x80"]}')
def test_post_predict_any_bytes(live: Any, raw: bytes) -> None:
    post_json_bytes(live, "/predict", raw)


@FUZZ
@given(st.sampled_from(["text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data",
                        "application/json; charset=latin-1", "application/problem+json",
                        "application/json; charset=UTF-8", "APPLICATION/JSON"]))
def test_post_predict_content_types(live: Any, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    check(*request(live, "POST", "/predict", b'{"text": "hello"}', headers))


def test_post_bodies_at_and_over_the_limit(live: Any) -> None:
    over = json.dumps({"texts": ["a" * 1000] * 30}).encode()
    assert len(over) > MAX_BODY
    assert post_json_bytes(live, "/predict", over)["error"]["code"] == "body_too_large"
    # Announced by Content-Length or not (chunked), the limit holds.
    status, headers, body = request(live, "POST", "/predict", iter([over[:10_000], over[10_000:]]),
                                    {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                    chunked=True)
    assert check(status, headers, body)["error"]["code"] == "body_too_large"
    texts = ["好" * MAX_CHARS] * 20
    body = json.dumps({"texts": texts}, ensure_ascii=False).encode()
    assert len(post_json_bytes(live, "/predict", body)["data"]) == 20


FEEDBACK_BODIES = (
    JSON_VALUES
    | st.fixed_dictionaries({"text": JSON_VALUES, "label": JSON_VALUES})
    | st.fixed_dictionaries({"text": st.text(max_size=30),
                             "label": st.sampled_from(["spam", "pass", 0, 1, "SPAM", 2, True, None])})
)


@FUZZ
@given(FEEDBACK_BODIES)
@example({"text": "代开发票", "label": "spam"})
@example({"text": "", "label": "spam"})
@example({"text": "\ud800", "label": 0})
def test_post_feedback_any_json(live: Any, body: Any) -> None:
    status, headers, raw = request(live, "POST", "/feedback", json.dumps(body).encode(),
                                   {"Content-Type": "application/json"})
    check(status, headers, raw)
    assert status != 200  # accepted feedback is 202, never 200


# -- any route, any method ---------------------------------------------------------------------

@FUZZ
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       st.sampled_from(["/predict", "/feedback", "/healthz", "/readyz", "/models", "/openapi.json",
                        "/", "/nope", "/predict/", "//predict", "/%ff", "/predict%00"]),
       st.binary(max_size=30))
def test_any_method_and_route(live: Any, method: str, path: str, body: bytes) -> None:
    status, headers, raw = request(live, method, path, body if method not in ("GET", "HEAD") else None,
                                   {"Content-Type": "application/json"})
    if method == "HEAD":
        assert status in DOCUMENTED and raw == b""
        return
    check(status, headers, raw)


def test_the_process_keeps_working(live: Any) -> None:
    """After all of the above (module order), it still answers and holds nothing in flight."""
    status, payload = live.get_json("/healthz")
    assert status == 200
    good = get_predict(live, "text=" + urllib.parse.quote("代开发票，优惠贷款，加微信13800138000"))
    assert good["data"]["label"] == "spam"
    # on_finish runs just after the answer is written: give the server thread a moment.
    deadline = time.monotonic() + 2
    while live.app.services.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.app.services.inflight == 0
    assert live.backend.status()["queued_texts"] == 0
    assert len(live.app.services.cache) <= live.config.cache_size

