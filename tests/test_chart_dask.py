"""The chart's Dask values (``dask.*``) with the real Helm engine: what they render into
config.yaml, the Role rules an ephemeral cluster needs (and only then), the strict schema
and the combinations refused at install time."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from mlops.config import Config
from tests.chart_render import merge_values, render_chart, render_raw, values_file

EPHEMERAL = {"dask": {"cluster": "ephemeral", "nWorkers": 3},
             "persistence": {"enabled": False},
             "config": {"storage": {"uri": "s3://bucket/store"},
                        "data": {"engine": "dask", "source": "s3://bucket/table/"}}}
BASE_RULES = [
    (["batch"], ["jobs"], ["create", "get", "list", "watch", "delete"]),
    (["batch"], ["jobs/finalizers"], ["update"]),
    ([""], ["pods/log"], ["get"]),
    (["events.k8s.io"], ["events"], ["create"]),
]


def _kind(docs: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    (found,) = [d for ds in docs.values() for d in ds if d.get("kind") == kind]
    return found


def _rules(values: dict[str, Any]) -> list[tuple[list[str], list[str], list[str]]]:
    role = _kind(render_chart(values), "Role")
    return sorted((r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"])


def _config(values: dict[str, Any]) -> dict[str, Any]:
    return dict(yaml.safe_load(_kind(render_chart(values), "ConfigMap")["data"]["config.yaml"]))


def test_the_role_grants_workload_writes_only_for_a_cluster_of_the_run() -> None:
    pods = ([""], ["pods"], ["get", "list", "watch"])
    assert _rules({}) == sorted([*BASE_RULES, pods])
    assert _rules(EPHEMERAL) == sorted([
        *BASE_RULES, pods,
        # the run's scheduler and worker ReplicaSets (no bare pods: drain and replacement)
        (["apps"], ["replicasets"], ["create", "get", "delete"]),
        # the headless Service in front of the scheduler: no get, list or update needed
        ([""], ["services"], ["create", "delete"]),
    ])
    operator = merge_values(EPHEMERAL, {"dask": {"cluster": "operator"}})
    assert _rules(operator) == sorted([
        *BASE_RULES, pods,
        # the run's DaskCluster only: the operator makes its pods and Service
        (["kubernetes.dask.org"], ["daskclusters"], ["create", "get", "delete"]),
    ])
    assert _config(operator)["dask"] == {"cluster": "operator", "n_workers": 3}


def test_values_reach_config_yaml_and_load() -> None:
    values = merge_values(EPHEMERAL, {"dask": {
        "startTimeoutSeconds": 90,
        "worker": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"},
                                 "limits": {"memory": "8Gi"}}}}})
    cfg = _config(values)
    assert cfg["dask"] == {"cluster": "ephemeral", "n_workers": 3}
    # A claim every node can mount serves an ephemeral cluster as well as a bucket does.
    rwx = _config(merge_values(EPHEMERAL, {"persistence": {
        "enabled": True, "accessModes": ["ReadWriteMany"]}}))
    assert rwx["kubernetes"]["same_node_as_controller"] is False
    assert cfg["kubernetes"]["dask"]["worker_resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    assert cfg["kubernetes"]["dask"]["start_timeout_seconds"] == 90
    loaded = Config.from_dict(cfg)
    assert loaded.dask.cluster == "ephemeral" and loaded.dask.n_workers == 3
    assert loaded.kubernetes.dask.scheduler_resources["limits"] == {"memory": "1Gi"}
    # Other config.dask keys pass through; the default stays a local cluster.
    local = _config({"config": {"dask": {"threads_per_worker": 4}}})
    assert local["dask"] == {"cluster": "local", "n_workers": 2, "threads_per_worker": 4}
    for name in ("values-dev.yaml", "values-prod.yaml"):
        assert Config.from_dict(_config(values_file(name))).dask.cluster == "local"


@pytest.mark.parametrize("bad", [
    {"dask": {"cluster": "remote"}},
    {"dask": {"nWorkers": 0}},
    {"dask": {"nWorkers": "2"}},
    {"dask": {"schedular": {}}},
    {"dask": {"worker": {"resources": {"limits": None}}}},  # no limits
    {"dask": {"scheduler": {"resources": {"requests": {"cpu": "1"}, "limits": {}},
                            "replicas": 2}}},
])
def test_the_schema_is_strict(bad: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_raw(bad)


@pytest.mark.parametrize(("values", "words"), [
    ({"config": {"dask": {"cluster": "ephemeral"}}},
     "config.dask.cluster is rendered by the chart; set dask.cluster"),
    ({"config": {"dask": {"n_workers": 4}}},
     "config.dask.n_workers is rendered by the chart; set dask.nWorkers"),
    (merge_values(EPHEMERAL, {"config": {"dask": {"address": "tcp://dask:8786"}}}),
     "config.dask.address names an existing scheduler"),
    ({"dask": {"cluster": "ephemeral"}, "persistence": {"accessModes": ["ReadWriteMany"]}},
     "dask.cluster: ephemeral needs config.data.engine"),
    ({"dask": {"cluster": "operator"}, "persistence": {"accessModes": ["ReadWriteMany"]}},
     "dask.cluster: operator needs config.data.engine"),
    # A one-node claim would pin the whole Dask cluster to the controller's node.
    (merge_values(EPHEMERAL, {"persistence": {"enabled": True}}),
     "dask.cluster: ephemeral with persistence.accessModes ReadWriteOnce would pin"),
    (merge_values(EPHEMERAL, {"persistence": {"enabled": True, "existingClaim": "store"}}),
     "use persistence.accessModes [ReadWriteMany], or a bucket"),
])
def test_combinations_that_cannot_work_fail_the_install(values: dict[str, Any],
                                                        words: str) -> None:
    with pytest.raises(helm_python.HelmError) as info:
        render_raw(values)
    assert words in str(info.value)
