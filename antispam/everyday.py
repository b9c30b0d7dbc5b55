"""Everyday messages: ordinary short texts the corpus lacks, shipped with the package.

In the corpus, messages of three tokens or fewer are 314 spam against 60 pass (an artifact of how
it was collected), so networks trained on it alone learn "short means spam" and block ``你好``.
``antispam/corpora/everyday_zh.tsv`` (written for this project; provenance in the README beside
it) holds greetings, thanks, logistics, family, work and other ordinary messages. It is split by
a stable hash of each message: one part is added to the training split as pass samples, the other
is never trained on and measures the false-positive rate on everyday messages.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from importlib import resources

from antispam.data import Sample, Split
from antispam.labels import PASS
from antispam.text import normalize

RESOURCE = "everyday_zh.tsv"
HELD_OUT_SHARE = 0.5  # of the messages, by hash, kept for evaluation only
# Each training message is added this many times: a few hundred lines against 13,000 corpus
# messages would otherwise barely move what the corpus taught about short texts.
TRAIN_WEIGHT = 4
_SALT = "antispam-everyday-v1"


@dataclass(frozen=True)
class Everyday:
    category: str
    text: str

    @property
    def held_out(self) -> bool:
        """Stable: depends on the message alone, so a line keeps its side when the file grows."""
        digest = hashlib.sha256(f"{_SALT}\x00{normalize(self.text)}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < HELD_OUT_SHARE


def load() -> list[Everyday]:
    """Every line of the shipped file (category, text)."""
    raw = resources.files("antispam.corpora").joinpath(RESOURCE).read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        category, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise ValueError(f"{RESOURCE} line {number}: expected 'category<TAB>message'")
        rows.append(Everyday(category, text))
    return rows


def training_part() -> list[Everyday]:
    return [row for row in load() if not row.held_out]


def held_out_part() -> list[Everyday]:
    return [row for row in load() if row.held_out]


def with_everyday(split: Split, weight: int | None = None) -> Split:
    """``split`` with the training part of the everyday messages added to ``train`` as pass
    (each ``weight`` times; None: :data:`TRAIN_WEIGHT`, so a trainer's unset setting passes through).

    A message whose normalized text is in validation or test is left out, so nothing crosses
    into them. One that is in the corpus' training part replaces it there: the corpus labels
    bare greetings such as "您好！" spam (fragments of longer messages), and the everyday label is
    the project's own reading of the text. The counts are recorded in the split's stats (and so
    in every version's manifest).
    """
    held = {normalize(s.text) for part in (split.validation, split.test) for s in part}
    seen: set[str] = set()
    added = []
    for row in training_part():
        key = normalize(row.text)
        if key and key not in held and key not in seen:
            seen.add(key)
            added.append(Sample(row.text, PASS))
    if weight is None:
        weight = TRAIN_WEIGHT
    if weight < 1:
        raise ValueError("the everyday weight must be at least 1")
    train = [s for s in split.train if normalize(s.text) not in seen]
    stats = {**split.stats, "everyday_added_to_train": len(added), "everyday_weight": weight,
             "everyday_replaced_corpus_train": len(split.train) - len(train)}
    return dataclasses.replace(split, train=[*train, *added * weight], stats=stats)
