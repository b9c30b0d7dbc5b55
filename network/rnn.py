"""The recurrent classifier: a bidirectional masked LSTM over the ``[20, 200]`` tensor.

TensorLayer 2.2.5's own ``RNN`` layer cannot be exported (see :class:`MaskedRNN` for why), so
both directions are :class:`MaskedRNN` layers: the forward one ends on the last real token, the
backward one on the first, and padding carries their state unchanged. Their final states,
concatenated, feed dropout and the two-logit output (column 0 = spam).
"""

from __future__ import annotations

import tensorlayer as tl

from antispam.features import DIM, MAX_LEN
from antispam.network.layers import MaskedRNN, PaddingMask

UNITS = 128


def build_model(units: int = UNITS, cell: str = "lstm", dropout: float = 0.5,
                name: str | None = None) -> tl.models.Model:
    inputs = tl.layers.Input([None, MAX_LEN, DIM], name="inputs")
    mask = PaddingMask(name="mask")(inputs)
    forward = MaskedRNN(units, cell=cell, in_channels=DIM, name="forward")([inputs, mask])
    backward = MaskedRNN(units, cell=cell, reverse=True, in_channels=DIM, name="backward")([inputs, mask])
    features = tl.layers.Concat(concat_dim=-1, name="concat")([forward, backward])
    features = tl.layers.Dropout(keep=1.0 - dropout, name="dropout")(features)
    logits = tl.layers.Dense(n_units=2, in_channels=2 * units, name="logits")(features)
    return tl.models.Model(inputs=inputs, outputs=logits, name=name)
