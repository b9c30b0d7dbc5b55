"""The stock-TF-Serving op check (antispam.network.servable) and that export applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")

from antispam import versions  # noqa: E402
from antispam.features import DIM, MAX_LEN  # noqa: E402
from antispam.network import export as export_module  # noqa: E402
from antispam.network.export import ExportError, export_version  # noqa: E402
from antispam.network.servable import graph_ops, unservable_ops  # noqa: E402
from antispam.testing.tinymodel import build_version  # noqa: E402
from tests.helpers.network_helpers import exported_cnn, tiny_corpus_path, tiny_split, tiny_vectors, trained_cnn  # noqa: E402,F401


def save_module(path: Path, python_inside: bool) -> Path:
    """A module whose signature calls a nested tf.function; with ``python_inside`` that nested
    function (so: the function library, not the top-level graph) holds a tf.py_function."""

    class Module(tf.Module):
        @tf.function(autograph=False)
        def inner(self, x: tf.Tensor) -> tf.Tensor:
            if python_inside:
                return tf.py_function(lambda t: t * 2.0, [x], tf.float32)
            return x * 2.0

        @tf.function(input_signature=[tf.TensorSpec([None, MAX_LEN, DIM], tf.float32)], autograph=False)
        def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"out": self.inner(inputs)}

    module = Module()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_a_python_callback_anywhere_in_the_graph_is_refused(tmp_path: Path) -> None:
    clean = save_module(tmp_path / "clean", python_inside=False)
    python = save_module(tmp_path / "python", python_inside=True)
    assert unservable_ops(clean) == {}
    assert "EagerPyFunc" in graph_ops(python)
    assert set(unservable_ops(python)) == {"EagerPyFunc"}


def test_the_exported_networks_and_the_tiny_versions_are_servable(exported_cnn, tmp_path: Path) -> None:
    model_dir, version = exported_cnn
    path = versions.version_dir(model_dir, version)
    ops = graph_ops(path)
    assert ops["Conv2D"] + ops["Conv1D"] + ops["MatMul"] > 0  # the walk reaches the network's body
    assert unservable_ops(path) == {}
    tiny = versions.version_dir(tmp_path / "cnn", build_version(tmp_path / "cnn"))
    assert unservable_ops(tiny) == {}


def test_export_refuses_a_graph_with_a_python_op_and_publishes_nothing(trained_cnn, tiny_vectors, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    plain = export_module.serving_module

    def with_python_op(model: object) -> object:
        module = plain(model)
        serve = module.serve

        @tf.function(input_signature=[tf.TensorSpec([None, MAX_LEN, DIM], tf.float32, name=versions.INPUT_KEY)],
                     autograph=False)
        def python_serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            doubled = tf.py_function(lambda t: t, [inputs], tf.float32)
            doubled.set_shape(inputs.shape)
            return serve(doubled)

        module.serve = python_serve
        return module

    monkeypatch.setattr(export_module, "serving_module", with_python_op)
    model_dir = tmp_path / "cnn"
    with pytest.raises(ExportError, match="EagerPyFunc"):
        export_version(trained_cnn, tiny_vectors, model_dir, ["你好"])
    assert versions.list_versions(model_dir) == []
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".staging")]
