"""``antispam train cnn|rnn|mlp``: train a classifier, export a version, write its report.

Routed here by :mod:`antispam.commands.train`. Only argparse, the standard library and
:mod:`antispam.config` at module level: TensorFlow, TensorLayer and jieba load inside :func:`run`,
so ``--help`` is instant. Paths and settings follow the one config path (flag > ``ANTISPAM_*`` >
default, docs/contracts.md#cli).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from antispam import config

log = logging.getLogger(__name__)

WARMUP_TEXTS = 64
PATH_FIELDS = ("data", "data_dir", "model_base", "word2vec", "report_dir")


def add_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    """Paths (``config.Paths``), every ``ClassifierSettings`` field, and the command's own flags.

    Each path and setting reads its ``ANTISPAM_*`` variable when the flag is not given.
    """
    from antispam.network.train import ClassifierSettings

    parser.description = (
        f"{(parser.description or '').rstrip('.')}. Loads the split (plus the everyday messages) and the word "
        "vectors from --word2vec, training them there first when they are missing; trains on whole "
        "messages; exports the next version under --model-base/--model-name/; writes the report to "
        "--report-dir. Every path and training setting also reads the environment variable shown "
        "in its help; a flag wins over the variable.")
    config.add_arguments(parser, config.Paths, only=PATH_FIELDS)
    parser.add_argument("--model-name", default=target, help=f"model name (default {target})")
    settings = tuple(f.name for f in dataclasses.fields(ClassifierSettings)
                     if target == "rnn" or f.name != "rnn_cell")
    config.add_arguments(parser, ClassifierSettings, only=settings)
    parser.add_argument("--static-vectors", dest="fine_tune_vectors", action="store_false", default=None,
                        help="the same as --no-fine-tune-vectors")
    parser.add_argument("--warmup-texts", type=int, default=WARMUP_TEXTS,
                        help="training messages used for the TF Serving warmup records "
                        f"(default {WARMUP_TEXTS})")
    parser.add_argument("--baselines", action="store_true",
                        help="also score the TF-IDF + logistic regression baselines on the same split")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")


def paths_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> config.Paths:
    """Flag > ``ANTISPAM_*`` > default for the folders; a bad value is a UserError."""
    return config.resolve(config.Paths, args, environ, only=PATH_FIELDS)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Any:
    """Flag > ``ANTISPAM_TRAIN_*`` > default, validated by ``ClassifierSettings``; UserError if bad."""
    from antispam.network.train import ClassifierSettings

    return config.resolve(ClassifierSettings, args, environ)


def load_vectors(directory: str | os.PathLike[str], data_source: str | None,
                 progress: bool, data_dir: str | os.PathLike[str] = config.Paths.data_dir) -> tuple[Any, str]:
    """The word vectors in ``directory``, training them there first when there are none."""
    from antispam.errors import UserError
    from antispam.features import VECTORS_FILE, VOCAB_FILE, WordVectors

    directory = Path(directory)
    if (directory / VOCAB_FILE).is_file() and (directory / VECTORS_FILE).is_file():
        try:
            return WordVectors.load(directory), "loaded"
        except (OSError, ValueError) as exc:
            raise UserError(f"word vectors in {directory} are unusable: {exc}") from exc
    try:
        from antispam.word2vec.train import ensure_word2vec
    except ImportError as exc:
        raise UserError(f"no word vectors in {directory} and the word2vec trainer is not available "
                        f"({exc}); run 'antispam train word2vec' or pass --word2vec DIR") from exc
    log.info("no word vectors in %s: training them first", directory)
    return ensure_word2vec(data_source, str(directory), progress=progress, data_dir=data_dir), "trained"


def run(args: argparse.Namespace) -> int:
    from antispam.network import quiet_libraries

    quiet_libraries(getattr(args, "verbose", False))
    from antispam.errors import UserError

    kind = args.target
    if args.warmup_texts < 1:
        raise UserError("--warmup-texts must be at least 1")
    paths = paths_from_args(args)  # bad flags and variables fail here, before anything heavy loads
    settings = settings_from_args(args).for_kind(kind)

    from antispam import data, versions
    from antispam.everyday import with_everyday
    from antispam.network.export import ExportError, export_version, version_size_bytes
    from antispam.network.report import write_report
    from antispam.network.train import train_classifier
    from antispam.network.warmup import warmup_texts

    split = with_everyday(data.load_split(paths.data, paths.data_dir, progress=args.progress),
                          settings.everyday_weight)
    vectors, origin = load_vectors(paths.word2vec, paths.data, args.progress, paths.data_dir)
    log.info("%s word vectors: %d words x %d (%s from %s)", kind, len(vectors), vectors.dim, origin,
             paths.word2vec)
    try:
        trained = train_classifier(kind, split, vectors, settings, progress=args.progress)
    except ValueError as exc:
        raise UserError(f"cannot train {kind}: {exc}") from exc

    extra: dict[str, Any] = {"word_vectors": {"source": str(paths.word2vec), "words": len(vectors)}}
    if args.baselines:
        from antispam.network.baselines import tfidf_baselines

        extra["baselines"] = tfidf_baselines(split)
    from antispam.network.decision import fit_version_decision

    decision = fit_version_decision(trained, split.validation)
    model_dir = versions.model_dir(paths.model_base, args.model_name)
    try:
        version = export_version(trained, vectors, model_dir,
                                 warmup_texts(split.train, args.warmup_texts, settings.seed), extra,
                                 model_name=args.model_name, decision=decision)
    except ExportError as exc:
        raise UserError(f"export failed, nothing published: {exc}") from exc
    path = versions.version_dir(model_dir, version)
    summary = {**trained.summary(), **extra, "version": version, "path": str(path),
               "size_bytes": version_size_bytes(path)}
    report_dir = Path(paths.report_dir) / f"{args.model_name}-v{version}"
    written = write_report(report_dir, summary)
    print(json.dumps({
        "model": args.model_name,
        "version": version,
        "path": str(path),
        "size_bytes": summary["size_bytes"],
        "report": {key: str(value) for key, value in written.items()},
        "wall_seconds": summary["wall_seconds"],
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "test": _headline(trained.test),
        "validation": _headline(trained.validation),
        "calibration": decision[0].to_record(),
        "operating_points": decision[1].to_record(),
        **({"baselines": {name: _headline(scores) for name, scores in extra["baselines"].items()}}
           if "baselines" in extra else {}),
    }, ensure_ascii=False, indent=2))
    return 0


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "count")
    return {key: scores[key] for key in keys if key in scores}
