"""Word2vec training (antispam.word2vec: vocab, model, train, cli) on tiny synthetic corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from antispam.cli import main
from antispam.data import fingerprint, load_split
from antispam.everyday import with_everyday
from antispam.features import UNK, WordVectors
from antispam.word2vec.model import noise_log_expected_counts
from antispam.word2vec.train import (
    PROBE_WORDS,
    REPORT_FILE,
    Word2VecError,
    Word2VecSettings,
    character_sentence,
    ensure_word2vec,
    train_word2vec,
)
from antispam.word2vec.vocab import build_vocabulary, encode

SPAM_WORDS = ["代开", "发票", "优惠", "贷款", "微信", "加", "银行", "利息", "低", "咨询"]
PASS_WORDS = ["今天", "开会", "妈妈", "晚饭", "回家", "我们", "明天", "电影", "周末", "朋友"]


def synthetic_messages(n: int, seed: int) -> list[list[str]]:
    """Two topics that never mix inside a message, so skip-gram has something to learn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = SPAM_WORDS if i % 2 == 0 else PASS_WORDS
        out.append([str(w) for w in rng.choice(words, size=int(rng.integers(4, 9)))])
    return out


def tiny_settings(**overrides: object) -> Word2VecSettings:
    values: dict[str, object] = dict(dim=16, min_count=1, window=3, negatives=4, batch_size=64,
                                     epochs=12, learning_rate=0.0625, subsample=0.0, seed=3)
    values.update(overrides)
    return Word2VecSettings(**values)  # type: ignore[arg-type]


def write_corpus(root: Path, lines_per_class: int = 40) -> Path:
    """A corpus folder in the public layout: pre-segmented lines, one message each."""
    folder = root / "corpus"
    (folder / "msglog").mkdir(parents=True)
    spam = [" ".join(t) for t in synthetic_messages(2 * lines_per_class, 1)[0::2]]
    ham = [" ".join(t) for t in synthetic_messages(2 * lines_per_class, 2)[1::2]]
    (folder / "msglog" / "msgspam.log.seg").write_text("\n".join(spam) + "\n", encoding="utf-8")
    (folder / "msglog" / "msgpass.log.seg").write_text("\n".join(ham) + "\n", encoding="utf-8")
    return folder


# --- vocabulary ------------------------------------------------------------------------------


def test_vocabulary_keeps_frequent_words_ranked_with_unk_first() -> None:
    tokens = [["a", "b", "a", "c"], ["b", "a", "d", "e"], ["b", "c", "c", "f"]]
    vocab = build_vocabulary(tokens, min_count=2)
    assert vocab.words == [UNK, "a", "b", "c"]  # a, b, c seen 3 times: ties broken by the word
    assert vocab.counts.tolist() == [3, 3, 3, 3]  # d, e, f are rare: UNK counts them
    assert [ids.tolist() for ids in encode(tokens, vocab)] == [[1, 2, 1, 3], [2, 1, 0, 0], [2, 3, 3, 0]]


def test_vocabulary_min_count_and_max_size() -> None:
    tokens = [["x"] * 5 + ["y"] * 4 + ["z"] * 3 + ["w"] * 2]
    assert build_vocabulary(tokens, min_count=3).words == [UNK, "x", "y", "z"]
    assert build_vocabulary(tokens, min_count=1).words == [UNK, "x", "y", "z", "w"]
    small = build_vocabulary(tokens, min_count=1, max_size=3)
    assert small.words == [UNK, "x", "y"]
    assert small.counts[0] == 3 + 2
    with pytest.raises(ValueError, match="min_count"):
        build_vocabulary(tokens, min_count=0)


def test_nce_bias_start_matches_the_sampler() -> None:
    start = noise_log_expected_counts(10_000, 8)
    assert start.shape == (10_000,)
    assert np.all(start < 0) and np.all(np.diff(start) < 0)  # frequent (low) ids drawn more often
    # The sampler draws 8 ids a batch: the expected draws over all ids add up to about 8.
    assert np.exp(start.astype(np.float64)).sum() == pytest.approx(8, rel=0.1)


# --- training --------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_saves_loadable_vectors(tmp_path: Path) -> None:
    tokens = synthetic_messages(60, seed=0)
    assert 250 <= sum(map(len, tokens)) <= 600
    vectors, report = train_word2vec(tokens, tiny_settings(), progress=False)
    assert vectors.vocab[0] == UNK and vectors.matrix.shape == (len(vectors.vocab), 16)
    assert np.isfinite(vectors.matrix).all()
    losses = report["loss_by_epoch"]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert report["final_loss"] == losses[-1]
    assert report["tokens"] == sum(map(len, tokens))
    assert report["pairs"] > 0 and report["steps"] >= 12
    assert set(report["neighbours"]) == set(PROBE_WORDS)
    # The two topics never share a message, so a word's nearest words are from its own topic.
    mine = [w for w, _ in vectors.nearest("贷款", 3)]
    assert set(mine) <= set(SPAM_WORDS), mine

    vectors.save(tmp_path)
    loaded = WordVectors.load(tmp_path)
    assert loaded.vocab == vectors.vocab
    np.testing.assert_array_equal(loaded.matrix, vectors.matrix)


def test_training_is_reproducible_with_a_seed() -> None:
    tokens = synthetic_messages(30, seed=5)
    a, report_a = train_word2vec(tokens, tiny_settings(epochs=2), progress=False)
    b, report_b = train_word2vec(tokens, tiny_settings(epochs=2), progress=False)
    assert report_a["pairs"] == report_b["pairs"]
    np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-4, atol=1e-6)


def test_corpus_too_small_is_a_clear_error() -> None:
    with pytest.raises(Word2VecError, match="min-count"):
        train_word2vec([["只有", "两个"]], tiny_settings(min_count=2), progress=False)


def test_character_sentences_split_cjk_words_and_keep_latin_runs() -> None:
    assert character_sentence(["代开", "发票", "xxxxxxxxxxx", "qq", "好"]) == [
        "代", "开", "发", "票", "xxxxxxxxxxx", "qq", "好"]
    assert character_sentence([]) == []


def test_characters_get_vectors_for_back_off() -> None:
    tokens = [["代开", "发票", "优惠"], ["今天", "开会"]] * 20
    chars = [character_sentence(t) for t in tokens]
    vectors, _ = train_word2vec(tokens + chars, tiny_settings(epochs=1, min_count=2), progress=False)
    assert {"代", "开", "发", "票", "今", "会"} <= set(vectors.vocab)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("window", 0), ("learning_rate", -1.0),
                                         ("negatives", 0), ("max_vocab", 1), ("chars", 2)])
def test_bad_settings_are_rejected(field: str, value: object) -> None:
    with pytest.raises(Word2VecError):
        tiny_settings(**{field: value}).validate()


def test_ensure_word2vec_trains_once_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path)
    out = tmp_path / "w2v"
    first = ensure_word2vec(str(corpus), str(out), tiny_settings(epochs=2), progress=False)
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["vocabulary_size"] == len(first)
    # The training split only (with the everyday messages the trainers add), not the whole corpus;
    # each message once as words and once as characters.
    split = with_everyday(load_split(corpus, progress=False))
    assert report["train_fingerprint"] == fingerprint(split.train)
    assert report["messages"] <= 2 * len(split.train)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_word2vec retrained although vectors exist")

    monkeypatch.setattr("antispam.word2vec.train.train_word2vec", no_training)
    again = ensure_word2vec(str(corpus), str(out), tiny_settings(), progress=False)
    assert again.vocab == first.vocab
    with pytest.raises(Word2VecError, match="16-d"):
        ensure_word2vec(str(corpus), str(out), tiny_settings(dim=32), progress=False)


# --- command line ----------------------------------------------------------------------------


def test_cli_trains_and_writes_vectors_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_corpus(tmp_path)
    out = tmp_path / "out"
    code = main(["train", "word2vec", "--data", str(corpus), "--out", str(out), "--dim", "16",
                 "--min-count", "2", "--epochs", "3", "--negatives", "4", "--batch-size", "64",
                 "--no-progress"])
    assert code == 0
    vectors = WordVectors.load(out)
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert vectors.dim == 16 and report["vocabulary_size"] == len(vectors)
    assert report["settings"]["min_count"] == 2 and report["epochs"] == 3
    assert report["source"] == str(corpus)
    printed = capsys.readouterr().out
    assert f"{len(vectors)} words x 16 dims" in printed
    assert "贷款:" in printed and '"final_loss"' in printed


def test_cli_bad_data_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.tar.gz"
    code = main(["train", "word2vec", "--data", str(missing), "--out", str(tmp_path / "out"),
                 "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert "corpus not found" in err and str(missing) in err
    assert not (tmp_path / "out").exists()


def test_cli_bad_environment_value_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANTISPAM_W2V_EPOCHS", "many")
    code = main(["train", "word2vec", "--data", str(write_corpus(tmp_path)), "--no-progress"])
    assert code != 0
    assert "ANTISPAM_W2V_EPOCHS='many'" in capsys.readouterr().err


def test_cli_module_imports_nothing_heavy() -> None:
    code = ("import sys, antispam.word2vec.cli, antispam.commands.train; "
            "heavy = {'tensorflow', 'tensorlayer', 'jieba'} & set(sys.modules); "
            "assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
