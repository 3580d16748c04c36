"""Shared fixtures of the table tests (issue 18: out-of-sample scoring, small batches,
validation, table options): real tables from scikit-learn's offline data sets, written as
CSV (pandas engine) or Parquet (Dask engine) sources; one in-process LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import skip_or_fail

try:
    from distributed import Client, LocalCluster

    from mlops.engines.dask import NO_DASHBOARD
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")

ENGINES = ["pandas", "dask"]


@pytest.fixture(scope="package")
def client() -> Iterator[Any]:
    """One in-process cluster; the Dask steps find it as the current client."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """``pandas`` or ``dask`` (parametrized indirectly); dask starts the cluster."""
    name: str = request.param
    if name == "dask":
        request.getfixturevalue("client")
    return name


def cancer() -> pd.DataFrame:
    """scikit-learn's breast cancer table (569 rows, 30 numeric features, ``target``)."""
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


def write_source(folder: Path, frames: list[pd.DataFrame], engine: str) -> str:
    """A folder of files, one per chunk (CSV for pandas, Parquet for Dask); its glob."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, df in enumerate(frames):
        if engine == "dask":
            df.to_parquet(folder / f"part-{i:03d}.parquet", index=False)
        else:
            df.to_csv(folder / f"part-{i:03d}.csv", index=False)
    return str(folder / ("*.parquet" if engine == "dask" else "*.csv"))
