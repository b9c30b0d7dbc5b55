"""Our own TF Serving messages are wire-compatible with tensorflow-serving-api's official ones.

This module imports the official classes (and so TensorFlow); the service never does.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from antispam.backends.grpc import GrpcBackend, decode_tensor
from antispam.backends.protos import generate, get_model_status_pb2, model_pb2, predict_pb2, tensor_pb2
from antispam.config import ServeConfig
from antispam.versions import INPUT_KEY, PROBABILITIES_KEY, SIGNATURE

tf = pytest.importorskip("tensorflow")
official_predict = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.core.protobuf import error_codes_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_status_pb2 as official_status  # noqa: E402
from tensorflow_serving.apis import model_pb2 as official_model  # noqa: E402


def batch(n: int = 3) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, 20, 200)).astype(np.float32)


def test_our_predict_request_parses_with_the_official_class() -> None:
    array = batch()
    backend = GrpcBackend(ServeConfig(model_name="cnn"))
    ours = backend.build_request(array, version=7)

    official = official_predict.PredictRequest.FromString(ours.SerializeToString())

    assert official.model_spec.name == "cnn"
    assert official.model_spec.WhichOneof("version_choice") == "version"
    assert official.model_spec.version.value == 7
    assert official.model_spec.signature_name == SIGNATURE
    assert list(official.output_filter) == [PROBABILITIES_KEY]
    tensor = official.inputs[INPUT_KEY]
    assert tensor.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in tensor.tensor_shape.dim] == [3, 20, 200]
    assert len(tensor.float_val) == 0 and len(tensor.tensor_content) == array.nbytes  # raw bytes
    np.testing.assert_array_equal(tf.make_ndarray(tensor), array)


def test_official_predict_messages_parse_with_ours_and_back() -> None:
    array = batch(2)
    official = official_predict.PredictRequest(
        model_spec=official_model.ModelSpec(name="rnn", signature_name=SIGNATURE))
    official.model_spec.version.value = 12
    official.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(array))

    ours = predict_pb2.PredictRequest.FromString(official.SerializeToString())
    assert ours.model_spec.version.value == 12 and ours.model_spec.name == "rnn"
    np.testing.assert_array_equal(decode_tensor(ours.inputs[INPUT_KEY]), array)
    # and back, byte for byte what the official class would write
    assert official_predict.PredictRequest.FromString(ours.SerializeToString()) == official

    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    response = official_predict.PredictResponse()
    response.model_spec.name, response.model_spec.version.value = "rnn", 12
    response.outputs[PROBABILITIES_KEY].CopyFrom(tf.make_tensor_proto(probs))  # tensor_content
    response.outputs["classes"].CopyFrom(tf.make_tensor_proto(np.array([0, 1], np.int64)))
    parsed = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    assert parsed.model_spec.version.value == 12
    np.testing.assert_array_equal(decode_tensor(parsed.outputs[PROBABILITIES_KEY]), probs)

    # TF Serving itself answers with float_val
    as_fields = official_predict.PredictResponse()
    as_fields.outputs[PROBABILITIES_KEY].dtype = types_pb2.DT_FLOAT
    as_fields.outputs[PROBABILITIES_KEY].tensor_shape.CopyFrom(tf.TensorShape([2, 2]).as_proto())
    as_fields.outputs[PROBABILITIES_KEY].float_val.extend(probs.ravel().tolist())
    parsed = predict_pb2.PredictResponse.FromString(as_fields.SerializeToString())
    np.testing.assert_array_equal(decode_tensor(parsed.outputs[PROBABILITIES_KEY]), probs)


def test_model_status_round_trip() -> None:
    official = official_status.GetModelStatusResponse()
    official.model_version_status.add(version=3, state=official_status.ModelVersionStatus.AVAILABLE)
    row = official.model_version_status.add(version=4, state=official_status.ModelVersionStatus.LOADING)
    row.status.error_code = error_codes_pb2.UNAVAILABLE
    row.status.error_message = "still loading"

    ours = get_model_status_pb2.GetModelStatusResponse.FromString(official.SerializeToString())
    states = {r.version: get_model_status_pb2.ModelVersionStatus.State.Name(r.state)
              for r in ours.model_version_status}
    assert states == {3: "AVAILABLE", 4: "LOADING"}
    assert ours.model_version_status[1].status.error_message == "still loading"
    assert ours.model_version_status[1].status.error_code == get_model_status_pb2.StatusProto.UNAVAILABLE
    assert official_status.GetModelStatusResponse.FromString(ours.SerializeToString()) == official

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "cnn"
    assert official_status.GetModelStatusRequest.FromString(request.SerializeToString()).model_spec.name == "cnn"


def test_version_label_shares_the_oneof_as_in_tf_serving() -> None:
    spec = model_pb2.ModelSpec(name="cnn", version_label="stable")
    official = official_model.ModelSpec.FromString(spec.SerializeToString())
    assert official.WhichOneof("version_choice") == "version_label" and official.version_label == "stable"


def test_enum_numbers_match_tensorflow() -> None:
    for value in tensor_pb2.DataType.DESCRIPTOR.values:
        assert types_pb2.DataType.Value(value.name) == value.number, value.name
    for value in get_model_status_pb2.ModelVersionStatus.State.DESCRIPTOR.values:
        assert official_status.ModelVersionStatus.State.Value(value.name) == value.number, value.name
    for value in get_model_status_pb2.StatusProto.Code.DESCRIPTOR.values:
        assert error_codes_pb2.Code.Value(value.name) == value.number, value.name


def test_generated_modules_are_current() -> None:
    pytest.importorskip("grpc_tools")
    # In a fresh process: grpc_tools' compiler crashes in a process that has loaded TensorFlow.
    done = subprocess.run([sys.executable, "-m", generate.__name__, "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"stale generated code ({done.stderr.strip()}); run: python -m {generate.__name__}"
