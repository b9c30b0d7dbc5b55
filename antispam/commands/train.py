"""``antispam train word2vec|cnn|rnn|mlp``: train word vectors or a classifier.

The argument definitions and the work live with the trainers (``antispam.word2vec.cli`` and
``antispam.network.cli``); this module only routes, so each trainer owns its own flags.
"""

from __future__ import annotations

import argparse
import importlib

TARGETS = {
    "word2vec": ("antispam.word2vec.cli", "train skip-gram word vectors (TensorLayer, NCE loss)"),
    "cnn": ("antispam.network.cli", "train the 1-D CNN classifier and export a version"),
    "rnn": ("antispam.network.cli", "train the masked-LSTM classifier and export a version"),
    "mlp": ("antispam.network.cli", "train the mean-of-vectors MLP baseline and export a version"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train word2vec or a classifier (cnn, rnn, mlp)",
                       description="Train word vectors or a classifier on the training split.")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for target, (module_name, help_text) in TARGETS.items():
        module = importlib.import_module(module_name)  # ships with the package; TensorFlow loads in run
        tp = targets.add_parser(target, help=help_text, description=help_text)
        module.add_arguments(tp, target)
        tp.set_defaults(run=module.run)
