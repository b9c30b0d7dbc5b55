"""``antispam calibrate``: give an existing version a calibration and operating points (issue 20).

A version trained before issue 20 is served uncalibrated at the fixed thresholds 0.5 / 0.9. This
command fits both on the corpus' validation split (never the test split) through the serving path
and publishes them as the next version: the same weights and vectors, with the record the trainer
now writes. Hot reload picks it up like any new version.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

PATH_FIELDS = ("data", "data_dir")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from antispam.config import Paths, add_arguments

    p = sub.add_parser(
        "calibrate",
        help="fit a version's calibration and operating points on the validation split; publish as the next version",
        description="Fit a calibration map (Platt or isotonic, by cross-validated log loss) and the block "
        "(target precision) and review (target recall) operating points of an exported version on the "
        "corpus' validation split, and publish a copy of it with that record as the next version.")
    p.add_argument("--model", metavar="DIR", required=True, help="model folder, e.g. models/rnn")
    p.add_argument("--version", type=int, help="version to calibrate (default: the newest)")
    p.add_argument("--target-precision", type=float, default=None,
                   help="block precision aimed at (default 0.99)")
    p.add_argument("--target-recall", type=float, default=None, help="review recall aimed at (default 0.95)")
    add_arguments(p, Paths, only=PATH_FIELDS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam.network import quiet_libraries

    quiet_libraries(getattr(args, "verbose", False))
    from antispam import data, versions
    from antispam.config import Paths, resolve
    from antispam.errors import UserError
    from antispam.operating_points import TARGET_BLOCK_PRECISION, TARGET_REVIEW_RECALL

    precision = TARGET_BLOCK_PRECISION if args.target_precision is None else args.target_precision
    recall = TARGET_REVIEW_RECALL if args.target_recall is None else args.target_recall
    for name, value in (("--target-precision", precision), ("--target-recall", recall)):
        if not 0.0 < value <= 1.0:
            raise UserError(f"{name} must be in (0, 1], got {value}")
    paths = resolve(Paths, args, only=PATH_FIELDS)
    split = data.load_split(paths.data, paths.data_dir, progress=False)
    from antispam.network.decision import recalibrate

    try:
        version, calibration, points = recalibrate(args.model, args.version, split.validation,
                                                   target_precision=precision, target_recall=recall)
    except versions.VersionError as exc:
        raise UserError(str(exc)) from exc
    except ValueError as exc:
        raise UserError(f"cannot calibrate: {exc}") from exc
    out: dict[str, Any] = {"model": args.model, "published": version,
                           "calibration": calibration.to_record(), "operating_points": points.to_record()}
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0
