"""Backend choice (local | grpc | rest | auto), and proof that a remote frontend never loads TF."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Iterator

import grpc
import pytest

from antispam.backends import factory
from antispam.backends.fallback import FallbackBackend
from antispam.backends.grpc import GrpcBackend
from antispam.backends.rest import RestBackend
from antispam.config import ServeConfig
from antispam.testing.standin_tfs import StandinTFS
from tests.helpers.standin import standin_serving
from tests.helpers.timing import within

MODEL = "factory_cnn"


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    return standin_serving(MODEL)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nowhere(**overrides: Any) -> ServeConfig:
    """A config whose TF Serving addresses have nobody listening."""
    return ServeConfig(model_name=MODEL, tfs_grpc=f"127.0.0.1:{unused_port()}",
                       tfs_rest=f"http://127.0.0.1:{unused_port()}", **overrides)


def test_explicit_choices_build_the_named_backend_without_probing() -> None:
    assert isinstance(factory.make_backend(nowhere(backend="grpc")), FallbackBackend)
    assert isinstance(factory.make_backend(nowhere(backend="grpc-only")), GrpcBackend)
    assert isinstance(factory.make_backend(nowhere(backend="rest")), RestBackend)
    with pytest.raises(ValueError, match="unknown backend"):
        factory.make_backend(nowhere(backend="carrier-pigeon"))


def test_local_choice_builds_the_in_process_backend() -> None:
    local = pytest.importorskip("antispam.backends.local")
    assert isinstance(factory.make_backend(nowhere(backend="local")), local.LocalBackend)


@pytest.mark.timing
def test_auto_without_tf_serving_serves_in_process_after_a_quick_probe() -> None:
    local = pytest.importorskip("antispam.backends.local")
    started = time.monotonic()
    backend = factory.make_backend(nowhere(backend="auto"))
    assert isinstance(backend, local.LocalBackend)
    assert time.monotonic() - started < within(2 * factory.PROBE_TIMEOUT + 0.5)


def test_auto_with_tf_serving_uses_grpc_with_rest_fallback(tfs: StandinTFS) -> None:
    config = ServeConfig(backend="auto", model_name=MODEL, tfs_grpc=tfs.grpc_target, tfs_rest=tfs.rest_url)
    assert factory.probe_tfs(config) == "grpc"
    assert isinstance(factory.make_backend(config), FallbackBackend)


def test_auto_when_only_rest_answers_still_uses_the_fallback(tfs: StandinTFS) -> None:
    config = ServeConfig(backend="auto", model_name=MODEL, tfs_grpc=f"127.0.0.1:{unused_port()}",
                         tfs_rest=tfs.rest_url)
    assert factory.probe_tfs(config) == "rest"
    assert isinstance(factory.make_backend(config), FallbackBackend)


def test_a_model_tf_serving_does_not_have_yet_still_counts_as_tf_serving(tfs: StandinTFS) -> None:
    assert factory.probe_grpc(tfs.grpc_target, "not_loaded_yet")  # NOT_FOUND is an answer
    assert factory.probe_rest(tfs.rest_url, "not_loaded_yet")


@pytest.fixture
def other_grpc_server() -> Iterator[str]:
    """A gRPC server that is not TF Serving (every method UNIMPLEMENTED)."""
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def other_http_server() -> Iterator[str]:
    """An HTTP server that is not TF Serving (HTML for everything)."""
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_other_servers_on_the_ports_are_not_mistaken_for_tf_serving(other_grpc_server: str,
                                                                    other_http_server: str) -> None:
    assert not factory.probe_grpc(other_grpc_server, MODEL)
    assert not factory.probe_rest(other_http_server, MODEL)


FRONTEND = textwrap.dedent("""
    import asyncio, json, sys, time
    started = time.perf_counter()
    import antispam.backends.breaker, antispam.backends.factory, antispam.backends.fallback
    import antispam.backends.grpc, antispam.backends.remote, antispam.backends.remote_versions
    import antispam.backends.rest
    from antispam.backends.factory import make_backend
    from antispam.config import ServeConfig
    from antispam.text import tokenize
    imported = time.perf_counter() - started

    config = ServeConfig(backend="auto", model_base=sys.argv[1], model_name=sys.argv[2],
                         tfs_grpc=sys.argv[3], tfs_rest=sys.argv[4], poll_seconds=0.2)
    answers = {}

    async def main():
        backend = make_backend(config)
        await backend.start()
        try:
            result = await backend.predict([tokenize("代开发票，优惠贷款，加微信")], timeout=5)
            answers["predict"] = [result.backend, float(result.spam_probability[0])]
            try:
                from antispam.app import make_app
            except ModuleNotFoundError:
                answers["app"] = "absent"
            else:
                import tornado.httpclient, tornado.testing
                sock, port = tornado.testing.bind_unused_port()
                server = tornado.httpserver.HTTPServer(make_app(config, backend))
                server.add_sockets([sock])
                client = tornado.httpclient.AsyncHTTPClient()
                reply = await client.fetch(f"http://127.0.0.1:{port}/predict?text=%E4%BB%A3%E5%BC%80%E5%8F%91%E7%A5%A8")
                answers["app"] = json.loads(reply.body)["data"]["label"]
                server.stop()
        finally:
            await backend.close()
        answers["backend"] = type(backend).__name__

    import tornado.httpserver
    asyncio.run(main())
    print(json.dumps({
        "imported_seconds": imported,
        "tensorflow": sorted(m for m in sys.modules
                             if m == "tensorflow" or m.startswith(("tensorflow.", "tensorflow_serving"))),
        "local_imported": "antispam.backends.local" in sys.modules,
        **answers,
    }))
""")


def test_remote_frontend_never_imports_tensorflow(tfs: StandinTFS) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRONTEND, str(tfs.model_base), MODEL, tfs.grpc_target, tfs.rest_url],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tensorflow"] == []
    assert report["local_imported"] is False
    assert report["backend"] == "FallbackBackend"
    assert report["predict"][0] == "grpc" and report["predict"][1] > 0.5
    # the service itself, through a real socket, on this backend
    assert report["app"] == ("spam" if importlib.util.find_spec("antispam.app") else "absent")
