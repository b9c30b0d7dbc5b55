"""TF Serving over gRPC: ``PredictionService/Predict`` and ``ModelService/GetModelStatus``.

One persistent ``grpc.aio`` channel per backend; every call carries its own deadline. The tensor
travels as one ``TensorProto`` with raw little-endian ``tensor_content`` bytes (a 64-text batch
is 1 MB; a ``float_val`` list of 256,000 Python floats would cost far more to build). The request
pins ``model_spec.version`` to the version whose vectors built the tensor.

The messages are our own (:mod:`antispam.backends.protos`, same field numbers as TF Serving's),
because ``tensorflow_serving.apis`` imports all of TensorFlow; the RPCs are called by their TF
Serving method paths, which is what the server routes on.
"""

from __future__ import annotations

from typing import Any, Mapping

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from antispam.backends.base import BackendError, Overloaded
from antispam.backends.protos import get_model_status_pb2, predict_pb2, tensor_pb2
from antispam.backends.remote import BadResponse, RemoteBackend, Unreachable, UnreachableDeadline, VersionGone
from antispam.backends.remote_versions import RemoteVersions
from antispam.config import ServeConfig
from antispam.features import Plan
from antispam.versions import INPUT_KEY, PROBABILITIES_KEY, SIGNATURE, VersionAssets

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"

# A 100-text batch is 1.6 MB; leave room. Reconnect quickly once a restarted server listens
# again (gRPC's default backoff grows to 120 s), so the circuit breaker's probe finds it, and
# keep the connection state per channel: gRPC otherwise shares subchannels process-wide, and a
# new channel would inherit another one's reconnect backoff.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

# Codes meaning "no answer from the server": the fallback tries REST.
UNREACHABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,  # what gRPC reports for a stream reset by a dying server
})

_NUMPY_OF: dict[int, tuple[np.dtype[Any], str]] = {
    tensor_pb2.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    tensor_pb2.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    tensor_pb2.DT_HALF: (np.dtype("<f2"), "half_val"),
}


def encode_tensor(array: np.ndarray, out: tensor_pb2.TensorProto) -> None:
    """Fill ``out`` with a float32 array as dtype, shape and raw ``tensor_content``."""
    data = np.ascontiguousarray(array, dtype="<f4")
    out.dtype = tensor_pb2.DT_FLOAT
    for size in data.shape:
        out.tensor_shape.dim.add(size=size)
    out.tensor_content = data.tobytes()


def decode_tensor(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A floating-point ``TensorProto`` as a numpy array; anything else is :class:`BadResponse`.

    Accepts ``tensor_content`` and the typed repeated fields (TF Serving answers with
    ``float_val``). As in TensorFlow, a repeated field shorter than the shape repeats its last
    value.
    """
    if proto.dtype not in _NUMPY_OF:
        name = tensor_pb2.DataType.Name(proto.dtype) if proto.dtype in tensor_pb2.DataType.values() else proto.dtype
        raise BadResponse(f"probabilities have dtype {name}, expected a floating-point type")
    dtype, field = _NUMPY_OF[proto.dtype]
    if proto.tensor_shape.unknown_rank:
        raise BadResponse("probabilities have unknown rank")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise BadResponse(f"probabilities have a negative dimension: {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise BadResponse(
                f"probabilities: {len(proto.tensor_content)} bytes of content for shape {shape}")
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = getattr(proto, field)
    if field == "half_val":  # float16 bit patterns stored in int32s
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=dtype)
    if len(flat) == count:
        return flat.reshape(shape)
    if 0 < len(flat) < count:
        return np.concatenate([flat, np.full(count - len(flat), flat[-1], dtype=flat.dtype)]).reshape(shape)
    raise BadResponse(f"probabilities: {len(flat)} values for shape {shape}")


def _map_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> BackendError:
    code, details = exc.code(), exc.details() or ""
    message = f"gRPC {what}: {code.name} {details}".strip()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UnreachableDeadline(message)
    if code in UNREACHABLE_CODES:
        return Unreachable(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return VersionGone(message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Overloaded(message)
    return BackendError(message)


def _parse(message: Any, reply: Any, what: str) -> Any:
    if not isinstance(reply, bytes):
        raise BadResponse(f"gRPC {what}: no answer body")
    try:
        return message.FromString(reply)
    except DecodeError as exc:
        raise BadResponse(f"gRPC {what}: answer is not a {message.__name__} ({exc})") from exc


class GrpcBackend(RemoteBackend):
    """TF Serving's gRPC API at ``config.tfs_grpc`` (host:port)."""

    name = "grpc"

    def __init__(self, config: ServeConfig, *, versions: RemoteVersions | None = None,
                 poll: bool | None = None, channel_options: list[tuple[str, int]] | None = None) -> None:
        super().__init__(config, versions=versions, poll=poll)
        self.address = config.tfs_grpc
        self._channel_options = CHANNEL_OPTIONS if channel_options is None else channel_options
        self._channel: grpc.aio.Channel | None = None

    def target(self) -> str:
        return self.address

    async def _open(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.address, options=self._channel_options)
        # Answers arrive as bytes and are parsed here: a deserializer that fails inside gRPC
        # only logs and hands back None.
        self._predict_rpc = self._channel.unary_unary(
            PREDICT_METHOD, request_serializer=predict_pb2.PredictRequest.SerializeToString)
        self._status_rpc = self._channel.unary_unary(
            STATUS_METHOD, request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString)

    async def _close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def build_request(self, tensor: np.ndarray, version: int) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest(output_filter=[PROBABILITIES_KEY])
        request.model_spec.name = self.model_name
        request.model_spec.version.value = version
        request.model_spec.signature_name = SIGNATURE
        encode_tensor(tensor, request.inputs[INPUT_KEY])
        return request

    async def _call(self, assets: VersionAssets, plan: Plan, timeout: float) -> np.ndarray:
        version = assets.version
        request = self.build_request(assets.featurizer.rows(plan), version)
        try:
            reply = await self._predict_rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _map_rpc_error(exc, f"Predict {self.model_name} v{version}") from exc
        except (OSError, grpc.RpcError) as exc:
            raise Unreachable(f"gRPC Predict: {exc}") from exc
        except Exception as exc:  # e.g. the channel closed under us: an error, never a crash
            raise BackendError(f"gRPC Predict: {type(exc).__name__}: {exc}") from exc
        response = _parse(predict_pb2.PredictResponse, reply, "Predict")
        spec = response.model_spec
        if spec.HasField("version") and spec.version.value != version:
            raise BadResponse(f"asked for version {version}, TF Serving answered with {spec.version.value}")
        if PROBABILITIES_KEY not in response.outputs:
            raise BadResponse(f"response has no {PROBABILITIES_KEY!r} output (has {sorted(response.outputs)})")
        return decode_tensor(response.outputs[PROBABILITIES_KEY])

    async def fetch_states(self, timeout: float) -> Mapping[int, str]:
        if self._channel is None:
            raise BackendError("gRPC backend used before start()")
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        try:
            reply = await self._status_rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return {}  # TF Serving answers, but has no version of this model (yet)
            raise _map_rpc_error(exc, f"GetModelStatus {self.model_name}") from exc
        except (OSError, grpc.RpcError) as exc:
            raise Unreachable(f"gRPC GetModelStatus: {exc}") from exc
        except Exception as exc:
            raise BackendError(f"gRPC GetModelStatus: {type(exc).__name__}: {exc}") from exc
        response = _parse(get_model_status_pb2.GetModelStatusResponse, reply, "GetModelStatus")
        states: dict[int, str] = {}
        state_enum = get_model_status_pb2.ModelVersionStatus.State
        for row in response.model_version_status:
            states[int(row.version)] = state_enum.Name(row.state) if row.state in state_enum.values() else "UNKNOWN"
        return states
