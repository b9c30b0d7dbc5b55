"""The stand-in behaves like TF Serving where our tests rely on it, seen through the OFFICIAL
tensorflow-serving-api stubs and the REST routes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterator

import grpc
import numpy as np
import pytest

from antispam.testing.standin_tfs import StandinTFS
from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT, tiny_vectors
from antispam.text import tokenize
from tests.helpers.standin import publish_tiny, standin_serving

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

MODEL = "standin_cnn"


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    return standin_serving(MODEL)


@pytest.fixture
def channel(tfs: StandinTFS) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(tfs.grpc_target) as ch:
        yield ch


def predict_request(version: int | None = None, name: str = MODEL) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    batch = tiny_vectors().featurize_batch([tokenize(SPAM_TEXT), tokenize(PASS_TEXT)])
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(batch))
    return request


def rest(tfs: StandinTFS, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(tfs.rest_url + path, data=data), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_official_predict_latest_and_pinned(tfs: StandinTFS, channel: grpc.Channel) -> None:
    tfs.wait_until(MODEL, 1)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    latest = stub.Predict(predict_request(), timeout=10)
    pinned = stub.Predict(predict_request(1), timeout=10)
    for response in (latest, pinned):
        probs = tf.make_ndarray(response.outputs["probabilities"])
        assert probs.shape == (2, 2) and probs[0, 0] > 0.5 > probs[1, 0]
        assert tf.make_ndarray(response.outputs["classes"]).tolist() == [0, 1]
    assert pinned.model_spec.version.value == 1 and pinned.model_spec.name == MODEL


@pytest.mark.parametrize("request_", [predict_request(99), predict_request(name="nope")], ids=["version", "model"])
def test_unknown_versions_and_models_are_not_found(channel: grpc.Channel, request_: Any) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_wrong_input_shape_is_invalid_argument(channel: grpc.Channel) -> None:
    request = predict_request(1)
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 5, 200), np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_shows_the_design_signature(channel: grpc.Channel) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert set(signature.inputs) == {"inputs"} and set(signature.outputs) == {"probabilities", "classes"}
    assert [d.size for d in signature.inputs["inputs"].tensor_shape.dim] == [-1, 20, 200]


def test_old_versions_end_and_status_reports_them(tfs: StandinTFS, channel: grpc.Channel) -> None:
    publish_tiny(tfs, MODEL)
    newest = publish_tiny(tfs, MODEL)
    tfs.wait_until(MODEL, newest - 2, "END")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    states = {row.version: get_model_status_pb2.ModelVersionStatus.State.Name(row.state)
              for row in response.model_version_status}
    assert states[newest] == states[newest - 1] == "AVAILABLE"  # keep=2
    assert states[newest - 2] == "END"
    assert rest(tfs, f"/v1/models/{MODEL}/versions/{newest - 2}")[1]["model_version_status"][0]["state"] == "END"


def test_rest_routes(tfs: StandinTFS) -> None:
    batch = tiny_vectors().featurize_batch([tokenize(SPAM_TEXT)]).tolist()
    version = max(v for v, s in tfs.states(MODEL).items() if s == "AVAILABLE")
    code, rows = rest(tfs, f"/v1/models/{MODEL}/versions/{version}:predict", {"instances": batch})
    assert code == 200 and rows["predictions"][0]["probabilities"][0] > 0.5
    code, columns = rest(tfs, f"/v1/models/{MODEL}:predict", {"inputs": batch})
    assert code == 200 and columns["outputs"]["probabilities"][0][0] > 0.5
    assert rest(tfs, f"/v1/models/{MODEL}/versions/99:predict", {"instances": batch})[0] == 404
    assert rest(tfs, f"/v1/models/{MODEL}:predict", {"instances": [[1.0]]})[0] == 400
    assert rest(tfs, "/v1/models/nope")[0] == 404
    code, metadata = rest(tfs, f"/v1/models/{MODEL}/metadata")
    assert code == 200 and "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]
