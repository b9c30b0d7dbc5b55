"""``antispam evaluate``: score an exported model version (and/or the TF-IDF baselines) as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PATH_FIELDS = ("data", "data_dir")
THRESHOLDS = ("review_threshold", "block_threshold")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from antispam.config import Paths, ServeConfig, add_arguments

    p = sub.add_parser(
        "evaluate",
        help="score a model version on labelled messages and print JSON",
        description="Run an exported version on a corpus in the public layout through the same "
        "pipeline as serving (normalize, jieba, the version's own vectors, its SavedModel "
        "signature) and print accuracy, precision/recall/F1 for spam, ROC-AUC, counts, the "
        "confusion matrix and the scores at the review and block thresholds. By default only "
        "the test split of the corpus is scored (the messages no model was trained or selected "
        "on); --all scores every message, for a corpus that was not used in training. For every "
        "model it also prints the decision report (issue 20): at the version's operating points "
        "(or the thresholds given), precision and recall at block and at review, F1 at review, "
        "the share of ordinary messages flagged and blocked, the calibration error, the held-out "
        "everyday and joined-text rates, ads behind ordinary text and the other robustness "
        "variants, each with its count; one table on stderr, the same names under 'decision' "
        "in the JSON. It is always taken on the test split and the variants built from it.",
    )
    p.add_argument("--model", metavar="DIR", action="append", default=[],
                   help="model folder, e.g. models/cnn; repeat to compare several in one run")
    p.add_argument("--version", type=int,
                   help="version number (default: the newest; only with a single --model)")
    add_arguments(p, Paths, only=PATH_FIELDS)
    p.add_argument("--all", action="store_true",
                   help="score every (de-duplicated) message of the corpus, not only its test split")
    p.add_argument("--baselines", action="store_true",
                   help="also train and score the TF-IDF + logistic regression baselines on the "
                   "corpus' split (needs scikit-learn)")
    p.add_argument("--latency", action="store_true",
                   help="also time the version in-process: 1- and 64-message calls")
    p.add_argument("--latency-repeats", type=int, default=200, metavar="N",
                   help="timed calls per latency figure (default 200)")
    p.add_argument("--robustness", action="store_true",
                   help="also score evasion variants built from the test split: ordinary sentences "
                   "before/after spam, spaced characters, full-width and circled digits, emoji, "
                   "traditional characters, and joined pass messages")
    add_arguments(p, ServeConfig, only=THRESHOLDS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antispam.network import quiet_libraries

    quiet_libraries(getattr(args, "verbose", False))
    from antispam import data, versions
    from antispam.config import Paths, ServeConfig, resolve
    from antispam.errors import UserError

    if not args.model and not args.baselines:
        raise UserError("nothing to evaluate: give --model DIR and/or --baselines")
    if args.latency_repeats < 1:
        raise UserError("--latency-repeats must be at least 1")
    if args.version is not None and len(args.model) != 1:
        raise UserError("--version needs exactly one --model")
    paths = resolve(Paths, args, only=PATH_FIELDS)
    config = resolve(ServeConfig, args, only=THRESHOLDS)
    from antispam.operating_points import check_thresholds, resolve_thresholds

    given = (config.review_threshold, config.block_threshold)
    problem = check_thresholds(*given)
    if problem:
        raise UserError(f"thresholds: {problem}")

    path = data.locate(paths.data, paths.data_dir)
    kept, stats = data.dedupe(data.read_corpus(path))
    split = data.split(kept)
    split.stats = stats
    samples = kept if args.all else split.test
    output: dict[str, Any] = {
        "data": {"source": str(path), "scope": "all" if args.all else "test split", "count": len(samples)},
    }
    summary: dict[str, dict[str, Any]] = {}
    if args.model:
        from antispam import everyday
        from antispam.network.decision import decision_report, format_reports, gate_set
        from antispam.network.evaluate import load_version, measure_latency, score_version
        from antispam.network.robustness import format_report, robustness_report

        output["models"] = []
        reports = []
        gate_texts = gate_set(split.test)
        for model_dir in args.model:
            try:
                loaded = load_version(model_dir, args.version)
                report = decision_report(loaded, gate_texts, given)
                reports.append(report)
                thresholds = (report["thresholds"]["review"], report["thresholds"]["block"])
                entry: dict[str, Any] = {"evaluation": score_version(loaded, samples, thresholds),
                                         "decision": report}
                if args.latency:
                    entry["latency"] = measure_latency(model_dir, args.version,
                                                       [s.text for s in samples[:256]],
                                                       repeats=args.latency_repeats)
                if args.robustness:
                    # The version evaluate_version resolved, so both figures describe the same one
                    # even if a newer version lands in between. Variants always come from the
                    # test split (even with --all): they must hold no training message.
                    scored = entry["evaluation"]["model"]
                    entry["robustness"] = robustness_report(
                        loaded.spam_probability, split.test, threshold=thresholds[0],
                        everyday=[row.text for row in everyday.held_out_part()])
                    print(f"{scored['name']} v{scored['version']}\n"
                          f"{format_report(entry['robustness'])}\n", file=sys.stderr)
            except versions.VersionError as exc:
                raise UserError(str(exc)) from exc
            output["models"].append(entry)
            model = entry["evaluation"]["model"]
            summary[f"{model['name']} v{model['version']}"] = _headline(entry["evaluation"])
        print(format_reports(reports) + "\n", file=sys.stderr)
    if args.baselines:
        from antispam.network.baselines import tfidf_baselines

        output["baselines"] = tfidf_baselines(split, thresholds=resolve_thresholds(*given, None))
        summary.update({name: _headline(scores) for name, scores in output["baselines"].items()})
    output["summary"] = summary
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return 0


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    """One comparable row per model: the figures the acceptance criteria name."""
    return {key: (round(scores[key], 4) if isinstance(scores[key], float) else scores[key])
            for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "count") if key in scores}
