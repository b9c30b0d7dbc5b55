"""Training each network on a tiny corpus: it learns, selects on validation, scores test once."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorlayer")

from antispam.data import Sample  # noqa: E402
from antispam.features import DIM, MAX_LEN, UNK, Featurizer, Windowing, WordVectors  # noqa: E402
from antispam.labels import PASS, SPAM  # noqa: E402
from antispam.network.step import message_log_probabilities, plan_tensors  # noqa: E402
from antispam.network.train import (  # noqa: E402
    ClassifierSettings,
    augmented_messages,
    extend_vocabulary,
    prepare_vectors,
)
from antispam.text import default_segmenter  # noqa: E402
from tests.helpers.network_helpers import (  # noqa: E402,F401
    random_vectors,
    tiny_corpus_path,
    tiny_split,
    tiny_vectors,
    train_tiny,
    trained_cnn,
)


@pytest.mark.parametrize("kind", ["cnn", "rnn", "mlp"])
def test_each_network_trains_on_a_tiny_corpus(kind: str, tiny_split, tiny_vectors) -> None:
    trained = train_tiny(kind, tiny_split, tiny_vectors, epochs=6, patience=6)
    assert trained.kind == kind
    assert [h["epoch"] for h in trained.history] == list(range(1, 7))
    # It learned: the training loss fell, and the model separates the training messages.
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    seg = default_segmenter()
    x = trained.vectors.featurize_batch([seg.tokenize(s.text) for s in tiny_split.train])
    probs = trained.predict_proba(x)
    assert probs.shape == (len(x), 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    labels = np.array([s.label for s in tiny_split.train])
    assert np.mean((probs[:, 0] >= 0.5) == (labels == SPAM)) >= 0.9
    # Test scores exist and cover exactly the test split.
    assert trained.test["count"] == len(tiny_split.test)
    assert set(trained.test) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion", "at_thresholds"}
    summary = trained.summary()
    assert summary["settings"]["epochs"] == 6 and summary["split"]["counts"]["test"]["spam"] > 0
    assert 1 <= trained.best_epoch <= 6


def test_best_epoch_weights_are_restored(trained_cnn, tiny_split, tiny_vectors) -> None:
    best = trained_cnn.history[trained_cnn.best_epoch - 1]
    # The validation scores reported after training are the kept epoch's, not the last one's.
    assert trained_cnn.validation["f1"] == pytest.approx(best["validation_f1"])
    assert trained_cnn.validation["loss"] == pytest.approx(best["validation_loss"], rel=1e-4)


def test_training_is_seeded(tiny_split, tiny_vectors) -> None:
    first = train_tiny("mlp", tiny_split, tiny_vectors, epochs=2, seed=7)
    second = train_tiny("mlp", tiny_split, tiny_vectors, epochs=2, seed=7)
    assert [h["loss"] for h in first.history] == pytest.approx([h["loss"] for h in second.history], rel=1e-5)


def test_early_stopping_stops_after_patience(tiny_split, tiny_vectors) -> None:
    # A learning rate of ~0 never improves on epoch 1, so patience 1 stops at epoch 2.
    trained = train_tiny("mlp", tiny_split, tiny_vectors, epochs=10, patience=1, learning_rate=1e-12)
    assert len(trained.history) == 2 and trained.best_epoch == 1
    assert "no better validation (selection) F1" in trained.stopped_because


def test_learning_rate_shrinks_on_a_plateau(tiny_split, tiny_vectors) -> None:
    trained = train_tiny("mlp", tiny_split, tiny_vectors, epochs=3, patience=3, learning_rate=1e-12,
                         plateau_factor=0.5)
    rates = [h["learning_rate"] for h in trained.history]
    assert rates[0] == pytest.approx(1e-12)
    # Epoch 2 does not beat epoch 1, so epoch 3 runs at half the rate.
    assert rates[1] == pytest.approx(rates[0]) and rates[2] == pytest.approx(rates[0] / 2)


def test_padding_does_not_change_predictions(trained_cnn) -> None:
    """A message scores the same alone or next to an empty one."""
    seg = default_segmenter()
    tokens = seg.tokenize("代开发票，联系电话13800138000")
    x = trained_cnn.vectors.featurize_batch([tokens])
    assert np.all(x[0, len(tokens):] == 0)
    again = np.concatenate([x, np.zeros((1, MAX_LEN, DIM), np.float32)])
    probs = trained_cnn.predict_proba(again)
    np.testing.assert_allclose(probs[0], trained_cnn.predict_proba(x)[0], rtol=1e-6)


def test_static_vectors_are_shipped_unchanged(tiny_split, tiny_vectors) -> None:
    trained = train_tiny("mlp", tiny_split, tiny_vectors, epochs=1, fine_tune_vectors=False)
    assert trained.vectors.vocab == tiny_vectors.vocab
    np.testing.assert_array_equal(trained.vectors.matrix, tiny_vectors.matrix)


def test_fine_tuning_extends_the_vocabulary_with_training_words_only(tiny_split) -> None:
    full = random_vectors(tiny_split)
    seg = default_segmenter()
    test_only = ({t for s in tiny_split.test for t in seg.tokenize(s.text)}
                 - {t for s in tiny_split.train for t in seg.tokenize(s.text)})
    small = WordVectors(full.vocab[:10], full.matrix[:10])  # word2vec that knew only 9 words
    trained = train_tiny("mlp", tiny_split, small, epochs=1, extend_min_count=2, augment=0.0)
    assert trained.vectors.vocab[:10] == small.vocab
    added = set(trained.vectors.vocab[10:])
    assert added and not added & test_only
    counts: dict[str, int] = {}
    for sample in tiny_split.train:
        for token in seg.tokenize(sample.text):
            counts[token] = counts.get(token, 0) + 1
    assert all(counts[w] >= 2 for w in added)
    assert not np.allclose(trained.vectors.matrix[:10], small.matrix)  # tuned
    assert np.all(np.any(trained.vectors.matrix != 0, axis=1))


def test_extend_vocabulary_is_deterministic_and_starts_from_unk() -> None:
    base = WordVectors([UNK, "a"], np.random.default_rng(0).normal(size=(2, DIM)).astype(np.float32))
    tokens = [["a", "b", "c", "b"], ["c", "d"]]
    first = extend_vocabulary(base, tokens, min_count=2, seed=3)
    assert first.vocab == [UNK, "a", "b", "c"]  # by count, then alphabetically; "d" too rare
    np.testing.assert_array_equal(first.matrix, extend_vocabulary(base, tokens, 2, seed=3).matrix)
    assert np.linalg.norm(first.matrix[2] - base.matrix[0]) < 0.5 * np.linalg.norm(base.matrix[0])
    assert extend_vocabulary(base, [["a"]], 1, seed=0) is base


def test_prepare_vectors_gives_zero_rows_a_fixed_nonzero_vector() -> None:
    matrix = np.random.default_rng(0).normal(size=(4, DIM)).astype(np.float32)
    matrix[0] = 0.0  # UNK never trained
    matrix[2] = 0.0
    vectors = WordVectors([UNK, "a", "b", "c"], matrix)
    fixed = prepare_vectors(vectors)
    assert np.all(np.any(fixed.matrix != 0, axis=1))
    np.testing.assert_array_equal(fixed.matrix[[1, 3]], matrix[[1, 3]])
    np.testing.assert_array_equal(prepare_vectors(vectors).matrix, fixed.matrix)  # deterministic
    assert prepare_vectors(fixed) is fixed


def test_prepare_vectors_rejects_wrong_dim_and_nan() -> None:
    with pytest.raises(ValueError, match="200-d"):
        prepare_vectors(WordVectors([UNK], np.ones((1, 50), np.float32)))
    bad = np.ones((2, DIM), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare_vectors(WordVectors([UNK, "a"], bad))


def test_unknown_words_are_words_not_padding(tiny_split) -> None:
    vectors = prepare_vectors(random_vectors(tiny_split, zero_unk=True))
    plan = Featurizer(vectors, Windowing()).plan([default_segmenter().tokenize(tiny_split.train[0].text)])
    assert plan.ids.shape[1:] == (MAX_LEN,) and plan.ids.dtype == np.int32
    x = vectors.featurize_batch([["从没见过的词"]])
    assert np.any(x[0, 0] != 0) and np.all(x[0, 1:] == 0)


@pytest.mark.parametrize("aggregation,temperature", [("max", 1.0), ("noisy_or", 1.0), ("mean_odds", 1.0),
                                                     ("mean_odds", 2.5)])
def test_the_training_loss_folds_windows_exactly_as_the_service(aggregation: str, temperature: float) -> None:
    """The train step's message probabilities (TensorFlow, log space) equal Plan.fold (numpy)."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    vectors = WordVectors([UNK, *"abcdefgh"], rng.normal(size=(9, DIM)).astype(np.float32))
    batch = [list("abcdefgh" * 5), ["a"], list("hgfedcba" * 3), []]
    plan = Featurizer(vectors, Windowing(stride=5, aggregation=aggregation, temperature=temperature)).plan(batch)
    logits = rng.normal(size=(len(plan.ids), 2)).astype(np.float32)
    t = plan_tensors(plan)
    log_spam, log_pass = message_log_probabilities(tf.constant(logits), t["owner"], t["messages"],
                                                   aggregation, temperature)
    probabilities = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(np.exp(log_spam.numpy()), plan.fold(probabilities), rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_spam.numpy()) + np.exp(log_pass.numpy()), 1.0, rtol=1e-5)


def test_the_trainer_reads_back_off_vectors_as_the_service_builds_them(tiny_split) -> None:
    """Validation scores come from the trainer's TensorFlow lookup of its table; the shipped
    vectors through the numpy featurizer (the service's path) must give the same probabilities,
    back-off rows included."""
    full = random_vectors(tiny_split)
    small = WordVectors(full.vocab[:12], full.matrix[:12])  # most words unknown: back-off
    trained = train_tiny("cnn", tiny_split, small, epochs=1, extend_min_count=0, augment=0.0)
    seg = default_segmenter()
    tokens = [seg.tokenize(s.text) for s in tiny_split.validation]
    assert trained.featurizer.plan(tokens).extra_words  # back-off is exercised
    spam = trained.predict_messages(tokens)
    labels = np.array([s.label for s in tiny_split.validation])
    picked = np.clip(np.where(labels == SPAM, spam, 1.0 - spam), 1e-7, 1.0)
    assert float(-np.mean(np.log(picked))) == pytest.approx(trained.validation["loss"], rel=1e-4)


def test_augmented_messages_come_from_training_messages_only(tiny_split) -> None:
    extra = augmented_messages(tiny_split.train, 0.5, seed=3)
    assert len(extra) == round(0.5 * len(tiny_split.train))
    assert extra == augmented_messages(tiny_split.train, 0.5, seed=3)
    train_texts = [s.text for s in tiny_split.train]
    spam_texts = [s.text for s in tiny_split.train if s.label == SPAM]
    for sample in extra:
        if sample.label == SPAM:
            assert any(ad in sample.text for ad in spam_texts)
        # Every character comes from training texts (plus the separators).
        assert set(sample.text) <= set("".join(train_texts)) | set("。， \n")
    # By default the two kinds alternate, an ad first; pass_share sets the mix, evenly interleaved.
    assert [s.label for s in extra[:4]] == [SPAM, PASS, SPAM, PASS]
    for share, passes in ((0.0, 0), (0.75, 30), (1.0, 40)):
        mixed = augmented_messages(tiny_split.train * 4, 40 / (4 * len(tiny_split.train)), seed=3, pass_share=share)
        assert len(mixed) == 40 and sum(s.label == PASS for s in mixed) == passes


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": 0.0},
                                 {"patience": 0}, {"dropout": 1.0}, {"rnn_cell": "tree"},
                                 {"extend_min_count": -1}, {"max_seconds": 0.0},
                                 {"plateau_factor": 0.0}, {"unknown_rate": 1.0},
                                 {"aggregation": "mean"}, {"stride": 0}, {"cap": 0}, {"augment": -1.0},
                                 {"pass_weight": 0.0}, {"augment_pass_share": 1.5}])
def test_settings_reject_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        ClassifierSettings(**bad)


def test_unknown_kind_and_one_class_split_are_refused(tiny_split, tiny_vectors) -> None:
    from antispam.data import Split
    from antispam.network.train import train_classifier

    with pytest.raises(ValueError, match="unknown classifier"):
        train_classifier("svm", tiny_split, tiny_vectors, progress=False)
    only_spam = Split([s for s in tiny_split.train if s.label == SPAM], tiny_split.validation, tiny_split.test)
    with pytest.raises(ValueError, match="both spam and pass"):
        train_classifier("mlp", only_spam, tiny_vectors, progress=False)


def test_short_spam_fragments_are_left_out_of_training(tiny_split, tiny_vectors) -> None:
    from antispam.data import Split

    fragments = [Sample("发布", SPAM), Sample("您好！", SPAM)]
    split = Split([*tiny_split.train, *fragments], tiny_split.validation, tiny_split.test)
    trained = train_tiny("mlp", split, tiny_vectors, epochs=1, augment=0.0)
    assert trained.split_manifest["short_spam_left_out"] == 2
    kept = train_tiny("mlp", split, tiny_vectors, epochs=1, augment=0.0, min_spam_tokens=0)
    assert kept.split_manifest["short_spam_left_out"] == 0


def test_pass_weight_changes_the_loss_and_trains(tiny_split, tiny_vectors) -> None:
    plain = train_tiny("mlp", tiny_split, tiny_vectors, epochs=2, seed=7)
    weighted = train_tiny("mlp", tiny_split, tiny_vectors, epochs=2, seed=7, pass_weight=3.0)
    assert weighted.summary()["settings"]["pass_weight"] == 3.0
    assert [h["loss"] for h in weighted.history] != pytest.approx([h["loss"] for h in plain.history], rel=1e-6)


def test_per_network_defaults_fill_only_what_is_unset() -> None:
    from antispam.network.train import KIND_DEFAULTS

    unset = ClassifierSettings()
    assert unset.everyday_weight is None
    assert unset.for_kind("cnn").everyday_weight == KIND_DEFAULTS["cnn"]["everyday_weight"] == 8
    assert unset.for_kind("rnn").everyday_weight == 4
    assert ClassifierSettings(everyday_weight=2).for_kind("cnn").everyday_weight == 2  # given: kept
    assert (unset.for_kind("cnn").windowing().temperature, unset.for_kind("rnn").windowing().temperature) == (2.0, 3.0)
    assert ClassifierSettings(temperature=5.0).for_kind("rnn").windowing().temperature == 5.0
    with pytest.raises(ValueError, match="for_kind"):
        unset.windowing()  # the network's own temperature is not known yet
    with pytest.raises(ValueError, match="everyday_weight"):
        ClassifierSettings(everyday_weight=0)
