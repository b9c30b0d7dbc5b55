"""``antispam retrain``: the nightly job (corpus + feedback → new version, published only if no worse).

The work lives in :mod:`antispam.retrain`; this module maps flags and environment variables to
its options and exit codes. Only argparse and the standard library are imported at module level.

Exit codes: 0 published (with ``--dry-run``: would publish), 3 the gate refused the new version
(nothing changed), 4 another retrain of the same model is running, 2 bad flags or setup.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from antispam.retrain import RetrainOptions

DEFAULT_TOLERANCE = 0.005
DEFAULT_KEEP = 5


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="the nightly job: retrain on corpus + feedback, publish only if F1 does not drop",
        description="Train a new version of MODEL on the corpus' training split plus the feedback "
        "store, score it and the version now serving on the same fixed test split through the "
        "serving path, and publish it only if its F1 is at least the serving version's minus "
        "--tolerance. Prunes old versions and appends one JSON line per run to the promotion log. "
        "Exit codes: 0 published (dry run: would publish), 3 rejected by the gate, "
        "4 another retrain of this model is running, 2 bad flags or setup.",
    )
    p.add_argument("--model", required=True, choices=("cnn", "rnn"), help="which classifier to retrain")
    p.add_argument("--data", metavar="PATH",
                   help="corpus (msglog.tar.gz or folder; default $ANTISPAM_DATA, else a verified download)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="where a downloaded corpus goes (env ANTISPAM_DATA_DIR, default data/)")
    p.add_argument("--model-base", metavar="DIR", default=None,
                   help="folder holding <model>/<version>/ (env ANTISPAM_MODEL_BASE, default models/)")
    p.add_argument("--feedback-db", metavar="PATH", default=None,
                   help="SQLite feedback store written by `antispam serve` (env ANTISPAM_FEEDBACK_DB, "
                   "default feedback.db; a missing default or env file means no feedback yet, a "
                   "missing --feedback-db is an error)")
    p.add_argument("--no-feedback", action="store_true", help="train on the corpus alone")
    p.add_argument("--word2vec", choices=("reuse", "retrain"), default="reuse",
                   help="reuse the serving version's word vectors (default; trained anyway when no "
                   "version exists) or train new ones on the training texts including feedback")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="publish if new F1 >= serving F1 - TOLERANCE (default %(default)s; "
                   "negative: require an improvement)")
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP,
                   help="versions kept after publishing; the newest and the one serving at the "
                   "start are always kept (default %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="train and evaluate, publish and prune nothing; the exit code still tells "
                   "what the gate would decide")
    p.add_argument("--log", metavar="PATH", default=None,
                   help="promotion log, JSON Lines (default MODEL_BASE/MODEL/promotion.jsonl)")
    p.add_argument("--epochs", type=int, default=None, help="most classifier epochs (default: the trainer's)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop classifier training after the epoch that crosses this wall time")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> RetrainOptions:
    """Flags > environment > defaults, as every command does."""
    from antispam.config import from_args
    from antispam.errors import UserError
    from antispam.retrain import RetrainOptions

    env = os.environ if environ is None else environ
    feedback_db: str | None
    required = False
    if args.no_feedback:
        feedback_db = None
    elif args.feedback_db is not None:
        feedback_db, required = args.feedback_db, True
    else:
        feedback_db = env.get("ANTISPAM_FEEDBACK_DB") or "feedback.db"
    classifier = None
    if args.epochs is not None or args.max_seconds is not None:
        from antispam.network.train import ClassifierSettings

        given = {}
        if args.epochs is not None:
            given["epochs"] = args.epochs
        if args.max_seconds is not None:
            given["max_seconds"] = args.max_seconds
        try:
            classifier = ClassifierSettings(**given)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    word2vec_settings = None
    if any(key.startswith("ANTISPAM_W2V_") for key in env):
        from antispam.word2vec.train import Word2VecSettings

        try:
            word2vec_settings = from_args(Word2VecSettings, None, env)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return RetrainOptions(
        model=args.model,
        data=args.data,
        data_dir=args.data_dir or env.get("ANTISPAM_DATA_DIR") or "data",
        model_base=args.model_base or env.get("ANTISPAM_MODEL_BASE") or "models",
        feedback_db=feedback_db,
        feedback_required=required,
        word2vec=args.word2vec,
        tolerance=args.tolerance,
        keep=args.keep,
        dry_run=args.dry_run,
        log_path=args.log,
        classifier=classifier,
        word2vec_settings=word2vec_settings,
        progress=args.progress,
    )


def run(args: argparse.Namespace) -> int:
    from antispam import retrain

    options = options_from_args(args)
    result = retrain.run(options)
    print(retrain.format_report(result, options.log_file), flush=True)
    return result.exit_code
