"""Export a trained classifier as a self-contained SavedModel version (docs/contracts.md#version-layout).

A version folder holds everything needed to score raw text with it: the graph and weights, and
in ``assets.extra/`` the word vectors it was trained with, the preprocessing settings, TF
Serving warmup records and ``metrics.json``. :func:`stage_version` builds it in a hidden staging
folder beside the versions and checks it (no op a stock TF Serving build lacks,
:mod:`antispam.network.servable`; reloaded as the service loads it and compared with the
trainer's own predictions); the caller then renames it into place with
:func:`antispam.versions.publish` or discards it (the retrain job evaluates it in between).
:func:`export_version` (``antispam train``) does both. On any failure the staging folder is
removed, so a reader never sees a half-written version.

Why a ``tf.Module`` around the TensorLayer model: TensorLayer 2.2.5 models are not trackable
objects, so ``tf.saved_model.save`` would not find their variables. The module holds
``model.all_weights`` (so they are saved) and a ``tf.function`` with an explicit input
signature, traced once with the model in eval mode (dropout off), which is what TF Serving and
the in-process backend call. The networks have no Python control flow on tensor values (the
recurrence is ``tf.scan``), so every ``tf.function`` here and in the trainer is traced with
``autograph=False``: plain tracing, no source-code rewriting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from antispam import versions
from antispam.atomic import atomic_write_json
from antispam.calibration import Calibration
from antispam.features import DIM, MAX_LEN, WordVectors
from antispam.network.servable import unservable_ops
from antispam.network.train import TrainedClassifier, prepare_vectors, vectors_fingerprint
from antispam.network.warmup import write_warmup
from antispam.operating_points import OperatingPoints
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)


class ExportError(Exception):
    """The staged version does not behave like the trained model; nothing was published."""


def serving_module(model: Any) -> Any:
    """Wrap a TensorLayer model in a ``tf.Module`` whose ``serve`` is the serving signature."""
    import tensorflow as tf

    class ServingModule(tf.Module):
        def __init__(self, network: Any) -> None:
            super().__init__(name="antispam_classifier")
            network.eval()
            self.network_weights = list(network.all_weights)
            self._network = network

        @tf.function(input_signature=[
            tf.TensorSpec([None, MAX_LEN, DIM], tf.float32, name=versions.INPUT_KEY)], autograph=False)
        def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            probabilities = tf.nn.softmax(self._network(inputs), axis=-1)
            return {
                versions.PROBABILITIES_KEY: probabilities,
                versions.CLASSES_KEY: tf.argmax(probabilities, axis=-1, output_type=tf.int64),
            }

    return ServingModule(model)


def stage_version(trained: TrainedClassifier, vectors: WordVectors, model_dir: str | os.PathLike[str],
                  warmup_texts: Sequence[str], metrics: dict[str, Any] | None = None, *,
                  model_name: str | None = None, segmenter: Segmenter | None = None,
                  prefix: str = versions.STAGING_PREFIX,
                  decision: tuple[Calibration, OperatingPoints] | None = None) -> versions.StagedVersion:
    """Build one version in a hidden staging folder of ``model_dir`` and check it; publish nothing.

    ``vectors`` are the word vectors given to :func:`~antispam.network.train.train_classifier`;
    they are checked against the model, and the version ships ``trained.vectors`` (those
    vectors as the network was trained with them: fine-tuned, vocabulary extended), because
    those are what its weights expect. ``metrics`` is merged over the trainer's own summary in
    ``metrics.json`` (the retrain job adds its feedback counts there). ``model_name`` (default:
    the folder's name) goes into the warmup requests' ``model_spec.name``. ``prefix`` names the
    staging folder (the retrain job uses :data:`~antispam.versions.RETRAIN_STAGING_PREFIX`, so
    its own leftovers can be told apart). ``decision`` (calibration, operating points; see
    :func:`antispam.network.decision.fit_version_decision`) goes into ``preprocessing.json`` beside
    the windowing record; without it the version is uncalibrated and served at the fixed thresholds.

    The caller publishes the result (:func:`antispam.versions.publish`) or discards it. If
    building or checking fails, the staging folder is removed and the error raised.
    """
    import tensorflow as tf

    if vectors_fingerprint(prepare_vectors(vectors)) != trained.source_fingerprint:
        raise ValueError("export needs the word vectors the model was trained with")
    prepared = trained.vectors
    model_dir = Path(model_dir)
    name = model_name or model_dir.name
    segmenter = segmenter or default_segmenter()
    staged = versions.staging_dir(model_dir, prefix)
    try:
        module = serving_module(trained.model)
        tf.saved_model.save(module, str(staged), signatures={versions.SIGNATURE: module.serve})
        unservable = unservable_ops(staged)
        if unservable:
            raise ExportError(f"the graph has ops a stock TF Serving build cannot run: {unservable}")
        assets = staged / versions.ASSETS_DIR
        prepared.save(assets)
        windowing = trained.settings.windowing()
        calibration, points = decision if decision is not None else (None, None)
        atomic_write_json(assets / versions.PREPROCESSING_FILE,
                          versions.preprocessing_settings(windowing, calibration, points))
        records = write_warmup(assets / versions.WARMUP_FILE, name, trained.featurizer, warmup_texts,
                               segmenter)
        payload = {
            **trained.summary(),
            "warmup_records": records,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "calibration": calibration.to_record() if calibration is not None else None,
            "operating_points": points.to_record() if points is not None else None,
            **(metrics or {}),
        }
        atomic_write_json(assets / versions.METRICS_FILE, payload)
        loaded = check_staged(staged, trained, warmup_texts, segmenter, name=name)
    except BaseException:
        versions.discard(staged)
        raise
    return versions.StagedVersion(staged, model_dir, name, loaded)


def export_version(trained: TrainedClassifier, vectors: WordVectors, model_dir: str | os.PathLike[str],
                   warmup_texts: Sequence[str], metrics: dict[str, Any] | None = None, *,
                   model_name: str | None = None, segmenter: Segmenter | None = None,
                   decision: tuple[Calibration, OperatingPoints] | None = None) -> int:
    """Stage, check and atomically publish one version; return its number (``antispam train``).

    :func:`stage_version` then :func:`antispam.versions.publish`; the arguments are
    :func:`stage_version`'s.
    """
    staged = stage_version(trained, vectors, model_dir, warmup_texts, metrics, model_name=model_name,
                           segmenter=segmenter, decision=decision)
    try:
        version = versions.publish(staged.path, staged.model_dir)
    except BaseException:
        staged.discard()
        raise
    log.info("published %s version %d (%s)", staged.name, version,
             versions.version_dir(staged.model_dir, version))
    return version


def check_staged(staged: Path, trained: TrainedClassifier, texts: Sequence[str],
                 segmenter: Segmenter, *, name: str | None = None) -> versions.LoadedVersion:
    """Reload the staged version as the service will and require the trainer's predictions.

    The staged folder is loaded by :func:`antispam.versions.load_folder` (the loader of the
    service: assets and signature checked), and the rows are built from what it read back from
    disk, so this proves the export carried the right weights and the eval-mode graph, and that
    the vectors and settings saved beside them are the ones the model was trained with. Returns
    the loaded version.
    """
    try:
        loaded = versions.load_folder(staged, 0, name or staged.parent.name)
    except versions.VersionError as exc:
        raise ExportError(f"staged version at {staged} cannot be loaded as the service loads it: {exc}") from exc
    token_lists = [segmenter.tokenize(t) for t in list(texts)[:64]] or [[]]
    inputs, _plan = loaded.featurizer.featurize(token_lists)
    expected_inputs, _ = trained.featurizer.featurize(token_lists)
    if not np.array_equal(inputs, expected_inputs):
        raise ExportError(f"staged version at {staged} builds other rows than the trainer "
                          "(vectors or windowing not saved as trained)")
    outputs = loaded.outputs(inputs)
    got = outputs[versions.PROBABILITIES_KEY]
    expected = trained.predict_proba(inputs)
    if got.shape != expected.shape:
        raise ExportError(f"staged version at {staged} answers shape {got.shape}, "
                          f"the trained model {expected.shape}")
    if not np.allclose(got, expected, atol=1e-5):
        raise ExportError(f"staged version at {staged} disagrees with the trained model "
                          f"(largest difference {np.max(np.abs(got - expected)):.3g})")
    classes = outputs[versions.CLASSES_KEY]
    if classes.dtype != np.int64 or not np.array_equal(classes, np.argmax(got, axis=1)):
        raise ExportError("staged version's classes output is not the argmax of its probabilities")
    return loaded


def version_size_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a version folder (graph, weights and assets)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
