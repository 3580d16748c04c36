"""Controller overhead per step: from one step Job completing to the next Job being created.

Runs the real controller (``mlops.kube.controller.run_controller``, real ``kubernetes``
client) against the fake API server of the test suite on 127.0.0.1. The step containers are a tiny
stand-in that writes the step's result JSON straight into the local store, so the measured
time is the controller's: noticing the Complete event on its watch, reading the result from
the store, building and creating the next Job. The gaps are taken from a second, independent
watch on all Jobs of the namespace (both events go through the same watch, so its latency
cancels out).

Usage: ``PYTHONPATH=. python benchmarks/bench_controller.py [--runs N]``.
Target: median <= 0.5 s. Writes ``benchmarks/results/controller.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from mlops.config import Config
from mlops.kube.controller import run_controller
from tests.chart_render import step_pod_template
from tests.fakes.kube import FakeKubeAPI

NS = "mlops"
TARGET_SECONDS = 0.5
RESULTS = Path(__file__).resolve().parent / "results" / "controller.json"

# A stand-in step: writes runs/<run-id>/<step>.json into the store (storage.uri of the
# mounted config) and exits 0. monitor-check always asks for a retrain, so each run has
# three steps and two step-to-step gaps.
STEP = r'''
import json, os, sys, yaml
step, cfg, run_id = sys.argv[1], sys.argv[3], sys.argv[5]
root = yaml.safe_load(open(cfg))["storage"]["uri"]
out = {"ingest": {"data_version": "d1", "rows": 1, "source": "bench"},
       "monitor-check": {"data_version": "d1", "model_version": None, "retrain": True,
                         "reasons": ["bench"], "accuracy": None, "drift": 0.0,
                         "drift_counted": False, "n_samples": 1},
       "train": {"data_version": "d1", "model_version": run_id, "accuracy": 1.0,
                 "train_rows": 1, "test_rows": 1}}[step]
os.makedirs(os.path.join(root, "runs", run_id), exist_ok=True)
with open(os.path.join(root, "runs", run_id, step + ".json"), "w") as f:
    json.dump({"run_id": run_id, "step": step, **out}, f)
'''


def _observe(kubeconfig: str, events: list[tuple[float, str, str]], stop: threading.Event,
             ready: threading.Event) -> None:
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        batch = client.BatchV1Api(api)
        seen: set[tuple[str, str]] = set()
        listed = batch.list_namespaced_job(NS).metadata
        rv = listed.resource_version if listed is not None else None
        ready.set()
        end = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < end:
            w = watch.Watch()
            for ev in w.stream(batch.list_namespaced_job, NS, resource_version=rv,
                               timeout_seconds=1):
                obj = ev["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                now = time.monotonic()
                if (name, "created") not in seen:
                    seen.add((name, "created"))
                    events.append((now, name, "created"))
                conds = (obj.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Complete" and c["status"] == "True" for c in conds) \
                        and (name, "complete") not in seen:
                    seen.add((name, "complete"))
                    events.append((now, name, "complete"))
    finally:
        api.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the result. Returns 0, or 1 above the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="controller runs (2 gaps each)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        step = tmp / "step.py"
        step.write_text(STEP)
        # The step pod is the chart's (its only definition), mounting the chart's ConfigMap.
        pod = step_pod_template()
        config_map = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
        doc = {"storage": {"uri": str(tmp / "store")},
               "kubernetes": {"namespace": NS, "step_timeout_seconds": 60, "pod_template": pod}}
        text = yaml.safe_dump(doc)
        cfg = Config.from_dict(doc)
        with FakeKubeAPI(namespaces=("default", NS),
                         command_map={"mlops": [sys.executable, str(step)]}) as api:
            api.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": config_map, "namespace": NS},
                               "data": {"config.yaml": text}})
            kubeconfig = str(api.write_kubeconfig(tmp / "kubeconfig", namespace=NS))
            events: list[tuple[float, str, str]] = []
            stop, ready = threading.Event(), threading.Event()
            observer = threading.Thread(target=_observe, args=(kubeconfig, events, stop, ready))
            observer.start()
            try:
                ready.wait(10)
                for i in range(args.runs):
                    run_controller(cfg, run_id=f"bench-{i}", kubeconfig=kubeconfig)
                time.sleep(1.5)  # let the observer see the last events
            finally:
                stop.set()
                observer.join(10)
    at = {(name, kind): t for t, name, kind in events}
    gaps = []
    for i in range(args.runs):
        names = [f"mlops-bench-{i}-{s}" for s in ("ingest", "monitor-check", "train")]
        for prev, nxt in itertools.pairwise(names):
            if (prev, "complete") in at and (nxt, "created") in at:
                gaps.append(at[(nxt, "created")] - at[(prev, "complete")])
    result: dict[str, Any] = {
        "benchmark": "controller overhead per step (Job Complete -> next Job created)",
        "runs": args.runs, "samples": len(gaps),
        "median_seconds": round(statistics.median(gaps), 4) if gaps else None,
        "p90_seconds": round(sorted(gaps)[int(0.9 * (len(gaps) - 1))], 4) if gaps else None,
        "max_seconds": round(max(gaps), 4) if gaps else None,
        "target_median_seconds": TARGET_SECONDS,
    }
    result["ok"] = bool(gaps) and result["median_seconds"] <= TARGET_SECONDS
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
