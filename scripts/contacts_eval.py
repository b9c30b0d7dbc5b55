"""Precision and recall of contact extraction on the labelled set, overall and per kind.

    python scripts/contacts_eval.py [--split dev|heldout|all] [--errors] [--file PATH]

The set is ``tests/data/contacts_labelled.tsv`` (hand-written, see tests/data/README.md): one
line per text, ``split<TAB>text<TAB>kind=value kind=value…`` (nothing after the second tab: the
text has no contact). A found contact counts as right when its (kind, value) is among the
line's expected ones (each expected one matches at most once); offsets are checked by
tests/unit/test_contacts.py instead. ``--errors`` lists every line where found and expected
differ (for the dev split: the held-out split is looked at once, for the final figures).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from antispam.contacts import KINDS, find_contacts

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "contacts_labelled.tsv"
SPLITS = ("dev", "heldout", "all")


@dataclass
class Row:
    split: str
    text: str
    expected: list[tuple[str, str]]


@dataclass
class Scores:
    tp: Counter = field(default_factory=Counter)
    fp: Counter = field(default_factory=Counter)
    fn: Counter = field(default_factory=Counter)
    lines: int = 0
    errors: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = field(default_factory=list)

    def precision(self, kind: str | None = None) -> float:
        tp, fp = self._counts(kind, self.fp)
        return tp / (tp + fp) if tp + fp else 1.0

    def recall(self, kind: str | None = None) -> float:
        tp, fn = self._counts(kind, self.fn)
        return tp / (tp + fn) if tp + fn else 1.0

    def _counts(self, kind: str | None, other: Counter) -> tuple[int, int]:
        if kind is None:
            return sum(self.tp.values()), sum(other.values())
        return self.tp[kind], other[kind]


def load(path: Path = DEFAULT_FILE, split: str = "all") -> list[Row]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] not in ("dev", "heldout"):
            raise ValueError(f"{path}:{n}: expected split<TAB>text<TAB>expected")
        expected = []
        for item in parts[2].split():
            kind, _, value = item.partition("=")
            if kind not in KINDS or not value:
                raise ValueError(f"{path}:{n}: {item!r} is not kind=value with a known kind")
            expected.append((kind, value))
        if split in ("all", parts[0]):
            rows.append(Row(parts[0], parts[1], expected))
    return rows


def evaluate(rows: list[Row]) -> Scores:
    scores = Scores()
    for row in rows:
        found = [(c.kind, c.value) for c in find_contacts(row.text)]
        left = Counter(row.expected)
        for item in found:
            if left[item] > 0:
                left[item] -= 1
                scores.tp[item[0]] += 1
            else:
                scores.fp[item[0]] += 1
        for (kind, _), missed in left.items():
            scores.fn[kind] += missed
        if Counter(found) != Counter(row.expected):
            scores.errors.append((row.text, row.expected, found))
        scores.lines += 1
    return scores


def report(scores: Scores, split: str) -> str:
    out = [f"split {split}: {scores.lines} lines, {sum(scores.tp.values()) + sum(scores.fn.values())} "
           f"expected contacts",
           f"{'kind':<10}{'expected':>9}{'found':>7}{'right':>7}{'precision':>11}{'recall':>8}"]
    for kind in (*KINDS, None):
        tp = scores.tp[kind] if kind else sum(scores.tp.values())
        fp = scores.fp[kind] if kind else sum(scores.fp.values())
        fn = scores.fn[kind] if kind else sum(scores.fn.values())
        out.append(f"{kind or 'overall':<10}{tp + fn:>9}{tp + fp:>7}{tp:>7}"
                   f"{scores.precision(kind):>11.3f}{scores.recall(kind):>8.3f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=SPLITS, default="all")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--errors", action="store_true", help="list the lines where found != expected")
    args = parser.parse_args(argv)
    scores = evaluate(load(args.file, args.split))
    print(report(scores, args.split))
    if args.errors:
        for text, expected, found in scores.errors:
            print(f"\n{text}\n  expected {expected}\n  found    {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
