"""The raw pipeline limit: what one process can do with no HTTP, no queue and no event loop.

The service can never beat this; the bench reports its throughput as a fraction of it, so a slow
number is read against what the pipeline itself costs. Three stages, each timed on real texts:

(a) text: :meth:`antispam.text.Segmenter.tokenize` (normalize + the tokenizer the service uses,
    ``Segmenter().engine``), one message at a time; plain jieba (``Segmenter("jieba")``) is timed
    in the same passes, interleaved, as ``text_jieba_us`` (the before/after of the tokenizer);
(b) featurize: the version's :class:`antispam.features.Featurizer` (``featurize``: every
    message's 20-token windows as rows, as the service builds them), in batches of ``batch``
    messages;
(c) model: the version's ``serving_default`` signature, loaded by
    :func:`antispam.versions.load_version` as the in-process backend loads it, on all the rows
    of full batches of ``batch`` messages, then ``plan.fold`` of the rows' scores into the
    messages' (a message costs as many rows as it has windows, ``rows_per_message`` on average).

Every stage's figure is a **mean** per message (a pass's total time / its messages; the median
of ``repeats`` passes, so a neighbour's burst is not counted), because the service's CPU per
message, which the bench divides by it, is a mean over the same texts. Until schema
``antispam-bench/3`` these were medians per message, which under-state a mean: message lengths
are skewed (the text stage's median was 60 µs where its mean was 91).

The implied limit is 1e6 / (a + b + c) messages/s; an end-to-end loop over the same texts
(tokenize, featurize, model, batch after batch) is measured too, as a check on the sum.
TensorFlow uses its default thread pools, as the in-process backend does.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from antispam import versions
from antispam.bench.stats import median
from antispam.errors import UserError


@dataclass
class PipelineLimit:
    model_dir: str
    version: int
    messages: int  # texts timed in (a)
    batch: int  # messages per batch
    rows_per_message: float  # model rows (windows) per message, over all the texts
    text_us: float  # mean per message (median of passes), normalize + the served tokenizer
    featurize_us: float  # mean per message, measured per batch
    model_us: float  # mean per message (all its rows, and the fold), measured per batch
    total_us: float
    implied_messages_per_s: float
    end_to_end_messages_per_s: float
    model_batch_ms: float  # median time of one full batch: model call on its rows + fold
    model_batch_rows: float  # median rows in one full batch
    windowing: dict[str, Any]  # the version's window settings (stride, cap, aggregation, ...)
    tokenizer: str  # Segmenter().engine: "rjieba+jieba" or "jieba"
    text_jieba_us: float  # (a) with plain jieba, timed in the same passes
    end_to_end_cpu_us: float  # CPU time (all threads) per message of the end-to-end loop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def measure(model_dir: str | os.PathLike[str], texts: Sequence[str], *, batch: int = 64,
            version: int | None = None, repeats: int = 3) -> PipelineLimit:
    """Time the three stages on ``texts`` (each stage warmed up first).

    A missing or unusable version is a :class:`antispam.versions.VersionError` (a ``UserError``).
    """
    from antispam.text import Segmenter

    if not texts:
        raise UserError("no texts to measure the pipeline with")
    loaded = versions.load_version(model_dir, version)
    segmenter = Segmenter()

    # (a) text pipeline, one message at a time, after one warm pass; the served tokenizer and
    # plain jieba alternate pass by pass, so a neighbour's load falls on both alike.
    tokens = [segmenter.tokenize(t) for t in texts]
    plain = segmenter if segmenter.engine == "jieba" else Segmenter("jieba")
    plain.tokenize_many(texts[:200])
    text_passes: list[float] = []
    jieba_passes: list[float] = []
    for _ in range(repeats):
        for which, passes in ((segmenter, text_passes), (plain, jieba_passes)):
            t0 = time.perf_counter_ns()
            for text in texts:
                which.tokenize(text)
            passes.append((time.perf_counter_ns() - t0) / 1000.0 / len(texts))

    # (b) featurizer, per batch: windows of every message, as the service builds them.
    featurizer = loaded.featurizer
    batches = _chunks(tokens, batch)
    featurize_passes = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for chunk in batches:
            featurizer.featurize(chunk)
        featurize_passes.append((time.perf_counter_ns() - t0) / 1000.0 / len(tokens))
    rows_total = sum(len(featurizer.plan(chunk).ids) for chunk in batches)

    def score(rows: Any, plan: Any) -> Any:
        return plan.fold(loaded.call(rows))

    # (c) model on the rows of full batches of messages (then the fold), after a few warm-up calls.
    full = [featurizer.featurize(c) for c in batches if len(c) == batch]
    if not full:  # fewer texts than one batch: repeat them to fill one
        filled = (list(tokens) * (batch // len(tokens) + 1))[:batch]
        full = [featurizer.featurize(filled)]
    for rows, plan in full[:3]:
        score(rows, plan)
    model_times = []
    model_passes = []
    for _ in range(repeats):
        t_pass = time.perf_counter_ns()
        for rows, plan in full:
            t0 = time.perf_counter_ns()
            score(rows, plan)
            model_times.append((time.perf_counter_ns() - t0) / 1000.0)
        model_passes.append((time.perf_counter_ns() - t_pass) / 1000.0 / (len(full) * batch))

    # End to end, as one process would serve them: tokenize, featurize, model, fold, batch by batch;
    # its CPU time too (all threads of this process: TensorFlow's pools run the model on several
    # cores, so the stages' wall time under-states what they cost in CPU).
    started, cpu_started = time.perf_counter(), time.process_time()
    for chunk in _chunks(list(texts), batch):
        score(*featurizer.featurize([segmenter.tokenize(t) for t in chunk]))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    text_us, featurize_us, model_us = median(text_passes), median(featurize_passes), median(model_passes)
    total = text_us + featurize_us + model_us
    return PipelineLimit(
        model_dir=str(Path(model_dir)), version=loaded.version, messages=len(texts), batch=batch,
        rows_per_message=rows_total / len(texts),
        text_us=text_us, featurize_us=featurize_us, model_us=model_us, total_us=total,
        implied_messages_per_s=1e6 / total, end_to_end_messages_per_s=len(texts) / elapsed,
        model_batch_ms=median(model_times) / 1000.0,
        model_batch_rows=median([float(len(plan.ids)) for _rows, plan in full]),
        windowing=featurizer.windowing.to_preprocessing(),
        tokenizer=segmenter.engine, text_jieba_us=median(jieba_passes),
        end_to_end_cpu_us=1e6 * cpu / len(texts),
    )
