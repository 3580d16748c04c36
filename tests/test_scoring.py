"""The score step: predictions versions from the serving model, both engines, bad input.

Real parts: the local store, a real in-process Dask ``LocalCluster`` for the Dask engine,
the ``mlops`` CLI through its entry point (``main``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.cli import main
from mlops.config import Config
from mlops.data import generate_synthetic_data
from mlops.engines.dask import NO_DASHBOARD
from mlops.pipeline import SCORE, score
from mlops.registry import PRODUCTION
from mlops.runner import run_pipeline
from mlops.scoring import predictions_store
from mlops.workspace import Workspace

N_FEATURES = 4


def batch(rows: int, seed: int, with_target: bool = False) -> pd.DataFrame:
    """A batch to score: an id column, the features, no target (the normal case)."""
    df = generate_synthetic_data(rows, N_FEATURES, seed)
    df.insert(0, "customer_id", [f"c{seed}-{i}" for i in range(rows)])
    return df if with_target else df.drop(columns=["target"])


def write_source(folder: Path, frames: list[pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, df in enumerate(frames):
        df.to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return folder


def config(tmp_path: Path, source: Path | str, engine: str = "pandas",
           **scoring: Any) -> Config:
    return Config.from_dict({
        "storage": {"uri": str(tmp_path / "store")},
        "data": {"n_samples": 600, "n_features": N_FEATURES, "random_state": 1,
                 "engine": engine, **({"source": str(tmp_path / "train")}
                                      if engine == "dask" else {})},
        "scoring": {"source": str(source), "id_columns": ["customer_id"], **scoring}})


def store_files(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "store"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def scored_run(tmp_path: Path) -> tuple[Config, dict[str, Any]]:
    src = write_source(tmp_path / "score", [batch(150, 7), batch(90, 8)])
    cfg = config(tmp_path, src)
    return cfg, run_pipeline(cfg, run_id="run-1")


def test_run_scores_the_source_with_the_serving_model(
        scored_run: tuple[Config, dict[str, Any]]) -> None:
    cfg, summary = scored_run
    ws = Workspace.open(cfg)
    preds = predictions_store(ws)
    [vid] = preds.list_versions()
    record = preds.get_record(vid)
    assert summary["predictions_uri"] == preds.store.url(preds.commit_key(vid))
    assert summary["predictions_uri"].endswith(f"predictions/versions/{vid}.json")
    assert ws.read_result("run-1", SCORE)["predictions_version"] == vid
    # Lineage: the serving model, and the scored batch's content hash, file by file.
    assert record.model_version == ws.registry.get_alias(PRODUCTION) == summary["model_version"]
    assert record.run_id == "run-1" and record.rows == 240
    assert [f["rows"] for f in record.source["files"]] == [150, 90]
    assert len(record.source["content_hash"]) == 64
    assert vid == record.content_hash[:16]
    # The rows: ids, the model's own predictions and class probabilities.
    got = preds.load(vid)
    model, _ = ws.registry.load(record.model_version)
    source = pd.concat([batch(150, 7), batch(90, 8)], ignore_index=True)
    features = [f"feature_{i}" for i in range(N_FEATURES)]
    classes = list(model.classes_)
    assert list(got.columns) == ["customer_id", "prediction",
                                 *(f"probability_{c}" for c in classes)]
    assert got["customer_id"].tolist() == source["customer_id"].tolist()
    np.testing.assert_array_equal(got["prediction"], model.predict(source[features]))
    np.testing.assert_allclose(got[[f"probability_{c}" for c in classes]].to_numpy(),
                               model.predict_proba(source[features]))


def test_score_alone_is_content_addressed_and_listed(
        scored_run: tuple[Config, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, summary = scored_run
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({k: v for k, v in {
        "storage": {"uri": cfg.storage.uri}, "data": {"n_features": N_FEATURES},
        "scoring": {"source": cfg.scoring.source, "id_columns": ["customer_id"]}}.items()}))
    capsys.readouterr()
    # The same model on the same rows: the same version, nothing new.
    assert main(["score", "--config", str(path), "--run-id", "again", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["predictions_uri"] == summary["predictions_uri"]
    # New rows: a second version, listed newest first.
    write_source(Path(cfg.scoring.source), [batch(150, 7), batch(90, 8), batch(30, 9)])
    runs = sorted(p.name for p in (Path(cfg.storage.uri) / "runs").iterdir())
    assert main(["score", "--config", str(path), "--json"]) == 0
    newer = json.loads(capsys.readouterr().out)
    assert newer["rows"] == 270 and newer["partitions"] == 3
    # Without --run-id there is no run: nothing under runs/ (mlops status stays healthy).
    assert sorted(p.name for p in (Path(cfg.storage.uri) / "runs").iterdir()) == runs
    assert main(["status", "--config", str(path)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["versions", "predictions", "--config", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [newer["predictions_version"],
                                         again["predictions_version"]]
    assert listed[0]["model_version"] == summary["model_version"]
    assert main(["versions", "predictions", "--config", str(path)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["ID", "CREATED_AT", "ROWS"]


@pytest.mark.parametrize("case", ["id_column", "feature_column", "no_model", "no_source",
                                  "reserved_name"])
def test_bad_input_exits_2_naming_it_and_writes_nothing(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = batch(100, 3), batch(50, 4)
    if case == "id_column":
        bad = bad.drop(columns=["customer_id"])
    elif case == "feature_column":
        bad = bad.drop(columns=["feature_2"])
    # The bad file comes last: nothing may be written for the good one before it.
    src = write_source(tmp_path / "score", [good, bad])
    cfg = config(tmp_path, src if case != "no_source" else tmp_path / "nothing-*.csv",
                 **({"id_columns": ["prediction"]} if case == "reserved_name" else {}))
    if case != "no_model":
        run_pipeline(Config.from_dict({**cfg.to_dict(), "scoring": {}}), run_id="run-0")
    (tmp_path / "store").mkdir(exist_ok=True)
    before = store_files(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg.to_dict()))
    capsys.readouterr()
    code = main(["score", "--config", str(path), "--run-id", "run-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    expected = {"id_column": "'customer_id'", "feature_column": "'feature_2'",
                "no_model": "no serving model", "no_source": "nothing-*.csv",
                "reserved_name": "'prediction' would clash"}[case]
    assert expected in err[0]
    assert store_files(tmp_path) == before


def test_regressor_predictions_have_no_probabilities(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"customer_id": [f"r{i}" for i in range(400)],
                          "x1": rng.normal(size=400), "x2": rng.normal(size=400)})
    train["target"] = 3 * train["x1"] - train["x2"] + rng.normal(scale=0.1, size=400)
    train.to_parquet(tmp_path / "train.parquet", index=False)
    src = write_source(tmp_path / "score", [train.drop(columns=["target"]).head(50)])
    cfg = Config.from_dict({
        "storage": {"uri": str(tmp_path / "store")},
        "data": {"source": str(tmp_path / "train.parquet"), "task": "regression"},
        "scoring": {"source": str(src), "id_columns": ["customer_id"]}})
    try:
        summary = run_pipeline(cfg, run_id="run-1")
    except Exception as err:  # customer_id is a feature unless excluded: fine either way
        pytest.fail(f"run failed: {err}")
    ws = Workspace.open(cfg)
    got = predictions_store(ws).load(ws.read_result("run-1", SCORE)["predictions_version"])
    assert list(got.columns) == ["customer_id", "prediction"]
    model, _ = ws.registry.load(summary["model_version"])
    features = list(model.feature_names_in_)
    np.testing.assert_allclose(got["prediction"], model.predict(train.head(50)[features]))


# --- the Dask engine ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process cluster (the real scheduler and workers); steps find it as current."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def test_engines_give_the_same_predictions_version(client: Any, tmp_path: Path) -> None:
    src = write_source(tmp_path / "score", [batch(120, 11), batch(80, 12), batch(60, 13)])
    pandas_cfg = config(tmp_path, src)
    run_pipeline(Config.from_dict({**pandas_cfg.to_dict(), "scoring": {}}), run_id="run-0")
    by_pandas = score(pandas_cfg, "run-pandas")
    ws = Workspace.open(pandas_cfg)
    preds = predictions_store(ws)
    pandas_rows = preds.load(by_pandas.predictions_version)
    # The same store and model, scored partition by partition on the Dask cluster: the
    # content-addressed id is the same, so are the rows.
    dask_cfg = config(tmp_path, src, engine="dask",
                      output=str(tmp_path / "dask-predictions"))
    by_dask = score(dask_cfg, "run-dask")
    assert by_dask.predictions_version == by_pandas.predictions_version
    assert by_dask.partitions == 3 and by_dask.source_hash == by_pandas.source_hash
    dask_store = predictions_store(Workspace.open(dask_cfg))
    assert dask_store.store.url().endswith("dask-predictions")
    pd.testing.assert_frame_equal(dask_store.load(by_dask.predictions_version), pandas_rows)


def test_dask_engine_bad_column_exits_2_and_writes_nothing(
        client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The header check runs as tasks on the workers too, before any partition is scored."""
    src = write_source(tmp_path / "score", [batch(60, 1), batch(60, 2).drop(columns=["feature_1"])])
    pandas_cfg = config(tmp_path, src)
    run_pipeline(Config.from_dict({**pandas_cfg.to_dict(), "scoring": {}}), run_id="run-0")
    before = store_files(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config(tmp_path, src, engine="dask").to_dict()))
    capsys.readouterr()
    assert main(["score", "--config", str(path), "--run-id", "run-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'feature_1'" in err[0] and "part-001.parquet" in err[0], err
    assert store_files(tmp_path) == before


def test_predictions_versions_on_every_backend(make_config: Any, tmp_path: Path) -> None:
    """The store under test holds the predictions (local, memory, GCS emulator, moto S3)."""
    src = write_source(tmp_path / "score", [batch(70, 21), batch(30, 22)])
    data = {"n_samples": 400, "n_features": N_FEATURES, "random_state": 1}
    run_pipeline(make_config(data=data), run_id="run-0")
    cfg = make_config(data=data, scoring={"source": str(src), "id_columns": ["customer_id"]})
    first = score(cfg, "run-1")
    assert score(cfg, "run-2").predictions_version == first.predictions_version
    preds = predictions_store(Workspace.open(cfg))
    assert preds.list_versions() == [first.predictions_version]
    assert first.predictions_uri == preds.store.url(preds.commit_key(first.predictions_version))
    got = preds.load(first.predictions_version)
    assert got["customer_id"].tolist() == [*batch(70, 21)["customer_id"],
                                           *batch(30, 22)["customer_id"]]
