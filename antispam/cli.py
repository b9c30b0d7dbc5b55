"""The ``antispam`` command: one subcommand a module under :mod:`antispam.commands`.

Each command module is cheap to import (argparse only at top level) and exposes
``add_parser(subparsers)`` and ``run(args) -> int``; heavy imports (jieba, TensorFlow) happen
inside ``run``. That keeps ``antispam --help`` instant and lets ``serve --workers N`` fork before
TensorFlow exists in the process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from antispam import __version__
from antispam.errors import UserError

# Order is the order --help lists them.
COMMANDS = ["data", "tokens", "train", "evaluate", "calibrate", "serve", "predict", "retrain", "bench", "keys",
            "feedback", "lists"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antispam", description="Chinese text anti-spam service.")
    parser.add_argument("--version", action="version", version=f"antispam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"antispam.commands.{name}").add_parser(sub)  # every command ships
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"antispam {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
