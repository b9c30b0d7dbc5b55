"""A stand-in for TensorFlow Serving, for tests only (docs/architecture.md#test-equipment): no Docker engine runs here.

The server side (``python -m antispam.testing.standin_tfs``) speaks TF Serving's real wire formats:

* gRPC ``PredictionService.Predict`` / ``GetModelMetadata`` and ``ModelService.GetModelStatus``,
  implemented with the OFFICIAL generated classes from ``tensorflow_serving.apis``, so a client
  that talks to it talks to TF Serving's wire format;
* REST ``GET /v1/models/<name>[/versions/<n>]``, ``GET .../metadata`` and
  ``POST /v1/models/<name>[/versions/<n>]:predict`` (row ``instances`` and columnar ``inputs``).

It serves every model folder under ``--model-base`` (``<base>/<name>/<version>/``, the layout TF
Serving reads), loads versions with ``tf.saved_model.load``, polls for new ones, keeps the newest
``--keep`` versions AVAILABLE (TF Serving's default policy keeps one) and reports the others as
END, answers NOT_FOUND for versions it does not serve, and echoes the version that answered.
Like TF Serving, gRPC answers carry ``float_val`` (``tensor_content`` on request, see below).

Test-only controls (not TF Serving features): ``POST /_standin/grpc/stop`` and ``/start`` close
and reopen the gRPC port; ``POST /_standin/config`` with ``{"tensor_content": bool,
"predict_delay_ms": float}`` changes answers at run time; ``POST /_standin/connections`` answers
how many REST connections the server has accepted since it started (``rest_connections``, to
measure a client's keep-alive), and ``POST /_standin/connections/drop`` closes every REST
connection idle at that moment (a server dropping keep-alive connections).

The client side, :class:`StandinTFS`, runs the server in its own process (so killing it is real,
and TensorFlow is only imported there), on free ports chosen at first start and kept across
restarts, with ``stop`` (SIGKILL by default), ``restart``, ``pause``/``resume`` (SIGSTOP: a
server that accepts connections but never answers) and ``grpc_down``/``grpc_up``. The client
side imports neither TensorFlow nor grpc.

The test suite shares one stand-in per session and publishes tiny versions into it with the
helpers of ``tests/helpers/standin.py``; ``antispam bench`` starts its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

READY_PREFIX = "STANDIN-READY "
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------
# Client side: start, stop, inspect. Imports neither TensorFlow nor grpc.
# --------------------------------------------------------------------------------------------


class StandinTFS:
    """Controls one stand-in server process."""

    def __init__(self, model_base: str | os.PathLike[str], *, keep: int = 1, poll: float = 0.2,
                 grpc_port: int = 0, rest_port: int = 0, log_path: str | os.PathLike[str] | None = None,
                 start_timeout: float = 90.0) -> None:
        self.model_base = Path(model_base)
        self.keep = keep
        self.poll = poll
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.log_path = Path(log_path) if log_path else self.model_base.parent / "standin.log"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[str] | None = None
        self._ready = False

    # --- addresses ---------------------------------------------------------------------------

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "StandinTFS":
        """Launch and wait until both ports answer."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Spawn the server process; :meth:`wait_ready` waits for it (do other work between)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("stand-in already running")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
        command = [
            sys.executable, "-m", "antispam.testing.standin_tfs",
            "--model-base", str(self.model_base), "--keep", str(self.keep), "--poll", str(self.poll),
            "--grpc-port", str(self.grpc_port), "--rest-port", str(self.rest_port),
            "--parent-pid", str(os.getpid()),
        ]
        log_file = open(self.log_path, "a", encoding="utf-8")
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
        finally:
            log_file.close()
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(self.process.stdout, self._lines), daemon=True).start()
        self._ready = False

    def wait_ready(self) -> "StandinTFS":
        if self.process is None:
            raise RuntimeError("stand-in not launched")
        if self._ready:
            return self
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"stand-in did not start in {self.start_timeout} s; see {self.log_path}") from None
            if line.startswith(READY_PREFIX):
                ports = json.loads(line[len(READY_PREFIX):])
                self.grpc_port, self.rest_port = ports["grpc"], ports["rest"]
                self._ready = True
                return self
            if line == "":  # EOF: the process died
                self.process.wait()
                raise RuntimeError(f"stand-in exited with {self.process.returncode}; see {self.log_path}")

    def stop(self, graceful: bool = False) -> None:
        """Kill the server (SIGKILL: no goodbye to clients), or SIGTERM it if ``graceful``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            except ProcessLookupError:
                pass
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> "StandinTFS":
        """Kill and start again on the same ports."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: sockets stay open (connections are accepted by the kernel), nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> "StandinTFS":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls and inspection (over REST) ---------------------------------------------

    def grpc_down(self) -> None:
        self._admin("grpc/stop")

    def grpc_up(self) -> None:
        self._admin("grpc/start")

    def configure(self, **settings: Any) -> None:
        self._admin("config", settings)

    def rest_connections(self) -> int:
        """REST connections the server has accepted since it (re)started (this query's own included)."""
        return int(self._admin("connections")["rest_connections"])

    def drop_rest_connections(self) -> int:
        """Close every REST connection that is idle now (between requests); how many were closed."""
        return int(self._admin("connections/drop")["dropped"])

    def _admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(f"{self.rest_url}/_standin/{path}", method="POST",
                                         data=json.dumps(body or {}).encode())
        with _OPENER.open(request, timeout=10) as response:
            return json.loads(response.read())

    def states(self, model: str) -> dict[int, str]:
        """``{version: state}`` as the REST status route reports it ({} if the model is unknown)."""
        try:
            with _OPENER.open(f"{self.rest_url}/v1/models/{model}", timeout=5) as response:
                rows = json.loads(response.read())["model_version_status"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise
        return {int(row["version"]): row["state"] for row in rows}

    def wait_until(self, model: str, version: int, state: str = "AVAILABLE", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.states(model).get(version) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} v{version} not {state} after {timeout} s: {self.states(model)}")
            time.sleep(0.05)


def _pump(stream: Any, lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put("")


# --------------------------------------------------------------------------------------------
# Server side: runs only in the stand-in process, where TensorFlow is imported.
# --------------------------------------------------------------------------------------------

log = logging.getLogger("standin_tfs")


class StandinError(Exception):
    """An error answer: gRPC status code name and the HTTP status the REST API would use."""

    HTTP = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAVAILABLE": 503}

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = self.HTTP.get(code, 500)


class Version:
    def __init__(self, number: int) -> None:
        self.number = number
        self.state = "START"
        self.error = ""
        self.loaded: Any = None
        self.signature_defs: Any = None  # {name: SignatureDef} from saved_model.pb


class Models:
    """The models under the base path and their versions, kept current by a polling thread."""

    def __init__(self, base: Path, keep: int) -> None:
        self.base = base
        self.keep = keep
        self.lock = threading.Lock()
        self.models: dict[str, dict[int, Version]] = {}
        self.settings: dict[str, Any] = {"tensor_content": False, "predict_delay_ms": 0.0}

    def poll_forever(self, interval: float) -> None:
        while True:
            try:
                self.poll_once()
            except Exception:
                log.exception("poll failed")
            time.sleep(interval)

    def poll_once(self) -> None:
        from antispam.versions import list_versions

        if not self.base.is_dir():
            return
        for folder in sorted(p for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            on_disk = list_versions(folder)
            wanted = set(on_disk[-self.keep:]) if on_disk else set()
            with self.lock:
                versions = self.models.setdefault(folder.name, {})
                to_load = [versions.setdefault(n, Version(n)) for n in sorted(wanted, reverse=True)
                           if n not in versions or versions[n].state == "START"]
            for version in to_load:
                self._load(folder, version)
            with self.lock:
                for number, version in versions.items():
                    if number not in wanted and version.state in ("AVAILABLE", "LOADING", "START"):
                        version.state = "UNLOADING"
                        version.loaded = None
                        version.state = "END"
                        log.info("unloaded %s v%d", folder.name, number)

    def _load(self, folder: Path, version: Version) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        version.state = "LOADING"
        path = folder / str(version.number)
        try:
            loaded = tf.saved_model.load(str(path))
            proto = saved_model_pb2.SavedModel()
            proto.ParseFromString((path / "saved_model.pb").read_bytes())
            signature_defs = proto.meta_graphs[0].signature_def
        except Exception as exc:
            version.state, version.error = "END", f"{type(exc).__name__}: {exc}"
            log.warning("cannot load %s: %s", path, version.error)
            return
        with self.lock:
            version.loaded, version.signature_defs = loaded, signature_defs
            version.state = "AVAILABLE"
        log.info("loaded %s v%d", folder.name, version.number)

    def statuses(self, name: str, number: int | None = None) -> list[Version]:
        with self.lock:
            versions = self.models.get(name)
            if not versions:
                raise StandinError("NOT_FOUND", f"Could not find any versions of model {name}")
            if number is None:
                return [versions[n] for n in sorted(versions)]
            if number not in versions:
                raise StandinError("NOT_FOUND", f"Could not find version {number} of model {name}")
            return [versions[number]]

    def resolve(self, name: str, number: int | None) -> Version:
        with self.lock:
            available = {n: v for n, v in self.models.get(name, {}).items() if v.state == "AVAILABLE"}
            if number is None:
                if not available:
                    raise StandinError("NOT_FOUND", f"Servable not found for request: Latest({name})")
                return available[max(available)]
            if number not in available:
                raise StandinError("NOT_FOUND", f"Servable not found for request: Specific({name}, {number})")
            return available[number]

    def predict(self, name: str, number: int | None, signature: str,
                inputs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        import numpy as np
        import tensorflow as tf

        version = self.resolve(name, number)
        loaded = version.loaded  # may be unloaded meanwhile; this reference keeps it alive
        if loaded is None:
            raise StandinError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version.number})")
        signature = signature or "serving_default"
        if signature not in loaded.signatures:
            raise StandinError("FAILED_PRECONDITION", f"Serving signature key \"{signature}\" not found.")
        function = loaded.signatures[signature]
        expected = function.structured_input_signature[1]
        if set(inputs) != set(expected):
            raise StandinError("INVALID_ARGUMENT",
                               f"input keys {sorted(inputs)} do not match signature {sorted(expected)}")
        feed = {}
        for key, spec in expected.items():
            value = np.asarray(inputs[key])
            if value.dtype != spec.dtype.as_numpy_dtype:
                raise StandinError("INVALID_ARGUMENT",
                                   f"input {key} has dtype {value.dtype}, expected {spec.dtype.name}")
            if not spec.shape.is_compatible_with(value.shape):
                raise StandinError("INVALID_ARGUMENT",
                                   f"input {key} has shape {list(value.shape)}, expected {spec.shape}")
            feed[key] = tf.constant(value)
        delay = float(self.settings.get("predict_delay_ms") or 0)
        if delay:
            time.sleep(delay / 1000)
        outputs = function(**feed)
        return version.number, {key: tensor.numpy() for key, tensor in outputs.items()}


def _grpc_server(models: Models, port: int) -> tuple[Any, int]:
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    def abort(context: Any, exc: StandinError) -> None:
        context.abort(getattr(grpc.StatusCode, exc.code), exc.message)

    def fill_spec(spec: Any, name: str, number: int, signature: str | None = None) -> None:
        spec.name = name
        spec.version.value = number
        if signature is not None:
            spec.signature_name = signature

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request: Any, context: Any) -> Any:
            spec = request.model_spec
            number = spec.version.value if spec.HasField("version") else None
            if spec.WhichOneof("version_choice") == "version_label":
                abort(context, StandinError("UNIMPLEMENTED", "version labels are not supported by the stand-in"))
            try:
                inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            except Exception as exc:
                abort(context, StandinError("INVALID_ARGUMENT", f"bad input tensor: {exc}"))
            try:
                served, outputs = models.predict(spec.name, number, spec.signature_name, inputs)
            except StandinError as exc:
                abort(context, exc)
            except Exception as exc:  # what TF Serving reports for a failing model run
                abort(context, StandinError("INVALID_ARGUMENT", f"{type(exc).__name__}: {exc}"))
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, spec.name, served, spec.signature_name or "serving_default")
            wanted = set(request.output_filter) or set(outputs)
            for key in wanted:
                if key not in outputs:
                    abort(context, StandinError("INVALID_ARGUMENT", f"output_filter {key} not in signature"))
                value = outputs[key]
                if models.settings.get("tensor_content"):
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                else:  # TF Serving's default: typed repeated fields
                    proto = response.outputs[key]
                    proto.dtype = tf.as_dtype(value.dtype).as_datatype_enum
                    proto.tensor_shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
                    if value.dtype.kind == "f":
                        proto.float_val.extend(value.astype("float32").ravel().tolist())
                    else:
                        proto.int64_val.extend(value.astype("int64").ravel().tolist())
            return response

        def GetModelMetadata(self, request: Any, context: Any) -> Any:
            from tensorflow.core.protobuf import meta_graph_pb2

            spec = request.model_spec
            if list(request.metadata_field) != ["signature_def"]:
                abort(context, StandinError("INVALID_ARGUMENT", "metadata_field must be [\"signature_def\"]"))
            try:
                version = models.resolve(spec.name, spec.version.value if spec.HasField("version") else None)
            except StandinError as exc:
                abort(context, exc)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            fill_spec(response.model_spec, spec.name, version.number)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, value in version.signature_defs.items():
                if not key.startswith("__"):
                    signature_map.signature_def[key].CopyFrom(meta_graph_pb2.SignatureDef.FromString(
                        value.SerializeToString()))
            response.metadata["signature_def"].Pack(signature_map)
            return response

    class ModelStatus(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request: Any, context: Any) -> Any:
            spec = request.model_spec
            try:
                rows = models.statuses(spec.name, spec.version.value if spec.HasField("version") else None)
            except StandinError as exc:
                abort(context, exc)
            response = get_model_status_pb2.GetModelStatusResponse()
            state_enum = get_model_status_pb2.ModelVersionStatus.State
            for version in rows:
                row = response.model_version_status.add(version=version.number, state=state_enum.Value(version.state))
                if version.error:
                    row.status.error_code = 13  # INTERNAL
                    row.status.error_message = version.error
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
    ])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelStatus(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if not bound:
        raise RuntimeError(f"cannot bind gRPC port {port}")
    server.start()
    return server, bound


class _Connections:
    """The REST server's accepted connections: a count, and the streams still open (to drop)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.streams: list[Any] = []  # IOStreams of the accepted connections not seen closed yet

    def accept(self, stream: Any) -> None:
        self.accepted += 1
        self.streams = [s for s in self.streams if not s.closed()]
        self.streams.append(stream)

    def drop(self, keep: Any) -> int:
        """Close every open connection except ``keep`` (the one asking); how many were closed."""
        dropped = 0
        for stream in self.streams:
            if stream is not keep and not stream.closed():
                stream.close()
                dropped += 1
        self.streams = [keep] if keep in self.streams else []
        return dropped


def _rest_app(models: Models, grpc_control: dict[str, Any], connections: _Connections | None = None) -> Any:
    import numpy as np
    import tornado.web
    from tornado.ioloop import IOLoop

    def status_json(version: Version) -> dict[str, Any]:
        return {"version": str(version.number), "state": version.state,
                "status": {"error_code": "INTERNAL" if version.error else "OK", "error_message": version.error}}

    class Base(tornado.web.RequestHandler):
        def fail(self, exc: StandinError) -> None:
            self.set_status(exc.http_status)
            self.finish({"error": exc.message})

    class Status(Base):
        def get(self, name: str, number: str | None = None) -> None:
            try:
                rows = models.statuses(name, int(number) if number else None)
            except StandinError as exc:
                return self.fail(exc)
            self.finish({"model_version_status": [status_json(v) for v in rows]})

    class Metadata(Base):
        def get(self, name: str, number: str | None = None) -> None:
            from google.protobuf import json_format

            try:
                version = models.resolve(name, int(number) if number else None)
            except StandinError as exc:
                return self.fail(exc)
            defs = {k: json_format.MessageToDict(v) for k, v in version.signature_defs.items()
                    if not k.startswith("__")}
            self.finish({"model_spec": {"name": name, "signature_name": "", "version": str(version.number)},
                         "metadata": {"signature_def": {"signature_def": defs}}})

    class Predict(Base):
        async def post(self, name: str, number: str | None = None) -> None:
            try:
                body = json.loads(self.request.body)
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
            except ValueError as exc:
                return self.fail(StandinError("INVALID_ARGUMENT", f"JSON Parse error: {exc}"))
            signature = body.get("signature_name", "serving_default")
            row_format = "instances" in body
            if row_format == ("inputs" in body):
                return self.fail(StandinError("INVALID_ARGUMENT", "need exactly one of instances or inputs"))
            payload = body["instances"] if row_format else body["inputs"]
            try:
                if isinstance(payload, dict):
                    inputs = {k: np.asarray(v, dtype=np.float32) for k, v in payload.items()}
                elif row_format and payload and isinstance(payload[0], dict):
                    inputs = {k: np.asarray([row[k] for row in payload], dtype=np.float32) for k in payload[0]}
                else:
                    inputs = {"inputs": np.asarray(payload, dtype=np.float32)}
            except (ValueError, TypeError, KeyError) as exc:
                return self.fail(StandinError("INVALID_ARGUMENT", f"cannot read inputs: {exc}"))
            try:
                _, outputs = await IOLoop.current().run_in_executor(
                    None, models.predict, name, int(number) if number else None, signature, inputs)
            except StandinError as exc:
                return self.fail(exc)
            except Exception as exc:
                return self.fail(StandinError("INVALID_ARGUMENT", f"{type(exc).__name__}: {exc}"))
            listed = {k: v.tolist() for k, v in outputs.items()}
            if not row_format:
                self.finish({"outputs": listed if len(listed) > 1 else next(iter(listed.values()))})
            elif len(listed) == 1:
                self.finish({"predictions": next(iter(listed.values()))})
            else:
                rows = len(next(iter(listed.values())))
                self.finish({"predictions": [{k: v[i] for k, v in listed.items()} for i in range(rows)]})

    class Admin(Base):
        def post(self, what: str) -> None:
            if what == "grpc/stop":
                server = grpc_control.pop("server", None)
                if server is not None:
                    server.stop(None).wait()
            elif what == "grpc/start":
                if "server" not in grpc_control:
                    grpc_control["server"], _ = _grpc_server(models, grpc_control["port"])
            elif what == "config":
                models.settings.update(json.loads(self.request.body or b"{}"))
            elif what == "connections":
                self.finish({"rest_connections": connections.accepted if connections else None})
                return
            elif what == "connections/drop":
                stream = getattr(self.request.connection, "stream", None)
                self.finish({"dropped": connections.drop(keep=stream) if connections else 0})
                return
            else:
                raise tornado.web.HTTPError(404)
            self.finish({"ok": True, "grpc": "server" in grpc_control, "settings": models.settings})

    name = r"([^/:]+)"
    version = r"(?:/versions/(\d+))?"
    return tornado.web.Application([
        (rf"/v1/models/{name}{version}", Status),
        (rf"/v1/models/{name}{version}/metadata", Metadata),
        (rf"/v1/models/{name}{version}:predict", Predict),
        (r"/_standin/(grpc/stop|grpc/start|config|connections|connections/drop)", Admin),
    ])


def _watch_parent(parent: int) -> None:
    """Exit when the test process that started us is gone (no orphans holding ports)."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TF Serving stand-in (tests only)")
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--keep", type=int, default=1, help="newest versions kept AVAILABLE per model")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks for new versions")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--rest-port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s standin %(levelname)s %(message)s")
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()

    import tensorflow as tf
    import tornado.ioloop
    import tornado.netutil

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    models = Models(Path(args.model_base), args.keep)
    models.poll_once()
    threading.Thread(target=models.poll_forever, args=(args.poll,), daemon=True).start()

    server, grpc_port = _grpc_server(models, args.grpc_port)
    grpc_control: dict[str, Any] = {"server": server, "port": grpc_port}
    sockets = tornado.netutil.bind_sockets(args.rest_port, "127.0.0.1")
    rest_port = sockets[0].getsockname()[1]

    async def serve() -> None:
        import asyncio

        import tornado.httpserver

        connections = _Connections()

        class CountingServer(tornado.httpserver.HTTPServer):
            def handle_stream(self, stream: Any, address: tuple[Any, ...]) -> None:
                connections.accept(stream)
                super().handle_stream(stream, address)

        http = CountingServer(_rest_app(models, grpc_control, connections), max_body_size=256 * 1024 * 1024)
        http.add_sockets(sockets)
        print(READY_PREFIX + json.dumps({"grpc": grpc_port, "rest": rest_port}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        http.stop()
        grpc_server = grpc_control.get("server")
        if grpc_server is not None:
            grpc_server.stop(None)

    import asyncio

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
