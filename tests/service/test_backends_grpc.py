"""The gRPC backend against the stand-in TF Serving, and against a server that answers nonsense."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc
import numpy as np
import pytest

from antispam import versions as layout
from antispam.backends.base import NotReady, Overloaded
from antispam.backends.grpc import GrpcBackend, decode_tensor, encode_tensor
from antispam.backends.protos import get_model_status_pb2, predict_pb2, tensor_pb2
from antispam.backends.remote import BadResponse, Unreachable, UnreachableDeadline
from antispam.backends.remote_versions import AVAILABLE
from antispam.config import ServeConfig
from antispam.testing.standin_tfs import StandinTFS
from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT, tiny_vectors
from antispam.text import tokenize
from tests.helpers.standin import remote_config, run_started, standin_serving
from tests.helpers.timing import within

MODEL = "grpc_cnn"
SPAM, PASS = tokenize(SPAM_TEXT), tokenize(PASS_TEXT)


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    return standin_serving(MODEL)


def config(tfs: StandinTFS, **overrides: Any) -> ServeConfig:
    return remote_config(tfs, MODEL, **overrides)


def run(backend: GrpcBackend, scenario: Callable[[GrpcBackend], Awaitable[Any]]) -> Any:
    return run_started(backend, scenario)


@pytest.mark.parametrize("tensor_content", [False, True], ids=["float_val", "tensor_content"])
def test_scores_spam_and_pass_with_the_pinned_version(tfs: StandinTFS, tensor_content: bool) -> None:
    tfs.configure(tensor_content=tensor_content)
    try:
        result = run(GrpcBackend(config(tfs)), lambda b: b.predict([SPAM, PASS, SPAM], timeout=5))
    finally:
        tfs.configure(tensor_content=False)
    served = max(tfs.states(MODEL))
    assert result.backend == "grpc" and result.model_name == MODEL and result.version == served
    assert result.spam_probability.shape == (3,)
    assert result.spam_probability[0] > 0.5 > result.spam_probability[1]
    assert result.spam_probability[0] == pytest.approx(result.spam_probability[2])


def test_a_64_text_batch_keeps_its_order(tfs: StandinTFS) -> None:
    pattern = [i % 3 == 0 for i in range(64)]
    batch = [SPAM if spam else PASS for spam in pattern]
    result = run(GrpcBackend(config(tfs)), lambda b: b.predict(batch, timeout=5))
    assert [bool(p > 0.5) for p in result.spam_probability] == pattern


def test_the_request_is_one_raw_float_tensor_pinned_to_a_version(tfs: StandinTFS) -> None:
    backend = GrpcBackend(config(tfs))
    array = np.arange(2 * 20 * 200, dtype=np.float32).reshape(2, 20, 200)
    request = backend.build_request(array, version=3)
    tensor = request.inputs[layout.INPUT_KEY]
    assert tensor.dtype == tensor_pb2.DT_FLOAT and not tensor.float_val
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 20, 200]
    assert tensor.tensor_content == array.astype("<f4").tobytes()
    assert request.model_spec.version.value == 3 and request.model_spec.signature_name == "serving_default"


def test_a_pinned_version_that_vanished_is_refreshed_and_retried(tfs: StandinTFS) -> None:
    served = max(tfs.states(MODEL))

    def loader(model_dir: Path, version: int) -> layout.VersionAssets:
        # pretend the served version's vectors also belong to a version 99 TF Serving never had
        assets = layout.load_assets(model_dir, served)
        assets.version = version
        return assets

    async def scenario(backend: GrpcBackend) -> Any:
        await asyncio.shield(backend.versions.refresh())  # let start()'s refresh land first
        await backend.versions.apply({served: AVAILABLE, 99: AVAILABLE})
        assert backend.current_version == 99
        return await backend.predict([SPAM], timeout=5)

    backend = GrpcBackend(config(tfs, poll_seconds=60))
    backend.versions._loader = loader
    result = run(backend, scenario)
    assert result.version == served and backend.version_retries == 1


def test_an_unknown_model_is_not_ready(tfs: StandinTFS) -> None:
    async def scenario(backend: GrpcBackend) -> None:
        assert not backend.ready and backend.current_version is None
        with pytest.raises(NotReady):
            await backend.predict([SPAM], timeout=1)

    run(GrpcBackend(config(tfs, model_name="no_such_model")), scenario)


@pytest.mark.timing
def test_a_closed_grpc_port_is_unreachable_at_once(tfs: StandinTFS) -> None:
    async def scenario(backend: GrpcBackend) -> float:
        assert backend.ready
        tfs.grpc_down()
        started = time.monotonic()
        with pytest.raises(Unreachable) as info:
            await backend.predict([SPAM], timeout=3)
        assert not isinstance(info.value, UnreachableDeadline)
        return time.monotonic() - started

    try:
        elapsed = run(GrpcBackend(config(tfs)), scenario)
    finally:
        tfs.grpc_up()
    assert elapsed < within(1.0)


@pytest.mark.timing
def test_a_server_that_does_not_answer_costs_exactly_the_deadline(tfs: StandinTFS) -> None:
    async def scenario(backend: GrpcBackend) -> float:
        assert backend.ready
        tfs.pause()
        started = time.monotonic()
        with pytest.raises(UnreachableDeadline):
            await backend.predict([SPAM], timeout=0.3)
        return time.monotonic() - started

    try:
        elapsed = run(GrpcBackend(config(tfs)), scenario)
    finally:
        tfs.resume()
    assert 0.29 <= elapsed < within(0.6)


@pytest.mark.timing
def test_a_stalled_server_sheds_requests_past_max_queue(tfs: StandinTFS) -> None:
    async def scenario(backend: GrpcBackend) -> float:
        assert backend.ready
        tfs.pause()
        first = asyncio.ensure_future(backend.predict([SPAM, PASS], timeout=0.5))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Overloaded):
            await backend.predict([SPAM], timeout=0.5)
        shed = time.monotonic() - started
        with pytest.raises(UnreachableDeadline):
            await first
        return shed

    try:
        assert run(GrpcBackend(config(tfs, max_queue=2)), scenario) < within(0.05)
    finally:
        tfs.resume()


# --- answers we must not trust ----------------------------------------------------------------


@pytest.fixture
def vectors_base(tmp_path: Path) -> Path:
    """Version 1's assets without a SavedModel: enough for a frontend, no TensorFlow needed."""
    assets = tmp_path / "models" / MODEL / "1" / layout.ASSETS_DIR
    tiny_vectors().save(assets)
    (assets / layout.PREPROCESSING_FILE).write_text(json.dumps(layout.preprocessing_settings()))
    return tmp_path / "models"


def probabilities(values: Any, dtype: int = tensor_pb2.DT_FLOAT, version: int = 1,
                  key: str = "probabilities") -> bytes:
    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.version.value = MODEL, version
    encode_tensor(np.asarray(values, np.float32), response.outputs[key])
    response.outputs[key].dtype = dtype
    return response.SerializeToString()


def with_fields(shape: list[int], floats: list[float] | None = None, unknown_rank: bool = False) -> bytes:
    response = predict_pb2.PredictResponse()
    tensor = response.outputs["probabilities"]
    tensor.dtype = tensor_pb2.DT_FLOAT
    tensor.tensor_shape.unknown_rank = unknown_rank
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(floats or [])
    return response.SerializeToString()


def short_content() -> bytes:
    response = predict_pb2.PredictResponse()
    encode_tensor(np.zeros((2, 2), np.float32), response.outputs["probabilities"])
    response.outputs["probabilities"].tensor_content = b"\0" * 12
    return response.SerializeToString()


MALFORMED = {
    "wrong shape": probabilities([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]),
    "one row for two texts": probabilities([[0.1, 0.9]]),
    "integer dtype": probabilities([[0.1, 0.9], [0.2, 0.8]], dtype=tensor_pb2.DT_INT64),
    "string dtype": probabilities([[0.1, 0.9], [0.2, 0.8]], dtype=tensor_pb2.DT_STRING),
    "content too short": short_content(),
    "too many float_val": with_fields([2, 2], [0.1] * 5),
    "no values": with_fields([2, 2]),
    "unknown rank": with_fields([], [0.5], unknown_rank=True),
    "NaN": probabilities([[np.nan, 0.5], [0.5, 0.5]]),
    "above one": probabilities([[1.5, -0.5], [0.5, 0.5]]),
    "other version answered": probabilities([[0.1, 0.9], [0.2, 0.8]], version=7),
    "no probabilities output": probabilities([[0.1, 0.9], [0.2, 0.8]], key="scores"),
    "not a protobuf": b"\xff\xff\xff\xff",
}


async def fake_tfs(predict_reply: bytes) -> tuple[grpc.aio.Server, int]:
    def predict(request: predict_pb2.PredictRequest, context: Any) -> bytes:
        return predict_reply

    def status(request: Any, context: Any) -> bytes:
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=1, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        return response.SerializeToString()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, request_deserializer=predict_pb2.PredictRequest.FromString,
                response_serializer=lambda b: b)}),
        grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
            "GetModelStatus": grpc.unary_unary_rpc_method_handler(
                status, request_deserializer=lambda b: b, response_serializer=lambda b: b)}),
    ))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.mark.parametrize("reply", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_answers_are_backend_errors(vectors_base: Path, reply: bytes) -> None:
    async def main() -> None:
        server, port = await fake_tfs(reply)
        backend = GrpcBackend(ServeConfig(model_base=str(vectors_base), model_name=MODEL,
                                          tfs_grpc=f"127.0.0.1:{port}", poll_seconds=60))
        try:
            await backend.start()
            assert backend.ready
            with pytest.raises(BadResponse):
                await backend.predict([SPAM, PASS], timeout=3)
            assert backend.errors == 1
        finally:
            await backend.close()
            await server.stop(None)

    asyncio.run(main())


def test_a_well_formed_fake_answer_is_accepted(vectors_base: Path) -> None:
    """The fake server above is not broken in itself: a correct answer passes."""
    async def main() -> np.ndarray:
        server, port = await fake_tfs(probabilities([[0.25, 0.75], [0.5, 0.5]]))
        backend = GrpcBackend(ServeConfig(model_base=str(vectors_base), model_name=MODEL,
                                          tfs_grpc=f"127.0.0.1:{port}", poll_seconds=60))
        try:
            await backend.start()
            return (await backend.predict([SPAM, PASS], timeout=3)).spam_probability
        finally:
            await backend.close()
            await server.stop(None)

    assert asyncio.run(main()).tolist() == [0.25, 0.5]


def test_decode_tensor_repeats_a_short_typed_field_as_tensorflow_does() -> None:
    proto = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_FLOAT, float_val=[0.5])
    for size in (2, 2):
        proto.tensor_shape.dim.add(size=size)
    assert decode_tensor(proto).tolist() == [[0.5, 0.5], [0.5, 0.5]]
