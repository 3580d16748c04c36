"""Late labels (issue 22 items 1, 2, 4): unlabelled nights, labels joined by id, realized
scores in the history, ``low_realized_score`` and the training window; both engines.

Real parts: the local store, the steps and ``mlops run``'s runner, the ``mlops`` CLI
through its entry point (``main``), and a real in-process Dask ``LocalCluster``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.data import generate_synthetic_data
from mlops.errors import BadInputError, ConfigError
from mlops.observe.report import write_report
from mlops.performance.labels import (
    LOW_REALIZED_SCORE,
    join,
    label_store,
    realized_metrics,
)
from mlops.runner import run_pipeline
from mlops.scoring import predictions_store
from mlops.store.workspace import Workspace
from mlops.training import compute_metrics

N_FEATURES = 4
ID = "customer_id"


def night(rows: int, seed: int, *, labelled: bool = True, flip: float = 0.0) -> pd.DataFrame:
    """A night's batch: an id column, the features and (when labelled) the target; ``flip``
    inverts that share of the labels (the concept changed: a realized drop)."""
    df = generate_synthetic_data(rows, N_FEATURES, seed)
    df.insert(0, ID, [f"c{seed}-{i}" for i in range(rows)])
    if flip:
        rng = np.random.default_rng(seed)
        swap = rng.random(rows) < flip
        df.loc[swap, "target"] = 1 - df.loc[swap, "target"]
    return df if labelled else df.drop(columns=["target"])


def config(tmp_path: Path, engine: str = "pandas", **sections: Any) -> Config:
    """Each night's batch is the one Parquet file under ``batch/``; labels arrive under
    ``labels/``."""
    data = {"source": str(tmp_path / "batch" / "*.parquet"), "id_columns": [ID],
            "engine": engine, **sections.pop("data", {})}
    return Config.from_dict({
        "storage": {"uri": str(tmp_path / f"store-{engine}")}, "data": data,
        "labels": {"source": str(tmp_path / "labels"), "id_columns": [ID],
                   "lookback_days": 7, **sections.pop("labels", {})},
        **sections})


def put_batch(tmp_path: Path, df: pd.DataFrame) -> None:
    folder = tmp_path / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    df.to_parquet(folder / "batch.parquet", index=False)


def put_labels(tmp_path: Path, name: str, df: pd.DataFrame) -> Path:
    folder = tmp_path / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def run(cfg: Config, tmp_path: Path, df: pd.DataFrame, run_id: str) -> dict[str, Any]:
    put_batch(tmp_path, df)
    return run_pipeline(cfg, run_id)


def history(cfg: Config) -> dict[str, dict[str, Any]]:
    """``mlops history --json`` by run id (the CLI, as a user reads it)."""
    ws = Workspace.open(cfg)
    return {r["run_id"]: r for r in ws.monitor.get_history()}


def cli_history(capsys: pytest.CaptureFixture[str], cfg: Config, tmp_path: Path
                ) -> dict[str, dict[str, Any]]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    capsys.readouterr()
    assert main(["history", "--json", "--config", str(path)]) == 0
    return {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}


# --- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, match", [
    ({"source": "x"}, "labels.id_columns' must name"),
    ({"source": "x", "id_columns": ["order"]}, "labels.id_columns': column 'order' is not in "
     "data.id_columns"),
    ({"source": "x", "id_columns": [ID], "lookback_days": 0}, "labels.lookback_days' must be"),
    ({"source": "x", "id_columns": [ID], "lookbak_days": 3}, "unknown config key "
     "'labels.lookbak_days'"),
])
def test_labels_config_is_checked_at_load(labels: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"data": {"id_columns": [ID]}, "labels": labels})


def test_window_takes_versions_or_days_not_both() -> None:
    with pytest.raises(ConfigError, match=r"'training\.window' takes one of versions or days"):
        Config.from_dict({"training": {"window": {"versions": 3, "days": 2}}})
    with pytest.raises(ConfigError, match=r"training\.window\.versions' must be > 0"):
        Config.from_dict({"training": {"window": {"versions": 0}}})
    assert Config.from_dict({"training": {"window": {"days": 2}}}).training.window.days == 2.0


def test_bad_label_config_exits_2_naming_the_key(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("labels:\n  source: labels/\n  id_columns: [order]\n")
    assert main(["history", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels.id_columns" in err[0] and "'order'" in err[0]


# --- the join and the metrics (pure) --------------------------------------------------------------
def test_join_casts_csv_ids_and_metrics_match_the_model() -> None:
    from sklearn.linear_model import LogisticRegression

    df = night(300, 1)
    df[ID] = np.arange(300)  # numeric ids
    model = LogisticRegression().fit(df[[f"feature_{i}" for i in range(N_FEATURES)]],
                                     df["target"])
    x = df[[f"feature_{i}" for i in range(N_FEATURES)]]
    proba = model.predict_proba(x)
    preds = pd.DataFrame({ID: df[ID], "prediction": model.predict(x),
                          "probability_0": proba[:, 0], "probability_1": proba[:, 1]})
    # Labels of a CSV: ids read as strings here, in another order, some missing.
    labels = df[[ID, "target"]].iloc[::-1].iloc[:200].astype({ID: str})
    joined = join(preds, labels, [ID])
    assert len(joined) == 200
    got = realized_metrics(joined, "target", "classification")
    rows = df.set_index(ID).loc[joined[ID]]
    want = compute_metrics(model, rows[x.columns], rows["target"], "classification")
    assert got == pytest.approx(want)


def test_regression_realized_metrics_match_the_model() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = 2 * x["a"] - x["b"] + rng.normal(scale=0.1, size=200)
    model = Ridge().fit(x, y)
    preds = pd.DataFrame({ID: [f"r{i}" for i in range(200)], "prediction": model.predict(x)})
    labels = pd.DataFrame({ID: preds[ID], "target": y})
    got = realized_metrics(join(preds, labels.iloc[50:], [ID]), "target", "regression")
    assert got == pytest.approx(compute_metrics(model, x.iloc[50:], y.iloc[50:],
                                                "regression"))


# --- 1 + 2: an unlabelled night, its labels two nights later ------------------------------------
def test_unlabelled_night_is_realized_when_its_labels_come(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    first = run(cfg, tmp_path, night(600, 1), "night-1")
    assert first["retrained"] and first["model_version"] == "night-1"
    n2 = night(400, 2)  # its labels are kept back
    second = run(cfg, tmp_path, n2.drop(columns=["target"]), "night-2")
    assert not second["retrained"]  # no score: nothing to judge it on yet
    ws = Workspace.open(cfg)
    checked = ws.read_result("night-2", "monitor-check")
    assert checked["unlabelled"] and checked["score"] is None
    assert checked["reasons"] == [] and checked["scored_rows"] == 400
    stored = predictions_store(ws).load(checked["predictions_version"])
    assert list(stored[ID]) == list(n2[ID])
    assert history(cfg)["night-2"]["alerts"] == []  # no score is not a low score
    run(cfg, tmp_path, night(400, 3, labelled=False), "night-3")
    # Two nights later the labels of night 2 arrive (some of them, CSV, columns swapped).
    put_labels(tmp_path, "day-2.csv", n2[["target", ID]].iloc[:300])
    run(cfg, tmp_path, night(400, 4, labelled=False), "night-4")
    entries = cli_history(capsys, cfg, tmp_path)
    entry = entries["night-2"]
    model, _ = ws.registry.load("night-1")
    rows = n2.iloc[:300]
    want = compute_metrics(model, rows[[f"feature_{i}" for i in range(N_FEATURES)]],
                           rows["target"], "classification")
    assert entry["labelled_rows"] == 300 and entry["predicted_rows"] == 400
    assert entry["realized_score"] == pytest.approx(want["accuracy"])
    assert entry["realized_metrics"] == pytest.approx(want)
    assert entry["label_coverage"] == pytest.approx(0.75)
    assert entry["prediction_date"] == predictions_store(ws).get_record(
        checked["predictions_version"]).created_at
    # The other nights are not realized: no label of theirs came.
    assert "realized_score" not in entries["night-3"]
    assert "realized_score" not in entries["night-4"]
    # The rest of night 2's labels, a night later: the realized score covers them all.
    put_labels(tmp_path, "day-2-rest.parquet", n2[[ID, "target"]].iloc[300:])
    run(cfg, tmp_path, night(400, 5, labelled=False), "night-5")
    entry = history(cfg)["night-2"]
    assert entry["labelled_rows"] == 400 and entry["label_coverage"] == 1.0
    full = compute_metrics(model, n2[[f"feature_{i}" for i in range(N_FEATURES)]],
                           n2["target"], "classification")
    assert entry["realized_score"] == pytest.approx(full["accuracy"])
    assert len(label_store(ws).list_versions()) == 2
    # The report: realized (and, when a run estimated one, estimated) score per night, with
    # the label coverage; the text history gains the realized column.
    ws.monitor.record_metrics(None, "v", "night-1", {"run_id": "night-6", "metric": "accuracy",
                                                      "estimated_score": 0.8125})
    out = tmp_path / "report"
    written = write_report(ws, out)
    assert out / "realized.png" in written
    page = (out / "report.html").read_text()
    section = page.split("<h2>Realized vs estimated score</h2>")[1].split("<h2>")[0]
    rows = {row.split("</td>")[0].removeprefix("<td>"): row
            for row in section.split("<tr>")[2:]}
    assert f"{full['accuracy']:.4f}" in rows["night-2"] and "100.0%" in rows["night-2"]
    assert "0.8125" in rows["night-6"]
    assert "<td>0%</td>" in rows["night-3"]  # predictions stored, no label yet
    capsys.readouterr()
    path = tmp_path / "config.yaml"
    assert main(["history", "--config", str(path)]) == 0
    table = capsys.readouterr().out
    assert "REALIZED" in table.splitlines()[0]
    assert f"{full['accuracy']:.4f}" in next(line for line in table.splitlines()
                                             if "night-2" in line)


def test_an_unlabelled_night_is_estimated_then_realized_near_its_estimate(
        tmp_path: Path) -> None:
    """CBPE estimates the night whose labels have not come yet, from its stored
    predictions; once they come, its realized score lands near that estimate (the batch
    is drawn as the training data: no concept shift, CBPE's assumption)."""
    cfg = config(tmp_path)
    run(cfg, tmp_path, night(1500, 1), "night-1")
    n2 = night(1500, 2)
    second = run(cfg, tmp_path, n2.drop(columns=["target"]), "night-2")
    assert second["estimated_model_version"] == "night-1"
    estimated = second["estimated_score"]
    assert estimated is not None and 0.5 < estimated <= 1.0
    assert second["estimated_metrics"]["accuracy"] == estimated
    put_labels(tmp_path, "day-2.parquet", n2[[ID, "target"]])
    run(cfg, tmp_path, night(300, 3, labelled=False), "night-3")
    entry = history(cfg)["night-2"]
    assert entry["estimated_score"] == estimated and entry["labelled_rows"] == 1500
    # 1500 rows: the realized accuracy's own sampling spread is about 0.01.
    assert entry["realized_score"] == pytest.approx(estimated, abs=0.05)


def test_without_labels_a_batch_needs_its_target(tmp_path: Path) -> None:
    from mlops.errors import DataValidationError
    from mlops.pipeline import ingest

    cfg = config(tmp_path, labels={"source": ""})
    put_batch(tmp_path, night(200, 1, labelled=False))
    with pytest.raises(DataValidationError, match="target column 'target' not found"):
        ingest(cfg, "night-1", Workspace.open(cfg))


def test_cold_start_trains_once_the_first_labels_come(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    n1 = night(400, 1)
    first = run(cfg, tmp_path, n1.drop(columns=["target"]), "night-1")
    ws = Workspace.open(cfg)
    checked = ws.read_result("night-1", "monitor-check")
    assert not first["retrained"] and checked["reasons"] == ["no_model", "too_few_rows"]
    assert "no labelled rows in the training window" in checked["note"]
    # Its labels come: nothing served to predict them (unknown ids), but the window of
    # labels.lookback_days now has labelled rows, and the next night trains on them.
    put_labels(tmp_path, "day-1.csv", n1[[ID, "target"]])
    second = run(cfg, tmp_path, night(300, 2, labelled=False), "night-2")
    assert second["retrained"] and second["model_version"] == "night-2"
    assert ws.read_result("night-2", "monitor-check")["labels"]["unknown_ids"] == 400
    meta = ws.registry.get_metadata("night-2")["metadata"]
    assert meta["train_rows"] + meta["test_rows"] == 400
    assert meta["lineage"]["data_versions"] == [ws.read_result("night-1", "ingest")[
        "data_version"]]


def test_duplicated_and_unknown_ids_are_counted_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    run(cfg, tmp_path, night(600, 1), "night-1")
    n2 = night(200, 2)
    run(cfg, tmp_path, n2.drop(columns=["target"]), "night-2")
    labels = n2[[ID, "target"]].iloc[:100]
    dup = labels.iloc[:7].assign(target=1 - labels["target"].iloc[:7])  # later rows win
    unknown = pd.DataFrame({ID: [f"nobody-{i}" for i in range(5)], "target": 1})
    put_labels(tmp_path, "a.parquet", labels)
    put_labels(tmp_path, "b.parquet", pd.concat([dup, unknown], ignore_index=True))
    run(cfg, tmp_path, night(200, 3, labelled=False), "night-3")
    ws = Workspace.open(cfg)
    report = ws.read_result("night-3", "monitor-check")["labels"]
    assert report["duplicate_ids"] == 7 and report["unknown_ids"] == 5
    assert report["rows"] == 105 and len(report["files"]) == 2
    assert history(cfg)["night-3"]["labels"]["unknown_ids"] == 5
    record = label_store(ws).get_record(report["label_version"])
    assert (record.duplicate_ids, record.unknown_ids, record.rows) == (7, 5, 105)
    # The later (flipped) label of a duplicated id is the one joined.
    assert history(cfg)["night-2"]["labelled_rows"] == 100
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    capsys.readouterr()
    assert main(["versions", "labels", "--json", "--config", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["id"], v["duplicate_ids"], v["unknown_ids"], v["files"]) for v in listed] == \
        [(report["label_version"], 7, 5, 2)]
    # Files already versioned are not read again, but one whose content changed (a new
    # size or modification time) is a new arrival.
    run(cfg, tmp_path, night(200, 4, labelled=False), "night-4")
    assert ws.read_result("night-4", "monitor-check")["labels"]["files"] == []
    import os

    a = tmp_path / "labels" / "a.parquet"
    stat = a.stat()
    put_labels(tmp_path, "a.parquet", n2[[ID, "target"]].iloc[100:150])
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    run(cfg, tmp_path, night(200, 5, labelled=False), "night-5")
    again = ws.read_result("night-5", "monitor-check")["labels"]
    assert again["files"] == [str(a)] and again["rows"] == 50 and again["relabelled_ids"] == 0
    assert history(cfg)["night-2"]["labelled_rows"] == 150


def test_bad_label_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run(cfg, tmp_path, night(600, 1), "night-1")
    put_labels(tmp_path, "bad.csv", pd.DataFrame({ID: ["a"], "label": [1]}))
    put_batch(tmp_path, night(200, 2, labelled=False))
    ws = Workspace.open(cfg)
    from mlops.pipeline import ingest, monitor_check

    ingest(cfg, "night-2", ws)
    before = sorted(p for p in (tmp_path / "store-pandas").rglob("*") if p.is_file())
    with pytest.raises(BadInputError, match=r"label file .*bad\.csv has no column 'target'"):
        monitor_check(cfg, "night-2", ws)
    assert sorted(p for p in (tmp_path / "store-pandas").rglob("*") if p.is_file()) == before


# --- 2 + 4: a realized drop retrains on the window ------------------------------------------------
def test_realized_drop_retrains_on_the_labelled_window(tmp_path: Path) -> None:
    cfg = config(tmp_path, training={"window": {"versions": 3}},
                 monitoring={"drift_threshold": 1.0, "drift_method": "mean_l1"})
    run(cfg, tmp_path, night(600, 1), "night-1")
    n2 = night(400, 2, flip=0.6)  # the concept changed: most labels are now inverted
    second = run(cfg, tmp_path, n2.drop(columns=["target"]), "night-2")
    assert not second["retrained"]
    put_labels(tmp_path, "day-2.parquet", n2[[ID, "target"]])
    n3 = night(300, 3, flip=0.6)
    third = run(cfg, tmp_path, n3.drop(columns=["target"]), "night-3")
    ws = Workspace.open(cfg)
    checked = ws.read_result("night-3", "monitor-check")
    assert checked["reasons"] == [LOW_REALIZED_SCORE]
    assert third["retrained"]
    realized = history(cfg)["night-2"]["realized_score"]
    assert realized < cfg.monitoring.accuracy_min_threshold
    meta = ws.registry.get_metadata("night-3")["metadata"]
    # The window: night 3 (no labels yet), night 2 (joined with its labels), night 1.
    versions = [ws.read_result(r, "ingest")["data_version"] for r in
                ("night-2", "night-1")]
    assert meta["lineage"]["data_versions"] == versions
    assert meta["train_rows"] + meta["test_rows"] == 600 + 400


def test_a_step_killed_before_the_label_commit_decides_alike_when_retried(
        tmp_path: Path) -> None:
    from mlops.pipeline import ingest, monitor_check
    from tests.test_crash import crash

    cfg = config(tmp_path, monitoring={"drift_threshold": 1.0, "drift_method": "mean_l1"})
    run(cfg, tmp_path, night(600, 1), "night-1")
    n2 = night(400, 2, flip=0.6)
    run(cfg, tmp_path, n2.drop(columns=["target"]), "night-2")
    put_labels(tmp_path, "day-2.parquet", n2[[ID, "target"]])
    put_batch(tmp_path, night(300, 3, labelled=False))
    ws = Workspace.open(cfg)
    ingest(cfg, "night-3", ws)
    crash(monitor_check, cfg, "night-3", point="labels-before-commit")
    assert label_store(ws).list_versions() == []  # not committed: the files arrive again
    checked = monitor_check(cfg, "night-3", ws)
    assert checked.reasons == [LOW_REALIZED_SCORE]
    assert len(label_store(ws).list_versions()) == 1
    assert len(ws.monitor.store.keys("realized")) == 1  # kept once


def test_window_unions_versions_deduplicated(tmp_path: Path) -> None:
    cfg = config(tmp_path, training={"window": {"versions": 2}},
                 monitoring={"drift_threshold": 0.0, "drift_method": "mean_l1",
                             "drift_min_samples": 0}, labels={"source": ""},
                 data={"id_columns": []})
    a = night(300, 1).drop(columns=[ID])
    b = pd.concat([night(200, 2).drop(columns=[ID]), a.iloc[:50]], ignore_index=True)
    run(cfg, tmp_path, a, "night-1")
    run(cfg, tmp_path, b, "night-2")  # drift 0.0 limit: retrains on night 1 + night 2
    ws = Workspace.open(cfg)
    meta = ws.registry.get_metadata("night-2")["metadata"]
    assert meta["train_rows"] + meta["test_rows"] == 300 + 200  # 50 rows came twice
    assert meta["lineage"]["data_versions"] == [
        ws.read_result(r, "ingest")["data_version"] for r in ("night-2", "night-1")]
    # A batch too small to train on alone still trains within its window.
    third = run(cfg, tmp_path, night(40, 3).drop(columns=[ID]), "night-3")
    assert ws.read_result("night-3", "ingest")["too_few_rows"]
    assert third["retrained"]
    meta = ws.registry.get_metadata("night-3")["metadata"]
    assert meta["train_rows"] + meta["test_rows"] == 250 + 40  # night 2 (b) and night 3
    assert meta["lineage"]["data_versions"] == [
        ws.read_result(r, "ingest")["data_version"] for r in ("night-3", "night-2")]

# --- both engines ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    from mlops.engines.dask import NO_DASHBOARD

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def test_engines_realize_the_same_night_and_retrain_on_the_window(client: Any,
                                                                   tmp_path: Path) -> None:
    out, lineage = {}, {}
    for engine in ("pandas", "dask"):
        folder = tmp_path / engine
        cfg = config(folder, engine, monitoring={"drift_threshold": 1.0,
                                                 "drift_method": "mean_l1"})
        run(cfg, folder, night(600, 1), "night-1")
        n2 = night(400, 2)
        run(cfg, folder, n2.drop(columns=["target"]), "night-2")
        put_labels(folder, "day-2.parquet", n2[[ID, "target"]].iloc[:250])
        n3 = night(300, 3, flip=0.6)
        assert not run(cfg, folder, n3.drop(columns=["target"]), "night-3")["retrained"]
        out[engine] = history(cfg)["night-2"]
        # Night 3's labels show the model failing: night 4 retrains on the labelled rows of
        # the last labels.lookback_days (no training.window set).
        put_labels(folder, "day-3.csv", n3[[ID, "target"]])
        fourth = run(cfg, folder, night(300, 4, labelled=False), "night-4")
        ws = Workspace.open(cfg)
        assert ws.read_result("night-4", "monitor-check")["reasons"] == [LOW_REALIZED_SCORE]
        assert fourth["retrained"]
        meta = ws.registry.get_metadata("night-4")["metadata"]
        assert meta["train_rows"] + meta["test_rows"] == 600 + 250 + 300
        lineage[engine] = [v for v in meta["lineage"]["data_versions"]]
        assert lineage[engine] == [ws.read_result(r, "ingest")["data_version"]
                                   for r in ("night-3", "night-2", "night-1")]
    assert out["dask"]["labelled_rows"] == out["pandas"]["labelled_rows"] == 250
    # Each engine estimates the unlabelled night from its stored predictions (their models
    # differ a little, as their realized metrics do).
    assert out["pandas"]["estimated_score"] is not None
    assert out["dask"]["estimated_metrics"] == pytest.approx(out["pandas"]["estimated_metrics"],
                                                             abs=0.03)
    assert out["dask"]["realized_metrics"] == pytest.approx(out["pandas"]["realized_metrics"],
                                                            abs=0.03)
