"""Exported versions: the docs/contracts.md#version-layout signature and layout, warmup records, atomic publish."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from antispam import versions  # noqa: E402
from antispam.features import DIM, FIRST_WINDOW, MAX_LEN, WordVectors  # noqa: E402
from antispam.network import export as export_module  # noqa: E402
from antispam.network.export import export_version, stage_version  # noqa: E402
from antispam.network.warmup import MAX_RECORDS, read_warmup, warmup_batches  # noqa: E402
from antispam.text import default_segmenter  # noqa: E402
from tests.helpers.network_helpers import exported_cnn, tiny_corpus_path, tiny_split, tiny_vectors, trained_cnn  # noqa: E402,F401


def test_signature_matches_the_contract(exported_cnn) -> None:
    model_dir, version = exported_cnn
    loaded = tf.saved_model.load(str(versions.version_dir(model_dir, version)))
    assert list(loaded.signatures) == [versions.SIGNATURE]
    signature = loaded.signatures[versions.SIGNATURE]
    args, kwargs = signature.structured_input_signature
    assert args == ()
    assert list(kwargs) == [versions.INPUT_KEY]
    spec = kwargs[versions.INPUT_KEY]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, MAX_LEN, DIM]
    outputs = signature.structured_outputs
    assert set(outputs) == {versions.PROBABILITIES_KEY, versions.CLASSES_KEY}
    assert outputs[versions.PROBABILITIES_KEY].dtype == tf.float32
    assert outputs[versions.PROBABILITIES_KEY].shape.as_list() == [None, 2]
    assert outputs[versions.CLASSES_KEY].dtype == tf.int64
    assert outputs[versions.CLASSES_KEY].shape.as_list() == [None]


def test_version_layout_and_assets(exported_cnn, trained_cnn, tiny_vectors) -> None:
    model_dir, version = exported_cnn
    assert versions.list_versions(model_dir) == [version] and version == 1
    path = versions.version_dir(model_dir, version)
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assets = versions.load_assets(model_dir, version)  # preprocessing settings checked inside
    assert assets.preprocessing == versions.preprocessing_settings(trained_cnn.settings.windowing())
    assert assets.windowing == trained_cnn.settings.windowing() != FIRST_WINDOW
    # The version ships the vectors the network was trained with (fine-tuned from tiny_vectors).
    assert assets.vectors.vocab == trained_cnn.vectors.vocab
    np.testing.assert_array_equal(assets.vectors.matrix, trained_cnn.vectors.matrix)
    assert assets.vectors.vocab[:len(tiny_vectors)] == tiny_vectors.vocab
    metrics = assets.metrics
    assert metrics["model"] == "cnn" and metrics["note"] == "tiny"
    assert {"test", "validation", "split", "settings", "wall_seconds", "history"} <= set(metrics)
    assert metrics["split"]["fingerprints"]["test"]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".staging")]


def test_warmup_records_parse_as_prediction_logs(exported_cnn, tiny_split) -> None:
    model_dir, version = exported_cnn
    logs = read_warmup(versions.version_dir(model_dir, version) / versions.ASSETS_DIR / versions.WARMUP_FILE)
    assert 1 <= len(logs) <= MAX_RECORDS
    vectors = versions.load_assets(model_dir, version).vectors
    seg = default_segmenter()
    first = logs[0].predict_log.request
    assert first.model_spec.name == "cnn" and first.model_spec.signature_name == versions.SIGNATURE
    tensor = tf.make_ndarray(first.inputs[versions.INPUT_KEY])
    assert tensor.dtype == np.float32 and tensor.shape == (1, MAX_LEN, DIM)
    # Built from a real text with this version's own vectors.
    expected = vectors.featurize_batch([seg.tokenize(tiny_split.train[0].text)])
    np.testing.assert_array_equal(tensor, expected)
    sizes = [tf.make_ndarray(log.predict_log.request.inputs[versions.INPUT_KEY]).shape[0] for log in logs]
    assert sizes[:-1] == [1] * (len(sizes) - 1) and sizes[-1] > 1


def test_warmup_batches_cap_and_group() -> None:
    texts = [f"消息{i}" for i in range(3000)]
    records = warmup_batches(texts, singles=5000, batch=64)
    assert len(records) <= MAX_RECORDS and len(records[-1]) == 64
    assert warmup_batches(["一条"]) == [["一条"]]
    with pytest.raises(ValueError):
        warmup_batches(["  ", ""])


def test_loaded_version_reproduces_the_trainer(exported_cnn, trained_cnn, tiny_split) -> None:
    model_dir, version = exported_cnn
    assets = versions.load_assets(model_dir, version)
    seg = default_segmenter()
    texts = [s.text for s in tiny_split.test + tiny_split.validation] + ["", "完全陌生的一句话"]
    x = assets.vectors.featurize_batch([seg.tokenize(t) for t in texts])
    signature = tf.saved_model.load(str(assets.path)).signatures[versions.SIGNATURE]
    out = signature(inputs=tf.constant(x))
    probs = out[versions.PROBABILITIES_KEY].numpy()
    np.testing.assert_allclose(probs, trained_cnn.predict_proba(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[versions.CLASSES_KEY].numpy(), np.argmax(probs, axis=1))


def test_versions_increase(tmp_path: Path, trained_cnn, tiny_vectors) -> None:
    model_dir = tmp_path / "cnn"
    assert export_version(trained_cnn, tiny_vectors, model_dir, ["代开发票"]) == 1
    assert export_version(trained_cnn, tiny_vectors, model_dir, ["代开发票"]) == 2
    assert versions.list_versions(model_dir) == [1, 2]


def test_stage_version_builds_a_checked_hidden_version_and_publishes_nothing(
        tmp_path: Path, trained_cnn, tiny_vectors) -> None:
    model_dir = tmp_path / "cnn"
    staged = stage_version(trained_cnn, tiny_vectors, model_dir, ["代开发票"], {"note": "staged"},
                           prefix=versions.RETRAIN_STAGING_PREFIX)
    assert staged.path.parent == model_dir and staged.path.name.startswith(versions.RETRAIN_STAGING_PREFIX)
    assert (staged.model_dir, staged.name) == (model_dir, "cnn")
    assert versions.list_versions(model_dir) == []  # nothing a reader can see
    assert staged.read_metrics()["note"] == "staged"
    loaded = staged.load()  # the version the check loaded, as the service loads it
    assert loaded is staged.loaded and loaded.path == staged.path
    np.testing.assert_allclose(loaded.spam_probability(["代开发票"]),
                               versions.load_folder(staged.path, 0, "cnn").spam_probability(["代开发票"]))
    staged.write_metrics({**staged.read_metrics(), "retrain": {"decided": True}})
    assert versions.publish(staged.path, model_dir) == 1
    assert versions.load_assets(model_dir, 1).metrics["retrain"] == {"decided": True}
    assert sorted(p.name for p in model_dir.iterdir()) == [versions.HIGH_WATER_FILE, "1"]
    other = stage_version(trained_cnn, tiny_vectors, model_dir, ["代开发票"])
    assert other.path.name.startswith(versions.STAGING_PREFIX)
    other.discard()
    assert sorted(p.name for p in model_dir.iterdir()) == [versions.HIGH_WATER_FILE, "1"]


def test_interrupted_export_publishes_nothing(tmp_path: Path, trained_cnn, tiny_vectors, monkeypatch) -> None:
    model_dir = tmp_path / "cnn"

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export_module, "write_warmup", broken)
    with pytest.raises(OSError, match="simulated"):
        export_version(trained_cnn, tiny_vectors, model_dir, ["代开发票"])
    assert list(model_dir.iterdir()) == []  # no version folder, staging removed
    assert versions.list_versions(model_dir) == []


def test_export_refuses_vectors_the_model_was_not_trained_with(tmp_path: Path, trained_cnn, tiny_vectors) -> None:
    other = WordVectors(list(tiny_vectors.vocab), tiny_vectors.matrix * 2)
    with pytest.raises(ValueError, match="trained with"):
        export_version(trained_cnn, other, tmp_path / "cnn", ["代开发票"])
    assert not (tmp_path / "cnn").exists() or versions.list_versions(tmp_path / "cnn") == []


def test_staged_check_catches_a_mismatch(tmp_path: Path, trained_cnn, tiny_vectors, monkeypatch) -> None:
    """If the saved graph disagreed with the trainer, nothing would be published."""
    real = trained_cnn.predict_proba
    monkeypatch.setattr(trained_cnn, "predict_proba", lambda x: real(x)[:, ::-1].copy())
    with pytest.raises(export_module.ExportError):
        export_version(trained_cnn, tiny_vectors, tmp_path / "cnn", ["代开发票", "妈妈回家吃饭"])
    assert versions.list_versions(tmp_path / "cnn") == []
    assert not [p for p in (tmp_path / "cnn").iterdir()]


def test_metrics_json_is_valid_json(exported_cnn) -> None:
    model_dir, version = exported_cnn
    path = versions.version_dir(model_dir, version) / versions.ASSETS_DIR / versions.METRICS_FILE
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["warmup_records"] >= 1 and payload["test"]["count"] > 0
