"""Settings from flags, environment and defaults (flag > environment > default): ServeConfig,
Paths, and the field kinds every command relies on (bool, optional, validated)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from antispam.config import Paths, ServeConfig, add_arguments, from_args, opt, resolve
from antispam.errors import UserError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServeConfig)
    return parser.parse_args(argv)


def test_defaults_without_flags_or_environment():
    config = from_args(ServeConfig, parse([]), environ={})
    assert config == ServeConfig()


def test_environment_then_flag_precedence():
    env = {"ANTISPAM_PORT": "9001", "ANTISPAM_DEADLINE_MS": "250", "ANTISPAM_BACKEND": "local"}
    config = from_args(ServeConfig, parse([]), environ=env)
    assert (config.port, config.deadline_ms, config.backend) == (9001, 250.0, "local")
    config = from_args(ServeConfig, parse(["--port", "9002"]), environ=env)
    assert (config.port, config.deadline_ms) == (9002, 250.0)


def test_overrides_win_over_everything():
    config = from_args(ServeConfig, parse(["--poll-seconds", "3"]), environ={}, poll_seconds=0.0)
    assert config.poll_seconds == 0.0


def test_bad_environment_values_are_named():
    with pytest.raises(ValueError, match="ANTISPAM_PORT"):
        from_args(ServeConfig, parse([]), environ={"ANTISPAM_PORT": "eighty"})
    with pytest.raises(ValueError, match="ANTISPAM_BACKEND"):
        from_args(ServeConfig, parse([]), environ={"ANTISPAM_BACKEND": "docker"})


def test_bad_flag_values_are_refused_by_argparse():
    with pytest.raises(SystemExit):
        parse(["--backend", "docker"])
    with pytest.raises(SystemExit):
        parse(["--workers", "two"])


def test_every_field_has_a_flag_an_environment_variable_and_help():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServeConfig)
    help_text = parser.format_help()
    envs = []
    for f in dataclasses.fields(ServeConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in help_text
        env = f.metadata["env"]
        assert env.startswith("ANTISPAM_") and env in help_text
        assert f.metadata["help"]
        envs.append(env)
    assert len(envs) == len(set(envs))


def test_only_limits_the_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServeConfig, only=("model_base",))
    args = parser.parse_args(["--model-base", "m"])
    assert from_args(ServeConfig, args, environ={}).model_base == "m"
    with pytest.raises(SystemExit):
        parser.parse_args(["--port", "1"])


# --- the one config path: bool and optional fields, Paths, validation inside the dataclass ------


@dataclasses.dataclass
class Knobs:
    """A stand-in settings class with every kind of field the commands use."""

    size: int = opt(3, "ANTISPAM_TEST_SIZE", "a positive count")
    shiny: bool = opt(True, "ANTISPAM_TEST_SHINY", "a switch")
    limit: float | None = opt(None, "ANTISPAM_TEST_LIMIT", "optional")

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")


def parse_knobs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Knobs)
    return parser.parse_args(argv)


def test_bool_fields_get_a_flag_and_its_negation():
    assert from_args(Knobs, parse_knobs([]), environ={}).shiny is True
    assert from_args(Knobs, parse_knobs(["--no-shiny"]), environ={}).shiny is False
    assert from_args(Knobs, parse_knobs(["--shiny"]), environ={"ANTISPAM_TEST_SHINY": "0"}).shiny is True


@pytest.mark.parametrize("raw, expected", [("0", False), ("1", True), ("true", True), ("FALSE", False),
                                           (" yes ", True), ("off", False)])
def test_bool_fields_read_the_environment(raw, expected):
    assert from_args(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_SHINY": raw}).shiny is expected


def test_a_bad_bool_in_the_environment_is_named():
    with pytest.raises(ValueError, match=r"ANTISPAM_TEST_SHINY='maybe' is not a valid boolean: use 1/true"):
        from_args(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_SHINY": "maybe"})


def test_optional_fields_take_their_inner_type_and_empty_means_unset():
    assert from_args(Knobs, parse_knobs(["--limit", "2.5"]), environ={}).limit == 2.5
    assert from_args(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_LIMIT": "7"}).limit == 7.0
    assert from_args(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_LIMIT": ""}).limit is None


def test_validation_failures_from_the_environment_name_the_variable():
    with pytest.raises(ValueError, match=r"size must be at least 1 \(from ANTISPAM_TEST_SIZE='0'\)"):
        from_args(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_SIZE": "0"})
    # From a flag: the dataclass' own message, no variable to blame.
    with pytest.raises(ValueError, match=r"^size must be at least 1$"):
        from_args(Knobs, parse_knobs(["--size", "0"]), environ={"ANTISPAM_TEST_SHINY": "1"})


def test_resolve_turns_bad_values_into_user_errors():
    with pytest.raises(UserError, match="ANTISPAM_TEST_SIZE='many' is not a valid int") as caught:
        resolve(Knobs, parse_knobs([]), environ={"ANTISPAM_TEST_SIZE": "many"})
    assert caught.value.exit_code == 2


def test_only_limits_the_variables_read():
    env = {"ANTISPAM_PORT": "eighty", "ANTISPAM_REVIEW_THRESHOLD": "0.6"}
    config = from_args(ServeConfig, None, environ=env, only=("review_threshold",))
    assert config.review_threshold == 0.6 and config.port == ServeConfig().port


def test_paths_flag_then_environment_then_default():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Paths)
    assert from_args(Paths, parser.parse_args([]), environ={}) == Paths()
    env = {"ANTISPAM_MODEL_BASE": "/srv/models", "ANTISPAM_DATA": "/srv/msglog.tar.gz"}
    paths = from_args(Paths, parser.parse_args([]), environ=env)
    assert (paths.model_base, paths.data, paths.data_dir) == ("/srv/models", "/srv/msglog.tar.gz", "data")
    paths = from_args(Paths, parser.parse_args(["--model-base", "m"]), environ=env)
    assert (paths.model_base, paths.data) == ("m", "/srv/msglog.tar.gz")


def test_a_path_setting_shared_with_serve_is_defined_once():
    shared = {f.name: f for f in dataclasses.fields(ServeConfig)}["model_base"]
    own = {f.name: f for f in dataclasses.fields(Paths)}["model_base"]
    assert (shared.default, shared.metadata["env"]) == (own.default, own.metadata["env"]) == (
        "models", "ANTISPAM_MODEL_BASE")
    assert ServeConfig().model_base == Paths().model_base


def test_every_paths_field_has_its_own_variable():
    envs = [f.metadata["env"] for f in dataclasses.fields(Paths)]
    assert all(env.startswith("ANTISPAM_") for env in envs) and len(envs) == len(set(envs))


def test_a_flag_can_be_renamed():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Paths, only=("word2vec",), flags={"word2vec": "--out"})
    assert from_args(Paths, parser.parse_args(["--out", "w"]), environ={}).word2vec == "w"
    assert from_args(Paths, parser.parse_args([]), environ={"ANTISPAM_WORD2VEC_DIR": "v"}).word2vec == "v"


def test_model_threads_default_to_each_workers_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from antispam.backends.local import model_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert model_threads(0, 1) == 4 and model_threads(0, 2) == 2 and model_threads(0, 8) == 1
    assert model_threads(3, 2) == 3  # an explicit setting wins
