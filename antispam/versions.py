"""The model-version layout shared by trainer, TF Serving, the service and the retrain job.

``<model_base>/<name>/<version>/`` holds ``saved_model.pb``, ``variables/`` and
``assets.extra/`` (warmup records, this version's word vectors, preprocessing settings and
``metrics.json``). A version folder appears only when complete: it is built in a hidden staging
folder beside it (TF Serving and :func:`list_versions` ignore names that are not integers) and
renamed into place.

One module owns a version's life on disk: where it is (:func:`list_versions`,
:func:`resolve_version`), what it must hold (:func:`read_assets`, :func:`check_signature`),
loading it (:func:`load_version`, :func:`load_folder`: TensorFlow is imported inside them, never
at module level, because the remote frontend imports this module), building and publishing it
(:func:`staging_dir`, :class:`StagedVersion`, :func:`publish`) and removing it
(:func:`prune`, :func:`clean_leftovers`). Every failure is one error type, :class:`VersionError`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from antispam.atomic import atomic_write_json, atomic_write_text, fsync_tree
from antispam.calibration import Calibration
from antispam.errors import UserError
from antispam.features import DIM, FIRST_WINDOW, MAX_LEN, Featurizer, Windowing, WordVectors
from antispam.operating_points import OperatingPoints
from antispam.text import COMPATIBLE_NORMALIZERS, NORMALIZER_VERSION, Segmenter, default_segmenter

ASSETS_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
PREPROCESSING_FILE = "preprocessing.json"
METRICS_FILE = "metrics.json"
SIGNATURE = "serving_default"
INPUT_KEY = "inputs"
PROBABILITIES_KEY = "probabilities"
CLASSES_KEY = "classes"
HIGH_WATER_FILE = ".highest_version"
# Hidden names beside the versions (TF Serving and list_versions ignore them):
STAGING_PREFIX = ".staging-"  # a version being built
RETRAIN_STAGING_PREFIX = ".staging-retrain-"  # one built by the retrain job (a uuid hex never starts "r")
TOMBSTONE_PREFIX = ".deleted-"  # a pruned version being deleted
LEGACY_CANDIDATE_PREFIX = ".candidate-"  # the retrain job's candidate model folder before issue 10


class VersionError(UserError):
    """A version is missing, incomplete, corrupt or built for another pipeline.

    A :class:`~antispam.errors.UserError`, so a command that meets one prints it and exits 2.
    """


def model_dir(model_base: str | os.PathLike[str], name: str) -> Path:
    return Path(model_base) / name


def version_dir(model_dir: str | os.PathLike[str], version: int) -> Path:
    return Path(model_dir) / str(int(version))


def list_versions(model_dir: str | os.PathLike[str]) -> list[int]:
    """Complete versions, ascending: integer-named folders that hold ``saved_model.pb``."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if entry.name.isdigit() and (entry / "saved_model.pb").is_file():
            found.append(int(entry.name))
    return sorted(found)


def latest_version(model_dir: str | os.PathLike[str]) -> int | None:
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def resolve_version(model_dir: str | os.PathLike[str], version: int | None = None) -> int:
    """``version`` if it is complete under ``model_dir``, or the newest complete one."""
    found = list_versions(model_dir)
    if not found:
        raise VersionError(f"no complete model version under {model_dir} (train one, or pass --model-base)")
    if version is None:
        return found[-1]
    if version not in found:
        raise VersionError(f"{model_dir} has no complete version {version} (available: {found})")
    return version


def staging_dir(model_dir: str | os.PathLike[str], prefix: str = STAGING_PREFIX) -> Path:
    """A fresh hidden folder on the same filesystem as the versions, for building one."""
    if not prefix.startswith(STAGING_PREFIX):
        raise ValueError(f"a staging folder's name starts with {STAGING_PREFIX!r}")
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{prefix}{uuid.uuid4().hex}"
    path.mkdir()
    return path


def publish(staged: str | os.PathLike[str], model_dir: str | os.PathLike[str]) -> int:
    """Rename a complete staged version into place under the next free number; return it.

    ``os.rename`` of a folder onto a missing name is atomic on POSIX; if another publisher took
    the number first the rename fails and we try the next one.
    """
    staged, root = Path(staged), Path(model_dir)
    if not (staged / "saved_model.pb").is_file():
        raise VersionError(f"{staged} is not a complete SavedModel (no saved_model.pb)")
    fsync_tree(staged)
    numbers = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    version = max([*numbers, highest_published(root)], default=0) + 1
    while True:
        try:
            os.rename(staged, root / str(version))
        except OSError:
            if (root / str(version)).exists():
                version += 1
                continue
            raise
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if version > highest_published(root):
            atomic_write_text(root / HIGH_WATER_FILE, f"{version}\n")
        return version


def highest_published(model_dir: str | os.PathLike[str]) -> int:
    """The largest number ever published here, even if its folder was deleted since.

    A rollback deletes the newest folder; without this mark the next publish would reuse its
    number, and TF Serving or a frontend that still remembers the old version N could pair it
    with the new one's files.
    """
    try:
        return int((Path(model_dir) / HIGH_WATER_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def discard(path: str | os.PathLike[str]) -> None:
    shutil.rmtree(path, ignore_errors=True)


def prune(model_dir: str | os.PathLike[str], keep: int, protect: Iterable[int | None] = ()) -> list[int]:
    """Delete all but the newest ``keep`` versions, never the newest nor any in ``protect``.

    A version leaves view with one rename to a hidden name (readers see it complete or not at
    all), then its files are removed. Returns the versions removed, ascending.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    root = Path(model_dir)
    present = list_versions(root)
    kept = set(present[-keep:]) | {int(v) for v in protect if v is not None}
    removed = []
    for version in present:
        if version in kept:
            continue
        tomb = root / f"{TOMBSTONE_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(version_dir(root, version), tomb)
        except FileNotFoundError:
            continue  # someone else removed it (an operator rolling back)
        shutil.rmtree(tomb, ignore_errors=True)
        removed.append(version)
    return removed


def clean_leftovers(model_dir: str | os.PathLike[str]) -> list[str]:
    """Remove what dead retrain runs left: their staging folders and pruned versions half deleted.

    Only for the holder of the retrain lock (:mod:`antispam.lock`): no other retrain can be
    using these names then. Plain ``.staging-*`` folders are left alone, since ``antispam
    train`` (which takes no lock) may be building one right now.
    """
    removed: list[str] = []
    root = Path(model_dir)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith(
                (RETRAIN_STAGING_PREFIX, TOMBSTONE_PREFIX, LEGACY_CANDIDATE_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return sorted(removed)


CALIBRATION_KEY = "calibration"
OPERATING_POINTS_KEY = "operating_points"


def preprocessing_settings(windowing: Windowing | None = None, calibration: Calibration | None = None,
                           points: OperatingPoints | None = None) -> dict[str, Any]:
    """What ``preprocessing.json`` records; without ``windowing``, the first-20-tokens layout.

    ``calibration`` and ``points`` (issue 20) sit next to the windowing record: how the folded
    score becomes a probability and where this version's block and review start. A version
    without them is served as before (uncalibrated, the service's fixed thresholds).
    """
    settings: dict[str, Any] = {"max_len": MAX_LEN, "dim": DIM, "normalizer_version": NORMALIZER_VERSION}
    if windowing is not None and windowing != FIRST_WINDOW:
        settings.update(windowing.to_preprocessing())
    if calibration is not None:
        settings[CALIBRATION_KEY] = calibration.to_record()
    if points is not None:
        settings[OPERATING_POINTS_KEY] = points.to_record()
    return settings


@dataclass
class VersionAssets:
    """What the service needs from a version to build its tensors, without TensorFlow."""

    version: int
    path: Path
    vectors: WordVectors
    preprocessing: dict[str, Any]
    metrics: dict[str, Any]
    windowing: Windowing = FIRST_WINDOW
    calibration: Calibration | None = None
    operating_points: OperatingPoints | None = None

    @property
    def featurizer(self) -> Featurizer:
        return Featurizer(self.vectors, self.windowing, self.calibration)

    def decision_status(self) -> dict[str, Any]:
        """For ``GET /models``: whether this version's scores are calibrated, and its points."""
        return {"calibrated": self.calibration is not None,
                "calibration": ({"method": self.calibration.method}
                                if self.calibration is not None else None),
                "operating_points": (self.operating_points.to_record()
                                     if self.operating_points is not None else None)}


def load_assets(model_dir: str | os.PathLike[str], version: int) -> VersionAssets:
    return read_assets(version_dir(model_dir, version), version)


def read_assets(path: str | os.PathLike[str], version: int) -> VersionAssets:
    """The assets of the version folder ``path`` (also a staged one), checked for this service."""
    path = Path(path)
    assets = path / ASSETS_DIR
    try:
        preprocessing = json.loads((assets / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        vectors = WordVectors.load(assets)
    except (OSError, ValueError) as exc:
        raise VersionError(f"version {version} at {path} has unusable assets: {exc}") from exc
    if not isinstance(preprocessing, dict):
        raise VersionError(f"version {version}: {PREPROCESSING_FILE} is not a JSON object")
    for key, value in (("max_len", MAX_LEN), ("dim", DIM)):
        if preprocessing.get(key) != value:
            raise VersionError(
                f"version {version} was built with {key}={preprocessing.get(key)!r}, "
                f"this service uses {value!r}"
            )
    normalizer = preprocessing.get("normalizer_version")
    if isinstance(normalizer, bool) or not isinstance(normalizer, int) or normalizer not in COMPATIBLE_NORMALIZERS:
        raise VersionError(
            f"version {version} was built with normalizer_version="
            f"{preprocessing.get('normalizer_version')!r}, this service serves "
            f"{', '.join(map(str, sorted(COMPATIBLE_NORMALIZERS)))}")
    try:
        windowing = Windowing.from_preprocessing(preprocessing)
    except (TypeError, ValueError) as exc:
        raise VersionError(f"version {version} has unusable windowing settings: {exc}") from exc
    try:
        calibration = (Calibration.from_record(preprocessing[CALIBRATION_KEY])
                       if CALIBRATION_KEY in preprocessing else None)
        points = (OperatingPoints.from_record(preprocessing[OPERATING_POINTS_KEY])
                  if OPERATING_POINTS_KEY in preprocessing else None)
    except (TypeError, ValueError) as exc:
        raise VersionError(f"version {version} has an unusable decision record: {exc}") from exc
    if vectors.dim != DIM:
        raise VersionError(f"version {version} has {vectors.dim}-d vectors, expected {DIM}")
    metrics_path = assets / METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    return VersionAssets(version, path, vectors, preprocessing, metrics, windowing, calibration, points)


# ---------------------------------------------------------------------------------------------
# Loading a version: the one loader of the local backend, evaluation, bench and export's check.


def check_signature(signature: Any) -> None:
    """The :data:`SIGNATURE` every version must have (docs/contracts.md#signature)."""
    _args, kwargs = signature.structured_input_signature
    spec = kwargs.get(INPUT_KEY)
    if spec is None or spec.dtype.name != "float32" or list(spec.shape)[1:] != [MAX_LEN, DIM]:
        raise VersionError(f"signature input must be {INPUT_KEY!r} float32 [-1, {MAX_LEN}, {DIM}], got {spec}")
    if PROBABILITIES_KEY not in signature.structured_outputs:
        raise VersionError(f"signature has no {PROBABILITIES_KEY!r} output")


@dataclass(frozen=True)
class LoadedVersion:
    """One version in memory: its checked assets and its checked ``serving_default`` signature.

    Rows built with ``assets.featurizer`` go to ``signature``: vectors and weights of one
    version, always together.
    """

    name: str  # the model's name (its folder's name)
    assets: VersionAssets
    loaded: Any = field(repr=False)  # the SavedModel object; holding it keeps the variables alive
    signature: Any = field(repr=False)  # ConcreteFunction: inputs [n, 20, 200] float32 -> outputs
    # The signature called without its keyword-argument checks (:func:`flat_caller`), or None.
    flat: Any = field(default=None, repr=False, compare=False)

    @property
    def version(self) -> int:
        return self.assets.version

    @property
    def path(self) -> Path:
        return self.assets.path

    @property
    def featurizer(self) -> Featurizer:
        return self.assets.featurizer

    def _run(self, rows: np.ndarray) -> dict[str, Any]:
        import tensorflow as tf

        tensor = tf.constant(rows, dtype=tf.float32)
        if self.flat is not None and tensor.shape[1:] == (MAX_LEN, DIM):
            return dict(self.flat(tensor))
        return dict(self.signature(**{INPUT_KEY: tensor}))

    def call(self, rows: np.ndarray) -> np.ndarray:
        """``probabilities`` ``[n, 2]`` (column 0 spam) for ``rows`` (float32 ``[n, 20, 200]``)."""
        return np.asarray(self._run(rows)[PROBABILITIES_KEY].numpy())

    def outputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the signature for ``rows``, as numpy (``probabilities``, ``classes``)."""
        return {key: np.asarray(value.numpy()) for key, value in self._run(rows).items()}

    def spam_probability(self, texts: Sequence[str], segmenter: Segmenter | None = None,
                         batch_size: int = 256, calibrated: bool = True) -> np.ndarray:
        """Each raw text's spam probability, its windows folded exactly as the service folds them
        (and calibrated as the service calibrates them; ``calibrated=False``: the raw fold)."""
        segmenter = segmenter or default_segmenter()
        return self.score_tokens([segmenter.tokenize(text) for text in texts], batch_size, calibrated)

    def score_tokens(self, tokens: Sequence[Sequence[str]], batch_size: int = 256,
                     calibrated: bool = True) -> np.ndarray:
        """:meth:`spam_probability` for texts already tokenized by the one pipeline."""
        featurizer = self.featurizer
        parts = []
        for i in range(0, len(tokens), batch_size):
            rows, plan = featurizer.featurize(tokens[i:i + batch_size])
            parts.append(plan.fold(self.call(rows), calibrated=calibrated))
        return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def load_folder(path: str | os.PathLike[str], version: int, name: str) -> LoadedVersion:
    """Load the version folder ``path`` (a published or a staged one), checking assets and signature.

    TensorFlow is imported here, when called. Whatever makes the folder unusable is a
    :class:`VersionError`.
    """
    path = Path(path)
    assets = read_assets(path, version)
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises OSError, ValueError or its own OpError subclasses
        raise VersionError(f"version {version} at {path}: cannot load the SavedModel: "
                           f"{type(exc).__name__}: {exc}") from exc
    try:
        signature = loaded.signatures[SIGNATURE]
    except KeyError:
        raise VersionError(f"version {version} at {path} has no {SIGNATURE!r} signature") from None
    check_signature(signature)
    return LoadedVersion(name, assets, loaded, signature, flat_caller(signature))


def flat_caller(signature: Any) -> Any:
    """``tensor -> outputs`` for ``signature`` without the structured-argument path, or None.

    A signature call checks its keyword arguments against the input spec with ``tf.nest`` on
    every call: about 45 µs of CPU, a fifth of a one-row CNN call, paid by every small batch
    the GET path makes (issue 14; measured with a round-robin loop of 200 calls per size:
    1 row 207 → 162 µs, 4 rows 319 → 277, 100 rows 4,868 → 4,745). Our rows always have the
    checked shape, so the check is redundant; the flat call is the function the SavedModel
    holds, with the variables it captured. It is TensorFlow's private ``_call_flat``, so it is
    used only if it exists and gives exactly the signature's outputs on a probe row; otherwise
    (another TensorFlow) every call takes the public path.
    """
    import tensorflow as tf

    call_flat = getattr(signature, "_call_flat", None)
    captured = getattr(signature, "captured_inputs", None)
    if call_flat is None or captured is None:
        return None

    def run(tensor: Any) -> Any:
        return call_flat([tensor], captured)

    probe = tf.constant(np.linspace(-1.0, 1.0, MAX_LEN * DIM, dtype=np.float32).reshape(1, MAX_LEN, DIM))
    try:
        flat, structured = dict(run(probe)), dict(signature(**{INPUT_KEY: probe}))
        same = set(flat) == set(structured) and all(
            np.array_equal(np.asarray(flat[key]), np.asarray(structured[key])) for key in structured)
    except Exception:  # any TensorFlow that calls it differently: the public path
        return None
    return run if same else None


def load_version(model_dir: str | os.PathLike[str], version: int | None = None) -> LoadedVersion:
    """Load ``version`` (default: the newest complete one) of the model in ``model_dir``."""
    model_dir = Path(model_dir)
    version = resolve_version(model_dir, version)
    return load_folder(version_dir(model_dir, version), version, model_dir.name)


@dataclass
class StagedVersion:
    """A complete, checked version in a hidden staging folder: not visible to any reader yet.

    Its fate is decided by the caller: :func:`publish` it (``publish(staged.path, model_dir)``,
    or :meth:`publish`) or :meth:`discard` it.
    """

    path: Path
    model_dir: Path
    name: str
    loaded: LoadedVersion | None = field(default=None, repr=False)  # as the check loaded it

    @property
    def metrics_path(self) -> Path:
        return self.path / ASSETS_DIR / METRICS_FILE

    def read_metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        return metrics

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Replace ``metrics.json`` (before publishing: a published version never changes)."""
        atomic_write_json(self.metrics_path, metrics)

    def load(self) -> LoadedVersion:
        """The staged version as the service would load it (read once, then reused)."""
        if self.loaded is None:
            self.loaded = load_folder(self.path, 0, self.name)
        return self.loaded

    def publish(self) -> int:
        return publish(self.path, self.model_dir)

    def discard(self) -> None:
        discard(self.path)
