"""Run by the clean environment's python (see tests/clean_env.py), never by pytest.

Reads a JSON list of jobs (argv[1]); each names an export folder, its format, an input
Parquet file and an output Parquet file, and is answered as a model server would: the
kserve folder through joblib (and LightGBM's native model through lightgbm.Booster), the
mlflow folder through mlflow.pyfunc and mlflow.sklearn. It first proves that mlops cannot
be imported here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if importlib.util.find_spec("mlops") is not None:
    sys.exit("mlops is importable in the clean environment")


def kserve(folder: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    import joblib

    model = joblib.load(folder / "model.joblib")
    out = {"predict": np.asarray(model.predict(frame))}
    if hasattr(model, "predict_proba"):
        out["proba"] = np.asarray(model.predict_proba(frame))
    bst = folder / "lightgbm" / "model.bst"
    if bst.exists():
        import lightgbm

        booster = lightgbm.Booster(model_file=str(bst))
        out["booster"] = np.asarray(booster.predict(model[:-1].transform(frame)))
    return out


def mlflow(folder: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    served = mlflow.pyfunc.load_model(str(folder))
    # As MLflow's scoring server (and MLServer) get it: a JSON request parsed by the
    # model's signature.
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split",
                                                                   index=False))})
    request = infer_and_parse_data(json.loads(body), served.metadata.get_input_schema())
    out = {"predict": np.asarray(served.predict(request))}
    model = mlflow.sklearn.load_model(str(folder))
    if hasattr(model, "predict_proba"):
        out["proba"] = np.asarray(model.predict_proba(frame))
    return out


def main() -> None:
    for job in json.loads(Path(sys.argv[1]).read_text()):
        frame = pd.read_parquet(job["input"])
        got = (kserve if job["format"] == "kserve" else mlflow)(Path(job["folder"]), frame)
        cols: dict[str, np.ndarray] = {"predict": got["predict"]}
        for name in ("proba", "booster"):
            if name in got:
                values = got[name].reshape(len(frame), -1)
                cols.update({f"{name}_{i}": values[:, i] for i in range(values.shape[1])})
        pd.DataFrame(cols).to_parquet(job["output"])


if __name__ == "__main__":
    main()
