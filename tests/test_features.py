import numpy as np
import pytest

from antispam.features import DIM, MAX_LEN, UNK, WordVectors


def make_vectors(words=("微信", "优惠", "贷款"), dim=DIM) -> WordVectors:
    vocab = [UNK, *words]
    matrix = np.arange(len(vocab) * dim, dtype=np.float32).reshape(len(vocab), dim) + 1
    return WordVectors(vocab, matrix)


def test_shape_dtype_and_padding() -> None:
    vec = make_vectors()
    out = vec.featurize(["微信", "优惠"])
    assert out.shape == (MAX_LEN, DIM) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], vec.matrix[1])
    np.testing.assert_array_equal(out[1], vec.matrix[2])
    assert not out[2:].any()  # zero padding


def test_unknown_words_get_unk() -> None:
    vec = make_vectors()
    out = vec.featurize(["没见过", "贷款"])
    np.testing.assert_array_equal(out[0], vec.matrix[0])
    np.testing.assert_array_equal(out[1], vec.matrix[3])


def test_truncates_to_first_max_len_tokens() -> None:
    vec = make_vectors()
    tokens = ["微信"] * 25 + ["贷款"]
    out = vec.featurize(tokens)
    assert out.shape == (MAX_LEN, DIM)
    assert all((row == vec.matrix[1]).all() for row in out)


def test_empty_tokens_are_all_padding() -> None:
    assert not make_vectors().featurize([]).any()


def test_batch_matches_single() -> None:
    vec = make_vectors()
    batch = [["微信"], [], ["优惠", "未知", "贷款"]]
    out = vec.featurize_batch(batch)
    assert out.shape == (3, MAX_LEN, DIM) and out.dtype == np.float32
    for row, tokens in zip(out, batch):
        np.testing.assert_array_equal(row, vec.featurize(tokens))
    assert vec.featurize_batch([]).shape == (0, MAX_LEN, DIM)


def test_save_and_load_roundtrip(tmp_path) -> None:
    vec = make_vectors(words=("微信", "a b", "优惠"), dim=8)
    vec.save(tmp_path / "w2v")
    loaded = WordVectors.load(tmp_path / "w2v")
    assert loaded.vocab == vec.vocab
    np.testing.assert_array_equal(loaded.matrix, vec.matrix)
    assert not list((tmp_path / "w2v").glob(".*"))  # no temporary files left behind


def test_invalid_vectors_are_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="UNK"):
        WordVectors(["微信"], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        WordVectors([UNK, "a"], np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        WordVectors([UNK, "a", "a"], np.zeros((3, 4), np.float32))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordVectors.load(tmp_path)


def test_nearest_ranks_by_cosine() -> None:
    vocab = [UNK, "a", "b", "c"]
    matrix = np.array([[0, 0.1], [1, 0], [0.9, 0.1], [-1, 0]], np.float32)
    near = WordVectors(vocab, matrix).nearest("a", k=2)
    assert [w for w, _ in near] == ["b", "c"]
    assert WordVectors(vocab, matrix).nearest("missing") == []
