"""Train one classifier on the training split, select it on validation, score it once on test.

What keeps the figures honest:

* Every text goes through :func:`antispam.text.Segmenter.tokenize` and the version's own word
  vectors, exactly as the service will process it (docs/contracts.md#text-pipeline).
* Early stopping and the choice of epoch look only at the validation split (its messages and
  whole messages built from them alone, :func:`augmented_messages`, so the kept epoch is the one
  that judges messages with ordinary text around an ad best, not only single ones); the test split is
  featurized and scored once, after the best weights are restored.
* One compiled train step (``tf.function`` with a fixed input signature, so it traces once;
  :class:`antispam.network.step.ClassifierStep`) and seeded initialization, shuffling and
  dropout. Early stopping and the learning-rate plateau are one policy object
  (:class:`antispam.network.stopping.StoppingPolicy`).

Whole messages (multiple-instance learning): a message is cut into the same overlapping 20-token
windows the service scores (:class:`antispam.features.Windowing`), all windows of a batch's
messages go through the network together, and the loss is taken on the message's score folded
from its windows exactly as the service folds them (``max``: the most spam-like window; or
``noisy_or``). So an ordinary window inside a spam message is never taught to be spam: only the
message's most spam-like window must be, and every window of a pass message must be pass.

Unknown words: a word outside the vocabulary gets the mean of its known characters' vectors
(character back-off, :class:`antispam.features.Featurizer`), ``UNK`` only when none is known.
Training treats a share of the tokens as unknown at each step (``unknown_rate``), so the network
learns to read back-off vectors and ``UNK`` in context and those rows learn what they suggest.

Batches are fed as the featurizer's own :class:`~antispam.features.Plan` (row ids, back-off
character ids) and looked up inside the compiled step from the trainable table, with the same
means the service computes in numpy (:mod:`antispam.network.step`), so the network sees exactly
what serving will build without holding the whole corpus as floats in memory.

Word vectors are fine-tuned by default ("non-static" in Kim, 2014), and training-split words that
word2vec dropped as rare get rows of their own (starting from the ``UNK`` vector). The version
then ships these tuned vectors as its own (docs/contracts.md#version-layout: a version carries the vectors it was
trained with), so serving stays exactly the trainer's input; the serving signature is unchanged.
Only training-split text shapes them, so the test figures stay honest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from antispam.config import opt
from antispam.data import Sample, Split
from antispam.features import AGGREGATIONS, DIM, MAX_LEN, Featurizer, Windowing, WordVectors
from antispam.labels import PASS, SPAM
from antispam.network.models import KINDS
from antispam.network.step import ClassifierStep
from antispam.network.stopping import StoppingPolicy
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)


# Defaults that differ between networks, for the settings left unset (None). Chosen on the
# validation split only, 5 paired seeds each (docs/notes/sweep-issue-9.md): eight copies of the everyday
# messages lowered the CNN's everyday false-positive rate (3.0% → 1.9%, 5 of 5 seeds; F1 −0.002)
# but raised the RNN's (2.2% → 3.5%, joined texts worse); for the RNN a mean_odds temperature of 3
# instead of 2 halved the excess false positives on joined ordinary messages (+3.3 → +1.7 points
# over single ones, lower on 4 of 5 seeds) and lowered its everyday rate (2.3% → 1.8%) at the same
# F1, for a slightly lower recall on ads behind ordinary text (0.969 → 0.961 of plain recall).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"everyday_weight": 8, "temperature": 2.0},
    "rnn": {"everyday_weight": 4, "temperature": 3.0},
    "mlp": {"everyday_weight": 4, "temperature": 2.0},
}


@dataclass
class ClassifierSettings:
    """Training settings; recorded in every version's ``metrics.json``.

    The defaults are the ones the acceptance figures were measured with; ``epochs`` is a
    ceiling, early stopping usually ends sooner. Each field is a flag of ``antispam train
    cnn|rnn|mlp`` and an ``ANTISPAM_TRAIN_*`` variable (:mod:`antispam.config`); the checks are
    in ``__post_init__``, so every way of building the settings is validated the same way.
    """

    epochs: int = opt(20, "ANTISPAM_TRAIN_EPOCHS", "most epochs; early stopping usually ends sooner")
    batch_size: int = opt(64, "ANTISPAM_TRAIN_BATCH_SIZE", "messages per training step")
    learning_rate: float = opt(1e-3, "ANTISPAM_TRAIN_LEARNING_RATE", "Adam learning rate")
    patience: int = opt(3, "ANTISPAM_TRAIN_PATIENCE",
                        "epochs without a better selection F1 (validation + built messages) before "
                        "stopping")
    plateau_factor: float = opt(1.0, "ANTISPAM_TRAIN_PLATEAU_FACTOR",
                                "multiply the learning rate by this after an epoch without improvement "
                                "(1: off)")
    seed: int = opt(20171128, "ANTISPAM_TRAIN_SEED", "seed for initialization, shuffling and dropout")
    dropout: float = opt(0.5, "ANTISPAM_TRAIN_DROPOUT", "dropout rate before the output layer")
    rnn_cell: str = opt("lstm", "ANTISPAM_TRAIN_RNN_CELL", "recurrent cell (rnn only)", ("lstm", "gru"))
    max_seconds: float | None = opt(None, "ANTISPAM_TRAIN_MAX_SECONDS",
                                    "stop after the epoch that crosses this wall time (unset: no limit)")
    unknown_rate: float = opt(0.1, "ANTISPAM_TRAIN_UNKNOWN_RATE",
                              "share of training tokens treated as unknown at each step")
    fine_tune_vectors: bool = opt(True, "ANTISPAM_TRAIN_FINE_TUNE_VECTORS",
                                  "train the word vectors with the network (--no-fine-tune-vectors or "
                                  "--static-vectors: keep word2vec's; the version ships the vectors it "
                                  "was trained with either way)")
    extend_min_count: int = opt(2, "ANTISPAM_TRAIN_EXTEND_MIN_COUNT",
                                "give training words seen this often, that word2vec lacks, their own "
                                "tuned vector (0: off)")
    stride: int = opt(10, "ANTISPAM_TRAIN_STRIDE", "tokens between the starts of two 20-token windows of a "
                      "message")
    cap: int = opt(64, "ANTISPAM_TRAIN_CAP", "most windows scored per message (the version records it; "
                   "serving uses it too)")
    # mean_odds (temperature 2 for the CNN, 3 for the RNN: KIND_DEFAULTS) was the best compromise
    # on validation between catching ads behind ordinary sentences and not flagging long ordinary
    # texts (figures in the issue-9 notes and docs/notes/sweep-issue-9.md).
    aggregation: str = opt("mean_odds", "ANTISPAM_TRAIN_AGGREGATION",
                           "how a message's windows fold into its score", AGGREGATIONS)
    char_backoff: bool = opt(True, "ANTISPAM_TRAIN_CHAR_BACKOFF",
                             "unknown words read as the mean of their known characters' vectors "
                             "(--no-char-backoff: as UNK)")
    augment: float = opt(0.5, "ANTISPAM_TRAIN_AUGMENT",
                         "extra training messages (ads with ordinary text around them, joined ordinary "
                         "messages) as a share of the training split (0: off)")
    augment_pass_share: float = opt(0.5, "ANTISPAM_TRAIN_AUGMENT_PASS_SHARE",
                                    "share of the extra training messages that are joined ordinary "
                                    "messages (the rest: ads with ordinary text around them)")
    # Spam training messages with fewer tokens are left out: fragments ("发布", "您好！") that the
    # corpus labels spam, which nobody can judge from the text and which teach "short means spam".
    min_spam_tokens: int = opt(3, "ANTISPAM_TRAIN_MIN_SPAM_TOKENS",
                               "spam training messages with fewer tokens are left out (0: keep all)")
    pass_weight: float = opt(1.0, "ANTISPAM_TRAIN_PASS_WEIGHT",
                             "loss weight of a pass message relative to a spam one (1: equal)")
    temperature: float | None = opt(None, "ANTISPAM_TRAIN_TEMPERATURE",
                                    "mean_odds aggregation: how much a lone window in a long text is "
                                    "diluted (higher: more; unset: the network's default, " + ", ".join(
                                        f"{kind} {values['temperature']:g}"
                                        for kind, values in KIND_DEFAULTS.items()) + ")")
    everyday_weight: int | None = opt(None, "ANTISPAM_TRAIN_EVERYDAY_WEIGHT",
                                      "copies of each everyday training message added as pass (unset: "
                                      "the network's default, " + ", ".join(
                                          f"{kind} {values['everyday_weight']}"
                                          for kind, values in KIND_DEFAULTS.items()) + ")")

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if self.patience < 1:
            raise ValueError("patience must be at least 1")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError("plateau_factor must be in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if not 0.0 <= self.unknown_rate < 1.0:
            raise ValueError("unknown_rate must be in [0, 1)")
        if self.rnn_cell not in ("lstm", "gru"):
            raise ValueError("rnn_cell must be 'lstm' or 'gru'")
        if self.extend_min_count < 0:
            raise ValueError("extend_min_count must be 0 (off) or positive")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError("max_seconds must be positive")
        if self.min_spam_tokens < 0:
            raise ValueError("min_spam_tokens must be >= 0")
        if not 0.0 <= self.augment <= 4.0:
            raise ValueError("augment must be in [0, 4]")
        if not 0.0 <= self.augment_pass_share <= 1.0:
            raise ValueError("augment_pass_share must be in [0, 1]")
        if not 0.0 < self.pass_weight <= 10.0:
            raise ValueError("pass_weight must be in (0, 10]")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
        if self.everyday_weight is not None and not 1 <= self.everyday_weight <= 32:
            raise ValueError("everyday_weight must be in [1, 32]")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError("temperature must be positive")
        self._windowing(self.temperature or 1.0)  # validates stride and cap

    def for_kind(self, kind: str) -> ClassifierSettings:
        """These settings with the per-network defaults (:data:`KIND_DEFAULTS`) filled in where
        unset; what ``train_classifier`` trains with and every version records."""
        unset = {name: value for name, value in KIND_DEFAULTS.get(kind, {}).items()
                 if getattr(self, name) is None}
        return dataclasses.replace(self, **unset) if unset else self

    def windowing(self) -> Windowing:
        """The windowing a version trained with these settings records (after :meth:`for_kind`)."""
        if self.temperature is None:
            raise ValueError("the temperature is the network's own: resolve the settings with for_kind(kind)")
        return self._windowing(self.temperature)

    def _windowing(self, temperature: float) -> Windowing:
        return Windowing(stride=self.stride, cap=self.cap, aggregation=self.aggregation,
                         char_backoff=self.char_backoff, temperature=float(temperature))

    def model_options(self, kind: str) -> dict[str, Any]:
        return {"cell": self.rnn_cell} if kind == "rnn" else {}


@dataclass
class TrainedClassifier:
    """A trained network (best validation epoch restored, in eval mode) and how it got there."""

    kind: str
    model: Any  # tl.models.Model
    vectors: WordVectors  # the vectors to serve it with (tuned/extended; what a version ships)
    source_fingerprint: str  # vectors_fingerprint() of the word vectors it started from
    settings: ClassifierSettings
    history: list[dict[str, Any]]
    best_epoch: int
    validation: dict[str, Any]
    test: dict[str, Any]
    split_manifest: dict[str, Any]
    wall_seconds: float
    stopped_because: str
    _predict: Any = field(default=None, repr=False)

    @property
    def featurizer(self) -> Featurizer:
        """What the service will build for this model: its vectors and its windowing."""
        return Featurizer(self.vectors, self.settings.windowing())

    def predict_messages(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """float64 ``[n]`` spam probability of whole messages, folded as the service folds them."""
        featurizer = self.featurizer
        plan = featurizer.plan(token_lists)
        return plan.fold(self.predict_proba(featurizer.rows(plan)))

    def predict_proba(self, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """float32 ``[n, 2]`` softmax of the network on featurizer rows ``[n, 20, 200]``."""
        import tensorflow as tf

        if self._predict is None:
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([None, MAX_LEN, DIM], tf.float32)],
                         autograph=False)
            def predict(x: tf.Tensor) -> tf.Tensor:
                return tf.nn.softmax(model(x), axis=-1)

            self._predict = predict
        self.model.eval()
        inputs = np.asarray(inputs, dtype=np.float32)
        if inputs.ndim != 3 or inputs.shape[1:] != (MAX_LEN, DIM):
            raise ValueError(f"expected inputs of shape [n, {MAX_LEN}, {DIM}], got {inputs.shape}")
        parts = [self._predict(inputs[i:i + batch_size]).numpy()
                 for i in range(0, len(inputs), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` and the training report record about this run."""
        return {
            "model": self.kind,
            "test": self.test,
            "validation": self.validation,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "stopped_because": self.stopped_because,
            "history": self.history,
            "settings": dataclasses.asdict(self.settings),
            "split": self.split_manifest,
            "wall_seconds": round(self.wall_seconds, 1),
            "vocabulary_size": len(self.vectors),
            "source_vectors": self.source_fingerprint,
            "parameters": int(sum(int(np.prod(w.shape)) for w in self.model.all_weights)),
            "windowing": self.settings.windowing().to_preprocessing(),
        }


def prepare_vectors(vectors: WordVectors) -> WordVectors:
    """The vectors a model is trained and served with: every vocabulary row non-zero.

    The network tells padding from words by ``any(vector != 0)`` (see
    :mod:`antispam.network.layers`). A word whose row is all zeros — typically ``UNK`` if the
    word2vec run never trained it — would be read as padding. Such rows get a fixed
    pseudo-random vector (seeded by the row number) with the typical length of the other rows,
    so the result is deterministic and the exported vectors are exactly the trained ones.
    Non-finite values cannot be repaired and raise ValueError.
    """
    matrix = np.array(vectors.matrix, dtype=np.float32, copy=True)
    if matrix.shape[1] != DIM:
        raise ValueError(f"word vectors are {matrix.shape[1]}-d, the classifiers need {DIM}-d")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("word vectors contain NaN or infinite values")
    zero_rows = np.flatnonzero(~np.any(matrix != 0, axis=1))
    if zero_rows.size == 0:
        return vectors
    norms = np.linalg.norm(matrix, axis=1)
    scale = float(np.median(norms[norms > 0])) if np.any(norms > 0) else 1.0
    for row in zero_rows:
        filler = np.random.default_rng(int(row)).normal(size=DIM)
        matrix[row] = (filler / np.linalg.norm(filler) * scale).astype(np.float32)
    log.info("gave %d all-zero vocabulary rows (UNK: %s) a fixed non-zero vector",
             zero_rows.size, bool(0 in zero_rows))
    return WordVectors(list(vectors.vocab), matrix)


def vectors_fingerprint(vectors: WordVectors) -> str:
    """Digest of a vocabulary and its matrix: ties a trained model to the vectors it came from."""
    digest = hashlib.sha256("\n".join(vectors.vocab).encode("utf-8"))
    digest.update(np.ascontiguousarray(vectors.matrix, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def extend_vocabulary(vectors: WordVectors, token_lists: Sequence[Sequence[str]], min_count: int,
                      seed: int, windowing: Windowing | None = None) -> WordVectors:
    """Append words seen ``min_count``+ times in ``token_lists`` that ``vectors`` lacks.

    Only tokens the windows read count (all of them with full-text windowing). A new row
    starts where the service would have put the word as an unknown one (its characters' mean
    with back-off, else ``UNK``) plus a little seeded noise, and fine-tuning moves it towards
    what it signals. Words are ordered by descending count, then alphabetically, so the result
    is reproducible.
    """
    windowing = windowing or Windowing()
    counts: dict[str, int] = {}
    for tokens in token_lists:
        spans = windowing.spans(len(tokens))
        for start, end in spans:
            for token in tokens[start:end]:
                if token not in vectors:
                    counts[token] = counts.get(token, 0) + 1
    new = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not new:
        return vectors
    rng = np.random.default_rng(seed)
    start_rows = np.empty((len(new), vectors.dim), np.float32)
    for k, word in enumerate(new):
        chars = vectors.char_ids(word) if windowing.char_backoff else np.zeros(0, np.int32)
        start_rows[k] = vectors.matrix[chars].mean(axis=0) if chars.size else vectors.matrix[0]
    noise = rng.normal(0.0, 0.1 * float(np.std(vectors.matrix)) + 1e-6, (len(new), vectors.dim))
    rows = (start_rows + noise).astype(np.float32)
    return WordVectors([*vectors.vocab, *new], np.vstack([vectors.matrix, rows]))


def augmented_messages(train: Sequence[Sample], share: float, seed: int,
                       pass_share: float = 0.5) -> list[Sample]:
    """Whole messages a moderation backend sends that the corpus lacks, from training ones only.

    ``1 - pass_share`` of them are spam with one to three ordinary (pass) messages before and/or
    after it, labelled spam: under multiple-instance training only the ad's windows must score
    spam. ``pass_share`` are two to four pass messages joined, labelled pass: long ordinary texts
    must not start to look like spam because they have more windows. The kinds are interleaved
    evenly (at 0.5 they alternate, spam first). Joined with the separators people type (none, "。",
    "，", a space, a line break). Built once per run from a seeded generator.
    """
    rng = np.random.default_rng([seed, 7])
    spam = [s.text for s in train if s.label == SPAM]
    ordinary = [s.text for s in train if s.label != SPAM]
    if not spam or len(ordinary) < 4 or share <= 0:
        return []
    separators = ("", "。", "，", " ", "\n")
    count = int(round(share * len(train)))

    def join(parts: list[str]) -> str:
        return str(rng.choice(separators)).join(parts)

    def pick(k: int) -> list[str]:
        return [ordinary[i] for i in rng.choice(len(ordinary), size=k, replace=False)]

    out = []
    for n in range(count):
        if int((n + 1) * pass_share) == int(n * pass_share):  # not this one's turn to be pass
            ad = spam[int(rng.integers(len(spam)))]
            before, after = pick(int(rng.integers(0, 4))), pick(int(rng.integers(0, 3)))
            if not before and not after:
                before = pick(1)
            out.append(Sample(join([*before, ad, *after]), SPAM))
        else:
            out.append(Sample(join(pick(int(rng.integers(2, 5)))), PASS))
    return out


def tokenize_all(samples: Sequence[Sample], segmenter: Segmenter) -> list[list[str]]:
    return [segmenter.tokenize(sample.text) for sample in samples]


def train_classifier(kind: str, split: Split, vectors: WordVectors,
                     settings: ClassifierSettings | None = None, progress: bool = True,
                     segmenter: Segmenter | None = None) -> TrainedClassifier:
    """Train ``kind`` ("cnn", "rnn" or "mlp") on ``split.train``; see the module docstring.

    The data are prepared once (:class:`TrainingData`), the network lives in a
    :class:`ClassifierStep`, each epoch is :func:`run_epoch`, and a :class:`StoppingPolicy`
    decides after every epoch whether to keep the weights, shrink the learning rate or stop.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown classifier {kind!r}; choose one of {', '.join(KINDS)}")
    settings = (settings or ClassifierSettings()).for_kind(kind)
    for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        labels = {s.label for s in part}
        if name != "test" and len(labels) < 2:
            raise ValueError(f"the {name} split needs both spam and pass messages, has {len(part)} "
                             f"message(s) with labels {sorted(labels)}")
    started = time.perf_counter()
    segmenter = segmenter or default_segmenter()
    data = TrainingData.prepare(split, vectors, settings, segmenter)
    rng = np.random.default_rng(settings.seed)
    step = ClassifierStep(kind, data.vectors, Featurizer(data.vectors, data.windowing), seed=settings.seed,
                          dropout=settings.dropout, model_options=settings.model_options(kind),
                          fine_tune_vectors=settings.fine_tune_vectors, learning_rate=settings.learning_rate,
                          aggregation=settings.aggregation, temperature=data.windowing.temperature,
                          pass_weight=settings.pass_weight)
    policy = StoppingPolicy(settings.patience, settings.plateau_factor, settings.max_seconds)
    history: list[dict[str, Any]] = []
    best_weights: list[np.ndarray] = []
    stopped_because = "epochs"
    for epoch in range(1, settings.epochs + 1):
        record, selection = run_epoch(step, data, settings, rng, f"{kind} epoch {epoch}/{settings.epochs}",
                                      progress)
        history.append({"epoch": epoch, **record})
        verdict = policy.after_epoch(epoch, (selection["f1"], -selection["loss"]),
                                     time.perf_counter() - started)
        if verdict.improved:
            best_weights = step.snapshot()
        if verdict.shrink_learning_rate:
            step.scale_learning_rate(settings.plateau_factor)
        if verdict.stop:
            stopped_because = verdict.stop
            break

    step.restore(best_weights)
    final_vectors = step.tuned_vectors(data.vectors.vocab)
    if prepare_vectors(final_vectors) is not final_vectors:
        raise RuntimeError("fine-tuning drove a word vector to exactly zero; retrain with another seed")
    validation_scores = step.scores(data.validation_tokens, data.validation_y)
    # The one and only look at the test split.
    test_y = np.array([s.label for s in split.test], dtype=np.int32)
    test_scores = step.scores(tokenize_all(split.test, segmenter), test_y) if len(test_y) else {}
    trained = TrainedClassifier(
        kind=kind, model=step.model, vectors=final_vectors, source_fingerprint=vectors_fingerprint(data.source),
        settings=settings, history=history,
        best_epoch=policy.best_epoch, validation=validation_scores, test=test_scores,
        split_manifest={**split.manifest(), "short_spam_left_out": data.short_spam_left_out},
        wall_seconds=time.perf_counter() - started,
        stopped_because=stopped_because,
    )
    log.info("%s: best epoch %d of %d (%s); test accuracy %.4f, F1 %.4f, %.0f s", kind, policy.best_epoch,
             len(history), stopped_because, test_scores.get("accuracy", float("nan")),
             test_scores.get("f1", float("nan")), trained.wall_seconds)
    return trained


@dataclass
class TrainingData:
    """Everything an epoch reads, built once per run: the training messages (corpus messages
    kept + built ones) as tokens, the validation and selection messages, their labels, and the
    vectors the network starts from (extended with training words when fine-tuning)."""

    source: WordVectors  # the given vectors, prepared (every row non-zero)
    vectors: WordVectors  # source + the training words it lacked: the table's starting rows
    windowing: Windowing
    train_tokens: list[list[str]]
    train_y: np.ndarray
    validation_tokens: list[list[str]]
    validation_y: np.ndarray
    # What epochs are selected on: the validation messages and whole messages built from them.
    selection_tokens: list[list[str]]
    selection_y: np.ndarray
    short_spam_left_out: int

    @classmethod
    def prepare(cls, split: Split, vectors: WordVectors, settings: ClassifierSettings,
                segmenter: Segmenter) -> TrainingData:
        source = prepare_vectors(vectors)
        windowing = settings.windowing()
        kept = [(sample, tokens) for sample, tokens in zip(split.train, tokenize_all(split.train, segmenter))
                if sample.label != SPAM or len(tokens) >= settings.min_spam_tokens]
        corpus_train = [sample for sample, _ in kept]
        built = augmented_messages(corpus_train, settings.augment, settings.seed, settings.augment_pass_share)
        train_samples = [*corpus_train, *built]
        train_tokens = [tokens for _, tokens in kept] + tokenize_all(built, segmenter)
        extended = source
        if settings.fine_tune_vectors and settings.extend_min_count:
            # Counted over distinct training messages: the built messages and the weighted everyday
            # copies repeat words, and a word seen in one message only would get a row to overfit.
            distinct: dict[str, list[str]] = {}
            for _sample, tokens in zip(train_samples[:len(split.train)], train_tokens):
                distinct.setdefault(" ".join(tokens), tokens)
            extended = extend_vocabulary(source, list(distinct.values()), settings.extend_min_count,
                                         settings.seed, windowing)
        validation_tokens = tokenize_all(split.validation, segmenter)
        selection_samples = [*split.validation,
                             *augmented_messages(split.validation, settings.augment, settings.seed + 1)]
        selection_tokens = validation_tokens + tokenize_all(selection_samples[len(split.validation):], segmenter)
        return cls(
            source=source, vectors=extended, windowing=windowing,
            train_tokens=train_tokens,
            train_y=np.array([s.label for s in train_samples], dtype=np.int32),
            validation_tokens=validation_tokens,
            validation_y=np.array([s.label for s in split.validation], dtype=np.int32),
            selection_tokens=selection_tokens,
            selection_y=np.array([s.label for s in selection_samples], dtype=np.int32),
            short_spam_left_out=len(split.train) - len(kept),
        )


def run_epoch(step: ClassifierStep, data: TrainingData, settings: ClassifierSettings,
              rng: np.random.Generator, desc: str, progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pass over the shuffled training messages, then the validation and selection scores.

    Returns the epoch's history record (without its number) and the selection scores the
    stopping policy judges it by.
    """
    from antispam.progress import progress_bar

    epoch_started = time.perf_counter()
    size = len(data.train_tokens)
    order = rng.permutation(size)
    steps = -(-size // settings.batch_size)
    step.model.train()
    bar = progress_bar(total=steps, desc=desc, unit="batch", enabled=progress)
    total_loss = 0.0
    for k in range(steps):
        batch = order[k * settings.batch_size:(k + 1) * settings.batch_size]
        plan = step.featurizer.plan([data.train_tokens[i] for i in batch], settings.unknown_rate, rng)
        total_loss += step.train_on(plan, data.train_y[batch]) * len(batch)
        bar.update(1)
        if k % 20 == 0 or k == steps - 1:
            bar.set_postfix(loss=f"{total_loss / min(size, (k + 1) * settings.batch_size):.4f}")
    train_loss = total_loss / size
    validation = step.scores(data.validation_tokens, data.validation_y)
    selection = (step.scores(data.selection_tokens, data.selection_y)
                 if len(data.selection_y) > len(data.validation_y) else validation)
    record = {
        "loss": train_loss,
        "validation_loss": validation["loss"],
        "validation_accuracy": validation["accuracy"],
        "validation_f1": validation["f1"],
        "validation_roc_auc": validation["roc_auc"],
        "selection_f1": selection["f1"],
        "selection_loss": selection["loss"],
        "learning_rate": step.learning_rate,
        "seconds": round(time.perf_counter() - epoch_started, 2),
    }
    bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{validation['loss']:.4f}",
                    val_acc=f"{validation['accuracy']:.4f}", val_f1=f"{validation['f1']:.4f}")
    bar.close()
    return record, selection
