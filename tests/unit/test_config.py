"""ServeConfig from flags, environment and defaults (flag > environment > default)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from antispam.config import ServeConfig, add_arguments, from_args


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
