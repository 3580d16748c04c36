"""The Dask engine: partitioned sources and versions, sketches, training, failures.

Most tests share one in-process ``LocalCluster`` (``processes=False``: ~0.1 s to start,
the real scheduler and workers, one process). The memory and killed-worker tests in
``tests/test_dask_cluster.py`` use real worker processes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.check import check_store
from mlops.config import Config
from mlops.data import column_stats, generate_synthetic_data
from mlops.engines.dask import NO_DASHBOARD
from mlops.errors import ClusterError, DataValidationError, IntegrityError
from mlops.hashing import content_hash
from mlops.pipeline import ingest, monitor_check, train
from mlops.registry import PRODUCTION
from mlops.retention import apply_retention, plan_retention
from mlops.runner import run_pipeline
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

try:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")

N_FEATURES = 4


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process cluster for the module; steps find it as the current client."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def write_parts(folder: Path, frames: list[pd.DataFrame], start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, df in enumerate(frames, start):
        df.to_parquet(folder / f"part-{i:03d}.parquet", index=False)


def batches(n: int, rows: int = 400, shift: float = 0.0, seed: int = 0) -> list[pd.DataFrame]:
    return [generate_synthetic_data(rows, N_FEATURES, seed + i, shift=shift) for i in range(n)]


def config(tmp_path: Path, source: Path | str, engine: str = "dask", **sections: Any) -> Config:
    data = {"source": str(source), "engine": engine, **sections.pop("data", {})}
    return Config.from_dict({"storage": {"uri": str(tmp_path / f"store-{engine}")},
                             "data": data, **sections})


def data_objects(ws: Workspace) -> set[str]:
    return {k for k in ws.store.walk("data/objects")}


def ingest_parts(tmp_path: Path, frames: list[pd.DataFrame]) -> tuple[Workspace, Any, dict]:
    """Write ``frames`` as a source, ingest it on the Dask engine; the manifest too."""
    src = tmp_path / "src"
    write_parts(src, frames)
    cfg = config(tmp_path, src)
    ws = Workspace.open(cfg)
    result = ingest(cfg, "run-1", ws)
    return ws, result, ws.versioner.get_metadata(result.data_version)


# --- 1 + 2: partitioned sources and versions ------------------------------------------------
def test_ingest_registers_a_manifest_of_content_addressed_partitions(
        client: Any, tmp_path: Path) -> None:
    frames = batches(3)
    ws, result, manifest = ingest_parts(tmp_path, frames)
    assert manifest["kind"] == "partitioned"
    assert result.rows == manifest["rows"] == 1200
    # Each partition is addressed by today's content hash of its own frame.
    assert [p["digest"] for p in manifest["partitions"]] == [content_hash(f) for f in frames]
    assert [p["object"] for p in manifest["partitions"]] == \
        [ws.versioner.object_key(content_hash(f)) for f in frames]
    loaded, _ = ws.versioner.load(result.data_version)
    assert isinstance(loaded, dd.DataFrame)
    assert loaded.npartitions == 3
    pd.testing.assert_frame_equal(loaded.compute().reset_index(drop=True),
                                  pd.concat(frames, ignore_index=True))
    assert ws.versioner.get_latest_version() == result.data_version


def test_append_reads_only_the_new_file_and_shares_the_old_partitions(
        client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(3))
    cfg = config(tmp_path, src)
    ws = Workspace.open(cfg)
    first = ingest(cfg, "run-1", ws).data_version
    before = data_objects(ws)
    again = ingest(cfg, "run-2", ws).data_version
    assert again == first  # identical content: same id, nothing new
    assert data_objects(ws) == before

    write_parts(src, batches(1, seed=50), start=3)
    caplog.set_level("INFO", logger="mlops.engines.dask")
    second = ingest(cfg, "run-3", ws).data_version
    assert second != first
    assert "4 partitions, 1 read, 3 from the fingerprint cache" in caplog.text
    new = data_objects(ws) - before
    assert len(new) == 2  # one partition and its statistics, nothing else
    m1 = ws.versioner.get_metadata(first)
    m2 = ws.versioner.get_metadata(second)
    assert [p["object"] for p in m2["partitions"][:3]] == [p["object"] for p in
                                                            m1["partitions"]]
    # The older version still loads in full.
    assert len(ws.versioner.load(first)[0].compute()) == 1200


def test_changed_file_is_hashed_again(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(2))
    cfg = config(tmp_path, src)
    ws = Workspace.open(cfg)
    first = ws.versioner.get_metadata(ingest(cfg, "run-1", ws).data_version)
    changed = generate_synthetic_data(400, N_FEATURES, 99)
    path = src / "part-001.parquet"
    stat = path.stat()
    changed.to_parquet(path, index=False)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = ws.versioner.get_metadata(ingest(cfg, "run-2", ws).data_version)
    assert second["partitions"][0]["digest"] == first["partitions"][0]["digest"]
    assert second["partitions"][1]["digest"] == content_hash(changed)


def test_csv_and_glob_sources(client: Any, tmp_path: Path) -> None:
    frames = batches(2)
    src = tmp_path / "csv"
    src.mkdir()
    for i, f in enumerate(frames):
        f.to_csv(src / f"day-{i}.csv", index=False)
    (src / "notes.txt").write_text("not data")
    cfg = config(tmp_path, f"{src}/day-*.csv")
    ws = Workspace.open(cfg)
    result = ingest(cfg, "run-1", ws)
    assert result.rows == 800
    assert ws.versioner.get_metadata(result.data_version)["partitions"][1]["source"] == \
        "day-1.csv"


def test_bad_partition_is_named_and_nothing_is_committed(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    frames = batches(3)
    frames[2] = frames[2].rename(columns={"feature_1": "other"})
    write_parts(src, frames)
    cfg = config(tmp_path, src)
    ws = Workspace.open(cfg)
    with pytest.raises(DataValidationError, match=r"part-002\.parquet has columns"):
        ingest(cfg, "run-1", ws)
    assert ws.versioner.list_versions() == []
    missing = config(tmp_path, tmp_path / "nothing-here")
    with pytest.raises(DataValidationError, match="not found"):
        ingest(missing, "run-1", Workspace.open(missing))


def test_retention_keeps_partitions_a_newer_version_shares(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(2))
    cfg = config(tmp_path, src)
    ws = Workspace.open(cfg)
    old = ws.versioner.get_metadata(ingest(cfg, "run-1", ws).data_version)
    (src / "part-000.parquet").unlink()
    write_parts(src, batches(1, seed=70), start=2)
    new = ws.versioner.get_metadata(ingest(cfg, "run-2", ws).data_version)
    shared = old["partitions"][1]["object"]
    assert shared == new["partitions"][0]["object"]
    result = apply_retention(ws, plan_retention(ws, keep_data_versions=1))
    deleted = set(result.deleted_keys)
    assert f"data/{old['partitions'][0]['object']}" in deleted
    assert f"data/{shared}" not in deleted
    assert len(ws.versioner.load(new["id"])[0].compute()) == 800


def test_store_check_and_load_know_partitioned_versions(client: Any, tmp_path: Path) -> None:
    """Issue #13 on the Dask engine: a dask-trained model keeps its reference with its
    version, ``gc --check`` checks each partition, and a partition key read from a
    tampered manifest must stay below ``objects/``."""
    ws, result, manifest = ingest_parts(tmp_path, batches(2))
    cfg = config(tmp_path, tmp_path / "src")
    monitor_check(cfg, "run-1", ws)
    train(cfg, "run-1", ws)
    assert ws.registry.get_reference("run-1") is not None
    assert check_store(ws) == []

    ws.versioner.store.delete(manifest["partitions"][1]["object"])
    problems = check_store(ws)
    assert len(problems) == 1 and "partition object" in problems[0].problem \
        and "missing" in problems[0].problem

    manifest["partitions"][0]["object"] = "../../outside.parquet"
    ws.versioner.store.write_json(ws.versioner.manifest_key(result.data_version), manifest)
    # Refused as damage: not the address of its digest (issue 19 item 1), and outside.
    with pytest.raises(IntegrityError, match="not the address of its digest"):
        ws.versioner.load(result.data_version)
    assert "not the address of its digest" in check_store(ws)[0].problem


# --- 3: statistics and drift from sketches; engines agree -------------------------------------
def test_partitioned_statistics_equal_pandas_statistics(client: Any, tmp_path: Path) -> None:
    frames = batches(3)
    _, result, manifest = ingest_parts(tmp_path, frames)
    whole = pd.concat(frames, ignore_index=True)
    for col, stats in column_stats(whole).items():
        for key, value in stats.items():
            assert manifest["stats"][col][key] == pytest.approx(value, rel=1e-9, abs=1e-9)
    for col, mean in whole.drop(columns="target").mean().items():
        assert result.feature_means[col] == pytest.approx(mean, rel=1e-9)


def _night(tmp_path: Path, src: Path, frames: list[pd.DataFrame], store: Path,
           engine: str, run_id: str, monitoring: dict[str, Any]) -> Any:
    for f in src.glob("*.parquet"):
        f.unlink()
    write_parts(src, frames)
    cfg = Config.from_dict({"storage": {"uri": str(store)}, "monitoring": monitoring,
                            "data": {"source": str(src), "engine": engine}})
    ws = Workspace.open(cfg)
    ingest(cfg, run_id, ws)
    return monitor_check(cfg, run_id, ws)


@pytest.mark.parametrize(("trained_by", "method"),
                         [("dask", "mean_l1"), ("pandas", "psi"), ("dask", "psi")])
def test_engines_reach_the_same_decisions(client: Any, tmp_path: Path, trained_by: str,
                                          method: str) -> None:
    """Same store, same serving model and reference: both engines check each night."""
    src, store = tmp_path / "src", tmp_path / "store"
    monitoring = {"drift_method": method, "drift_min_samples": 100}
    first = _night(tmp_path, src, batches(3), store, trained_by, "night-1", monitoring)
    assert first.reasons == ["no_model"]
    train(Config.from_dict({"storage": {"uri": str(store)},
                            "data": {"source": str(src), "engine": trained_by}}),
          "night-1", None)
    for night, shift in ((2, 0.0), (3, 1.5)):
        frames = batches(3, shift=shift, seed=10 * night)
        checks = {e: _night(tmp_path, src, frames, store, e, f"night-{night}-{e}", monitoring)
                  for e in ("pandas", "dask")}
        p, d = checks["pandas"], checks["dask"]
        assert p.reasons == d.reasons == ([] if shift == 0 else ["drift"])
        assert d.accuracy == pytest.approx(p.accuracy, rel=1e-9)
        assert d.n_samples == p.n_samples
        assert (d.task, d.metric) == (p.task, p.metric) == ("classification", "accuracy")
        assert d.score == pytest.approx(p.score, rel=1e-9)
        if method == "mean_l1":
            assert d.drift == pytest.approx(p.drift, rel=1e-9)
        else:
            assert d.drift == p.drift  # the share of drifted features


def test_sketch_drift_is_close_to_exact_statistics() -> None:
    """200,000 rows here; the 2,000,000-row check is bench row D5 (`make bench`)."""
    from scipy import stats

    from mlops.drift import DriftSettings, bin_shares, build_reference, psi
    from mlops.engines.sketches import (
        column_moments,
        ks_statistic,
        reference_from_sketches,
        sketch_columns,
        sketch_report,
        wasserstein,
    )
    rng = np.random.default_rng(5)
    n = 200_000
    # "c" has the same mean on both sides, so its Wasserstein distance comes from the
    # sketches alone.
    ref = pd.DataFrame({"a": rng.normal(10, 2, n), "b": rng.exponential(3, n),
                        "c": rng.normal(0, 1, n)})
    cur = pd.DataFrame({"a": rng.normal(11.0, 2.4, n), "b": rng.exponential(3.6, n),
                        "c": rng.normal(0, 2, n)})
    cols = ["a", "b", "c"]
    # Sketches built in 8 partitions and merged, as ingest does.
    parts_ref = [sketch_columns(ref.iloc[i::8], cols) for i in range(8)]
    parts_cur = [sketch_columns(cur.iloc[i::8], cols) for i in range(8)]
    from mlops.engines.sketches import decode, merge_sketches
    sk_ref, sk_cur = merge_sketches(parts_ref), merge_sketches(parts_cur)
    exact_ref = build_reference(ref, bins=10)
    dist = reference_from_sketches(sk_ref, column_moments(ref), 10, 5000)
    for col in cols:
        r, c = ref[col].to_numpy(), cur[col].to_numpy()
        exact_ks = stats.ks_2samp(r, c).statistic
        assert abs(ks_statistic(decode(sk_ref[col]), decode(sk_cur[col])) - exact_ks) < 0.01
        exact_w = stats.wasserstein_distance(r, c)
        # With the stored exact means, as monitor-check passes them: the sketch's random
        # error in the exponential tail spread the estimate by ~0.9% without them.
        means = (float(ref[col].mean()), float(cur[col].mean()))
        assert wasserstein(decode(sk_ref[col]), decode(sk_cur[col]), means) == \
            pytest.approx(exact_w, rel=0.02)
        e = exact_ref["features"][col]
        exact_psi = psi(np.asarray(e["shares"]), bin_shares(c, e["edges"]))
        report = sketch_report(dist, sk_cur, n, DriftSettings(method="psi"))
        by_name = {f.feature: f.statistic for f in report.features}
        assert abs(by_name[col] - exact_psi) < 0.01


# --- 4: training ------------------------------------------------------------------------------
def test_lightgbm_on_dask_is_saved_as_a_local_model(client: Any, tmp_path: Path) -> None:
    from lightgbm import LGBMClassifier

    src = tmp_path / "src"
    frames = batches(4, rows=500)
    write_parts(src, frames)
    cfg = config(tmp_path, src, training={"model_type": "lightgbm",
                                          "params": {"n_estimators": 20}})
    summary = run_pipeline(cfg)
    assert summary["retrained"] and summary["accuracy"] > 0.7
    ws = Workspace.open(cfg)
    model, meta = ws.registry.load(summary["model_version"])
    # A Pipeline with its preprocessing, as on the pandas engine (#10).
    assert isinstance(model[-1], LGBMClassifier)
    assert ws.registry.get_alias(PRODUCTION) == summary["model_version"]
    x = frames[0].drop(columns="target")
    assert set(np.unique(model.predict(x))) <= {0, 1}
    info = meta["metadata"]
    assert info["engine"] == "dask"
    assert info["training_sample"]["rows"] == info["train_rows"]
    # The reference was built from the training split's sketches: psi runs on it. It is
    # kept with the model version (issue #13).
    reference = ws.registry.get_reference(summary["model_version"])
    assert "sketch" in next(iter(reference["distribution"]["features"].values()))


def test_sklearn_types_on_dask_train_on_a_bounded_recorded_sample(client: Any,
                                                                   tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(4, rows=500))
    cfg = config(tmp_path, src, dask={"max_train_rows": 300})
    ws = Workspace.open(cfg)
    ingest(cfg, "run-1", ws)
    assert monitor_check(cfg, "run-1", ws).retrain
    result = train(cfg, "run-1", ws)
    sample = ws.registry.get_metadata(result.model_version)["metadata"]["training_sample"]
    assert sample["rows"] <= 300 < sample["of_rows"] == result.train_rows
    assert "max_train_rows=300" in sample["method"]
    # A retried train step of the same run finds its model instead of training again.
    assert train(cfg, "run-1", ws).model_version == result.model_version


def test_lightgbm_on_the_pandas_engine(tmp_path: Path) -> None:
    from lightgbm import LGBMClassifier

    src = tmp_path / "src"
    write_parts(src, batches(2))
    cfg = config(tmp_path, src, "pandas", training={"model_type": "lightgbm",
                                                    "params": {"n_estimators": 10}})
    summary = run_pipeline(cfg)
    model, _ = Workspace.open(cfg).registry.load(summary["model_version"])
    # On the pandas engine every model is a Pipeline with its preprocessing (#10).
    assert isinstance(model[-1], LGBMClassifier)
    frame = pd.read_parquet(next(iter(sorted(src.iterdir()))))
    assert len(model.predict(frame.drop(columns=["target"]))) == len(frame)


def test_summary_and_lineage_keys_are_the_same_on_both_engines(client: Any,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(2))
    summaries = {e: run_pipeline(config(tmp_path, src, e)) for e in ("pandas", "dask")}
    p, d = summaries["pandas"], summaries["dask"]
    assert set(p) == set(d)
    assert p["task"] == d["task"] == "classification"
    assert p["metric"] == d["metric"] == "accuracy"
    assert d["metrics"]["accuracy"] == d["accuracy"] == d["score"]
    ws = Workspace.open(config(tmp_path, src))
    ingested = ws.read_result(d["run_id"], "ingest")
    assert ingested is not None
    assert set(ingested["feature_kinds"].values()) == {"numeric"}
    assert sorted(Path(f["path"]).name for f in ingested["source_files"]) == \
        ["part-000.parquet", "part-001.parquet"]
    meta = ws.registry.get_metadata(d["model_version"])["metadata"]
    assert [c["name"] for c in meta["schema"]["features"]] == \
        [f"feature_{i}" for i in range(N_FEATURES)]
    assert len(meta["lineage"]["source_files"]) == 2


def test_bad_input_on_dask_is_refused_before_a_version_is_committed(
        client: Any, tmp_path: Path) -> None:
    """Bad targets, a metric of the other task, a feature whose kind changes between
    files: exit 2 naming the key or column, no version registered (as on pandas)."""
    from mlops.errors import ConfigError

    frames = batches(2)
    flipped = [frames[0].assign(city="a"), frames[1].assign(city=1.0)]
    flipped[1]["city"] = flipped[1]["city"].astype(object)
    cases: list[tuple[str, list[pd.DataFrame], dict[str, Any], type, str]] = [
        ("continuous", [f.assign(target=f["feature_0"] * 1.5) for f in frames],
         {"data": {"task": "classification"}}, DataValidationError,
         r"target column 'target' .*continuous"),
        ("metric", [f.assign(target=f["feature_0"] * 1.5) for f in frames],
         {"monitoring": {"metric": "f1_macro"}}, ConfigError,
         r"'monitoring\.metric': 'f1_macro' is not a regression metric"),
        ("constant", [f.assign(target=1) for f in frames], {}, DataValidationError,
         r"target column 'target' has a single class"),
        ("kind", flipped, {}, DataValidationError, r"part-001\.parquet has columns .*'city'"),
    ]
    for name, parts, sections, error, pattern in cases:
        src = tmp_path / name
        write_parts(src, parts)
        cfg = config(tmp_path / name, src, **sections)
        ws = Workspace.open(cfg)
        with pytest.raises(error, match=pattern) as err:
            ingest(cfg, "run-1", ws)
        assert err.value.exit_code == 2, name
        assert ws.versioner.list_versions() == [], name


# --- #10 on the Dask engine: regression, every metric, categorical features --------------------
def mixed(n: int = 400, rows: int = 300, seed: int = 0, shift: float = 0.0,
          regression: bool = False) -> list[pd.DataFrame]:
    """Frames with numeric (some missing), categorical (strings, some missing) and bool
    (object, some missing) features; ``shift`` moves the numeric means and the shares
    of the categories."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        x0 = rng.normal(5 + shift, 2, rows)
        x1 = rng.normal(0, 1, rows)
        p = np.array([0.5, 0.3, 0.2]) if not shift else np.array([0.2, 0.3, 0.5])
        city = rng.choice(["north", "south", "east"], rows, p=p).astype(object)
        flag = (rng.random(rows) < 0.4).astype(object)
        y = x0 * 0.8 - 2 * x1 + np.where(city == "east", 3.0, 0.0) + \
            np.where(flag.astype(bool), 1.5, 0.0) + rng.normal(0, 0.5, rows)
        x0[rng.random(rows) < 0.05] = np.nan
        city[rng.random(rows) < 0.05] = None
        flag[0] = None
        frame = pd.DataFrame({"x0": x0, "x1": x1, "city": city, "flag": flag})
        frame["target"] = y if regression else (y > np.median(y)).astype(np.int64)
        out.append(frame)
    return out


def test_metrics_from_partition_parts_equal_compute_metrics() -> None:
    """Every metric from per-partition parts equals scikit-learn's on all rows (scikit-learn
    data sets: binary, multi-class, regression; with and without predict_proba)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    from mlops.training import MetricMerger, compute_metrics, metric_parts, train_model

    cases = [(load_breast_cancer, "classification", "logistic"),
             (load_wine, "classification", "lightgbm"),
             (load_wine, "classification", "random_forest"),
             (load_diabetes, "regression", "linear"),
             (load_diabetes, "regression", "lightgbm")]
    for loader, task, model_type in cases:
        x, y = loader(return_X_y=True, as_frame=True)
        model = train_model(x.iloc[::2], y.iloc[::2],
                            Config.from_dict({"training": {"model_type": model_type,
                                                           "params": {}}}), task)
        xt, yt = x.iloc[1::2], y.iloc[1::2]
        exact = compute_metrics(model, xt, yt, task)
        merger = MetricMerger(task)
        for i in range(4):  # uneven partitions, one empty
            rows = slice(i * 60, (i + 1) * 60) if i < 3 else slice(0, 0)
            merger.add(metric_parts(model, xt.iloc[rows] if i < 3 else xt.iloc[:0],
                                    yt.iloc[rows] if i < 3 else yt.iloc[:0], task))
        merger.add(metric_parts(model, xt.iloc[180:], yt.iloc[180:], task))
        merged = merger.metrics()
        assert set(merged) == set(exact), model_type
        for key, value in exact.items():
            assert value is not None, (model_type, key)
            assert merged[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (model_type, key)
    # roc_auc undefined with one class present (None, as compute_metrics says).
    merger = MetricMerger("classification")
    one = (model_for_one_class(), pd.DataFrame({"a": [1.0, 2.0]}), pd.Series([1, 1]))
    merger.add(metric_parts(*one, "classification"))
    assert merger.metrics()["roc_auc"] is None
    assert merger.metrics() == pytest.approx(compute_metrics(*one, "classification"))


def model_for_one_class() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]}), [0, 0, 1, 1])


def test_roc_auc_rounds_beyond_its_point_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond ROC_AUC_MAX_POINTS distinct scores the merge rounds them (bounded memory)
    and stays within 1e-6 of the exact value."""
    from sklearn.metrics import roc_auc_score

    from mlops import training

    rng = np.random.default_rng(1)
    scores, truth = rng.random(3000), rng.random(3000) < 0.3
    monkeypatch.setattr(training, "ROC_AUC_MAX_POINTS", 1000)
    monkeypatch.setattr(training, "ROC_AUC_DECIMALS", 3)
    merger = training.MetricMerger("classification")
    for i in range(3):
        part = slice(i * 1000, (i + 1) * 1000)
        merger.add({"n": 1000, "confusion": {(1, 1): 1000}, "classes": [False, True],
                    "log_loss_sum": 0.0,
                    "roc": {1: training._score_points(scores[part], truth[part])}})
    assert merger.rounded
    assert merger.metrics()["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-3)


def _run_night(src: Path, frames: list[pd.DataFrame], store: Path, engine: str, run_id: str,
               sections: dict[str, Any]) -> Any:
    for f in src.glob("*.parquet"):
        f.unlink()
    write_parts(src, frames)
    cfg = Config.from_dict({"storage": {"uri": str(store)}, **sections,
                            "data": {"source": str(src), "engine": engine}})
    ws = Workspace.open(cfg)
    ingest(cfg, run_id, ws)
    return monitor_check(cfg, run_id, ws)


@pytest.mark.parametrize(("kind", "trained_by", "model_type", "method", "metric"), [
    ("regression", "dask", "lightgbm", "psi", "mae"),
    ("regression", "pandas", "linear", "mean_l1", "r2"),
    ("classification", "dask", "lightgbm", "psi", "roc_auc"),
    ("classification", "pandas", "hist_gradient_boosting", "ks", "f1_macro"),
    ("classification", "dask", "random_forest", "wasserstein", "log_loss"),
])
def test_engines_agree_on_mixed_data_regression_and_every_metric(
        client: Any, tmp_path: Path, kind: str, trained_by: str, model_type: str,
        method: str, metric: str) -> None:
    """Same store, same serving model (with categorical, bool and missing features):
    both engines reach the same decision with the same metrics and per-feature drift
    statistics (categorical ones from merged counts) to 1e-9."""
    regression = kind == "regression"
    src, store = tmp_path / "src", tmp_path / "store"
    sections: dict[str, Any] = {
        "monitoring": {"drift_method": method, "drift_min_samples": 100, "metric": metric},
        "training": {"model_type": model_type, "params": {"n_estimators": 15}
                     if model_type in ("lightgbm", "random_forest") else {}}}
    first = _run_night(src, mixed(3, regression=regression), store, trained_by, "night-1",
                       sections)
    assert first.reasons == ["no_model"]
    assert first.task == kind
    trained = train(Config.from_dict({"storage": {"uri": str(store)}, **sections,
                                      "data": {"source": str(src), "engine": trained_by}}),
                    "night-1", None)
    assert trained.metric == metric and trained.score is not None
    for night, shift in ((2, 0.0), (3, 1.5)):
        frames = mixed(3, seed=10 * night, shift=shift, regression=regression)
        checks = {e: _run_night(src, frames, store, e, f"night-{night}-{e}", sections)
                  for e in ("pandas", "dask")}
        p, d = checks["pandas"], checks["dask"]
        assert p.task == d.task == kind
        assert d.reasons == p.reasons
        assert "drift" in p.reasons if shift else "drift" not in p.reasons
        assert set(d.metrics) == set(p.metrics) and p.metrics
        for key, value in p.metrics.items():
            assert value is not None, key
            assert d.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        assert d.score == pytest.approx(p.score, rel=1e-9)
        assert d.drift == pytest.approx(p.drift, rel=1e-9)
        pf = {f["feature"]: f for f in p.drift_report["features"]}
        df = {f["feature"]: f for f in d.drift_report["features"]}
        # mean_l1 compares the numeric features' means.
        assert set(pf) == set(df) == ({"x0", "x1"} if method == "mean_l1"
                                      else {"x0", "x1", "city", "flag"})
        for name in ("city", "flag") if method != "mean_l1" else ():
            assert df[name]["method"] == pf[name]["method"]
            assert df[name]["statistic"] == pytest.approx(pf[name]["statistic"], rel=1e-9)
            assert df[name]["missing_rate"] == pytest.approx(pf[name]["missing_rate"],
                                                             rel=1e-9)
            assert df[name]["unseen"] == pf[name]["unseen"]


def test_categorical_lightgbm_on_dask_predicts_on_a_raw_pandas_frame(
        client: Any, tmp_path: Path) -> None:
    """The saved model is a plain local Pipeline (FrameCodes + LGBMRegressor) that takes
    raw frames: missing values and categories never seen in training included."""
    from lightgbm import LGBMRegressor

    from mlops.training import FrameCodes

    src = tmp_path / "src"
    frames = mixed(3, regression=True)
    write_parts(src, frames)
    cfg = config(tmp_path, src, training={"model_type": "lightgbm",
                                          "params": {"n_estimators": 30}})
    summary = run_pipeline(cfg)
    assert summary["task"] == "regression" and summary["metric"] == "rmse"
    assert summary["accuracy"] is None and set(summary["metrics"]) == {"rmse", "mae", "r2"}
    assert summary["metrics"]["r2"] > 0.5
    ws = Workspace.open(cfg)
    model, meta = ws.registry.load(summary["model_version"])
    assert isinstance(model[0], FrameCodes) and isinstance(model[-1], LGBMRegressor)
    raw = pd.read_parquet(src / "part-000.parquet").drop(columns="target")
    raw.loc[0, "city"] = "never-seen"
    raw.loc[1, ["x1", "flag", "city"]] = [np.nan, None, None]
    predicted = model.predict(raw[["flag", "city", "x1", "x0"]])  # another column order
    assert predicted.shape == (len(raw),) and np.isfinite(predicted).all()
    # The east category matters in the concept (+3): the model learned it natively.
    east = model.predict(raw.assign(city="east")).mean()
    north = model.predict(raw.assign(city="north")).mean()
    assert east - north > 1.5
    info = meta["metadata"]
    kinds = {c["name"]: (c["kind"], c.get("categories")) for c in info["schema"]["features"]}
    assert kinds["city"] == ("categorical", ["east", "north", "south"])
    assert kinds["flag"][0] == "bool" and kinds["x0"][0] == "numeric"
    reference = ws.registry.get_reference(summary["model_version"])["distribution"]
    assert set(reference["features"]) == {"x0", "x1", "city", "flag"}
    assert reference["features"]["city"]["kind"] == "categorical"
    assert reference["rows"] == info["train_rows"]
    ingested = ws.read_result(summary["run_id"], "ingest")
    assert ingested["feature_kinds"] == {"x0": "numeric", "x1": "numeric",
                                         "city": "categorical", "flag": "bool"}


def test_partition_summaries_without_feature_summaries_are_read_again(
        client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stats object written before partitions kept their target and category summaries
    is not taken from the fingerprint cache: its file is read again."""
    ws, _, manifest = ingest_parts(tmp_path, batches(2))
    key = manifest["partitions"][0]["stats_object"]
    old = ws.versioner.store.read_json(key)
    for name in ("target", "feature_kinds", "categories", "category_missing"):
        old.pop(name)
    ws.versioner.store.write_json(key, old)
    caplog.set_level("INFO", logger="mlops.engines.dask")
    cfg = config(tmp_path, tmp_path / "src")
    assert ingest(cfg, "run-2", ws).task == "classification"
    assert "2 partitions, 1 read, 1 from the fingerprint cache" in caplog.text
    assert "target" in ws.versioner.store.read_json(key)  # completed: cached from now on


def test_partitioned_manifest_records_its_source_and_category_counts(
        client: Any, tmp_path: Path) -> None:
    """Lineage (#10) on Dask: the manifest names the source URI and each file it read
    with its size and partition; category counts are exact merged counts."""
    frames = mixed(2)
    ws, result, manifest = ingest_parts(tmp_path, frames)
    src = tmp_path / "src"
    assert manifest["source"]["uri"] == str(src)
    files = manifest["source"]["files"]
    assert [Path(f["path"]).name for f in files] == ["part-000.parquet", "part-001.parquet"]
    assert [f["size_bytes"] for f in files] == \
        [(src / Path(f["path"]).name).stat().st_size for f in files]
    assert [f["partition"] for f in files] == [p["digest"] for p in manifest["partitions"]]
    whole = pd.concat(frames, ignore_index=True)
    assert manifest["categories"]["city"] == \
        {str(k): int(v) for k, v in whole["city"].value_counts().items()}
    assert manifest["category_missing"]["city"] == int(whole["city"].isna().sum())
    assert manifest["categories"]["flag"] == \
        {str(k): int(v) for k, v in whole["flag"].value_counts().items()}
    assert result.task == "classification"
    assert ws.versioner.get_record(result.data_version).extra["source"]["uri"] == str(src)


# --- 5 + 6: where the cluster comes from, and failures ---------------------------------------
def test_unreachable_scheduler_fails_fast_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = tmp_path / "src"
    write_parts(src, batches(1))
    address = f"tcp://127.0.0.1:{port}"
    cfg = config(tmp_path, src, dask={"address": address, "connect_timeout": 1.0})
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"dask scheduler {address} .*cannot be reached") \
            as err:
        ingest(cfg, "run-1", Workspace.open(cfg))
    assert time.monotonic() - started < 15
    assert err.value.exit_code == 1
    assert Workspace.open(cfg).versioner.list_versions() == []


def test_existing_scheduler_by_address(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_parts(src, batches(2))
    cfg = config(tmp_path, src, dask={"address": client.scheduler.address})
    assert ingest(cfg, "run-1", Workspace.open(cfg)).rows == 800


def test_engine_config_is_validated() -> None:
    from mlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.engine"):
        Config.from_dict({"data": {"engine": "spark"}})
    with pytest.raises(ConfigError, match=r"dask\.memory_limit"):
        Config.from_dict({"dask": {"memory_limit": "lots"}})
    assert Config.from_dict({"dask": {"memory_limit": "512MiB"}}).dask.memory_limit == "512MiB"
