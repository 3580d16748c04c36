"""Write ``tests/data/store-0.2`` and its expected predictions (run once, by hand).

The compatibility fixture of the release before serving exports (issue 23 item 1): a
store holding the models this release writes, so that a later release which moves
modules or changes the preprocessing still loads them and predicts the same.

* ``mixed-rf``: the pandas engine's random forest on a mixed-type frame (numeric,
  integer, bool and string/category features with missing values): its Pipeline
  refers to ``mlops.training.as_float`` and ``mlops.training.as_strings``;
* ``mixed-hgb``: hist_gradient_boosting on the same frame (ordinal category codes);
* ``dask-lgbm``: the Dask engine's LightGBM regressor, whose first step is
  ``mlops.training.FrameCodes`` with the category codes counted at ingest.

``store-0.2.inputs.parquet`` is a raw input (missing values, a category never seen in
training) and ``store-0.2.expected.json`` what each model predicted on it then.

    .venv/bin/python tests/data/make_store_0_2.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

from mlops.config import Config
from mlops.pipeline import ingest, train
from mlops.store.workspace import Workspace

HERE = Path(__file__).parent
STORE = HERE / "store-0.2"


def mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, n)
    count = rng.integers(0, 30, n)
    flag = rng.random(n) < 0.4
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    size = rng.choice(["S", "M", "L"], n)
    logit = x1 + 0.1 * (count - 15) + 1.5 * flag + np.where(color == "red", 1.0, -1.0)
    df = pd.DataFrame({"x1": x1, "count": count.astype(np.int64), "flag": flag,
                       "color": pd.Series(color, dtype=object), "size": pd.Categorical(size),
                       "target": (logit + rng.normal(0, 0.5, n) > 0).astype(np.int64)})
    for col in ("x1", "color", "size"):
        df.loc[rng.random(n) < 0.05, col] = None
    df["flag"] = df["flag"].astype(object)
    df.loc[rng.random(n) < 0.05, "flag"] = None
    return df


def dask_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x0 = rng.normal(5, 2, rows)
    x1 = rng.normal(0, 1, rows)
    city = rng.choice(["north", "south", "east"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    flag = (rng.random(rows) < 0.4).astype(object)
    y = x0 * 0.8 - 2 * x1 + np.where(city == "east", 3.0, 0.0) + \
        np.where(flag.astype(bool), 1.5, 0.0) + rng.normal(0, 0.5, rows)
    x0[rng.random(rows) < 0.05] = np.nan
    city[rng.random(rows) < 0.05] = None
    flag[0] = None
    return pd.DataFrame({"x0": x0, "x1": x1, "city": city, "flag": flag, "target": y})


def main() -> None:
    if STORE.exists():
        shutil.rmtree(STORE)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        mixed_frame(300, 0).to_parquet(src / "mixed.parquet", index=False)
        parts = src / "parts"
        parts.mkdir()
        for i in range(2):
            dask_frame(300, i).to_parquet(parts / f"part-{i:03d}.parquet", index=False)
        base = {"storage": {"uri": str(STORE)}, "reporting": {"enabled": False}}
        for run_id, model_type, params in (
                ("mixed-rf", "random_forest", {"n_estimators": 20}),
                ("mixed-hgb", "hist_gradient_boosting", {"max_iter": 20})):
            # ingest and train (no monitor-check: the second model is trained regardless)
            cfg = Config.from_dict({**base, "data": {"source": str(src / "mixed.parquet")},
                                    "training": {"model_type": model_type, "params": params}})
            ws = Workspace.open(cfg)
            ingest(cfg, run_id, ws)
            train(cfg, run_id, ws)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster, Client(cluster):
            cfg = Config.from_dict({**base, "data": {"source": str(parts), "engine": "dask"},
                                    "training": {"model_type": "lightgbm",
                                                 "params": {"n_estimators": 30}}})
            ws = Workspace.open(cfg)
            ingest(cfg, "dask-lgbm", ws)
            train(cfg, "dask-lgbm", ws)
    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(STORE)}}))
    mixed = mixed_frame(40, 99).drop(columns="target")
    mixed.loc[0, "color"] = "purple"  # never seen in training
    dask = dask_frame(40, 99).drop(columns="target")
    dask.loc[0, "city"] = "west"
    inputs = {"mixed": mixed, "dask": dask}
    for name, frame in inputs.items():
        frame.to_parquet(HERE / f"store-0.2.inputs-{name}.parquet", index=False)
    expected: dict[str, dict[str, list[float] | list[int]]] = {}
    for version, frame in (("mixed-rf", mixed), ("mixed-hgb", mixed), ("dask-lgbm", dask)):
        model, _ = ws.registry.load(version)
        out: dict[str, list] = {"predict": np.asarray(model.predict(frame)).tolist()}
        if hasattr(model, "predict_proba"):
            out["predict_proba"] = np.asarray(model.predict_proba(frame)).tolist()
        expected[version] = out
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in expected.items()]
    (HERE / "store-0.2.expected.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()
