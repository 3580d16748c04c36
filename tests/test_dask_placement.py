"""Placement, priority and spill volume of an ephemeral run's Dask pods (issue 20 items 6
and 7), from the chart's values through config.yaml (the real Helm engine) to the pod
specs the controller builds (:func:`mlops.kube.dask.build_dask_cluster`), each pod valid
Kubernetes (kubernetes-validate, strict)."""

from __future__ import annotations

from typing import Any, NamedTuple

import helm_python
import kubernetes_validate
import pytest
import yaml

from mlops.config import DASK_WORKER_PORT, Config
from mlops.kube.dask import DASK_SPILL_DIR, build_dask_cluster
from mlops.kube.manifests import Owner, build_job
from tests.chart_render import by_kind, merge_values, render_chart, render_raw, values_file

KUBE_VERSION = "1.30.0"
BUCKET = {"persistence": {"enabled": False},
          "config": {"storage": {"uri": "s3://bucket/store"},
                     "data": {"engine": "dask", "source": "s3://bucket/table/"}}}
EPHEMERAL = merge_values(BUCKET, {"dask": {"cluster": "ephemeral", "nWorkers": 2}})
TRAIN_POOL = [{"key": "pool", "operator": "Equal", "value": "train", "effect": "NoSchedule"}]
ZONE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]}]}}}
SPREAD = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
           "whenUnsatisfiable": "ScheduleAnyway"}]
OWNER = Owner("nightly-123", "3f1c6c1e-0000-4000-8000-000000000001")


class _Pods(NamedTuple):
    """The pod templates of the scheduler's and the workers' ReplicaSets."""

    scheduler: dict[str, Any]
    workers: list[dict[str, Any]]


def _cluster(values: dict[str, Any]) -> tuple[Config, _Pods]:
    (cm,) = by_kind(render_chart(values), "ConfigMap")
    config = Config.from_dict(yaml.safe_load(cm["data"]["config.yaml"]))
    cluster = build_dask_cluster(config.kubernetes, config.dask, "run-1", namespace="ns",
                                 owner=OWNER)
    for obj in cluster.objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    return config, _Pods(cluster.scheduler["spec"]["template"],
                         [cluster.workers["spec"]["template"]])


def test_dask_pods_are_placed_from_the_values() -> None:
    values = merge_values(EPHEMERAL, {
        "priorityClassName": "nightly-batch",
        "dask": {
            "scheduler": {"nodeSelector": {"pool": "system"}, "priorityClassName": "critical"},
            "worker": {"nodeSelector": {"pool": "train"}, "tolerations": TRAIN_POOL,
                       "affinity": ZONE_AFFINITY, "topologySpreadConstraints": SPREAD}}})
    config, cluster = _cluster(values)
    scheduler, workers = cluster.scheduler["spec"], [w["spec"] for w in cluster.workers]
    assert scheduler["nodeSelector"] == {"pool": "system"}
    assert scheduler["priorityClassName"] == "critical"
    assert "tolerations" not in scheduler and "affinity" not in scheduler
    for spec in workers:
        assert spec["nodeSelector"] == {"pool": "train"}
        assert spec["tolerations"] == TRAIN_POOL
        assert spec["affinity"] == ZONE_AFFINITY
        # The run's priority reaches the workers (no priority of their own set).
        assert spec["priorityClassName"] == "nightly-batch"
        (spread,) = spec["topologySpreadConstraints"]
        # A constraint without labelSelector spreads this run's workers.
        assert spread["labelSelector"] == {"matchLabels": {
            "app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "dask-worker",
            "mlops/run-id": "run-1"}}
    # The whole run has the priority: the controller and every step too.
    (cronjob,) = by_kind(render_chart(values), "CronJob")
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "priorityClassName"] == "nightly-batch"
    job = build_job(config.kubernetes, "run-1", "train", namespace="ns", owner=OWNER)
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "nightly-batch"


def test_no_placement_by_default() -> None:
    _, cluster = _cluster(EPHEMERAL)
    for pod in (cluster.scheduler, *cluster.workers):
        for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                    "priorityClassName"):
            assert key not in pod["spec"], key


def _spill(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--local-directory") + 1] == DASK_SPILL_DIR
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == DASK_SPILL_DIR]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return container, volume


def test_workers_spill_to_a_volume_sized_from_the_values() -> None:
    _, cluster = _cluster(merge_values(EPHEMERAL, {"dask": {"worker": {"spill": {
        "size": "40Gi"}}}}))
    for worker in cluster.workers:
        container, volume = _spill(worker)
        # Not /tmp with 1Gi: an emptyDir of the size, and the pod asks for that much disk.
        assert volume["emptyDir"] == {"sizeLimit": "40Gi"}
        assert container["resources"]["requests"]["ephemeral-storage"] == "40Gi"
    # The scheduler does not spill.
    assert "--local-directory" not in cluster.scheduler["spec"]["containers"][0]["args"]


def test_workers_can_spill_to_a_generic_ephemeral_volume() -> None:
    _, cluster = _cluster(merge_values(EPHEMERAL, {"dask": {"worker": {"spill": {
        "volume": "ephemeral", "size": "200Gi", "storageClass": "fast-ssd"}}}}))
    container, volume = _spill(cluster.workers[0])
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
                     "resources": {"requests": {"storage": "200Gi"}}}
    assert "ephemeral-storage" not in container["resources"]["requests"]


def test_workers_listen_on_a_fixed_port() -> None:
    _, cluster = _cluster(EPHEMERAL)
    for worker in cluster.workers:
        (container,) = worker["spec"]["containers"]
        args = container["args"]
        assert args[args.index("--worker-port") + 1] == str(DASK_WORKER_PORT)
        assert {"name": "tcp-worker", "containerPort": DASK_WORKER_PORT,
                "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize("bad", [
    {"dask": {"worker": {"spill": {"volume": "hostPath"}}}},
    {"dask": {"worker": {"spill": {"size": "lots"}}}},
    {"dask": {"worker": {"nodeSelectr": {}}}},
    {"dask": {"worker": {"topologySpreadConstraints": [{"maxSkew": 1}]}}},
    {"priorityClassName": 5},
])
def test_bad_placement_values_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_raw(merge_values(EPHEMERAL, bad))


def test_prod_workers_go_to_the_train_pool() -> None:
    """values-prod.yaml pins train to its pool; with an ephemeral cluster the workers
    (where LightGBM trains) follow it instead of landing anywhere."""
    prod = values_file("values-prod.yaml")
    _, cluster = _cluster(merge_values(prod, {"dask": {"cluster": "ephemeral"},
                                              "config": {"data": {"engine": "dask"}}}))
    train = prod["steps"]["train"]
    for worker in cluster.workers:
        spec = worker["spec"]
        assert spec["nodeSelector"] == train["nodeSelector"]
        assert spec["tolerations"] == train["tolerations"]
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        _, volume = _spill(worker)
        assert volume["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"] == {
            "requests": {"storage": "50Gi"}}
    assert "nodeSelector" not in cluster.scheduler["spec"]


def test_the_tmp_size_of_every_pod_comes_from_the_values() -> None:
    """A step's local Dask cluster spills to /tmp: its size is a value, not a fixed 1Gi."""
    rendered = render_chart(merge_values(BUCKET, {"tmpSizeLimit": "8Gi"}))
    (cm,) = by_kind(rendered, "ConfigMap")
    step = yaml.safe_load(cm["data"]["config.yaml"])["kubernetes"]["pod_template"]
    (cronjob,) = by_kind(rendered, "CronJob")
    controller = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for spec in (step, controller):
        (tmp,) = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp["emptyDir"] == {"sizeLimit": "8Gi"}
    with pytest.raises(helm_python.HelmValuesError):
        render_raw(merge_values(BUCKET, {"tmpSizeLimit": "big"}))


def test_a_mount_on_the_spill_directory_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"persistence\.mountPath"):
        render_raw({"persistence": {"mountPath": DASK_SPILL_DIR}})
