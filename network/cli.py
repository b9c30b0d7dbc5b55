"""``antispam train cnn|rnn|mlp``: train a classifier, export a version, write its report.

Routed here by :mod:`antispam.commands.train`. Only argparse and the standard library at module
level: TensorFlow, TensorLayer and jieba load inside :func:`run`, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_WORD2VEC = "data/word2vec"
WARMUP_TEXTS = 64

# Flag name -> (ClassifierSettings field, type, help). Defaults are read from the dataclass so
# they are written once.
_SETTINGS_FLAGS = {
    "--epochs": ("epochs", int, "most epochs; early stopping usually ends sooner"),
    "--batch-size": ("batch_size", int, "messages per training step"),
    "--learning-rate": ("learning_rate", float, "Adam learning rate"),
    "--patience": ("patience", int, "epochs without a better validation F1 before stopping"),
    "--plateau-factor": ("plateau_factor", float,
                         "multiply the learning rate by this after an epoch without improvement (1: off)"),
    "--seed": ("seed", int, "seed for initialization, shuffling and dropout"),
    "--dropout": ("dropout", float, "dropout rate before the output layer"),
    "--unknown-rate": ("unknown_rate", float, "share of training tokens replaced by UNK each step"),
    "--max-seconds": ("max_seconds", float, "stop after the epoch that crosses this wall time"),
    "--extend-min-count": ("extend_min_count", int,
                           "give training words seen this often, that word2vec lacks, their own "
                           "tuned vector (0: off)"),
    "--stride": ("stride", int, "tokens between the starts of two 20-token windows of a message"),
    "--cap": ("cap", int, "most windows scored per message (the version records it; serving uses it too)"),
    "--aggregation": ("aggregation", str, "how a message's windows fold into its score: max, noisy_or or mean_odds"),
    "--temperature": ("temperature", float, "mean_odds aggregation: how much a lone window in a long "
                      "text is diluted (higher: more)"),
    "--augment": ("augment", float, "extra training messages (ads with ordinary text around them, "
                  "joined ordinary messages) as a share of the training split (0: off)"),
}


def add_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    from antispam.network.train import ClassifierSettings

    defaults = ClassifierSettings()
    parser.add_argument("--data", metavar="PATH",
                        help="corpus (msglog.tar.gz or folder; default $ANTISPAM_DATA, else download)")
    parser.add_argument("--data-dir", default="data", help="where a downloaded corpus goes (default data/)")
    parser.add_argument("--model-base", default="models",
                        help="folder holding <model-name>/<version>/ (default models/)")
    parser.add_argument("--model-name", default=target, help=f"model name (default {target})")
    parser.add_argument("--word2vec", default=DEFAULT_WORD2VEC, metavar="DIR",
                        help=f"word vectors (vocab.txt, vectors.npy); trained there first when "
                        f"missing (default {DEFAULT_WORD2VEC})")
    parser.add_argument("--report-dir", default="reports",
                        help="training reports go to REPORT_DIR/<name>-v<version>/ (default reports/)")
    for flag, (field, kind, help_text) in _SETTINGS_FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None,
                            help=f"{help_text} (default {getattr(defaults, field)})")
    parser.add_argument("--static-vectors", dest="fine_tune_vectors", action="store_false", default=None,
                        help="keep the word2vec vectors fixed (default: fine-tune them with the "
                        "network; the version ships the vectors it was trained with either way)")
    parser.add_argument("--no-char-backoff", dest="char_backoff", action="store_false", default=None,
                        help="unknown words read as UNK (default: the mean of their known "
                        "characters' vectors)")
    if target == "rnn":
        parser.add_argument("--rnn-cell", dest="rnn_cell", choices=("lstm", "gru"), default=None,
                            help=f"recurrent cell (default {defaults.rnn_cell})")
    parser.add_argument("--warmup-texts", type=int, default=WARMUP_TEXTS,
                        help="training messages used for the TF Serving warmup records "
                        f"(default {WARMUP_TEXTS})")
    parser.add_argument("--baselines", action="store_true",
                        help="also score the TF-IDF + logistic regression baselines on the same split")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")


def settings_from_args(args: argparse.Namespace) -> Any:
    from antispam.network.train import ClassifierSettings

    given = {field: getattr(args, field) for field, _, _ in _SETTINGS_FLAGS.values()
             if getattr(args, field, None) is not None}
    if getattr(args, "rnn_cell", None):
        given["rnn_cell"] = args.rnn_cell
    for flag in ("fine_tune_vectors", "char_backoff"):
        if getattr(args, flag, None) is not None:
            given[flag] = getattr(args, flag)
    return ClassifierSettings(**given)


def load_vectors(directory: str | os.PathLike[str], data_source: str | None,
                 progress: bool) -> tuple[Any, str]:
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
    return ensure_word2vec(data_source, str(directory), progress=progress), "trained"


def run(args: argparse.Namespace) -> int:
    from antispam.network import quiet_libraries

    quiet_libraries(getattr(args, "verbose", False))
    from antispam import data, versions
    from antispam.errors import UserError
    from antispam.network.export import ExportError, export_version, version_size_bytes
    from antispam.network.report import write_report
    from antispam.network.train import train_classifier
    from antispam.network.warmup import warmup_texts

    kind = args.target
    if args.warmup_texts < 1:
        raise UserError("--warmup-texts must be at least 1")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    split = data.load_split(args.data, args.data_dir, progress=args.progress, everyday=True)
    vectors, origin = load_vectors(args.word2vec, args.data, args.progress)
    log.info("%s word vectors: %d words x %d (%s from %s)", kind, len(vectors), vectors.dim, origin,
             args.word2vec)
    try:
        trained = train_classifier(kind, split, vectors, settings, progress=args.progress)
    except ValueError as exc:
        raise UserError(f"cannot train {kind}: {exc}") from exc

    extra: dict[str, Any] = {"word_vectors": {"source": str(args.word2vec), "words": len(vectors)}}
    if args.baselines:
        from antispam.network.baselines import tfidf_baselines

        extra["baselines"] = tfidf_baselines(split)
    model_dir = versions.model_dir(args.model_base, args.model_name)
    try:
        version = export_version(trained, vectors, model_dir,
                                 warmup_texts(split.train, args.warmup_texts, settings.seed), extra,
                                 model_name=args.model_name)
    except ExportError as exc:
        raise UserError(f"export failed, nothing published: {exc}") from exc
    path = versions.version_dir(model_dir, version)
    summary = {**trained.summary(), **extra, "version": version, "path": str(path),
               "size_bytes": version_size_bytes(path)}
    report_dir = Path(args.report_dir) / f"{args.model_name}-v{version}"
    paths = write_report(report_dir, summary)
    print(json.dumps({
        "model": args.model_name,
        "version": version,
        "path": str(path),
        "size_bytes": summary["size_bytes"],
        "report": {key: str(value) for key, value in paths.items()},
        "wall_seconds": summary["wall_seconds"],
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "test": _headline(trained.test),
        "validation": _headline(trained.validation),
        **({"baselines": {name: _headline(scores) for name, scores in extra["baselines"].items()}}
           if "baselines" in extra else {}),
    }, ensure_ascii=False, indent=2))
    return 0


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "count")
    return {key: scores[key] for key in keys if key in scores}
