"""The controller against the fake API server (tests/fakes/kube/) with the real client.

The fake's "kubelet" runs each step Job's container command as a local subprocess:
``mlops`` is mapped to a small test-only wrapper (``WRAPPER`` below) that by default just
runs ``python -m mlops <args>`` from this worktree, and on request injects what a real
cluster would make happen: a first attempt that fails with exit 1 (``fail-once``), a step
that blocks until the test releases it (``block``), one that hangs (``sleep``) or one that
exits 0 without doing anything (``noop``). The store is a local folder shared by the
controller and the step subprocesses; its ``storage.uri`` is in the ConfigMap's config.yaml.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.errors import ConfigError, InvalidVersionIdError, KubernetesBadRequestError
from mlops.kube.client import load_target
from mlops.kube.controller import resolve_run_id
from mlops.kube.manifests import (
    WAIT_MARGIN_SECONDS,
    build_job,
    job_name,
    job_state,
    label_value,
    step_wait_seconds,
)
from tests.chart_render import chart_config, step_pod_template
from tests.fakes.kube import FakeKubeAPI

pytest_plugins = ["tests.fakes.kube_fixtures"]  # kube_api_factory

ROOT = Path(__file__).resolve().parents[1]
NS = "mlops"
JOBS_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"

WRAPPER = r'''
import os, runpy, sys, time
step = sys.argv[1]
mode = os.environ.get("WRAP_" + step.replace("-", "_").upper(), "")
state = os.environ["WRAP_DIR"]
if mode == "fail-once":
    marker = os.path.join(state, step + ".failed-once")
    if not os.path.exists(marker):
        open(marker, "w").close()
        print(f"{step}: transient failure injected by the test wrapper", flush=True)
        sys.exit(1)
elif mode == "block":
    open(os.path.join(state, step + ".started"), "w").close()
    end = time.monotonic() + 60
    while not os.path.exists(os.path.join(state, "release")) and time.monotonic() < end:
        time.sleep(0.05)
elif mode == "sleep":
    time.sleep(60)
    sys.exit(1)
elif mode == "stubborn":  # ignores SIGTERM: stops only at SIGKILL, after the grace period
    import signal
    signal.signal(signal.SIGTERM, lambda *_: print(f"{step}: SIGTERM ignored", flush=True))
    print(f"{step}: working past the deadline", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(0.05)
    sys.exit(1)
elif mode == "noop":
    sys.exit(0)
sys.argv = ["mlops", *sys.argv[1:]]
runpy.run_module("mlops", run_name="__main__")
'''


class Env:
    """One fake cluster, its ConfigMap, a local store and a kubeconfig."""

    def __init__(self, api: FakeKubeAPI, tmp: Path) -> None:
        self.api = api
        self.tmp = tmp
        self.store = tmp / "store"
        self.state = tmp / "wrap"
        self.state.mkdir()
        self.kubeconfig = str(api.write_kubeconfig(tmp / "kubeconfig", namespace=NS))
        self.config_file = tmp / "config.yaml"
        self.modes: dict[str, str] = {}
        self.configure()

    def configure(self, **k8s: Any) -> None:
        """Write the config (controller file and ConfigMap) with these kubernetes keys (and
        the chart's step pod unless ``pod_template`` is given)."""
        doc: dict[str, Any] = {
            "storage": {"uri": str(self.store)},
            "data": {"n_samples": 300, "n_features": 4},
            "kubernetes": {"namespace": NS, "step_timeout_seconds": 120, **k8s},
        }
        self.write_config(doc)

    def write_config(self, doc: dict[str, Any]) -> None:
        """Write ``doc`` as the controller's config file and the ConfigMap the step pod
        mounts. As the chart renders it, its ``kubernetes`` section gets the chart's step pod
        (:func:`tests.chart_render.step_pod_template`) when it has none."""
        doc = copy.deepcopy(doc)
        k8s = doc.setdefault("kubernetes", {})
        k8s.setdefault("pod_template", step_pod_template())
        volumes = {v.get("name"): v for v in k8s["pod_template"].get("volumes") or []}
        name = (volumes.get("config") or {}).get("configMap", {}).get("name", "mlops-config")
        text = yaml.safe_dump(doc)
        self.config_file.write_text(text)
        if self.api.get_object("configmaps", NS, name) is not None:
            self.api.delete_object("configmaps", NS, name, None)
        self.api.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": NS},
                                "data": {"config.yaml": text}})

    def set_modes(self, **modes: str) -> None:
        """Wrapper modes per step, e.g. ``ingest="fail-once"``."""
        self.modes = {f"WRAP_{k.upper()}": v for k, v in modes.items()}
        self.api.base_env = self.base_env()

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLOPS_", "WRAP_", "KUBECONFIG"))}
        return {**env, "PYTHONPATH": str(ROOT), "WRAP_DIR": str(self.state), **self.modes}

    def args(self, run_id: str | None, *extra: str) -> list[str]:
        out = ["controller", "--config", str(self.config_file), "--kubeconfig", self.kubeconfig]
        return out + (["--run-id", run_id] if run_id else []) + list(extra)

    def spawn(self, run_id: str) -> subprocess.Popen[str]:
        """The controller as a separate process (``python -m jobs.controller``)."""
        return subprocess.Popen([sys.executable, "-m", "jobs.controller", *self.args(run_id)[1:]],
                                cwd=self.tmp, env=self.base_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self, run_id: str, name: str) -> dict[str, Any] | None:
        path = self.store / "runs" / run_id / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def job_names(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.api.jobs(NS))

    def posts(self) -> int:
        return sum(1 for r in self.api.requests if r.method == "POST" and r.path == JOBS_PATH)


@pytest.fixture
def env(kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Env:
    """A fake cluster whose ``mlops`` command is the test wrapper."""
    for var in ("MLOPS_RUN_ID", "MLOPS_JOB_NAME", "MLOPS_JOB_UID", "MLOPS_NAMESPACE",
                "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    api = kube_api_factory(namespaces=("default", NS),
                           command_map={"mlops": [sys.executable, str(wrapper)]})
    e = Env(api, tmp_path)
    api.base_env = e.base_env()
    return e


def run(env: Env, capsys: pytest.CaptureFixture[str], run_id: str | None,
        *extra: str) -> tuple[int, str, str]:
    """The controller in this process: (exit code, stdout, stderr)."""
    code = main(env.args(run_id, "--json", *extra) if "--json" not in extra
                else env.args(run_id, *extra))
    out, err = capsys.readouterr()
    return code, out, err


def wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)


# --- pure parts ---------------------------------------------------------------------------
def test_job_names_are_dns_labels_deterministic_and_unique() -> None:
    assert job_name("mlops", "20261128-130000-ab12", "monitor-check") == \
        "mlops-20261128-130000-ab12-monitor-check"
    long_a = job_name("mlops", "r" * 100 + "a", "train")
    long_b = job_name("mlops", "r" * 100 + "b", "train")
    assert len(long_a) <= 63 and long_a != long_b and long_a == job_name("mlops", "r" * 100 + "a",
                                                                        "train")
    assert "-train-" in long_a
    # Lowercasing could make two run ids collide: a changed name gets a hash.
    assert job_name("mlops", "Run_1", "train") != job_name("mlops", "run-1", "train")
    assert job_name("mlops", "Run_1", "train").startswith("mlops-run-1-train-")
    assert label_value("ok.run_1") == "ok.run_1"
    assert len(label_value("x" * 128)) <= 63


def test_job_manifest_is_strictly_valid_and_carries_every_setting() -> None:
    """The pod comes from the chart (real Helm engine): values set there reach the Job."""
    import kubernetes_validate

    from mlops.kube.manifests import Owner

    chart = chart_config({
        "image": {"repository": "registry.example:5000/ml/mlops", "tag": "1.2.3"},
        "credentials": {"existingSecret": "s3-keys", "envFrom": True, "mount": True},
        "env": {"A": "1"}, "stepJobs": {"labels": {"team": "ml"}, "ttlSecondsAfterFinished": 60},
        "persistence": {"accessModes": ["ReadWriteMany"]},  # steps on other nodes (pool=big)
        "steps": {"train": {"nodeSelector": {"pool": "big"}, "backoffLimit": 5,
                            "tolerations": [{"key": "gpu", "operator": "Exists"}],
                            "activeDeadlineSeconds": 99}}}, name="nightly")
    cfg = Config.from_dict({"kubernetes": chart["kubernetes"]})
    job = build_job(cfg.kubernetes, "r1", "train", namespace="ns", owner=Owner("ctl", "u-1"),
                    extra_env={"MLOPS_STORAGE_URI": "s3://b"})
    kubernetes_validate.validate(job, "1.30", strict=True)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert job["metadata"]["name"] == "nightly-mlops-r1-train"
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                                   "name": "ctl", "uid": "u-1",
                                                   "controller": False,
                                                   "blockOwnerDeletion": True}]
    assert job["metadata"]["labels"]["mlops/run-id"] == "r1"
    assert job["metadata"]["labels"]["team"] == "ml"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"],
            spec["ttlSecondsAfterFinished"]) == (5, 99, 60)
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"] == {
        "containerName": "train", "operator": "In", "values": [2]}
    assert c["image"] == "registry.example:5000/ml/mlops:1.2.3"
    assert c["command"] == ["tini", "--", "mlops"]
    assert c["args"] == ["train", "--config", "/etc/mlops/config.yaml", "--run-id", "r1"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["nodeSelector"] == {"pool": "big"} and pod["restartPolicy"] == "Never"
    assert {"name": "MLOPS_STORAGE_URI", "value": "s3://b"} in c["env"]
    assert {"name": "A", "value": "1"} in c["env"]
    assert c["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    assert {v["name"] for v in pod["volumes"]} == {"config", "tmp", "credentials", "data"}
    # Everything else is the chart's step pod as rendered, untouched.
    template = cfg.kubernetes.pod_template
    for key in ("securityContext", "volumes", "serviceAccountName",
                "automountServiceAccountToken", "terminationGracePeriodSeconds"):
        assert pod[key] == template[key], key
    assert c["volumeMounts"] == template["containers"][0]["volumeMounts"]


def test_a_config_without_the_charts_step_pod_is_refused_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The step pod has one definition, the chart's: no pod is built from other keys."""
    with pytest.raises(KubernetesBadRequestError,
                       match=r"config key 'kubernetes.pod_template' is empty: the step pod is "
                             r"defined by the Helm chart"):
        build_job(Config.from_dict({}).kubernetes, "r1", "ingest", namespace="ns")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"uri": str(tmp_path / "store")}}))
    code = main(["controller", "--dry-run", "--run-id", "r1", "--config", str(config)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "'kubernetes.pod_template' is empty" in err[0], err
    # The flat keys that used to build a second pod are refused, saying what replaced them.
    with pytest.raises(ConfigError, match=r"unknown config key 'kubernetes.image' \(removed: "
                                          r"the step pod is defined once, by the Helm chart"):
        Config.from_dict({"kubernetes": {"image": "mlops:1"}})


def test_invalid_image_is_refused_before_anything_is_created() -> None:
    template = step_pod_template()
    template["containers"][0]["image"] = "My Image:latest"
    cfg = Config.from_dict({"kubernetes": {"pod_template": template}})
    with pytest.raises(KubernetesBadRequestError,
                       match=r"pod_template\.containers\[0\]\.image.*'My Image:latest'"):
        build_job(cfg.kubernetes, "r1", "ingest", namespace="ns")


def test_run_id_precedence() -> None:
    env = {"MLOPS_RUN_ID": "from-env", "MLOPS_JOB_NAME": "ctl-job"}
    assert resolve_run_id("flag", env) == "flag"
    assert resolve_run_id(None, env) == "from-env"
    assert resolve_run_id(None, {"MLOPS_JOB_NAME": "ctl-job"}) == "ctl-job"
    assert resolve_run_id(None, {})[:2] == "20"
    with pytest.raises(InvalidVersionIdError, match=r"unsafe run id \(--run-id\) '../x'"):
        resolve_run_id("../x", {})


def test_namespace_precedence(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u",
                                               "namespace": "ctx-ns"}}]}))
    def ns(**kw: Any) -> str:
        return load_target(kubeconfig=str(kc), **kw).namespace
    env = {"MLOPS_NAMESPACE": "env-ns"}
    assert ns(namespace="flag", config_namespace="cfg", env=env) == "flag"
    assert ns(config_namespace="cfg", env=env) == "cfg"
    assert ns(env=env) == "env-ns"
    assert ns(env={}) == "ctx-ns"
    assert load_target(env={"KUBECONFIG": str(kc)}).source == str(kc)


# --- full runs ----------------------------------------------------------------------------
def test_full_run_trains_then_next_run_skips_train_using_the_watch_api(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside its own Job the controller takes the run id from it and owns the step Jobs.
    monkeypatch.setenv("MLOPS_JOB_NAME", "mlops-nightly-1")
    monkeypatch.setenv("MLOPS_JOB_UID", "0c6f3c1e-0000-4000-8000-000000000001")
    code, out, err = run(env, capsys, None)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["run_id"] == "mlops-nightly-1" and summary["retrained"] is True
    assert env.job_names() == [f"mlops-mlops-nightly-1-{s}" for s in
                               ("ingest", "monitor-check", "train")]
    for job in env.api.jobs(NS):
        assert job["metadata"]["ownerReferences"][0]["name"] == "mlops-nightly-1"
        assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlops-controller"
        assert job["status"]["succeeded"] == 1
        # The pod that ran is the chart's step pod (its only definition), as rendered.
        pod, chart_pod = job["spec"]["template"]["spec"], step_pod_template()
        assert pod["securityContext"]["runAsUser"] == chart_pod["securityContext"]["runAsUser"]
        assert [v["name"] for v in pod["volumes"]] == [v["name"] for v in chart_pod["volumes"]]
        assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]["sizeLimit"] == "1Gi"
    assert env.result("mlops-nightly-1", "summary")["model_version"] == "mlops-nightly-1"
    assert env.result("mlops-nightly-1", "controller")["status"] == "succeeded"

    # The controller watched each Job (watch=true, fieldSelector) instead of polling GETs.
    reqs = env.api.requests
    watches = [r for r in reqs if r.path == JOBS_PATH and r.query.get("watch") in ("true", "1")]
    assert {r.query.get("fieldSelector") for r in watches} == {
        f"metadata.name={n}" for n in env.job_names()}
    assert all(r.query.get("resourceVersion") for r in watches)
    gets = [r for r in reqs if r.method == "GET" and r.path.startswith(JOBS_PATH + "/")]
    assert len(gets) <= 3 * 2, gets

    # Next night, same data: the model is fine, train is not launched. Two 503s on create
    # are retried.
    monkeypatch.delenv("MLOPS_JOB_NAME")
    monkeypatch.delenv("MLOPS_JOB_UID")
    env.api.inject_faults("POST", JOBS_PATH, 503, count=2)
    code, out, err = run(env, capsys, "night-2")
    assert code == 0, err
    assert json.loads(out)["retrained"] is False
    assert "mlops-night-2-train" not in env.job_names()
    assert "mlops-night-2-monitor-check" in env.job_names()
    assert env.result("night-2", "controller")["steps"]["train"] == "not needed"
    assert "retrying" in err


def test_watch_is_reestablished_after_it_ends_or_fails(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import mlops.kube.client

    # The server ends each watch after 1 s.
    monkeypatch.setattr(mlops.kube.client, "WATCH_SECONDS", 1)
    env.set_modes(ingest="block")
    env.api.inject_faults("GET", JOBS_PATH, 500, count=1)  # the first watch request fails
    release = threading.Timer(3.0, (env.state / "release").touch)
    release.start()
    try:
        code, _, err = run(env, capsys, "r-rewatch")
    finally:
        release.cancel()
        (env.state / "release").touch()
    assert code == 0, err
    watches = [r for r in env.api.requests if r.query.get("watch") in ("true", "1")
               and r.query.get("fieldSelector") == "metadata.name=mlops-r-rewatch-ingest"]
    assert len(watches) >= 3  # failed, ended after 1 s, ..., the one that saw Complete
    assert all(r.query.get("timeoutSeconds") == "1" for r in watches)


def test_step_failing_once_is_retried_within_backoff_limit(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.set_modes(ingest="fail-once")
    code, _, err = run(env, capsys, "r-retry")
    assert code == 0, err
    job = env.api.get_object("jobs", NS, "mlops-r-retry-ingest")
    assert job["status"]["failed"] == 1 and job["status"]["succeeded"] == 1
    assert len(env.api.pods(NS, "mlops-r-retry-ingest")) == 2


def test_bad_input_fails_fast_and_shows_the_pod_log(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    missing = env.tmp / "no-such-data.csv"
    doc = yaml.safe_load(env.config_file.read_text())
    doc["data"]["source"] = str(missing)
    env.write_config(doc)
    code, _, err = run(env, capsys, "r-bad")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("mlops: error: step ingest failed: Job mlops-r-bad-ingest")
    assert "exit code 2" in line and "pod log:" in line and "no-such-data.csv" in line
    assert len(env.api.pods(NS, "mlops-r-bad-ingest")) == 1  # FailJob: never retried
    # Bad input: nothing is stored but the controller's record of the failure (exit 2
    # too), which `mlops status` reads: unhealthy at once, naming the run and the error.
    assert sorted(p.name for p in (env.store / "runs" / "r-bad").iterdir()) == \
        ["controller.json"]
    record = env.result("r-bad", "controller")
    assert record["status"] == "failed" and record["exit_code"] == 2
    assert record["failed_step"] == "ingest" and "no-such-data.csv" in record["message"]
    assert main(["status", "-c", str(env.config_file)]) == 3
    assert "the latest finished run r-bad failed: step ingest: step ingest failed" in \
        capsys.readouterr().out


def test_active_deadline_exceeded_fails_with_exit_1(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.configure(steps={"ingest": {"active_deadline_seconds": 1}})
    env.set_modes(ingest="sleep")
    code, _, err = run(env, capsys, "r-deadline")
    assert code == 1
    assert "step ingest failed: Job mlops-r-deadline-ingest DeadlineExceeded" in err
    assert env.result("r-deadline", "controller")["status"] == "failed"


def test_deadline_is_reported_with_the_pod_log_not_as_a_controller_timeout(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Kubernetes 1.31+: FailureTarget comes at the deadline, Failed only after the grace
    period; a controller waiting exactly the deadline used to time out in between."""
    env.api.termination_grace_seconds = 30.0  # the fake's cap: the pod's 3 s apply
    template = step_pod_template()
    template["terminationGracePeriodSeconds"] = 3
    env.configure(step_timeout_seconds=2, pod_template=template,
                  steps={"ingest": {"active_deadline_seconds": 2}})
    env.set_modes(ingest="stubborn")
    code, _, err = run(env, capsys, "r-grace")
    assert code == 1, err
    assert "step ingest failed: Job mlops-r-grace-ingest DeadlineExceeded" in err
    assert "ingest: working past the deadline" in err  # the pod's log
    assert "did not finish within" not in err
    job = env.api.wait_for_job(NS, "mlops-r-grace-ingest", timeout=20)
    types = [c["type"] for c in job["status"]["conditions"]]
    assert types.index("FailureTarget") < types.index("Failed")


def test_step_wait_covers_the_deadline_and_grace_period() -> None:
    k8s = Config.from_dict({"kubernetes": {
        "step_timeout_seconds": 900, "pod_template": {"terminationGracePeriodSeconds": 45},
        "steps": {"train": {"active_deadline_seconds": 900}}}}).kubernetes
    assert step_wait_seconds(k8s, "train") == 900 + 45 + WAIT_MARGIN_SECONDS
    assert step_wait_seconds(k8s, "ingest") == 3600 + 45 + WAIT_MARGIN_SECONDS
    longer = dataclasses.replace(k8s, step_timeout_seconds=99999)
    assert step_wait_seconds(longer, "train") == 99999


@pytest.mark.parametrize(("conditions", "state"), [
    ([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}], "Failed"),
    ([{"type": "SuccessCriteriaMet", "status": "True"}], "Complete"),
    ([{"type": "Complete", "status": "True"}], "Complete"),
    ([{"type": "Suspended", "status": "True"}], None),
    ([{"type": "FailureTarget", "status": "False"}], None),
])
def test_terminal_conditions_of_1_31(conditions: list[dict[str, str]], state: str | None) -> None:
    assert job_state({"status": {"conditions": conditions}}) == state


def test_step_timeout_of_the_controller(env: Env, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in: a Job that outlives its deadline plus grace period (a stuck Job controller)
    # cannot happen in the fake, so the controller's wait is cut to 1 s here.
    monkeypatch.setattr("mlops.kube.controller.step_wait_seconds", lambda k8s, step: 1.0)
    env.set_modes(ingest="sleep")
    code, _, err = run(env, capsys, "r-timeout")
    assert code == 1
    assert "step Job mlops-r-timeout-ingest in namespace 'mlops' did not finish within 1 s" \
        in err


def test_completed_job_without_result_is_bad_input(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.set_modes(ingest="noop")
    code, _, err = run(env, capsys, "r-noresult")
    assert code == 2
    assert "step ingest Job mlops-r-noresult-ingest completed but its result" in err
    assert "runs/r-noresult/ingest.json is not in the store" in err


# --- resume, concurrency, SIGTERM ---------------------------------------------------------
def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:  # bounded, with room for a run of three step processes on a loaded 2-core machine
        return proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_killed_controller_resumes_without_rerunning_ingest(env: Env) -> None:
    env.set_modes(monitor_check="block")
    proc = env.spawn("r-resume")
    try:
        wait_until(lambda: (env.state / "monitor-check.started").exists())
    finally:
        proc.kill()
        _stop(proc)
    ingest_before = (env.store / "runs" / "r-resume" / "ingest.json").read_bytes()
    uid = env.api.get_object("jobs", NS, "mlops-r-resume-ingest")["metadata"]["uid"]
    env.api.clear_requests()
    second = env.spawn("r-resume")
    try:  # release monitor-check only once the second controller has met its Job (409)
        wait_until(lambda: env.posts() >= 1)
    finally:
        (env.state / "release").touch()
    out, err = _stop(second)
    assert "retrained" in out, err
    # Second controller: monitor-check's Job adopted (409) and train created - no ingest.
    assert env.posts() == 2
    assert env.api.get_object("jobs", NS, "mlops-r-resume-ingest")["metadata"]["uid"] == uid
    assert len(env.api.pods(NS, "mlops-r-resume-ingest")) == 1
    assert len(env.api.pods(NS, "mlops-r-resume-monitor-check")) == 1
    assert (env.store / "runs" / "r-resume" / "ingest.json").read_bytes() == ingest_before
    assert env.result("r-resume", "controller")["steps"]["ingest"] == "skipped (result exists)"


def test_two_controllers_with_one_run_id_create_one_set_of_jobs(env: Env) -> None:
    procs = [env.spawn("r-twin"), env.spawn("r-twin")]
    try:
        outs = [_stop(p) for p in procs]
    finally:  # a timeout of the first must not leave the second running
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert env.job_names() == [f"mlops-r-twin-{s}" for s in ("ingest", "monitor-check", "train")]
    for name in env.job_names():
        assert len(env.api.pods(NS, name)) == 1
    assert env.result("r-twin", "summary")["retrained"] is True


def test_sigterm_records_terminated_and_exits_143(env: Env) -> None:
    env.set_modes(ingest="block")
    proc = env.spawn("r-term")
    try:
        wait_until(lambda: (env.state / "ingest.started").exists())
        proc.send_signal(signal.SIGTERM)
        _, err = _stop(proc)
    finally:
        (env.state / "release").touch()
    assert proc.returncode == 143
    assert "controller terminated by SIGTERM" in err
    status = env.result("r-term", "controller")
    assert status["status"] == "terminated" and "step ingest" in status["message"]


# --- API errors ---------------------------------------------------------------------------
@pytest.fixture
def quiet(env: Env) -> Iterator[Env]:
    """The env, asserting afterwards that no step Job was created."""
    yield env
    assert env.job_names() == []


def test_missing_kubeconfig(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    quiet.kubeconfig = str(quiet.tmp / "nope" / "kubeconfig")
    code, _, err = run(quiet, capsys, "r1")
    assert code == 2
    assert f"mlops: error: kubeconfig file not found: {quiet.kubeconfig}" in err


def test_invalid_kubeconfig(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    bad = quiet.tmp / "bad-kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\n")
    quiet.kubeconfig = str(bad)
    code, _, err = run(quiet, capsys, "r1")
    assert code == 2
    assert f"mlops: error: kubeconfig {bad} is invalid" in err


def test_missing_namespace(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(quiet, capsys, "r1", "--namespace", "nowhere")
    assert code == 2
    assert "mlops: error: namespace 'nowhere' does not exist" in err
    # The store is unchanged but for the record of the failure, which status reads.
    assert [p.relative_to(quiet.store).as_posix() for p in quiet.store.rglob("*")
            if p.is_file()] == ["runs/r1/controller.json"]
    record = quiet.result("r1", "controller")
    assert record is not None and record["status"] == "failed" and record["exit_code"] == 2


def test_rbac_forbidden(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    quiet.api.forbid("create", "jobs")
    code, _, err = run(quiet, capsys, "r1")
    assert code == 2
    assert "mlops: error: forbidden by RBAC in namespace 'mlops' (create Job mlops-r1-ingest)" \
        in err


def test_owner_reference_needs_finalizers_permission(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """OwnerReferencesPermissionEnforcement (OpenShift): blockOwnerDeletion needs update on
    jobs/finalizers, which the chart's Role grants; without it the first Job gets 403."""
    monkeypatch.setenv("MLOPS_JOB_NAME", "ctl-1")
    monkeypatch.setenv("MLOPS_JOB_UID", "0c6f3c1e-0000-4000-8000-000000000002")
    env.api.enforce_owner_references = True
    rules = [{"apiGroups": ["batch"], "resources": ["jobs"],
              "verbs": ["create", "get", "list", "watch", "delete"]},
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    env.api.use_role({"metadata": {"namespace": NS}, "rules": rules})
    env.set_modes(ingest="noop")
    code, _, err = run(env, capsys, "r-owner")
    assert code == 2
    assert ("forbidden by RBAC in namespace 'mlops' (create Job mlops-r-owner-ingest): "
            "jobs.batch \"mlops-r-owner-ingest\" is forbidden: cannot set blockOwnerDeletion "
            "if an ownerReference refers to a resource you can't set finalizers on") in err
    assert env.job_names() == []
    env.api.use_role({"metadata": {"namespace": NS}, "rules": [*rules, {
        "apiGroups": ["batch"], "resources": ["jobs/finalizers"], "verbs": ["update"]}]})
    env.set_modes(ingest="noop", monitor_check="noop")
    code, _, err = run(env, capsys, "r-owner")
    assert "mlops-r-owner-ingest" in env.job_names(), err


def test_invalid_job_is_a_422(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    quiet.configure(labels={"team": "not a valid value!"})
    code, _, err = run(quiet, capsys, "r1")
    assert code == 2
    assert "the Kubernetes API refused to create Job mlops-r1-ingest (HTTP 422)" in err


def test_invalid_image_exits_2(quiet: Env, capsys: pytest.CaptureFixture[str]) -> None:
    template = step_pod_template()
    template["containers"][0]["image"] = "Not/An Image"
    quiet.configure(pod_template=template)
    code, _, err = run(quiet, capsys, "r1")
    assert code == 2
    assert ("config key 'kubernetes.pod_template.containers[0].image' (the chart's image "
            "values) is not a valid image reference") in err
    assert quiet.job_names() == [] and not (quiet.store / "runs").exists()


def test_persistent_503_gives_up_with_exit_1(quiet: Env,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    quiet.api.inject_faults("POST", JOBS_PATH, 503, count=10)
    code, _, err = run(quiet, capsys, "r1")
    assert code == 1
    assert "Kubernetes API error (create Job mlops-r1-ingest): HTTP 503" in err
    assert quiet.posts() == 4  # API_ATTEMPTS, then it stops


# --- the step entrypoints -----------------------------------------------------------------
def test_step_entrypoints_write_results_and_exit_with_the_documented_codes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs import run as run_job

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"uri": str(tmp_path / "store")},
                                   "data": {"n_samples": 200, "n_features": 3}}))
    # monitor-check before ingest: bad input, nothing written.
    assert run_job("monitor-check", ["--config", str(cfg), "--run-id", "r1"]) == 2
    assert "run ingest before monitor-check" in capsys.readouterr().err
    assert run_job("ingest", ["--config", str(cfg), "--run-id", "r1"]) == 0
    assert (tmp_path / "store" / "runs" / "r1" / "ingest.json").exists()
    assert run_job("ingest", ["--config", str(tmp_path / "nope.yaml"), "--run-id", "r1"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_controller_module_imports_no_kubernetes_client() -> None:
    """The CLI imports the controller for every command (SIGTERM handling), and the
    kubernetes client is the k8s extra: only run_controller imports mlops.kube.client."""
    code = ("import sys, mlops.cli, mlops.kube.controller, mlops.kube.dask, "
            "mlops.kube.manifests; assert 'kubernetes' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
