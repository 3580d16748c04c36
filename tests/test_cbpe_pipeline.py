"""CBPE through the run on both engines: the calibration map is kept with the model
version, monitor-check estimates the serving model's metrics on a covariate-shifted
night, and the estimate reaches the summary, the history, the metrics and status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops.cli import history_row
from mlops.config import Config
from mlops.data import generate_synthetic_data
from mlops.observe.metrics import ESTIMATED_SCORE, run_samples
from mlops.observe.report import HISTORY_COLUMNS, _history_row
from mlops.observe.status import check_health, render
from mlops.records import HistoryRecord, RunSummary
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests.conftest import skip_or_fail

try:
    from distributed import Client, LocalCluster

    from mlops.engines.dask import NO_DASHBOARD
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def _write(src: Path, frame: pd.DataFrame, parts: int = 3) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.parquet"):
        f.unlink()
    size = -(-len(frame) // parts)
    for i in range(parts):
        frame.iloc[i * size:(i + 1) * size].to_parquet(src / f"part-{i}.parquet", index=False)


def _config(tmp_path: Path, engine: str, **data: Any) -> Config:
    return Config.from_dict({
        "storage": {"uri": str(tmp_path / "store")},
        "data": {"source": str(tmp_path / "src"), "engine": engine, "test_size": 0.3,
                 **data},
        "training": {"model_type": "random_forest", "params": {"n_estimators": 50}},
        # Drift alone would retrain on night 2; the estimate is what is checked here.
        "monitoring": {"drift_min_samples": 1_000_000},
        "dask": {"max_train_rows": 10_000}})


def _nights(tmp_path: Path, engine: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = _config(tmp_path, engine)
    _write(tmp_path / "src", generate_synthetic_data(5000, 6, 0))
    first = run_pipeline(cfg, "night-1")
    _write(tmp_path / "src", generate_synthetic_data(3000, 6, 7, shift=0.8, scale=1.3))
    second = run_pipeline(cfg, "night-2")
    return first, second


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_estimated_score_on_a_shifted_night_everywhere(client: Any, tmp_path: Path,
                                                       engine: str) -> None:
    first, second = _nights(tmp_path, engine)
    assert first["retrained"] and first["estimated_score"] is None  # no model scored it
    ws = Workspace.open(_config(tmp_path, engine))
    meta = ws.registry.get_record("night-1").training()
    assert meta.calibration is not None and meta.calibration["method"] == "isotonic"
    assert meta.calibration["rows"] == meta.test_rows

    assert not second["retrained"], second["reasons"]
    assert second["model_version"] == "night-1"
    checked = ws.read_result("night-2", "monitor-check") or {}
    realized, estimated = checked["score"], checked["estimated_score"]
    assert estimated == pytest.approx(realized, abs=0.03)
    assert second["estimated_score"] == estimated
    assert second["estimated_model_version"] == "night-1"
    assert set(second["estimated_metrics"]) == set(second["metrics"])
    assert second["estimated_metrics"]["accuracy"] == estimated

    record = ws.monitor.get_history()[-1]
    assert record["run_id"] == "night-2" and record["estimated_score"] == estimated
    samples = run_samples(RunSummary.from_dict(second), 3000, [record], 0, {})
    pushed = {s.labels[0]: s.value for s in samples if s.name == ESTIMATED_SCORE}
    assert pushed["accuracy"] == estimated and set(pushed) <= set(second["metrics"])
    assert history_row(record)["estimated"] == estimated  # mlops history
    # the report
    row = dict(zip(HISTORY_COLUMNS, _history_row(HistoryRecord.from_dict(record)), strict=True))
    assert row["estimated score"] == estimated
    health = check_health(ws.config, ws.store)
    assert health.serving["estimated_score"] == estimated
    assert f"estimated:     accuracy {estimated:.4f} on the last batch" in render(health)


def test_engines_estimate_the_same(client: Any, tmp_path: Path) -> None:
    """The Dask engine's merged partition sums equal the pandas engine's one pass."""
    _nights(tmp_path / "p", "pandas")
    ws = Workspace.open(_config(tmp_path / "p", "pandas"))
    cfg = _config(tmp_path / "p", "dask")
    from mlops.pipeline import ingest, monitor_check

    ingest(cfg, "night-2-dask", ws)
    d = monitor_check(cfg, "night-2-dask", ws)
    p = ws.read_result("night-2", "monitor-check") or {}
    assert d.estimated_metrics == pytest.approx(p["estimated_metrics"], rel=1e-9)


def test_regression_says_why_nothing_is_estimated(tmp_path: Path) -> None:
    df = generate_synthetic_data(600, 4, 0)
    df["target"] = df["feature_0"] * 2.0 + df["feature_1"]
    _write(tmp_path / "src", df, parts=1)
    cfg = _config(tmp_path, "pandas", task="regression")
    run_pipeline(cfg, "night-1")
    assert Workspace.open(cfg).registry.get_record("night-1").training().calibration is None
    second = run_pipeline(cfg, "night-2")
    assert second["estimated_score"] is None and second["estimated_metrics"] == {}
    checked = Workspace.open(cfg).read_result("night-2", "monitor-check") or {}
    assert checked["estimate_note"].startswith("regression: no estimate without labels")
