"""The Helm chart ``helm/mlops``, rendered offline with the real Helm engine.

Every rendered object is validated strictly against the Kubernetes 1.30 OpenAPI
schemas; the ConfigMap's config.yaml is loaded with the project's own loader, so
the chart and the controller's config schema cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from mlops.config import Config, KubernetesConfig, StepPodConfig

try:
    import helm_python
    import kubernetes_validate
except ImportError as _err:  # pragma: no cover - only without the dev extras
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            "the chart tests need helm-python-sdk and kubernetes-validate; in CI they must "
            "run, not be skipped (pip install -e '.[dev]')") from _err
    pytest.skip(f"chart tests need the Helm engine and schemas ({_err.name} is not "
                "installed: pip install -e '.[dev]')", allow_module_level=True)

from tests.chart_render import (
    CHART_DIR,
    ROOT,
    all_docs,
    by_kind,
    merge_values,
    render_chart,
    render_raw,
    values_file,
)

KUBE_VERSION = "1.30.0"
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# A variant without PVC that wires an existing credentials Secret both ways.
SECRET_VALUES: dict[str, Any] = {
    "persistence": {"enabled": False},
    "credentials": {"existingSecret": "bucket-creds", "envFrom": True, "mount": True},
    "env": {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/mlops/key.json"},
    "config": {"storage": {"uri": "s3://bucket/prefix"}},
    "serviceAccount": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/mlops"}},
}

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "dev": values_file("values-dev.yaml"),
    "prod": values_file("values-prod.yaml"),
    "secret": SECRET_VALUES,
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, VARIANTS[request.param]


@pytest.fixture(scope="module")
def rendered(variant: tuple[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return render_chart(variant[1], name="demo", namespace="ns")


def _effective(values: dict[str, Any]) -> dict[str, Any]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        return chart.merge_values(values)


def _pod_specs(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every pod the chart defines: controller, helm test, and the step pod template."""
    specs = [cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
             for cj in by_kind(rendered, "CronJob")]
    specs += [pod["spec"] for pod in by_kind(rendered, "Pod")]
    specs.append(_step_template(rendered))
    return specs


def _step_template(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    template: dict[str, Any] = _config_yaml(rendered)["kubernetes"]["pod_template"]
    return template


def _config_yaml(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (cm,) = by_kind(rendered, "ConfigMap")
    data = yaml.safe_load(cm["data"]["config.yaml"])
    assert isinstance(data, dict)
    return data


def _render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as info:
        render_raw(values)
    return str(info.value)


# -- Chart metadata and lint --

def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    assert meta["apiVersion"] == "v2"
    assert meta["kubeVersion"] == ">=1.29.0-0"
    assert meta["appVersion"] == "0.1.0"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_lint_has_no_errors(name: str) -> None:
    report = helm_python.lint(CHART_DIR, VARIANTS[name] or None, strict=True,
                              namespace="ns", kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- Every object is valid Kubernetes --

def test_every_manifest_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = all_docs(rendered)
    assert {d["kind"] for d in docs} >= {"CronJob", "ConfigMap", "Role", "RoleBinding",
                                         "ServiceAccount", "Pod"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "ns", doc["kind"]


def test_no_cluster_scoped_rbac(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {d["kind"] for d in all_docs(rendered)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


# -- Security, resources, images --

def test_security_context_on_every_pod_and_container(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    specs = _pod_specs(rendered)
    assert len(specs) == 3  # controller, helm test pod, step pods
    for spec in specs:
        assert POD_SECURITY.items() <= spec["securityContext"].items()
        containers = spec["containers"] + spec.get("initContainers", [])
        for container in containers:
            assert CONTAINER_SECURITY.items() <= container["securityContext"].items()
            # Read-only root filesystem: /tmp is a writable emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] == "tmp"
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "1Gi"}


def test_resource_requests_on_every_container(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    for spec in _pod_specs(rendered)[:-1]:  # the step pods' resources are per step, below
        for container in spec["containers"]:
            requests = container["resources"]["requests"]
            assert requests.get("cpu") and requests.get("memory"), container["name"]
    steps = _config_yaml(rendered)["kubernetes"]["steps"]
    for name, step in steps.items():
        assert step["resources"]["requests"], name


def test_images_are_pinned(variant: tuple[str, dict[str, Any]],
                           rendered: dict[str, list[dict[str, Any]]]) -> None:
    images = [c["image"] for spec in _pod_specs(rendered) for c in spec["containers"]]
    for image in images:
        assert image == "mlops:0.1.0"
        assert not image.endswith(":latest")


def test_image_tag_defaults_to_app_version() -> None:
    rendered = render_chart({"image": {"tag": ""}})
    assert _step_template(rendered)["containers"][0]["image"] == "mlops:0.1.0"
    rendered = render_chart({"image": {"repository": "example/mlops", "tag": "1.2.3"}})
    (cronjob,) = by_kind(rendered, "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example/mlops:1.2.3"
    assert _step_template(rendered)["containers"][0]["image"] == "example/mlops:1.2.3"


@pytest.mark.parametrize("tag", ["latest", "LATEST"])
def test_latest_tag_is_refused(tag: str) -> None:
    message = _render_error({"image": {"tag": tag}})
    assert "image.tag" in message and "latest" in message


# -- RBAC --

def test_rbac_is_least_privilege(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (role,) = by_kind(rendered, "Role")
    rules = sorted((r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"])
    assert rules == sorted([
        (["batch"], ["jobs"], ["create", "get", "list", "watch", "delete"]),
        # blockOwnerDeletion on the step Jobs' owner reference (OwnerReferencesPermission-
        # Enforcement, e.g. OpenShift): exactly this, nothing else on the finalizers.
        (["batch"], ["jobs/finalizers"], ["update"]),
        ([""], ["pods"], ["get", "list", "watch"]),
        ([""], ["pods/log"], ["get"]),
        (["events.k8s.io"], ["events"], ["create"]),  # the run's Events on its own Job
    ])
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key]
        assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
    (binding,) = by_kind(rendered, "RoleBinding")
    (sa,) = by_kind(rendered, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "ns"}]


def test_rbac_and_service_account_can_be_disabled() -> None:
    rendered = render_chart({"rbac": {"create": False},
                             "serviceAccount": {"create": False, "name": "existing"}})
    kinds = {d["kind"] for d in all_docs(rendered)}
    assert not kinds & {"Role", "RoleBinding", "ServiceAccount"}
    assert _step_template(rendered)["serviceAccountName"] == "existing"


def test_service_account_annotations() -> None:
    prod = render_chart(values_file("values-prod.yaml"))
    (sa,) = by_kind(prod, "ServiceAccount")
    assert "iam.gke.io/gcp-service-account" in sa["metadata"]["annotations"]
    (sa,) = by_kind(render_chart(SECRET_VALUES), "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]


# -- CronJob and controller Job --

def test_cronjob_and_controller_job(variant: tuple[str, dict[str, Any]],
                                    rendered: dict[str, list[dict[str, Any]]]) -> None:
    values = _effective(variant[1])
    (cronjob,) = by_kind(rendered, "CronJob")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    cron = values["cronjob"]
    assert spec["schedule"] == cron["schedule"]
    assert spec["timeZone"] == cron["timeZone"]
    assert spec["startingDeadlineSeconds"] == cron["startingDeadlineSeconds"]
    assert spec["successfulJobsHistoryLimit"] == cron["successfulJobsHistoryLimit"]
    assert spec["failedJobsHistoryLimit"] == cron["failedJobsHistoryLimit"]
    assert spec["suspend"] is cron["suspend"]
    job = spec["jobTemplate"]["spec"]
    # A disrupted controller is retried without counting (and resumes the run by its
    # Job's name); exit 2 is final; other failures retry controller.backoffLimit times.
    assert job["backoffLimit"] == values["controller"]["backoffLimit"] == 1
    assert job["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget",
                                                  "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "controller",
                                              "operator": "In", "values": [2]}},
    ]
    assert job["activeDeadlineSeconds"] == values["controller"]["activeDeadlineSeconds"]
    # A Job that failed for good goes (with the run's Dask cluster it owns) after an hour.
    assert job["ttlSecondsAfterFinished"] == values["controller"][
        "ttlSecondsAfterFinished"] == 3600
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["args"] == ["controller", "--config", "/etc/mlops/config.yaml"]
    assert "command" not in container  # the image's ENTRYPOINT is `mlops`
    env = {e["name"]: e for e in container["env"]}
    field_paths = {name: env[name]["valueFrom"]["fieldRef"]["fieldPath"]
                   for name in ("MLOPS_NAMESPACE", "MLOPS_JOB_NAME", "MLOPS_JOB_UID")}
    assert field_paths == {
        "MLOPS_NAMESPACE": "metadata.namespace",
        "MLOPS_JOB_NAME": "metadata.labels['batch.kubernetes.io/job-name']",
        "MLOPS_JOB_UID": "metadata.labels['batch.kubernetes.io/controller-uid']",
    }
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_mount == {"name": "config", "mountPath": "/etc/mlops", "readOnly": True}
    (cm,) = by_kind(rendered, "ConfigMap")
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert pod["serviceAccountName"] == _step_template(rendered)["serviceAccountName"]


def test_cronjob_name_leaves_room_for_the_job_suffix() -> None:
    rendered = render_chart(name="a-very-long-release-name-for-the-nightly-retrain-suite-x")
    (cronjob,) = by_kind(rendered, "CronJob")
    assert len(cronjob["metadata"]["name"]) <= 52


# -- The helm test hook --

def test_helm_test_pod_checks_the_store(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (pod,) = by_kind(rendered, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["storage-check", "--config", "/etc/mlops/config.yaml"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert by_kind(render_chart({"tests": {"enabled": False}}), "Pod") == []


# -- config.yaml: the single source of the step pod settings --

def test_config_yaml_loads_with_the_project_loader(
        variant: tuple[str, dict[str, Any]], rendered: dict[str, list[dict[str, Any]]]) -> None:
    values = _effective(variant[1])
    cfg = Config.from_dict(_config_yaml(rendered))
    k8s = cfg.kubernetes
    assert isinstance(k8s, KubernetesConfig)
    for step, key in (("ingest", "ingest"), ("monitor_check", "monitorCheck"),
                      ("train", "train")):
        given = values["steps"][key]
        assert getattr(k8s.steps, step) == StepPodConfig(
            resources=given["resources"],
            node_selector=given["nodeSelector"],
            tolerations=given["tolerations"],
            active_deadline_seconds=given["activeDeadlineSeconds"],
            backoff_limit=given["backoffLimit"],
        ), step
    assert k8s.namespace == "ns"
    assert k8s.ttl_seconds_after_finished == values["stepJobs"]["ttlSecondsAfterFinished"]
    assert k8s.step_timeout_seconds == values["stepJobs"]["timeoutSeconds"]
    # The step pod is the chart's: the controller's pod pieces, rendered once.
    (cronjob,) = by_kind(rendered, "CronJob")
    controller = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    template = k8s.pod_template
    for key in ("serviceAccountName", "securityContext", "volumes", "restartPolicy"):
        assert template[key] == controller[key], key
    for key in ("image", "imagePullPolicy", "securityContext", "volumeMounts"):
        assert template["containers"][0][key] == controller["containers"][0][key], key
    assert template["containers"][0]["imagePullPolicy"] == values["image"]["pullPolicy"]
    assert template["containers"][0]["args"] == ["--config", "/etc/mlops/config.yaml"]
    assert template["automountServiceAccountToken"] is False
    assert template["terminationGracePeriodSeconds"] == \
        values["stepJobs"]["terminationGracePeriodSeconds"]
    assert k8s.labels["app.kubernetes.io/instance"] == "demo"
    # Step Job names <release>-<run-id>-<step> start with the chart's full name.
    (cronjob,) = by_kind(rendered, "CronJob")
    assert k8s.release == cronjob["metadata"]["name"]


def test_train_step_values_reach_the_config_map() -> None:
    train = {
        "resources": {"requests": {"cpu": "3", "memory": "6Gi"},
                      "limits": {"memory": "8Gi", "nvidia.com/gpu": 1}},
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "activeDeadlineSeconds": 999,
        "backoffLimit": 4,
    }
    # A train pool of its own needs a claim on several nodes (or none).
    rendered = render_chart({"steps": {"train": train},
                             "persistence": {"accessModes": ["ReadWriteMany"]}})
    raw = _config_yaml(rendered)["kubernetes"]["steps"]["train"]
    assert raw == {
        "resources": train["resources"],
        "node_selector": train["nodeSelector"],
        "tolerations": train["tolerations"],
        "active_deadline_seconds": 999,
        "backoff_limit": 4,
    }
    cfg = Config.from_dict(_config_yaml(rendered))
    assert cfg.kubernetes.steps.train.node_selector == {"pool": "gpu"}
    assert cfg.kubernetes.steps.train.backoff_limit == 4


def test_prod_train_runs_on_its_node_pool() -> None:
    cfg = Config.from_dict(_config_yaml(render_chart(values_file("values-prod.yaml"))))
    train = cfg.kubernetes.steps.train
    assert train.node_selector and train.tolerations
    assert cfg.storage.uri.startswith("gs://")
    assert "data" not in {v["name"] for v in cfg.kubernetes.pod_template["volumes"]}


def test_config_is_a_pass_through() -> None:
    # A section added later by others needs no template change.
    rendered = render_chart({"config": {"promotion": {"min_improvement": 0.01},
                                        "training": {"model_type": "random_forest"}}})
    data = _config_yaml(rendered)
    assert data["promotion"] == {"min_improvement": 0.01}
    assert data["training"] == {"model_type": "random_forest"}


def test_config_kubernetes_is_refused() -> None:
    message = _render_error({"config": {"kubernetes": {"image": "x:1"}}})
    assert "config.kubernetes" in message


def test_storage_uri_is_required_without_pvc() -> None:
    message = _render_error({"persistence": {"enabled": False}})
    assert "config.storage.uri" in message


# -- PVC and credentials --

def _controller_container(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (cronjob,) = by_kind(rendered, "CronJob")
    container: dict[str, Any] = (
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    return container


def test_persistence_is_the_store_and_mounted_in_the_controller() -> None:
    rendered = render_chart(values_file("values-dev.yaml"))
    (pvc,) = by_kind(rendered, "PersistentVolumeClaim")
    cfg = Config.from_dict(_config_yaml(rendered))
    assert cfg.storage.uri == "file:///data"
    step_volumes = {v["name"]: v for v in cfg.kubernetes.pod_template["volumes"]}
    assert step_volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in _controller_container(rendered)["volumeMounts"]}
    assert mounts["data"] == "/data"
    (cronjob,) = by_kind(rendered, "CronJob")
    volumes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == "data")["persistentVolumeClaim"]
    assert claim == {"claimName": pvc["metadata"]["name"]}
    # An empty storage.uri with persistence uses the PVC.
    default = Config.from_dict(_config_yaml(render_chart()))
    assert default.storage.uri == "file:///data"


def test_persistence_options() -> None:
    rendered = render_chart({"persistence": {"storageClass": "standard", "size": "2Gi"}})
    (pvc,) = by_kind(rendered, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "standard"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    rendered = render_chart({"persistence": {"existingClaim": "mine"}})
    assert by_kind(rendered, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in _step_template(rendered)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "mine"


def test_credentials_secret_reaches_controller_and_steps() -> None:
    rendered = render_chart(SECRET_VALUES)
    assert by_kind(rendered, "PersistentVolumeClaim") == []
    assert not any(d["kind"] == "Secret" for d in all_docs(rendered))  # never created
    specs = _pod_specs(rendered)
    assert len(specs) == 3  # controller, helm test pod, step pods
    for spec in specs:
        (container,) = spec["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "bucket-creds"}}]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["credentials"] == {"name": "credentials",
                                         "mountPath": "/var/secrets/mlops", "readOnly": True}
        assert "data" not in mounts
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["credentials"]["secret"] == {"secretName": "bucket-creds",
                                                    "defaultMode": 0o440}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/mlops/key.json"


def test_half_configured_credentials_are_refused() -> None:
    message = _render_error({"credentials": {"existingSecret": "x"}})
    assert "credentials" in message


# -- Strict values --

@pytest.mark.parametrize(("values", "key"), [
    ({"imgae": {"tag": "1"}}, "imgae"),
    ({"steps": {"trian": {}}}, "trian"),
    ({"steps": {"train": {"backofLimit": 1}}}, "backofLimit"),
    ({"cronjob": {"schedul": "* * * * *"}}, "schedul"),
    ({"persistence": {"enable": True}}, "enable"),
])
def test_unknown_values_key_is_refused(values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(key)):
        render_raw(values)


@pytest.mark.parametrize("values", [
    {"steps": {"train": {"backoffLimit": -1}}},
    {"controller": {"ttlSecondsAfterFinished": -1}},
    {"controller": {"ttlSecondsAfterFinished": None}},  # null would render 0: at once
    {"steps": {"ingest": {"resources": {"requests": None}}}},  # null deletes requests
    {"image": {"pullPolicy": "Sometimes"}},
    {"env": {"A": 1}},
])
def test_invalid_values_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_raw(merge_values(values))


def test_every_values_key_is_documented() -> None:
    lines = (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()
    free_form = ("resources:", "requests:", "limits:")
    stack: list[tuple[int, str]] = []
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, m.group(2)))
        if any(p + ":" in free_form for p in parents):
            continue
        prev = next((p for p in reversed(lines[:i]) if p.strip()), "")
        if not prev.strip().startswith("#"):
            undocumented.append(".".join([*parents, m.group(2)]))
    assert undocumented == []
    params = set(re.findall(r"## @param (\S+)", "\n".join(lines)))
    assert {"image.tag", "steps.train.resources", "persistence.enabled", "config"} <= params


# -- Plain manifests --

def _render_script() -> ModuleType:
    path = ROOT / "scripts" / "render_manifests.py"
    spec = importlib.util.spec_from_file_location("render_manifests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_manifests_are_up_to_date() -> None:
    script = _render_script()
    committed = Path(script.OUTPUT).read_text(encoding="utf-8")
    assert committed == script.render_manifests(), (
        "k8s/manifests/mlops.yaml is out of date: run `make manifests`")
    docs = [d for d in yaml.safe_load_all(committed) if d]
    assert docs[0]["kind"] == "Namespace"
    assert not any(d["kind"] == "Pod" for d in docs)  # no helm test hook
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# -- The other deployment files (static checks; no docker, kind or skaffold here) --

def test_skaffold_kind_profile() -> None:
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    assert config["apiVersion"].startswith("skaffold/v4beta")
    assert [a["image"] for a in config["build"]["artifacts"]] == ["mlops"]
    (release,) = config["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "helm/mlops"
    (kind,) = [p for p in config["profiles"] if p["name"] == "kind"]
    assert kind["build"]["local"]["push"] is False
    assert kind["build"]["tagPolicy"]["envTemplate"]["template"] == "0.1.0"
    (release,) = kind["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == ["helm/mlops/values-dev.yaml"]
    assert release["setValues"]["image.pullPolicy"] == "IfNotPresent"


def test_kind_config() -> None:
    config = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text(encoding="utf-8"))
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert all(":latest" not in n.get("image", "") for n in config["nodes"])


def test_dockerfile_is_hardened() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    assert text.count("FROM ${PYTHON_IMAGE}") == 2  # builder + final
    final = text.split("FROM ${PYTHON_IMAGE}")[-1]
    assert "USER 10001:10001" in final
    # An init as PID 1 (Debian's tini): SIGTERM reaches mlops, zombies are reaped.
    assert 'ENTRYPOINT ["tini", "--", "mlops"]' in final
    for env in ("HOME=/tmp", "TMPDIR=/tmp", "PYTHONDONTWRITEBYTECODE=1", "MPLCONFIGDIR=/tmp"):
        assert env in final
    assert not re.search(r"gcc|g\+\+|build-essential|-dev\b", final)  # no build tools
    # The system packages the final stage adds: a runtime library LightGBM's wheel links
    # (OpenMP) and the init, without recommends, and the package lists are removed after.
    installs = re.findall(r"apt-get install ([^\n\\&]+)", final)
    assert [i.split() for i in installs] == [
        ["--yes", "--no-install-recommends", "libgomp1", "tini"]]
    if installs:
        assert "rm -rf /var/lib/apt/lists/*" in final
    assert "[gcs,s3,k8s,report,dask,metrics]" in text  # GCS, S3, controller, reports, dask, metrics
    constraints = (ROOT / "docker" / "constraints.txt").read_text(encoding="utf-8")
    pins = [ln for ln in constraints.splitlines() if ln and not ln.startswith("#")]
    assert pins and all(re.fullmatch(r"[a-z0-9._-]+==\S+", p) for p in pins)
    assert (ROOT / ".dockerignore").is_file()
