"""The model-version layout shared by trainer, TF Serving, the service and the retrain job.

``<model_base>/<name>/<version>/`` holds ``saved_model.pb``, ``variables/`` and
``assets.extra/`` (warmup records, this version's word vectors, preprocessing settings and
``metrics.json``). A version folder appears only when complete: it is built in a hidden staging
folder beside it (TF Serving and :func:`list_versions` ignore names that are not integers) and
renamed into place. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antispam.atomic import atomic_write_text, fsync_tree
from antispam.features import DIM, FIRST_WINDOW, MAX_LEN, Featurizer, Windowing, WordVectors
from antispam.text import COMPATIBLE_NORMALIZERS, NORMALIZER_VERSION

ASSETS_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
PREPROCESSING_FILE = "preprocessing.json"
METRICS_FILE = "metrics.json"
SIGNATURE = "serving_default"
INPUT_KEY = "inputs"
PROBABILITIES_KEY = "probabilities"
CLASSES_KEY = "classes"
HIGH_WATER_FILE = ".highest_version"


class VersionError(Exception):
    """A version folder is incomplete, corrupt or built for another pipeline."""


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


def staging_dir(model_dir: str | os.PathLike[str]) -> Path:
    """A fresh hidden folder on the same filesystem as the versions, for building one."""
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".staging-{uuid.uuid4().hex}"
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


def preprocessing_settings(windowing: Windowing | None = None) -> dict[str, Any]:
    """What ``preprocessing.json`` records; without ``windowing``, the first-20-tokens layout."""
    settings: dict[str, Any] = {"max_len": MAX_LEN, "dim": DIM, "normalizer_version": NORMALIZER_VERSION}
    if windowing is not None and windowing != FIRST_WINDOW:
        settings.update(windowing.to_preprocessing())
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

    @property
    def featurizer(self) -> Featurizer:
        return Featurizer(self.vectors, self.windowing)


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
    if vectors.dim != DIM:
        raise VersionError(f"version {version} has {vectors.dim}-d vectors, expected {DIM}")
    metrics_path = assets / METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    return VersionAssets(version, path, vectors, preprocessing, metrics, windowing)
