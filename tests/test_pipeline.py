"""The pipeline's decisions end to end, on every storage backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops.data import generate_synthetic_data
from mlops.errors import BadInputError, DataValidationError
from mlops.monitor import ModelMonitor, RetrainDecision
from mlops.pipeline import ingest, monitor_check, serving_reference, train
from mlops.runner import run_pipeline
from mlops.workspace import Workspace

N_FEATURES = 6


def source_file(tmp_path: Path, df: pd.DataFrame, name: str) -> str:
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    return str(path)


@pytest.fixture
def run(make_config: Any, tmp_path: Path) -> Any:
    """Run the pipeline on a given DataFrame (or the synthetic default)."""
    def go(df: pd.DataFrame | None = None, name: str = "batch", tolerance: float = 0.0,
           **monitoring: Any) -> dict:
        data: dict[str, Any] = {"n_samples": 600, "n_features": N_FEATURES, "random_state": 1}
        if df is not None:
            data["source"] = source_file(tmp_path, df, name)
        cfg = make_config(data=data, monitoring={"drift_min_samples": 100, **monitoring},
                          promotion={"tolerance": tolerance})
        return run_pipeline(cfg)
    return go


def test_first_run_trains_second_reuses_data_version(run: Any, make_config: Any) -> None:
    first = run()
    assert first["retrained"] is True
    assert first["reasons"] == ["no_model"]
    assert first["accuracy"] > 0.8
    second = run()
    assert second["retrained"] is False
    assert second["data_version"] == first["data_version"]
    assert second["model_version"] == first["model_version"]
    assert second["reasons"] == []
    ws = Workspace.open(make_config())
    assert [h["retrained"] for h in ws.monitor.get_history()] == [True, False]
    assert ws.monitor.get_latest_accuracy() == second["accuracy"]
    assert len(ws.versioner.list_versions()) == 1
    summary = ws.read_result(second["run_id"], "summary")
    assert summary is not None and summary["data_version"] == first["data_version"]


def test_new_sample_of_same_distribution_does_not_retrain(run: Any) -> None:
    run(generate_synthetic_data(800, N_FEATURES, 1), "a")
    again = run(generate_synthetic_data(800, N_FEATURES, 2), "b")
    assert again["retrained"] is False, again
    assert again["drift"] < 0.1


def test_drifted_batch_retrains_and_resets_reference(run: Any, make_config: Any) -> None:
    first = run(generate_synthetic_data(800, N_FEATURES, 1), "a")
    drifted = generate_synthetic_data(800, N_FEATURES, 2, shift=1.5)
    # A tolerance so that the challenger serves whatever its accuracy (promotion is
    # tested on its own in test_promotion.py); only a promoted model resets the reference.
    result = run(drifted, "b", tolerance=1.0)
    assert result["retrained"] is True and result["promoted"] is True
    assert result["reasons"] == ["drift"]
    assert result["drift"] > 0.1
    assert result["model_version"] != first["model_version"]
    ws = Workspace.open(make_config())
    reference = serving_reference(ws, ws.current_model_version())[0]  # the serving model's
    assert reference is not None
    assert reference["model_version"] == result["model_version"]
    assert reference["feature_means"]["feature_0"] == pytest.approx(
        drifted["feature_0"].mean(), abs=0.2)


def test_small_drifted_batch_does_not_count(run: Any) -> None:
    run(generate_synthetic_data(800, N_FEATURES, 1), "a")
    small = run(generate_synthetic_data(60, N_FEATURES, 2, shift=1.5), "b")
    assert small["retrained"] is False, small
    assert small["drift"] > 0.1  # measured, but the batch is below drift_min_samples


def test_flipped_labels_retrain_on_low_accuracy(run: Any) -> None:
    run(generate_synthetic_data(800, N_FEATURES, 1), "a")
    flipped = generate_synthetic_data(800, N_FEATURES, 2)
    flipped["target"] = 1 - flipped["target"]
    result = run(flipped, "b")
    assert result["retrained"] is True
    assert result["reasons"] == ["low_accuracy"]


def test_steps_run_separately_share_only_the_store(make_config: Any) -> None:
    cfg = make_config(data={"n_samples": 300, "n_features": 4})
    ingested = ingest(cfg, "run-1")
    checked = monitor_check(cfg, "run-1")
    assert checked.retrain and checked.data_version == ingested.data_version
    trained = train(cfg, "run-1")
    assert trained.model_version == "run-1"
    # A retried train step of the same run finds its model instead of training twice.
    again = train(cfg, "run-1")
    assert again.accuracy == trained.accuracy
    assert len(Workspace.open(cfg).registry.list_versions()) == 1


def test_step_without_ingest_says_what_to_run(make_config: Any) -> None:
    with pytest.raises(BadInputError, match=r"run 'r9' has no ingest result .* run ingest "
                                            "before monitor-check"):
        monitor_check(make_config(), "r9")


def test_bad_source_changes_nothing(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config(data={"n_samples": 200, "n_features": 3})
    run_pipeline(cfg)
    ws = Workspace.open(cfg)
    before = {k: ws.store.read_bytes(k) for k in ws.store.walk()}
    bad = generate_synthetic_data(50, 3, 1).drop(columns=["target"])
    with pytest.raises(DataValidationError, match="target column 'target' not found"):
        run_pipeline(make_config(data={"source": source_file(tmp_path, bad, "bad")}),
                     run_id="bad-1")
    after = {k: ws.store.read_bytes(k) for k in ws.store.walk()}
    # Only the run's own failure record is new (what `mlops status` reads).
    assert {k: v for k, v in after.items() if k != "runs/bad-1/run.json"} == before
    record = ws.read_result("bad-1", "run")
    assert record is not None and record["status"] == "failed" and record["exit_code"] == 2
    assert record["failed_step"] == "ingest"
    assert "target column 'target' not found" in record["message"]


@pytest.mark.parametrize(("monitoring", "reason"), [
    ({}, "low_accuracy"),
    ({"metric": "f1_macro", "metric_threshold": 0.6}, "low_score"),
])
def test_the_monitor_decides_low_score_from_the_runs_real_score(
        run: Any, make_config: Any, monkeypatch: pytest.MonkeyPatch, monitoring: dict,
        reason: str) -> None:
    # Issue 23: the retrain reasons come from one place. The run hands the monitor the
    # serving model's real score (it passed accuracy=None before, so the monitor's own
    # low-score branch never fired from a run and the pipeline added the reason itself).
    decisions: list[RetrainDecision] = []
    real = ModelMonitor.decide

    def spy(self: ModelMonitor, *args: Any, **kwargs: Any) -> RetrainDecision:
        decision = real(self, *args, **kwargs)
        decisions.append(decision)
        return decision

    monkeypatch.setattr(ModelMonitor, "decide", spy)
    run(generate_synthetic_data(800, N_FEATURES, 1), "a", **monitoring)
    flipped = generate_synthetic_data(800, N_FEATURES, 2)
    flipped["target"] = 1 - flipped["target"]
    result = run(flipped, "b", **monitoring)
    assert result["reasons"] == [reason]
    checked = Workspace.open(make_config()).read_result(result["run_id"], "monitor-check")
    assert checked is not None and checked["reasons"] == [reason]
    decided = decisions[-1]
    assert decided.reasons == (reason,)
    assert decided.accuracy is not None and decided.accuracy == checked["accuracy"] < 0.5


def test_no_step_module_names_an_engine() -> None:
    # Issue 23 "done when": the steps call the Engine interface (mlops.engines) and
    # never import or name an implementation.
    import ast

    import mlops.pipeline

    tree = ast.parse(Path(mlops.pipeline.__file__).read_text(encoding="utf-8"))
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            named |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            named |= {a.name for a in node.names}
        elif isinstance(node, ast.Name):
            named.add(node.id)
        elif isinstance(node, ast.Attribute):
            named.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value in ("dask", "pandas"):
            named.add(node.value)
    engines = {n for n in named if "dask" in n.lower() or n in ("pandas", "pd")
               or n.startswith(("mlops.engines.dask", "mlops.engines.pandas"))}
    assert not engines
