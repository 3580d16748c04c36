"""The serving model is scored only on rows it was not trained on (issue 18, item 3).

Real tables (scikit-learn's offline breast cancer and diabetes sets), run night after
night on the same, a cumulative and an appended source, on both engines (the Dask
engine on one in-process LocalCluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mlops.config import Config
from mlops.runner import run_pipeline
from mlops.store.gc import plan_gc
from mlops.store.hashing import row_hashes, seen_rows
from mlops.store.workspace import Workspace
from tests.tables.conftest import ENGINES, cancer, write_source

#: A random forest fits its training rows perfectly: scored on them it reads ~1.0.
FOREST = {"model_type": "random_forest", "params": {"n_estimators": 30}}


def make_config(tmp_path: Path, source: str, engine: str, **sections: Any) -> Config:
    return Config.from_dict({
        "storage": {"uri": str(tmp_path / "store")},
        "data": {"source": source, "engine": engine, **sections.pop("data", {})},
        "training": sections.pop("training", FOREST), **sections})


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_same_source_twice_scores_only_the_held_out_rows(tmp_path: Path, engine: str) -> None:
    source = write_source(tmp_path / "src", [cancer()], engine)
    cfg = make_config(tmp_path, source, engine)
    night1 = run_pipeline(cfg, run_id="night-1")
    assert night1["retrained"] and night1["promoted"]
    ws = Workspace.open(cfg)
    trained = ws.read_result("night-1", "train")
    assert trained is not None
    night2 = run_pipeline(cfg, run_id="night-2")
    assert not night2["retrained"] and night2["model_version"] == "night-1"
    # Only the held-out rows were not trained on: the serving score is the held-out one,
    # not the training accuracy a forest reaches on its own rows (~1.0 on today's main).
    assert night2["skipped_seen_rows"] == trained["train_rows"]
    assert night2["scored_rows"] == trained["test_rows"]
    assert night2["score"] == pytest.approx(night1["score"])
    assert night2["accuracy"] < 0.99
    checked = ws.read_result("night-2", "monitor-check")
    assert checked is not None
    assert (checked["scored_rows"], checked["skipped_seen_rows"]) == \
        (trained["test_rows"], trained["train_rows"])
    history = ws.monitor.get_history()
    last = [h for h in history if h.get("run_id") == "night-2"][-1]
    assert (last["scored_rows"], last["skipped_seen_rows"]) == \
        (trained["test_rows"], trained["train_rows"])


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_appended_and_cumulative_sources_score_only_new_and_held_out_rows(
        tmp_path: Path, engine: str) -> None:
    df = cancer().sample(frac=1.0, random_state=3).reset_index(drop=True)
    first, second = df.iloc[:300], df.iloc[300:].reset_index(drop=True)
    folder = tmp_path / "src"
    cfg = make_config(tmp_path, write_source(folder, [first], engine), engine)
    run_pipeline(cfg, run_id="night-1")
    train1 = Workspace.open(cfg).read_result("night-1", "train")
    assert train1 is not None
    # Night 2: the night's file is appended next to the first (a growing folder).
    write_source(folder, [first, second], engine)
    night2 = run_pipeline(cfg, run_id="night-2")
    assert night2["skipped_seen_rows"] == train1["train_rows"]
    assert night2["scored_rows"] == len(df) - train1["train_rows"]
    # The model scored on exactly the rows it never saw.
    ws = Workspace.open(cfg)
    model, _ = ws.registry.load("night-1")
    known = ws.registry.get_training_rows("night-1")
    features = [c for c in df.columns if c != "target"]
    unseen = df[~seen_rows(row_hashes(df, [*features, "target"]), known)]
    expected = float((model.predict(unseen[features]) == unseen["target"]).mean())
    assert len(unseen) == night2["scored_rows"]
    assert night2["metrics"]["accuracy"] == pytest.approx(expected)
    # A cumulative single file (night 3 rewrites one file with every row so far).
    cumulative = tmp_path / "cum"
    cfg3 = make_config(tmp_path / "c", write_source(cumulative, [first], engine), engine)
    run_pipeline(cfg3, run_id="night-1")
    write_source(cumulative, [df], engine)
    night3 = run_pipeline(cfg3, run_id="night-2")
    train3 = Workspace.open(cfg3).read_result("night-1", "train")
    assert train3 is not None
    assert night3["skipped_seen_rows"] == train3["train_rows"]
    assert night3["scored_rows"] == len(df) - train3["train_rows"]


def test_regression_table_and_gc_keep_the_training_rows(tmp_path: Path) -> None:
    df = load_diabetes(as_frame=True).frame
    source = write_source(tmp_path / "src", [df], "pandas")
    cfg = make_config(tmp_path, source, "pandas", training={"model_type": "random_forest"})
    run_pipeline(cfg, run_id="night-1")
    night2 = run_pipeline(cfg, run_id="night-2")
    trained = Workspace.open(cfg).read_result("night-1", "train")
    assert trained is not None
    assert night2["scored_rows"] == trained["test_rows"]
    assert night2["score"] == pytest.approx(trained["score"])
    plan = plan_gc(Workspace.open(cfg).store, grace_seconds=0)
    assert not [d.key for d in plan.deletions if "training-rows" in d.key]


def test_every_row_seen_is_not_scored_and_raises_no_alert(tmp_path: Path) -> None:
    df = cancer()
    source = write_source(tmp_path / "src", [df], "pandas")
    cfg = make_config(tmp_path, source, "pandas", training={"model_type": "logistic"})
    run_pipeline(cfg, run_id="night-1")
    ws = Workspace.open(cfg)
    known = ws.registry.get_training_rows("night-1")
    features = [c for c in df.columns if c != "target"]
    trained_only = df[seen_rows(row_hashes(df, [*features, "target"]), known)]
    assert len(trained_only) == len(known)
    write_source(tmp_path / "src", [trained_only], "pandas")
    night2 = run_pipeline(cfg, run_id="night-2")
    assert (night2["scored_rows"], night2["skipped_seen_rows"]) == (0, len(known))
    assert night2["score"] is None and night2["alerts"] == []
    assert "low_accuracy" not in night2["reasons"]
    assert np.all(np.diff(known.astype(np.float64)) > 0)  # sorted, unique


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_champion_and_challenger_compared_on_rows_the_champion_never_saw(
        tmp_path: Path, engine: str) -> None:
    df = cancer().sample(frac=1.0, random_state=5).reset_index(drop=True)
    first = df.iloc[:300]
    folder = tmp_path / "src"
    cfg = make_config(tmp_path, write_source(folder, [first], engine), engine,
                      monitoring={"drift_threshold": 0.0, "drift_min_samples": 0,
                                  "drift_method": "mean_l1"},
                      promotion={"tolerance": 0.05})
    run_pipeline(cfg, run_id="night-1")
    # A cumulative export: one file rewritten with every row so far, newest first. (Dask
    # splits per partition with a per-partition seed: a file that only grows at its end
    # keeps its rows' split, so there nothing of the champion's is held out.)
    write_source(folder, [pd.concat([df.iloc[300:], first], ignore_index=True)], engine)
    night2 = run_pipeline(cfg, run_id="night-2")
    assert night2["retrained"]
    ws = Workspace.open(cfg)
    facts = ws.registry.get_record("night-2").training()
    comparison = facts.extra["comparison"]
    # Some of night 2's held-out rows were night 1's training rows: left out of the duel.
    assert comparison["skipped_seen_by_champion"] > 0
    assert comparison["rows"] + comparison["skipped_seen_by_champion"] == facts.test_rows
    # The champion's score is its accuracy on exactly the held-out rows it never saw.
    champion, _ = ws.registry.load("night-1")
    known = ws.registry.get_training_rows("night-1")
    challenger_rows = ws.registry.get_training_rows("night-2")
    features = [c for c in df.columns if c != "target"]
    hashes = row_hashes(df, [*features, "target"])
    held_out = df[~seen_rows(hashes, challenger_rows) & ~seen_rows(hashes, known)]
    # (A row of the new version in neither training set is in night 2's held-out split.)
    assert len(held_out) == comparison["rows"]
    expected = float((champion.predict(held_out[features]) == held_out["target"]).mean())
    assert facts.champion_score == pytest.approx(expected)
    assert comparison["champion_score"] == pytest.approx(expected)
