"""Dask on real nodes: what a 16-core node with a memory-limited pod does to the workers.

The 2-core machine hides a bug that divides by the CPU count: distributed's
``memory_limit: auto`` is memory x threads / CPU count, and without a CPU limit the CPU count
is the node's cores. The fake node (tests/fakes/kube/node.py) makes the worker see 16 CPUs,
in this process (a LocalCluster's nannies) and in the fake API server's pods.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.config import Config
from mlops.engines.dask import connect, container_memory_limit, worker_memory_limit
from tests.conftest import skip_or_fail
from tests.fakes.kube import FakeKubeAPI
from tests.fakes.kube.node import fake_cpu_count

try:
    import distributed  # noqa: F401
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("distributed is not installed (the mlops[dask] extra)")

pytest_plugins = ["tests.fakes.kube_fixtures"]

GIB = 2**30


def _cgroup(tmp_path: Path, v2: str | None = None, v1: str | None = None) -> Path:
    root = tmp_path / "cgroup"
    (root / "memory").mkdir(parents=True)
    if v2 is not None:
        (root / "memory.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "memory" / "memory.limit_in_bytes").write_text(v1 + "\n")
    return root


def test_the_container_limit_comes_from_cgroup_v2_then_v1_then_the_pod(tmp_path: Path) -> None:
    assert container_memory_limit(str(_cgroup(tmp_path / "a", v2=str(GIB))), env={}) == GIB
    assert container_memory_limit(str(_cgroup(tmp_path / "b", v1=str(2 * GIB))),
                                  env={}) == 2 * GIB
    # "max" (v2) or v1's page-rounded 2**63-1: no limit in the cgroup; the pod's limit
    # handed over by the downward API decides.
    for root in (_cgroup(tmp_path / "c", v2="max"),
                 _cgroup(tmp_path / "d", v1=str(9223372036854771712))):
        assert container_memory_limit(str(root), env={}) is None
        assert container_memory_limit(str(root), env={"MLOPS_MEMORY_LIMIT": "536870912"}) \
            == 512 * 2**20
    # Split among the worker processes; explicit sizes and 0 pass through as bytes.
    root = str(_cgroup(tmp_path / "e", v2=str(3 * GIB)))
    assert worker_memory_limit("auto", 3, root=root, env={}) == GIB
    assert worker_memory_limit("2GiB", 3, root=root, env={}) == 2 * GIB
    assert worker_memory_limit("0", 3, root=root, env={}) == 0


def test_on_a_16_cpu_node_each_local_worker_gets_its_share_of_the_pod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step pod limited to 1 GiB on a 16-core node, with the default dask.memory_limit
    # auto and two worker processes: each must get 512 MiB (distributed's auto: 1/16 of
    # the memory it sees per worker thread).
    import mlops.engines.dask as engine

    monkeypatch.setattr(engine, "CGROUP_ROOT", str(_cgroup(tmp_path, v2=str(GIB))))
    settings = Config.from_dict({"data": {"engine": "dask"}, "dask": {
        "n_workers": 2, "threads_per_worker": 1, "processes": True}}).dask
    assert settings.memory_limit == "auto"
    with fake_cpu_count(16):
        from distributed.system import MEMORY_LIMIT
        from distributed.worker_memory import parse_memory_limit

        # What handing "auto" to distributed would give on this node.
        sliver = parse_memory_limit("auto", 1, logger=engine.log)
        assert sliver == int(MEMORY_LIMIT / 16)
        with connect(settings) as client:
            limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert limits == [GIB // 2, GIB // 2]


def test_on_a_16_cpu_node_each_worker_pod_gets_its_containers_limit(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    from distributed import Client

    from mlops.controller import EphemeralCluster
    from mlops.k8s import KubeClient, load_target
    from tests.chart_render import render_chart
    from tests.test_controller_dask import NS, RELEASE, _dask_pods, _fake, _one, _values

    values = _values(tmp_path)
    values["config"]["dask"]["memory_limit"] = "auto"
    docs = render_chart(values, name=RELEASE, namespace=NS)
    api, _ = _fake(kube_api_factory, tmp_path, docs)
    assert api.node_cpus == 16
    config = Config.from_dict(yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"]))
    assert config.dask.memory_limit == "auto"
    limit = config.kubernetes.dask.worker_resources["limits"]["memory"]
    assert limit == "1Gi"
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        cluster = EphemeralCluster(config, backend, "r-mem")
        cluster.start()
        try:
            scheduler = next(p for p in _dask_pods(api)
                             if p["metadata"]["labels"]["app.kubernetes.io/component"]
                             == "dask-scheduler")
            with Client(f"tcp://{scheduler['status']['podIP']}:8786", timeout=30,
                        set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
                limits = [w["memory_limit"]
                          for w in client.scheduler_info()["workers"].values()]
        finally:
            cluster.stop()
    assert limits == [GIB, GIB], limits


def test_the_worker_pod_is_handed_its_limit_never_dasks_auto() -> None:
    from kubernetes_validate import validate

    from mlops.k8s import build_dask_cluster

    config = Config.from_dict({"data": {"engine": "dask"}, "dask": {"cluster": "ephemeral"}})
    cluster = build_dask_cluster(config.kubernetes, config.dask, "r-1", namespace="ns")
    (worker,) = cluster.workers["spec"]["template"]["spec"]["containers"]
    value = worker["args"][worker["args"].index("--memory-limit") + 1]
    assert value == "$(MLOPS_MEMORY_LIMIT)"
    assert {"name": "MLOPS_MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {
        "containerName": "worker", "resource": "limits.memory"}}} in worker["env"]
    validate(cluster.workers, "1.30.0", strict=True)
    fixed = dataclasses.replace(config.dask, memory_limit="900MiB")
    cluster = build_dask_cluster(config.kubernetes, fixed, "r-1", namespace="ns")
    args = cluster.workers["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--memory-limit") + 1] == "900MiB"


# --- whole nights under the chart's Role ------------------------------------------------------
def _night(kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path, cluster: str,
           **env: str) -> tuple[FakeKubeAPI, Path, dict[str, Any], str]:
    """The chart (dask.cluster ``cluster``) in the fake API server under its own Role; the
    controller's Job created as the CronJob would; returns (api, store, job, run id)."""
    from tests.chart_render import render_chart
    from tests.test_controller_dask import NS, RELEASE, _controller_job, _fake, _source, _values

    values = _values(_source(tmp_path), cluster=cluster)
    values["config"]["dask"]["memory_limit"] = "auto"
    docs = render_chart(values, name=RELEASE, namespace=NS)
    api, store = _fake(kube_api_factory, tmp_path, docs, **env)
    run_id = f"{RELEASE}-{cluster}-1"
    job = api.create_object(_controller_job(docs, run_id))
    return api, store, job, run_id


def _done(api: FakeKubeAPI, store: Path, run_id: str) -> None:
    import json

    from tests.test_controller_dask import NS, _logs

    done = api.wait_for_job(NS, run_id, timeout=240)
    log = _logs(api, api.created("pods", NS))
    assert "Complete" in {c["type"] for c in done["status"]["conditions"]}, log
    assert json.loads((store / "runs" / run_id / "controller.json").read_text())[
        "status"] == "succeeded", log
    assert json.loads((store / "runs" / run_id / "summary.json").read_text())["retrained"]


def _wait_for(check: Callable[[], Any], what: str, seconds: float = 120) -> Any:
    end = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_night_with_a_worker_evicted_and_the_controller_disrupted_mid_step(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    import json

    from tests.test_controller_dask import NS, _dask_pods, _logs, _replica_sets

    api, store, _, run_id = _night(kube_api_factory, tmp_path, "ephemeral",
                                   WRAP_INGEST="block")
    _wait_for(lambda: (tmp_path / "wrap" / "ingest.started").exists(), "ingest to start")
    # Mid-step, a drain or a preemption takes one worker: its ReplicaSet replaces it.
    workers = [p for p in _dask_pods(api) if "-dask-worker-" in p["metadata"]["name"]]
    assert len(workers) == 2
    victim = workers[0]["metadata"]["name"]
    api.evict_pod(NS, victim)
    _wait_for(lambda: len([p for p in _dask_pods(api) if "-dask-worker-" in p["metadata"][
        "name"] and p["metadata"]["name"] != victim
        and p["status"].get("phase") == "Running"]) == 2, "the replacement worker")
    before = {r["metadata"]["name"]: r["metadata"]["uid"]
              for r in api.created("replicasets", NS)}
    pods_before = {p["metadata"]["uid"] for p in _dask_pods(api)
                   if not p["metadata"].get("deletionTimestamp")}
    # Then the node of the controller is drained: its pod is evicted (DisruptionTarget).
    first = api.evict(NS, run_id)
    _wait_for(lambda: (api.get_object("pods", NS, first) or {}).get("status", {}).get(
        "phase") == "Failed" or api.get_object("pods", NS, first) is None,
        "the controller pod to stop")
    log = api.pod_log(NS, first)
    assert "left for the retried controller" in log, log
    # The cluster is still there: the same ReplicaSets and pods, not a second cluster.
    assert {r["metadata"]["name"]: r["metadata"]["uid"]
            for r in api.created("replicasets", NS)} == before
    assert {p["metadata"]["uid"] for p in _dask_pods(api)
            if not p["metadata"].get("deletionTimestamp")} == pods_before
    (tmp_path / "wrap" / "release").touch()
    _done(api, store, run_id)  # the steps find all the workers asked for
    log = _logs(api, api.pods(NS, run_id))
    assert "adopted" in log, log
    assert sorted(r["metadata"]["name"] for r in api.created("replicasets", NS)) == \
        sorted(before)  # adopted, never created again
    assert _dask_pods(api) == [] and _replica_sets(api) == []
    assert json.loads((store / "runs" / run_id / "ingest.json").read_text())


def test_a_night_on_a_dask_operator_cluster(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    from tests.test_controller_dask import NS, _logs

    api, store, job, run_id = _night(kube_api_factory, tmp_path, "operator")
    _done(api, store, run_id)
    (cluster,) = api.created("daskclusters", NS)
    assert cluster["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert cluster["spec"]["worker"]["replicas"] == 2
    assert cluster["spec"]["idleTimeout"] == 1800
    name = cluster["metadata"]["name"]
    log = _logs(api, api.created("pods", NS))
    assert f"DaskCluster {name} of run {run_id} Running" in log, log
    assert "2 worker(s)" in log, log
    # Deleted at the end: the cluster and, through the operator's ownership, its pods.
    assert api.get_object("daskclusters", NS, name) is None
    _wait_for(lambda: not [p for p in api.pods(NS) if p["metadata"]["name"].startswith(
        name)], "the operator's pods to be collected", 30)


def test_workers_that_cannot_be_scheduled_are_named_in_an_event_and_fail_the_run_in_time(
        kube_api_factory: Callable[..., FakeKubeAPI], tmp_path: Path) -> None:
    from mlops.controller import EphemeralCluster
    from mlops.errors import ClusterError
    from mlops.k8s import KubeClient, load_target
    from tests.chart_render import render_chart
    from tests.test_controller_dask import NS, RELEASE, _fake, _one, _values

    # Workers that ask for more CPUs than any node has (and no autoscaler adds one).
    docs = render_chart(_values(tmp_path, worker={"resources": {
        "requests": {"cpu": "32", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}),
        name=RELEASE, namespace=NS)
    _fake(kube_api_factory, tmp_path, docs)
    base = yaml.safe_load(_one(docs, "ConfigMap")["data"]["config.yaml"])
    base["dask"]["workers_timeout"] = 3
    config = Config.from_dict(base)
    events: list[tuple[str, str, str]] = []
    with KubeClient(load_target(kubeconfig=str(tmp_path / "kubeconfig"))) as backend:
        cluster = EphemeralCluster(config, backend, "r-pend",
                                   events=lambda t, r, a, n: events.append((t, r, n)))
        start = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            cluster.start()
        elapsed = time.monotonic() - start
        cluster.stop()
    message = str(caught.value)
    assert caught.value.exit_code == 1 and elapsed < 30
    assert "only 0 of the 2 dask workers asked for ran within 3 s (dask.workers_timeout)" \
        in message
    assert "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu" in message
    assert 0 < len(events) <= 3 and {r for _, r, _ in events} == {"DaskWorkersPending"}
    # One Event per new reason (pods not created yet, then unschedulable: a slow machine
    # sees more of them); the last one says why the workers are pending.
    warnings = [n for t, _, n in events if t == "Warning"]
    assert warnings
    note = warnings[-1]
    assert "waiting for 2 more dask worker(s) of run r-pend" in note
    assert "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu" in note
    assert "-dask-worker-" in note


@pytest.mark.parametrize("cluster", ["local", "ephemeral", "operator"])
def test_controller_dry_run_prints_every_object_of_the_run_without_an_api_server(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes_validate import validate

    from mlops.cli import main
    from tests.chart_render import render_chart
    from tests.test_controller_dask import NS, RELEASE, _one, _values

    docs = render_chart(_values(Path("/src"), cluster=cluster), name=RELEASE, namespace=NS)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(_one(docs, "ConfigMap")["data"]["config.yaml"])
    monkeypatch.setenv("MLOPS_JOB_NAME", "ctl-7")
    monkeypatch.setenv("MLOPS_JOB_UID", "0c6f3c1e-0000-4000-8000-000000000007")
    # No API server: a kubeconfig that points nowhere is never read.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code = main(["controller", "--dry-run", "--run-id", "r-7", "--config", str(config_file),
                 "--namespace", NS])
    out, err = capsys.readouterr()
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    kinds = [o["kind"] for o in objects]
    expected = {"local": [], "ephemeral": ["ReplicaSet", "Service", "ReplicaSet"],
                "operator": ["DaskCluster"]}[cluster]
    assert kinds == [*expected, "Job", "Job", "Job"]
    steps = [o["metadata"]["labels"]["mlops/step"] for o in objects if o["kind"] == "Job"]
    assert steps == ["ingest", "monitor-check", "train"]
    for obj in objects:
        assert obj["metadata"]["namespace"] == NS
        assert obj["metadata"]["ownerReferences"][0]["name"] == "ctl-7"
        if obj["kind"] == "DaskCluster":  # a custom resource: its pod specs as Pods
            for part in ("scheduler", "worker"):
                validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                          "spec": obj["spec"][part]["spec"]}, "1.30.0", strict=True)
        else:
            validate(obj, "1.30.0", strict=True)
    if cluster != "local":
        env = {e["name"]: e.get("value") for e in objects[-1]["spec"]["template"]["spec"][
            "containers"][0]["env"]}
        assert env["MLOPS_DASK_ADDRESS"].startswith("tcp://") and \
            env["MLOPS_DASK_ADDRESS"].endswith(f".{NS}.svc:8786")


# --- training data larger than the cluster's memory ------------------------------------------
def _rows(i: int, rows: int, features: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    x = rng.normal(size=(rows, features))
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(features)])
    frame["target"] = (x[:, 0] + 0.1 * rng.normal(size=rows) > 0.8).astype("int64")
    return frame


def test_lightgbm_on_data_larger_than_the_workers_memory_samples_or_exits_2(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import dask.dataframe as dd
    import numpy as np
    from distributed import Client, LocalCluster

    from mlops.engines.dask import NO_DASHBOARD, _fit
    from mlops.errors import BadInputError

    parts, rows, features = 20, 50_000, 20  # 1M rows: ~264 MB for LightGBM, generated lazily
    train = dd.from_map(_rows, list(range(parts)), rows=rows, features=features)
    names = [f"f{j}" for j in range(features)]
    base = {"data": {"engine": "dask"}, "training": {"model_type": "lightgbm",
                                                     "params": {"n_estimators": 5}},
            "dask": {"max_train_rows": 20_000}}
    sample = Config.from_dict(base)
    fail = Config.from_dict({**base, "dask": {**base["dask"], "oversize": "fail"}})
    # A real worker process limited to 500 MiB (it pauses at 80%, 400 MiB; ~256 MiB of it
    # are the libraries): 1M rows do not fit, a 20k-row sample does.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      memory_limit="500MiB", **NO_DASHBOARD) as cluster, \
            Client(cluster, set_as_default=False) as client, client.as_current():
        with pytest.raises(BadInputError) as caught:
            _fit(client, fail, train, names, "target", parts * rows)
        message = str(caught.value)
        assert caught.value.exit_code == 2
        assert "1000000 rows x 20 features" in message and "needs about" in message
        assert "the cluster has" in message and "dask.oversize: sample" in message
        with caplog.at_level(logging.WARNING, "mlops.engines.dask"):
            model, info = _fit(client, sample, train, names, "target", parts * rows)
        # Trained on a bounded stratified sample, with a warning naming both sizes.
        assert info["of_rows"] == parts * rows and 0 < info["rows"] <= 20_000 * 1.05
        assert info["method"].startswith("stratified (by class) sample of")
        assert info["needed_bytes"] > info["available_bytes"]
        assert "needs about" in caplog.text and "the cluster has" in caplog.text
        probe = _rows(99, 1000, features)
        assert set(np.unique(model.predict(probe[names]))) <= {0, 1}
        # A training split that fits trains on every row, as before.
        small = dd.from_map(_rows, [0, 1], rows=2000, features=features)
        _, info = _fit(client, sample, small, names, "target", 4000)
        assert info["rows"] == 4000 and info["method"].startswith("all rows")


def test_a_step_waits_for_the_workers_asked_for_and_says_how_many_joined() -> None:
    from distributed import Client, LocalCluster

    from mlops.engines.dask import NO_DASHBOARD, connect
    from mlops.errors import ClusterError

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster:
        base = Config.from_dict({"data": {"engine": "dask"}, "dask": {
            "cluster": "ephemeral", "n_workers": 2, "workers_timeout": 1}}).dask
        settings = dataclasses.replace(base, address=cluster.scheduler_address)
        # All of dask.n_workers by default: one of two joins, the step fails in time.
        with pytest.raises(ClusterError, match=r"1 of the 2 dask workers asked for .* "
                                               r"within 1 s \(dask.workers_timeout\)"), \
                connect(settings):
            pass
        # dask.min_workers 1: it goes on with the one that joined.
        with connect(dataclasses.replace(settings, min_workers=1)) as client:
            assert isinstance(client, Client)
            assert len(client.scheduler_info()["workers"]) == 1
