"""Run every benchmark side by side and write the results table.

Usage::

    python -m benchmarks.run            # full sizes (make bench), ~5-10 minutes on 2 cores
    python -m benchmarks.run --quick    # tiny sizes, one round: a smoke check of the harness

Every row times the library (A) against a bare baseline (B) in the same process,
alternating A/B (ABBA order) for several rounds, and reports the ratio of the
medians. Results go to ``benchmarks/results/latest.{md,json}`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from mlops.config import Config
from mlops.data import feature_kinds, generate_synthetic_data, split_xy
from mlops.pipeline import IngestResult, monitor_check
from mlops.runner import run_pipeline
from mlops.store.hashing import content_hash
from mlops.store.versioner import DataVersioner
from mlops.store.workspace import Workspace
from mlops.training import build_model, evaluate, split, train_model

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Sizes:
    """Data sizes and rounds of one run."""

    b1_rows: int = 5_000_000
    b1_features: int = 12
    b6_rows: int = 1_000_000
    b6_features: int = 20
    b7_rows: int = 10_000_000
    b7_features: int = 10
    b9_rows: tuple[int, ...] = (500_000, 2_000_000, 5_000_000)
    b11_rows: int = 1_000_000
    b13_rows: int = 1_000_000
    b15_rows: int = 1_000_000
    #: B16's no-retrain night (the Dask engine's fixed cost).
    b16_rows: int = 10_000
    #: Data and model versions in B10's store.
    b10_versions: int = 1_000
    rounds: int = 4
    #: Rounds of the measurements that take under ~2 s a call (B2, B3, B4, B7, N0).
    cheap_rounds: int = 8
    quick: bool = False


QUICK = Sizes(b1_rows=20_000, b6_rows=5_000, b7_rows=20_000, b9_rows=(5_000, 10_000, 20_000),
              b10_versions=20, b11_rows=5_000, b13_rows=5_000, b15_rows=5_000, b16_rows=2_000,
              rounds=1,
              cheap_rounds=1, quick=True)


@dataclass
class Row:
    """One measurement: A (the library) against B (the baseline)."""

    id: str
    measurement: str
    a_seconds: float | None
    b_seconds: float | None
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


#: Minimum times of the last :func:`alternate` call (A, B): the best-of ratio, reported
#: next to the ratio of medians as a cross-check that is robust to a loaded machine.
_LAST_MINIMA: list[float] = [0.0, 0.0]


def _check(ratio: float | None, op: str, limit: float) -> bool | None:
    if ratio is None:
        return None
    return ratio <= limit if op == "<=" else ratio >= limit


def alternate(a: Callable[[], Any], b: Callable[[], Any], rounds: int,
              before_a: Callable[[], Any] | None = None,
              before_b: Callable[[], Any] | None = None,
              warmup: bool = True) -> tuple[float, float]:
    """Time ``a`` and ``b`` alternately (ABBA...), ``rounds`` times each; the two medians.

    ``before_a``/``before_b`` run untimed before each call (fresh folders, cleanup);
    with ``warmup`` each side first runs once untimed.
    """
    times: dict[str, list[float]] = {"a": [], "b": []}
    if warmup:  # untimed: first calls pay for imports, allocator growth, cold caches
        for fn, prep in ((a, before_a), (b, before_b)):
            if prep is not None:
                prep()
            fn()
    for r in range(rounds):
        order = (("a", a, before_a), ("b", b, before_b))
        if r % 2:
            order = order[::-1]
        for name, fn, prep in order:
            if prep is not None:
                prep()
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    _LAST_MINIMA[:] = [min(times["a"]), min(times["b"])]
    return statistics.median(times["a"]), statistics.median(times["b"])


def _row(id_: str, measurement: str, a: float, b: float, op: str, limit: float,
         note: str = "", invert: bool = False, **extra: Any) -> Row:
    ratio = (b / a) if invert else (a / b)
    min_a, min_b = _LAST_MINIMA
    if min_a > 0 and min_b > 0:
        extra.setdefault("ratio_of_minima", (min_b / min_a) if invert else (min_a / min_b))
    return Row(id_, measurement, a, b, ratio, f"{op} {limit}", _check(ratio, op, limit),
               note, extra)


def _fresh(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


# --- B1, B2, B3, B9: register / dedup / load against plain Parquet -------------------------
def bench_register(df: pd.DataFrame, work: Path, rounds: int) -> tuple[float, float]:
    """Median seconds of ``register(df)`` into an empty store and of ``df.to_parquet``."""
    store, plain = work / "reg-store", work / "reg-plain"

    def prep_a() -> None:
        _fresh(store)

    def prep_b() -> None:
        _fresh(plain)

    return alternate(lambda: DataVersioner(store).register(df),
                     lambda: df.to_parquet(plain / "data.parquet", engine="pyarrow"),
                     rounds, prep_a, prep_b)


#: B1's target (issue 24): register at most this many times ``df.to_parquet``.
B1_TARGET = 0.5


def register_profile(df: pd.DataFrame, work: Path, rounds: int) -> dict[str, float]:
    """Median seconds of each part of ``register(df)``, timed alone on the same frame.

    ``hash``: the content hash (all cores); ``stats``: the column statistics (on the other
    core during the write); ``encode_write``: the Parquet encode + write with register's
    options, no fsync; ``object_write``: the store's write of it (temp file, CRC32C of
    the bytes, fsync, rename); ``cat``: ``cat`` of the same object's bytes to a new file,
    the floor of any write of them. ``<part>_cpu``: its process CPU seconds (all threads).
    """
    from mlops.data import column_stats
    from mlops.store.filesystem import open_store
    from mlops.store.versioner import _dictionary_columns

    folder = work / "b1-parts"
    _fresh(folder)
    store = open_store(str(folder))
    dictionary = _dictionary_columns(df)
    parts: dict[str, Callable[[], Any]] = {
        "hash": lambda: content_hash(df),
        "stats": lambda: column_stats(df),
        "encode_write": lambda: df.to_parquet(folder / "enc.parquet", engine="pyarrow",
                                              use_dictionary=dictionary),
        "object_write": lambda: store.write_hashed(
            "obj.parquet", lambda f: df.to_parquet(f, engine="pyarrow",
                                                   use_dictionary=dictionary), "crc32c"),
    }
    out = {}
    for name, fn in parts.items():
        times, cpu = [], []
        for _ in range(max(1, rounds)):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[name] = statistics.median(times)
        out[f"{name}_cpu"] = statistics.median(cpu)  # every thread: robust to other load
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _cat(src: Path, dst: Path) -> None:
    with open(dst, "wb") as out:
        subprocess.run(["cat", str(src)], stdout=out, check=True)


def b1_b2_b3(df: pd.DataFrame, work: Path, sizes: Sizes) -> list[Row]:
    """B1 register, B1f the ``cat`` floor, B2 dedup re-register, B3 load, each against
    plain Parquet."""
    rows = []
    a, b = bench_register(df, work, sizes.rounds)
    minima = list(_LAST_MINIMA)
    mb = df.memory_usage(index=False).sum() / 1e6
    parts = register_profile(df, work, sizes.rounds)
    # The floor: the same bytes register writes, copied by cat, against to_parquet.
    floor_dir = work / "b1-floor"
    _fresh(floor_dir)
    vid = DataVersioner(floor_dir / "store").register(df)
    obj = floor_dir / "store" / DataVersioner(floor_dir / "store").get_metadata(vid)["object"]
    fa, fb = alternate(lambda: _cat(obj, floor_dir / "copy.parquet"),
                       lambda: df.to_parquet(floor_dir / "plain.parquet", engine="pyarrow"),
                       sizes.rounds)
    floor_minima = list(_LAST_MINIMA)
    _LAST_MINIMA[:] = minima
    overlap = parts["hash"] + max(parts["object_write"], parts["stats"])
    p = {k: f"{v:.2f} s ({parts[k + '_cpu']:.2f} CPU)" for k, v in parts.items()
         if not k.endswith("_cpu")}
    profile = (f"profile (each part alone, median wall (CPU) s): hash {p['hash']}, Parquet "
               f"encode+write {p['encode_write']}, store write of it (+ CRC32C, fsync, "
               f"rename) {p['object_write']}, column stats {p['stats']} (on the other "
               f"core during the write); hash + "
               f"max(write, stats) = {overlap:.2f}, the rest (manifest, index, threads) "
               f"{max(0.0, a - overlap):.2f}; cat of the same {obj.stat().st_size / 1e6:.0f} "
               f"MB (the floor, B1f) {fa:.2f} = {fa / fb:.2f}x to_parquet")
    rows.append(_row("B1", f"register(df) {len(df):,} x {df.shape[1]} ({mb:.0f} MB) vs "
                     "df.to_parquet", a, b, "<=", B1_TARGET,
                     "register = content hash, then Parquet write (fsync'd, atomic rename; "
                     "floats without dictionary encoding) with column stats on the other "
                     "core, then manifest; to_parquet does no fsync. " + profile,
                     profile={k: round(v, 4) for k, v in parts.items()}, cat_seconds=fa))
    _LAST_MINIMA[:] = floor_minima
    rows.append(_info_row("B1f", "floor: cat of register's object bytes to a new file vs "
                          "df.to_parquet", fa, fb, "no encoding, no hashing, no fsync: what "
                          "any writer of these bytes pays on this disk"))
    shutil.rmtree(floor_dir, ignore_errors=True)
    store = work / "dedup-store"
    _fresh(store)
    versioner = DataVersioner(store)
    vid = versioner.register(df)
    plain = work / "dedup-plain"
    a, b = alternate(lambda: DataVersioner(store).register(df),
                     lambda: df.to_parquet(plain / "data.parquet", engine="pyarrow"),
                     sizes.cheap_rounds, None, lambda: _fresh(plain))
    rows.append(_row("B2", "re-register identical df (dedup) vs df.to_parquet", a, b, "<=", 0.2,
                     "dedup costs one content hash and one manifest read"))
    obj = store / versioner.get_metadata(vid)["object"]
    a, b = alternate(lambda: versioner.load(vid, verify=False),
                     lambda: pd.read_parquet(obj, engine="pyarrow"), sizes.cheap_rounds)
    rows.append(_row("B3", "load(version, verify=False) vs pd.read_parquet", a, b, "<=", 1.1,
                     "an explicit unverified load reads the manifest, then the object "
                     "through pyarrow's own local filesystem (B12: the verified default)"))
    # Noise control: the same call on both sides. Its distance from 1.0 is this run's
    # measurement noise (the machine may be shared); read the other ratios with it.
    read = lambda: pd.read_parquet(obj, engine="pyarrow")  # noqa: E731
    a, b = alternate(read, read, sizes.cheap_rounds)
    rows.append(Row("N0", "noise control: pd.read_parquet vs itself", a, b, a / b,
                    "~ 1.0", None, "identical calls; |ratio - 1| is the run's noise level",
                    {"ratio_of_minima": _LAST_MINIMA[0] / _LAST_MINIMA[1]}))
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(plain, ignore_errors=True)
    return rows


def b9(work: Path, sizes: Sizes, b1_df: pd.DataFrame) -> list[Row]:
    """B9: register vs to_parquet at growing sizes; per-row cost must not grow."""
    rows = []
    per_row: list[float] = []
    for n in sizes.b9_rows:
        df = b1_df if n == len(b1_df) else generate_synthetic_data(n, sizes.b1_features, 1)
        a, b = bench_register(df, work, sizes.rounds)
        per_row.append(a / n)
        rows.append(_row(f"B9-{n:,}", f"register vs to_parquet at {n:,} rows", a, b, "<=", 1.2,
                         f"{a / n * 1e9:.0f} ns/row"))
    growth = per_row[-1] / per_row[0]
    ns = sizes.b9_rows
    rows.append(Row("B9", f"linearity: register ns/row at {ns[-1]:,} / at {ns[0]:,} rows",
                    None, None, growth, "<= 1.2", growth <= 1.2,
                    "1.0 = perfectly linear; < 1 means fixed costs amortize"))
    return rows


# --- B4: hash throughput ---------------------------------------------------------------------
def b4(df: pd.DataFrame, sizes: Sizes) -> list[Row]:
    """Content hash vs hashlib.sha256 over the same column bytes (throughput ratio)."""
    raw = b"".join(np.ascontiguousarray(df[c].to_numpy()).tobytes() for c in df.columns)
    raw_view = memoryview(raw)
    rounds = sizes.cheap_rounds
    a, b = alternate(lambda: content_hash(df, workers=1),
                     lambda: hashlib.sha256(raw_view).digest(), rounds)
    rows = [_row("B4", "content_hash throughput, 1 thread, vs hashlib.sha256 (same bytes)",
                 a, b, ">=", 0.9, f"{len(raw) / a / 1e6:.0f} MB/s", invert=True)]
    workers = min(8, os.cpu_count() or 1)
    a, b = alternate(lambda: content_hash(df), lambda: hashlib.sha256(raw_view).digest(), rounds)
    rows.append(_row("B4p", f"content_hash throughput, {workers} threads (default), vs sha256",
                     a, b, ">=", 0.9, f"{len(raw) / a / 1e6:.0f} MB/s; column-parallel",
                     invert=True))
    return rows


# --- B5: peak memory -------------------------------------------------------------------------
_B5_CHILD = """
import gc, resource
from mlops.data import generate_synthetic_data
from mlops.store.versioner import DataVersioner

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

df = generate_synthetic_data({rows}, {features}, 1)
gc.collect()
try:  # forget the generator's temporaries: the peak from here on is what counts
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
if {register}:
    DataVersioner({store!r}).register(df)
print(status("VmHWM"), int(df.memory_usage(index=False).sum()))
"""


def _child_peak(rows: int, features: int, register: bool, store: Path) -> tuple[int, int]:
    code = _B5_CHILD.format(rows=rows, features=features, register=register, store=str(store))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env).stdout.split()
    return int(out[0]), int(out[1])


def b5(work: Path, sizes: Sizes) -> list[Row]:
    """Peak RSS added by register, in units of the DataFrame's size (child processes).

    Both children build the DataFrame, then reset the kernel's peak-RSS mark
    (``/proc/self/clear_refs``) so the generator's temporaries do not hide what
    register adds; one then registers. Peak = VmHWM at the end.
    """
    store = work / "b5-store"
    peaks: dict[bool, list[int]] = {True: [], False: []}
    nbytes = 0
    for r in range(max(1, sizes.rounds - 1)):
        for reg in ((False, True) if r % 2 == 0 else (True, False)):
            _fresh(store)
            peak, nbytes = _child_peak(sizes.b1_rows, sizes.b1_features, reg, store)
            peaks[reg].append(peak)
    with_reg, build = statistics.median(peaks[True]), statistics.median(peaks[False])
    added = (with_reg - build) / nbytes
    shutil.rmtree(store, ignore_errors=True)
    return [Row("B5", f"peak RSS added by register / df size ({nbytes / 1e6:.0f} MB df)",
                None, None, added, "<= 1.5", added <= 1.5,
                f"peak {build / 1e6:.0f} MB build-only, {with_reg / 1e6:.0f} MB with register "
                "(peaks taken after the build; generator temporaries excluded)")]


# --- B6: the whole pipeline vs a bare script -------------------------------------------------
def _bare_script(rows: int, features: int, out: Path) -> None:
    """What `mlops run` does, with nothing around it: generate, split, fit, score, write."""
    config = Config()
    df = generate_synthetic_data(rows, features, config.data.random_state)
    x, y = split_xy(df, "target")
    x_train, x_test, y_train, y_test = split(x, y, config.data.test_size,
                                             config.training.random_state)
    model = build_model(config.training).fit(x_train, y_train)
    float((model.predict(x_test) == y_test.to_numpy()).mean())
    df.to_parquet(out / "data.parquet", engine="pyarrow")
    joblib.dump(model, out / "model.joblib")


def b6(work: Path, sizes: Sizes) -> list[Row]:
    """`mlops run` (run_pipeline, fresh store: ingest, monitor-check, train) vs a bare script."""
    store, bare = work / "b6-store", work / "b6-bare"
    config = Config.from_dict({"storage": {"uri": str(store)},
                               "data": {"n_samples": sizes.b6_rows,
                                        "n_features": sizes.b6_features}})
    a, b = alternate(lambda: run_pipeline(config),
                     lambda: _bare_script(sizes.b6_rows, sizes.b6_features, bare),
                     sizes.rounds, lambda: _fresh(store), lambda: _fresh(bare))
    profile, parts = _run_profile(config, store)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(bare, ignore_errors=True)
    return [_row("B6", f"mlops run, {sizes.b6_rows:,} x {sizes.b6_features}, logistic, vs bare "
                 "script", a, b, "<=", B6_TARGET,
                 "fresh store each round, so every run trains; the bare script generates, "
                 "splits, fits, scores, writes Parquet + joblib; " + profile, profile=parts)]


#: B6's and B11's targets (issue 24): mlops run at most this many times the bare script.
B6_TARGET = 1.1
B11_TARGET = 1.2


def _run_profile(config: Config, store: Path) -> tuple[str, dict[str, float]]:
    """One more ``mlops run`` (fresh store) under cProfile: the mlops functions that take
    the most time, besides the model fit the bare script does too."""
    minima = list(_LAST_MINIMA)
    _fresh(store)
    out = _profile_summary(lambda: run_pipeline(config), top=8, title="one mlops run",
                           dirs=("/mlops/",),
                           skip=("train", "fit", "train_model", "ingest", "run_step"))
    _LAST_MINIMA[:] = minima
    return out


# --- B11: mlops run on a mixed frame vs a bare script fitting the same Pipeline ---------------
def mixed_frame(rows: int, seed: int = 0, missing: float = 0.05) -> pd.DataFrame:
    """8 numeric and 4 categorical features (5, 10, 20 and 50 categories), ``missing`` of
    every feature missing, and a binary target that depends on both kinds."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"num_{i}": rng.normal(i, 1.0 + i % 3, rows) for i in range(8)})
    logit = (frame.to_numpy() - np.arange(8)) @ rng.normal(size=8) / 3
    for i, n in enumerate((5, 10, 20, 50)):
        codes = rng.integers(0, n, rows)
        logit += (codes % 3 - 1) * 0.8
        frame[f"cat_{i}"] = pd.Series(np.array([f"c{k}" for k in range(n)], dtype=object)[codes],
                                      dtype=object)
    for col in list(frame.columns):
        frame.loc[rng.random(rows) < missing, col] = None
    frame["target"] = (logit + rng.normal(0, 0.5, rows) > 0).astype(np.int64)
    return frame


def _mixed_bare_script(source: Path, out: Path) -> None:
    """What `mlops run` does with a mixed Parquet source, bare: read, split, fit the same
    scikit-learn Pipeline (imputation + one-hot), score, write the model."""
    config = Config()
    df = pd.read_parquet(source)
    x, y = split_xy(df, "target")
    x_train, x_test, y_train, y_test = split(x, y, config.data.test_size,
                                             config.training.random_state)
    model = build_model(config.training, "classification", feature_kinds(df, "target"))
    model.fit(x_train, y_train)
    float((model.predict(x_test) == y_test.to_numpy()).mean())
    joblib.dump(model, out / "model.joblib")


#: B11's validation: section (mixed_frame meets every rule).
B11_VALIDATION: dict[str, Any] = {
    "min_rows": 100, "max_missing": 0.2,
    "columns": {"num_0": {"min": -100, "max": 100}, "num_7": {"min": -100, "max": 100},
                "cat_0": {"allowed": [f"c{k}" for k in range(5)]},
                "cat_1": {"allowed": [f"c{k}" for k in range(10)], "max_missing": 0.1}}}


def b11(work: Path, sizes: Sizes) -> list[Row]:
    """`mlops run` on a 1M-row mixed Parquet source (fresh store: it trains) vs bare."""
    source, store, bare = work / "b11-mixed.parquet", work / "b11-store", work / "b11-bare"
    mixed_frame(sizes.b11_rows).to_parquet(source)
    # With a validation: section (every rule kind, all met by the frame) and the training
    # rows' hashes kept for the out-of-sample serving score (issue 18).
    config = Config.from_dict({"storage": {"uri": str(store)},
                               "data": {"source": str(source)},
                               "validation": B11_VALIDATION})
    a, b = alternate(lambda: run_pipeline(config),
                     lambda: _mixed_bare_script(source, bare),
                     sizes.rounds, lambda: _fresh(store), lambda: _fresh(bare))
    profile, parts = _run_profile(config, store)
    for path in (store, bare):
        shutil.rmtree(path, ignore_errors=True)
    source.unlink()
    return [_row("B11", f"mlops run, {sizes.b11_rows:,} rows mixed (8 numeric, 4 categorical, "
                 "5% missing), logistic, vs bare script", a, b, "<=", B11_TARGET,
                 "fresh store each round; both fit the same Pipeline (median imputation + "
                 "scaling, one-hot); mlops also validates (a validation: section: min, max, "
                 "allowed, max_missing, min_rows), versions the data, computes every metric, "
                 "builds the drift reference, hashes the training rows (out-of-sample "
                 "serving score; both while the model fits) and saves the model with its "
                 "schema; " + profile, profile=parts)]


# --- B7: the monitor-check step --------------------------------------------------------------
def b7(work: Path, sizes: Sizes) -> list[Row]:
    """monitor-check on a registered version vs the same work done bare with NumPy.

    The step runs as its own Job, so it must read the version from the store: the fair
    baseline reads the same Parquet object, computes the column means with NumPy and
    scores the same current model (predict + accuracy). Setup (generation, registering,
    the ingest result, a model trained on a small sample) is untimed.
    """
    store = work / "b7-store"
    _fresh(store)
    config = Config.from_dict({"storage": {"uri": str(store)},
                               "data": {"n_samples": sizes.b7_rows,
                                        "n_features": sizes.b7_features}})
    ws = Workspace.open(config)
    df = generate_synthetic_data(sizes.b7_rows, sizes.b7_features, 7)
    vid = ws.versioner.register(df)
    small = df.iloc[:20_000]
    xs, ys = split_xy(small, "target")
    model = train_model(xs, ys, config)
    ws.registry.save(model, "model-1", {"accuracy": evaluate(model, xs, ys)})
    ws.monitor.update_reference_distribution(
        {str(c): float(v) for c, v in xs.mean().items()}, data_version=vid)
    run_id = "bench-b7"
    ws.write_result("ingest", IngestResult(run_id=run_id, data_version=vid, rows=len(df),
                                           source="synthetic"))
    obj = store / "data" / ws.versioner.get_metadata(vid)["object"]
    del df, small
    gc.collect()

    def bare() -> None:
        frame = pd.read_parquet(obj, engine="pyarrow")
        x = frame.drop(columns="target")
        x.to_numpy().mean(axis=0)
        float((model.predict(x) == frame["target"].to_numpy()).mean())

    # No shared Workspace: each call opens its own, as the step's Job does, so nothing
    # loaded by a previous call is reused (the versioner keeps its last load in memory).
    a, b = alternate(lambda: monitor_check(config, run_id), bare, sizes.cheap_rounds)
    minima = list(_LAST_MINIMA)
    # The narrow comparison the issue names: in-memory means only, for the record.
    frame = pd.read_parquet(obj, engine="pyarrow")
    x_np = frame.drop(columns="target").to_numpy()
    _, means_only = alternate(lambda: None, lambda: x_np.mean(axis=0), sizes.cheap_rounds)
    _LAST_MINIMA[:] = minima
    shutil.rmtree(store, ignore_errors=True)
    return [_row("B7", f"monitor-check on {sizes.b7_rows:,} rows vs read + NumPy means + "
                 "predict", a, b, "<=", 1.5,
                 f"NumPy means alone on in-memory data: {means_only:.3f} s "
                 "(the step must read the data and score the model too)")]


# --- B8: DVC ---------------------------------------------------------------------------------
def _dvc(args: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True,
                   capture_output=True)


def b8(df: pd.DataFrame, work: Path, sizes: Sizes) -> list[Row]:
    """register vs to_parquet + `dvc add` + `dvc push` to a local remote (fresh repos)."""
    try:
        dvc_version = importlib.metadata.version("dvc")
    except importlib.metadata.PackageNotFoundError:
        return [Row("B8", "register vs DVC (to_parquet + dvc add + dvc push)", None, None, None,
                    "<= 0.6", None, "skipped: dvc is not installed (pip install -e '.[bench]')")]
    store, repo, remote = work / "b8-store", work / "b8-repo", work / "b8-remote"

    def prep_dvc() -> None:
        _fresh(repo)
        _fresh(remote)
        _dvc(["init", "--no-scm", "-q"], repo)
        _dvc(["remote", "add", "-d", "local", str(remote)], repo)

    def dvc_workflow() -> None:
        df.to_parquet(repo / "data.parquet", engine="pyarrow")
        _dvc(["add", "-q", "data.parquet"], repo)
        _dvc(["push", "-q"], repo)

    a, b = alternate(lambda: DataVersioner(store).register(df), dvc_workflow, sizes.rounds,
                     lambda: _fresh(store), prep_dvc)
    for p in (store, repo, remote):
        shutil.rmtree(p, ignore_errors=True)
    return [_row("B8", f"register vs DVC {dvc_version} (to_parquet + dvc add + dvc push, "
                 "local remote)", a, b, "<=", 0.6,
                 "dvc runs as a CLI subprocess, as users run it (its start-up is included)")]


# --- B10: the read-only commands as whole processes --------------------------------------
#: B10's targets: each command's median at most this many seconds and this many times
#: the baseline process (python -c "import yaml, fsspec").
B10_SECONDS = 0.5
B10_RATIO = 2.0


def b10(work: Path, sizes: Sizes) -> list[Row]:
    """Each read-only ``mlops`` command (a process) vs ``python -c "import yaml, fsspec"``."""
    from benchmarks import bench_cli

    store = work / "b10-store"
    _fresh(store)
    ids = bench_cli.seed_store(store, sizes.b10_versions)
    baseline = bench_cli.runner(bench_cli.BASELINE, store)
    rows = []
    for label, args in bench_cli.read_only_commands(ids).items():
        a, b = alternate(bench_cli.runner([*bench_cli.mlops_command(), *args], store),
                         baseline, sizes.cheap_rounds)
        row = _row(f"B10-{label.replace(' ', '-').lstrip('-')}",
                   f"mlops {label} ({sizes.b10_versions:,} versions) vs python -c "
                   "'import yaml, fsspec'", a, b, "<=", B10_RATIO,
                   f"whole processes; target also median <= {B10_SECONDS} s")
        row.target = f"<= {B10_RATIO} and <= {B10_SECONDS} s"
        row.met = bool(row.met) and a <= B10_SECONDS
        rows.append(row)
    shutil.rmtree(store, ignore_errors=True)
    return rows


# --- reporting -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """The machine and library versions the run used."""
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    ram = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    versions = {}
    for pkg in ("numpy", "pandas", "pyarrow", "scikit-learn", "fsspec", "dvc"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(ram / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(),
            "versions": versions,
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                             if k in os.environ}}


def _fmt(x: float | None, unit: str = "") -> str:
    return "—" if x is None else f"{x:.3f}{unit}"


def to_markdown(rows: list[Row], info: dict[str, Any], sizes: Sizes, elapsed: float,
                merged: str = "") -> str:
    """The results as a Markdown section (table + machine); ``merged`` notes re-run rows."""
    v = info["versions"]
    lines = [
        "| id | measurement | mlops (s) | baseline (s) | ratio | best-of ratio | target | met "
        "| note |",
        "|----|-------------|----------:|-------------:|------:|------:|--------|-----|------|",
    ]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.id} | {r.measurement} | {_fmt(r.a_seconds)} | {_fmt(r.b_seconds)} "
                     f"| {_fmt(r.ratio, 'x')} | {_fmt(r.extra.get('ratio_of_minima'), 'x')} "
                     f"| {r.target} | {met} | {r.note} |")
    mode = "quick (smoke sizes)" if sizes.quick else "full"
    lines += [
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, "
        f"{info['os']}; Python {info['python']}, numpy {v['numpy']}, pandas {v['pandas']}, "
        f"pyarrow {v['pyarrow']}, scikit-learn {v['scikit-learn']}, fsspec {v['fsspec']}, "
        f"dvc {v['dvc']}. Mode: {mode}; {sizes.rounds} alternating rounds per side for big "
        f"rows, {sizes.cheap_rounds} for cheap ones, after a warm-up; whole run "
        f"{elapsed:.0f} s. Ratio = median(mlops) / median(baseline), which the target is "
        "checked on; best-of = min / min, a cross-check robust to other load (B4: "
        "throughput, mlops / sha256; B5: added peak RSS / DataFrame size; B9: ns/row growth)."
        + merged,
    ]
    return "\n".join(lines) + "\n"


# --- B12: verified loads --------------------------------------------------------------------
def b12(df: pd.DataFrame, work: Path, sizes: Sizes) -> list[Row]:
    """B12: the default (verified) load and an explicit unverified one vs pd.read_parquet;
    B12s and B12p (no target) measure what was weighed against it, in the same run.

    Each row also gives the ratio of process CPU seconds (``cpu_ratio``): on a machine
    shared with other work the wall-clock medians swing, the CPU time much less.
    """
    store = work / "verify-store"
    _fresh(store)
    versioner = DataVersioner(store)
    vid = versioner.register(df)
    obj = store / versioner.get_metadata(vid)["object"]
    read = lambda: pd.read_parquet(obj, engine="pyarrow")  # noqa: E731
    mb = obj.stat().st_size / 1e6
    verified = lambda: versioner.load(vid)  # noqa: E731
    a, b = alternate(verified, read, sizes.cheap_rounds)
    cpu = _cpu_ratio(verified, read, sizes.cheap_rounds)
    rows = [_row("B12", "load(version) (verified: CRC32C of the object) vs pd.read_parquet",
                 a, b, "<=", 1.3, f"{mb:.0f} MB object; read in 256 KiB chunks into one buffer "
                 "(two threads, a half each, above 16 MiB), each chunk hashed (CRC32C, CPU "
                 "instructions) while still in the CPU cache; Parquet decodes the checked "
                 f"buffer in place; CPU time {cpu:.2f}x", cpu_ratio=cpu)]
    unverified = lambda: versioner.load(vid, verify=False)  # noqa: E731
    a, b = alternate(unverified, read, sizes.cheap_rounds)
    cpu = _cpu_ratio(unverified, read, sizes.cheap_rounds)
    rows.append(_row("B12u", "load(version, verify=False) vs pd.read_parquet", a, b, "<=",
                     1.1, f"the explicit unverified load, measured in the same run; CPU time "
                     f"{cpu:.2f}x", cpu_ratio=cpu))
    # A manifest as releases before object_checksum wrote it: only the sha256.
    old = versioner.get_metadata(vid)
    del old["object_checksum"]
    old["object_sha256"] = hashlib.sha256(obj.read_bytes()).hexdigest()
    versioner.store.write_json(versioner.manifest_key(vid), old)
    a, b = alternate(verified, read, sizes.cheap_rounds)
    rows.append(_info_row("B12s", "load(version) of a manifest with only object_sha256 "
                          "(written before CRC32C) vs pd.read_parquet", a, b,
                          "the same chunked read, hashed with sha256 (one thread: sha256 "
                          "cannot combine halves)"))
    # The alternative weighed: Parquet's own page CRCs, checked in the decode threads.
    import pyarrow.parquet as pq

    paged = work / "page-crc.parquet"
    df.to_parquet(paged, engine="pyarrow", write_page_checksum=True)
    a, b = alternate(
        lambda: pq.read_table(paged, page_checksum_verification=True).to_pandas(),
        lambda: pd.read_parquet(paged, engine="pyarrow"), sizes.cheap_rounds)
    rows.append(_info_row("B12p", "Parquet page CRCs verified (page_checksum_verification) vs "
                          "pd.read_parquet of the same file", a, b,
                          "not chosen: covers data pages only, not the footer or the "
                          "dictionary of every writer (docs/reliability.md)"))
    shutil.rmtree(store, ignore_errors=True)
    paged.unlink()
    return rows


def _cpu_ratio(a: Callable[[], Any], b: Callable[[], Any], rounds: int) -> float:
    """Median process CPU seconds (every thread) of ``a`` over ``b``, alternating."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(rounds):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        for name, fn in order:
            gc.collect()
            c0 = time.process_time()
            fn()
            times[name].append(time.process_time() - c0)
    return statistics.median(times["a"]) / statistics.median(times["b"])


def _info_row(id_: str, measurement: str, a: float, b: float, note: str) -> Row:
    """A row measured for comparison, with no target."""
    return Row(id_, measurement, a, b, a / b, "—", None, note,
               {"ratio_of_minima": _LAST_MINIMA[0] / _LAST_MINIMA[1]})


def b13(work: Path, sizes: Sizes) -> list[Row]:
    """The score step on a 1M-row mixed batch vs bare ``model.predict`` + ``to_parquet``."""
    from benchmarks import bench_scoring

    ws, src, model = bench_scoring.setup(work, sizes.b13_rows, mixed_frame)
    out = work / "b13-bare"
    a, b = alternate(lambda: bench_scoring.ours(ws),
                     lambda: bench_scoring.bare(src, out, model), sizes.rounds,
                     lambda: bench_scoring.fresh(ws), lambda: _fresh(out))
    for path in (src, out, Path(ws.store.url().removeprefix("file://"))):
        shutil.rmtree(path, ignore_errors=True)
    return [_row("B13", f"mlops score, {sizes.b13_rows:,} rows mixed in "
                 f"{bench_scoring.FILES} Parquet files, vs bare predict + to_parquet",
                 a, b, "<=", 1.3,
                 "same files, same model (loaded before timing); the step also loads the "
                 "model, checks every header, hashes the batch and the predictions, writes "
                 "probability_<class> columns and commits the manifest")]


# --- B14: CBPE against NannyML's CBPE ---------------------------------------------------------
def b14(sizes: Sizes) -> list[Row]:
    """CBPE's estimated accuracy vs NannyML's own CBPE on the same covariate-shifted data
    (NannyML in its own environment: benchmarks/bench_cbpe.py). Not a timing: the ratio
    is our mean absolute error against the true accuracy over NannyML's."""
    from benchmarks import bench_cbpe

    seeds = (0,) if sizes.quick else (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    rows, batch = (2_000, 1_000) if sizes.quick else (20_000, 10_000)
    measurement = (f"CBPE estimated accuracy on a covariate-shifted {batch:,}-row batch, "
                   f"absolute error vs NannyML's CBPE ({len(seeds)} seeds, random_forest)")
    python = None
    why = ""
    try:  # quick mode uses the environment only when a full run has made it
        python = bench_cbpe.ensure_env() if not sizes.quick or bench_cbpe.env_ready() \
            else None
        why = "" if python is not None else "NannyML's environment is made by make bench"
    except (OSError, subprocess.SubprocessError) as err:
        why = f"NannyML could not be installed in its environment ({err})"
    result = bench_cbpe.compare(seeds, rows, batch, python)
    summary = bench_cbpe.summarize(result)
    if python is None:
        return [Row("B14", measurement, None, None, None, "<= 1.5", None,
                    f"skipped: {why}; ours alone: accuracy MAE "
                    f"{summary['accuracy_mae_ours']:.4f}", {**result, **summary})]
    ratio = summary["accuracy_mae_ours"] / max(summary["accuracy_mae_nannyml"], 1e-9)
    return [Row("B14", measurement, None, None, ratio, "<= 1.5", _check(ratio, "<=", 1.5),
                f"mean absolute error of accuracy: ours {summary['accuracy_mae_ours']:.4f}, "
                f"NannyML {result['nannyml_version']} {summary['accuracy_mae_nannyml']:.4f}; "
                f"roc_auc: ours {summary['roc_auc_mae_ours']:.4f}, NannyML "
                f"{summary['roc_auc_mae_nannyml']:.4f}; largest gap between the two "
                f"estimates: accuracy {summary['accuracy_max_gap']:.1e}, roc_auc "
                f"{summary['roc_auc_max_gap']:.1e}. Same held-out rows calibrate both; "
                "ratio = our error / NannyML's", {**result, **summary})]


# --- B15: the late labels' join ---------------------------------------------------------
def b15(sizes: Sizes) -> list[Row]:
    """B15: the late labels' join on 1M stored predictions vs a bare ``pandas.merge``."""
    from benchmarks import bench_labels

    preds, labels = bench_labels.frames(sizes.b15_rows)
    assert len(bench_labels.ours(preds, labels)) == len(bench_labels.bare(preds, labels))
    a, b = alternate(lambda: bench_labels.ours(preds, labels),
                     lambda: bench_labels.bare(preds, labels), sizes.cheap_rounds)
    rows = [_row("B15", f"labels join, {sizes.b15_rows:,} predictions x "
                 f"{len(labels):,} labels (string ids), vs bare pd.merge", a, b, "<=", 1.5,
                 "same frames, inner join on the id; the join also checks and aligns the id "
                 "dtypes (docs/labels.md)")]
    a, b = alternate(lambda: bench_labels.ours_with_metrics(preds, labels),
                     lambda: bench_labels.bare(preds, labels), sizes.rounds)
    rows.append(_info_row("B15m", "labels join + every realized classification metric vs "
                          "bare pd.merge", a, b, "what a night's realized score costs beyond "
                          "the join: accuracy, balanced_accuracy, f1_macro, roc_auc, log_loss"))
    return rows




# --- B16: the Dask engine's fixed cost ---------------------------------------------------------
#: B16's target (issue 24): a small no-retrain night on dask at most this many times pandas.
B16_TARGET = 2.0


def _profile_summary(fn: Callable[[], Any], top: int = 6, title: str = "one dask night",
                     dirs: tuple[str, ...] = ("/mlops/", "/distributed/", "/dask/"),
                     skip: tuple[str, ...] = ()) -> tuple[str, dict[str, float]]:
    """Run ``fn`` once under cProfile; the ``top`` functions of ``dirs`` by cumulative
    seconds (what a row that misses its target says about where time goes)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = max(getattr(stats, "total_tt", 0.0), 1e-9)
    entries = getattr(stats, "stats", {})
    named: dict[str, float] = {}
    for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in entries.items():
        if any(d in path for d in dirs):
            module = path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1].removesuffix(".py")
            key = f"{module}.{func}"
            named[key] = max(named.get(key, 0.0), ct)
    skip = ("run_pipeline", "<lambda>", "__exit__", "__enter__", "step", "wrapper", *skip)
    ranked = sorted(((k, v) for k, v in named.items() if not k.endswith(skip)),
                    key=lambda kv: -kv[1])[:top]
    text = ", ".join(f"{k} {v:.2f} s" for k, v in ranked)
    return f"profile of {title} ({total:.2f} s under cProfile): {text}", dict(ranked)


def b16(work: Path, sizes: Sizes) -> list[Row]:
    """A no-retrain night (ingest + monitor-check, the model already serves) on 10,000
    rows in 4 Parquet files, the Dask engine vs the pandas engine, each on its own store:
    B16 with the Dask engine's defaults (``mlops run`` starts a local cluster of worker
    processes), B16a on a cluster that is already running (``dask.address``, as an
    operator's or the controller's ephemeral cluster is when a step starts)."""
    from distributed import LocalCluster

    from mlops.engines.dask import NO_DASHBOARD
    from mlops.runner import run_pipeline as night

    src = work / "b16-src"
    _fresh(src)
    per = max(50, sizes.b16_rows // 4)
    for i in range(4):
        generate_synthetic_data(per, 10, 100 + i).to_parquet(src / f"part-{i}.parquet",
                                                             index=False)
    rows: list[Row] = []
    retrained: list[bool] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, **NO_DASHBOARD) as running:
        sections: dict[str, dict[str, Any]] = {
            "dask": {"data": {"engine": "dask"}},
            "dask-address": {"data": {"engine": "dask"},
                             "dask": {"address": running.scheduler_address}},
            "pandas": {"data": {"engine": "pandas"}}}
        configs = {name: Config.from_dict({
            "storage": {"uri": str(work / f"b16-{name}")},
            "data": {"source": str(src), **sec.pop("data")}, **sec})
            for name, sec in sections.items()}
        for name, cfg in configs.items():
            _fresh(work / f"b16-{name}")
            assert night(cfg)["retrained"], name  # the first night trains the model

        def run(name: str) -> Callable[[], None]:
            return lambda: retrained.append(bool(night(configs[name])["retrained"]))

        for id_, name, how in (("B16", "dask", "defaults: mlops run starts a local cluster "
                                "of dask.n_workers worker processes"),
                               ("B16a", "dask-address", "on a running cluster "
                                "(dask.address), as under the controller")):
            a, b = alternate(run(name), run("pandas"), sizes.rounds)
            minima = list(_LAST_MINIMA)
            profile, parts = _profile_summary(run(name))
            _LAST_MINIMA[:] = minima
            rows.append(_row(id_, f"no-retrain night (ingest + monitor-check), {4 * per:,} "
                             f"rows in 4 Parquet files: data.engine dask ({how.split(':')[0]})"
                             " vs pandas", a, b, "<=", B16_TARGET,
                             f"dask {how}; each engine on its own store, a model already "
                             "serves; " + profile, profile=parts))
    for path in (src, *(work / f"b16-{e}" for e in configs)):
        shutil.rmtree(path, ignore_errors=True)
    assert not any(retrained), "B16 measures nights that do not retrain"
    return rows


ALL = ("B1", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B13", "B14", "B15",
       "B16")


def _merge(out: Path, rows: list[Row], only: tuple[str, ...],
           elapsed: float) -> tuple[list[Row], dict[str, Any]] | None:
    """The rows of ``out/latest.json`` with this run's rows put in (same id: replaced)."""
    try:
        previous = json.loads((out / "latest.json").read_text())
    except FileNotFoundError:
        return None
    new = {r.id: r for r in rows}
    merged = [new.pop(r["id"]) if r["id"] in new else Row(**r) for r in previous["rows"]]
    merged += new.values()
    doc = {**previous, "rows": [asdict(r) for r in merged]}
    doc.setdefault("merged_runs", []).append({"groups": list(only), "elapsed_s": elapsed,
                                              "machine": machine()})
    return merged, doc


def run(sizes: Sizes, out: Path, only: tuple[str, ...] = ALL,
        workdir: Path | None = None, merge: bool = False) -> list[Row]:
    """Run the benchmarks, write ``latest.md``/``latest.json`` into ``out``, return the rows.

    With ``merge``, the rows of an existing ``out/latest.json`` are kept and only the
    rows this run measured are replaced (or added): to re-measure some groups alone.
    """
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-", dir=workdir) as tmp:
        work = Path(tmp)
        frames: dict[str, pd.DataFrame] = {}

        def df() -> pd.DataFrame:  # B1's frame, built once when a group needs it
            if "b1" not in frames:
                frames["b1"] = generate_synthetic_data(sizes.b1_rows, sizes.b1_features, 1)
            return frames["b1"]

        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("B1", lambda: b1_b2_b3(df(), work, sizes)),
            ("B4", lambda: b4(df(), sizes)),
            ("B5", lambda: b5(work, sizes)),
            ("B6", lambda: b6(work, sizes)),
            ("B7", lambda: b7(work, sizes)),
            ("B8", lambda: b8(df(), work, sizes)),
            ("B9", lambda: b9(work, sizes, df())),
            ("B10", lambda: b10(work, sizes)),
            ("B11", lambda: b11(work, sizes)),
            ("B12", lambda: b12(df(), work, sizes)),
            ("B13", lambda: b13(work, sizes)),
            ("B14", lambda: b14(sizes)),
            ("B15", lambda: b15(sizes)),
            ("B16", lambda: b16(work, sizes)),
        ]
        for name, step in steps:
            if name not in only:
                continue
            s0 = time.perf_counter()
            new = step()
            rows += new
            for r in new:
                print(f"{r.id:>12}  ratio {_fmt(r.ratio)}  target {r.target}  "
                      f"({time.perf_counter() - s0:.0f} s)", file=sys.stderr, flush=True)
    info = machine()
    elapsed = time.perf_counter() - t0
    doc: dict[str, Any] = {"machine": info, "sizes": asdict(sizes), "elapsed_s": elapsed,
                           "rows": [asdict(r) for r in rows]}
    table, note = rows, ""
    merged = _merge(out, rows, only, elapsed) if merge else None
    if merged is not None:
        table, doc = merged
        info, elapsed = doc["machine"], doc["elapsed_s"]
        sizes = Sizes(**{**doc["sizes"], "b9_rows": tuple(doc["sizes"]["b9_rows"])})
        note = (f" Re-measured alone afterwards (--only {','.join(only)} --merge, same "
                f"machine): {', '.join(r.id for r in rows)}.")
    (out / "latest.md").write_text(to_markdown(table, info, sizes, elapsed, note))
    (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per measurement")
    parser.add_argument("--only", help="comma-separated groups: " + ",".join(ALL))
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results, "
                        "or a temp folder with --quick)")
    parser.add_argument("--merge", action="store_true", help="keep the other rows of the "
                        "results folder's latest.json; replace only the rows measured now")
    parser.add_argument("--workdir", type=Path, help="where the data is written (default: "
                        "the system temp folder)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = args.rounds
    out = args.out or (Path(tempfile.mkdtemp(prefix="mlops-bench-results-")) if args.quick
                       else RESULTS_DIR)
    only = tuple(s.strip().upper() for s in args.only.split(",")) if args.only else ALL
    run(sizes, out, only, args.workdir, args.merge)
    print((out / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
