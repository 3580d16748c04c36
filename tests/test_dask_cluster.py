"""The Dask engine on real worker processes (each with its own memory limit).

Workers die here as an OOM kill would end them: ``os._exit`` inside a partition task
(the ``partition-task`` crash point, or the kill-once hook). The scheduler runs the
task again elsewhere; when every attempt dies the step fails with exit 1 naming
the worker, and nothing is committed. The data-4x-the-memory-limit check is the
``make bench`` row D2 (``benchmarks/bench_dask.py``): at that size it takes minutes.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import Config
from mlops.data import generate_synthetic_data
from mlops.engines.dask import NO_DASHBOARD
from mlops.errors import ClusterError
from mlops.partitions import KILL_ONCE_ENV
from mlops.pipeline import ingest
from mlops.storage import CRASH_ENV
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

try:
    import dask
    from distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")


@pytest.fixture
def cluster_with_env(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One worker process (600 MB limit), started with the environment ``request.param[0]``;
    the scheduler gives a task ``request.param[1]`` retries after its worker dies."""
    env, retries = request.param
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         memory_limit="600MB", **NO_DASHBOARD,
                         env=env) as cluster, Client(cluster) as client:
        yield client


def _source(tmp_path: Path, n: int = 3) -> Config:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        generate_synthetic_data(300, 4, i).to_parquet(src / f"part-{i}.parquet", index=False)
    return Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                             "data": {"source": str(src), "engine": "dask"}})


#: Unique per test process: another clone's suite running at the same time on this host
#: must not see (or remove) this run's flag.
FLAG = os.path.join(tempfile.gettempdir(), f"mlops-test-kill-once-{uuid.uuid4().hex}")


@pytest.mark.parametrize("cluster_with_env", [({KILL_ONCE_ENV: FLAG}, 1)], indirect=True)
def test_a_killed_worker_task_runs_again_and_the_version_commits(
        cluster_with_env: Any, tmp_path: Path) -> None:
    if os.path.exists(FLAG):
        os.unlink(FLAG)
    try:
        before = set(dict(cluster_with_env.run(os.getpid)).values())
        cfg = _source(tmp_path, 2)
        result = ingest(cfg, "run-1", Workspace.open(cfg))
        assert os.path.exists(FLAG)  # a worker did die in a partition task
        after = set(dict(cluster_with_env.run(os.getpid)).values())
        assert after != before  # the nanny replaced it
        manifest = Workspace.open(cfg).versioner.get_metadata(result.data_version)
        assert len(manifest["partitions"]) == 2 and manifest["rows"] == 600
    finally:
        if os.path.exists(FLAG):
            os.unlink(FLAG)


@pytest.mark.parametrize("cluster_with_env", [({CRASH_ENV: "partition-task"}, 0)],
                         indirect=True)
def test_workers_dying_for_good_fail_the_step_with_exit_1_naming_the_worker(
        cluster_with_env: Any, tmp_path: Path) -> None:
    cfg = _source(tmp_path, 1)
    with pytest.raises(ClusterError, match=r"dask worker tcp://127\.0\.0\.1:\d+ died while "
                                           r"running task .*nothing was committed") as err:
        ingest(cfg, "run-1", Workspace.open(cfg))
    assert err.value.exit_code == 1
    ws = Workspace.open(cfg)
    assert ws.versioner.list_versions() == []
    assert not ws.store.exists("data/versions")


def _warm() -> int:
    """Import what training needs, then the worker's resident memory (bytes)."""
    import lightgbm.dask  # noqa: F401
    import psutil

    import mlops.partitions
    import mlops.training  # noqa: F401

    return int(psutil.Process().memory_info().rss)


def _peak() -> int:
    """The worker's peak resident memory since it started (bytes): VmHWM, not ru_maxrss,
    which a spawned worker inherits from its parent across fork and exec (a large pytest
    process made every worker report the parent's peak)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def test_lightgbm_trains_on_worker_processes_with_memory_limits_none_killed(
        tmp_path: Path) -> None:
    """The train step on 2 worker processes with a memory_limit each: LightGBM's Dask
    regressor trains on every row (a categorical feature included), no worker is
    restarted or killed, and every worker's peak memory stays below the limit's 95%
    (where the nanny kills).

    What this cannot show at a test's size: a worker process with pandas, pyarrow,
    scikit-learn and LightGBM loaded already uses ~250 MB and grows by ~115 MB of fixed
    costs in a step, so data larger than one worker's limit means several hundred MB.
    That check (1.25 GB of data on 6 workers x 1 GB, every worker's peak memory
    measured) is ``make bench`` row D6 (``benchmarks/bench_dask.py``, docs/scaling.md)."""
    import numpy as np
    import pandas as pd

    from mlops.pipeline import train
    from mlops.registry import PRODUCTION

    src = tmp_path / "src"
    src.mkdir()
    n_files, rows = 4, 50_000
    for i in range(n_files):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(rows, 8))
        frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(8)])
        frame["shop"] = rng.choice(["a", "b", "c", "d"], rows)
        frame["target"] = x[:, 0] * 2 - x[:, 1] + (frame["shop"] == "d") * 3 + \
            rng.normal(0, 0.3, rows)
        frame.to_parquet(src / f"part-{i}.parquet", index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src), "engine": "dask"},
                            "training": {"model_type": "lightgbm",
                                         "params": {"n_estimators": 10, "num_leaves": 15}}})
    # A worker paused for memory (80% of its limit by default) while LightGBM trains
    # stalls every other worker's training task (they wait for it on LightGBM's network):
    # pausing is off here, killing at 95% is not.
    with dask.config.set({"distributed.worker.memory.pause": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         memory_limit="500MB", **NO_DASHBOARD) as cluster, \
            Client(cluster) as client:
        before = client.run(_warm)
        pids = client.run(os.getpid)
        ws = Workspace.open(cfg)
        ingest(cfg, "run-1", ws)
        result = train(cfg, "run-1", ws)
        peaks = client.run(_peak)
        assert client.run(os.getpid) == pids  # no worker restarted (the nanny kills at 95%)
    assert result.task == "regression" and result.promoted
    assert result.train_rows + result.test_rows == n_files * rows
    meta = ws.registry.get_metadata(result.model_version)["metadata"]
    assert meta["training_sample"]["rows"] == result.train_rows  # every training row
    assert result.metrics["r2"] is not None and result.metrics["r2"] > 0.7
    assert max(peaks.values()) < 0.95 * 500e6, peaks
    assert min(peaks[w] - before[w] for w in peaks) > 0
    assert ws.registry.get_alias(PRODUCTION) == result.model_version


def test_lightgbm_trains_through_dask_address_without_a_default_client(
        tmp_path: Path) -> None:
    """A step's client is not the process-wide default (dask.address, the ephemeral
    cluster, the local one): LightGBM's Dask training, which looks the client up itself,
    must still find it (it failed with "No clients found", reported as bad
    training.params)."""
    from distributed import default_client

    from mlops.pipeline import train

    cfg = _source(tmp_path, 2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster:
        with pytest.raises(ValueError, match="No clients found"):
            default_client()
        cfg = Config.from_dict({**cfg.to_dict(), "dask": {"address": cluster.scheduler_address},
                                "training": {"model_type": "lightgbm",
                                             "params": {"n_estimators": 5}}})
        ws = Workspace.open(cfg)
        ingest(cfg, "run-1", ws)
        result = train(cfg, "run-1", ws)
    assert result.promoted and result.train_rows + result.test_rows == 600
    model, _ = ws.registry.load(result.model_version)
    assert len(model.predict(generate_synthetic_data(10, 4, 9).drop(columns="target"))) == 10
