"""B14: CBPE's estimated accuracy and roc_auc against NannyML's own CBPE, same data.

NannyML pins its own pandas/numpy/lightgbm ranges (and pulls xgboost, plotly...), so it
never enters the project's environment: it runs in a virtual environment of its own,
created once in a cache folder outside the repository (``$MLOPS_BENCH_ENVS`` or
``~/.cache/mlops-bench-envs``, named by a hash of its requirements) and reused, like
the clean environment of the serving tests. Frames go in and out as CSV files.

For each seed: train ``random_forest`` on ``generate_synthetic_data`` (fixed concept),
hold out 30%, fit our calibration map on the held-out split and NannyML's CBPE on
the same held-out rows (its reference: labels, raw probability, prediction); then
estimate both on a covariate-shifted batch (features shifted 0.8 sd, spread 1.3x)
whose labels are known, and compare each estimate with the true value.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import numpy as np

#: NannyML's release compared against (the newest at the time of writing), and
#: statsmodels, which ``import nannyml`` needs (its plots) but its metadata omits.
NANNYML = "nannyml==0.13.1"
REQUIREMENTS = (NANNYML, "statsmodels")
INSTALL_TIMEOUT = 1200
#: The estimator run inside NannyML's environment: reference and analysis CSV in, JSON out.
SCRIPT = r"""
import json, sys, warnings
import pandas as pd
import nannyml as nml
warnings.simplefilter("ignore")
ref, ana, out = sys.argv[1:4]
reference, analysis = pd.read_csv(ref), pd.read_csv(ana)
est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
               metrics=["accuracy", "roc_auc"], problem_type="classification_binary",
               chunk_number=1)
est.fit(reference)
frame = est.estimate(analysis).filter(period="analysis").to_df()
values = {m: float(frame[(m, "value")].iloc[0]) for m in ("accuracy", "roc_auc")}
json.dump({"version": nml.__version__, "estimated": values}, open(out, "w"))
"""


def cache_root() -> Path:
    """``$MLOPS_BENCH_ENVS`` or ``~/.cache/mlops-bench-envs`` (outside the repository)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
        "mlops-bench-envs"
    return Path(os.environ.get("MLOPS_BENCH_ENVS", default))


def _home() -> Path:
    key = hashlib.sha256(json.dumps([sys.version_info[:2], REQUIREMENTS]).encode()
                         ).hexdigest()[:16]
    return cache_root() / f"nannyml-{key}"


def env_ready() -> bool:
    """Whether NannyML's environment exists (``ready.json`` is written last)."""
    return (_home() / "ready.json").exists()


def ensure_env() -> Path:
    """NannyML's python, creating its environment when missing (pip, by name)."""
    home = _home()
    python = home / "bin" / "python"
    if env_ready():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not env_ready():
            venv.EnvBuilder(with_pip=True, clear=True).create(home)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                           check=True, timeout=INSTALL_TIMEOUT)
            (home / "ready.json").write_text(json.dumps({"requirements": REQUIREMENTS}))
    return python


def nannyml_estimate(python: Path, reference: Any, analysis: Any) -> dict[str, Any]:
    """NannyML's CBPE of ``analysis`` fitted on ``reference`` (pandas frames)."""
    with tempfile.TemporaryDirectory(prefix="mlops-nannyml-") as tmp:
        ref, ana, out = (Path(tmp) / n for n in ("ref.csv", "ana.csv", "out.json"))
        reference.to_csv(ref, index=False)
        analysis.to_csv(ana, index=False)
        subprocess.run([str(python), "-c", SCRIPT, str(ref), str(ana), str(out)],
                       check=True, timeout=600, capture_output=True)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def compare(seeds: tuple[int, ...], rows: int, batch_rows: int,
            python: Path | None) -> dict[str, Any]:
    """Per seed: the true accuracy/roc_auc of the shifted batch, ours and NannyML's
    estimates (NannyML's None without ``python``)."""
    import pandas as pd

    from mlops.config import TrainingConfig
    from mlops.data import generate_synthetic_data
    from mlops.performance import cbpe
    from mlops.training import compute_metrics, split, train_model

    out: list[dict[str, Any]] = []
    version = None
    for seed in seeds:
        df = generate_synthetic_data(rows, 6, seed)
        x, y = df.drop(columns="target"), df["target"]
        x_train, x_test, y_train, y_test = split(x, y, 0.3, seed)
        model = train_model(x_train, y_train, TrainingConfig(model_type="random_forest",
                                                             random_state=seed))
        proba, classes = cbpe.model_proba(model, x_test)
        calibration = cbpe.fit_calibration([cbpe.calibration_parts(
            proba, y_test.to_numpy(), classes)])
        assert calibration is not None
        batch = generate_synthetic_data(batch_rows, 6, 1000 + seed, shift=0.8, scale=1.3)
        bx, by = batch.drop(columns="target"), batch["target"]
        true = compute_metrics(model, bx, by, "classification")
        ours = cbpe.estimate(cbpe.model_proba(model, bx)[0], calibration)
        entry: dict[str, Any] = {"seed": seed, "true": {m: true[m] for m in
                                                        ("accuracy", "roc_auc")},
                                 "ours": {m: ours[m] for m in ("accuracy", "roc_auc")}}
        if python is not None:
            batch_proba = cbpe.model_proba(model, bx)[0]
            reference = pd.DataFrame({"y_true": y_test.to_numpy(), "y_pred_proba": proba[:, 1],
                                      "y_pred": proba.argmax(axis=1)})
            analysis = pd.DataFrame({"y_pred_proba": batch_proba[:, 1],
                                     "y_pred": batch_proba.argmax(axis=1)})
            theirs = nannyml_estimate(python, reference, analysis)
            version = theirs["version"]
            entry["nannyml"] = theirs["estimated"]
        out.append(entry)
    return {"seeds": out, "nannyml_version": version}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Mean absolute errors against the truth (ours, NannyML's) and the largest gap
    between the two estimates, per metric."""
    seeds = result["seeds"]
    summary: dict[str, Any] = {}
    for m in ("accuracy", "roc_auc"):
        ours = [abs(s["ours"][m] - s["true"][m]) for s in seeds]
        summary[f"{m}_mae_ours"] = float(np.mean(ours))
        if all("nannyml" in s for s in seeds):
            theirs = [abs(s["nannyml"][m] - s["true"][m]) for s in seeds]
            summary[f"{m}_mae_nannyml"] = float(np.mean(theirs))
            summary[f"{m}_max_gap"] = float(max(abs(s["ours"][m] - s["nannyml"][m])
                                                for s in seeds))
    return summary
