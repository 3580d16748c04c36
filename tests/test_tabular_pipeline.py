"""Mixed tables, regression, schema changes and the metric gate, end to end through the
pipeline and the CLI (storage-dependent parts on every backend)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from mlops.cli import main
from mlops.config import Config
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests.test_tabular import mixed_frame

#: A logistic regression this regularized predicts one class: accuracy about 0.5.
ONE_CLASS = {"params": {"C": 1e-8}}
#: Any move of a feature mean is drift, so each run on new data retrains.
ALWAYS_DRIFT = {"drift_method": "mean_l1", "drift_threshold": 0.0, "drift_min_samples": 0}
#: Tests whose storage part is the same as another test's run on the local store only.
LOCAL_ONLY = pytest.mark.parametrize("backend", ["local"])


def snapshot(ws: Workspace) -> dict[str, bytes]:
    """Every object but the failure records of runs (``runs/<id>/run.json``)."""
    return {key: ws.store.read_bytes(key) for key in ws.store.walk("")
            if not key.endswith("/run.json")}


def csv_source(tmp_path: Path, df: pd.DataFrame, name: str) -> str:
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return str(path)


def config_file(cfg: Config, tmp_path: Path, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    return str(path)


def test_mixed_csv_end_to_end(make_config: Any, tmp_path: Path) -> None:
    df = mixed_frame(300)
    cfg = make_config(data={"source": csv_source(tmp_path, df, "night1")})
    summary = run_pipeline(cfg, run_id="run-1")
    assert (summary["task"], summary["metric"], summary["retrained"]) == \
        ("classification", "accuracy", True)
    assert summary["score"] == summary["metrics"]["accuracy"] == summary["accuracy"] > 0.7
    assert set(summary["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc",
                                       "log_loss"}
    assert summary["alerts"] == []
    ws = Workspace.open(cfg)
    model, record = ws.registry.load("run-1")
    raw = mixed_frame(20, seed=5).drop(columns="target")
    raw.loc[0, "color"] = "never-seen"
    assert len(model.predict(raw)) == 20
    meta = record["metadata"]
    kinds = {c["name"]: c["kind"] for c in meta["schema"]["features"]}
    assert kinds == {"x1": "numeric", "count": "numeric", "flag": "bool",
                     "color": "categorical", "size": "categorical"}
    lineage = meta["lineage"]
    assert lineage["data_version"] == summary["data_version"]
    [read] = lineage["source_files"]
    assert read["path"].endswith("night1.csv") and read["size_bytes"] > 0
    assert lineage["scikit_learn"] and lineage["pandas"] and lineage["python"]
    source = ws.versioner.get_metadata(summary["data_version"])["source"]
    assert source["uri"].endswith("night1.csv") and source["files"] == [read]
    # The next night's file has its columns in another order: not a schema change.
    again = run_pipeline(make_config(data={"source": csv_source(
        tmp_path, mixed_frame(300, seed=1)[list(reversed(df.columns))], "night2")}))
    assert again["schema_change"] is None and again["model_version"] == "run-1"
    assert again["score"] is not None


def test_added_column_fails_with_exit_2_and_changes_nothing(
        make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(data={"source": csv_source(tmp_path, mixed_frame(200), "night1")})
    run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    before = snapshot(ws)
    changed = mixed_frame(200, seed=1).assign(extra=1.5).drop(columns="size")
    bad = make_config(data={"source": csv_source(tmp_path, changed, "night2")})
    capsys.readouterr()
    assert main(["monitor-check", "--run-id", "run-2", "-c", config_file(bad, tmp_path)]) == 2
    assert main(["run", "--run-id", "run-2", "-c", config_file(bad, tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    err = [line for line in lines if line.startswith("mlops: error: ")]
    assert len(err) == 2 and lines[-1] == err[1]  # one line each, the failure last
    assert "run 'run-2' has no ingest result" in err[0]
    assert re.match(r"mlops: error: schema change in data version \w+ against serving model "
                    r"run-1: added 'extra'; missing 'size' \(monitoring.on_schema_change is "
                    "fail", err[1]), err
    after = snapshot(ws)
    new = [k for k in after if k not in before and not k.startswith(("data/", "runs/"))]
    assert len(new) == 1 and new[0].startswith("monitoring/metrics/")
    failed = ws.monitor.get_history()[-1]  # the failed run is in the history
    assert (failed["run_id"], failed["status"], failed["step"]) == \
        ("run-2", "failed", "monitor-check")
    assert "added 'extra'; missing 'size'" in failed["error"]
    assert ws.registry.get_alias() == "run-1" and not ws.registry.exists("run-2")
    assert {k: v for k, v in after.items() if k.startswith("models/")} == \
        {k: v for k, v in before.items() if k.startswith("models/")}


@LOCAL_ONLY
def test_schema_change_retrains_when_asked(make_config: Any, tmp_path: Path) -> None:
    run_pipeline(make_config(data={"source": csv_source(tmp_path, mixed_frame(200), "a")}),
                 run_id="run-1")
    retyped = mixed_frame(200, seed=1).assign(count=lambda d: "n" + d["count"].astype(str))
    cfg = make_config(data={"source": csv_source(tmp_path, retyped, "b")},
                      monitoring={"on_schema_change": "retrain"})
    summary = run_pipeline(cfg, run_id="run-2")
    assert summary["reasons"][0] == "schema_change"
    assert summary["schema_change"]["retyped"] == [
        {"column": "count", "was": "numeric", "now": "categorical"}]
    assert summary["promoted"] is True and summary["model_version"] == "run-2"
    ws = Workspace.open(cfg)
    schema = ws.registry.get_metadata("run-2")["metadata"]["schema"]
    assert {c["name"]: c["kind"] for c in schema["features"]}["count"] == "categorical"


@LOCAL_ONLY
def test_regression_on_diabetes(make_config: Any, tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    df = x.assign(progression=y)
    data = {"source": csv_source(tmp_path, df, "diabetes"), "target_column": "progression"}
    cfg = make_config(data=data)
    first = run_pipeline(cfg, run_id="run-1")
    assert (first["task"], first["metric"], first["accuracy"]) == ("regression", "rmse", None)
    assert first["score"] == first["metrics"]["rmse"] and first["metrics"]["r2"] > 0.3
    # A limit on r2 the model cannot reach: the next night asks for a retrain (low_score),
    # and the serving model is flagged.
    # (psi: diabetes' features are centred, so mean_l1's relative change is meaningless.)
    strict = make_config(data=data, monitoring={"metric": "r2", "metric_threshold": 0.99,
                                                "drift_method": "psi"})
    second = run_pipeline(strict, run_id="run-2")
    assert second["metric"] == "r2" and second["reasons"] == ["low_score"]
    assert second["promoted"] is False  # the challenger does not reach 0.99 either
    assert second["alerts"] == ["serving_below_threshold"]
    ws = Workspace.open(cfg)
    history = ws.monitor.get_history()
    assert history[-1]["serving_score"] == pytest.approx(second["metrics"]["r2"], rel=0.5)
    assert history[-1]["alerts"] == ["serving_below_threshold"]
    # mlops status judges the gating metric, not accuracy (None for a regression).
    from mlops.observe.status import check_health
    health = check_health(strict)
    assert not health.healthy and any(" r2 " in p for p in health.problems), health.problems
    from mlops.observe.status import render
    assert (health.serving["metric"], health.serving["limit"]) == ("r2", 0.99)
    assert health.serving["score"] == pytest.approx(second["score"])
    assert re.search(r"serving model: run-1 r2 0\.\d{4} \(threshold 0\.99; held-out "
                     r"0\.\d{4} at training\)", render(health)), render(health)
    # The report plots the gating metric of a regression and lists every night.
    pytest.importorskip("matplotlib")
    from mlops.observe.report import write_report

    page = write_report(ws, tmp_path / "report")[0].read_text()
    assert "<h2>Runs</h2>" in page and "serving_below_threshold" in page
    assert "<td>r2</td>" in page and "<td>rmse</td>" in page


@LOCAL_ONLY
def test_challenger_below_the_limit_is_not_promoted(make_config: Any) -> None:
    data = {"n_samples": 400, "n_features": 4}
    first = run_pipeline(make_config(data=data, training=ONE_CLASS), run_id="run-1")
    assert first["promoted"] is True  # nothing served yet
    assert first["alerts"] == ["serving_below_threshold"]
    cfg = make_config(data={**data, "random_state": 7}, training=ONE_CLASS,
                      monitoring=ALWAYS_DRIFT)
    second = run_pipeline(cfg, run_id="run-2")
    # The challenger is at least as good as the one-class champion (the old rule promoted
    # it), but it is below the 0.7 minimum.
    assert second["champion_accuracy"] <= second["challenger_accuracy"] < 0.7
    assert second["promoted"] is False and second["model_version"] == "run-1"
    ws = Workspace.open(cfg)
    reason = ws.registry.get_metadata("run-2")["metadata"]["promotion_reason"]
    assert "does not meet monitoring.metric_threshold (minimum 0.7)" in reason
    record = ws.monitor.get_history()[-1]
    # The history names the serving model and its score, as the summary does.
    assert record["model_version"] == second["model_version"] == "run-1"
    assert record["serving_score"] == record["score"] == second["score"] < 0.7
    assert record["challenger_score"] == second["challenger_accuracy"]
    assert record["alerts"] == ["serving_below_threshold"]


BAD = [
    ("continuous target", {"task": "classification"}, {},
     r"target column 'target' in .*cont\.csv is continuous"),
    ("metric of the other task", {}, {"metric": "rmse"},
     r"config key 'monitoring.metric': 'rmse' is not a classification metric"),
    ("threshold out of range", {}, {"metric": "f1_macro", "metric_threshold": 2.0},
     r"config key 'monitoring.metric_threshold' must be between 0 and 1 for f1_macro"),
]


@LOCAL_ONLY
@pytest.mark.parametrize(("what", "data", "monitoring", "message"), BAD,
                         ids=[b[0] for b in BAD])
def test_bad_input_exit_2_nothing_changes(make_config: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], what: str,
                                          data: dict[str, Any], monitoring: dict[str, Any],
                                          message: str) -> None:
    cfg = make_config(data={"n_samples": 200, "n_features": 3})
    run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    before = snapshot(ws)
    df = mixed_frame(100).assign(target=lambda d: d["x1"].fillna(0) * 1.5 + 0.25)
    if what != "continuous target":
        df = mixed_frame(100)
    bad = make_config(data={"source": csv_source(tmp_path, df, "cont"), **data},
                      monitoring=monitoring)
    capsys.readouterr()
    assert main(["run", "-c", config_file(bad, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert snapshot(ws) == before


@LOCAL_ONLY
def test_cli_show_history_json_and_debug_anywhere(make_config: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(data={"source": csv_source(tmp_path, mixed_frame(200), "night1")})
    path = config_file(cfg, tmp_path)
    assert main(["run", "--run-id", "run-1", "-c", path, "--debug"]) == 0
    assert main(["--debug", "run", "--run-id", "run-2", "-c", path]) == 0
    capsys.readouterr()
    assert main(["show", "model", "run-1", "-c", path]) == 0
    text = capsys.readouterr().out
    assert "\n  lineage:\n" in text or "lineage:\n" in text
    assert re.search(r"^\s+- name=color, categories=blue, green, red, .*kind=categorical",
                     text, re.M), text
    assert re.search(r"^\s+scikit_learn: \d", text, re.M)
    assert main(["show", "model", "run-1", "-c", path, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metadata"]["schema"]["task"] == "classification"
    assert main(["history", "-c", path]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split()[:7] == ["TIMESTAMP", "RUN_ID", "STATUS", "METRIC", "SERVING",
                                  "ESTIMATED", "CHALLENGER"]
    assert first.split()[1:3] == ["run-1", "succeeded"] and second.split()[1] == "run-2"
    for argv in (["config"], ["storage-check"], ["report", "-o", str(tmp_path / "r")]):
        if argv[0] == "report":
            pytest.importorskip("matplotlib")
        assert main([*argv, "-c", path, "--json"]) == 0, argv
        assert isinstance(json.loads(capsys.readouterr().out), dict), argv


def test_drift_plot_names_the_most_drifted_of_many_features() -> None:
    from mlops.observe.report import NAMED_FEATURES, _most_drifted

    names = [f"f{i}" for i in range(60)]
    reports = [(f"run-{r}", {"features": [{"feature": n, "drifted": i % 10 == 0 or
                                           (r == 1 and n == "f59")} for i, n in
                                          enumerate(names)]}) for r in range(2)]
    named, rest = _most_drifted(reports, {n: [0.0, 0.0] for n in names})
    # Only features that drifted are named (7 here, fewer than NAMED_FEATURES).
    drifted = {n for i, n in enumerate(names) if i % 10 == 0} | {"f59"}
    assert set(named) == drifted and len(named) <= NAMED_FEATURES
    assert len(rest) == 60 - len(named)
    assert named[0] == "f0" and "f59" in named and set(named) | set(rest) == set(names)
