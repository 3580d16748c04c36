"""Attacks on partitioned (Dask engine) versions (issue 19 items 8 and 15)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.check import check_store
from mlops.config import Config
from mlops.data import generate_synthetic_data
from mlops.engines.dask import NO_DASHBOARD
from mlops.errors import BadInputError
from mlops.pipeline import ingest, monitor_check, train
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

try:
    from distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - the dev extra installs it
    skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process cluster for the module; steps find it as the current client."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def _ingested(tmp_path: Path, engine: str = "dask") -> tuple[Config, Workspace, str]:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        generate_synthetic_data(300, 3, i).to_parquet(src / f"part-{i}.parquet", index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src), "engine": engine}})
    ws = Workspace.open(cfg)
    return cfg, ws, ingest(cfg, "r1", ws).data_version


def test_deleted_partition_is_exit_2_naming_the_version(client: Any, tmp_path: Path) -> None:
    cfg, ws, vid = _ingested(tmp_path)
    train(cfg, "r1", ws)
    ingest(cfg, "r2", ws)
    part = ws.versioner.get_metadata(vid)["partitions"][1]["object"]
    ws.versioner.store.delete(part)
    with pytest.raises(BadInputError, match=f"data version '{vid}' partition 1") as err:
        monitor_check(cfg, "r2", ws)
    assert err.value.exit_code == 2 and "missing" in str(err.value)


def test_swapped_fingerprint_digest_is_not_trusted(client: Any, tmp_path: Path) -> None:
    cfg, ws, _ = _ingested(tmp_path)
    data = ws.versioner.store
    entries = {k: data.read_json(k) for k in data.walk("fingerprints")}
    by_source = {e["source"].rsplit("/", 1)[-1]: (k, e) for k, e in entries.items()}
    key0, entry0 = by_source["part-0.parquet"]
    _, entry1 = by_source["part-1.parquet"]
    data.write_json(key0, {**entry0, "digest": entry1["digest"]})  # the attack
    problems = {p.key: p.problem for p in check_store(ws)}
    assert "checksum differs" in problems[f"data/{key0}"]
    generate_synthetic_data(300, 3, 7).to_parquet(tmp_path / "src" / "part-2.parquet",
                                                  index=False)
    vid = ingest(cfg, "r2", ws).data_version
    parts = ws.versioner.get_metadata(vid)["partitions"]
    assert parts[0]["digest"] == entry0["digest"] != parts[1]["digest"]
    loaded = ws.versioner.load(vid)[0].compute().reset_index(drop=True)
    assert loaded.iloc[:300].equals(generate_synthetic_data(300, 3, 0))


def test_corrupt_sketch_in_a_manifest_is_exit_2_naming_the_version(
        client: Any, tmp_path: Path) -> None:
    cfg, ws, vid = _ingested(tmp_path)
    train(cfg, "r1", ws)
    doc = ws.versioner.get_metadata(vid)
    column = next(iter(doc["sketches"]))
    doc["sketches"][column] = "bm90IGEgc2tldGNo"  # base64 of "not a sketch"
    ws.versioner.store.write_json(ws.versioner.manifest_key(vid), doc)
    ingest(cfg, "r2", ws)
    with pytest.raises(BadInputError, match=f"data version '{vid}'.*{column}") as err:
        monitor_check(cfg, "r2", ws)
    assert err.value.exit_code == 2
