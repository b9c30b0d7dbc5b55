import json
from pathlib import Path

import pytest

from antispam import versions
from antispam.versions import VersionError
from tinymodel import tiny_vectors


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
