"""The neural bag-of-words baseline: mean of the real tokens' vectors, then an MLP.

It reads the same ``[n, 20, 200]`` tensor as the CNN and RNN, so all three share one serving
signature; padding rows are left out of the mean (:class:`MaskedMean`). Word order is ignored,
which is what makes it a baseline: the gap to the CNN/RNN is what order and phrases are worth.
"""

from __future__ import annotations

import tensorlayer as tl

from antispam.features import DIM, MAX_LEN
from antispam.network.layers import MaskedMean, PaddingMask

HIDDEN = 256


def build_model(hidden: int = HIDDEN, dropout: float = 0.5, name: str | None = None) -> tl.models.Model:
    inputs = tl.layers.Input([None, MAX_LEN, DIM], name="inputs")
    mask = PaddingMask(name="mask")(inputs)
    mean = MaskedMean(name="mean")([inputs, mask])
    hidden_layer = tl.layers.Dense(n_units=hidden, act="relu", in_channels=DIM, name="hidden")(mean)
    hidden_layer = tl.layers.Dropout(keep=1.0 - dropout, name="dropout")(hidden_layer)
    logits = tl.layers.Dense(n_units=2, in_channels=hidden, name="logits")(hidden_layer)
    return tl.models.Model(inputs=inputs, outputs=logits, name=name)
