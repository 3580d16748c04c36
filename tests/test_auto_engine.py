"""``data.engine: auto`` (issue 24 item 4): the documented rule, the estimate it reads,
the container limit it compares with, and a night on each side of the rule.

The memory limit is read from a real cgroup-style file tree (``memory.max``) in a temp
folder, the way :func:`mlops.engines.dask.container_memory_limit` reads a pod's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops.config import Config
from mlops.engines import auto as auto_engine
from mlops.engines import dask as dask_engine
from mlops.engines.auto import AUTO_MEMORY_FACTOR, CSV_EXPANSION, choose_engine
from mlops.errors import ConfigError
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace

MiB = 2**20


# --- the rule, a pure function -------------------------------------------------------------
def test_rule_picks_pandas_up_to_the_factor_and_dask_beyond() -> None:
    limit = 1000 * MiB
    at = choose_engine(limit // AUTO_MEMORY_FACTOR, limit)
    assert at.engine == "pandas"  # exactly at the bound: still pandas
    over = choose_engine(limit // AUTO_MEMORY_FACTOR + 1, limit)
    assert over.engine == "dask"
    assert choose_engine(0, limit).engine == "pandas"
    # The reason says the numbers compared, for the log and the summary.
    assert "250.0 MiB" in at.reason and "x 4" in at.reason and "1,000.0 MiB" in at.reason
    assert "> memory limit" in over.reason
    assert choose_engine(300 * MiB, limit, factor=2).engine == "pandas"


# --- the memory limit: the container's, else the machine's ---------------------------------
def test_memory_limit_is_the_containers_then_the_machines(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("536870912\n")
    assert auto_engine.memory_limit(str(tmp_path), {}) == 512 * MiB
    (tmp_path / "memory.max").write_text("max\n")  # a cgroup without a limit
    assert auto_engine.memory_limit(str(tmp_path), {"MLOPS_MEMORY_LIMIT": "1073741824"}) \
        == 1024 * MiB
    machine = auto_engine.memory_limit(str(tmp_path), {})
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
    assert abs(machine - total) < 64 * MiB


# --- the estimate: listing and footers only --------------------------------------------------
def test_estimate_reads_parquet_footers_and_csv_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20_000, 5)), columns=list("abcde"))
    src = tmp_path / "src"
    src.mkdir()
    frame.to_parquet(src / "part-0.parquet")
    frame.to_parquet(src / "part-1.parquet")
    meta = pq.ParquetFile(src / "part-0.parquet").metadata
    one = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    cfg = Config.from_dict({"data": {"source": str(src)}})
    assert auto_engine.estimate_source_bytes(cfg.data) == 2 * one
    # Close to the frame's real in-memory size (float64: 8 bytes a value).
    assert 0.8 < 2 * one / (2 * frame.memory_usage(index=False).sum()) < 1.3
    csv = tmp_path / "x.csv"
    frame.to_csv(csv, index=False)
    cfg = Config.from_dict({"data": {"source": str(csv)}})
    assert auto_engine.estimate_source_bytes(cfg.data) == int(csv.stat().st_size * CSV_EXPANSION)
    synthetic = Config.from_dict({"data": {"n_samples": 1000, "n_features": 10}})
    assert auto_engine.estimate_source_bytes(synthetic.data) == 1000 * 11 * 8


def test_named_engines_are_left_alone_and_an_unlistable_source_falls_back() -> None:
    cfg = Config.from_dict({"data": {"engine": "pandas"}})
    assert auto_engine.resolve(cfg, limit=1) == (cfg, None)
    missing = Config.from_dict({"data": {"engine": "auto", "source": "/nonexistent/x.parquet"}})
    resolved, choice = auto_engine.resolve(missing, limit=10 * MiB)
    assert choice is not None and resolved.data.engine == "pandas"
    assert "could not be sized" in choice.reason


def test_auto_with_a_run_cluster_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"dask\.cluster"):
        Config.from_dict({"data": {"engine": "auto"}, "dask": {"cluster": "ephemeral"}})


# --- a night on each side of the rule ---------------------------------------------------------
@pytest.fixture
def pod_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cgroup v2 tree whose ``memory.max`` the test writes (the pod's limit)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(dask_engine, "CGROUP_ROOT", str(root))
    yield root / "memory.max"


def _night(tmp_path: Path, source: Path) -> Config:
    return Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                             "data": {"source": str(source), "engine": "auto"},
                             "dask": {"processes": False, "n_workers": 1,
                                      "memory_limit": "0"}})  # workers unbounded here


def _source(tmp_path: Path) -> Path:
    from mlops.data import generate_synthetic_data

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        generate_synthetic_data(400, 4, i).to_parquet(src / f"part-{i}.parquet", index=False)
    return src


def test_auto_night_runs_on_pandas_when_the_data_fits(
        tmp_path: Path, pod_limit: Path, caplog: pytest.LogCaptureFixture) -> None:
    pod_limit.write_text(str(512 * MiB))
    cfg = _night(tmp_path, _source(tmp_path))
    with caplog.at_level(logging.INFO, logger="mlops.engines.auto"):
        summary = run_pipeline(cfg)
    assert summary["engine"] == "pandas"
    assert any("engine auto chose pandas" in r.getMessage() for r in caplog.records)
    manifest = Workspace.open(cfg).versioner.get_metadata(summary["data_version"])
    assert manifest.get("kind") != "partitioned"  # one Parquet object: the pandas engine's


def test_auto_night_runs_on_dask_when_the_data_does_not_fit(
        tmp_path: Path, pod_limit: Path, caplog: pytest.LogCaptureFixture) -> None:
    pod_limit.write_text(str(64 * 1024))  # 64 KiB: 800 rows x 5 columns x 4 do not fit
    cfg = _night(tmp_path, _source(tmp_path))
    with caplog.at_level(logging.INFO, logger="mlops.engines.auto"):
        summary: dict[str, Any] = run_pipeline(cfg)
    assert summary["engine"] == "dask"
    assert summary["retrained"] and summary["model_version"]
    assert any("engine auto chose dask" in r.getMessage() for r in caplog.records)
    manifest = Workspace.open(cfg).versioner.get_metadata(summary["data_version"])
    assert manifest["kind"] == "partitioned"  # later steps followed ingest onto Dask


# --- mlops run on the Dask engine: one local cluster for the night --------------------------
def test_mlops_run_starts_one_local_cluster_for_all_its_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting worker processes is most of a small Dask night (``make bench`` B16): the
    steps of one ``mlops run`` share the cluster. A spy counts the real clusters started."""
    import distributed

    started: list[Any] = []
    real = distributed.LocalCluster

    def spy(*args: Any, **kwargs: Any) -> Any:
        cluster = real(*args, **kwargs)
        started.append(cluster)
        return cluster

    monkeypatch.setattr(distributed, "LocalCluster", spy)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(_source(tmp_path)), "engine": "dask"},
                            "dask": {"processes": False, "n_workers": 1, "memory_limit": "0"}})
    summary = run_pipeline(cfg)  # ingest, monitor-check and train: three steps
    assert summary["retrained"] and summary["engine"] == "dask"
    assert len(started) == 1
    assert all(c.status.name == "closed" for c in started)  # closed at the end of the run
