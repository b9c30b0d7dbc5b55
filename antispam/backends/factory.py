"""Choose the backend for ``--backend auto | grpc | rest | local | grpc-only``.

``grpc`` is production's mode: gRPC with REST as fallback behind a circuit breaker; ``rest`` and
``grpc-only`` use one protocol (for setups where the other port is closed, and for tests).
``auto`` asks TF Serving for the model's status over gRPC, then over REST, each with a short
timeout; if either answers (even "no such model yet": the server is there and will load it), the
service uses gRPC with REST fallback, otherwise the in-process SavedModel (local) backend.

Every import happens inside the functions: the local backend imports TensorFlow and a remote
frontend must not (it would cost seconds and hundreds of MB per worker); the remote modules do not
import it. Call :func:`make_backend` in each worker process, after any fork: the probe uses gRPC.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import urllib.error
import urllib.request
from urllib.parse import quote

from antispam.backends.base import Backend
from antispam.config import ServeConfig
from antispam.errors import UserError

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.5  # seconds per protocol: a local TF Serving answers in milliseconds

# What the in-process backend imports (lazily, once started) beyond the core install.
LOCAL_MODULES = {"tensorflow": "tensorflow", "tensorflow_serving": "tensorflow-serving-api"}
LOCAL_INSTALL = "pip install 'antispam[local]'"


def make_backend(config: ServeConfig) -> Backend:
    kind = config.backend
    if kind == "local":
        return _local(config)
    if kind == "grpc":
        from antispam.backends.fallback import FallbackBackend

        return FallbackBackend(config)
    if kind == "grpc-only":
        from antispam.backends.grpc import GrpcBackend

        return GrpcBackend(config)
    if kind == "rest":
        from antispam.backends.rest import RestBackend

        return RestBackend(config)
    if kind == "auto":
        found = probe_tfs(config)
        if found:
            from antispam.backends.fallback import FallbackBackend

            log.info("TF Serving answers over %s: using gRPC %s with REST %s as fallback",
                     found, config.tfs_grpc, config.tfs_rest)
            return FallbackBackend(config)
        try:
            require_local()
        except UserError as exc:
            raise UserError(f"no TF Serving answers at {config.tfs_grpc} or {config.tfs_rest}, and {exc}; "
                            "or point --tfs-grpc/--tfs-rest at a running TF Serving") from None
        log.info("no TF Serving at %s or %s: serving the model in-process", config.tfs_grpc, config.tfs_rest)
        return _local(config)
    raise ValueError(f"unknown backend {kind!r} (expected auto, grpc, rest, local or grpc-only)")


def missing_local_modules() -> list[str]:
    """The distributions the in-process backend needs that this installation lacks (no import)."""
    return [dist for module, dist in LOCAL_MODULES.items() if importlib.util.find_spec(module) is None]


def require_local() -> None:
    """A one-line :class:`UserError` when the in-process backend cannot run in this installation.

    The core install (``pip install antispam``, the frontend image) is the remote frontend only;
    TensorFlow comes with the ``[local]`` extra. Checked before anything imports TensorFlow, so
    the user reads what to install instead of a ModuleNotFoundError traceback from a worker thread.
    """
    missing = missing_local_modules()
    if missing:
        raise UserError(f"the in-process (local) backend needs {' and '.join(missing)}, not installed "
                        f"here: {LOCAL_INSTALL}")


def _local(config: ServeConfig) -> Backend:
    require_local()
    from antispam.backends.local import LocalBackend

    return LocalBackend(config)


def probe_tfs(config: ServeConfig, timeout: float = PROBE_TIMEOUT) -> str | None:
    """"grpc" or "rest" for the first protocol on which TF Serving answers, else None."""
    if probe_grpc(config.tfs_grpc, config.model_name, timeout):
        return "grpc"
    if probe_rest(config.tfs_rest, config.model_name, timeout):
        return "rest"
    return None


def probe_grpc(address: str, model_name: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does a TF Serving ModelService answer at ``address``? (Blocking; before serving.)"""
    import grpc

    from antispam.backends.grpc import STATUS_METHOD
    from antispam.backends.protos import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(
            STATUS_METHOD,
            request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
            response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
        )
        try:
            rpc(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            # NOT_FOUND and friends are answers from a live server; these are not.
            return code not in (None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.UNIMPLEMENTED)
        except Exception as exc:  # a reply that is not a status: not TF Serving
            log.debug("gRPC probe of %s: %s", address, exc)
            return False
    return True


def probe_rest(base_url: str, model_name: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does TF Serving's REST API answer at ``base_url`` (JSON status or JSON error)?"""
    url = f"{base_url.rstrip('/')}/v1/models/{quote(model_name, safe='')}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:  # 404 "model not found" is TF Serving answering
        body = exc.read() if exc.code == 404 else b""
    except (OSError, ValueError) as exc:
        log.debug("REST probe of %s: %s", url, exc)
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and ("model_version_status" in doc or "error" in doc)
