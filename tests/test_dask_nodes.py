"""Dask on real nodes: what a 16-core node with a memory-limited pod does to the workers.

The 2-core machine hides a bug that divides by the CPU count: distributed's
``memory_limit: auto`` is memory x threads / CPU count, and without a CPU limit the CPU count
is the node's cores. The fake node (tests/fakes/kube/node.py) makes the worker see 16 CPUs,
in this process (a LocalCluster's nannies) and in the fake API server's pods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlops.config import Config
from mlops.dask_engine import connect, container_memory_limit, worker_memory_limit
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
    import mlops.dask_engine as engine

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
