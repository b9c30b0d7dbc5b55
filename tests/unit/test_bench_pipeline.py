"""The raw pipeline limit on a tiny model version (real SavedModel, real jieba)."""

from __future__ import annotations

from pathlib import Path

import pytest

from antispam.bench.pipeline import measure
from antispam.errors import UserError
from antispam.versions import VersionError, resolve_version

TEXTS = ["代开发票，优惠贷款，加微信13800138000", "妈妈，我们明天回家吃晚饭", "今天开会", "ok 123"] * 10


def test_measures_each_stage(tmp_path: Path) -> None:
    from antispam.testing.tinymodel import build_version

    model_dir = tmp_path / "models" / "cnn"
    version = build_version(model_dir)
    limit = measure(model_dir, TEXTS, batch=16, repeats=2)
    assert limit.version == version and limit.messages == len(TEXTS) and limit.batch == 16
    assert limit.text_us > 0 and limit.featurize_us > 0 and limit.model_us > 0
    assert limit.total_us == pytest.approx(limit.text_us + limit.featurize_us + limit.model_us)
    assert limit.implied_messages_per_s == pytest.approx(1e6 / limit.total_us)
    assert limit.end_to_end_messages_per_s > 0
    # Plain jieba is timed beside the served tokenizer (the same tokens, slower or equal).
    assert limit.text_jieba_us > 0 and limit.tokenizer in ("rjieba+jieba", "jieba")
    assert limit.end_to_end_cpu_us > 0
    assert set(limit.to_dict()) >= {"text_us", "featurize_us", "model_us", "implied_messages_per_s",
                                    "rows_per_message", "model_batch_rows", "windowing"}
    # A version that records no windowing is read as its first 20 tokens: one row per message.
    assert limit.rows_per_message == 1.0 and limit.model_batch_rows == 16
    assert limit.windowing["cap"] == 1


def test_counts_the_windows_the_service_scores(tmp_path: Path) -> None:
    """Long messages are several 20-token windows; the model stage is per message, all its rows."""
    from antispam import versions
    from antispam.features import Windowing
    from antispam.testing.tinymodel import build_version
    from antispam.text import Segmenter

    model_dir = tmp_path / "cnn"
    build_version(model_dir, windowing=Windowing(stride=10, cap=64))
    texts = ["，".join(TEXTS[:4]) * 3] * 8 + TEXTS[:8]  # 8 long messages, 8 short ones
    limit = measure(model_dir, texts, batch=16, repeats=1)
    featurizer = versions.load_assets(model_dir, limit.version).featurizer
    segmenter = Segmenter()
    rows, _plan = featurizer.featurize([segmenter.tokenize(t) for t in texts])
    assert len(rows) > len(texts)  # the long ones have several windows
    assert limit.rows_per_message == pytest.approx(len(rows) / len(texts))
    assert limit.model_batch_rows == len(rows)  # one full batch of 16 messages: all their rows
    # per message, not per row: a full batch of 16 messages costs about 16 x model_us
    assert limit.model_us == pytest.approx(limit.model_batch_ms * 1000 / 16, rel=0.5)
    assert limit.windowing == {"window": 20, "stride": 10, "cap": 64, "aggregation": "max", "char_backoff": True,
                               "temperature": 1.0}


def test_fewer_texts_than_a_batch_still_time_the_model(tmp_path: Path) -> None:
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "cnn")
    assert measure(tmp_path / "cnn", TEXTS[:3], batch=64, repeats=1).model_us > 0


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    """The bench resolves versions with the shared resolver; its VersionError is a UserError (exit 2)."""
    with pytest.raises(VersionError, match="no complete model version") as caught:
        resolve_version(tmp_path / "nothing")
    assert isinstance(caught.value, UserError)
    with pytest.raises(VersionError, match="no complete model version"):
        measure(tmp_path / "nothing", TEXTS)
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    (tmp_path / "cnn" / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(VersionError, match="no complete version 7"):
        resolve_version(tmp_path / "cnn", 7)
