"""``antispam data``: fetch or locate the corpus, de-duplicate it, record the split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from antispam.config import Paths, add_arguments

PATH_FIELDS = ("data", "data_dir")


class DeprecatedAlias(argparse.Action):
    """``--source``: still sets ``--data``, with a one-line warning on stderr."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use --data", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch or locate the corpus and record the train/validation/test split",
        description="Locate the corpus (--data, $ANTISPAM_DATA, or a verified download of the "
        "public file into --data-dir), de-duplicate it, split it (seeded, stratified) and write "
        "the split manifest to DATA_DIR/split.json. --data and --data-dir also read the "
        "environment variable shown in their help; a flag wins over the variable.",
    )
    add_arguments(p, Paths, only=PATH_FIELDS)
    p.add_argument("--source", dest="data", action=DeprecatedAlias, metavar="DATA",
                   help="deprecated spelling of --data")
    p.add_argument("--url", help="download URL override (default: the public tensorlayer file)")
    p.add_argument("--sha256", help="expected sha256 of --url")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam import data
    from antispam.atomic import atomic_write_json
    from antispam.config import resolve

    paths = resolve(Paths, args, only=PATH_FIELDS)
    kwargs = {}
    if args.url:
        kwargs = {"url": args.url, "sha256": args.sha256 or ""}
    path = data.locate(paths.data, paths.data_dir, **kwargs)
    kept, stats = data.dedupe(data.read_corpus(path))
    split = data.split(kept)
    split.stats = stats
    manifest = {"source": str(path), **split.manifest()}
    if path.is_file():
        manifest["source_sha256"] = data.sha256_file(path)
    atomic_write_json(Path(paths.data_dir) / "split.json", manifest)
    print(json.dumps(manifest, ensure_ascii=False, indent=2))
    return 0
