"""deploy/k8s: schema-valid manifests, wired together, with replicas, probes and limits.

Every resource is checked against the Kubernetes API schema bundled by ``kubernetes-validate``
(strict: unknown fields fail) when it is installed; the structural checks run either way.
Regenerate the ConfigMap after editing serving/: ``python tests/deploy/test_k8s.py --write``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVING_FILES = ("models.config", "batching_parameters.txt", "monitoring.config")
COMPOSE = ROOT / "docker-compose.yml"


def manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                found.append((path.name, doc))
    return found


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]["containers"]


def pod_spec(workload: dict) -> dict:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def render_configmap() -> str:
    """The tfserving-config ConfigMap, from the files in serving/ verbatim."""
    parts = [
        "# The TF Serving configuration from serving/ (models.config, batching_parameters.txt,",
        "# monitoring.config), verbatim: tests/deploy/test_k8s.py fails if they drift apart.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: tfserving-config",
        "  labels:",
        "    app.kubernetes.io/name: tfserving",
        "    app.kubernetes.io/part-of: antispam",
        "data:",
    ]
    for name in SERVING_FILES:
        text = (ROOT / "serving" / name).read_text(encoding="utf-8").rstrip("\n")
        parts.append(f"  {name}: |")
        parts.extend(("    " + line) if line else "" for line in text.split("\n"))
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_schema_valid(name: str, doc: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed "
                             "(pip install kubernetes-validate); structure is still checked")
    version = kv.utils.latest_version()
    kv.validate(doc, version, strict=True)


def test_the_validator_is_not_vacuous() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    deployment = by_kind("Deployment")["antispam"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.utils.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files


def test_configmap_holds_the_serving_files_verbatim() -> None:
    assert (K8S / "tfserving-config.yaml").read_text(encoding="utf-8") == render_configmap(), \
        "serving/ changed: regenerate with `python tests/deploy/test_k8s.py --write`"
    data = by_kind("ConfigMap")["tfserving-config"]["data"]
    for name in SERVING_FILES:
        assert data[name] == (ROOT / "serving" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["tfserving", "antispam"])
def test_serving_deployments_are_replicated_probed_and_limited(name: str) -> None:
    deployment = by_kind("Deployment")[name]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for container in containers(deployment):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert probe in container, f"{name}: no {probe}"
        limits = container["resources"]["limits"]
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: d
               for d in by_kind("PodDisruptionBudget").values()}
    assert budgets[name]["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_services_select_their_pods() -> None:
    workloads = by_kind("Deployment")
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        ports = {p.get("name") for c in containers(workloads[name]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: targetPort {port['targetPort']} not exposed"


def test_tfserving_matches_compose() -> None:
    """Same image and flags as docker-compose.yml: one configuration, two ways to run it."""
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["tfserving"]
    container = containers(by_kind("Deployment")["tfserving"])[0]
    assert container["image"] == compose["image"]
    assert container["command"] == compose["entrypoint"]
    assert container["args"] == compose["command"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert "AVAILABLE" in " ".join(container["readinessProbe"]["exec"]["command"])


def test_antispam_reads_models_read_only_and_probes_readyz() -> None:
    container = containers(by_kind("Deployment")["antispam"])[0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ANTISPAM_TFS_GRPC"].split(":")[0] in by_kind("Service")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}["/models"] is True


def secret_env(container: dict) -> dict[str, dict]:
    """name -> secretKeyRef of the container's variables that come from a Secret."""
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}


def test_every_replica_writes_feedback_to_postgresql_and_there_is_no_single_writer() -> None:
    """Issue 23: the feedback store is PostgreSQL (the Secret antispam-postgres), so every antispam
    replica accepts /feedback; the single-writer Deployment, its claim and its route are gone."""
    assert "antispam-feedback" not in by_kind("Deployment")
    assert "antispam-feedback" not in by_kind("PersistentVolumeClaim")
    paths = by_kind("Ingress")["antispam"]["spec"]["rules"][0]["http"]["paths"]
    assert {p["path"]: p["backend"]["service"]["name"] for p in paths} == {"/": "antispam"}
    postgres = {"name": "antispam-postgres", "key": "url"}
    for workload in (by_kind("Deployment")["antispam"], by_kind("CronJob")["antispam-retrain"],
                     by_kind("CronJob")["antispam-feedback-prune"]):
        container = containers(workload)[0]
        assert secret_env(container)["ANTISPAM_FEEDBACK_DB"] == postgres
        assert "--feedback-db" not in container.get("args", [])
        assert "affinity" not in pod_spec(workload)  # any node: nothing is pinned to a volume
    api = containers(by_kind("Deployment")["antispam"])[0]
    assert secret_env(api)["ANTISPAM_REDIS_URL"] == {"name": "antispam-redis", "key": "url", "optional": True}


def test_retrain_cronjob_is_nightly_and_exclusive() -> None:
    job = by_kind("CronJob")["antispam-retrain"]
    assert job["spec"]["schedule"] == "0 3 * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    container = containers(job)[0]
    assert container["args"][:3] == ["retrain", "--model", "rnn"]  # the default network
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts["/models"].get("readOnly")
    assert by_kind("PersistentVolumeClaim")["antispam-models"]["spec"]["accessModes"] == ["ReadWriteMany"]


# -- least privilege (issue 21) -----------------------------------------------------------------

def workloads() -> dict[str, dict]:
    return {**by_kind("Deployment"), **by_kind("CronJob")}


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists) on labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        ok = {"In": value in expr.get("values", []), "NotIn": value not in expr.get("values", []),
              "Exists": expr["key"] in labels, "DoesNotExist": expr["key"] not in labels}[op]
        if not ok:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    return spec["template"]["metadata"]["labels"]


def test_the_selector_helper_is_not_vacuous() -> None:
    labels = {"app.kubernetes.io/name": "tfserving"}
    assert selects({"matchLabels": labels}, labels)
    assert not selects({"matchLabels": {"app.kubernetes.io/name": "antispam"}}, labels)
    assert not selects({"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                              "values": ["antispam"]}]}, labels)


@pytest.mark.parametrize("name", sorted(workloads()))
def test_every_pod_runs_with_least_privilege(name: str) -> None:
    """Non-root, default seccomp; per container no privilege escalation, no capabilities, a
    read-only root filesystem, and every writable path a volume (/tmp an emptyDir)."""
    workload = workloads()[name]
    spec = pod_spec(workload)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"] + spec.get("initContainers", []):
        sec = container["securityContext"]
        assert sec["allowPrivilegeEscalation"] is False, name
        assert sec["readOnlyRootFilesystem"] is True, name
        assert sec["capabilities"] == {"drop": ["ALL"]}, name
        assert not sec.get("privileged") and "add" not in sec["capabilities"], name
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{name}: /tmp is not an emptyDir"
        for path, mount in mounts.items():
            if not mount.get("readOnly"):
                volume = volumes[mount["name"]]
                assert "emptyDir" in volume or "persistentVolumeClaim" in volume, f"{name}: {path}"


def test_only_the_service_pods_reach_tf_serving() -> None:
    policies = by_kind("NetworkPolicy")
    tfs_pods = pod_labels(by_kind("Deployment")["tfserving"])
    guarding = [p for p in policies.values() if selects(p["spec"]["podSelector"], tfs_pods)]
    assert guarding and all(p["spec"]["policyTypes"] == ["Ingress"] for p in guarding)
    sources = [peer for p in guarding for rule in p["spec"].get("ingress", []) for peer in rule["from"]]
    assert sources and all(set(peer) == {"podSelector"} for peer in sources), sources  # this namespace's pods only
    allowed = {name for name, w in workloads().items()
               if any(selects(peer["podSelector"], pod_labels(w)) for peer in sources)}
    assert allowed == {"antispam"}
    ports = {p["name"] for c in containers(by_kind("Deployment")["tfserving"]) for p in c["ports"]}
    assert {port["port"] for p in guarding for rule in p["spec"].get("ingress", [])
            for port in rule["ports"]} <= ports


def test_only_the_ingress_controller_reaches_the_service() -> None:
    policies = by_kind("NetworkPolicy")
    ingress_class = by_kind("Ingress")["antispam"]["spec"]["ingressClassName"]
    for name in ("antispam",):
        labels = pod_labels(by_kind("Deployment")[name])
        guarding = [p for p in policies.values() if selects(p["spec"]["podSelector"], labels)]
        assert guarding, name
        peers = [peer for p in guarding for rule in p["spec"].get("ingress", []) for peer in rule["from"]]
        assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
        assert ingress_class == "nginx"  # the controller that namespace runs
        ports = {port["port"] for p in guarding for rule in p["spec"].get("ingress", []) for port in rule["ports"]}
        assert ports == {"http"}


def test_every_pod_of_the_application_is_covered_by_a_network_policy() -> None:
    policies = by_kind("NetworkPolicy").values()
    for name, workload in workloads().items():
        assert any(selects(p["spec"]["podSelector"], pod_labels(workload)) for p in policies), name
    deny = by_kind("NetworkPolicy")["antispam-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")


def test_ingress_terminates_tls_for_its_hosts() -> None:
    spec = by_kind("Ingress")["antispam"]["spec"]
    hosts = {rule["host"] for rule in spec["rules"]}
    [tls] = spec["tls"]
    assert set(tls["hosts"]) == hosts and tls["secretName"]
    annotations = by_kind("Ingress")["antispam"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"


def test_feedback_retention_runs_daily_on_the_store_and_contacts_are_masked() -> None:
    job = by_kind("CronJob")["antispam-feedback-prune"]
    assert job["spec"]["schedule"] == "30 2 * * *" and job["spec"]["concurrencyPolicy"] == "Forbid"
    container = containers(job)[0]
    assert container["args"] == ["feedback", "prune"]
    writer = containers(by_kind("Deployment")["antispam"])[0]
    writer_env = {e["name"]: e.get("value") for e in writer["env"]}
    assert secret_env(container)["ANTISPAM_FEEDBACK_DB"] == secret_env(writer)["ANTISPAM_FEEDBACK_DB"]
    assert writer_env["ANTISPAM_FEEDBACK_MASK_CONTACTS"] == "true"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"antispam-models"}
    assert not any(m.get("readOnly") for m in container["volumeMounts"])

if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--write"]:
        (K8S / "tfserving-config.yaml").write_text(render_configmap(), encoding="utf-8")
        print(f"wrote {K8S / 'tfserving-config.yaml'}")
    else:
        sys.exit(pytest.main([__file__, "-q"]))


def test_api_keys_are_on_from_an_optional_secret() -> None:
    """Issue 11: the API pods and the retrain job read the keys file from the antispam-keys Secret
    (optional: without it the service starts and answers 401 on protected routes)."""
    for workload in (by_kind("Deployment")["antispam"], by_kind("CronJob")["antispam-retrain"]):
        container = containers(workload)[0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert env["ANTISPAM_KEYS_FILE"].startswith(mounts["keys"]["mountPath"] + "/")
        assert mounts["keys"]["readOnly"] is True
        assert volumes["keys"]["secret"] == {"secretName": "antispam-keys", "optional": True}


def test_the_api_pods_pass_serves_exposure_check_with_keys_on() -> None:
    """Issue 21: the pods run the image (ENV ANTISPAM_HOST=0.0.0.0) with keys on, so `antispam
    serve` starts there; without the keys file setting it would refuse to listen."""
    from antispam.config import ServeConfig, check_serve_config, from_args
    from antispam.errors import UserError
    from antispam.runtime.exposure import check_exposure
    from tests.deploy.test_packaging import Dockerfile

    image_env = Dockerfile.read().env("frontend")
    for name in ("antispam",):
        container = containers(by_kind("Deployment")[name])[0]
        assert container["args"] == ["serve"], name
        env = {**image_env, **{e["name"]: str(e["value"]) for e in container["env"] if "value" in e}}
        config = from_args(ServeConfig, None, env)
        assert config.host == "0.0.0.0" and config.keys_file and not config.allow_open, name
        check_serve_config(config)
        check_exposure(config)
        with pytest.raises(UserError):
            check_exposure(from_args(ServeConfig, None, {**env, "ANTISPAM_KEYS_FILE": ""}))
