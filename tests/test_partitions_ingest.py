"""The Dask engine's ingest fast path (#11 bench bar, rows D1/D2 in ``benchmarks/bench_dask.py``).

* A Parquet source file whose frame has the default index is stored as its own bytes
  (no second Parquet encoding); the stored object still reads back to the hashed frame.
  A CSV file, or a Parquet file with another index, is written with ``to_parquet``.
* Sketches are fed sorted values (KLL's guarantee holds for any order), moments and
  sketches come from one pass per column, and the driver merges sketches as the
  partition tasks finish.

One in-process ``LocalCluster`` for the module (~0.1 s to start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.config import Config
from mlops.engines.dask import NO_DASHBOARD
from mlops.hashing import content_hash
from mlops.pipeline import ingest
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

try:
    from distributed import Client, LocalCluster

    from mlops.engines.sketches import (
        DEFAULT_K,
        Moments,
        SketchMerger,
        column_moments,
        decode,
        merge_sketches,
        sketch_columns,
        summarize_columns,
    )
except ImportError:  # pragma: no cover - the dev extra installs them
    skip_or_fail("dask/distributed/datasketches are not installed (the mlops[dask] extra)")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, size=(rows, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    df["target"] = (x[:, 0] > 10).astype(np.int64)
    return df


def ingest_source(tmp_path: Path, src: Path) -> tuple[Workspace, dict[str, Any]]:
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src), "engine": "dask"}})
    ws = Workspace.open(cfg)
    result = ingest(cfg, "run-1", ws)
    return ws, ws.versioner.get_metadata(result.data_version)


def stored(ws: Workspace, manifest: dict[str, Any]) -> list[bytes]:
    return [ws.versioner.store.read_bytes(p["object"]) for p in manifest["partitions"]]


def test_parquet_sources_are_stored_as_their_own_bytes(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    frames = [frame(300, i) for i in range(3)]
    for i, df in enumerate(frames):
        # zstd and small row groups: not what ingest's own to_parquet would write
        df.to_parquet(src / f"part-{i}.parquet", index=False, compression="zstd",
                      row_group_size=100)
    ws, manifest = ingest_source(tmp_path, src)
    objects = stored(ws, manifest)
    assert objects == [(src / f"part-{i}.parquet").read_bytes() for i in range(3)]
    for p, raw, df in zip(manifest["partitions"], objects, frames, strict=True):
        assert p["size_bytes"] == len(raw)
        back = pd.read_parquet(ws.versioner.store.local_path(p["object"]))
        assert content_hash(back) == p["digest"] == content_hash(df)


def test_other_sources_are_written_as_parquet(client: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    df = frame(200, 7)
    df.to_csv(src / "part-0.csv", index=False)
    # an index other than RangeIndex(0, n): its bytes would not read back to the frame
    # ingest stores (written without the index), so it is encoded again
    df.set_axis(pd.RangeIndex(5, 205)).to_parquet(src / "part-1.parquet")
    ws, manifest = ingest_source(tmp_path, src)
    objects = stored(ws, manifest)
    assert objects[1] != (src / "part-1.parquet").read_bytes()
    for p in manifest["partitions"]:
        back = pd.read_parquet(ws.versioner.store.local_path(p["object"]))
        assert isinstance(back.index, pd.RangeIndex) and back.index.start == 0
        np.testing.assert_array_equal(back.to_numpy(), df.to_numpy())


def test_summarize_columns_is_moments_and_sketches_in_one_pass() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.exponential(3, 50_000), "y": rng.normal(size=50_000)})
    df.loc[rng.choice(50_000, 500, replace=False), "y"] = np.nan
    moments, sketches = summarize_columns(df, ["x", "y"])
    assert moments == column_moments(df)
    assert set(sketches) == {"x", "y"}
    y = df["y"].dropna().to_numpy()
    sk = decode(sketches["y"])
    assert sk.n == y.size == moments["y"].count  # NaNs left out, every value counted
    assert (sk.get_min_value(), sk.get_max_value()) == (y.min(), y.max())
    # sorted input keeps KLL's rank-error guarantee: quantiles within its bound
    ranks = np.linspace(0.01, 0.99, 99)
    got = np.asarray(sk.get_quantiles(ranks.tolist()))
    true_ranks = np.searchsorted(np.sort(y), got) / y.size
    assert np.abs(true_ranks - ranks).max() <= 2 * sk.normalized_rank_error(False)
    assert decode(sketch_columns(df, ["y"])["y"]).n == y.size


def test_moments_match_numpy() -> None:
    v = np.random.default_rng(5).normal(1e6, 3.0, 100_001)
    m = Moments.of(v)
    assert m.sum == pytest.approx(v.sum(), rel=1e-12)
    assert m.sumsq == pytest.approx(float(np.square(v).sum()), rel=1e-12)
    assert m.std == pytest.approx(v.std(ddof=1), rel=1e-9)
    assert (m.min, m.max, m.count, m.missing) == (v.min(), v.max(), v.size, 0)


def test_sketch_merger_merges_one_part_at_a_time() -> None:
    rng = np.random.default_rng(9)
    parts = [sketch_columns(pd.DataFrame({"a": rng.normal(size=5_000)}), ["a"])
             for _ in range(4)]
    merger = SketchMerger(DEFAULT_K)
    for part in parts:
        merger.add(part)
    one_by_one = decode(merger.encoded()["a"])
    at_once = decode(merge_sketches(parts)["a"])
    assert one_by_one.n == at_once.n == 20_000
    assert one_by_one.get_min_value() == at_once.get_min_value()
    assert abs(one_by_one.get_quantile(0.5) - at_once.get_quantile(0.5)) < 0.05
