"""Serving exports (kserve, mlflow): written on promotion and by ``mlops export``, loaded
where mlops is not installed.

The clean-environment test creates (once, cached outside the repository: see
``tests/clean_env.py``) a virtual environment with only scikit-learn, pandas, numpy,
joblib, pyarrow, lightgbm and mlflow-skinny, and predicts there in a subprocess, frames
passed as Parquet, for a mixed-type classifier and regressor of each engine's model
type (scikit-learn Pipelines on pandas, LightGBM with FrameCodes on Dask).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops import cli, layout
from mlops.config import Config
from mlops.engines.dask import NO_DASHBOARD
from mlops.errors import ExportError
from mlops.registry import PRODUCTION
from mlops.runner import run_pipeline
from mlops.serving import (
    COMMIT_FILE,
    build_export,
    export_for_serving,
    pickled_modules,
    portable,
    serving_folder,
)
from mlops.workspace import Workspace
from tests.clean_env import ensure_env
from tests.conftest import skip_or_fail
from tests.test_crash import crash

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "store-0.2"
FIXTURE_INPUTS = {"mixed-rf": "mixed", "mixed-hgb": "mixed", "dask-lgbm": "dask"}
#: The promoted models that are LightGBM's (a native model.bst in the kserve export).
LIGHTGBM = {"pandas-lightgbm-classifier", "dask-classifier", "dask-regressor"}
#: Seconds the clean environment may take to load and predict every export.
PREDICT_TIMEOUT = 300


def mixed(n: int, seed: int, regression: bool = False) -> pd.DataFrame:
    """Numeric, integer, bool (object, missing), string and category features."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, n)
    count = rng.integers(0, 30, n)
    flag = rng.random(n) < 0.4
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    size = rng.choice(["S", "M", "L"], n)
    y = x1 + 0.1 * (count - 15) + 1.5 * flag + np.where(color == "red", 1.0, -1.0) + \
        rng.normal(0, 0.5, n)
    df = pd.DataFrame({"x1": x1, "count": count.astype(np.int64),
                       "flag": pd.Series(flag, dtype=object),
                       "color": pd.Series(color, dtype=object), "size": pd.Categorical(size),
                       "target": y if regression else (y > 0).astype(np.int64)})
    for col in ("x1", "color", "size", "flag"):
        df.loc[rng.random(n) < 0.05, col] = None
    return df


def request_frame(n: int = 60, seed: int = 7) -> pd.DataFrame:
    frame = mixed(n, seed).drop(columns="target")
    frame.loc[0, "color"] = "purple"  # never seen in training
    frame.loc[1, ["x1", "flag", "color", "size"]] = [np.nan, None, None, None]
    return frame


def train(tmp_path: Path, name: str, engine: str, model_type: str, regression: bool,
          params: dict[str, Any]) -> tuple[Workspace, dict[str, Any]]:
    src = tmp_path / f"src-{name}"
    src.mkdir()
    for i in range(2):
        mixed(250, i, regression).to_parquet(src / f"part-{i:03d}.parquet", index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / f"store-{name}")},
                            "data": {"source": str(src if engine == "dask" else
                                                   src / "part-000.parquet"),
                                     "engine": engine},
                            "training": {"model_type": model_type, "params": params},
                            "reporting": {"enabled": False}})
    summary = run_pipeline(cfg)
    return Workspace.open(cfg), summary


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, dask_client: Any
             ) -> dict[str, tuple[Workspace, dict[str, Any]]]:
    """A mixed-type classifier and regressor of each engine, promoted by a run (and the
    pandas engine's LightGBM, whose preprocessing is the ColumnTransformer's)."""
    tmp = tmp_path_factory.mktemp("serving")
    return {
        "pandas-classifier": train(tmp, "pc", "pandas", "random_forest", False,
                                   {"n_estimators": 20}),
        "pandas-regressor": train(tmp, "pr", "pandas", "hist_gradient_boosting", True,
                                  {"max_iter": 20}),
        "pandas-lightgbm-classifier": train(tmp, "pl", "pandas", "lightgbm", False,
                                            {"n_estimators": 20}),
        "dask-classifier": train(tmp, "dc", "dask", "lightgbm", False, {"n_estimators": 20}),
        "dask-regressor": train(tmp, "dr", "dask", "lightgbm", True, {"n_estimators": 20}),
    }


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- the exports of a promotion ------------------------------------------------------------
def test_promotion_writes_both_exports_and_names_them_in_the_summary(
        promoted: dict[str, tuple[Workspace, dict[str, Any]]]) -> None:
    for name, (ws, summary) in promoted.items():
        version = summary["model_version"]
        assert summary["promoted"] and ws.registry.get_alias() == version
        assert summary["serving_uri"] == ws.store.url(f"serving/{version}")
        root = Path(ws.store.uri.removeprefix("file://")) / "serving" / version
        kserve = files_under(root / "kserve")
        lightgbm = name in LIGHTGBM
        assert set(kserve) == {"model.joblib", "libraries.json",
                               *(["lightgbm/model.bst"] if lightgbm else [])}, name
        # KServe's sklearn server refuses a folder with several model files.
        assert [p.name for p in (root / "kserve").iterdir()
                if p.suffix in (".joblib", ".pkl", ".pickle")] == ["model.joblib"]
        libraries = json.loads(kserve["libraries.json"])
        assert libraries["model_version"] == version
        assert ("lightgbm" in libraries["libraries"]) == lightgbm
        assert set(files_under(root / "mlflow")) == {"MLmodel", "model.pkl",
                                                     "requirements.txt", "python_env.yaml"}
        mlmodel = yaml.safe_load((root / "mlflow" / "MLmodel").read_text())
        assert set(mlmodel["flavors"]) == {"python_function", "sklearn"}
        inputs = json.loads(mlmodel["signature"]["inputs"])
        assert {c["name"]: c["type"] for c in inputs} == {
            "x1": "double", "count": "double", "flag": "boolean", "color": "string",
            "size": "string"}


def test_exported_pickles_hold_no_mlops_object(
        promoted: dict[str, tuple[Workspace, dict[str, Any]]]) -> None:
    for ws, summary in promoted.values():
        model, _ = ws.registry.load(summary["model_version"])
        modules = pickled_modules(portable(model))
        assert not [m for m in modules if m.split(".")[0] in ("mlops", "jobs", "src")]
    # ...while the registry's models of the Dask engine do refer to mlops (FrameCodes).
    ws, summary = promoted["dask-classifier"]
    assert "mlops.training" in pickled_modules(ws.registry.load(summary["model_version"])[0])


def test_exports_load_without_mlops_and_predict_as_the_registry_model(
        promoted: dict[str, tuple[Workspace, dict[str, Any]]], tmp_path: Path) -> None:
    try:
        python = ensure_env()
    except (OSError, subprocess.SubprocessError) as err:
        skip_or_fail(f"cannot create the clean environment (pip install failed): {err}")
    frame = request_frame()
    frame.to_parquet(tmp_path / "input.parquet")
    frame = pd.read_parquet(tmp_path / "input.parquet")  # what the clean side reads
    jobs, expected = [], {}
    for name, (ws, summary) in promoted.items():
        version = summary["model_version"]
        model, _ = ws.registry.load(version)
        want = {"predict": np.asarray(model.predict(frame))}
        if hasattr(model, "predict_proba"):
            want["proba"] = np.asarray(model.predict_proba(frame))
        expected[name] = want
        root = Path(ws.store.uri.removeprefix("file://")) / serving_folder(version)
        for fmt in ("kserve", "mlflow"):
            jobs.append({"name": name, "format": fmt, "folder": str(root / fmt),
                         "input": str(tmp_path / "input.parquet"),
                         "output": str(tmp_path / f"{name}-{fmt}.parquet")})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    # -I: isolated (no cwd, no PYTHONPATH on sys.path), run from outside the repository.
    proc = subprocess.run([str(python), "-I", str(Path(__file__).parent / "clean_predict.py"),
                           str(tmp_path / "jobs.json")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=PREDICT_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in jobs:
        got = pd.read_parquet(job["output"])
        want = expected[job["name"]]
        where = f"{job['name']} {job['format']}"
        np.testing.assert_array_equal(got["predict"].to_numpy(), want["predict"], where)
        if "proba" in want:
            proba = got[[c for c in got.columns if c.startswith("proba_")]].to_numpy()
            np.testing.assert_array_equal(proba, want["proba"], where)
        if job["name"] in LIGHTGBM and job["format"] == "kserve":
            # The native model takes the preprocessed matrix: the raw score of class 1
            # (classifier) or the prediction (regressor).
            booster = got["booster_0"].to_numpy()
            np.testing.assert_allclose(booster, want["proba"][:, 1] if "proba" in want
                                       else want["predict"], rtol=1e-12, err_msg=where)


# --- the compatibility fixture's models export too -----------------------------------------
@pytest.mark.parametrize("version", sorted(FIXTURE_INPUTS))
def test_models_of_the_0_2_store_export_with_the_same_predictions(version: str) -> None:
    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(FIXTURE)}}))
    model, _ = ws.registry.load(version)
    frame = pd.read_parquet(DATA / f"store-0.2.inputs-{FIXTURE_INPUTS[version]}.parquet")
    export = build_export(model, ws.registry.get_record(version), "kserve")
    served = joblib.load(io.BytesIO(dict(export.files)["model.joblib"]))
    assert not [m for m in pickled_modules(served) if m.startswith("mlops")]
    np.testing.assert_array_equal(served.predict(frame), model.predict(frame))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(served.predict_proba(frame), model.predict_proba(frame))


def test_a_portable_copy_that_predicts_differently_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The export compares the copy with the registry's model on probe rows made from the
    input schema (categories, unseen and missing values), so a replacement transformer
    that drifts from mlops.training's helper (a pandas change...) stops the export."""
    import operator

    from mlops import serving

    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(FIXTURE)}}))
    model, _ = ws.registry.load("mixed-rf")
    schema = ws.registry.get_record("mixed-rf").training().schema
    portable(model, schema)  # the real replacements pass
    monkeypatch.setattr(serving, "bool_floats", lambda: serving._calls(  # True 0, False 1
        operator.methodcaller("astype", "Float64"), operator.methodcaller("__rsub__", 1),
        operator.methodcaller("to_numpy", dtype="float64", na_value=np.nan)))
    with pytest.raises(ExportError, match="predicts differently"):
        portable(model, schema)


# --- crash safety and immutability ----------------------------------------------------------
def _train_run(config: Config, run_id: str) -> None:
    from mlops import pipeline

    pipeline.ingest(config, run_id)
    pipeline.train(config, run_id)


def test_a_crash_after_the_exports_leaves_the_alias_and_a_resume_keeps_them(
        tmp_path: Path) -> None:
    src = tmp_path / "mixed.parquet"
    mixed(200, 0).to_parquet(src, index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src)},
                            "training": {"model_type": "random_forest",
                                         "params": {"n_estimators": 5}}})
    crash(_train_run, cfg, "run-1", point="after-export")
    ws = Workspace.open(cfg)
    assert ws.registry.get_alias() is None  # the alias did not move...
    root = tmp_path / "store" / "serving" / "run-1"
    before = files_under(root)  # ...but both exports are complete
    assert {"kserve/libraries.json", "mlflow/MLmodel"} <= set(before)
    _train_run(cfg, "run-1")  # the resumed step
    assert ws.registry.get_alias() == "run-1"
    assert files_under(root) == before  # a complete export is never rewritten


def test_an_unfinished_export_is_written_again(tmp_path: Path) -> None:
    """Payload without its commit file (a crash in between) is redone, not trusted."""
    src = tmp_path / "mixed.parquet"
    mixed(200, 0).to_parquet(src, index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src)},
                            "training": {"model_type": "logistic"}})
    summary = run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    folder = tmp_path / "store" / layout.serving_key("run-1", "kserve")
    good = files_under(folder)
    (folder / COMMIT_FILE["kserve"]).unlink()
    (folder / "model.joblib").write_bytes(b"torn")
    assert summary["serving_uri"] is not None
    export_for_serving(ws.store, ws.registry, "run-1")
    assert files_under(folder) == good


# --- mlops export ---------------------------------------------------------------------------
def test_cli_export_writes_each_format_of_production(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    shutil.copytree(FIXTURE, store)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"uri": str(store)}}))
    assert cli.main(["export", "production", "--format", "kserve", "-o",
                     str(tmp_path / "k"), "-c", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_version"] == "dask-lgbm"
    assert set(files_under(tmp_path / "k")) == {"model.joblib", "libraries.json",
                                                "lightgbm/model.bst"}
    assert cli.main(["export", "mixed-rf", "--format", "mlflow", "-o",
                     str(tmp_path / "m"), "-c", str(config)]) == 0
    assert (tmp_path / "m" / "MLmodel").exists()
    capsys.readouterr()
    before = files_under(store)
    # Bad input: exit 2, one line naming what is wrong, nothing written.
    assert cli.main(["export", "mixed-rf", "--format", "mlflow", "-o",
                     str(tmp_path / "m"), "-c", str(config)]) == 2
    assert "--output" in capsys.readouterr().err
    assert cli.main(["export", "nope", "--format", "kserve", "-o",
                     str(tmp_path / "n"), "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "n").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "mixed-rf", "--format", "onnx", "-o", str(tmp_path / "x"),
                  "-c", str(config)])
    assert exit_info.value.code == 2
    assert files_under(store) == before


def test_cli_promote_writes_the_exports_before_the_alias_moves(tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(FIXTURE, store)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"uri": str(store)}}))
    assert not (store / "serving").exists()
    assert cli.main(["promote", "mixed-hgb", "-c", str(config)]) == 0
    assert (store / "serving" / "mixed-hgb" / "kserve" / "libraries.json").exists()
    assert (store / "serving" / "mixed-hgb" / "mlflow" / "MLmodel").exists()
    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(store)}}))
    assert ws.registry.get_alias(PRODUCTION) == "mixed-hgb"
