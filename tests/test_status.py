"""``mlops status``: one screen, --json, exit 0 healthy / 3 unhealthy, quick and read-only."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.observe.status import check_health
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"n_samples": 300, "n_features": 4}


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"


def config_file(tmp_path: Path, store: str, **sections: Any) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": store}, "data": GOOD, **sections}))
    return str(path)


def status(capsys: pytest.CaptureFixture[str], cfg: str, *extra: str) -> tuple[int, str]:
    code = main(["status", "-c", cfg, *extra])
    return code, capsys.readouterr().out


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_an_empty_store_is_unhealthy(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status(capsys, config_file(tmp_path, str(tmp_path / "store")))
    assert code == 3
    assert out.splitlines()[:2] == ["health:        UNHEALTHY",
                                    "  problem:     no successful run yet"]
    assert "last run:      none yet" in out


def test_healthy_after_a_run_then_each_kind_of_trouble(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    # 1000 rows: the serving model's out-of-sample accuracy (its 200 held-out rows) is
    # below 1, so the stricter limit below can catch it.
    cfg = config_file(tmp_path, str(store), reporting={"enabled": True},
                      monitoring={"drift_method": "psi"},
                      data={"n_samples": 1000, "n_features": 4})
    run_pipeline(cfg, run_id="20261101-020000-aaaa")
    before = snapshot(store)
    code, out = status(capsys, cfg)
    assert code == 0, out
    assert out.startswith("health:        HEALTHY\n")
    assert "last run:      20261101-020000-aaaa succeeded" in out
    assert "serving model: 20261101-020000-aaaa accuracy" in out
    assert "nights since last retrain: 0" in out
    assert "failed runs in the last week: 0" in out
    assert f"report:        {store}/runs/20261101-020000-aaaa/report.html" in out
    assert snapshot(store) == before  # read-only

    # --json for scripts.
    code, out = status(capsys, cfg, "--json")
    data = json.loads(out)
    assert code == 0 and data["healthy"] is True and data["problems"] == []
    assert data["serving"]["model_version"] == "20261101-020000-aaaa"
    assert data["serving"]["threshold"] == 0.7
    assert 0.7 <= data["serving"]["accuracy"] <= 1
    assert data["last_run"]["outcome"] == "succeeded"

    # A quiet second night: one night since the last retrain.
    run_pipeline(cfg, run_id="20261102-020000-bbbb")
    code, out = status(capsys, cfg, "--json")
    data = json.loads(out)
    assert data["runs_since_retrain"] == 1
    assert data["drift"]["method"] == "psi" and data["drift"]["detected"] is False

    # The serving model below the threshold (a stricter config reads the same store).
    strict = config_file(tmp_path, str(store), monitoring={"accuracy_min_threshold": 0.999})
    code, out = status(capsys, strict)
    assert code == 3
    assert "below the threshold 0.999" in out

    # A failed run newer than the last success (the controller's record).
    failed = store / "runs" / "20261103-020000-cccc"
    failed.mkdir(parents=True)
    (failed / "controller.json").write_text(json.dumps({
        "run_id": "20261103-020000-cccc", "status": "failed", "message": "step train failed",
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat()}))
    code, out = status(capsys, cfg)
    assert code == 3
    assert "the latest finished run 20261103-020000-cccc failed: step train failed" in out
    assert "failed runs in the last week: 1" in out


def test_a_stale_success_is_unhealthy(make_config: Any) -> None:
    cfg = make_config(data=GOOD)
    run_pipeline(cfg, run_id="night-1")
    ws = Workspace.open(cfg)
    now = datetime.datetime.now(datetime.UTC)
    assert check_health(cfg, ws.store, now=now).healthy
    later = check_health(cfg, ws.store, now=now + datetime.timedelta(hours=40))
    assert not later.healthy
    assert later.problems[0].startswith("no successful run in the last 36 hours")
    assert check_health(cfg, ws.store, now=now + datetime.timedelta(hours=40),
                        max_age_hours=48).healthy


def test_status_imports_neither_pandas_nor_sklearn(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, str(tmp_path / "store"))
    code = ("import sys\nfrom mlops.cli import main\n"
            f"rc = main(['status', '-c', {cfg!r}])\n"
            "heavy = sorted(m for m in ('pandas', 'sklearn', 'matplotlib', 'scipy') "
            "if m in sys.modules)\n"
            "print('HEAVY', heavy)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "0 healthy; 3 unhealthy" in out
