"""Tests of the fake Kubernetes API server, driven by the real ``kubernetes`` client."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.fakes.kube import FakeKubeAPI

pytest_plugins = ["tests.fakes.kube_fixtures"]

pytestmark = pytest.mark.timeout(60)

NS = "mlops"


def job_manifest(
    name: str,
    command: list[str],
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A minimal valid Job running ``command`` in container ``main``."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {"app": "mlops"}},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"labels": {"app": "mlops"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "mlops:1.0", "command": command}],
                },
            },
        },
    }


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def wait_finished(batch: client.BatchV1Api, name: str, timeout: int = 15) -> Any:
    """Watch a Job (bounded by timeout) until it has a Complete or Failed condition."""
    w = watch.Watch()
    try:
        for event in w.stream(
            batch.list_namespaced_job,
            NS,
            field_selector=f"metadata.name={name}",
            timeout_seconds=timeout,
        ):
            job = event["object"]
            types = {c.type for c in job.status.conditions or []}
            if types & {"Complete", "Failed"}:
                return job
    finally:
        w.stop()
    raise AssertionError(f"job {name} did not finish within {timeout}s")


def raw_request(api_client: client.ApiClient, method: str, path: str, body: Any = None) -> Any:
    """Send a request through the real client's transport, skipping its model validation.

    kubernetes>=35 validates request bodies with pydantic, so payloads the *server* must reject
    (unknown fields, wrong types) have to bypass the typed API methods.
    """
    params = api_client.param_serialize(
        method,
        path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*params)
    response.read()
    return api_client.response_deserialize(response, {"2XX": "object"}).data


def conditions(job: Any) -> dict[str, Any]:
    return {c.type: c for c in job.status.conditions or []}


@pytest.fixture
def batch(kube_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(kube_client)


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


def test_job_runs_to_complete_with_pod_and_log(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    created = batch.create_namespaced_job(NS, job_manifest("hello", py("print('hi')")))
    uid = created.metadata.uid
    assert created.metadata.resource_version and created.metadata.generation == 1
    assert created.spec.completions == 1 and created.spec.parallelism == 1
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "hello"

    job = wait_finished(batch, "hello")
    conds = conditions(job)
    assert conds["Complete"].status == "True" and "SuccessCriteriaMet" in conds
    assert job.status.succeeded == 1 and not job.status.active
    assert job.status.start_time and job.status.completion_time

    pods = core.list_namespaced_pod(NS, label_selector="job-name=hello").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.metadata.name.startswith("hello-") and len(pod.metadata.name) == len("hello-") + 5
    assert pod.metadata.owner_references[0].uid == uid
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert core.read_namespaced_pod_log(pod.metadata.name, NS) == "hi\n"
    assert core.read_namespaced_pod_log(pod.metadata.name, NS, container="main", tail_lines=1)
    # The helper above watched: the request log proves it.
    assert any(r.query.get("watch") in ("true", "True", "1") for r in kube_api.requests)
    assert client.VersionApi(batch.api_client).get_code().git_version.startswith("v1.")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda j: j["spec"].update(bogusField=1), "spec.bogusField"),
        (lambda j: j["spec"].update(backoffLimit="six"), "spec.backoffLimit"),
        (lambda j: j["spec"]["template"]["spec"].pop("restartPolicy"),
         "spec.template.spec.restartPolicy"),
        (lambda j: j["metadata"].update(name="Bad_Name"), "metadata.name"),
    ],
)
def test_invalid_job_is_rejected_with_422(
    kube_api: FakeKubeAPI,
    kube_client: client.ApiClient,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    manifest = job_manifest("invalid", py("pass"))
    raw_request(kube_client, "POST", f"/apis/batch/v1/namespaces/{NS}/jobs",
                job_manifest("valid", py("pass")))  # the bypass itself works
    mutate(manifest)
    with pytest.raises(ApiException) as info:
        raw_request(kube_client, "POST", f"/apis/batch/v1/namespaces/{NS}/jobs", manifest)
    assert info.value.status == 422
    status = json.loads(info.value.body)
    assert status["reason"] == "Invalid" and status["kind"] == "Status"
    assert field in status["message"]
    assert any(c["field"] == field for c in status["details"]["causes"])
    assert [j["metadata"]["name"] for j in kube_api.jobs(NS)] == ["valid"]


def test_duplicate_create_is_409(batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job(NS, job_manifest("dup", py("pass")))
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, job_manifest("dup", py("pass")))
    assert info.value.status == 409
    assert 'jobs.batch \\"dup\\" already exists' in info.value.body or \
        'jobs.batch "dup" already exists' in info.value.body


def test_list_with_label_and_field_selectors(batch: client.BatchV1Api) -> None:
    for name, step in (("a", "train"), ("b", "eval"), ("c", "drift")):
        batch.create_namespaced_job(
            NS, job_manifest(name, py("pass"), labels={"step": step, "app": "mlops"})
        )
    names = lambda jl: sorted(j.metadata.name for j in jl.items)  # noqa: E731
    assert names(batch.list_namespaced_job(NS, label_selector="step=train")) == ["a"]
    assert names(batch.list_namespaced_job(NS, label_selector="step in (eval,drift)")) == [
        "b", "c"]
    assert names(batch.list_namespaced_job(NS, label_selector="app=mlops,step!=eval")) == [
        "a", "c"]
    assert names(batch.list_namespaced_job(NS, field_selector="metadata.name=b")) == ["b"]
    listed = batch.list_namespaced_job(NS)
    assert int(listed.metadata.resource_version) >= max(
        int(j.metadata.resource_version) for j in listed.items)
    with pytest.raises(ApiException) as info:
        batch.list_namespaced_job(NS, field_selector="spec.bogus=1")
    assert info.value.status == 400


def test_watch_from_resource_version_sees_only_later_events(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(
        NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(
        NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}})
    core.delete_namespaced_config_map("after", NS)
    w = watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in w.stream(core.list_namespaced_config_map, NS, resource_version=rv,
                              timeout_seconds=1)]
    assert seen == [("ADDED", "after"), ("DELETED", "after")]
    # A version older than the event history is answered with 410 Gone.
    small = FakeKubeAPI(namespaces=(NS,), event_history=2).start()
    try:
        for i in range(5):
            small.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": f"c{i}", "namespace": NS}})
        cfg = small.write_kubeconfig(Path(kube_api.pvc_dirs["mlops-data"]) / "kc", NS)
        with config.new_client_from_config(config_file=str(cfg)) as api_client:
            w2 = watch.Watch()
            with pytest.raises(ApiException) as info:
                for _ in w2.stream(client.CoreV1Api(api_client).list_namespaced_config_map,
                                   NS, resource_version="1001", timeout_seconds=1):
                    pass
            assert info.value.status == 410
    finally:
        small.stop()


def test_retry_then_success_counts_one_failure(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    code = (
        "import pathlib, sys\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "if not p.exists():\n"
        "    p.write_text('x'); print('first attempt fails'); sys.exit(1)\n"
        "print('second attempt ok')\n"
    )
    batch.create_namespaced_job(NS, job_manifest("flaky", py(code, str(marker)), backoffLimit=2))
    job = wait_finished(batch, "flaky")
    assert "Complete" in conditions(job)
    assert job.status.failed == 1 and job.status.succeeded == 1
    phases = sorted(p.status.phase for p in
                    core.list_namespaced_pod(NS, label_selector="job-name=flaky").items)
    assert phases == ["Failed", "Succeeded"]


def test_backoff_limit_exceeded(batch: client.BatchV1Api, core: client.CoreV1Api) -> None:
    batch.create_namespaced_job(NS, job_manifest("always-fails", py("raise SystemExit(1)"),
                                                 backoffLimit=1))
    job = wait_finished(batch, "always-fails")
    failed = conditions(job)["Failed"]
    assert failed.reason == "BackoffLimitExceeded"
    assert failed.message == "Job has reached the specified backoff limit"
    assert "FailureTarget" in conditions(job) and job.status.failed == 2
    assert len(core.list_namespaced_pod(NS, label_selector="job-name=always-fails").items) == 2


def test_pod_failure_policy_fail_job_without_retry(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    policy = {"rules": [{"action": "FailJob",
                         "onExitCodes": {"containerName": "main", "operator": "In",
                                         "values": [2]}}]}
    batch.create_namespaced_job(NS, job_manifest("exit2", py("raise SystemExit(2)"),
                                                 backoffLimit=5, podFailurePolicy=policy))
    job = wait_finished(batch, "exit2")
    failed = conditions(job)["Failed"]
    pods = core.list_namespaced_pod(NS, label_selector="job-name=exit2").items
    assert failed.reason == "PodFailurePolicy"
    assert len(pods) == 1 and job.status.failed == 1
    assert failed.message == (
        f"Container main for pod {NS}/{pods[0].metadata.name} failed with exit code 2 "
        "matching FailJob rule at index 0")
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 2


def test_eviction_matches_disruption_target_ignore_rule(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api, tmp_path: Path
) -> None:
    marker = tmp_path / "evicted-once"
    code = (
        "import pathlib, sys, time\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "if not p.exists():\n"
        "    p.write_text('x'); time.sleep(30)\n"
    )
    policy = {"rules": [{"action": "Ignore",
                         "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    batch.create_namespaced_job(NS, job_manifest("evictee", py(code, str(marker)),
                                                 podFailurePolicy=policy))
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    kube_api.evict(NS, "evictee")
    job = wait_finished(batch, "evictee")
    assert "Complete" in conditions(job) and not job.status.failed
    first = kube_api.pods(NS, "evictee")[0]
    assert {"type": "DisruptionTarget", "status": "True"}.items() <= {
        k: v for c in first["status"]["conditions"] if c["type"] == "DisruptionTarget"
        for k, v in c.items()}.items()


def test_active_deadline_exceeded(batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job(NS, job_manifest("sleepy", py("import time; time.sleep(30)"),
                                                 activeDeadlineSeconds=1, backoffLimit=3))
    started = time.monotonic()
    job = wait_finished(batch, "sleepy")
    failed = conditions(job)["Failed"]
    assert failed.reason == "DeadlineExceeded"
    assert failed.message == "Job was active longer than specified deadline"
    assert time.monotonic() - started < 10


def test_deadline_sets_failure_target_then_failed_after_the_grace_period(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api
) -> None:
    """Kubernetes 1.31+: FailureTarget at the deadline, Failed once the pod has stopped."""
    kube_api.termination_grace_seconds = 10.0  # the fake's cap; the pod asks for 3 s
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    body = job_manifest("stubborn", py(stubborn), activeDeadlineSeconds=1)
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3
    batch.create_namespaced_job(NS, body)
    seen: dict[str, float] = {}
    phase_at_failure_target = None
    end = time.monotonic() + 20
    while "Failed" not in seen and time.monotonic() < end:
        job = kube_api.get_object("jobs", NS, "stubborn") or {}
        for cond in (job.get("status") or {}).get("conditions") or []:
            seen.setdefault(cond["type"], time.monotonic())
        if "FailureTarget" in seen and phase_at_failure_target is None:
            # First sight of FailureTarget (polled every 20 ms, well inside the 3 s grace).
            (pod,) = kube_api.pods(NS, "stubborn")
            phase_at_failure_target = pod["status"]["phase"]
        time.sleep(0.02)
    assert phase_at_failure_target == "Running"  # the pod was still terminating
    assert seen["Failed"] - seen["FailureTarget"] >= 2.5  # the 3 s grace period
    (pod,) = kube_api.pods(NS, "stubborn")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


def test_role_and_owner_reference_enforcement(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "ctl", "uid": "u-1",
             "blockOwnerDeletion": True}
    body = job_manifest("owned", py("pass"))
    body["metadata"]["ownerReferences"] = [owner]
    kube_api.enforce_owner_references = True
    rules = [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list"]}]
    kube_api.use_role({"metadata": {"namespace": NS}, "rules": rules})
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, body)
    assert info.value.status == 403
    assert "cannot set an ownerRef on a resource you can't delete" in info.value.body
    rules[0]["verbs"].append("delete")
    kube_api.use_role({"metadata": {"namespace": NS}, "rules": rules})
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, body)
    assert "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't " \
        "set finalizers on" in info.value.body
    with pytest.raises(ApiException) as info:  # not granted by the Role: 403
        batch.read_namespaced_job("owned", NS)
    assert info.value.status == 403
    kube_api.use_role({"metadata": {"namespace": NS}, "rules": [*rules, {
        "apiGroups": ["batch"], "resources": ["jobs/finalizers"], "verbs": ["update"]}]})
    batch.create_namespaced_job(NS, body)
    assert [j["metadata"]["name"] for j in kube_api.jobs(NS)] == ["owned"]
    with pytest.raises(ApiException) as info:  # a Role grants in its namespace only
        batch.list_namespaced_job("default")
    assert info.value.status == 403


def test_missing_namespace_is_404(batch: client.BatchV1Api) -> None:
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job("nope", job_manifest("x", py("pass")))
    assert info.value.status == 404 and 'namespaces \\"nope\\" not found' in info.value.body


def test_forbidden_is_403_with_real_wording(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api
) -> None:
    kube_api.forbid("create", "jobs")
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, job_manifest("x", py("pass")))
    assert info.value.status == 403
    assert (
        f'jobs.batch is forbidden: User \\"{kube_api.user}\\" cannot create resource '
        f'\\"jobs\\" in API group \\"batch\\" in the namespace \\"{NS}\\"'
    ) in info.value.body
    batch.list_namespaced_job(NS)  # other verbs still allowed


def test_injected_faults_then_recovery(kube_api: FakeKubeAPI, batch: client.BatchV1Api) -> None:
    kube_api.inject_faults("GET", "/apis/batch", status=503, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            batch.list_namespaced_job(NS)
        assert info.value.status == 503
    assert batch.list_namespaced_job(NS).items == []
    # With Retry-After, urllib3 under the client retries 503s by itself (up to 3 times).
    kube_api.clear_requests()
    kube_api.inject_faults("GET", "/apis/batch", status=503, count=1, retry_after=0)
    assert batch.list_namespaced_job(NS).items == []
    assert len([r for r in kube_api.requests if r.path.startswith("/apis/batch")]) == 2
    kube_api.inject_faults("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", status=500)
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, job_manifest("x", py("pass")))
    assert info.value.status == 500


def test_unauthenticated_request_is_401(kube_api: FakeKubeAPI, tmp_path: Path) -> None:
    cfg = kube_api.write_kubeconfig(tmp_path / "kc", NS)
    cfg.write_text(cfg.read_text().replace(kube_api.token, "wrong-token"))
    with (
        config.new_client_from_config(config_file=str(cfg)) as api_client,
        pytest.raises(ApiException) as info,
    ):
        client.BatchV1Api(api_client).list_namespaced_job(NS)
    assert info.value.status == 401


def test_config_map_volume_and_env_are_visible_to_the_process(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mlops-config"},
        "data": {"config.yaml": "retrain: nightly\n"}})
    core.create_namespaced_secret(NS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"token": base64.b64encode(b"s3cr3t").decode()}})
    manifest = job_manifest("reads-config", py(
        "import os, sys; print(open(sys.argv[1]).read().strip(), os.environ['CONFIG'] == "
        "sys.argv[1], os.environ['TOKEN'], os.environ['POD'].startswith('reads-config-'))",
        "/etc/mlops/config.yaml"))
    pod_spec = manifest["spec"]["template"]["spec"]
    pod_spec["volumes"] = [{"name": "cfg", "configMap": {"name": "mlops-config"}}]
    pod_spec["containers"][0].update(
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/mlops", "readOnly": True}],
        env=[
            {"name": "CONFIG", "value": "/etc/mlops/config.yaml"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    )
    batch.create_namespaced_job(NS, manifest)
    job = wait_finished(batch, "reads-config")
    pod = core.list_namespaced_pod(NS, label_selector="job-name=reads-config").items[0]
    log = core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert "Complete" in conditions(job), log
    assert log == "retrain: nightly True s3cr3t True\n"


def test_delete_kills_running_process_and_pods(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    code = ("import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
            "time.sleep(60)")
    batch.create_namespaced_job(NS, job_manifest("long", py(code, str(pid_file))))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "process never started"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    batch.delete_namespaced_job("long", NS, propagation_policy="Background")
    with pytest.raises(ApiException) as info:
        batch.read_namespaced_job("long", NS)
    assert info.value.status == 404
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "process still running after delete"
        time.sleep(0.02)
    assert core.list_namespaced_pod(NS, label_selector="job-name=long").items == []


def test_delete_without_policy_orphans_pods_like_batch_v1(
    kube_api: FakeKubeAPI, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job(NS, job_manifest("orphaner", py("import time; time.sleep(0.3)")))
    deadline = time.monotonic() + 10
    while not kube_api.pods(NS, "orphaner"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    batch.delete_namespaced_job("orphaner", NS)  # batch/v1 default: Orphan
    pods = core.list_namespaced_pod(NS, label_selector="job-name=orphaner").items
    assert len(pods) == 1 and not pods[0].metadata.owner_references


# --- pods and Services created through the API (the ephemeral Dask cluster's objects) ---
_LISTENER = ("import os, socket, time; s = socket.socket(); "
             "s.bind((os.environ['POD_IP'], 8786)); s.listen(); time.sleep(60)")


def _bare_pod(name: str, script: str, labels: dict[str, str] | None = None,
              restart: str = "Always") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                 "containers": [{
                     "name": "main", "image": "python:3.11", "command": [sys.executable],
                     "args": ["-c", script],
                     "env": [{"name": "POD_IP",
                              "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                             {"name": "TARGET", "value": f"tcp://sched.{NS}.svc:8786"}],
                     "ports": [{"name": "comm", "containerPort": 8786}],
                     "readinessProbe": {"tcpSocket": {"port": "comm"}}}]},
    }


def _until(check: Any, seconds: float = 20) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_pods_run_on_own_ips_become_ready_by_probe_and_resolve_headless_services(
        kube_api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, _bare_pod("sched", _LISTENER, {"app": "sched"}))
    core.create_namespaced_service(NS, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "sched"},
        "spec": {"clusterIP": "None", "selector": {"app": "sched"},
                 "ports": [{"port": 8786, "targetPort": "comm"}]}})
    pod = _until(lambda: (lambda p: p if p and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p["status"].get("conditions", [])) else None)(
            kube_api.get_object("pods", NS, "sched")))
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1"
    svc = kube_api.get_object("services", NS, "sched")
    assert svc["spec"]["ports"][0]["protocol"] == "TCP" and svc["spec"]["clusterIPs"] == ["None"]
    # A second pod listening on the same port (its own IP), told the Service's DNS name.
    core.create_namespaced_pod(NS, _bare_pod(
        "client", "import os; print(os.environ['TARGET'], flush=True); " + _LISTENER))
    _until(lambda: kube_api.pod_log(NS, "client").strip())
    assert kube_api.pod_log(NS, "client").strip() == f"tcp://{ip}:8786"

    # Deleting a running pod is graceful: deletionTimestamp first, gone once it stopped.
    deleted = core.delete_namespaced_pod("sched", NS)
    assert deleted.metadata.deletion_timestamp is not None
    _until(lambda: kube_api.get_object("pods", NS, "sched") is None)
    core.delete_namespaced_service("sched", NS)
    assert kube_api.services(NS) == []
    assert [s["metadata"]["name"] for s in kube_api.created("services", NS)] == ["sched"]


def test_pod_restart_policy_and_service_validation(
        kube_api: FakeKubeAPI, core: client.CoreV1Api, kube_client: client.ApiClient) -> None:
    core.create_namespaced_pod(NS, _bare_pod("once", "import sys; sys.exit(3)",
                                             restart="Never"))
    core.create_namespaced_pod(NS, _bare_pod("again", "import sys; sys.exit(3)"))
    done = _until(lambda: (lambda p: p if p and p["status"].get("phase") == "Failed" else None)(
        kube_api.get_object("pods", NS, "once")))
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    _until(lambda: kube_api.get_object("pods", NS, "again")["status"][
        "containerStatuses"][0]["restartCount"] >= 2)
    assert kube_api.get_object("pods", NS, "again")["status"]["phase"] == "Running"
    with pytest.raises(ApiException) as err:  # a Service name must start with a letter
        raw_request(kube_client, "POST", f"/api/v1/namespaces/{NS}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "1-sched"},
            "spec": {"ports": [{"port": 8786}]}})
    assert err.value.status == 422 and "DNS-1035" in str(err.value.body)
    # Deleting the owner Job (Background) removes the objects it owns.
    job = kube_api.create_object({"apiVersion": "batch/v1", "kind": "Job",
                                  "metadata": {"name": "owner", "namespace": NS},
                                  "spec": {"template": {"spec": {
                                      "restartPolicy": "Never", "containers": [{
                                          "name": "c", "image": "busybox:1",
                                          "command": [sys.executable, "-c", "pass"]}]}}}})
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "owner",
           "uid": job["metadata"]["uid"]}
    owned = _bare_pod("owned", _LISTENER)
    owned["metadata"]["ownerReferences"] = [ref]
    core.create_namespaced_pod(NS, owned)
    core.create_namespaced_service(NS, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "owned", "ownerReferences": [ref]},
        "spec": {"clusterIP": "None", "ports": [{"port": 8786}]}})
    kube_api.delete_object("jobs", NS, "owner", "Background")
    _until(lambda: kube_api.get_object("pods", NS, "owned") is None)
    assert kube_api.get_object("services", NS, "owned") is None
