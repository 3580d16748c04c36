"""A step stopped by SIGTERM (issue 20 item 11): a deadline, an eviction or a delete sends
SIGTERM to the pod. The step stops at once with exit 143 (not after the grace period's
SIGKILL), records the termination in the run's history and writes no result, so the
retried step redoes it. Tested on a real ``mlops train`` subprocess, mid-training."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mlops.cli import main
from mlops.config import load_config
from mlops.store.workspace import Workspace

RUN = "20261204-020000-sigt"


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler (its SigCgt mask, Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_sigterm_mid_training_exits_143_and_is_recorded(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"uri": str(tmp_path / "store")},
        "data": {"n_samples": 2000, "n_features": 8},
        # A fit of minutes: SIGTERM surely lands while the forest grows.
        "training": {"model_type": "random_forest", "params": {"n_estimators": 200000}},
    }), encoding="utf-8")
    for step in ("ingest", "monitor-check"):
        assert main([step, "--config", str(config), "--run-id", RUN]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "train", "--config", str(config),
                             "--run-id", RUN], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _handles_sigterm(proc.pid):  # the step is running (its handler is set)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the step never installed a SIGTERM handler"
            time.sleep(0.05)
        time.sleep(1.0)  # well into the fit
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert f"step train of run {RUN} terminated by SIGTERM" in err
    assert stopped < 20  # not the grace period's SIGKILL: it stopped itself
    ws = Workspace.open(load_config(config, env={}))
    assert ws.read_result(RUN, "train") is None  # the retried step trains again
    assert ws.registry.list_versions() == []
    (record,) = [r for r in ws.monitor.get_history() if r.get("run_id") == RUN]
    assert record["status"] == "failed" and record["step"] == "train"
    assert record["terminated"] is True and record["exit_code"] == 143
    assert "SIGTERM" in record["error"]
    # The history command shows it like any failed run.
    assert main(["history", "--config", str(config)]) == 0
