"""The Dask engine's targets (issue #11), measured side by side in one run.

Usage::

    python -m benchmarks.bench_dask              # make bench: 4 GB (D1-D3), 1 and 4 GB (D4)
    python -m benchmarks.bench_dask --gb 0.2 --linearity-gb 0.1   # smaller
    python -m benchmarks.bench_dask --quick      # tiny: a smoke check of the rows

One ``LocalCluster`` of worker processes (``--workers`` x ``--memory-limit``) runs
everything. The source is ``--gb`` GB (in memory, float64) of synthetic Parquet
files of ``--partition-mb`` each. Rows:

* D1: ``mlops ingest`` (dask engine) vs ``dd.read_parquet(src).to_parquet(dst)`` on the
  same cluster, alternating; target ratio <= 1.2.
* D2: peak RSS of all the run's processes together (this process, which is the
  ingest step with the local cluster's scheduler and the workers' nannies, and every
  worker, sampled every 20 ms; the note splits the peak) while ingesting on freshly
  restarted workers, against 2 x the largest partition + the workers' memory limits;
  target <= 1. With ``--memory-check`` (full run) the data set is at least 4x the
  workers' total limit and no worker may be restarted during ingest and monitor-check.
* D3: re-ingest after one new partition is appended / the full ingest; <= 0.1.
* D4: ingest seconds per row at 4x the data / at 1x; <= 1.2 (linear).
* D5: drift from merged KLL sketches against exact statistics at 2,000,000 rows:
  |PSI - exact|, |KS D - exact| <= 0.01 and Wasserstein within 2%.
* D6: the train step (``lightgbm``, a regression with a categorical feature) on data
  ``--train-factor`` (1.25) x larger than one worker's ``--train-memory-limit``, on
  its own cluster of ``--train-workers`` worker processes (pausing off: a paused worker
  stalls LightGBM's collective training): the largest worker peak RSS / 95% of the
  limit (where the nanny kills); met when <= 1, every row trained on and no worker
  restarted.

Results go to ``benchmarks/results/dask.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.run import RESULTS_DIR, Row, _check, alternate, machine
from mlops.config import Config
from mlops.engines.dask import NO_DASHBOARD
from mlops.pipeline import ingest, monitor_check, train
from mlops.workspace import Workspace

FEATURES = 10


def _write_partition(folder: Path, i: int, rows: int, seed: int) -> None:
    rng = np.random.default_rng([seed, i])
    weights = np.random.default_rng(seed).normal(size=FEATURES)
    x = rng.normal(size=(rows, FEATURES)) * 2.0 + 10.0
    df = pd.DataFrame(x, columns=[f"feature_{j}" for j in range(FEATURES)])
    df["target"] = ((x - 10.0) @ weights > 0).astype(np.int64)
    df.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


def write_source(folder: Path, total_bytes: float, partition_bytes: float, seed: int = 0,
                 start: int = 0) -> tuple[int, int]:
    """Synthetic Parquet partitions; returns (rows, largest partition in-memory bytes).

    They are written by two short-lived processes, so that the benchmark's own process
    (the ingest step's) never holds the data: its memory is part of D2.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = 8 * (FEATURES + 1)
    # Rounded up: 250 partitions of "16 MB" make at least 4 GB (D2 checks the data is
    # at least 4x the workers' limits; rounded down it was 4 KB short).
    rows_per = max(100, math.ceil(partition_bytes / row_bytes))
    n_parts = max(1, round(total_bytes / (rows_per * row_bytes)))
    parts = range(start, start + n_parts)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_partition, [folder] * n_parts, parts, [rows_per] * n_parts,
                      [seed] * n_parts))
    return rows_per * n_parts, rows_per * row_bytes


@contextmanager
def peak_rss(workers: set[int] | None = None) -> Iterator[dict[str, int]]:
    """Sample the summed RSS of this process and all its children; yields the peak.

    Also the peak of each part at the moment of the total's peak: ``step`` (this
    process: the ingest step, with the local cluster's scheduler in it), ``workers``
    (the pids in ``workers``) and ``other`` (the rest: the workers' nannies).
    """
    import psutil

    me = psutil.Process()
    out = {"peak": 0, "step": 0, "workers": 0, "other": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            parts = {"step": 0, "workers": 0, "other": 0}
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                part = "step" if p.pid == me.pid else \
                    "workers" if workers and p.pid in workers else "other"
                parts[part] += rss
            total = sum(parts.values())
            if total > out["peak"]:
                out.update(parts, peak=total)
            stop.wait(0.02)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()


def _config(store: Path, src: Path) -> Config:
    return Config.from_dict({"storage": {"uri": str(store)},
                             "data": {"source": str(src), "engine": "dask"}})


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


def _release_memory() -> None:
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def trim_workers(client: Any) -> None:
    """Between runs (untimed): the workers hand cached allocator memory back.

    Run as a task on each worker, so in the thread that ran the previous tasks
    (pyarrow's allocator caches per thread): what one side's run leaves cached must
    not count against the next run.
    """
    client.gather([client.submit(_release_memory, workers=[w], allow_other_workers=False,
                                 pure=False) for w in _worker_pids(client)])


def _say(row: Row) -> None:
    print(f"{row.id}  ratio {row.ratio:.3f}  target {row.target}  {row.note}", file=sys.stderr,
          flush=True)


def bench_cluster(work: Path, gb: float, partition_mb: float, rounds: int,
                  memory_check: bool, client: Any, limit_bytes: int) -> list[Row]:
    import dask.dataframe as dd

    rows: list[Row] = []
    src = work / "src"
    n_rows, largest = write_source(src, gb * 1e9, partition_mb * 1e6)
    store = work / "store"
    dst = work / "dst"
    cfg = _config(store, src)
    counter = iter(range(1_000_000))

    def ours() -> None:
        ingest(cfg, f"bench-{next(counter)}", Workspace.open(cfg))

    def theirs() -> None:
        dd.read_parquet(str(src)).to_parquet(str(dst))

    def fresh_store() -> None:
        shutil.rmtree(store, ignore_errors=True)
        trim_workers(client)

    def fresh_dst() -> None:
        shutil.rmtree(dst, ignore_errors=True)
        trim_workers(client)

    a, b = alternate(ours, theirs, rounds, fresh_store, fresh_dst, warmup=False)
    rows.append(Row("D1", f"ingest {gb:g} GB ({n_rows:,} rows, partitions of "
                    f"{largest / 1e6:.0f} MB) vs dd.read_parquet(src).to_parquet(dst)",
                    a, b, a / b, "<= 1.2", _check(a / b, "<=", 1.2),
                    "same LocalCluster of worker processes; mlops also hashes, computes "
                    "moments and KLL sketches and writes them"))
    _say(rows[-1])

    # D2 (+ the memory check): one more full ingest, sampled, then monitor-check.
    # On restarted workers, as a step's own local cluster starts: D1's baseline runs
    # leave their allocator caches (~300 MB a worker) in these workers, which are not
    # the ingest's memory. Trimming does not get them back; a restart does.
    fresh_store()
    client.restart()
    pids = _worker_pids(client)
    with peak_rss(set(pids.values())) as peak:
        ours()
    bound = 2 * largest + limit_bytes * len(pids)
    ratio = peak["peak"] / bound
    note = (f"peak {peak['peak'] / 1e6:.0f} MB = step process (with the scheduler) "
            f"{peak['step'] / 1e6:.0f} + {len(pids)} workers {peak['workers'] / 1e6:.0f} + "
            f"their nannies {peak['other'] / 1e6:.0f}; bound {bound / 1e6:.0f} MB = 2 x "
            f"{largest / 1e6:.0f} MB + {len(pids)} x {limit_bytes / 1e6:.0f} MB")
    if memory_check:
        ws = Workspace.open(cfg)
        run_id = f"bench-{next(counter)}"
        ingest(cfg, run_id, ws)
        small = work / "small"
        write_source(small, 20e6, 5e6, seed=3)
        small_cfg = _config(store, small)
        ingest(small_cfg, "bench-train", ws)
        train(small_cfg, "bench-train", ws)  # a serving model to score
        check = monitor_check(cfg, run_id, ws)
        same = _worker_pids(client) == pids
        data_bytes = n_rows * 8 * (FEATURES + 1)
        note += (f"; data {data_bytes / 1e6:.0f} MB = {data_bytes / (limit_bytes * len(pids)):.1f}"
                 f" x the workers' total limit; ingest + monitor-check (accuracy "
                 f"{check.accuracy:.3f}) done, workers restarted: {'no' if same else 'YES'}")
        ok = bool(ratio <= 1 and same and data_bytes >= 4 * limit_bytes * len(pids))
    else:
        ok = bool(ratio <= 1)
    rows.append(Row("D2", "peak RSS of all processes while ingesting / (2 x largest "
                    "partition + workers' limits)", None, None, ratio, "<= 1", ok, note))
    _say(rows[-1])

    # D3: append one partition, re-ingest.
    full = a
    write_source(src, partition_mb * 1e6, partition_mb * 1e6, seed=99, start=100_000)
    re = _timed(ours)
    rows.append(Row("D3", "re-ingest after one partition is appended / full ingest", re, full,
                    re / full, "<= 0.1", _check(re / full, "<=", 0.1),
                    "unchanged files come from the fingerprint cache: not read"))
    return rows


def bench_linearity(work: Path, gb: float, partition_mb: float, client: Any) -> Row:
    times: dict[int, float] = {}
    n: dict[int, int] = {}
    for scale in (1, 4):
        src = work / f"lin-{scale}"
        n[scale], _ = write_source(src, scale * gb * 1e9, partition_mb * 1e6, seed=scale)
        store = work / f"lin-store-{scale}"
        cfg = _config(store, src)
        trim_workers(client)
        t0 = time.perf_counter()
        ingest(cfg, "lin", Workspace.open(cfg))
        times[scale] = time.perf_counter() - t0
        shutil.rmtree(src)
        shutil.rmtree(store)
    per = {s: times[s] / n[s] for s in times}
    growth = per[4] / per[1]
    return Row("D4", f"ingest time per row at {4 * gb:g} GB / at {gb:g} GB", times[4], times[1],
               growth, "<= 1.2", _check(growth, "<=", 1.2),
               f"{per[1] * 1e9:.0f} -> {per[4] * 1e9:.0f} ns/row")


def bench_sketches(rows: int) -> Row:
    from scipy import stats

    from mlops.drift import DriftSettings, bin_shares, build_reference, psi
    from mlops.engines.sketches import (
        column_moments,
        decode,
        ks_statistic,
        merge_sketches,
        reference_from_sketches,
        sketch_columns,
        sketch_report,
        wasserstein,
    )
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"a": rng.normal(10, 2, rows), "b": rng.exponential(3, rows)})
    cur = pd.DataFrame({"a": rng.normal(10.5, 2.3, rows), "b": rng.exponential(3.4, rows)})
    parts = 20
    t0 = time.perf_counter()
    sk_ref = merge_sketches(sketch_columns(ref.iloc[i::parts], ["a", "b"]) for i in range(parts))
    sk_cur = merge_sketches(sketch_columns(cur.iloc[i::parts], ["a", "b"]) for i in range(parts))
    sketch_s = time.perf_counter() - t0
    exact = build_reference(ref, bins=10, sample_size=5000)
    dist = reference_from_sketches(sk_ref, column_moments(ref), 10, 5000)
    report = {f.feature: f.statistic
              for f in sketch_report(dist, sk_cur, rows, DriftSettings(method="psi")).features}
    errs = {"psi": 0.0, "ks": 0.0, "wasserstein_rel": 0.0}
    for col in ("a", "b"):
        r, c = ref[col].to_numpy(), cur[col].to_numpy()
        e = exact["features"][col]
        errs["psi"] = max(errs["psi"], abs(report[col] - psi(np.asarray(e["shares"]),
                                                               bin_shares(c, e["edges"]))))
        errs["ks"] = max(errs["ks"], abs(ks_statistic(decode(sk_ref[col]), decode(sk_cur[col]))
                                         - stats.ks_2samp(r, c).statistic))
        w = stats.wasserstein_distance(r, c)
        errs["wasserstein_rel"] = max(errs["wasserstein_rel"], abs(
            wasserstein(decode(sk_ref[col]), decode(sk_cur[col]),
                        (float(r.mean()), float(c.mean()))) - w) / w)
    worst = max(errs["psi"] / 0.01, errs["ks"] / 0.01, errs["wasserstein_rel"] / 0.02)
    return Row("D5", f"drift from merged sketches vs exact, {rows:,} rows in {parts} partitions "
               "(worst error / its tolerance)", sketch_s, None, float(worst), "<= 1",
               bool(worst <= 1),
               f"|psi err| {errs['psi']:.4f}, |ks err| {errs['ks']:.4f}, wasserstein rel err "
               f"{errs['wasserstein_rel']:.2%}", {k: float(v) for k, v in errs.items()})


def _worker_peak() -> int:
    """Peak resident memory of this worker process: VmHWM (ru_maxrss would include the
    parent's peak, inherited across the spawn's fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def write_mixed_source(folder: Path, total_bytes: float, partition_bytes: float) -> int:
    """Regression partitions: FEATURES float64 features, a categorical one, a float
    target; returns the rows."""
    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = 8 * (FEATURES + 2)
    rows_per = max(100, int(partition_bytes // row_bytes))
    n_parts = max(1, round(total_bytes / (rows_per * row_bytes)))
    for i in range(n_parts):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(rows_per, FEATURES))
        df = pd.DataFrame(x, columns=[f"feature_{j}" for j in range(FEATURES)])
        df["shop"] = rng.choice(["a", "b", "c", "d"], rows_per)
        df["target"] = x[:, 0] * 2 - x[:, 1] + (df["shop"] == "d") * 3 + \
            rng.normal(0, 0.3, rows_per)
        df.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return rows_per * n_parts


def bench_train(work: Path, workers: int, memory_limit: str, factor: float,
                partition_mb: float) -> Row:
    """D6: train on data larger than one worker's memory limit (see the module doc)."""
    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    limit = int(parse_bytes(memory_limit))
    src, store = work / "train-src", work / "train-store"
    n_rows = write_mixed_source(src, factor * limit, partition_mb * 1e6)
    data_bytes = n_rows * 8 * (FEATURES + 2)
    cfg = Config.from_dict({"storage": {"uri": str(store)},
                            "data": {"source": str(src), "engine": "dask"},
                            "training": {"model_type": "lightgbm",
                                         "params": {"n_estimators": 20}}})
    with dask.config.set({"distributed.worker.memory.pause": False}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                         processes=True, **NO_DASHBOARD) as cluster, \
            Client(cluster) as client:
        pids = _worker_pids(client)
        ws = Workspace.open(cfg)
        t0 = time.perf_counter()
        ingest(cfg, "bench-train", ws)
        result = train(cfg, "bench-train", ws)
        seconds = time.perf_counter() - t0
        peaks = dict(client.run(_worker_peak))
        same = _worker_pids(client) == pids
    sample = ws.registry.get_metadata(result.model_version)["metadata"]["training_sample"]
    ratio = max(peaks.values()) / (0.95 * limit)
    all_rows = sample["rows"] == result.train_rows
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    return Row("D6", f"train (lightgbm regression, Dask) on {data_bytes / 1e6:.0f} MB = "
               f"{data_bytes / limit:.2f} x one worker's limit: largest worker peak RSS / "
               "95% of the limit", seconds, None, ratio, "<= 1",
               bool(ratio <= 1 and same and all_rows and data_bytes > limit),
               f"{workers} workers x {memory_limit}; worker peaks "
               f"{sorted(round(v / 1e6) for v in peaks.values())} MB; {result.train_rows:,} "
               f"training rows, all used: {'yes' if all_rows else 'NO'}; r2 "
               f"{result.metrics.get('r2') or float('nan'):.3f}; workers restarted: "
               f"{'no' if same else 'YES'}")


def to_markdown(rows: list[Row], info: dict[str, Any], args: argparse.Namespace,
                elapsed: float) -> str:
    """The table of the rows and the set-up."""
    lines = ["| id | measurement | mlops (s) | baseline (s) | ratio | target | met | note |",
             "|----|-------------|----------:|-------------:|------:|--------|-----|------|"]
    for r in rows:
        def f(x: float | None) -> str:
            return "—" if x is None else f"{x:.3f}"
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.id} | {r.measurement} | {f(r.a_seconds)} | {f(r.b_seconds)} | "
                     f"{f(r.ratio)} | {r.target} | {met} | {r.note} |")
    lines += ["", f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM. "
              f"Cluster: LocalCluster of {args.workers} worker processes x 1 thread, "
              f"memory_limit {args.memory_limit} each. Data {args.gb:g} GB (D4: "
              f"{args.linearity_gb:g} and {4 * args.linearity_gb:g} GB), partitions of "
              f"{args.partition_mb:g} MB; "
              f"{args.rounds} alternating rounds (D1); whole run {elapsed:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gb", type=float, default=4.0,
                        help="data set size in memory (GB) of D1-D3")
    parser.add_argument("--partition-mb", type=float, default=16.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="500MB",
                        help="per worker; D2 checks the 4x claim when --gb is at least 4 x "
                        "the workers' total limit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sketch-rows", type=int, default=2_000_000)
    parser.add_argument("--linearity-gb", type=float, default=1.0,
                        help="D4 compares this size with 4x it")
    parser.add_argument("--skip-linearity", action="store_true")
    parser.add_argument("--train-workers", type=int, default=6, help="D6's cluster")
    parser.add_argument("--train-memory-limit", default="1GB",
                        help="D6: per worker (a worker process uses ~400 MB before data)")
    parser.add_argument("--train-factor", type=float, default=1.25,
                        help="D6: data size in memory / one worker's limit")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--only-train", action="store_true", help="run D6 alone")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.gb, args.partition_mb, args.rounds, args.sketch_rows = 0.02, 2.0, 1, 50_000
        args.linearity_gb = 0.005
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    limit_bytes = int(parse_bytes(args.memory_limit))
    memory_check = args.gb * 1e9 >= 4 * limit_bytes * args.workers
    out = args.out or (Path(tempfile.mkdtemp(prefix="mlops-bench-dask-")) if args.quick
                       else RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[Row] = []
    if args.only_train:
        with tempfile.TemporaryDirectory(prefix="mlops-bench-dask-") as tmp:
            row = bench_train(Path(tmp), args.train_workers, args.train_memory_limit,
                              args.train_factor, args.partition_mb)
        print(to_markdown([row], machine(), args, time.perf_counter() - t0))
        return 0
    # No pausing at 80% of the limit: with 500 MB workers, the allocator memory that
    # dd.read_parquet(...).to_parquet keeps (~400 MB a worker after a few GB) paused both
    # workers for good and the baseline never finished. The nanny still restarts a
    # worker at 95%, and D2 still fails if one was restarted.
    import dask

    with dask.config.set({"distributed.worker.memory.pause": False}), \
            tempfile.TemporaryDirectory(prefix="mlops-bench-dask-") as tmp, \
            LocalCluster(n_workers=args.workers, threads_per_worker=1,
                         memory_limit=args.memory_limit, processes=True,
                         **NO_DASHBOARD) as cluster, Client(cluster) as client:
        work = Path(tmp)
        rows += bench_cluster(work, args.gb, args.partition_mb, args.rounds, memory_check,
                              client, limit_bytes)
        _say(rows[-1])
        if not args.skip_linearity:
            shutil.rmtree(work / "src", ignore_errors=True)
            shutil.rmtree(work / "store", ignore_errors=True)
            shutil.rmtree(work / "dst", ignore_errors=True)
            rows.append(bench_linearity(work, args.linearity_gb, args.partition_mb, client))
            _say(rows[-1])
    rows.append(bench_sketches(args.sketch_rows))
    if not args.skip_train:
        with tempfile.TemporaryDirectory(prefix="mlops-bench-dask-") as tmp:
            rows.append(bench_train(Path(tmp), args.train_workers, args.train_memory_limit,
                                    args.train_factor, args.partition_mb))
        print(f"{rows[-1].id}  ratio {rows[-1].ratio:.3f}  {rows[-1].note}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    info = machine()
    (out / "dask.md").write_text(to_markdown(rows, info, args, elapsed))
    (out / "dask.json").write_text(json.dumps(
        {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
         "elapsed_s": elapsed, "rows": [asdict(r) for r in rows]}, indent=2,
        default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    print((out / "dask.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
