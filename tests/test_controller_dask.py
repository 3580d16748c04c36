"""``dask.cluster: ephemeral`` under the controller, end to end on the fake API server.

The chart is rendered with the real Helm engine; its ConfigMap and its CronJob's job
template are created in the fake API server (tests/fakes/kube/), whose kubelet runs the
controller container; the controller creates the run's Dask scheduler pod, its headless
Service and the worker pods over HTTP with the real ``kubernetes`` client, authorized by the
chart's own Role, with owner-reference permissions enforced. The fake's kubelet runs those
pods as local processes - the real ``dask scheduler`` / ``dask worker`` CLI, each pod on an
address of its own in 127.0.0.0/8 - and the step Jobs' ``mlops`` processes connect to the
address the controller handed them.

What is stood in for, and why:

* the image: the fake maps the ``mlops`` command to the test wrapper of
  tests/test_controller.py (``python -m mlops`` from this checkout) and ``dask`` to
  ``python -m tests.fakes.kube.node dask`` (the image's dask CLI, seeing the fake node's 16
  CPUs instead of this machine's 2);
* the cluster DNS: the fake's kubelet resolves ``<service>.<namespace>.svc`` in a
  container's env and args to the IP of the Ready pod behind the headless Service, which is
  what a cluster's DNS answers for a headless Service (the name cannot resolve on this
  machine otherwise);
* the in-cluster service-account token (a kubeconfig through ``KUBECONFIG``) and the
  PersistentVolumeClaim (a temp folder), as in tests/test_chart_controller.py.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import Config, load_config
from mlops.controller import EphemeralCluster
from mlops.data import generate_synthetic_data
from mlops.errors import ClusterError, ConfigError
from mlops.k8s import KubeClient, build_dask_cluster, load_target
from tests.chart_render import merge_values, render_chart, values_file
from tests.conftest import skip_or_fail
from tests.fakes.kube import FakeKubeAPI
from tests.test_controller import WRAPPER

try:
    import distributed  # noqa: F401
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("distributed is not installed (the mlops[dask] extra)")

pytest_plugins = ["tests.fakes.kube_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
NS = "mlops"
RELEASE = "nightly"
# The image's `dask` command, on a fake node of FakeKubeAPI.node_cpus (16) CPUs.
DASK_CLI = [sys.executable, "-m", "tests.fakes.kube.node", "dask"]
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def _source(tmp_path: Path, parts: int = 2) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(parts):
        generate_synthetic_data(200, 4, i).to_parquet(src / f"part-{i}.parquet", index=False)
    return src


def _values(source: Path, **dask: Any) -> dict[str, Any]:
    return merge_values(values_file("values-dev.yaml"), {
        "dask": {"cluster": "ephemeral", "nWorkers": 2, "startTimeoutSeconds": 60,
                 "scheduler": {"resources": SMALL}, "worker": {"resources": SMALL}, **dask},
        "stepJobs": {"timeoutSeconds": 120},
        "config": {"data": {"engine": "dask", "source": str(source)},
                   "dask": {"threads_per_worker": 1, "memory_limit": "900MiB",
                            "connect_timeout": 60}},
        # The store path through the documented override (the fake maps mount paths in env
        # values and args, not inside config.yaml), as in tests/test_chart_controller.py.
        "env": {"MLOPS_STORAGE_URI": "/data"},
        "persistence": {"accessModes": ["ReadWriteMany"]},
    })


def _one(docs: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for ds in docs.values() for d in ds if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _wait(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _dask_pods(api: FakeKubeAPI) -> list[dict[str, Any]]:
    return [p for p in api.pods(NS) if str(p["metadata"].get("labels", {}).get(
        "app.kubernetes.io/component", "")).startswith("dask-")]


def _fake(kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path,
          docs: dict[str, list[dict[str, Any]]], **env: str) -> tuple[FakeKubeAPI, Path]:
    """The fake cluster of the chart's objects: the Role enforced, the ConfigMap created."""
    store = tmp_path / "pvc"
    store.mkdir()
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    (tmp_path / "wrap").mkdir()
    api = kube_api_factory(namespaces=("default", NS),
                           command_map={"mlops": [sys.executable, str(wrapper)],
                                        "dask": DASK_CLI},
                           pvc_dirs={_one(docs, "PersistentVolumeClaim")["metadata"]["name"]:
                                     store},
                           enforce_owner_references=True, termination_grace_seconds=5.0)
    api.use_role(_one(docs, "Role"))  # exactly what the chart's Role grants
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    api.base_env = {**{k: v for k, v in os.environ.items()
                       if not k.startswith(("MLOPS_", "WRAP_", "DASK_"))},
                    "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT),
                    "WRAP_DIR": str(tmp_path / "wrap"), **env}
    api.create_object(_one(docs, "ConfigMap"))
    return api, store


def _replica_sets(api: FakeKubeAPI) -> list[str]:
    return [r["metadata"]["name"] for r in api.created("replicasets", NS)
            if api.get_object("replicasets", NS, r["metadata"]["name"]) is not None]


def _controller_job(docs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """The CronJob's job template as ``kubectl create job --from=cronjob/...`` makes it."""
    job = copy.deepcopy(_one(docs, "CronJob")["spec"]["jobTemplate"])
    job.update({"apiVersion": "batch/v1", "kind": "Job"})
    job["metadata"] = {**job.get("metadata", {}), "name": name, "namespace": NS}
    container = job["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("command", ["mlops"])  # the image's ENTRYPOINT
    return job


def _logs(api: FakeKubeAPI, pods: list[dict[str, Any]]) -> str:
    return "\n".join(f"--- {p['metadata']['name']}\n" + api.pod_log(NS, p["metadata"]["name"])
                     for p in pods)


def test_a_night_on_the_runs_own_cluster_which_is_removed_afterwards(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    docs = render_chart(_values(_source(tmp_path)), name=RELEASE, namespace=NS)
    api, store = _fake(kube_api_factory, tmp_path, docs)
    run_id = f"{RELEASE}-e2e-1"
    ctl = api.create_object(_controller_job(docs, run_id))

    done = api.wait_for_job(NS, run_id, timeout=240)
    pods = api.created("pods", NS)
    log = _logs(api, pods)
    assert "Complete" in {c["type"] for c in done["status"]["conditions"]}, log
    summary = json.loads((store / "runs" / run_id / "summary.json").read_text())
    assert summary["retrained"] is True
    assert json.loads((store / "runs" / run_id / "controller.json").read_text())[
        "status"] == "succeeded"

    # The controller created a scheduler ReplicaSet, its Service and a worker ReplicaSet of
    # dask.nWorkers pods ...
    prefix = f"{RELEASE}-mlops-{run_id}"
    scheduler = f"{prefix}-dask-scheduler"
    (sched_rs, worker_rs) = [api.get_object("replicasets", NS, n) or {"gone": n}
                             for n in (scheduler, f"{prefix}-dask-worker")]
    created_rs = {r["metadata"]["name"]: r for r in api.created("replicasets", NS)}
    assert sorted(created_rs) == [scheduler, f"{prefix}-dask-worker"], (sched_rs, worker_rs)
    assert created_rs[f"{prefix}-dask-worker"]["spec"]["replicas"] == 2
    dask_pods = {p["metadata"]["name"]: p for p in pods
                 if p["metadata"]["name"].startswith(f"{prefix}-dask-")}
    workers = sorted(n for n in dask_pods if n.startswith(f"{prefix}-dask-worker-"))
    assert len(workers) == 2 and len(dask_pods) == 3, sorted(dask_pods)
    (service,) = api.created("services", NS)
    assert service["metadata"]["name"] == scheduler and service["spec"]["clusterIP"] == "None"
    # ... from the chart's step pod: same image, identity, hardening, the dask values'
    # resources; the ReplicaSets owned by the controller's Job, their pods by them.
    step_pod = yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"])[
        "kubernetes"]["pod_template"]
    for name, pod in dask_pods.items():
        spec, (container,) = pod["spec"], pod["spec"]["containers"]
        assert container["image"] == step_pod["containers"][0]["image"]
        assert container["securityContext"] == step_pod["containers"][0]["securityContext"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        # Workers also ask for the disk of their spill volume (dask.worker.spill.size).
        disk = {} if "scheduler" in name else {"ephemeral-storage": "10Gi"}
        assert container["resources"] == {**SMALL,
                                          "requests": {**SMALL["requests"], **disk}}
        assert container["command"] == ["tini", "--", "dask"]
        (ref,) = pod["metadata"]["ownerReferences"]
        assert ref["kind"] == "ReplicaSet" and ref["controller"] is True
        assert pod["metadata"]["labels"]["mlops/run-id"] == run_id, name
    for rs in created_rs.values():
        assert rs["metadata"]["ownerReferences"] == [{
            "apiVersion": "batch/v1", "kind": "Job", "name": run_id,
            "uid": ctl["metadata"]["uid"], "controller": False, "blockOwnerDeletion": True}]
    assert service["metadata"]["ownerReferences"][0]["uid"] == ctl["metadata"]["uid"]

    # Every step really ran on that cluster: it connected to the Service's address, where
    # both workers of the controller were registered, and the scheduler saw one client
    # per step (not a local cluster of the step's own).
    address = f"tcp://{scheduler}.{NS}.svc:8786"
    (scheduler_pod,) = [n for n in dask_pods if n.startswith(f"{scheduler}-")]
    scheduler_log = api.pod_log(NS, scheduler_pod)
    found = re.search(r"Scheduler at:\s+(tcp://127\.[0-9.]+:8786)", scheduler_log)
    assert found, scheduler_log
    steps = {j["metadata"]["labels"]["mlops/step"]: j["metadata"]["name"]
             for j in api.jobs(NS) if "mlops/step" in j["metadata"].get("labels", {})}
    assert sorted(steps) == ["ingest", "monitor-check", "train"]
    # (monitor-check without a model to score reads only the stored sketches: no cluster)
    for job in (steps["ingest"], steps["train"]):
        step_log = _logs(api, api.pods(NS, job))
        # (the Service's name, resolved to the scheduler pod's IP as the cluster DNS would)
        assert f"dask: connected to {found.group(1)}" in step_log, step_log
        assert f"2 worker(s): {workers[0]}, {workers[1]}" in step_log, step_log
        assert "using a local cluster" not in step_log
        env = {e["name"]: e.get("value") for e in api.get_object("jobs", NS, job)[
            "spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MLOPS_DASK_ADDRESS"] == address
    assert scheduler_log.count("Receive client connection") >= 2, scheduler_log
    assert scheduler_log.count("Register worker") >= 2, scheduler_log

    # Afterwards every scheduler and worker pod, the ReplicaSets and the Service are gone.
    assert _dask_pods(api) == [] and api.services(NS) == []
    assert _replica_sets(api) == []


def test_a_failing_step_still_removes_the_cluster(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The controller in this process this time (faster); its step fails with exit 2.
    docs = render_chart(_values(_source(tmp_path), nWorkers=1), name=RELEASE, namespace=NS)
    api, store = _fake(kube_api_factory, tmp_path, docs, WRAP_INGEST="sleep")
    config = yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"])
    config["storage"]["uri"] = str(store)
    config["kubernetes"]["steps"]["ingest"]["active_deadline_seconds"] = 2
    config_file = tmp_path / "controller.yaml"
    config_file.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MLOPS_JOB_NAME", "ctl-1")
    monkeypatch.setenv("MLOPS_JOB_UID", "0c6f3c1e-0000-4000-8000-000000000002")
    code = main(["controller", "--config", str(config_file),
                 "--kubeconfig", str(tmp_path / "kubeconfig")])
    _, err = capsys.readouterr()
    created = [p["metadata"]["name"] for p in api.created("pods", NS)]
    assert code == 1, err
    assert "step ingest failed" in err and "DeadlineExceeded" in err
    assert any(n.startswith(f"{RELEASE}-mlops-ctl-1-dask-scheduler-") for n in created)
    assert any(n.startswith(f"{RELEASE}-mlops-ctl-1-dask-worker-") for n in created)
    assert _dask_pods(api) == [] and api.services(NS) == [] and _replica_sets(api) == [], err
    assert json.loads((store / "runs" / "ctl-1" / "controller.json").read_text())[
        "status"] == "failed"


def test_a_resumed_run_adopts_its_cluster_and_replaces_a_different_worker_set(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    docs = render_chart(_values(tmp_path), name=RELEASE, namespace=NS)
    api, _ = _fake(kube_api_factory, tmp_path, docs)
    config = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    fewer = Config.from_dict({**config.to_dict(), "dask": {**config.to_dict()["dask"],
                                                           "n_workers": 1}})
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        first = EphemeralCluster(config, backend, "r-1")
        address = first.start()
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in _dask_pods(api)}
        assert len(uids) == 3
        # The same run again (a retried controller): everything adopted, nothing new.
        assert EphemeralCluster(config, backend, "r-1").start() == address
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in _dask_pods(api)} == uids
        # A restarted controller of the same run with one worker fewer keeps the scheduler
        # and replaces the worker set: still one cluster.
        second = EphemeralCluster(fewer, backend, "r-1")
        assert second.start() == address
        _wait(lambda: len(_dask_pods(api)) == 2, "one worker fewer")
        scheduler = [n for n in uids if "-dask-scheduler-" in n]
        assert [p["metadata"]["uid"] for p in _dask_pods(api)
                if "-dask-scheduler-" in p["metadata"]["name"]] == [uids[scheduler[0]]]
        assert len(api.services(NS)) == 1
        second.stop()
        assert _dask_pods(api) == [] and api.services(NS) == [] and _replica_sets(api) == []


def test_evicted_workers_are_replaced_and_a_drain_is_not_refused(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    docs = render_chart(_values(tmp_path), name=RELEASE, namespace=NS)
    api, _ = _fake(kube_api_factory, tmp_path, docs)
    config = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        cluster = EphemeralCluster(config, backend, "r-4")
        cluster.start()
        before = {p["metadata"]["name"] for p in _dask_pods(api)}
        # kubectl drain of the node: every pod of the run has a controller, so nothing is
        # refused (bare pods were: "cannot delete Pods that declare no controller").
        evicted = api.drain(NS)
        assert sorted(evicted) == sorted(f"{NS}/{n}" for n in before)
        # The ReplicaSets bring the scheduler and both workers back.
        _wait(lambda: len([p for p in _dask_pods(api) if p["metadata"]["name"] not in before
                           and p["status"].get("phase") == "Running"]) == 3,
              "the replacements", 60)
        cluster.stop()
    assert _dask_pods(api) == [] and _replica_sets(api) == []


def test_a_scheduler_that_keeps_exiting_fails_the_run_with_exit_1_and_its_log(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    docs = render_chart(_values(tmp_path, nWorkers=1), name=RELEASE, namespace=NS)
    api, _ = _fake(kube_api_factory, tmp_path, docs)
    # Stand-in for a broken image: its `dask` exits at once, saying why.
    api.command_map["dask"] = [sys.executable, "-c",
                               "import sys; print('no dask here'); sys.exit(3)"]
    base = yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"])
    base["kubernetes"]["dask"]["start_timeout_seconds"] = 60
    config = Config.from_dict(base)
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        cluster = EphemeralCluster(config, backend, "r-2")
        with pytest.raises(ClusterError) as caught:
            cluster.start()
        cluster.stop()
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert f"{RELEASE}-mlops-r-2-dask-scheduler" in message and "no dask here" in message
    # It keeps exiting: the controller stops waiting long before the start timeout.
    assert "keeps exiting" in message and "scheduler exited 3" in message
    assert _dask_pods(api) == [] and api.services(NS) == []


def test_a_controller_job_that_failed_for_good_takes_its_cluster_along_after_its_ttl(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    from mlops.k8s import Owner

    docs = render_chart(_values(tmp_path, nWorkers=1), name=RELEASE, namespace=NS)
    # The chart bounds how long a finished controller Job, and so its cluster, lives on.
    assert _one(docs, "CronJob")["spec"]["jobTemplate"]["spec"][
        "ttlSecondsAfterFinished"] == 3600
    api, _ = _fake(kube_api_factory, tmp_path, docs)
    config = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    run_id = "ctl-killed"
    job = _controller_job(docs, run_id)
    job["spec"].update(ttlSecondsAfterFinished=1, backoffLimit=0)  # its last retry
    # The controller is killed (SIGKILL: no clean-up) once its cluster runs.
    killed = tmp_path / "wrap" / "kill"
    container = job["spec"]["template"]["spec"]["containers"][0]
    container.pop("args", None)
    container["command"] = [sys.executable, "-c", (
        "import os, pathlib, signal, time\n"
        "end = time.monotonic() + 120\n"
        f"while not pathlib.Path({str(killed)!r}).exists() and time.monotonic() < end:\n"
        "    time.sleep(0.05)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")]
    uid = api.create_object(job)["metadata"]["uid"]
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        EphemeralCluster(config, backend, run_id, owner=Owner(run_id, uid)).start()
    assert len(_dask_pods(api)) == 2 and len(_replica_sets(api)) == 2
    killed.touch()
    done = api.wait_for_job(NS, run_id, timeout=60)
    assert "Failed" in {c["type"] for c in done["status"]["conditions"]}
    # No retry adopts it: the Job goes after its ttl and the cluster with it (not hours
    # later, when the CronJob's history limit removes the Job).
    _wait(lambda: api.get_object("jobs", NS, run_id) is None, "the controller Job's ttl", 30)
    _wait(lambda: _dask_pods(api) == [] and _replica_sets(api) == [] and api.services(NS)
          == [], "the run's cluster to be collected", 60)


# --- the pieces ---------------------------------------------------------------------------
def test_cluster_manifests_are_strictly_valid_and_hardened() -> None:
    from kubernetes_validate import validate

    from mlops.k8s import Owner

    docs = render_chart(_values(Path("/src"), nWorkers=3), name=RELEASE, namespace=NS)
    config = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    cluster = build_dask_cluster(config.kubernetes, config.dask, "20261128-000000-abcd",
                                 namespace=NS, owner=Owner("ctl", "uid-1"),
                                 extra_env={"MLOPS_STORAGE_URI": "/data"})
    assert cluster.address == (f"tcp://{RELEASE}-mlops-20261128-000000-abcd-dask-scheduler"
                               f".{NS}.svc:8786")
    assert cluster.workers["spec"]["replicas"] == 3
    assert cluster.scheduler["spec"]["replicas"] == 1
    for obj in cluster.objects:
        validate(obj, "1.30.0", strict=True)
    for rs in cluster.workloads:
        assert rs["kind"] == "ReplicaSet"
        template = rs["spec"]["template"]
        assert all(template["metadata"]["labels"][k] == v
                   for k, v in rs["spec"]["selector"]["matchLabels"].items())
        assert template["spec"]["restartPolicy"] == "Always"
        assert "activeDeadlineSeconds" not in template["spec"]  # refused in a ReplicaSet
    worker = cluster.workers["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["worker", cluster.address]
    assert worker["args"][worker["args"].index("--memory-limit") + 1] == "900MiB"
    # Spill to the spill volume (dask.worker.spill), not to the 1Gi /tmp.
    assert worker["args"][worker["args"].index("--local-directory") + 1] == "/dask-spill"
    # A worker whose scheduler is gone exits; the scheduler closes when idle and fails
    # tasks that wait with no worker (a killed controller never leaks a busy cluster).
    assert worker["args"][worker["args"].index("--death-timeout") + 1] == "300"
    assert worker["args"][worker["args"].index("--name") + 1] == "$(MLOPS_POD_NAME)"
    assert {"name": "MLOPS_STORAGE_URI", "value": "/data"} in worker["env"]
    scheduler = cluster.scheduler["spec"]["template"]["spec"]["containers"][0]
    assert scheduler["args"][scheduler["args"].index("--idle-timeout") + 1] == "1800s"
    assert {"name": "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT",
            "value": "600s"} in scheduler["env"]
    assert cluster.service["spec"]["selector"]["app.kubernetes.io/component"] == \
        "dask-scheduler"


def test_contradictory_dask_settings_exit_2_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for doc, words in (
            ({"data": {"engine": "dask"}, "dask": {"cluster": "ephemeral",
                                                   "address": "tcp://sched:8786"}},
             "dask.address is set"),
            ({"dask": {"cluster": "ephemeral"}}, "data.engine is pandas")):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=r"config key 'dask\.cluster'"):
            load_config(path)
        assert main(["controller", "--config", str(path), "--kubeconfig",
                     str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert "dask.cluster" in err and words in err
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"engine": "dask"}, "dask": {"cluster": "local"}}))
    # The controller's address reaches the steps of an ephemeral run only.
    assert load_config(path, env={"MLOPS_DASK_ADDRESS": "tcp://x:1"}).dask.address == ""
    path.write_text(yaml.safe_dump({"data": {"engine": "dask"},
                                    "dask": {"cluster": "ephemeral"}}))
    assert load_config(path, env={"MLOPS_DASK_ADDRESS": "tcp://x:1"}).dask.address == \
        "tcp://x:1"


def test_outside_the_controller_ephemeral_falls_back_to_a_local_cluster(
        caplog: pytest.LogCaptureFixture) -> None:
    from mlops.engines.dask import connect

    settings = Config.from_dict({"data": {"engine": "dask"}, "dask": {
        "cluster": "ephemeral", "processes": False, "n_workers": 1}}).dask
    with caplog.at_level(logging.WARNING, "mlops.engines.dask"), connect(settings) as client:
        assert len(client.scheduler_info()["workers"]) == 1
    assert "no cluster was handed over (MLOPS_DASK_ADDRESS is unset" in caplog.text


def test_an_unreachable_run_cluster_fails_the_step_with_exit_1_naming_it() -> None:
    import dataclasses

    from mlops.engines.dask import connect
    from tests.conftest import free_port

    settings = dataclasses.replace(Config.from_dict({"data": {"engine": "dask"}, "dask": {
        "cluster": "ephemeral", "connect_timeout": 1}}).dask,
        address=f"tcp://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"MLOPS_DASK_ADDRESS, the run's ephemeral") as err, \
            connect(settings):
        pass
    assert err.value.exit_code == 1 and time.monotonic() - start < 30


def test_sigterm_removes_the_cluster_and_exits_143(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    import signal
    import subprocess

    docs = render_chart(_values(_source(tmp_path), nWorkers=1), name=RELEASE, namespace=NS)
    api, store = _fake(kube_api_factory, tmp_path, docs, WRAP_INGEST="block")
    config = yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"])
    config["storage"]["uri"] = str(store)
    config_file = tmp_path / "controller.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**api.base_env, "MLOPS_JOB_NAME": "ctl-term", "MLOPS_JOB_UID": "u-1"}
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "controller", "--config",
                             str(config_file)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait(lambda: (tmp_path / "wrap" / "ingest.started").exists(), "ingest to start", 120)
        assert len(_dask_pods(api)) == 2  # the scheduler and the worker
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        (tmp_path / "wrap" / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "ephemeral cluster of run ctl-term removed" in err
    assert _dask_pods(api) == [] and api.services(NS) == [] and _replica_sets(api) == []
    assert json.loads((store / "runs" / "ctl-term" / "controller.json").read_text())[
        "status"] == "terminated"
