"""docker-compose.yml, the Dockerfile, the TF Serving configs in serving/ and the retrain schedule.

No Docker engine runs here (docs/architecture.md#test-equipment), so these tests check what can be checked without one:
Debian's ``docker-compose`` parses and validates the compose file; the TF Serving configs parse
as the protobuf messages TF Serving reads them into; the services are wired as the design says;
the nightly loop script runs against a stand-in ``antispam``. tests/deploy/test_docker_real.py builds and
runs the stack where an engine answers.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVING = ROOT / "serving"
NIGHTLY = ROOT / "deploy" / "nightly-retrain.sh"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def flags(command: list[str]) -> dict[str, str]:
    out = {}
    for arg in command:
        name, _, value = arg.partition("=")
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# The compose file


def test_docker_compose_config_validates() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose); "
                    "the file is still checked structurally by the other tests")
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"volumes-init", "tfserving", "antispam", "retrain", "feedback-prune",
                                         "postgres", "redis"}
    quiet = subprocess.run([tool, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and not quiet.stderr.strip(), quiet.stderr


def test_tfserving_image_matches_the_exporting_tensorflow() -> None:
    image = compose()["services"]["tfserving"]["image"]
    name, _, tag = image.partition(":")
    assert name == "tensorflow/serving"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin an exact release, not {tag!r}"
    # tensorflow-serving-api is released with the server; the installed one matches the
    # TensorFlow the trainer exports with.
    api = importlib.metadata.version("tensorflow-serving-api")
    tf = importlib.metadata.version("tensorflow")
    assert tag.split(".")[:2] == api.split(".")[:2] == tf.split(".")[:2], (tag, api, tf)


def test_tfserving_flags_ports_volumes_and_healthcheck() -> None:
    svc = compose()["services"]["tfserving"]
    assert svc["entrypoint"] == ["tensorflow_model_server"]
    given = flags(svc["command"])
    assert given["--port"] == "8500" and given["--rest_api_port"] == "8501"
    for flag in ("--model_config_file", "--batching_parameters_file", "--monitoring_config_file"):
        target = given[flag]
        assert target.startswith("/serving/")
        assert (SERVING / target.removeprefix("/serving/")).is_file(), f"{flag}={target} is missing"
    assert given["--enable_batching"] == "true"
    assert given["--enable_model_warmup"] == "true"
    assert int(given["--file_system_poll_wait_seconds"]) > 0
    # Issue 21: TF Serving (no keys, no rate limit) is reachable on the compose network only.
    assert "ports" not in svc, f"tfserving publishes {svc['ports']} on the host"
    assert {str(p) for p in svc["expose"]} == {"8500", "8501"}
    assert "models:/models:ro" in svc["volumes"]
    assert "./serving:/serving:ro" in svc["volumes"]
    test = " ".join(svc["healthcheck"]["test"])
    assert "8501" in test and "/v1/models/rnn" in test  # the default network


def test_only_the_antispam_api_is_published_on_the_host() -> None:
    """Issue 21: of all services only antispam's API port reaches the host."""
    published = {name: svc["ports"] for name, svc in compose()["services"].items() if svc.get("ports")}
    assert set(published) == {"antispam"}, published


def test_feedback_retention_runs_on_its_own_schedule_and_contacts_are_masked() -> None:
    """Issue 21: `antispam feedback prune` runs daily whether or not a retrain runs, with the
    store and the promotion logs writable; the feedback writer masks contacts at rest."""
    services = compose()["services"]
    prune = services["feedback-prune"]
    script = " ".join(prune["command"])
    assert "antispam feedback prune" in script and "sleep" in script and "while true" in script
    assert prune["environment"]["PRUNE_EVERY_SECONDS"] == "86400"
    assert prune["environment"]["ANTISPAM_FEEDBACK_DB"] == services["antispam"]["environment"]["ANTISPAM_FEEDBACK_DB"]
    assert set(prune["volumes"]) == {"models:/models"}  # writable: the logs; the store is postgres
    assert services["antispam"]["environment"]["ANTISPAM_FEEDBACK_MASK_CONTACTS"] == "true"


def test_feedback_and_rate_limits_live_in_postgres_and_redis() -> None:
    """Issue 23: every reader and writer of feedback names the one PostgreSQL (password from
    PGPASSWORD, never in the URL); neither server is published on the host; the API starts
    without waiting for them to be healthy (it answers /predict while they are down)."""
    services = compose()["services"]
    urls = {name: services[name]["environment"]["ANTISPAM_FEEDBACK_DB"]
            for name in ("antispam", "retrain", "feedback-prune")}
    assert set(urls.values()) == {"postgresql://antispam@postgres:5432/antispam"}, urls
    assert all(services[name]["environment"]["PGPASSWORD"] for name in urls)
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    assert services["antispam"]["depends_on"]["postgres"]["condition"] == "service_started"
    assert services["retrain"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "--save" in services["redis"]["command"]


def test_antispam_service_uses_tf_serving_and_reads_models_read_only() -> None:
    services = compose()["services"]
    svc = services["antispam"]
    env = svc["environment"]
    # auto = gRPC with REST fallback once TF Serving answers (antispam/backends/factory.py);
    # depends_on waits until it does.
    assert env["ANTISPAM_BACKEND"] in ("auto", "grpc")
    assert env["ANTISPAM_TFS_GRPC"] == "tfserving:8500"
    assert env["ANTISPAM_TFS_REST"] == "http://tfserving:8501"
    assert svc["depends_on"]["tfserving"]["condition"] == "service_healthy"
    assert "models:/models:ro" in svc["volumes"]
    assert any(v.startswith("feedback:/feedback") and not v.endswith(":ro") for v in svc["volumes"])
    assert env["ANTISPAM_FEEDBACK_DB"] == "postgresql://antispam@postgres:5432/antispam"  # issue 23
    assert env["ANTISPAM_REDIS_URL"] == "redis://redis:6379/0"
    assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert "8000:8000" in svc["ports"]


def test_retrain_service_writes_models_on_a_schedule() -> None:
    services = compose()["services"]
    svc = services["retrain"]
    assert svc["entrypoint"] == ["nightly-retrain"]
    assert re.fullmatch(r"\d\d:\d\d", svc["environment"]["RETRAIN_AT"])
    assert "models:/models" in svc["volumes"]  # read-write
    assert svc["environment"]["ANTISPAM_FEEDBACK_DB"] == services["antispam"]["environment"]["ANTISPAM_FEEDBACK_DB"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY deploy/nightly-retrain.sh /usr/local/bin/nightly-retrain" in dockerfile


def test_volumes_are_prepared_before_the_services_start() -> None:
    services = compose()["services"]
    for name in ("tfserving", "antispam", "retrain"):
        assert services[name]["depends_on"]["volumes-init"]["condition"] == "service_completed_successfully"
    init = " ".join(services["volumes-init"]["command"])
    assert "chown" in init and "10001" in init
    assert "--uid 10001" in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+-slim-\w+", base.group(1))
    assert re.search(r"^USER antispam$", dockerfile, re.M)
    assert "/readyz" in dockerfile
    assert 'ENTRYPOINT ["antispam"]' in dockerfile
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # allow-list: models, data and feedback databases never enter
    for needed in ("antispam/", "word2vec/", "network/", "setup.cfg", "pyproject.toml"):
        assert f"!{needed}" in ignore


# ---------------------------------------------------------------------------------------------
# serving/: the files parse as the messages TF Serving reads


def test_models_config_parses_and_serves_cnn_and_rnn() -> None:
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((SERVING / "models.config").read_text(encoding="utf-8"),
                               model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert set(entries) == {"cnn", "rnn"}
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}"
        assert entry.model_platform == "tensorflow"
        assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
        # At least two: a request pinned to the previous version during a switch still succeeds.
        assert entry.model_version_policy.latest.num_versions >= 2


def test_models_config_label_example_parses() -> None:
    """The commented stable/canary example is valid config once uncommented."""
    from tensorflow_serving.config import model_server_config_pb2

    lines = (SERVING / "models.config").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "#  config {")
    block = []
    for line in lines[start:]:
        block.append(line[1:])
        if line.strip() == "#  }":
            break
    config = text_format.Parse("model_config_list {\n" + "\n".join(block) + "\n}",
                               model_server_config_pb2.ModelServerConfig())
    entry = config.model_config_list.config[0]
    assert dict(entry.version_labels) == {"stable": 41, "canary": 42}
    assert list(entry.model_version_policy.specific.versions) == [41, 42]


def _message_class(package: str, messages: list[descriptor_pb2.DescriptorProto], name: str,
                   deps: tuple[str, ...] = ()):
    """Build a message class from a descriptor, for TF Serving messages the pip package lacks."""
    from google.protobuf import wrappers_pb2  # noqa: F401  (registers wrappers.proto)

    pool = descriptor_pool.DescriptorPool()
    if deps:
        pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.{name}.proto", package=package,
                                               syntax="proto3", dependency=list(deps))
    proto.message_type.extend(messages)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


def _field(name: str, number: int, kind: int, type_name: str = "",
           label: int = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL) -> descriptor_pb2.FieldDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    return field


F = descriptor_pb2.FieldDescriptorProto


def test_batching_parameters_parse_and_fit_the_service() -> None:
    # tensorflow.serving.BatchingParameters (session_bundle_config.proto), field for field.
    int64 = ".google.protobuf.Int64Value"
    message = descriptor_pb2.DescriptorProto(name="BatchingParameters", field=[
        _field("max_batch_size", 1, F.TYPE_MESSAGE, int64),
        _field("batch_timeout_micros", 2, F.TYPE_MESSAGE, int64),
        _field("max_enqueued_batches", 3, F.TYPE_MESSAGE, int64),
        _field("num_batch_threads", 4, F.TYPE_MESSAGE, int64),
        _field("thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
        _field("allowed_batch_sizes", 6, F.TYPE_INT64, label=F.LABEL_REPEATED),
        _field("pad_variable_length_inputs", 7, F.TYPE_BOOL),
    ])
    cls = _message_class("tensorflow.serving", [message], "BatchingParameters",
                         ("google/protobuf/wrappers.proto",))
    params = text_format.Parse((SERVING / "batching_parameters.txt").read_text(encoding="utf-8"), cls())
    from antispam.config import ServeConfig

    # One POST /predict is one request of up to max_texts rows; TF Serving refuses a request
    # larger than max_batch_size (no large-batch splitting), so the batch must hold it.
    assert params.max_batch_size.value >= ServeConfig().max_texts
    assert 0 < params.batch_timeout_micros.value <= 10_000
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1
    if params.allowed_batch_sizes:
        assert list(params.allowed_batch_sizes) == sorted(params.allowed_batch_sizes)
        assert params.allowed_batch_sizes[-1] == params.max_batch_size.value


def test_monitoring_config_parses_and_enables_prometheus() -> None:
    prometheus = descriptor_pb2.DescriptorProto(name="PrometheusConfig", field=[
        _field("enable", 1, F.TYPE_BOOL), _field("path", 2, F.TYPE_STRING)])
    monitoring = descriptor_pb2.DescriptorProto(name="MonitoringConfig", field=[
        _field("prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")])
    cls = _message_class("tensorflow.serving", [prometheus, monitoring], "MonitoringConfig")
    config = text_format.Parse((SERVING / "monitoring.config").read_text(encoding="utf-8"), cls())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path.startswith("/")


def test_a_typo_in_a_config_is_caught() -> None:
    """The checks above are not vacuous: an unknown field fails to parse."""
    from tensorflow_serving.config import model_server_config_pb2

    with pytest.raises(text_format.ParseError):
        text_format.Parse('model_config_list { config { nmae: "cnn" } }',
                          model_server_config_pb2.ModelServerConfig())


# ---------------------------------------------------------------------------------------------
# The nightly loop


def fake_antispam(tmp_path: Path, exit_code: int) -> tuple[Path, Path]:
    """A stand-in ``antispam`` command that appends its arguments to a file and exits with
    ``exit_code``; returns (folder to put first on PATH, the file of calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "antispam"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexit {exit_code}\n', encoding="utf-8")
    fake.chmod(0o755)
    return bin_dir, calls


def test_nightly_script_is_valid_shell() -> None:
    assert os.access(NIGHTLY, os.X_OK)
    subprocess.run(["sh", "-n", str(NIGHTLY)], check=True, timeout=10)


def test_nightly_loop_trains_missing_models_then_waits_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Exit like a refused gate.
    bin_dir, calls = fake_antispam(tmp_path, exit_code=3)
    models = tmp_path / "models"
    (models / "rnn" / "1").mkdir(parents=True)
    (models / "rnn" / "1" / "saved_model.pb").write_bytes(b"x")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RETRAIN_MODELS="cnn rnn",
               RETRAIN_AT="03:00", ANTISPAM_MODEL_BASE=str(models), TZ="UTC")
    proc = subprocess.Popen(["sh", str(NIGHTLY)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if "next run at" in line:
                break
        assert any("next run at" in line and "T03:00:00" in line for line in seen), seen
        assert any("gate refused" in line for line in seen), seen
        # Only the model without a version was trained at start.
        assert calls.read_text().split("\n")[0] == f"retrain --model cnn --model-base {models}"
        assert len(calls.read_text().strip().splitlines()) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("at", ["25:99", "24:00", "3am", "7:5", "03:00; true"])
def test_nightly_loop_rejects_a_bad_time_before_any_work(tmp_path: Path, at: str) -> None:
    # A model without a version would be trained at start; a bad schedule must stop first.
    bin_dir, calls = fake_antispam(tmp_path, exit_code=0)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RETRAIN_MODELS="cnn",
               RETRAIN_AT=at, ANTISPAM_MODEL_BASE=str(tmp_path / "models"))
    result = subprocess.run(["sh", str(NIGHTLY)], env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"bad RETRAIN_AT={at}" in result.stdout
    assert not calls.exists(), calls.read_text()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_api_keys_are_on_in_compose() -> None:
    """Issue 11: keys on for the service (fail closed until a key is added) and known to retrain."""
    services = compose()["services"]
    keys = services["antispam"]["environment"]["ANTISPAM_KEYS_FILE"]
    assert keys.startswith("/feedback/")
    assert services["retrain"]["environment"]["ANTISPAM_KEYS_FILE"] == keys


def test_the_service_listens_on_every_interface_with_keys_on() -> None:
    """Issue 21: `antispam serve` refuses a non-loopback address with keys off. Compose's service
    runs the image (ENV ANTISPAM_HOST=0.0.0.0: a container's loopback is unreachable from the
    host) with its own environment; together they must pass serve's checks, with keys on."""
    from antispam.config import ServeConfig, check_serve_config, from_args
    from antispam.errors import UserError
    from antispam.runtime.exposure import check_exposure
    from tests.deploy.test_packaging import Dockerfile

    service = compose()["services"]["antispam"]
    assert service["command"] == ["serve"]
    env = {**Dockerfile.read().env("frontend"), **{k: str(v) for k, v in service["environment"].items()}}
    config = from_args(ServeConfig, None, env)
    assert config.host == "0.0.0.0" and config.keys_file == "/feedback/keys.tsv" and not config.allow_open
    check_serve_config(config)
    check_exposure(config)
    without_keys = from_args(ServeConfig, None, {**env, "ANTISPAM_KEYS_FILE": ""})
    with pytest.raises(UserError, match="refusing to listen on 0.0.0.0"):
        check_exposure(without_keys)  # the check is not vacuous: the image alone would refuse
