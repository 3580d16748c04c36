"""The chart and the step Jobs on real platforms (issue #14): what a real cluster refuses or
waits on, checked on the rendered objects and on the Job bodies the controller builds.

OpenShift's restricted-v2 SCC, OwnerReferencesPermissionEnforcement, ReadWriteOnce claims
on several nodes, Helm's ``--wait`` and ``helm test --logs`` cannot run here; each test
says which rule of the real system it checks (see docs/kubernetes.md, "Platforms").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from mlops.config import Config
from mlops.kube.manifests import MAX_NAME, Owner, build_job, job_name
from tests.chart_render import ROOT, by_kind, merge_values, render_chart, render_raw, values_file

helm_python = pytest.importorskip("helm_python", reason="needs helm-python-sdk (make dev)")

STEPS = ("ingest", "monitor-check", "train")
RUN_ID = "mlops-manual-1764288000"


def _config(rendered: dict[str, list[dict[str, Any]]]) -> Config:
    (cm,) = by_kind(rendered, "ConfigMap")
    return Config.from_dict(yaml.safe_load(cm["data"]["config.yaml"]))


def _pods(rendered: dict[str, list[dict[str, Any]]], owner: Owner | None = None
          ) -> dict[str, dict[str, Any]]:
    """Every pod spec of a run: controller, helm test and the three step Jobs' pods."""
    (cronjob,) = by_kind(rendered, "CronJob")
    pods = {"controller": cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]}
    pods.update({f"test-{p['metadata']['name']}": p["spec"] for p in by_kind(rendered, "Pod")})
    k8s = _config(rendered).kubernetes
    for step in STEPS:
        job = build_job(k8s, RUN_ID, step, namespace="ns", owner=owner)
        pods[step] = job["spec"]["template"]["spec"]
    return pods


def _render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as info:
        render_raw(values)
    return str(info.value)


# -- 1. OpenShift: the platform chooses the ids --------------------------------------------

def test_ids_can_be_left_to_the_platform() -> None:
    """restricted-v2 refuses runAsUser/fsGroup outside the namespace's range: with null ids
    no pod (controller, test, steps) fixes one, and runAsNonRoot still holds."""
    rendered = render_chart({"podSecurityContext": {"runAsUser": None, "runAsGroup": None,
                                                    "fsGroup": None}})
    for name, spec in _pods(rendered).items():
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(security), name
        for container in spec["containers"]:
            assert not {"runAsUser", "runAsGroup"} & set(container["securityContext"]), name
    # runAsNonRoot with no runAsUser is checked against the image: its USER must be numeric.
    final = (ROOT / "Dockerfile").read_text(encoding="utf-8").split("FROM ${PYTHON_IMAGE}")[-1]
    assert re.search(r"^USER \d+:\d+$", final, re.M)


def test_default_ids_reach_every_pod() -> None:
    for name, spec in _pods(render_chart({})).items():
        security = spec["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == \
            (10001, 10001, 10001), name


# -- 3. helm test --logs -------------------------------------------------------------------

def test_helm_test_pod_is_kept_for_its_log() -> None:
    """hook-succeeded deletes the passing pod before `helm test --logs` reads it
    (helm/helm#9098): the pod is replaced at the next test run instead."""
    (pod,) = by_kind(render_chart({}), "Pod")
    policies = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert policies == ["before-hook-creation"]


# -- 4. the shared claim -------------------------------------------------------------------

def test_read_write_once_keeps_every_pod_of_a_run_on_the_controllers_node() -> None:
    rendered = render_chart(values_file("values-dev.yaml"))
    assert _config(rendered).kubernetes.same_node_as_controller is True
    owner = Owner(RUN_ID, "0c6f3c1e-0000-4000-8000-000000000001")
    pods = _pods(rendered, owner)
    for step in STEPS:
        (term,) = pods[step]["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
            "matchLabels": {"batch.kubernetes.io/job-name": RUN_ID}}}
    # The controller pod carries that label (the Job controller sets it on its pods).
    (test_pod,) = [p for name, p in pods.items() if name.startswith("test-")]
    (preferred,) = test_pod["affinity"]["podAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["labelSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "controller"


def test_read_write_many_lets_pods_spread() -> None:
    rendered = render_chart({"persistence": {"accessModes": ["ReadWriteMany"]}})
    assert _config(rendered).kubernetes.same_node_as_controller is False
    pods = _pods(rendered, Owner(RUN_ID, "u"))
    assert all("affinity" not in pods[step] for step in STEPS)
    prod = render_chart(values_file("values-prod.yaml"))  # a bucket, no claim
    assert _config(prod).kubernetes.same_node_as_controller is False


@pytest.mark.parametrize(("values", "message"), [
    ({"persistence": {"accessModes": ["ReadWriteOncePod"]}}, "ReadWriteOncePod admits one pod"),
    ({"persistence": {"accessModes": ["ReadOnlyMany"]}}, "the store must be writable"),
    ({"steps": {"train": {"nodeSelector": {"zone": "b"}}}},
     "steps.train.nodeSelector zone=b: with persistence.accessModes ReadWriteOnce"),
])
def test_claims_that_cannot_serve_a_run_are_refused(values: dict[str, Any],
                                                    message: str) -> None:
    assert message in _render_error(values)


def test_step_node_selector_matching_the_controller_is_allowed_with_read_write_once() -> None:
    rendered = render_chart({"controller": {"nodeSelector": {"zone": "b"}},
                             "steps": {"train": {"nodeSelector": {"zone": "b"}}}})
    assert _config(rendered).kubernetes.steps.train.node_selector == {"zone": "b"}


# -- 7. names for the longest release name -------------------------------------------------

def test_names_fit_for_a_53_character_release() -> None:
    release = "r" * 44 + "-nightly1"
    assert len(release) == 53  # Helm's limit for a release name
    raw = render_raw({}, name=release, namespace="ns")
    rendered = render_chart({}, name=release)
    for doc in (d for docs in rendered.values() for d in docs):
        assert len(doc["metadata"]["name"]) <= MAX_NAME, doc["kind"]
    (cronjob,) = by_kind(rendered, "CronJob")
    assert len(cronjob["metadata"]["name"]) <= 52
    # The NOTES' manual run: `kubectl create job ... <name>-manual-$(date +%s)`.
    notes = raw["mlops/templates/NOTES.txt"]
    manual = re.search(r"kubectl create job --from=cronjob/(\S+) (\S+-manual-)\$\(date \+%s\) -n",
                       notes)
    assert manual and manual.group(1) == cronjob["metadata"]["name"]
    name = manual.group(2) + "1764288000"  # $(date +%s): 10 digits until the year 2286
    assert len(name) <= MAX_NAME and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    # That Job's name is the run id; every step Job name still fits.
    k8s = _config(rendered).kubernetes
    for step in STEPS:
        assert len(job_name(k8s.release, name, step)) <= MAX_NAME


# -- 8. step labels are the chart's --------------------------------------------------------

def test_step_labels_match_the_charts_selector() -> None:
    rendered = render_chart({"nameOverride": "retrain", "stepJobs": {"labels": {"team": "ml"}}},
                            name="nightly")
    raw = render_raw({"nameOverride": "retrain"}, name="nightly", namespace="ns")
    selector = re.search(r"kubectl get jobs -n \S+ -l (\S+) -w", raw["mlops/templates/NOTES.txt"])
    assert selector is not None
    wanted = dict(kv.split("=", 1) for kv in selector.group(1).split(","))
    (cronjob,) = by_kind(rendered, "CronJob")
    controller_labels = cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
    k8s = _config(rendered).kubernetes
    for step in STEPS:
        job = build_job(k8s, RUN_ID, step, namespace="ns")
        labels = job["metadata"]["labels"]
        assert wanted.items() <= labels.items(), step
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance"):
            assert labels[key] == controller_labels[key], key
        assert labels["app.kubernetes.io/name"] == "retrain"
        assert labels["app.kubernetes.io/component"] == "step"
        assert labels["team"] == "ml" and labels["mlops/step"] == step
        assert job["spec"]["template"]["metadata"]["labels"] == labels


# -- 10. and #15 item 5: the step pods are the chart's pods --------------------------------

def test_step_pods_carry_every_pod_piece_of_the_chart() -> None:
    values = merge_values(values_file("values-dev.yaml"), {
        "credentials": {"existingSecret": "bucket-creds", "mount": True, "envFrom": True},
        "env": {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/mlops/key.json"},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"repository": "registry.example/ml/mlops", "tag": "2.0.0",
                  "pullPolicy": "Always"},
        "podSecurityContext": {"runAsUser": 20002},
        "stepJobs": {"terminationGracePeriodSeconds": 45},
    })
    pods = _pods(render_chart(values), Owner(RUN_ID, "u"))
    controller = pods["controller"]
    for step in STEPS:
        spec = pods[step]
        for key in ("securityContext", "volumes", "imagePullSecrets", "serviceAccountName"):
            assert spec[key] == controller[key], (step, key)
        (container,) = spec["containers"]
        (ctl,) = controller["containers"]
        for key in ("image", "imagePullPolicy", "securityContext", "volumeMounts", "envFrom"):
            assert container[key] == ctl[key], (step, key)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "1Gi"}
        assert volumes["credentials"]["secret"]["defaultMode"] == 0o440
        assert spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
        assert spec["securityContext"]["runAsUser"] == 20002
        assert spec["terminationGracePeriodSeconds"] == 45
        assert spec["automountServiceAccountToken"] is False
        assert {"name": "GOOGLE_APPLICATION_CREDENTIALS",
                "value": "/var/secrets/mlops/key.json"} in container["env"]
        assert container["args"] == [step, "--config", "/etc/mlops/config.yaml",
                                     "--run-id", RUN_ID]


def test_config_dir_and_ids_are_written_once() -> None:
    """`/etc/mlops` is written once in the templates; the ids live in values.yaml only."""
    templates = "".join(p.read_text(encoding="utf-8")
                        for p in (ROOT / "helm" / "mlops" / "templates").rglob("*")
                        if p.is_file())
    assert templates.count("/etc/mlops") == 1
    assert "10001" not in templates
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "mlops" / "kube").glob("*.py"))
    assert "10001" not in source


# -- 9. make kind-e2e against the rendered objects -----------------------------------------

def _kind_script() -> str:
    return (ROOT / "scripts" / "kind-e2e.sh").read_text(encoding="utf-8")


def helm_wait_blockers(docs: list[dict[str, Any]], *, wait_for_jobs: bool = False,
                       binding_mode: str = "WaitForFirstConsumer") -> list[str]:
    """The objects `helm install --wait` would wait on that cannot become ready.

    Helm's ready checker (pkg/kube/ready.go) waits for Pods, Deployments, StatefulSets,
    DaemonSets, ReplicaSets and Services, Jobs only with --wait-for-jobs, and for every
    PersistentVolumeClaim to be Bound; it does not wait on CronJobs, ConfigMaps, RBAC or
    hooks (the `helm test` pod). Under a WaitForFirstConsumer StorageClass (kind's default
    "standard", EBS, GCE PD) a claim binds only once a pod that uses it is scheduled, so it
    blocks when no waited-on workload created at install mounts it (helm/helm#10733).
    """
    installed = [d for d in docs if "helm.sh/hook" not in
                 (d.get("metadata", {}).get("annotations") or {})]
    pod_specs = []
    for doc in installed:
        kind = doc["kind"]
        if kind == "Pod":
            pod_specs.append(doc["spec"])
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") or (
                kind == "Job" and wait_for_jobs):
            pod_specs.append(doc["spec"]["template"]["spec"])
    used = {v["persistentVolumeClaim"]["claimName"] for spec in pod_specs
            for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v}
    return [f"PersistentVolumeClaim/{d['metadata']['name']}" for d in installed
            if d["kind"] == "PersistentVolumeClaim" and binding_mode == "WaitForFirstConsumer"
            and d["metadata"]["name"] not in used]


def test_kind_install_does_not_wait_on_a_claim_that_cannot_bind() -> None:
    script = _kind_script()
    install = re.search(r"^\s*helm install .*?(?<!\\)$", script, re.M | re.S)
    assert install is not None
    flags = install.group(0)
    rendered = render_chart(values_file("values-dev.yaml"), name="mlops", namespace="mlops")
    docs = [d for ds in rendered.values() for d in ds]
    blockers = helm_wait_blockers(docs, wait_for_jobs="--wait-for-jobs" in flags)
    # The check itself: with this chart --wait would block on the dev claim.
    assert blockers == ["PersistentVolumeClaim/mlops-data"]
    assert "--wait" not in flags, f"helm install --wait would time out on {blockers}"
    # The first consumer is the helm test pod, which the script runs next: it mounts the
    # claim, so the claim binds then.
    (test_pod,) = by_kind(rendered, "Pod")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in test_pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"mlops-data"}
    assert script.index("helm test ") > script.index("helm install ")
    assert "--logs" in re.search(r"^\s*helm test .*$", script, re.M).group(0)  # type: ignore[union-attr]
    deploy = (ROOT / "mk" / "deploy.mk").read_text(encoding="utf-8")
    assert "--wait" not in re.search(r"helm upgrade --install.*?--timeout \S+", deploy,
                                     re.S).group(0)  # type: ignore[union-attr]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_kind_script_manual_job_name_fits() -> None:
    script = _kind_script()
    func = re.search(r"^manual_job_name\(\) \{.*?^\}", script, re.M | re.S)
    assert func is not None
    cronjob = render_chart({}, name="r" * 44 + "-nightly1")["mlops/templates/cronjob.yaml"][0]
    name = cronjob["metadata"]["name"]
    out = subprocess.run(["bash", "-c", f"{func.group(0)}\nmanual_job_name {name}"],
                         capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    assert len(out) <= MAX_NAME and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", out), out
    assert out.startswith(name[:40]) and re.search(r"-manual-\d{10}$", out)
