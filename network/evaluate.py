"""Score an exported version on labelled messages, through the same path as serving.

Raw text → :meth:`antispam.text.Segmenter.tokenize` → that version's own vectors and windows
→ the SavedModel's ``serving_default`` signature → fold, all through
:func:`antispam.versions.load_version` (the loader the in-process backend uses; ``load_version``
here is that function). Nothing from the trainer is used, so the figures are what the service
would answer for these texts. Usable as a library by the retrain job, which scores a staged
version that is not published yet with :func:`score_version`.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Sequence

from antispam.data import Sample
from antispam.network.metrics import binary_scores
from antispam.text import Segmenter, default_segmenter
from antispam.versions import LoadedVersion, load_version


def evaluate_version(model_dir: str | os.PathLike[str], version: int | None, samples: Sequence[Sample],
                     thresholds: Sequence[float] = (0.5, 0.9), segmenter: Segmenter | None = None
                     ) -> dict[str, Any]:
    """Accuracy, spam precision/recall/F1, ROC-AUC, counts, confusion and per-threshold scores.

    ``thresholds`` are the service's review and block thresholds on ``spam_probability``.
    """
    if not samples:
        raise ValueError("nothing to evaluate: no labelled messages given")
    started = time.perf_counter()
    result = score_version(load_version(model_dir, version), samples, thresholds, segmenter)
    result["seconds"] = round(time.perf_counter() - started, 2)  # loading included
    return result


def score_version(loaded: LoadedVersion, samples: Sequence[Sample], thresholds: Sequence[float] = (0.5, 0.9),
                  segmenter: Segmenter | None = None) -> dict[str, Any]:
    """:func:`evaluate_version` for a version already loaded (published or staged)."""
    if not samples:
        raise ValueError("nothing to evaluate: no labelled messages given")
    started = time.perf_counter()
    probs = loaded.spam_probability([s.text for s in samples], segmenter)
    result = binary_scores([s.label for s in samples], probs, thresholds)
    result["model"] = {"name": loaded.name, "version": loaded.version, "path": str(loaded.path)}
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
    result["size_bytes"] = sum(f.stat().st_size for f in loaded.path.rglob("*") if f.is_file())
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
