"""One config path for every command: flag > ANTISPAM_* variable > default, checked at the
parsing/config level (nothing is trained or served here), plus the ``--source`` alias and the
one-line error for a bad variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from antispam.cli import build_parser, main
from antispam.commands.bench import settings_from as bench_settings
from antispam.config import Paths
from antispam.errors import UserError
from antispam.network.cli import paths_from_args, settings_from_args


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_train_setting_flag_beats_environment_beats_default() -> None:
    assert settings_from_args(parse("train", "cnn"), environ={}).epochs == 20
    env = {"ANTISPAM_TRAIN_EPOCHS": "7", "ANTISPAM_TRAIN_AGGREGATION": "max"}
    settings = settings_from_args(parse("train", "cnn"), environ=env)
    assert (settings.epochs, settings.aggregation) == (7, "max")
    settings = settings_from_args(parse("train", "cnn", "--epochs", "3"), environ=env)
    assert (settings.epochs, settings.aggregation) == (3, "max")


def test_train_honours_antispam_model_base_and_the_other_paths() -> None:
    assert paths_from_args(parse("train", "cnn"), environ={}) == Paths()
    env = {"ANTISPAM_MODEL_BASE": "/srv/models", "ANTISPAM_REPORT_DIR": "/srv/reports",
           "ANTISPAM_WORD2VEC_DIR": "/srv/w2v", "ANTISPAM_DATA_DIR": "/srv/data"}
    paths = paths_from_args(parse("train", "rnn"), environ=env)
    assert (paths.model_base, paths.report_dir, paths.word2vec, paths.data_dir) == (
        "/srv/models", "/srv/reports", "/srv/w2v", "/srv/data")
    paths = paths_from_args(parse("train", "rnn", "--model-base", "here"), environ=env)
    assert (paths.model_base, paths.report_dir) == ("here", "/srv/reports")


def test_train_bool_settings_from_flags_and_environment() -> None:
    defaults = settings_from_args(parse("train", "cnn"), environ={})
    assert defaults.char_backoff is True and defaults.fine_tune_vectors is True
    env = {"ANTISPAM_TRAIN_CHAR_BACKOFF": "0", "ANTISPAM_TRAIN_FINE_TUNE_VECTORS": "false"}
    settings = settings_from_args(parse("train", "cnn"), environ=env)
    assert settings.char_backoff is False and settings.fine_tune_vectors is False
    settings = settings_from_args(parse("train", "cnn", "--char-backoff", "--fine-tune-vectors"), environ=env)
    assert settings.char_backoff is True and settings.fine_tune_vectors is True
    for argv in (("--no-char-backoff",), ("--static-vectors",), ("--no-fine-tune-vectors",)):
        settings = settings_from_args(parse("train", "mlp", *argv), environ={})
        assert (settings.char_backoff, settings.fine_tune_vectors) == (argv[0] != "--no-char-backoff",
                                                                       argv[0] == "--no-char-backoff")


def test_rnn_cell_is_a_flag_of_rnn_only() -> None:
    assert settings_from_args(parse("train", "rnn", "--rnn-cell", "gru"), environ={}).rnn_cell == "gru"
    with pytest.raises(SystemExit):
        parse("train", "cnn", "--rnn-cell", "gru")


def test_bad_train_variables_are_user_errors_naming_them() -> None:
    with pytest.raises(UserError, match=r"^ANTISPAM_TRAIN_EPOCHS='ten' is not a valid int$"):
        settings_from_args(parse("train", "cnn"), environ={"ANTISPAM_TRAIN_EPOCHS": "ten"})
    with pytest.raises(UserError, match=r"ANTISPAM_TRAIN_CHAR_BACKOFF='nope' is not a valid boolean"):
        settings_from_args(parse("train", "cnn"), environ={"ANTISPAM_TRAIN_CHAR_BACKOFF": "nope"})
    # Refused by the dataclass' own validation: the message still names the variable.
    with pytest.raises(UserError, match=r"epochs must be at least 1 \(from ANTISPAM_TRAIN_EPOCHS='0'\)"):
        settings_from_args(parse("train", "cnn"), environ={"ANTISPAM_TRAIN_EPOCHS": "0"})
    with pytest.raises(UserError, match="ANTISPAM_TRAIN_AGGREGATION='mean' must be one of max, noisy_or"):
        settings_from_args(parse("train", "cnn"), environ={"ANTISPAM_TRAIN_AGGREGATION": "mean"})


def test_a_bad_variable_is_one_line_and_exit_2_without_a_traceback() -> None:
    env = {**os.environ, "ANTISPAM_TRAIN_EPOCHS": "ten"}
    out = subprocess.run([sys.executable, "-m", "antispam", "train", "cnn"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "antispam train: error: ANTISPAM_TRAIN_EPOCHS='ten' is not a valid int")
    assert "Traceback" not in out.stderr


def test_predict_bad_threshold_variable(monkeypatch, capsys) -> None:
    monkeypatch.setenv("ANTISPAM_BLOCK_THRESHOLD", "high")
    assert main(["predict", "hello"]) == 2
    assert capsys.readouterr().err.strip() == (
        "antispam predict: error: ANTISPAM_BLOCK_THRESHOLD='high' is not a valid float")


def test_data_takes_data_and_source_is_a_deprecated_alias(tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "--data", str(tiny_corpus), "--data-dir", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err
    first = json.loads(captured.out)
    assert main(["data", "--source", str(tiny_corpus), "--data-dir", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "deprecated" in line]
    assert warnings == ["antispam data: warning: --source is deprecated; use --data"]
    assert json.loads(captured.out) == first
    assert (tmp_path / "b" / "split.json").is_file()


def test_data_reads_its_paths_from_the_environment(tiny_corpus: Path, tmp_path: Path, monkeypatch,
                                                  capsys) -> None:
    monkeypatch.setenv("ANTISPAM_DATA", str(tiny_corpus))
    monkeypatch.setenv("ANTISPAM_DATA_DIR", str(tmp_path / "env"))
    assert main(["data"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == str(tiny_corpus)
    assert (tmp_path / "env" / "split.json").is_file()
    assert main(["data", "--data-dir", str(tmp_path / "flag")]) == 0
    assert (tmp_path / "flag" / "split.json").is_file()


def test_bench_reads_the_environment_when_it_runs_not_when_the_parser_is_built(monkeypatch) -> None:
    monkeypatch.delenv("ANTISPAM_MODEL_BASE", raising=False)
    monkeypatch.delenv("ANTISPAM_MODEL_NAME", raising=False)
    args = parse("bench", "--quick")
    assert bench_settings(args)["model_base"] == "models"
    monkeypatch.setenv("ANTISPAM_MODEL_BASE", "/srv/models")
    monkeypatch.setenv("ANTISPAM_MODEL_NAME", "rnn")
    monkeypatch.setenv("ANTISPAM_DATA", "/srv/msglog.tar.gz")
    monkeypatch.setenv("ANTISPAM_PORT", "not-a-port")  # serve's, not bench's: ignored
    settings = bench_settings(args)
    assert (settings["model_base"], settings["model_name"], settings["data"]) == (
        "/srv/models", "rnn", "/srv/msglog.tar.gz")
    assert bench_settings(parse("bench", "--model-base", "m"))["model_base"] == "m"


def test_evaluate_reads_paths_and_thresholds_through_the_same_path() -> None:
    from antispam.commands.evaluate import PATH_FIELDS, THRESHOLDS
    from antispam.config import ServeConfig, resolve

    args = parse("evaluate", "--baselines", "--review-threshold", "0.6")
    env = {"ANTISPAM_DATA_DIR": "/srv/data", "ANTISPAM_BLOCK_THRESHOLD": "0.95", "ANTISPAM_PORT": "x"}
    paths = resolve(Paths, args, env, only=PATH_FIELDS)
    config = resolve(ServeConfig, args, env, only=THRESHOLDS)
    assert (paths.data_dir, config.review_threshold, config.block_threshold) == ("/srv/data", 0.6, 0.95)


def test_word2vec_out_reads_its_variable() -> None:
    from antispam.config import resolve
    from antispam.word2vec.cli import PATH_FIELDS

    args = parse("train", "word2vec")
    assert resolve(Paths, args, {"ANTISPAM_WORD2VEC_DIR": "/w"}, only=PATH_FIELDS).word2vec == "/w"
    args = parse("train", "word2vec", "--out", "o")
    assert resolve(Paths, args, {"ANTISPAM_WORD2VEC_DIR": "/w"}, only=PATH_FIELDS).word2vec == "o"


def test_word2vec_settings_are_validated_in_the_dataclass_and_name_the_variable() -> None:
    from antispam.word2vec.cli import settings_from_args as word2vec_settings
    from antispam.word2vec.train import Word2VecError

    args = parse("train", "word2vec")
    with pytest.raises(Word2VecError, match=r"epochs must be at least 1, got 0 \(from ANTISPAM_W2V_EPOCHS='0'\)"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ANTISPAM_W2V_EPOCHS", "0")
            word2vec_settings(args)
    with pytest.raises(Word2VecError, match=r"^epochs must be at least 1, got 0$"):
        word2vec_settings(parse("train", "word2vec", "--epochs", "0"))
