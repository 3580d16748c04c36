"""The Dask engine on real worker processes (each with its own memory limit).

Workers die here as an OOM kill would end them: ``os._exit`` inside a partition task
(the ``partition-task`` crash point, or the kill-once hook). The scheduler runs the
task again elsewhere; when every attempt dies the step fails with exit 1 naming
the worker, and nothing is committed. The data-4x-the-memory-limit check is the
``make bench`` row D2 (``benchmarks/bench_dask.py``): at that size it takes minutes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import Config
from mlops.dask_engine import NO_DASHBOARD
from mlops.data import generate_synthetic_data
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


FLAG = "/tmp/mlops-test-kill-once-flag"


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
