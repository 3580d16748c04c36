"""The anchors: Evidently and MLflow doing the same work as mlops, side by side (issue 24).

Usage::

    python -m benchmarks.bench_anchors                 # make bench (~10-15 min on 2 cores)
    python -m benchmarks.bench_anchors --only EV --rounds 1
    python -m benchmarks.bench_anchors --quick         # tiny sizes: a smoke check

Evidently and MLflow pin other versions of pandas (Evidently 0.7 imports a pandas
internal that pandas 3 removed) than this project, so each runs in its own virtual
environment, built once by this module with pip (``ANCHOR_REQUIREMENTS``) under
``$MLOPS_BENCH_VENVS`` (default ``~/.cache/mlops-bench``) and reused; neither is ever
installed in the project's environment. Without a registry to build them from, their
rows are marked skipped with the reason.

Every measurement runs in its own child process (the project's Python for mlops, the
anchor's venv for the anchor), alternating sides round by round. A child loads its
inputs, warms up on a tiny input (imports, lazy modules), resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``), then times the work and reads ``VmHWM``:
time and peak memory of the work alone, with the same inputs on both sides.

Rows (ratio = mlops / anchor; a row that misses its target carries a profile of the
mlops side, pyinstrument's top frames, in its note):

* EV1, EV2: ``mlops.drift_report(reference, current)`` vs Evidently's ``DataDriftPreset``
  report (``Report([DataDriftPreset()]).run(...)``, then ``.dict()``) on the same
  Parquet frames: 1,000,000 x 20 (12 numeric, 8 categorical, 5% missing) and
  300,000 x 100 (80 numeric, 20 categorical, 5% missing); time <= 0.2x. EV1m, EV2m:
  the peak RSS of the process during the report, <= 0.5x.
* EV3: agreement on EV1's frames, where 5 of the 20 features moved (3 numeric by
  half a standard deviation, 2 categorical re-weighted): both must flag exactly those 5.
* MF1, MF2: save + register + set alias + load of the same fitted scikit-learn
  ``Pipeline`` (~10 MB and ~500 MB pickled): ``ModelRegistry.save``, ``set_alias``,
  ``load`` (sha256 verified) on a local store vs ``mlflow.sklearn.log_model(...,
  registered_model_name=..., serialization_format="cloudpickle")`` (a pickle, as
  mlops writes; MLflow 3's default, skops, needs another package and a list of trusted
  types to load), ``set_registered_model_alias`` and
  ``mlflow.sklearn.load_model("models:/<name>@<alias>")`` on a SQLite tracking store with
  local artifacts (no server); <= 0.3x. Both stores are deleted after each round.
* MF3: listing 1,000 model versions with their metadata: ``ModelRegistry.list_records()``
  vs ``MlflowClient.search_model_versions("name='...'")`` on the same SQLite store;
  <= 0.3x.

Results go to ``benchmarks/results/anchors.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.run import RESULTS_DIR, Row, machine, to_markdown
from benchmarks.run import Sizes as RunSizes

ROOT = Path(__file__).resolve().parent.parent

#: What each anchor's venv gets. Evidently 0.7 needs pandas < 3 (it imports
#: ``pandas.core.dtypes.common.infer_dtype_from_object``); MLflow loads the Pipeline this
#: project pickles, so it gets the same scikit-learn; sqlalchemy and alembic are its
#: SQLite tracking store (mlflow-skinny leaves them out).
ANCHOR_REQUIREMENTS: dict[str, list[str]] = {
    "evidently": ["evidently>=0.7", "pandas<3", "pyarrow"],
    "mlflow": ["mlflow-skinny>=3", "sqlalchemy", "alembic", "pandas", "pyarrow",
               "scikit-learn=={sklearn}"],
}


@dataclass
class Sizes:
    """Sizes of one run."""

    ev1_rows: int = 1_000_000
    ev2_rows: int = 300_000
    mf_small_mb: float = 10.0
    mf_large_mb: float = 500.0
    mf_versions: int = 1_000
    rounds: int = 2
    quick: bool = False


QUICK = Sizes(ev1_rows=5_000, ev2_rows=3_000, mf_small_mb=0.5, mf_large_mb=2.0,
              mf_versions=20, rounds=1, quick=True)


# --- the anchors' environments -----------------------------------------------------------
def venv_root() -> Path:
    """Where the anchors' virtual environments live (outside the repository)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops-bench"
    return Path(os.environ.get("MLOPS_BENCH_VENVS", default))


def requirements(name: str) -> list[str]:
    """The pip requirements of an anchor's venv."""
    import sklearn

    return [r.format(sklearn=sklearn.__version__) for r in ANCHOR_REQUIREMENTS[name]]


def anchor_python(name: str, build: bool = True) -> Path | str:
    """The Python of the anchor's venv (built with pip when missing or out of date),
    or why there is none."""
    reqs = requirements(name)
    root = venv_root() / name
    python = root / "bin" / "python"
    stamp = root / ".mlops-requirements"
    want = "\n".join(reqs)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    if not build:
        return f"the {name} venv is not built (make bench builds it in {root})"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True,
                           capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *reqs], check=True,
                       capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        return f"could not build the {name} venv: {str(detail).strip().splitlines()[-1:]}"
    stamp.write_text(want)
    return python


# --- child processes ----------------------------------------------------------------------
_PRELUDE = """
import gc, json, sys, time

def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0

def reset_peak():
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return vm("VmRSS")

def done(seconds, before, **extra):
    print(json.dumps({"seconds": seconds, "peak": vm("VmHWM"), "before": before, **extra}))

args = json.loads(sys.argv[1])
"""

_PROFILE = """
def timed(fn):
    if args.get("profile"):
        from pyinstrument import Profiler
        p = Profiler(interval=0.005)
        p.start()
        out = fn()
        p.stop()
        text = p.output_text(unicode=False, color=False, show_all=False)
        return 0.0, out, text
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out, ""
"""

_MLOPS_DRIFT = _PRELUDE + _PROFILE + """
import pandas as pd
import mlops
ref = pd.read_parquet(args["reference"])
cur = pd.read_parquet(args["current"])
mlops.drift_report(ref.iloc[:2000], cur.iloc[:2000])  # warm-up: lazy imports
before = reset_peak()
seconds, report, profile = timed(lambda: mlops.drift_report(ref, cur))
done(seconds, before, drifted=report.drifted_features, profile=profile)
"""

_EVIDENTLY_DRIFT = _PRELUDE + """
import warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(args["reference"])
cur = pd.read_parquet(args["current"])
Report([DataDriftPreset()]).run(current_data=cur.iloc[:2000], reference_data=ref.iloc[:2000])
before = reset_peak()
t0 = time.perf_counter()
result = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
seconds = time.perf_counter() - t0
drifted = []
for m in result["metrics"]:
    cfg = m.get("config", {})
    if "ValueDrift" not in cfg.get("type", ""):
        continue
    value, threshold = float(m["value"]), float(cfg["threshold"])
    # p-value tests drift below the threshold, distances at or above it.
    if ("p_value" in cfg["method"] and value < threshold) or \\
            ("p_value" not in cfg["method"] and value >= threshold):
        drifted.append(cfg["column"])
methods = sorted({m["config"]["method"] for m in result["metrics"]
                  if "ValueDrift" in m.get("config", {}).get("type", "")})
done(seconds, before, drifted=drifted, methods=methods)
"""

_MLOPS_MODEL = _PRELUDE + _PROFILE + """
import joblib, shutil
from mlops.store.registry import ModelRegistry
model = joblib.load(args["model"])
store = args["store"]
def work():
    registry = ModelRegistry(store)
    registry.save(model, "v1", {"accuracy": 0.9})
    registry.set_alias("v1", "champion")
    loaded, _ = registry.load(registry.get_alias("champion"))
    return loaded
before = reset_peak()
seconds, loaded, profile = timed(work)
assert type(loaded).__name__ == "Pipeline"
shutil.rmtree(store, ignore_errors=True)
done(seconds, before, profile=profile)
"""

_MLFLOW_MODEL = _PRELUDE + """
import logging, os, shutil, warnings
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
import joblib, mlflow, mlflow.sklearn
from mlflow import MlflowClient
model = joblib.load(args["model"])
store = args["store"]
os.makedirs(store, exist_ok=True)
mlflow.set_tracking_uri("sqlite:///" + os.path.join(store, "mlflow.db"))
# Creates the schema (not part of the work); artifacts beside the database, not in ./mlruns.
mlflow.set_experiment(experiment_id=mlflow.create_experiment(
    "bench", artifact_location="file://" + os.path.join(store, "artifacts")))
def work():
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="bench",
                                        serialization_format="cloudpickle")
    MlflowClient().set_registered_model_alias("bench", "champion",
                                              info.registered_model_version)
    return mlflow.sklearn.load_model("models:/bench@champion")
before = reset_peak()
t0 = time.perf_counter()
loaded = work()
seconds = time.perf_counter() - t0
assert type(loaded).__name__ == "Pipeline"
shutil.rmtree(store, ignore_errors=True)
done(seconds, before)
"""

_MLOPS_LIST = _PRELUDE + _PROFILE + """
from mlops.store.registry import ModelRegistry
ModelRegistry(args["store"]).list_records(limit=1)
before = reset_peak()
seconds, records, profile = timed(lambda: ModelRegistry(args["store"]).list_records())
done(seconds, before, count=len(records), profile=profile)
"""

_MLFLOW_SEED = _PRELUDE + """
import logging, warnings
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
import mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri(args["uri"])
client = MlflowClient()
client.create_registered_model("bench")
for i in range(args["versions"]):
    client.create_model_version("bench", f"file:///models/{i}", tags={"accuracy": "0.9"})
done(0.0, 0)
"""

_MLFLOW_LIST = _PRELUDE + """
import logging, warnings
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
import mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri(args["uri"])
client = MlflowClient()
client.search_model_versions("name='bench'", max_results=1)
before = reset_peak()
t0 = time.perf_counter()
versions = client.search_model_versions("name='bench'", max_results=100_000)
seconds = time.perf_counter() - t0
done(seconds, before, count=len(versions))
"""


def child(python: Path | str, code: str, timeout: float = 3600, **args: Any) -> dict[str, Any]:
    """Run ``code`` in a fresh process of ``python``; its JSON result (last stdout line)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    # In a temp folder: nothing a tool writes by default (MLflow's ./mlruns) lands here.
    with tempfile.TemporaryDirectory(prefix="mlops-anchor-cwd-") as cwd:
        proc = subprocess.run([str(python), "-c", code, json.dumps(args)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              check=False, cwd=cwd)
    if proc.returncode:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"child {python} failed ({proc.returncode}): {tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def side_by_side(rounds: int, ours: dict[str, Any], theirs: dict[str, Any]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alternate (ABBA) ``rounds`` children of each side: ``{"python", "code", **args}``."""
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    for r in range(rounds):
        order = ((ours, a), (theirs, b)) if r % 2 == 0 else ((theirs, b), (ours, a))
        for spec, into in order:
            into.append(child(**spec))
    return a, b


def _med(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def _profile_note(spec: dict[str, Any], lines: int = 14) -> str:
    """The mlops side's profile (pyinstrument, top frames) for a row that missed."""
    try:
        text = child(**{**spec, "profile": True}).get("profile", "")
    except RuntimeError as err:
        return f"profile failed: {err}"
    body = text.splitlines()
    start = next((i for i, ln in enumerate(body) if "timed" in ln), 0)
    kept = []
    for ln in body[start + 1:]:
        words = ln.replace("|-", " ").replace("`-", " ").replace("|", " ").split()
        if words and "frames hidden" not in ln:
            kept.append(" ".join(words))
    return "profile of mlops (pyinstrument, seconds per frame): " + " / ".join(kept[:lines])


def _verdict(id_: str, measurement: str, a: float, b: float, limit: float, note: str,
             spec: dict[str, Any] | None, **extra: Any) -> Row:
    ratio = a / b
    met = ratio <= limit
    if not met and spec is not None:
        note = f"{note}; NOT MET: {_profile_note(spec)}"
    return Row(id_, measurement, a, b, ratio, f"<= {limit}", met, note, extra)


def _skipped(ids: list[str], what: str, why: str, targets: list[str]) -> list[Row]:
    return [Row(i, what, None, None, None, t, None, f"skipped: {why}")
            for i, t in zip(ids, targets, strict=True)]


# --- Evidently ----------------------------------------------------------------------------
#: EV1's shift: these features move in ``current`` (5 of 20).
EV_SHIFTED = ("num_0", "num_1", "num_2", "cat_0", "cat_1")


def drift_frames(rows: int, numeric: int, categorical: int, seed: int,
                 shifted: tuple[str, ...] = (), missing: float = 0.05) -> pd.DataFrame:
    """``numeric`` normal features (differing means and spreads) and ``categorical``
    string features (3 to 50 categories, skewed shares), ``missing`` of each missing;
    the features in ``shifted`` move: numeric ones by half a standard deviation,
    categorical ones get their shares reversed."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(numeric):
        name, scale = f"num_{i}", 1.0 + i % 4
        cols[name] = rng.normal(i + (0.5 * scale if name in shifted else 0.0), scale, rows)
    for i in range(categorical):
        name, n = f"cat_{i}", (3, 5, 10, 20, 50)[i % 5]
        p = np.arange(1, n + 1, dtype=np.float64)[::-1]
        p = (p if name not in shifted else p[::-1]) / p.sum()
        values = np.array([f"c{k}" for k in range(n)], dtype=object)[rng.choice(n, rows, p=p)]
        cols[name] = values
    frame = pd.DataFrame(cols)
    for name in frame.columns:
        holes = rng.random(rows) < missing
        frame[name] = frame[name].where(~holes, None if name.startswith("cat") else np.nan)
    return frame


def evidently_rows(work: Path, sizes: Sizes, python: Path | str,
                   cases_wanted: tuple[str, ...] = ("EV1", "EV2")) -> list[Row]:
    """EV1-EV3 (see the module doc); ``cases_wanted``: EV1 (with EV3) and/or EV2."""
    targets = ["<= 0.2", "<= 0.5"]
    cases = [(i, n, num, cat) for i, n, num, cat in
             (("EV1", sizes.ev1_rows, 12, 8), ("EV2", sizes.ev2_rows, 80, 20))
             if i in cases_wanted]
    if isinstance(python, str):
        rows = []
        for id_, n, num, cat in cases:
            rows += _skipped([id_, f"{id_}m"], f"drift report {n:,} x {num + cat} vs "
                             "Evidently DataDriftPreset", python, targets)
        if "EV1" in cases_wanted:
            rows += _skipped(["EV3"], "agreement with Evidently", python, ["same features"])
        return rows
    from importlib.metadata import version

    out: list[Row] = []
    ev_version = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                                 "print(m.version('evidently'))"], capture_output=True,
                                text=True, check=False).stdout.strip()
    for id_, n, num, cat in cases:
        ref, cur = work / f"{id_}-reference.parquet", work / f"{id_}-current.parquet"
        drift_frames(n, num, cat, 1).to_parquet(ref)
        drift_frames(n, num, cat, 2, EV_SHIFTED if id_ == "EV1" else ()).to_parquet(cur)
        ours = {"python": sys.executable, "code": _MLOPS_DRIFT, "reference": str(ref),
                "current": str(cur)}
        theirs = {"python": python, "code": _EVIDENTLY_DRIFT, "reference": str(ref),
                  "current": str(cur)}
        a, b = side_by_side(sizes.rounds, ours, theirs)
        what = (f"drift_report {n:,} x {num + cat} ({num} numeric, {cat} categorical, 5% "
                f"missing) vs Evidently {ev_version} DataDriftPreset")
        ta, tb = _med(a, "seconds"), _med(b, "seconds")
        pa, pb = _med(a, "peak"), _med(b, "peak")
        added = (_med(a, "peak") - _med(a, "before"), _med(b, "peak") - _med(b, "before"))
        out.append(_verdict(id_, what + ": seconds", ta, tb, 0.2,
                            f"each side in its own process (mlops: pandas "
                            f"{version('pandas')}; Evidently: its venv), report of every "
                            f"feature; Evidently methods {', '.join(b[0].get('methods', []))}",
                            ours, rounds=sizes.rounds))
        out.append(_verdict(f"{id_}m", what + ": peak RSS (MB)", pa / 1e6, pb / 1e6, 0.5,
                            f"peak RSS of the process during the report, frames included; "
                            f"added by the report alone: mlops {added[0] / 1e6:.0f} MB, "
                            f"Evidently {added[1] / 1e6:.0f} MB", None))
        if id_ == "EV1":
            ours_set, theirs_set = set(a[0]["drifted"]), set(b[0]["drifted"])
            agree = ours_set == theirs_set == set(EV_SHIFTED)
            out.append(Row("EV3", f"agreement on EV1's frames, {len(EV_SHIFTED)} of "
                           f"{num + cat} features moved", None, None, None,
                           "both flag exactly the moved features", agree,
                           f"moved: {sorted(EV_SHIFTED)}; mlops flags {sorted(ours_set)}; "
                           f"Evidently flags {sorted(theirs_set)}"))
        ref.unlink()
        cur.unlink()
    return out


# --- MLflow -------------------------------------------------------------------------------
def fitted_pipeline(mb: float, path: Path) -> float:
    """A fitted scikit-learn Pipeline (scaling + extra trees) of about ``mb`` MB pickled,
    written to ``path`` with joblib; its size in MB."""
    import joblib
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    # A fully grown tree on noise has ~2 nodes per row; a node pickles to ~44 bytes
    # (the node record and the two-class value array; measured).
    trees = max(1, min(20, int(mb)))
    rows = max(200, int(mb * 1e6 / trees / 2 / 44))
    x = rng.normal(size=(rows, 10))
    y = rng.integers(0, 2, rows)
    model = Pipeline([("scale", StandardScaler()),
                      ("model", ExtraTreesClassifier(n_estimators=trees, random_state=0,
                                                     n_jobs=2))])
    model.fit(x, y)
    joblib.dump(model, path)
    return path.stat().st_size / 1e6


def mlflow_rows(work: Path, sizes: Sizes, python: Path | str) -> list[Row]:
    """MF1-MF3 (see the module doc)."""
    if isinstance(python, str):
        return (_skipped(["MF1", "MF2"], "save + register + alias + load vs MLflow", python,
                         ["<= 0.3", "<= 0.3"])
                + _skipped(["MF3"], "listing versions vs MLflow", python, ["<= 0.3"]))
    mf_version = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                                 "print(m.version('mlflow-skinny'))"], capture_output=True,
                                text=True, check=False).stdout.strip()
    out: list[Row] = []
    for id_, mb, rounds in (("MF1", sizes.mf_small_mb, max(sizes.rounds, 3)),
                            ("MF2", sizes.mf_large_mb, sizes.rounds)):
        model = work / f"{id_}.joblib"
        size = fitted_pipeline(mb, model)
        ours = {"python": sys.executable, "code": _MLOPS_MODEL, "model": str(model),
                "store": str(work / f"{id_}-mlops")}
        theirs = {"python": python, "code": _MLFLOW_MODEL, "model": str(model),
                  "store": str(work / f"{id_}-mlflow")}
        a, b = side_by_side(rounds, ours, theirs)
        out.append(_verdict(id_, f"save + register + set alias + load, Pipeline of "
                            f"{size:.0f} MB, vs MLflow {mf_version} (SQLite store, local "
                            "artifacts)", _med(a, "seconds"), _med(b, "seconds"), 0.3,
                            "each side in its own process, the model loaded before timing; "
                            "mlops: ModelRegistry save/set_alias/load (sha256 verified); "
                            "MLflow: log_model(registered_model_name, cloudpickle) + "
                            "set_registered_model_alias + load_model('models:/m@alias')",
                            ours, rounds=rounds, model_mb=size,
                            peak_mb=[_med(a, "peak") / 1e6, _med(b, "peak") / 1e6]))
        model.unlink()
    # MF3: the same number of model versions in each store.
    from benchmarks import bench_cli

    store, db = work / "MF3-mlops", work / "MF3-mlflow"
    bench_cli.seed_store(store, sizes.mf_versions)
    db.mkdir()
    uri = "sqlite:///" + str(db / "mlflow.db")
    child(python, _MLFLOW_SEED, uri=uri, versions=sizes.mf_versions)
    ours = {"python": sys.executable, "code": _MLOPS_LIST, "store": str(store / "models")}
    theirs = {"python": python, "code": _MLFLOW_LIST, "uri": uri}
    a, b = side_by_side(max(sizes.rounds, 3), ours, theirs)
    assert a[0]["count"] == b[0]["count"] == sizes.mf_versions, (a[0], b[0])
    out.append(_verdict("MF3", f"list {sizes.mf_versions:,} model versions with metadata vs "
                        f"MLflow {mf_version} search_model_versions (SQLite)",
                        _med(a, "seconds"), _med(b, "seconds"), 0.3,
                        "in-process call times after a warm-up call; mlops: "
                        "ModelRegistry.list_records() on a local store", ours))
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(db, ignore_errors=True)
    return out


# --- entry point --------------------------------------------------------------------------
GROUPS = ("EV", "MF")


def run(sizes: Sizes, out: Path, only: tuple[str, ...] = GROUPS,
        workdir: Path | None = None, build: bool = True) -> list[Row]:
    """Measure the groups, write ``anchors.{md,json}`` into ``out``, return the rows."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mlops-anchors-", dir=workdir) as tmp:
        work = Path(tmp)
        cases = tuple(c for c in ("EV1", "EV2") if c in only or "EV" in only)
        if cases:
            rows += evidently_rows(work, sizes, anchor_python("evidently", build), cases)
        if "MF" in only:
            rows += mlflow_rows(work, sizes, anchor_python("mlflow", build))
    for r in rows:
        met = "—" if r.met is None else ("met" if r.met else "NOT MET")
        ratio = "—" if r.ratio is None else f"{r.ratio:.3f}x"
        print(f"{r.id:>6}  ratio {ratio}  target {r.target}  {met}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    info = machine()
    info["load_average"] = os.getloadavg()
    doc = {"machine": info, "sizes": asdict(sizes), "elapsed_s": elapsed,
           "rows": [asdict(r) for r in rows]}
    run_sizes = RunSizes(rounds=sizes.rounds, cheap_rounds=sizes.rounds, quick=sizes.quick)
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    md = to_markdown(rows, info, run_sizes, elapsed,
                     f" Load average at the end (1, 5, 15 min): {load}; ratios are mlops / "
                     "anchor (EV1m/EV2m: peak RSS in MB).")
    (out / "anchors.md").write_text(md)
    (out / "anchors.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per side")
    parser.add_argument("--only", help="comma-separated groups: " + ",".join(GROUPS)
                        + " (or EV1, EV2: one Evidently size; EV3 comes with EV1)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--workdir", type=Path, help="where the data is written")
    parser.add_argument("--no-build", action="store_true",
                        help="skip the anchors whose venv is not built yet")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = args.rounds
    only = tuple(s.strip().upper() for s in args.only.split(",")) if args.only else GROUPS
    out = args.out or RESULTS_DIR
    run(sizes, out, only, args.workdir, not args.no_build)
    print((out / "anchors.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
