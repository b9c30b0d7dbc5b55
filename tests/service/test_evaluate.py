"""Evaluating an exported version through the serving path, as a library and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from antispam import versions  # noqa: E402
from antispam.cli import main  # noqa: E402
from antispam.labels import PASS, SPAM  # noqa: E402
from antispam.network.evaluate import evaluate_version, load_version, measure_latency  # noqa: E402
from antispam.network.metrics import binary_scores, roc_auc  # noqa: E402
from tests.helpers.network_helpers import exported_cnn, tiny_corpus_path, tiny_split, tiny_vectors, trained_cnn  # noqa: E402,F401


def test_evaluate_version_scores_the_test_split(exported_cnn, trained_cnn, tiny_split) -> None:
    model_dir, version = exported_cnn
    result = evaluate_version(model_dir, None, tiny_split.test)
    assert result["model"] == {"name": "cnn", "version": version,
                               "path": str(versions.version_dir(model_dir, version))}
    assert result["count"] == len(tiny_split.test)
    assert result["counts"]["spam"] + result["counts"]["pass"] == result["count"]
    # Same texts, same vectors, same weights: the trainer's test scores come out again.
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert result[key] == pytest.approx(trained_cnn.test[key], abs=1e-6), key
    assert set(result["at_thresholds"]) == {"0.5", "0.9"}
    confusion = result["confusion"]
    assert sum(confusion.values()) == result["count"]


def test_evaluate_version_errors_are_clear(tmp_path: Path, exported_cnn, tiny_split) -> None:
    model_dir, _ = exported_cnn
    with pytest.raises(versions.VersionError, match="no complete version 99"):
        evaluate_version(model_dir, 99, tiny_split.test)
    with pytest.raises(versions.VersionError, match="no complete model version"):
        evaluate_version(tmp_path / "empty", None, tiny_split.test)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_version(model_dir, None, [])


def test_loaded_version_scores_raw_text(exported_cnn) -> None:
    loaded = load_version(*exported_cnn)
    probs = loaded.spam_probability(["代开发票，联系电话13800138000", "", "妈妈我们明天回家吃晚饭"])
    assert probs.shape == (3,) and np.all((probs >= 0) & (probs <= 1))


def test_measure_latency_reports_both_paths(exported_cnn) -> None:
    result = measure_latency(*exported_cnn, ["代开发票", "回家吃饭"], batch_sizes=(1, 4), repeats=3)
    for path in ("signature", "pipeline"):
        assert set(result[path]) == {"batch_1", "batch_4"}
        assert all(v["p50_ms"] > 0 for v in result[path].values())
    assert result["size_bytes"] > 0


def test_binary_scores_by_hand() -> None:
    labels = [SPAM, SPAM, PASS, PASS, SPAM]
    probs = [0.95, 0.6, 0.7, 0.1, 0.2]
    scores = binary_scores(labels, probs, thresholds=(0.5, 0.9))
    assert scores["confusion"] == {"spam_as_spam": 2, "spam_as_pass": 1, "pass_as_spam": 1, "pass_as_pass": 1}
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    block = scores["at_thresholds"]["0.9"]
    assert block["flagged"] == 1 and block["precision"] == 1.0 and block["recall"] == pytest.approx(1 / 3)
    # AUC: of 6 spam/pass pairs, spam scores higher in 4.
    assert scores["roc_auc"] == pytest.approx(4 / 6)
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.2])) is None
    with pytest.raises(ValueError):
        binary_scores([0, 1, 2], [0.1, 0.2, 0.3])


def test_evaluate_command_prints_json(exported_cnn, tiny_corpus_path, capsys) -> None:
    model_dir, version = exported_cnn
    code = main(["evaluate", "--model", str(model_dir), "--data", str(tiny_corpus_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"]["scope"] == "test split"
    [entry] = out["models"]
    assert entry["evaluation"]["model"]["version"] == version
    assert entry["evaluation"]["count"] == out["data"]["count"]
    assert out["summary"][f"cnn v{version}"]["f1"] == pytest.approx(entry["evaluation"]["f1"], abs=1e-4)

    assert main(["evaluate", "--model", str(model_dir), "--version", str(version), "--all",
                 "--data", str(tiny_corpus_path), "--block-threshold", "0.8"]) == 0
    out = json.loads(capsys.readouterr().out)
    [entry] = out["models"]
    assert out["data"]["scope"] == "all" and entry["evaluation"]["count"] == 60
    assert set(entry["evaluation"]["at_thresholds"]) == {"0.5", "0.8"}


def test_evaluate_command_compares_several_models_with_latency(exported_cnn, tiny_corpus_path, capsys) -> None:
    model_dir, _ = exported_cnn
    assert main(["evaluate", "--model", str(model_dir), "--model", str(model_dir), "--latency",
                 "--latency-repeats", "3", "--data", str(tiny_corpus_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["models"]) == 2
    assert all(set(m["latency"]["signature"]) == {"batch_1", "batch_64"} for m in out["models"])
    assert main(["evaluate", "--model", str(model_dir), "--model", str(model_dir), "--version", "1",
                 "--data", str(tiny_corpus_path)]) == 2
    assert "exactly one --model" in capsys.readouterr().err


def test_evaluate_command_baselines(tiny_corpus_path, capsys) -> None:
    pytest.importorskip("sklearn")
    assert main(["evaluate", "--baselines", "--data", str(tiny_corpus_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["baselines"]) == {"tfidf_lr_jieba_tokens", "tfidf_lr_first_20_tokens", "tfidf_lr_char_1_3_grams"}
    assert all(0 <= b["accuracy"] <= 1 and b["C"] > 0 for b in out["baselines"].values())


def test_evaluate_command_user_errors(tmp_path: Path, tiny_corpus_path, capsys) -> None:
    assert main(["evaluate", "--data", str(tiny_corpus_path)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tiny_corpus_path)]) == 2
    assert "no complete model version" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "missing.tar.gz")]) == 2
    assert "corpus not found" in capsys.readouterr().err
    assert main(["evaluate", "--baselines", "--review-threshold", "1.5", "--data", str(tiny_corpus_path)]) == 2
    assert "thresholds" in capsys.readouterr().err
