"""What contact extraction costs per message, in CPU time, on the corpus and on worst cases.

    python scripts/contacts_cost.py [--data msglog.tar.gz] [--limit 20000] [--repeats 3]

Reads the corpus (``--data``, else ``$ANTISPAM_DATA``), takes every ``len/limit``-th message
(spam and ordinary alike, in file order), and times over ``--repeats`` passes (median):
``normalize`` (what every request already pays, for scale), ``fold_with_offsets`` (the folded
view extraction reads) and ``find_contacts`` (everything, the fold included). Then the texts
of the labelled set, and worst cases of 5,000 characters (the longest text the service takes)
built to make a backtracking scanner slow. Prints microseconds per message and how many
contacts of each kind the corpus messages gave. Note: the corpus' spam half masks its digits
as ``x``, so its phone numbers are invisible to any extractor; the count says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from antispam.contacts import count_and_find, find_contacts
from antispam.data import read_corpus
from antispam.text import fold_with_offsets, normalize

WORST = {
    "letters": "a" * 5000, "dotted letters": "a." * 2500, "digits spaced": "1 " * 2500,
    "at signs": "@" * 5000, "a@ repeated": "a@" * 2500, "qq repeated": "qq" * 2500,
    "微信 repeated": "微信" * 2500, "http:// repeated": ("http://" * 715)[:5000], "one digit run": "1" * 5000,
    "一 repeated": "一" * 5000, "1-1-1…": "-".join(["1"] * 2500), "full-width digits": "１ " * 2500,
    "13 repeated (phone heads)": "13 " * 1667, "a mobile repeated": "13800138000 " * 416,
    "QQ 12345 repeated": ("QQ 12345 " * 600)[:5000], "微信: abc123 repeated": ("微信:abc123 " * 500)[:5000],
}


def per_message_us(fn: Callable[[str], object], texts: list[str], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for text in texts:
            fn(text)
        runs.append((time.process_time() - start) / len(texts) * 1e6)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("ANTISPAM_DATA"))
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.data or not Path(args.data).exists():
        print("give --data or set ANTISPAM_DATA to the corpus", file=sys.stderr)
        return 2
    samples = read_corpus(args.data)
    step = max(1, len(samples) // args.limit)
    texts = [s.text for s in samples[::step]][:args.limit]
    for text in texts[:200]:  # load OpenCC before timing
        normalize(text)
    chars = sum(len(t) for t in texts)
    print(f"corpus: {len(texts)} messages of {len(samples)} (every {step}th), {chars / len(texts):.1f} "
          f"characters on average; CPU time (process_time), median of {args.repeats} passes")
    for name, fn in (("normalize", normalize), ("fold_with_offsets", lambda t: fold_with_offsets(t, mask_digits=False)),
                     ("find_contacts", find_contacts)):
        print(f"  {name:<18} {per_message_us(fn, texts, args.repeats):8.1f} µs/message")
    kinds: Counter = Counter()
    with_any = 0
    for text in texts:
        contacts = find_contacts(text)
        with_any += bool(contacts)
        kinds.update(c.kind for c in contacts)
    print(f"  messages with a contact: {with_any} ({100 * with_any / len(texts):.1f}%); by kind: {dict(kinds)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from contacts_eval import load

    labelled = [row.text for row in load()]
    print(f"labelled set: {len(labelled)} texts, find_contacts "
          f"{per_message_us(find_contacts, labelled, args.repeats):.1f} µs/message")
    print("worst cases (5,000 characters each):")
    for name, text in WORST.items():
        text = text[:5000]
        us = per_message_us(count_and_find, [text], args.repeats)
        print(f"  {name:<24} {us / 1000:8.2f} ms  ({count_and_find(text)[0]} contacts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
