"""The 1-D convolutional classifier (Kim, 2014) over the ``[20, 200]`` word-vector tensor.

Parallel convolutions of widths 1–3 read words and short phrases ("加 微信", "代开 发票");
each feature map is max-pooled over the real tokens only (:class:`MaskedMaxPool`), so padding
neither adds evidence nor makes short messages look different from long ones. Dropout before
the output layer is the regularizer; the output is two logits, column 0 = spam.
"""

from __future__ import annotations

import tensorlayer as tl

from antispam.features import DIM, MAX_LEN
from antispam.network.layers import MaskedMaxPool, PaddingMask

FILTER_SIZES = (1, 2, 3)
FILTERS = 128


def build_model(filter_sizes: tuple[int, ...] = FILTER_SIZES, filters: int = FILTERS,
                dropout: float = 0.5, name: str | None = None) -> tl.models.Model:
    inputs = tl.layers.Input([None, MAX_LEN, DIM], name="inputs")
    mask = PaddingMask(name="mask")(inputs)
    pooled = []
    for size in filter_sizes:
        conv = tl.layers.Conv1d(n_filter=filters, filter_size=size, stride=1, padding="SAME",
                                act="relu", in_channels=DIM,
                                name=f"conv{size}")(inputs)
        pooled.append(MaskedMaxPool(name=f"pool{size}")([conv, mask]))
    features = tl.layers.Concat(concat_dim=-1, name="concat")(pooled) if len(pooled) > 1 else pooled[0]
    features = tl.layers.Dropout(keep=1.0 - dropout, name="dropout")(features)
    logits = tl.layers.Dense(n_units=2, in_channels=filters * len(filter_sizes), name="logits")(features)
    return tl.models.Model(inputs=inputs, outputs=logits, name=name)
