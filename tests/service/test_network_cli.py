"""``antispam train cnn|rnn|mlp`` end to end on a tiny corpus, with vectors given in a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorlayer")

from antispam import versions  # noqa: E402
from antispam.cli import main  # noqa: E402
from antispam.network.warmup import warmup_texts  # noqa: E402
from tests.helpers.network_helpers import random_vectors, tiny_corpus_path, tiny_split  # noqa: E402,F401


def test_train_command_exports_a_version_and_writes_a_report(tmp_path: Path, tiny_corpus_path, tiny_split,
                                                             capsys) -> None:
    random_vectors(tiny_split).save(tmp_path / "w2v")
    code = main(["train", "mlp", "--data", str(tiny_corpus_path), "--word2vec", str(tmp_path / "w2v"),
                 "--model-base", str(tmp_path / "models"), "--report-dir", str(tmp_path / "reports"),
                 "--epochs", "2", "--batch-size", "16", "--warmup-texts", "6", "--everyday-weight", "3",
                 "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "mlp" and out["version"] == 1 and out["epochs_run"] == 2
    assert versions.list_versions(tmp_path / "models" / "mlp") == [1]
    report = tmp_path / "reports" / "mlp-v1"
    for name in ("curves.png", "confusion.png", "scores.json"):
        assert (report / name).is_file(), name
    assert (report / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((report / "scores.json").read_text(encoding="utf-8"))
    assert scores["version"] == 1 and scores["test"]["count"] == out["test"]["count"]
    metrics = versions.load_assets(tmp_path / "models" / "mlp", 1).metrics
    assert metrics["settings"]["epochs"] == 2 and metrics["word_vectors"]["words"] > 0
    # The flag reached the data: each everyday message went in three times, and the version says so.
    assert metrics["settings"]["everyday_weight"] == 3 and metrics["split"]["dedup"]["everyday_weight"] == 3


def test_train_command_rejects_bad_settings(tmp_path: Path, tiny_corpus_path, tiny_split, capsys) -> None:
    random_vectors(tiny_split).save(tmp_path / "w2v")
    code = main(["train", "cnn", "--data", str(tiny_corpus_path), "--word2vec", str(tmp_path / "w2v"),
                 "--model-base", str(tmp_path / "models"), "--epochs", "0", "--no-progress"])
    assert code == 2
    assert "epochs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_train_command_refuses_unusable_vectors(tmp_path: Path, tiny_corpus_path, capsys) -> None:
    (tmp_path / "w2v").mkdir()
    (tmp_path / "w2v" / "vocab.txt").write_text("UNK\n", encoding="utf-8")
    (tmp_path / "w2v" / "vectors.npy").write_bytes(b"not numpy")
    code = main(["train", "cnn", "--data", str(tiny_corpus_path), "--word2vec", str(tmp_path / "w2v"),
                 "--model-base", str(tmp_path / "models"), "--no-progress"])
    assert code == 2
    assert "unusable" in capsys.readouterr().err


def test_warmup_texts_are_balanced_training_texts(tiny_split) -> None:
    texts = warmup_texts(tiny_split.train, 6, seed=1)
    train_texts = {s.text: s.label for s in tiny_split.train}
    assert len(texts) == 6 and all(t in train_texts for t in texts)
    assert sorted(train_texts[t] for t in texts) == [0, 0, 0, 1, 1, 1]
    assert warmup_texts(tiny_split.train, 6, seed=1) == texts
