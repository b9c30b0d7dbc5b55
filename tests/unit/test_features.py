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


# -- windows, plans and character back-off --------------------------------------------------

from antispam.features import FIRST_WINDOW, Featurizer, Plan, Windowing  # noqa: E402

CHAR_WORDS = ("微信", "优惠", "贷款", "微", "信", "贷")


def char_vectors() -> WordVectors:
    """Integer-valued rows (means of two rows are exact in float32), with single characters."""
    return make_vectors(words=CHAR_WORDS)


def row_of(vec: WordVectors, word: str) -> np.ndarray:
    return vec.matrix[vec.vocab.index(word)]


@pytest.mark.parametrize("stride", [1, 5, 10, 15, 20])
def test_spans_cover_every_token_with_full_increasing_windows(stride: int) -> None:
    windowing = Windowing(stride=stride, cap=1000)
    for n in range(121):
        spans = windowing.spans(n)
        assert spans, n
        covered = set()
        for start, end in spans:
            assert 0 <= start <= end <= n, (n, spans)
            covered.update(range(start, end))
        assert covered == set(range(n)), (n, stride, spans)
        starts = [start for start, _ in spans]
        assert starts == sorted(set(starts)), (n, stride, spans)  # strictly increasing
        if n >= MAX_LEN:
            assert all(end - start == MAX_LEN for start, end in spans), (n, stride, spans)
        else:
            assert spans == [(0, n)]


def test_default_windowing_window_counts() -> None:
    windowing = Windowing()
    assert windowing.spans(21) == [(0, 20), (1, 21)]
    for n in (0, 1, 19, 20):
        assert windowing.spans(n) == [(0, n)]


def test_cap_keeps_windows_from_both_ends_and_plan_reports_coverage() -> None:
    windowing = Windowing(stride=10, cap=4)
    spans = windowing.spans(200)
    assert len(spans) == 4
    assert spans[:2] == [(0, 20), (10, 30)]  # the first half of the cap from the start
    assert spans[-1] == (180, 200)  # the last one aligned to the end
    assert spans[2][1] <= 200 and spans[2][0] > 30
    covered = len(set().union(*(range(s, e) for s, e in spans)))
    assert covered == 60

    vec = char_vectors()
    tokens = [CHAR_WORDS[i % len(CHAR_WORDS)] for i in range(200)]
    plan = Featurizer(vec, windowing).plan([tokens, ["微信"]])
    assert plan.tokens.tolist() == [200, 1]
    assert plan.scored.tolist() == [covered, 1]
    assert plan.starts.tolist() == [0, 4]
    assert plan.ids.shape == (5, MAX_LEN)
    for r, (start, end) in enumerate(spans):  # each row holds its span's tokens
        np.testing.assert_array_equal(plan.ids[r], vec.ids(tokens[start:end]))


def test_first_window_reads_only_the_first_20_tokens_as_unk() -> None:
    vec = char_vectors()
    featurizer = Featurizer(vec, FIRST_WINDOW)
    tokens = ["微贷"] + ["贷款"] * 44  # "微贷" is unknown but both its characters are known
    plan = featurizer.plan([tokens])
    assert plan.ids.shape == (1, MAX_LEN) and plan.starts.tolist() == [0]
    assert plan.tokens.tolist() == [45] and plan.scored.tolist() == [20]
    assert plan.ids[0, 0] == 0 and not plan.extra_words
    rows = featurizer.rows(plan)
    np.testing.assert_array_equal(rows[0, 0], vec.matrix[0])
    batches = [
        [["微信"], [], ["优惠", "未知", "贷款"]],
        [tokens, ["薇信", "微", "信", "微信"] * 7],
        [[]],
        [],
    ]
    for batch in batches:
        plan = featurizer.plan(batch)
        assert len(plan.ids) == len(batch)
        out = featurizer.rows(plan)
        np.testing.assert_array_equal(out, vec.featurize_batch(batch))
        assert out.dtype == np.float32


def test_char_backoff_through_rows() -> None:
    vec = char_vectors()
    featurizer = Featurizer(vec, Windowing())
    tokens = ["微贷", "薇信", "没见", "微信", "薇"]
    plan = featurizer.plan([tokens])
    rows = featurizer.rows(plan)
    assert rows.shape == (1, MAX_LEN, DIM) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[0, 0], (row_of(vec, "微") + row_of(vec, "贷")) / 2)
    np.testing.assert_array_equal(rows[0, 1], row_of(vec, "信"))
    np.testing.assert_array_equal(rows[0, 2], vec.matrix[0])  # no known character: UNK
    np.testing.assert_array_equal(rows[0, 3], row_of(vec, "微信"))  # known word: its own row
    np.testing.assert_array_equal(rows[0, 4], vec.matrix[0])  # unknown single character: UNK
    assert not rows[0, 5:].any()
    # The same through featurize(), and twice in one batch (the back-off is shared).
    again, plan2 = featurizer.featurize([tokens, tokens])
    np.testing.assert_array_equal(again[0], rows[0])
    np.testing.assert_array_equal(again[1], rows[0])
    assert len(plan2.extra_words) == 2


def hand_plan(aggregation: str) -> Plan:
    # 5 tokens -> 1 row, 25 -> 2 rows, 35 -> 3 rows with the default stride of 10.
    plan = Featurizer(char_vectors(), Windowing(aggregation=aggregation)).plan(
        [["微信"] * 5, ["微信"] * 25, ["微信"] * 35])
    assert plan.starts.tolist() == [0, 1, 3] and len(plan.ids) == 6
    return plan


SPAM_ROWS = np.array([0.2, 0.1, 0.7, 0.3, 0.4, 0.6])
ROW_PROBABILITIES = np.column_stack([SPAM_ROWS, 1 - SPAM_ROWS])


def test_plan_fold_max_and_noisy_or() -> None:
    np.testing.assert_allclose(hand_plan("max").fold(ROW_PROBABILITIES), [0.2, 0.7, 0.6])
    np.testing.assert_allclose(hand_plan("noisy_or").fold(ROW_PROBABILITIES),
                               [0.2, 1 - 0.9 * 0.3, 1 - 0.7 * 0.6 * 0.4])
    assert hand_plan("max").fold(ROW_PROBABILITIES).dtype == np.float64


@pytest.mark.parametrize("shape", [(5, 2), (7, 2), (6,), (6, 3), (6, 2, 1)])
def test_plan_fold_rejects_wrong_shapes(shape) -> None:
    with pytest.raises(ValueError, match="shape"):
        hand_plan("max").fold(np.full(shape, 0.5))


def test_plan_of_no_messages_folds_to_nothing() -> None:
    plan = Featurizer(char_vectors(), Windowing()).plan([])
    assert plan.messages == 0 and plan.ids.shape == (0, MAX_LEN)
    assert plan.fold(np.zeros((0, 2))).shape == (0,)


def test_unknown_rate_one_backs_off_every_word() -> None:
    vec = char_vectors()
    featurizer = Featurizer(vec, Windowing())
    tokens = ["微信", "贷款", "优惠", "微", "信", "薇信"]
    plan = featurizer.plan([tokens], unknown_rate=1.0, rng=np.random.default_rng(0))
    rows = featurizer.rows(plan)[0]
    np.testing.assert_array_equal(rows[0], (row_of(vec, "微") + row_of(vec, "信")) / 2)
    np.testing.assert_array_equal(rows[1], row_of(vec, "贷"))
    np.testing.assert_array_equal(rows[2], vec.matrix[0])  # no known character
    np.testing.assert_array_equal(rows[3], vec.matrix[0])  # single characters become UNK
    np.testing.assert_array_equal(rows[4], vec.matrix[0])
    np.testing.assert_array_equal(rows[5], row_of(vec, "信"))
    assert (plan.ids[0, :6] != vec.ids(tokens)[:6]).any()
    # Without the rate (or without a generator) known words keep their own rows.
    for plain in (featurizer.plan([tokens]), featurizer.plan([tokens], unknown_rate=1.0)):
        out = featurizer.rows(plain)[0]
        np.testing.assert_array_equal(out[:5], vec.featurize(tokens)[:5])
        np.testing.assert_array_equal(out[5], row_of(vec, "信"))  # "薇信" is unknown anyway
    # Without back-off every dropped word is UNK.
    first = Featurizer(vec, FIRST_WINDOW)
    dropped = first.plan([tokens], unknown_rate=1.0, rng=np.random.default_rng(0))
    assert (dropped.ids[0, :6] == 0).all()


@pytest.mark.parametrize("settings", [
    {},
    {"max_len": 20, "dim": 200, "normalizer_version": 2},
    {"max_len": 20},
])
def test_from_preprocessing_without_window_keys_is_first_window(settings) -> None:
    assert Windowing.from_preprocessing(settings) == FIRST_WINDOW


@pytest.mark.parametrize("windowing", [
    Windowing(),
    Windowing(stride=5, cap=8, aggregation="noisy_or", char_backoff=False),
    Windowing(stride=20, cap=1),
])
def test_from_preprocessing_round_trips(windowing: Windowing) -> None:
    record = windowing.to_preprocessing()
    assert set(record) == set(Windowing.KEYS)
    assert Windowing.from_preprocessing(record) == windowing
    assert Windowing.from_preprocessing({"max_len": 20, "dim": 200, **record}) == windowing


FULL = Windowing().to_preprocessing()


@pytest.mark.parametrize("settings", [
    {"stride": 10},
    {key: value for key, value in FULL.items() if key != "char_backoff"},
    {**FULL, "aggregation": "mean"},
    {**FULL, "stride": 0},
    {**FULL, "stride": 25},
    {**FULL, "window": 19},
    {**FULL, "window": 40},
    {**FULL, "cap": 4.0},
    {**FULL, "cap": "4"},
    {**FULL, "cap": 0},
    {**FULL, "stride": True},
    {**FULL, "char_backoff": 1},
    {**FULL, "char_backoff": "true"},
])
def test_from_preprocessing_rejects_bad_records(settings) -> None:
    with pytest.raises(ValueError):
        Windowing.from_preprocessing(settings)
