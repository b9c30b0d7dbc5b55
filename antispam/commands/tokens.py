"""``antispam tokens``: show the tokens the model sees for each text."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokens",
        help="print the tokens of each text, one line each",
        description="Run texts through the shared pipeline (normalize, mask digits, jieba) and "
        "print each text's tokens separated by spaces, one line per text. With no TEXT, "
        "reads one text per line from standard input.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam.text import Segmenter

    segmenter = Segmenter()
    texts = args.texts or (line.rstrip("\n") for line in sys.stdin)
    for text in texts:
        print(" ".join(segmenter.tokenize(text)))
    return 0
