"""Train skip-gram word vectors on the training split and save them where the classifiers look.

Only the training split feeds word2vec: validation and test texts must not shape the features
the classifiers are scored with. The defaults are sized to finish in a few minutes on a 2-core
machine (about 10 passes over ~240,000 tokens); ``report.json`` beside the vectors records what
was trained, on what, and how long it took.

Why these defaults (measured on the real training split, 13,452 messages, ~240,000 tokens,
~9,600 words; judged by the probe words' neighbours and by a logistic regression on each
message's mean vector, validation accuracy):

* ``negatives=8``: TensorFlow's NCE loss draws its negatives once per batch and shares them,
  with the frequent ids in nearly every draw. With 64 the vectors collapsed onto one direction
  (every pair of words at cosine ~1.0); 8 and 16 did not, and 8 is faster.
* ``learning_rate=0.025`` per pair (word2vec's own alpha) with ``batch_size=1024``: per-pair
  rates of 0.002, 0.006 and 0.012 trained visibly worse vectors in the same 10 epochs
  (neighbours dominated by function words; mean-vector accuracy 0.895, 0.914, 0.920 against
  0.924), and the larger batch halves the time per pair.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from antispam.config import Paths, opt
from antispam.errors import UserError
from antispam.features import DIM, VECTORS_FILE, VOCAB_FILE, WordVectors
from antispam.text import is_latin

REPORT_FILE = "report.json"
# Spam-typical words whose nearest neighbours the report lists, to judge the vectors at a glance.
PROBE_WORDS = ("微信", "优惠", "贷款", "银行", "发票")


class Word2VecError(UserError, ValueError):
    """The corpus or the settings cannot give word vectors; the message says why.

    Also a ValueError, so :func:`antispam.config.from_args` can name the ``ANTISPAM_W2V_*``
    variable behind a value the settings refuse.
    """


@dataclass
class Word2VecSettings:
    """Every knob of a word2vec run; CLI flags and ANTISPAM_W2V_* variables fill it."""

    dim: int = opt(DIM, "ANTISPAM_W2V_DIM", "vector size (the classifiers expect 200)")
    min_count: int = opt(3, "ANTISPAM_W2V_MIN_COUNT",
                         "words seen fewer times share the UNK vector (row 0)")
    max_vocab: int = opt(0, "ANTISPAM_W2V_MAX_VOCAB", "most rows including UNK (0: no limit)")
    window: int = opt(5, "ANTISPAM_W2V_WINDOW", "largest distance between center and context word")
    negatives: int = opt(8, "ANTISPAM_W2V_NEGATIVES",
                         "negative samples per batch for the NCE loss (num_sampled)")
    batch_size: int = opt(1024, "ANTISPAM_W2V_BATCH_SIZE", "pairs per training step")
    epochs: int = opt(10, "ANTISPAM_W2V_EPOCHS", "passes over the training split")
    learning_rate: float = opt(0.025, "ANTISPAM_W2V_LEARNING_RATE",
                               "initial SGD step per pair (word2vec's alpha); decays linearly to ~0")
    subsample: float = opt(1e-3, "ANTISPAM_W2V_SUBSAMPLE",
                           "word2vec subsampling threshold for frequent words (0: off)")
    seed: int = opt(0, "ANTISPAM_W2V_SEED", "seed for pairs, initial weights and negatives")
    neighbours: int = opt(8, "ANTISPAM_W2V_NEIGHBOURS", "nearest words listed per probe word in the report")
    chars: int = opt(1, "ANTISPAM_W2V_CHARS",
                     "1: also train on each message's character sequence, so single characters get "
                     "vectors (the classifiers' back-off for unknown words); 0: words only")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject settings that would crash deep inside TensorFlow or train nothing."""
        positive = ("dim", "min_count", "window", "negatives", "batch_size", "epochs", "neighbours")
        for name in positive:
            if getattr(self, name) < 1:
                raise Word2VecError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_vocab < 0 or self.max_vocab == 1:
            raise Word2VecError(f"max-vocab must be 0 (no limit) or at least 2, got {self.max_vocab}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise Word2VecError(f"learning-rate must be a positive number, got {self.learning_rate}")
        if self.chars not in (0, 1):
            raise Word2VecError(f"chars must be 0 or 1, got {self.chars}")
        if self.subsample < 0:
            raise Word2VecError(f"subsample must be 0 (off) or positive, got {self.subsample}")


def train_word2vec(token_lists: list[list[str]], settings: Word2VecSettings,
                   progress: bool = True) -> tuple[WordVectors, dict[str, Any]]:
    """Skip-gram with NCE loss over ``token_lists`` (one list per message); vectors and report."""
    from antispam.progress import progress_bar
    from antispam.word2vec.skipgram import flatten, keep_probabilities, skipgram_pairs
    from antispam.word2vec.vocab import build_vocabulary, encode

    settings.validate()
    started = time.perf_counter()
    vocab = build_vocabulary(token_lists, settings.min_count, settings.max_vocab or None)
    if len(vocab) <= settings.negatives:
        raise Word2VecError(
            f"the corpus gives only {len(vocab)} vocabulary rows (UNK and words seen at least "
            f"{settings.min_count} times), not more than negatives={settings.negatives}: "
            "use a larger corpus, a lower --min-count or fewer --negatives")
    ids, owner = flatten(encode(token_lists, vocab))
    keep = keep_probabilities(vocab.counts, settings.subsample)

    from antispam.word2vec.model import SkipGramModel

    model = SkipGramModel(len(vocab), settings.dim, settings.negatives, seed=settings.seed)

    def epoch_pairs(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        # One generator per (seed, epoch): an epoch's pairs do not depend on earlier epochs.
        rng = np.random.default_rng([settings.seed, epoch])
        return skipgram_pairs(ids, owner, settings.window, rng, keep)

    first = epoch_pairs(0)
    if len(first[0]) == 0:
        raise Word2VecError("the corpus gives no skip-gram pairs: every message has fewer than "
                            "two tokens after subsampling; use a larger corpus")
    batches_per_epoch = math.ceil(len(first[0]) / settings.batch_size)
    bar = progress_bar(batches_per_epoch * settings.epochs, "word2vec", "step", enabled=progress)
    losses_by_epoch: list[float] = []
    pairs_total = steps = 0
    smoothed = float("nan")
    for epoch in range(settings.epochs):
        centers, contexts = first if epoch == 0 else epoch_pairs(epoch)
        n = len(centers)
        # Subsampling makes each epoch's pair count differ a little: re-estimate the total.
        bar.total = steps + math.ceil(n / settings.batch_size) * (settings.epochs - epoch)
        epoch_sum = 0.0
        epoch_steps = 0
        for start in range(0, n, settings.batch_size):
            # Linear decay over the whole run, as word2vec does; never quite zero.
            done = (epoch + start / n) / settings.epochs
            # The model's loss is the batch mean: scaling by the batch size makes the learning
            # rate a per-pair step, so --batch-size can change without retuning it.
            lr = settings.learning_rate * settings.batch_size * max(1e-4, 1.0 - done)
            end = start + settings.batch_size
            loss = model.train_step(centers[start:end], contexts[start:end], lr)
            if not math.isfinite(loss):
                bar.close()
                raise Word2VecError(f"training diverged (loss {loss}) at epoch {epoch + 1}, step "
                                    f"{steps + 1}: lower --learning-rate (now {settings.learning_rate})")
            epoch_sum += loss
            epoch_steps += 1
            steps += 1
            smoothed = loss if math.isnan(smoothed) else 0.98 * smoothed + 0.02 * loss
            bar.update(1)
            if steps % 20 == 0:
                bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}", loss=f"{smoothed:.3f}")
        pairs_total += n
        losses_by_epoch.append(epoch_sum / epoch_steps)
    bar.close()
    wall = time.perf_counter() - started

    matrix = model.embeddings()
    if not np.isfinite(matrix).all():
        raise Word2VecError("training diverged (vectors are not finite): lower --learning-rate "
                            f"(now {settings.learning_rate})")
    vectors = WordVectors(vocab.words, matrix)
    report: dict[str, Any] = {
        "vocabulary_size": len(vocab),
        "messages": len(token_lists),
        "tokens": int(len(ids)),
        "unk_tokens": int(vocab.counts[0]),
        "tokens_seen": int(len(ids)) * settings.epochs,
        "pairs": pairs_total,
        "pairs_per_epoch": round(pairs_total / settings.epochs),
        "steps": steps,
        "epochs": settings.epochs,
        "train_seconds": round(wall, 2),
        "final_loss": round(losses_by_epoch[-1], 4),
        "loss_by_epoch": [round(x, 4) for x in losses_by_epoch],
        "loss_note": "mean NCE loss per pair (tf.nn.nce_loss: 1 true + `negatives` sampled "
                     "logits), averaged over each epoch's steps",
        "neighbours": probe_neighbours(vectors, PROBE_WORDS, settings.neighbours),
        "settings": dataclasses.asdict(settings),
    }
    return vectors, report


def probe_neighbours(vectors: WordVectors, words: Sequence[str], k: int) -> dict[str, list[list[Any]]]:
    """Nearest words of a few spam-typical words, for a person to judge the vectors at a glance."""
    return {word: [[other, round(sim, 3)] for other, sim in vectors.nearest(word, k)]
            for word in words}


def character_sentence(tokens: Sequence[str]) -> list[str]:
    """A message as the characters of its CJK words (Latin and ``x`` runs stay whole).

    Trained beside the word sequences, it gives every frequent character a vector in the same
    space, which the classifiers' back-off averages for words outside the vocabulary.
    """
    out: list[str] = []
    for token in tokens:
        if is_latin(token[0]):
            out.append(token)
        else:
            out.extend(token)
    return out


def vectors_present(out_dir: str | os.PathLike[str]) -> bool:
    out = Path(out_dir)
    return (out / VOCAB_FILE).is_file() and (out / VECTORS_FILE).is_file()


def train_and_save(data_source: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
                   settings: Word2VecSettings | None = None,
                   progress: bool = True, *,
                   data_dir: str | os.PathLike[str] = Paths.data_dir) -> tuple[WordVectors, dict[str, Any]]:
    """Load the split, tokenize its training half, train, save vectors and report.json.

    ``data_dir`` is where a downloaded corpus goes when ``data_source`` and ``$ANTISPAM_DATA``
    are both unset.
    """
    from antispam import data
    from antispam.atomic import atomic_write_json
    from antispam.everyday import with_everyday
    from antispam.text import Segmenter

    settings = settings or Word2VecSettings()
    settings.validate()
    started = time.perf_counter()
    source = data.locate(data_source, data_dir, progress=progress)
    split = with_everyday(data.load_split(source, progress=progress))
    segmenter = Segmenter()
    token_lists = [segmenter.tokenize(sample.text) for sample in split.train]
    if settings.chars:
        token_lists += [chars for tokens in token_lists if len(chars := character_sentence(tokens)) > 1]
    tokenize_seconds = time.perf_counter() - started
    vectors, report = train_word2vec(token_lists, settings, progress=progress)
    vectors.save(out_dir)
    report.update({
        "source": str(source),
        "train_fingerprint": data.fingerprint(split.train),
        "load_and_tokenize_seconds": round(tokenize_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
    })
    atomic_write_json(Path(out_dir) / REPORT_FILE, report)
    return vectors, report


def ensure_word2vec(data_source: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
                    settings: Word2VecSettings | None = None, progress: bool = True, *,
                    data_dir: str | os.PathLike[str] = Paths.data_dir) -> WordVectors:
    """The vectors in ``out_dir``, training and saving them first when they are not there yet.

    ``antispam train cnn`` calls this so word2vec runs only once; ``antispam train word2vec``
    retrains unconditionally.
    """
    if vectors_present(out_dir):
        vectors = WordVectors.load(out_dir)
        if settings is not None and vectors.dim != settings.dim:
            raise Word2VecError(f"{out_dir} holds {vectors.dim}-d vectors but {settings.dim}-d were "
                                "asked for: retrain with `antispam train word2vec` or pick another folder")
        return vectors
    vectors, _ = train_and_save(data_source, out_dir, settings, progress, data_dir=data_dir)
    return vectors
