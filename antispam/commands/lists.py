"""``antispam lists check FILE...``: validate term list files before a running service loads them."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lists",
        help="work with block/allow term lists (docs/contracts.md#term-lists)",
        description="Term lists: plain text files under the lists folder, one term or 're:' "
        "pattern per line, '#' comments.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="validate list files: exit 0 if every file is usable, 2 with line numbers if not")
    check.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam.lists import check_file

    worst = 0
    for path in args.files:
        code, message = check_file(path)
        print(message)
        worst = max(worst, code)
    return worst
