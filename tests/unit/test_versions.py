import json
from pathlib import Path

import pytest

from antispam import versions
from antispam.versions import VersionError
from tests.helpers.tinymodel import tiny_vectors


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
