"""The fake API server's workload controllers behave like a real cluster's: ReplicaSets
replace deleted and evicted pods, ``kubectl drain`` refuses pods without a controller
owner, the Dask operator's ``DaskCluster`` reports phase Running once its scheduler pod is
Ready, and dependents of a deleted owner are garbage-collected. Driven over HTTP with the
real ``kubernetes`` client where the controller uses it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.fakes.kube import FakeKubeAPI
from tests.fakes.kube.workloads import DrainRefused

pytest_plugins = ["tests.fakes.kube_fixtures"]

NS = "mlops"
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _pod_spec() -> dict[str, Any]:
    return {"restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.36", "command": SLEEP}]}


def _rs(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": _pod_spec()}}}


def _wait(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    end = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _running(api: FakeKubeAPI, prefix: str) -> list[dict[str, Any]]:
    return [p for p in api.pods(NS) if p["metadata"]["name"].startswith(prefix)
            and p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


@pytest.fixture
def api(kube_api_factory: Callable[..., FakeKubeAPI]) -> FakeKubeAPI:
    return kube_api_factory(namespaces=("default", NS), termination_grace_seconds=1.0)


def test_a_replica_set_replaces_deleted_and_evicted_pods(api: FakeKubeAPI,
                                                        tmp_path: Path) -> None:
    config = client.Configuration()
    config.host = api.url
    config.api_key = {"authorization": f"Bearer {api.token}"}
    with client.ApiClient(config) as http:
        apps = client.AppsV1Api(http)
        apps.create_namespaced_replica_set(NS, _rs("w", 2))
        first = _wait(lambda: len(_running(api, "w-")) == 2 and _running(api, "w-"), "2 pods")
        for pod in first:
            (ref,) = pod["metadata"]["ownerReferences"]
            assert ref["kind"] == "ReplicaSet" and ref["controller"] is True
        # Deleted: replaced.
        client.CoreV1Api(http).delete_namespaced_pod(first[0]["metadata"]["name"], NS)
        # Evicted: marked DisruptionTarget, stopped, replaced.
        evicted = api.evict_pod(NS, first[1]["metadata"]["name"])
        assert any(c["type"] == "DisruptionTarget" for c in evicted["status"]["conditions"])
        old = {p["metadata"]["name"] for p in first}
        _wait(lambda: len([p for p in _running(api, "w-")
                           if p["metadata"]["name"] not in old]) == 2, "2 replacements")
        rs = apps.read_namespaced_replica_set("w", NS)
        _wait(lambda: api.get_object("replicasets", NS, "w")["status"].get(
            "readyReplicas") == 2, "status")
        assert rs.spec.replicas == 2
        # Deleting the ReplicaSet removes its pods (garbage collector).
        apps.delete_namespaced_replica_set("w", NS)
        _wait(lambda: not [p for p in api.pods(NS) if p["metadata"]["name"].startswith("w-")],
              "the pods to be collected")


def test_a_replica_set_refuses_what_the_api_refuses(api: FakeKubeAPI) -> None:
    from tests.fakes.kube import KubeAPIError

    bad = _rs("bad", 1)
    bad["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 60
    with pytest.raises(KubeAPIError, match="activeDeadlineSeconds in ReplicaSet"):
        api.create_object(bad)
    bad = _rs("bad", 1)
    bad["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(KubeAPIError, match="does not match template"):
        api.create_object(bad)


def test_drain_refuses_pods_without_a_controller_owner(api: FakeKubeAPI) -> None:
    api.create_object(_rs("managed", 1))
    api.create_object({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "bare", "namespace": NS}, "spec": _pod_spec()})
    _wait(lambda: len(_running(api, "managed-")) == 1 and _running(api, "bare"), "pods")
    with pytest.raises(DrainRefused, match=r"declare no controller.*mlops/bare"):
        api.drain(NS)
    assert _running(api, "bare") and _running(api, "managed-")  # nothing evicted
    api.delete_object("pods", NS, "bare")
    _wait(lambda: api.get_object("pods", NS, "bare") is None, "bare pod gone")
    (before,) = _running(api, "managed-")
    evicted = api.drain(NS)
    assert evicted == [f"{NS}/{before['metadata']['name']}"]
    # The ReplicaSet brings its pod back (on another node, on a real cluster).
    _wait(lambda: [p for p in _running(api, "managed-")
                   if p["metadata"]["name"] != before["metadata"]["name"]], "a replacement")


def test_a_dask_cluster_is_running_once_its_scheduler_pod_is_ready(api: FakeKubeAPI) -> None:
    ready = [sys.executable, "-c", "import socket, time, os; s = socket.socket(); "
             "s.bind((os.environ['IP'], 8786)); s.listen(); time.sleep(60)"]
    scheduler = _pod_spec()
    scheduler["containers"][0].update(
        command=ready, env=[{"name": "IP", "valueFrom": {"fieldRef": {
            "fieldPath": "status.podIP"}}}],
        readinessProbe={"tcpSocket": {"port": 8786}, "periodSeconds": 1})
    api.create_object({
        "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
        "metadata": {"name": "dc", "namespace": NS},
        "spec": {"idleTimeout": 600, "worker": {"replicas": 2, "spec": _pod_spec()},
                 "scheduler": {"spec": scheduler, "service": {
                     "type": "ClusterIP", "ports": [{"name": "tcp-comm", "port": 8786,
                                                     "targetPort": 8786}]}}}})
    _wait(lambda: api.get_object("daskclusters", NS, "dc").get("status", {}).get(
        "phase") == "Running", "phase Running", 30)
    workers = _wait(lambda: len(_running(api, "dc-default-worker-")) == 2
                    and _running(api, "dc-default-worker-"), "2 workers")
    env = {e["name"]: e for e in workers[0]["spec"]["containers"][0]["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"]["value"] == \
        f"tcp://dc-scheduler.{NS}.svc.cluster.local:8786"
    assert api.get_object("services", NS, "dc-scheduler") is not None
    # Deleting the DaskCluster removes the Service, the workloads and their pods.
    api.delete_object("daskclusters", NS, "dc")
    _wait(lambda: not [p for p in api.pods(NS) if p["metadata"]["name"].startswith("dc-")]
          and api.services(NS) == [], "everything collected")
    from tests.fakes.kube import KubeAPIError

    with pytest.raises(KubeAPIError, match=r"spec\.worker\.spec"):
        api.create_object({"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
                           "metadata": {"name": "x", "namespace": NS},
                           "spec": {"scheduler": {"spec": _pod_spec()}, "worker": {}}})


def _job(name: str, ttl: int | None, exit_code: int, wait_for: Path | None = None,
         ) -> dict[str, Any]:
    # With wait_for, the container exits only once that file exists (at most 60 s), so
    # the test decides when the Job finishes and its ttl starts.
    wait = (f"import os, time\nfor _ in range(1200):\n"
            f"    if os.path.exists({str(wait_for)!r}): break\n    time.sleep(0.05)\n"
            if wait_for else "")
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "busybox:1.36",
            "command": [sys.executable, "-c", f"{wait}raise SystemExit({exit_code})"]}]}}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def test_a_finished_job_is_deleted_after_its_ttl_with_what_it_owns(api: FakeKubeAPI,
                                                                    tmp_path: Path) -> None:
    # The failed Job finishes only after its ReplicaSet's pod runs: with a 1 s ttl, a Job
    # that failed at once could be gone (with the ReplicaSet) before that pod started.
    release = tmp_path / "release"
    failed = api.create_object(_job("failed", 1, 1, wait_for=release))
    kept = api.create_object(_job("kept", None, 0))
    later = api.create_object(_job("later", 3600, 0))
    # The failed Job owns a ReplicaSet (as the controller's Job owns the run's Dask cluster).
    rs = _rs("owned", 1)
    rs["metadata"]["ownerReferences"] = [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "failed",
        "uid": failed["metadata"]["uid"], "controller": False, "blockOwnerDeletion": True}]
    api.create_object(rs)
    _wait(lambda: _running(api, "owned-"), "the owned pod")
    release.touch()
    job = api.wait_for_job(NS, "failed")
    assert "Failed" in {c["type"] for c in job["status"]["conditions"]}
    for name in ("kept", "later"):
        api.wait_for_job(NS, name)
    # Gone within the ttl plus a reconcile (the timestamps have whole seconds), and the
    # garbage collector takes its ReplicaSet and that one's pod along.
    _wait(lambda: api.get_object("jobs", NS, "failed") is None, "the ttl", 10)
    _wait(lambda: api.get_object("replicasets", NS, "owned") is None
          and not [p for p in api.pods(NS) if p["metadata"]["name"].startswith("owned-")],
          "the owned ReplicaSet and its pod", 20)
    assert not api.pods(NS, "failed")
    # Without a ttl, or with one not yet over, a finished Job stays.
    assert api.get_object("jobs", NS, "kept")["metadata"]["uid"] == kept["metadata"]["uid"]
    assert api.get_object("jobs", NS, "later")["metadata"]["uid"] == later["metadata"]["uid"]
