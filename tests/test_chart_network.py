"""The chart's optional NetworkPolicy (issue 20 item 9), rendered with the real Helm engine
and validated with kubernetes-validate, then evaluated (NetworkPolicy semantics: a
connection needs an egress rule of its source and an ingress rule of its destination)
against the labels and ports of the pods the controller really builds, as a namespace
whose default is deny would enforce it. No network plugin runs here, so the evaluator
below implements the parts of the API the chart uses (podSelector matchLabels, ports,
empty rules) and refuses any other shape rather than guessing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from mlops.config import (
    DASK_NANNY_PORT,
    DASK_SCHEDULER_PORT,
    DASK_WORKER_PORT,
    ENV_DASK_ADDRESS,
    LIGHTGBM_PORT,
    Config,
    load_config,
)
from mlops.k8s import Owner, build_dask_cluster, build_job
from tests.chart_render import CHART_DIR, by_kind, merge_values, render_chart

EPHEMERAL = {"persistence": {"enabled": False}, "dask": {"cluster": "ephemeral"},
             "config": {"storage": {"uri": "s3://bucket/store"},
                        "data": {"engine": "dask", "source": "s3://bucket/table/"}}}
ON = {"networkPolicy": {"enabled": True}}
OWNER = Owner("nightly-123", "3f1c6c1e-0000-4000-8000-000000000001")
EXTERNAL = {"labels": None}  # an address outside the cluster (a bucket, the API server)


def _selects(selector: dict[str, Any], labels: dict[str, str] | None) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator does not know {selector}"
    if labels is None:
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peers: list[dict[str, Any]] | None, labels: dict[str, str] | None) -> bool:
    if not peers:  # no from/to: any peer
        return True
    for peer in peers:
        assert set(peer) == {"podSelector"}, f"evaluator does not know {peer}"
        if _selects(peer["podSelector"], labels):
            return True
    return False


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _allowed(policies: list[dict[str, Any]], src: dict[str, str] | None,
             dst: dict[str, str] | None, port: int, protocol: str = "TCP") -> bool:
    """Whether ``src`` may connect to ``dst:port`` in a default-deny namespace."""
    def side(direction: str, pod: dict[str, str] | None, other: dict[str, str] | None,
             peer_key: str) -> bool:
        mine = [p for p in policies if _selects(p["spec"]["podSelector"], pod)
                and direction in p["spec"]["policyTypes"]]
        if pod is None or not mine:  # outside the cluster, or a pod not of this chart:
            return True              # its own policies decide, not ours
        rules = [r for p in mine for r in p["spec"].get(direction.lower()) or []]
        return any(_peer_matches(r.get(peer_key), other)
                   and _port_matches(r.get("ports"), port, protocol) for r in rules)

    return side("Egress", src, dst, "to") and side("Ingress", dst, src, "from")


def _run_pods(values: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rendered = render_chart(merge_values(EPHEMERAL, values))
    (cm,) = by_kind(rendered, "ConfigMap")
    config = Config.from_dict(yaml.safe_load(cm["data"]["config.yaml"]))
    (cronjob,) = by_kind(rendered, "CronJob")
    cluster = build_dask_cluster(config.kubernetes, config.dask, "run-1", namespace="ns",
                                 owner=OWNER)
    step = build_job(config.kubernetes, "run-1", "train", namespace="ns", owner=OWNER)
    pods = {
        "controller": cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        "step": step["spec"]["template"]["metadata"]["labels"],
        # The pods the ReplicaSets create carry their template's labels; two workers of
        # one ReplicaSet share them.
        "scheduler": cluster.scheduler["spec"]["template"]["metadata"]["labels"],
        "worker": cluster.workers["spec"]["template"]["metadata"]["labels"],
        "worker2": cluster.workers["spec"]["template"]["metadata"]["labels"],
    }
    return by_kind(rendered, "NetworkPolicy"), pods


def test_no_network_policy_by_default() -> None:
    policies, _ = _run_pods({})
    assert policies == []


def test_the_policy_is_valid_kubernetes() -> None:
    for values in (ON, {"networkPolicy": {"enabled": True, "allowExternalEgress": False,
                                          "extraEgress": [{"to": [{"ipBlock": {
                                              "cidr": "10.0.0.1/32"}}],
                                              "ports": [{"port": 443}]}]}}):
        policies, _ = _run_pods(values)
        (policy,) = policies
        kubernetes_validate.validate(policy, "1.30.0", strict=True)


def test_a_run_works_in_a_default_deny_namespace() -> None:
    policies, pods = _run_pods(ON)
    needed = [
        ("step", "scheduler", DASK_SCHEDULER_PORT),   # a step's client
        ("controller", "scheduler", DASK_SCHEDULER_PORT),  # waiting for the workers
        ("worker", "scheduler", DASK_SCHEDULER_PORT),
        ("scheduler", "worker", DASK_WORKER_PORT),
        ("worker", "worker2", DASK_WORKER_PORT),      # workers fetch data from each other
        ("worker2", "worker", DASK_NANNY_PORT),
        ("worker", "worker2", LIGHTGBM_PORT),         # LightGBM's ring while training
        ("worker2", "worker", LIGHTGBM_PORT),
    ]
    for src, dst, port in needed:
        assert _allowed(policies, pods[src], pods[dst], port), (src, dst, port)
    for pod in pods.values():
        assert _allowed(policies, pod, EXTERNAL["labels"], 53, "UDP")  # DNS
        assert _allowed(policies, pod, EXTERNAL["labels"], 443)  # bucket, API server


def test_nothing_else_reaches_the_runs_pods() -> None:
    policies, pods = _run_pods(ON)
    stranger = {"app.kubernetes.io/name": "other", "app.kubernetes.io/instance": "x"}
    other_release = {**pods["worker"], "app.kubernetes.io/instance": "another"}
    for name in ("scheduler", "worker", "step", "controller"):
        assert not _allowed(policies, stranger, pods[name], DASK_SCHEDULER_PORT), name
        assert not _allowed(policies, other_release, pods[name], DASK_WORKER_PORT), name
    # Among the run's pods, only the fixed ports (no dashboard, no random port).
    assert not _allowed(policies, pods["step"], pods["scheduler"], 8787)
    assert not _allowed(policies, pods["worker"], pods["worker2"], 40123)


def test_external_egress_can_be_limited_to_named_rules() -> None:
    api = {"to": [{"podSelector": {"matchLabels": {"app": "api-proxy"}}}],
           "ports": [{"port": 443, "protocol": "TCP"}]}
    policies, pods = _run_pods({"networkPolicy": {
        "enabled": True, "allowExternalEgress": False, "extraEgress": [api]}})
    proxy = {"app": "api-proxy"}
    assert _allowed(policies, pods["controller"], proxy, 443)
    assert not _allowed(policies, pods["controller"], {"app": "elsewhere"}, 443)
    assert _allowed(policies, pods["step"], pods["scheduler"], DASK_SCHEDULER_PORT)


def test_the_policys_ports_are_the_ones_the_pods_use() -> None:
    (policy,), _ = _run_pods(ON)
    ports = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
    assert ports == {DASK_SCHEDULER_PORT, DASK_WORKER_PORT, DASK_NANNY_PORT, LIGHTGBM_PORT}


@pytest.mark.parametrize("workers", [1, 2])
def test_lightgbm_listens_on_the_fixed_port_on_the_runs_cluster(workers: int,
                                                               tmp_path: Path) -> None:
    """On the run's cluster (one worker per pod, each its own host) LightGBM gets the
    fixed port; where workers share a host (a local cluster: here, two on 127.0.0.1) it
    keeps choosing free ports itself, since one port cannot serve two workers."""
    from distributed import Client, LocalCluster

    from mlops.engines.dask import _lightgbm_network

    # A step of an ephemeral run: the controller hands the address over in the env.
    ephemeral = Config.from_dict({"data": {"engine": "dask"}, "dask": {"cluster": "ephemeral"}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": {"engine": "dask"},
                                    "dask": {"cluster": "ephemeral"}}), encoding="utf-8")
    run = load_config(path, {ENV_DASK_ADDRESS: "tcp://run-scheduler:8786"})
    assert run.dask.address
    local = Config.from_dict({"data": {"engine": "dask"}})
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        fixed = _lightgbm_network(client, run, {})
        assert fixed == ({"local_listen_port": LIGHTGBM_PORT} if workers == 1 else {})
        assert _lightgbm_network(client, local, {}) == {}
        assert _lightgbm_network(client, ephemeral, {}) == {}  # not under the controller
        # A port or the machines in training.params win.
        assert _lightgbm_network(client, run, {"local_listen_port": 13000}) == {}
        assert _lightgbm_network(client, run, {"machines": "a:1,b:1"}) == {}


def test_lint_with_every_new_option_on() -> None:
    values = merge_values(EPHEMERAL, ON, {
        "priorityClassName": "nightly",
        "dask": {"worker": {"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway"}], "spill": {"volume": "ephemeral"}}}})
    report = helm_python.lint(CHART_DIR, values, strict=True, namespace="ns",
                              kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
