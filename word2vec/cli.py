"""``antispam train word2vec``: flags and the command; routed by :mod:`antispam.commands.train`.

Only argparse and the settings dataclass are imported here: ``antispam --help`` must stay
instant, and jieba/TensorFlow/TensorLayer load only when the command runs.
"""

from __future__ import annotations

import argparse
import json

from antispam import config
from antispam.word2vec.train import Word2VecSettings

PATH_FIELDS = ("data", "data_dir", "word2vec")
FLAG_FIELDS = ("dim", "min_count", "max_vocab", "window", "negatives", "batch_size", "epochs",
               "learning_rate", "subsample", "seed", "neighbours", "chars")


def add_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    parser.description = (
        "Train skip-gram word vectors (TensorLayer Word2vecEmbedding, NCE loss) on the tokens of "
        "the training split, then write vocab.txt, vectors.npy and report.json into --out. "
        "Always retrains; `antispam train cnn` reuses existing vectors instead. Every flag but "
        "--no-progress also reads the environment variable shown in its help; a flag wins.")
    config.add_arguments(parser, config.Paths, only=PATH_FIELDS, flags={"word2vec": "--out"})
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (logs, CI)")
    config.add_arguments(parser, Word2VecSettings, only=FLAG_FIELDS)


def settings_from_args(args: argparse.Namespace) -> Word2VecSettings:
    from antispam.word2vec.train import Word2VecError

    try:
        return config.from_args(Word2VecSettings, args)
    except ValueError as exc:  # a bad value, from a flag or an ANTISPAM_W2V_* variable
        raise Word2VecError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from antispam.word2vec.train import train_and_save

    paths = config.resolve(config.Paths, args, only=PATH_FIELDS)
    settings = settings_from_args(args)
    _, report = train_and_save(paths.data, paths.word2vec, settings, progress=args.progress,
                               data_dir=paths.data_dir)
    print(format_report(report, paths.word2vec))
    return 0


def format_report(report: dict, out_dir: str) -> str:
    """A short human summary, then the full report as JSON."""
    lines = [
        f"word2vec: {report['vocabulary_size']} words x {report['settings']['dim']} dims -> {out_dir}",
        f"  {report['messages']} messages, {report['tokens']} tokens "
        f"({report['unk_tokens']} as UNK), {report['pairs']} pairs in {report['steps']} steps "
        f"over {report['epochs']} epochs",
        f"  final loss {report['final_loss']}; training {report['train_seconds']} s, "
        f"total {report.get('wall_seconds', report['train_seconds'])} s",
    ]
    for word, neighbours in report["neighbours"].items():
        shown = ", ".join(f"{other} {sim:.2f}" for other, sim in neighbours) or "(not in vocabulary)"
        lines.append(f"  {word}: {shown}")
    return "\n".join(lines) + "\n" + json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True)
