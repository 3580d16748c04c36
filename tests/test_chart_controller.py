"""The chart and the controller together: what the chart declares is what the steps get.

The chart is rendered with the real Helm engine; its ConfigMap and its CronJob's job
template are created in the fake API server (tests/fakes/kube/) the way
``kubectl create job --from=cronjob/...`` would; the fake's kubelet then runs the
controller container (``mlops controller --config /etc/mlops/config.yaml``, env from the
downward API as rendered), and the controller creates the step Jobs over HTTP with the
real ``kubernetes`` client. The fake authorizes the controller by the chart's own Role and
enforces owner-reference permissions (OwnerReferencesPermissionEnforcement, as OpenShift
does). What cannot run here and is stood in for, each said where done: the image (the fake
maps the ``mlops`` command to the test wrapper of tests/test_controller.py, which runs
``python -m mlops``), the in-cluster service-account token (the controller gets a kubeconfig
through ``KUBECONFIG``), the PersistentVolumeClaim (the fake mounts a temp folder for it),
and a node drain (the fake's ``evict``: the pod gets ``DisruptionTarget`` and SIGTERM).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_render import merge_values, render_chart, values_file
from tests.fakes.kube import FakeKubeAPI
from tests.test_controller import WRAPPER

pytest_plugins = ["tests.fakes.kube_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
NS = "mlops"
RELEASE = "nightly"

STEP_VALUES = {
    "steps": {
        "train": {
            "resources": {"requests": {"cpu": "300m", "memory": "700Mi"},
                          "limits": {"memory": "1500Mi"}},
            "nodeSelector": {"pool": "training"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "training",
                             "effect": "NoSchedule"}],
            "activeDeadlineSeconds": 321,
            "backoffLimit": 3,
        },
        "ingest": {"activeDeadlineSeconds": 123, "backoffLimit": 0,
                   "nodeSelector": {"pool": "io"}},
    },
    "stepJobs": {"ttlSecondsAfterFinished": 600, "timeoutSeconds": 120,
                 "labels": {"team": "ml"}},
    "config": {"data": {"n_samples": 300, "n_features": 4}, "reporting": {"enabled": True}},
    # Stand-in for the volume: the fake kubelet maps mount paths in args and env values,
    # not inside config.yaml (storage.uri file:///data), so the store path is also given
    # through the documented override, in the chart's env of the controller and steps.
    "env": {"MLOPS_STORAGE_URI": "/data"},
    # Steps on other nodes than the controller (nodeSelector above) need a claim that
    # attaches to several nodes; the fake has one node and mounts a folder either way.
    "persistence": {"accessModes": ["ReadWriteMany"]},
    # Pod values that must reach every step pod.
    "podSecurityContext": {"runAsUser": 20002, "runAsGroup": 20002},
    "imagePullSecrets": [{"name": "regcred"}],
}


def _one(docs: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for ds in docs.values() for d in ds if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _wait(check: Callable[[], bool], what: str, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_rendered_controller_survives_eviction_and_step_jobs_carry_the_values(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    values = merge_values(values_file("values-dev.yaml"), STEP_VALUES)
    docs = render_chart(values, name=RELEASE, namespace=NS)
    configmap, cronjob, pvc, role = (_one(docs, k) for k in
                                     ("ConfigMap", "CronJob", "PersistentVolumeClaim", "Role"))
    store_dir = tmp_path / "pvc"
    store_dir.mkdir()
    kubeconfig_dir = tmp_path / "kube"
    kubeconfig_dir.mkdir()
    wrap_dir = tmp_path / "wrap"
    wrap_dir.mkdir()
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    api = kube_api_factory(
        namespaces=("default", NS),
        # Stand-in for the image: its ENTRYPOINT `mlops` runs this checkout (through the
        # wrapper, which holds the ingest step until the test releases it).
        command_map={"mlops": [sys.executable, str(wrapper)]},
        # Stand-in for the PVC: a local folder mounted at /data (storage.uri file:///data).
        pvc_dirs={pvc["metadata"]["name"]: store_dir},
        enforce_owner_references=True,
        # The controller pod's grace period (30 s default) up to 10 s: time to record
        # `terminated` and exit 143 on SIGTERM even on a loaded machine.
        termination_grace_seconds=10.0,
    )
    api.use_role(role)  # the controller may do exactly what the chart's Role grants
    kubeconfig = api.write_kubeconfig(kubeconfig_dir / "config", namespace=NS)
    # Stand-in for the in-cluster service-account token: a kubeconfig for the fake server.
    api.base_env = {**{k: v for k, v in os.environ.items()
                       if not k.startswith(("MLOPS_", "WRAP_"))},
                    "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT),
                    "WRAP_DIR": str(wrap_dir), "WRAP_INGEST": "block"}

    api.create_object(configmap)
    job = copy.deepcopy(cronjob["spec"]["jobTemplate"])
    job.update({"apiVersion": "batch/v1", "kind": "Job"})
    job["metadata"] = {**job.get("metadata", {}), "name": f"{RELEASE}-manual-1",
                       "namespace": NS}
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container.get("args", [])[:1] == ["controller"]
    container.setdefault("command", ["mlops"])  # the image's ENTRYPOINT (the fake has no image)
    api.create_object(job)

    # A node drain while ingest runs: the controller pod is evicted (DisruptionTarget).
    ctl = f"{RELEASE}-manual-1"
    _wait(lambda: (wrap_dir / "ingest.started").exists(), "the ingest step to start")
    evicted = api.evict(NS, ctl)
    _wait(lambda: len(api.pods(NS, ctl)) == 2, "the controller's second pod")
    # Release ingest once the second controller has met its Job (the second POST: 409).
    posts = f"/apis/batch/v1/namespaces/{NS}/jobs"
    _wait(lambda: sum(r.method == "POST" and r.path == posts for r in api.requests) >= 2,
          "the second controller to create (and adopt) the ingest Job")
    (wrap_dir / "release").touch()

    controller = api.wait_for_job(NS, ctl, timeout=240)
    log = "\n".join(f"--- {p['metadata']['name']}\n" + api.pod_log(NS, p["metadata"]["name"])
                    for p in api.pods(NS))
    conditions = {c["type"] for c in controller["status"].get("conditions", [])}
    assert "Complete" in conditions, log
    # The disruption did not count against the controller's backoffLimit, and the second
    # pod resumed the run: it adopted the running ingest Job instead of starting another.
    assert controller["status"].get("failed", 0) == 0
    first, second = api.pods(NS, ctl)
    assert first["metadata"]["name"] == evicted
    assert {"type": "DisruptionTarget", "status": "True"}.items() <= next(
        c for c in first["status"]["conditions"] if c["type"] == "DisruptionTarget").items()
    # 143: the controller's SIGTERM exit (`terminated` recorded); 137 when a loaded machine
    # let the grace period pass first. Either way the disruption is not counted.
    assert first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] in (
        143, 137), api.pod_log(NS, evicted)
    assert second["status"]["phase"] == "Succeeded"

    steps = {j["metadata"]["labels"]["mlops/step"]: j for j in api.jobs(NS)
             if "mlops/step" in j["metadata"].get("labels", {})}
    assert set(steps) == {"ingest", "monitor-check", "train"}, [
        j["metadata"]["name"] for j in api.jobs(NS)]
    run_id = "nightly-manual-1"  # the controller's own Job name is the run id
    train = steps["train"]
    assert train["metadata"]["name"] == f"{RELEASE}-mlops-{run_id}-train"  # <release>-<run>-<step>
    pod = train["spec"]["template"]["spec"]
    want = STEP_VALUES["steps"]["train"]
    assert pod["containers"][0]["resources"] == want["resources"]
    assert pod["nodeSelector"] == want["nodeSelector"]
    assert pod["tolerations"] == want["tolerations"]
    assert train["spec"]["activeDeadlineSeconds"] == want["activeDeadlineSeconds"]
    assert train["spec"]["backoffLimit"] == want["backoffLimit"]
    assert train["spec"]["ttlSecondsAfterFinished"] == 600
    assert train["metadata"]["labels"]["team"] == "ml"
    ingest = steps["ingest"]
    assert ingest["spec"]["activeDeadlineSeconds"] == 123
    assert ingest["spec"]["backoffLimit"] == 0
    assert ingest["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "io"}
    # Same image, service account and config as the chart's controller.
    chart_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for step_job in steps.values():
        spec = step_job["spec"]["template"]["spec"]
        assert spec["containers"][0]["image"] == chart_pod["containers"][0]["image"]
        assert spec["serviceAccountName"] == chart_pod["serviceAccountName"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        owners = step_job["metadata"].get("ownerReferences", [])
        assert [o["name"] for o in owners] == [f"{RELEASE}-manual-1"]
    for step_job in steps.values():  # one pod each: nothing ran twice
        assert len(api.pods(NS, step_job["metadata"]["name"])) == 1
    ended = json.loads((store_dir / "runs" / run_id / "controller.json").read_text())
    assert ended["status"] == "succeeded"
    assert ended["steps"]["ingest"] == f"adopted Job {steps['ingest']['metadata']['name']}"
    # Every pod value of the chart reached the step pods: they are the controller's pod
    # pieces (rendered once), with the step's own settings on top.
    # (Compared with the controller Job as stored: both carry the server's defaults.)
    stored_pod = controller["spec"]["template"]["spec"]
    chart_container = stored_pod["containers"][0]
    for name, step_job in steps.items():
        spec = step_job["spec"]["template"]["spec"]
        for key in ("securityContext", "volumes", "imagePullSecrets", "serviceAccountName"):
            assert spec[key] == stored_pod[key], (name, key)
        container = spec["containers"][0]
        for key in ("image", "imagePullPolicy", "securityContext", "volumeMounts"):
            assert container[key] == chart_container[key], (name, key)
        assert spec["securityContext"]["runAsUser"] == 20002
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"] == {"sizeLimit": "1Gi"}
        assert {"name": "MLOPS_STORAGE_URI", "value": "/data"} in container["env"]
        labels = step_job["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE  # the NOTES' selector
        assert labels["app.kubernetes.io/name"] == "mlops"
    runs = sorted(p.name for p in (store_dir / "runs").iterdir())
    assert runs == [run_id], runs
    summary = yaml.safe_load((store_dir / "runs" / run_id / "summary.json").read_text())
    assert summary["retrained"] is True and summary["run_id"] == run_id
    # reporting.enabled: the controller writes the run's report, as `mlops run` does.
    assert summary["report"] == f"runs/{run_id}/report.html"
    assert (store_dir / summary["report"]).read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("values_name", ["values.yaml", "values-dev.yaml", "values-prod.yaml"])
def test_rendered_config_builds_valid_step_jobs(values_name: str) -> None:
    """The controller's Job builder accepts every shipped values file's config."""
    from kubernetes_validate import validate

    from mlops.config import Config
    from mlops.kube.manifests import build_job

    values = values_file(values_name) if values_name != "values.yaml" else {}
    if values_name == "values-prod.yaml":
        values = merge_values(values, {})
    docs = render_chart(values, name=RELEASE, namespace=NS)
    cfg = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    for step in ("ingest", "monitor-check", "train"):
        job = build_job(cfg.kubernetes, "20261128-000000-abcd", step, namespace=NS)
        validate(job, "1.30.0", strict=True)
