"""``antispam data``: fetch or locate the corpus, de-duplicate it, record the split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch or locate the corpus and record the train/validation/test split",
        description="Locate the corpus (--source, $ANTISPAM_DATA, or a verified download of the "
        "public file into --data-dir), de-duplicate it, split it (seeded, stratified) and write "
        "the split manifest to DATA_DIR/split.json.",
    )
    p.add_argument("--source", help="msglog.tar.gz or an unpacked folder (default: $ANTISPAM_DATA)")
    p.add_argument("--data-dir", default="data", help="where downloads and split.json go (default data/)")
    p.add_argument("--url", help="download URL override (default: the public tensorlayer file)")
    p.add_argument("--sha256", help="expected sha256 of --url")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam import data
    from antispam.atomic import atomic_write_json

    kwargs = {}
    if args.url:
        kwargs = {"url": args.url, "sha256": args.sha256 or ""}
    path = data.locate(args.source, args.data_dir, **kwargs)
    kept, stats = data.dedupe(data.read_corpus(path))
    split = data.split(kept)
    split.stats = stats
    manifest = {"source": str(path), **split.manifest()}
    if path.is_file():
        manifest["source_sha256"] = data.sha256_file(path)
    atomic_write_json(Path(args.data_dir) / "split.json", manifest)
    print(json.dumps(manifest, ensure_ascii=False, indent=2))
    return 0
