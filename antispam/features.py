"""Tokens → the ``[20, 200]`` float32 rows the classifiers read (docs/contracts.md, "Tensor").

A message becomes one row per 20-token window (:class:`Windowing`): a version trained for full-text
scoring covers every token with overlapping windows and its trainer and the service fold the
rows of a message back into one score the same way (:meth:`Plan.fold`); a version made before
that reads the first 20 tokens only, as one row. Both go through :meth:`Featurizer.plan`, the one
place that decides which row ids (or which characters, for an unknown word) a token becomes, so
the trainer and every backend build identical rows.

Word vectors are stored in a format numpy alone can read, because the serving process must be
able to build tensors without TensorFlow or TensorLayer:

* ``vocab.txt``: one word per line, UTF-8; line ``i`` is row ``i`` of the matrix; row 0 is
  ``UNK`` (the vector for every word outside the vocabulary).
* ``vectors.npy``: float32 matrix ``[len(vocab), dim]`` (``numpy.save`` format).

Unknown words (character back-off): with ``char_backoff`` a word outside the vocabulary gets the
mean of the vectors of its characters that are in the vocabulary (word2vec also learns single
characters), and ``UNK`` only when none is known. A spammer's new word (``薇信``, ``贷歀``) then
still reads close to what its characters mean instead of as one shared ``UNK``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from antispam.atomic import atomic_write_bytes
from antispam.calibration import Calibration

MAX_LEN = 20
DIM = 200
UNK = "UNK"
VOCAB_FILE = "vocab.txt"
VECTORS_FILE = "vectors.npy"
# Back-off vectors computed at serve time are cached per word; past this many the cache starts
# over, so a flood of made-up words cannot grow the process without bound.
BACKOFF_CACHE_SIZE = 50_000


@dataclass
class WordVectors:
    """A vocabulary and its matrix, plus the lookup structures the featurizer needs."""

    vocab: list[str]
    matrix: np.ndarray
    _index: dict[str, int] = field(init=False, repr=False)
    _padded: np.ndarray = field(init=False, repr=False)
    _backoff: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.vocab or self.vocab[0] != UNK:
            raise ValueError(f"vocabulary must start with {UNK!r}")
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.vocab):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match vocabulary of {len(self.vocab)}"
            )
        self._index = {word: i for i, word in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError("vocabulary has duplicate words")
        # One extra all-zero row at the end: padding positions index it, so a whole batch is
        # built by a single fancy-indexing call.
        self._padded = np.vstack([self.matrix, np.zeros((1, self.dim), np.float32)])
        self._backoff = {}

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def pad_id(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def ids(self, tokens: Sequence[str], max_len: int = MAX_LEN) -> np.ndarray:
        """First ``max_len`` tokens as row ids; unknown words → 0 (UNK), padding → ``pad_id``."""
        out = np.full(max_len, self.pad_id, dtype=np.int32)
        get = self._index.get
        for i, token in enumerate(tokens[:max_len]):
            out[i] = get(token, 0)
        return out

    def featurize(self, tokens: Sequence[str], max_len: int = MAX_LEN) -> np.ndarray:
        """One message → float32 ``[max_len, dim]``."""
        return self._padded[self.ids(tokens, max_len)]

    def featurize_batch(self, batch: Sequence[Sequence[str]], max_len: int = MAX_LEN) -> np.ndarray:
        """Many messages → float32 ``[n, max_len, dim]`` with one gather."""
        ids = np.full((len(batch), max_len), self.pad_id, dtype=np.int32)
        get = self._index.get
        for row, tokens in enumerate(batch):
            for col, token in enumerate(tokens[:max_len]):
                ids[row, col] = get(token, 0)
        return self._padded[ids]

    def char_ids(self, word: str) -> np.ndarray:
        """Row ids of the characters of ``word`` that are in the vocabulary (may be empty)."""
        get = self._index.get
        found = [i for i in (get(ch) for ch in word) if i is not None and i != 0]
        return np.asarray(found, dtype=np.int32)

    def backoff_vector(self, word: str, char_ids: np.ndarray) -> np.ndarray:
        """Mean of ``char_ids``' rows for ``word``, cached (the rows of a version never change)."""
        vector = self._backoff.get(word)
        if vector is None:
            vector = self.matrix[char_ids].mean(axis=0, dtype=np.float32)
            if len(self._backoff) >= BACKOFF_CACHE_SIZE:
                self._backoff.clear()
            self._backoff[word] = vector
        return vector

    def nearest(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """Cosine nearest neighbours, for a person to sanity-check the vectors."""
        if word not in self._index:
            return []
        norms = np.linalg.norm(self.matrix, axis=1) + 1e-8
        unit = self.matrix / norms[:, None]
        sims = unit @ unit[self._index[word]]
        order = [i for i in np.argsort(-sims) if i != self._index[word] and i != 0][:k]
        return [(self.vocab[i], float(sims[i])) for i in order]

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write each file atomically.

        Readers of a live folder could still pair a new vocabulary with an old matrix between the
        two renames; :meth:`load` then fails on the shape check instead of using wrong vectors.
        Model versions avoid the window entirely: their vectors are written before the version
        folder is renamed into view.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / VOCAB_FILE, ("\n".join(self.vocab) + "\n").encode("utf-8"))
        buffer = io.BytesIO()
        np.save(buffer, self.matrix)
        atomic_write_bytes(directory / VECTORS_FILE, buffer.getvalue())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "WordVectors":
        directory = Path(directory)
        vocab_path, vectors_path = directory / VOCAB_FILE, directory / VECTORS_FILE
        for path in (vocab_path, vectors_path):
            if not path.is_file():
                raise FileNotFoundError(f"word vectors incomplete: {path} is missing")
        vocab = vocab_path.read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":
            vocab.pop()
        matrix = np.load(vectors_path, allow_pickle=False)
        return cls(vocab, matrix)



AGGREGATIONS = ("max", "noisy_or", "mean_odds")


@dataclass(frozen=True)
class Windowing:
    """How a version turns a message into rows and its rows back into one score.

    Recorded in the version's ``preprocessing.json``. ``stride`` is how far the next 20-token
    window starts after the previous one (the last window is aligned to the message's end, so
    every token is in at least one window and no window is mostly padding); ``cap`` bounds the
    rows of one message (the first half of the cap from the start, the rest from the end, so a
    text cut in the middle is still read where ads usually sit); ``aggregation`` folds the rows'
    spam probabilities into the message's. A version that records none of these is served as it
    was trained: the first 20 tokens, unknown words as ``UNK`` (:data:`FIRST_WINDOW`).
    """

    window: int = MAX_LEN
    stride: int = 10
    cap: int = 64
    aggregation: str = "max"
    char_backoff: bool = True
    temperature: float = 1.0  # mean_odds only: higher dilutes a lone window in a long text more

    def __post_init__(self) -> None:
        if self.window != MAX_LEN:
            raise ValueError(f"window must be {MAX_LEN} (the serving signature's rows), got {self.window}")
        if not 1 <= self.stride <= self.window:
            raise ValueError(f"stride must be between 1 and {self.window}, got {self.stride}")
        if self.cap < 1:
            raise ValueError(f"cap must be at least 1 window, got {self.cap}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        if not (isinstance(self.temperature, (int, float)) and not isinstance(self.temperature, bool)
                and 0.1 <= self.temperature <= 100):
            raise ValueError(f"temperature must be a number in [0.1, 100], got {self.temperature!r}")

    KEYS = ("window", "stride", "cap", "aggregation", "char_backoff", "temperature")

    @classmethod
    def from_preprocessing(cls, settings: Mapping[str, Any]) -> "Windowing":
        """The windowing a version records; :data:`FIRST_WINDOW` when it records none.

        Raises ValueError (naming the problem) for a partial or invalid record: such a version is
        refused rather than served some other way than it was trained.
        """
        present = [key for key in cls.KEYS if key in settings]
        if not present:
            return FIRST_WINDOW
        missing = [key for key in cls.KEYS if key not in settings]
        if missing:
            raise ValueError(f"preprocessing records {', '.join(present)} but not {', '.join(missing)}")
        values = {key: settings[key] for key in cls.KEYS}
        for key in ("window", "stride", "cap"):
            if not isinstance(values[key], int) or isinstance(values[key], bool):
                raise ValueError(f"{key} must be an integer, got {values[key]!r}")
        if not isinstance(values["char_backoff"], bool):
            raise ValueError(f"char_backoff must be true or false, got {values['char_backoff']!r}")
        values["temperature"] = float(values["temperature"]) if isinstance(values["temperature"], int) \
            and not isinstance(values["temperature"], bool) else values["temperature"]
        return cls(**values)

    def to_preprocessing(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    def spans(self, length: int) -> list[tuple[int, int]]:
        """``[start, end)`` token ranges of the windows a message of ``length`` tokens gives."""
        if length <= self.window:
            return [(0, length)]
        starts = list(range(0, length - self.window, self.stride)) + [length - self.window]
        if len(starts) > self.cap:
            head = -(-self.cap // 2)
            starts = starts[:head] + starts[len(starts) - (self.cap - head):]
        return [(s, s + self.window) for s in starts]


# Versions made before full-text scoring: one row, the first 20 tokens, unknown words → UNK.
FIRST_WINDOW = Windowing(stride=MAX_LEN, cap=1, aggregation="max", char_backoff=False)


@dataclass
class Plan:
    """The rows of a batch of messages as vocabulary ids, before any vector is looked up.

    ``ids[r, c]`` is a vocabulary row (``< pad``), padding (``== pad``) or, for an unknown word
    with character back-off, ``pad + 1 + j``: the mean of the rows ``extra_chars[j]``. Rows of a
    message are contiguous, starting at ``starts[i]``. The service materializes this with numpy
    (:meth:`Featurizer.rows`), the trainer with TensorFlow from its trainable table: the same ids,
    the same means.
    """

    ids: np.ndarray  # int32 [rows, MAX_LEN]
    pad: int
    extra_words: list[str]
    extra_chars: list[np.ndarray]
    starts: np.ndarray  # int64 [messages]
    tokens: np.ndarray  # int64 [messages]: tokens in each message
    scored: np.ndarray  # int64 [messages]: tokens inside at least one row
    aggregation: str
    temperature: float = 1.0
    # The version's calibration (issue 20), applied after the fold; None: the folded score as is
    # (a version trained before calibration, and the trainer, which fits the map on raw scores).
    calibration: Calibration | None = None

    @property
    def messages(self) -> int:
        return len(self.starts)

    def fold(self, probabilities: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """float64 ``[messages]`` spam probabilities from the rows' ``[rows, 2]`` probabilities.

        The version's calibration map, if it records one, is applied to the folded score here, so
        every path that folds a version's rows (local, gRPC, REST, evaluate, retrain) answers the
        same calibrated probability; ``calibrated=False`` gives the raw folded score.
        """
        folded = self._fold(probabilities)
        if calibrated and self.calibration is not None and len(folded):
            return self.calibration.apply(folded)
        return folded

    def _fold(self, probabilities: np.ndarray) -> np.ndarray:
        """The fold itself (raw folded scores).

        ``max``: the most spam-like window decides. ``noisy_or``: the message is spam unless
        every window is pass, ``1 - prod(p_pass)``. ``mean_odds``: a smooth max of the windows'
        log-odds ``z``, ``T * log(mean(exp(z / T)))`` with the version's temperature ``T``
        (T → 0 is the max; T = 1 the mean of the odds; larger T leans towards the mean of z, so a
        lone borderline window in a long ordinary text counts for less, while an ad's window far
        above every other still decides). The trainer's loss is taken on exactly this.
        """
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape != (len(self.ids), 2):
            raise ValueError(f"expected probabilities of shape [{len(self.ids)}, 2], got {probabilities.shape}")
        if not self.messages:
            return np.zeros(0, np.float64)
        if self.aggregation == "max":
            return np.maximum.reduceat(probabilities[:, 0], self.starts)
        if self.aggregation == "noisy_or":
            return 1.0 - np.multiply.reduceat(probabilities[:, 1], self.starts)
        # mean_odds: the log of the mean of the windows' odds, so one strongly spam window still
        # decides (a window at odds 1000:1 among two ordinary ones keeps odds above 300:1) while a
        # borderline window among many ordinary ones is diluted.
        tiny, t = 1e-12, self.temperature
        log_odds = (np.log(np.clip(probabilities[:, 0], tiny, 1.0))
                    - np.log(np.clip(probabilities[:, 1], tiny, 1.0))) / t
        counts = np.diff(np.append(self.starts, len(log_odds)))
        top = np.maximum.reduceat(log_odds, self.starts)
        total = np.add.reduceat(np.exp(log_odds - np.repeat(top, counts)), self.starts)
        mean_log_odds = t * (top + np.log(total) - np.log(counts))
        return 1.0 / (1.0 + np.exp(-mean_log_odds))


class Featurizer:
    """One version's vectors and windowing: token lists → rows, and rows' scores → messages."""

    def __init__(self, vectors: WordVectors, windowing: Windowing = FIRST_WINDOW,
                 calibration: Calibration | None = None) -> None:
        self.vectors = vectors
        self.windowing = windowing
        self.calibration = calibration

    def plan(self, batch: Sequence[Sequence[str]], unknown_rate: float = 0.0,
             rng: np.random.Generator | None = None) -> Plan:
        """Windows of every message, as ids (see :class:`Plan`).

        ``unknown_rate`` (training only) treats that share of the tokens as unknown words, so the
        network learns to read back-off vectors and ``UNK`` in context, as it will meet them.
        """
        vectors, windowing = self.vectors, self.windowing
        pad = vectors.pad_id
        index = vectors._index
        backoff = windowing.char_backoff
        spans_of = [windowing.spans(len(tokens)) for tokens in batch]
        rows = sum(len(spans) for spans in spans_of)
        ids = np.full((rows, MAX_LEN), pad, dtype=np.int32)
        starts = np.zeros(len(batch), dtype=np.int64)
        scored = np.zeros(len(batch), dtype=np.int64)
        extra_words: list[str] = []
        extra_chars: list[np.ndarray] = []
        extra_index: dict[str, int] = {}
        row = 0
        for m, (tokens, spans) in enumerate(zip(batch, spans_of)):
            starts[m] = row
            first, last = spans[0][0], spans[-1][1]
            needed = tokens[first:last] if len(spans) == 1 else tokens
            drop = (rng.random(len(needed)) < unknown_rate) if unknown_rate > 0 and rng is not None else None
            resolved = np.empty(len(needed), dtype=np.int32)
            for k, token in enumerate(needed):
                i = index.get(token)
                if drop is not None and drop[k]:
                    i = None
                if i is None:
                    i = 0
                    if backoff:
                        j = extra_index.get(token)
                        if j is None:
                            chars = vectors.char_ids(token)
                            # A single character reaching here is unknown (no chars) or dropped
                            # on purpose (its own row is its back-off): both read as UNK.
                            if chars.size and len(token) > 1:
                                j = extra_index[token] = len(extra_words)
                                extra_words.append(token)
                                extra_chars.append(chars)
                        if j is not None:
                            i = pad + 1 + j
                resolved[k] = i
            offset = first if len(spans) == 1 else 0
            covered = 0
            previous_end = 0
            for start, end in spans:
                ids[row, :end - start] = resolved[start - offset:end - offset]
                covered += end - max(start, previous_end)
                previous_end = end
                row += 1
            scored[m] = covered
        tokens_count = np.fromiter((len(t) for t in batch), dtype=np.int64, count=len(batch))
        return Plan(ids, pad, extra_words, extra_chars, starts, tokens_count, scored, windowing.aggregation,
                    windowing.temperature, self.calibration)

    def rows(self, plan: Plan) -> np.ndarray:
        """float32 ``[rows, 20, 200]`` for a plan, with numpy only (the serving path)."""
        vectors = self.vectors
        extra = plan.ids > plan.pad
        out = vectors._padded[np.minimum(plan.ids, plan.pad)]
        if extra.any():
            r, c = np.nonzero(extra)
            js = plan.ids[r, c] - plan.pad - 1
            out[r, c] = np.stack([vectors.backoff_vector(plan.extra_words[j], plan.extra_chars[j])
                                  for j in js.tolist()])
        return out

    def featurize(self, batch: Sequence[Sequence[str]]) -> tuple[np.ndarray, Plan]:
        """Token lists → (rows ``[rows, 20, 200]``, plan to fold their scores with)."""
        plan = self.plan(batch)
        return self.rows(plan), plan
