"""The raw pipeline limit on a tiny model version (real SavedModel, real jieba)."""

from __future__ import annotations

from pathlib import Path

import pytest

from antispam.bench.pipeline import measure, resolve_version
from antispam.errors import UserError

TEXTS = ["代开发票，优惠贷款，加微信13800138000", "妈妈，我们明天回家吃晚饭", "今天开会", "ok 123"] * 10


def test_measures_each_stage(tmp_path: Path) -> None:
    from tinymodel import build_version

    model_dir = tmp_path / "models" / "cnn"
    version = build_version(model_dir)
    limit = measure(model_dir, TEXTS, batch=16, repeats=2)
    assert limit.version == version and limit.messages == len(TEXTS) and limit.batch == 16
    assert limit.text_us > 0 and limit.featurize_us > 0 and limit.model_us > 0
    assert limit.total_us == pytest.approx(limit.text_us + limit.featurize_us + limit.model_us)
    assert limit.implied_messages_per_s == pytest.approx(1e6 / limit.total_us)
    assert limit.model_us == pytest.approx(limit.model_batch_ms * 1000 / 16)
    assert limit.end_to_end_messages_per_s > 0
    assert set(limit.to_dict()) >= {"text_us", "featurize_us", "model_us", "implied_messages_per_s"}


def test_fewer_texts_than_a_batch_still_time_the_model(tmp_path: Path) -> None:
    from tinymodel import build_version

    build_version(tmp_path / "cnn")
    assert measure(tmp_path / "cnn", TEXTS[:3], batch=64, repeats=1).model_us > 0


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no model version"):
        resolve_version(tmp_path / "nothing")
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    (tmp_path / "cnn" / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(UserError, match="version 7 not found"):
        resolve_version(tmp_path / "cnn", 7)
