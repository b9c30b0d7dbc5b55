"""``antispam retrain``: the nightly job (corpus + feedback → new version, published only if no worse).

The work lives in :mod:`antispam.retrain`; this module maps flags and environment variables to
its options (flag > ``ANTISPAM_*`` > default; the model base, feedback store and thresholds are
read as ``antispam serve`` reads them, through :mod:`antispam.config`), prints the outcome
(:func:`format_report`) and returns the exit code. Only argparse and the standard library are
imported at module level.

Exit codes: 0 published (with ``--dry-run``: would publish), 3 the gate refused the new version
(nothing changed), 4 another retrain of the same model is running, 2 bad flags or setup.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from antispam.retrain import RetrainOptions, RetrainResult

DEFAULT_TOLERANCE = 1.0
DEFAULT_KEEP = 5
# Read as `antispam serve` reads them (ServeConfig: the same flags' meaning, env vars and defaults).
SERVICE_SETTINGS = ("model_base", "feedback_db", "review_threshold", "block_threshold",
                    "keys_file", "feedback_min_keys", "feedback_trusted_keys", "feedback_retention_days",
                    "feedback_max_flips", "feedback_max_flips_per_key")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from antispam.config import ServeConfig, add_arguments
    from antispam.network.models import KINDS

    p = sub.add_parser(
        "retrain",
        help="the nightly job: retrain on corpus + feedback, publish only if users would not notice a loss",
        description="Train a new version of MODEL on the corpus' training split plus the feedback "
        "store, fit its calibration and operating points on the validation split, score it and the "
        "version now serving on the same fixed gate set (test split, held-out everyday messages, "
        "robustness variants of the test split, trusted feedback verdicts) through the serving path, "
        "each at its own operating points, and publish it only if it is not worse, beyond the "
        "documented tolerances (scaled by --tolerance), than the better of the serving version and "
        "the best version ever published on block precision, block recall, review recall, the "
        "everyday rate and the joined-text rate, and loses no trusted verdict the serving version "
        "keeps. Prunes old versions and appends one JSON line per run to the promotion log. "
        "Exit codes: 0 published (dry run: would publish), 3 rejected by the gate, "
        "4 another retrain of this model is running, 2 bad flags or setup.",
    )
    p.add_argument("--model", required=True, choices=KINDS, help="which classifier to retrain")
    p.add_argument("--data", metavar="PATH",
                   help="corpus (msglog.tar.gz or folder; default $ANTISPAM_DATA, else a verified download)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="where a downloaded corpus goes (env ANTISPAM_DATA_DIR, default data/)")
    p.add_argument("--model-base", metavar="DIR", default=None,
                   help="folder holding <model>/<version>/ (env ANTISPAM_MODEL_BASE, default models/)")
    p.add_argument("--feedback-db", metavar="PATH", default=None,
                   help="SQLite feedback store written by `antispam serve` (env ANTISPAM_FEEDBACK_DB, "
                   "default feedback.db, as for serve; empty: none; a missing default or env file means no "
                   "feedback yet, a missing --feedback-db is an error)")
    p.add_argument("--no-feedback", action="store_true", help="train on the corpus alone")
    p.add_argument("--word2vec", choices=("reuse", "retrain"), default="reuse",
                   help="reuse the serving version's word vectors (default; trained anyway when no "
                   "version exists) or train new ones on the training texts including feedback")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="scale of the gate's documented per-figure tolerances (default %(default)s; "
                   "0: no loss at all; negative: require an improvement)")
    p.add_argument("--seed", type=int, default=None,
                   help="the classifier's seed (default: the trainer's; a nightly job may vary it)")
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
    add_arguments(p, ServeConfig, only=("review_threshold", "block_threshold", "keys_file",
                                        "feedback_min_keys", "feedback_trusted_keys",
                                        "feedback_retention_days", "feedback_max_flips",
                                        "feedback_max_flips_per_key"))
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RetrainOptions:
    """Flags > environment > defaults, as every command does."""
    import dataclasses

    from antispam.config import ServeConfig, from_args
    from antispam.errors import UserError
    from antispam.retrain import RetrainOptions

    env = os.environ if environ is None else environ
    # Only the variables of the settings retrain shares with the service: a bad value of another
    # ANTISPAM_* variable of `serve` is none of this command's business.
    shared = {f.metadata["env"] for f in dataclasses.fields(ServeConfig) if f.name in SERVICE_SETTINGS}
    try:
        service = from_args(ServeConfig, args, {k: v for k, v in env.items() if k in shared})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    feedback_db: str | None = None if args.no_feedback else (service.feedback_db or None)
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
        model_base=service.model_base,
        feedback_db=feedback_db,
        # A store named by flag must exist; the default or env one may not exist yet.
        feedback_required=feedback_db is not None and args.feedback_db is not None,
        word2vec=args.word2vec,
        tolerance=args.tolerance,
        seed=args.seed,
        keep=args.keep,
        dry_run=args.dry_run,
        log_path=args.log,
        review_threshold=service.review_threshold,
        block_threshold=service.block_threshold,
        classifier=classifier,
        word2vec_settings=word2vec_settings,
        progress=args.progress,
        keys_file=service.keys_file or None,
        feedback_min_keys=service.feedback_min_keys,
        feedback_trusted_keys=tuple(k.strip() for k in service.feedback_trusted_keys.split(",") if k.strip()),
        feedback_retention_days=service.feedback_retention_days,
        feedback_max_flips=service.feedback_max_flips,
        feedback_max_flips_per_key=service.feedback_max_flips_per_key,
    )


def run(args: argparse.Namespace) -> int:
    from antispam import retrain

    options = options_from_args(args)
    result = retrain.run(options)
    print(format_report(result, options.log_file), flush=True)
    return result.exit_code


def format_report(result: RetrainResult, log_file: str | os.PathLike[str]) -> str:
    """The lines ``antispam retrain`` prints: the decision first, then what it rests on."""
    record = result.record
    dry = " (dry run)" if record.dry_run else ""
    if result.published is not None:
        head = f"retrain {record.model}: published version {result.published}"
    elif result.decision == "publish":
        head = f"retrain {record.model}{dry}: would publish"
    else:
        head = f"retrain {record.model}{dry}: REJECTED, nothing published (exit code {result.exit_code})"
    lines = [head, f"  why: {result.reason}"]
    new, old = record.scores.new, record.scores.old
    if new:
        shown = f"  test F1: candidate {new.f1:.4f}"
        if old:
            shown += f", serving version {old.version} {old.f1:.4f}"
        lines.append(shown + f" (accuracy {new.accuracy:.4f}; {new.count} test messages)")
        candidate = (record.reports or {}).get("candidate") or {}
        review = candidate.get("thresholds", {}).get("review", record.thresholds.review)
        block = candidate.get("thresholds", {}).get("block", record.thresholds.block)
        at = {key: new.at_thresholds.get(f"{value:g}") or {} for key, value in (("review", review),
                                                                               ("block", block))
              if value is not None}
        if at.get("review") and at.get("block"):
            where = ("its operating points" if record.thresholds.review is None else "the service's thresholds")
            lines.append(f"  candidate at {where}: review >= {review:g} precision "
                         f"{at['review']['precision']:.4f} recall {at['review']['recall']:.4f}; block >= "
                         f"{block:g} precision {at['block']['precision']:.4f} recall {at['block']['recall']:.4f}")
    if record.gate:
        lines.append("  gate (candidate / serving / best ever, tolerance):")
        for name, row in record.gate["figures"].items():
            shown = " / ".join("n/a" if row[k] is None else f"{row[k]:.4f}" for k in ("candidate", "serving", "best"))
            lines.append(f"    {name}: {shown}  ±{row['tolerance']:g}{'' if row['ok'] else '  WORSE'}")
        regression = record.gate.get("regression", {})
        lines.append(f"    trusted verdicts: {regression.get('count', 0)}, lost by the candidate: "
                     f"{regression.get('flips', 0)}")
    counts, fb = record.data, record.feedback
    if counts:
        lines.append(f"  data: train {counts.train} (corpus {counts.corpus_train}, "
                     f"+{fb.added if fb else 0} feedback, {fb.relabelled_corpus if fb else 0} relabelled), "
                     f"validation {counts.validation}, test {counts.test}")
    if fb and fb.missing:
        lines.append(f"  feedback: none yet (no store at {fb.db})")
    elif fb and fb.db:
        stored = fb.store.get("distinct", fb.distinct)
        lines.append(f"  feedback: {stored} distinct verdicts in {fb.db}: {fb.used} used "
                     f"({fb.added} new texts, {fb.relabelled_corpus} corpus labels "
                     f"corrected), {fb.already_in_corpus} already in the corpus, "
                     f"{fb.held_out} left out as validation/test texts, "
                     f"{record.conflict_count} texts with conflicting labels left out")
        rejected = fb.rejected or {}
        lines.append(f"  feedback trust: {fb.trusted} texts settled by trusted keys, {fb.agreed} by "
                     f"at least {fb.min_keys} agreeing keys; rows rejected: "
                     f"{rejected.get('too_few_keys', 0)} with too few agreeing keys, "
                     f"{rejected.get('conflicting', 0)} in disagreement, "
                     f"{rejected.get('overruled_by_trusted', 0)} overruled by a trusted key"
                     + (f"; {fb.pruned_by_retention} rows past retention deleted"
                        if fb.pruned_by_retention else ""))
        if fb.held_for_approval:
            lines.append(f"  label flips held: {fb.held_for_approval} corpus labels feedback would flip are "
                         "over the cap and wait for a person (antispam feedback approve)")
    lines.append(f"  word vectors: {record.word2vec.origin or record.word2vec.mode}")
    if record.pruned:
        lines.append(f"  pruned versions: {', '.join(map(str, record.pruned))}")
    took = record.seconds
    lines.append(f"  took {took.get('total', 0):.0f} s "
                 f"({', '.join(f'{k} {v:.0f} s' for k, v in took.items() if k != 'total')}); "
                 f"log: {log_file}")
    return "\n".join(lines)
