import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from antispam import versions
from antispam.testing.tinymodel import tiny_vectors
from antispam.versions import VersionError


def fake_version(root: Path, number: int | str, complete: bool = True) -> Path:
    path = root / str(number)
    path.mkdir(parents=True)
    if complete:
        (path / "saved_model.pb").write_bytes(b"pb")
    return path


def test_list_versions_only_complete_integer_folders(tmp_path: Path) -> None:
    for number in (1, 3, 10):
        fake_version(tmp_path, number)
    fake_version(tmp_path, 4, complete=False)  # no saved_model.pb yet
    fake_version(tmp_path, ".staging-abc")
    fake_version(tmp_path, "latest")
    assert versions.list_versions(tmp_path) == [1, 3, 10]
    assert versions.latest_version(tmp_path) == 10
    assert versions.list_versions(tmp_path / "missing") == []
    assert versions.latest_version(tmp_path / "missing") is None


def test_publish_renames_staging_into_next_number(tmp_path: Path) -> None:
    fake_version(tmp_path, 2)
    fake_version(tmp_path, 3, complete=False)  # a number in use, even if incomplete
    staged = versions.staging_dir(tmp_path)
    (staged / "saved_model.pb").write_bytes(b"pb")
    assert versions.publish(staged, tmp_path) == 4
    assert not staged.exists() and (tmp_path / "4" / "saved_model.pb").is_file()


def test_publish_never_reuses_a_deleted_number(tmp_path: Path) -> None:
    for expected in (1, 2):
        staged = versions.staging_dir(tmp_path)
        (staged / "saved_model.pb").write_bytes(b"pb")
        assert versions.publish(staged, tmp_path) == expected
    versions.discard(tmp_path / "2")  # rollback
    staged = versions.staging_dir(tmp_path)
    (staged / "saved_model.pb").write_bytes(b"pb")
    assert versions.publish(staged, tmp_path) == 3
    assert versions.list_versions(tmp_path) == [1, 3]


def test_publish_refuses_incomplete(tmp_path: Path) -> None:
    staged = versions.staging_dir(tmp_path)
    with pytest.raises(VersionError, match="saved_model.pb"):
        versions.publish(staged, tmp_path)
    assert versions.list_versions(tmp_path) == []


def write_assets(path: Path, **preprocessing) -> None:
    assets = path / versions.ASSETS_DIR
    tiny_vectors().save(assets)
    settings = {**versions.preprocessing_settings(), **preprocessing}
    (assets / versions.PREPROCESSING_FILE).write_text(json.dumps(settings))


def test_load_assets(tmp_path: Path) -> None:
    write_assets(fake_version(tmp_path, 1))
    assets = versions.load_assets(tmp_path, 1)
    assert assets.version == 1 and assets.vectors.vocab == tiny_vectors().vocab
    assert assets.metrics == {}


def test_load_assets_rejects_other_pipeline(tmp_path: Path) -> None:
    write_assets(fake_version(tmp_path, 1), normalizer_version=999)
    with pytest.raises(VersionError, match="normalizer_version"):
        versions.load_assets(tmp_path, 1)


def test_load_assets_missing_files(tmp_path: Path) -> None:
    fake_version(tmp_path, 1)
    with pytest.raises(VersionError, match="unusable assets"):
        versions.load_assets(tmp_path, 1)


def test_load_assets_reads_the_recorded_windowing(tmp_path: Path) -> None:
    from antispam.features import FIRST_WINDOW, Windowing

    windowing = Windowing(stride=5, cap=8, aggregation="noisy_or", char_backoff=True)
    write_assets(fake_version(tmp_path, 1), **windowing.to_preprocessing())
    assets = versions.load_assets(tmp_path, 1)
    assert assets.windowing == windowing
    assert assets.featurizer.windowing == windowing
    assert assets.featurizer.vectors is assets.vectors
    # A version without window settings is served as it was trained: the first 20 tokens.
    write_assets(fake_version(tmp_path, 2))
    assert versions.load_assets(tmp_path, 2).windowing == FIRST_WINDOW
    # preprocessing_settings records the windowing it is given (and none for FIRST_WINDOW).
    assert versions.preprocessing_settings(windowing).items() >= windowing.to_preprocessing().items()
    assert "stride" not in versions.preprocessing_settings(FIRST_WINDOW)


def test_load_assets_refuses_unusable_windowing(tmp_path: Path) -> None:
    from antispam.features import Windowing

    write_assets(fake_version(tmp_path, 1), **{**Windowing().to_preprocessing(), "aggregation": "mean"})
    with pytest.raises(VersionError, match="windowing"):
        versions.load_assets(tmp_path, 1)
    write_assets(fake_version(tmp_path, 2), stride=10)  # partial record
    with pytest.raises(VersionError, match="windowing"):
        versions.load_assets(tmp_path, 2)


def test_load_assets_accepts_compatible_normalizers_only(tmp_path: Path) -> None:
    write_assets(fake_version(tmp_path, 1), normalizer_version=1)
    assert versions.load_assets(tmp_path, 1).preprocessing["normalizer_version"] == 1
    write_assets(fake_version(tmp_path, 2), normalizer_version=999)
    with pytest.raises(VersionError, match="normalizer_version"):
        versions.load_assets(tmp_path, 2)
    write_assets(fake_version(tmp_path, 3))
    assert versions.load_assets(tmp_path, 3).preprocessing["normalizer_version"] == 2


# ---------------------------------------------------------------------------------------------
# resolve_version, load_version


def test_resolve_version_newest_or_the_one_asked_for(tmp_path: Path) -> None:
    for number in (1, 3):
        fake_version(tmp_path, number)
    assert versions.resolve_version(tmp_path) == 3
    assert versions.resolve_version(tmp_path, 1) == 1
    with pytest.raises(VersionError, match="no complete version 7"):
        versions.resolve_version(tmp_path, 7)
    with pytest.raises(VersionError, match="no complete model version under"):
        versions.resolve_version(tmp_path / "missing")


def test_version_error_is_a_user_error() -> None:
    """A command that meets one prints it and exits 2 (no traceback)."""
    from antispam.errors import UserError

    assert issubclass(VersionError, UserError) and VersionError.exit_code == 2


def test_load_version_scores_through_the_versions_own_vectors(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from antispam.features import Windowing
    from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT, build_version

    build_version(tmp_path / "cnn")
    build_version(tmp_path / "cnn", flip=True, windowing=Windowing(stride=10, cap=8))
    loaded = versions.load_version(tmp_path / "cnn")
    assert (loaded.name, loaded.version, loaded.path) == ("cnn", 2, tmp_path / "cnn" / "2")
    assert loaded.featurizer.windowing == Windowing(stride=10, cap=8)
    spam, passed = loaded.spam_probability([SPAM_TEXT, PASS_TEXT])
    assert spam > 0.5 > passed  # flipped vectors with flipped weights: the same verdicts
    rows, _plan = loaded.featurizer.featurize([["发票"], []])
    probs = loaded.call(rows)
    assert probs.shape == (2, 2) and probs.dtype == np.float32
    outputs = loaded.outputs(rows)
    np.testing.assert_array_equal(outputs[versions.PROBABILITIES_KEY], probs)
    np.testing.assert_array_equal(outputs[versions.CLASSES_KEY], np.argmax(probs, axis=1))
    assert versions.load_version(tmp_path / "cnn", 1).version == 1
    assert versions.load_version(tmp_path / "cnn", 1).spam_probability([]).shape == (0,)


def test_load_version_refuses_a_wrong_signature_or_a_broken_saved_model(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")

    class Narrow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 10], tf.float32, name="inputs")])
        def serve(self, inputs):
            return {"probabilities": tf.stack([inputs[:, 0], inputs[:, 1]], axis=1)}

    path = tmp_path / "cnn" / "1"
    module = Narrow()
    tf.saved_model.save(module, str(path), signatures={versions.SIGNATURE: module.serve})
    write_assets(path)
    with pytest.raises(VersionError, match=r"signature input must be 'inputs' float32 \[-1, 20, 200\]"):
        versions.load_version(tmp_path / "cnn")
    (path / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(VersionError, match="cannot load the SavedModel"):
        versions.load_version(tmp_path / "cnn")


def test_a_staged_version_is_invisible_until_published(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "src")
    path = versions.staging_dir(tmp_path / "cnn", versions.RETRAIN_STAGING_PREFIX)
    path.rmdir()
    (tmp_path / "src" / "1").rename(path)
    staged = versions.StagedVersion(path, tmp_path / "cnn", "cnn")
    assert path.name.startswith(versions.RETRAIN_STAGING_PREFIX)
    assert versions.list_versions(tmp_path / "cnn") == []
    assert staged.load().version == 0 and staged.load() is staged.load()
    staged.write_metrics({**staged.read_metrics(), "retrain": {"gate": "passed"}})
    assert versions.publish(staged.path, staged.model_dir) == 1
    assert versions.load_assets(tmp_path / "cnn", 1).metrics["retrain"] == {"gate": "passed"}
    with pytest.raises(ValueError, match="starts with"):
        versions.staging_dir(tmp_path / "cnn", ".candidate-")


# ---------------------------------------------------------------------------------------------
# prune, clean_leftovers (moved here from antispam.retrain with the functions)


def test_prune_keeps_the_newest_and_the_protected(tmp_path: Path) -> None:
    for number in (1, 2, 3, 4, 5, 6):
        fake_version(tmp_path, number)
    fake_version(tmp_path, 7, complete=False)  # incomplete: not a version, not touched
    removed = versions.prune(tmp_path, keep=2, protect=(3, None))
    assert removed == [1, 2, 4]
    assert versions.list_versions(tmp_path) == [3, 5, 6]
    assert (tmp_path / "7").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(versions.TOMBSTONE_PREFIX)]
    assert versions.prune(tmp_path, keep=1) == [3, 5]
    assert versions.list_versions(tmp_path) == [6]
    with pytest.raises(ValueError):
        versions.prune(tmp_path, keep=0)


def test_leftovers_of_dead_retrain_runs_are_removed(tmp_path: Path) -> None:
    fake_version(tmp_path, 1)
    (tmp_path / ".staging-retrain-abc").mkdir()  # a retrain run died while staging
    (tmp_path / ".candidate-old" / "1").mkdir(parents=True)  # a run of the pre-issue-10 job died
    (tmp_path / ".deleted-3-xyz").mkdir()  # a run died while pruning
    (tmp_path / ".staging-123").mkdir()  # `antispam train` may be using it: left alone
    assert versions.clean_leftovers(tmp_path) == [".candidate-old", ".deleted-3-xyz", ".staging-retrain-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-123", "1"]
    assert versions.clean_leftovers(tmp_path / "missing") == []


def test_the_flat_call_gives_exactly_the_signature_outputs_and_falls_back(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    from antispam.features import Windowing
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "cnn", windowing=Windowing(stride=10, cap=8))
    loaded = versions.load_version(tmp_path / "cnn")
    assert loaded.flat is not None  # this TensorFlow has the flat call, and it passed the probe
    rows, _plan = loaded.featurizer.featurize([["发票", "代开"] * 15, ["你好"], []])
    public = loaded.signature(**{versions.INPUT_KEY: tf.constant(rows)})
    np.testing.assert_array_equal(loaded.call(rows), public[versions.PROBABILITIES_KEY].numpy())

    class NoFlatCall:  # another TensorFlow's signature object: only the public call
        def __init__(self, signature: object) -> None:
            self.signature = signature

        def __call__(self, **kwargs: object) -> object:
            return self.signature(**kwargs)

    assert versions.flat_caller(NoFlatCall(loaded.signature)) is None
    public_only = dataclasses.replace(loaded, flat=None)
    np.testing.assert_array_equal(public_only.call(rows), loaded.call(rows))
