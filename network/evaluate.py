"""Score an exported version on labelled messages, through the same path as serving.

Raw text → :meth:`antispam.text.Segmenter.tokenize` → that version's own vectors
(:func:`antispam.versions.load_assets`) → the SavedModel's ``serving_default`` signature loaded
with ``tf.saved_model.load``. Nothing from the trainer is used, so the figures are what the
service would answer for these texts. Usable as a library by the retrain job.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from antispam import versions
from antispam.data import Sample
from antispam.network.metrics import binary_scores
from antispam.text import Segmenter, default_segmenter


@dataclass
class LoadedVersion:
    name: str
    assets: versions.VersionAssets
    loaded: Any  # keeps the signature's variables alive
    signature: Any

    @property
    def version(self) -> int:
        return self.assets.version

    def spam_probability(self, texts: Sequence[str], segmenter: Segmenter | None = None,
                         batch_size: int = 256) -> np.ndarray:
        """Each raw text's spam probability, its windows folded exactly as the service folds them."""
        segmenter = segmenter or default_segmenter()
        tokens = [segmenter.tokenize(text) for text in texts]
        featurizer = self.assets.featurizer
        parts = []
        for i in range(0, len(tokens), batch_size):
            rows, plan = featurizer.featurize(tokens[i:i + batch_size])
            parts.append(plan.fold(self.call(rows)))
        return np.concatenate(parts) if parts else np.zeros(0, np.float64)

    def call(self, inputs: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = self.signature(**{versions.INPUT_KEY: tf.constant(inputs, dtype=tf.float32)})
        return out[versions.PROBABILITIES_KEY].numpy()


def load_version(model_dir: str | os.PathLike[str], version: int | None = None) -> LoadedVersion:
    """Load ``version`` (default: the newest complete one) of the model in ``model_dir``."""
    import tensorflow as tf

    model_dir = Path(model_dir)
    if version is None:
        version = versions.latest_version(model_dir)
        if version is None:
            raise versions.VersionError(f"no complete model version under {model_dir}")
    elif version not in versions.list_versions(model_dir):
        available = versions.list_versions(model_dir)
        raise versions.VersionError(f"{model_dir} has no complete version {version} "
                                    f"(available: {available or 'none'})")
    assets = versions.load_assets(model_dir, version)
    loaded = tf.saved_model.load(str(assets.path))
    if versions.SIGNATURE not in loaded.signatures:
        raise versions.VersionError(f"{assets.path} has no {versions.SIGNATURE!r} signature")
    return LoadedVersion(model_dir.name, assets, loaded, loaded.signatures[versions.SIGNATURE])


def evaluate_version(model_dir: str | os.PathLike[str], version: int | None, samples: Sequence[Sample],
                     thresholds: Sequence[float] = (0.5, 0.9), segmenter: Segmenter | None = None
                     ) -> dict[str, Any]:
    """Accuracy, spam precision/recall/F1, ROC-AUC, counts, confusion and per-threshold scores.

    ``thresholds`` are the service's review and block thresholds on ``spam_probability``.
    """
    if not samples:
        raise ValueError("nothing to evaluate: no labelled messages given")
    started = time.perf_counter()
    loaded = load_version(model_dir, version)
    probs = loaded.spam_probability([s.text for s in samples], segmenter)
    result = binary_scores([s.label for s in samples], probs, thresholds)
    result["model"] = {"name": loaded.name, "version": loaded.version, "path": str(loaded.assets.path)}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def measure_latency(model_dir: str | os.PathLike[str], version: int | None, texts: Sequence[str],
                    batch_sizes: Sequence[int] = (1, 64), repeats: int = 200,
                    segmenter: Segmenter | None = None) -> dict[str, Any]:
    """In-process latency of the signature alone and of the whole text → probability path.

    ``signature``: one call on an already featurized batch (what TF Serving adds per request).
    ``pipeline``: tokenize + featurize + signature (what the embedded backend adds). Times are
    milliseconds per call, measured after a few untimed warm-up calls.
    """
    if not texts:
        raise ValueError("latency needs some texts")
    segmenter = segmenter or default_segmenter()
    loaded = load_version(model_dir, version)
    texts = list(texts)
    result: dict[str, Any] = {"model": {"name": loaded.name, "version": loaded.version},
                              "repeats": repeats, "signature": {}, "pipeline": {}}
    for size in batch_sizes:
        batch = [texts[i % len(texts)] for i in range(size)]
        inputs, _plan = loaded.assets.featurizer.featurize([segmenter.tokenize(t) for t in batch])
        for _ in range(5):
            loaded.call(inputs)
        # _timed calls the lambdas right away, within this iteration.
        result["signature"][f"batch_{size}"] = _timed(lambda: loaded.call(inputs), repeats)  # noqa: B023
        result["pipeline"][f"batch_{size}"] = _timed(
            lambda: loaded.spam_probability(batch, segmenter, batch_size=size), repeats)  # noqa: B023
    result["size_bytes"] = sum(f.stat().st_size for f in loaded.assets.path.rglob("*") if f.is_file())
    return result


def _timed(fn: Any, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    times.sort()
    return {
        "mean_ms": round(statistics.fmean(times), 3),
        "p50_ms": round(times[len(times) // 2], 3),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 3),
    }
