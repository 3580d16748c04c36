"""One commit protocol (issue 23 item 3): every versioned store commits through
:meth:`mlops.store.versioned.VersionedStore.commit` (payload, index marker, exclusive
commit document, the duplicate marker removed when another writer won).

Data and model versions killed mid-commit are covered by tests/test_crash.py; here the
predictions versions (which had no crash points before the protocol was shared), the
partitioned data versions of the Dask engine, and a lost race for each kind of store.
Crashes run in a forked child, as in tests/test_crash.py, on the local store (the
backends are covered there).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops.records import PredictionsManifest
from mlops.scoring import PredictionsStore
from mlops.store import layout
from mlops.store.filesystem import Store, open_store
from mlops.store.registry import ModelRegistry
from mlops.store.versioned import (
    AFTER_INDEX,
    AFTER_PAYLOAD,
    VersionedStore,
    created_stamp,
    marker_stamp,
)
from mlops.store.versioner import DataVersioner
from tests import _workers
from tests.crashing import crash

MLOPS = Path(__file__).resolve().parents[1] / "mlops"


def predictions_manifest(vid: str, rows: int = 3) -> PredictionsManifest:
    return PredictionsManifest(id=vid, created_at="", content_hash=vid * 4,
                               hash_algorithm="sha256", rows=rows, model_version="m1",
                               run_id="run-1", columns=[{"name": "prediction",
                                                         "dtype": "float64"}])


def commit_predictions(root: str, vid: str) -> None:
    PredictionsStore(open_store(root).child(layout.PREDICTIONS)).commit_manifest(
        predictions_manifest(vid))


def index_keys(versions: VersionedStore[Any]) -> list[str]:
    return [key for key, _ in versions.index.entries()]


@pytest.mark.parametrize("point", [AFTER_PAYLOAD, AFTER_INDEX])
def test_a_predictions_commit_killed_midway_is_invisible_and_can_be_redone(
        tmp_path: Path, point: str) -> None:
    root = str(tmp_path / "store")
    preds = PredictionsStore(open_store(root).child(layout.PREDICTIONS))
    crash(commit_predictions, root, "0123456789abcdef", point=point)
    assert not preds.exists("0123456789abcdef")
    assert preds.list_versions() == [] and preds.get_latest_version() is None
    # after-index: the marker is there, and skipped (its document is missing)
    assert len(index_keys(preds)) == (1 if point == AFTER_INDEX else 0)

    commit_predictions(root, "0123456789abcdef")
    assert preds.list_versions() == ["0123456789abcdef"]
    assert preds.get_record("0123456789abcdef").rows == 3


def register_partitioned_then_crash(root: str, source_dir: str) -> None:
    from distributed import Client, LocalCluster

    from mlops.store.partitions import register_partitioned
    from mlops.store.sources import list_table_source

    versioner = DataVersioner(open_store(root).child("data"))
    source, files = list_table_source(source_dir)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        register_partitioned(client, source, files, versioner, "target")


def test_a_partitioned_version_killed_after_its_marker_is_invisible(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    source = tmp_path / "source"
    source.mkdir()
    for i in range(2):
        _workers.frame(i).to_parquet(source / f"part-{i}.parquet", index=False)
    root = str(tmp_path / "store")
    crash(register_partitioned_then_crash, root, str(source), point=AFTER_INDEX,
          start="spawn")
    versioner = DataVersioner(open_store(root).child("data"))
    [(marker, vid)] = versioner.index.entries()  # the commit reached the index...
    assert not versioner.exists(vid)  # ...not the manifest: readers skip it
    assert versioner.list_versions() == [] and versioner.get_latest_version() is None
    payload = [k for k in versioner.store.walk() if k.startswith(f"{layout.DATA_OBJECTS}/")]
    assert len(payload) == 4  # each partition and its statistics are written
    assert marker.startswith(f"{layout.DATA_INDEX}/")


def stores(root: Store) -> list[VersionedStore[Any]]:
    return [DataVersioner(root.child("data")), ModelRegistry(root.child("models")),
            PredictionsStore(root.child(layout.PREDICTIONS))]


@pytest.mark.parametrize("kind", range(3), ids=["data", "models", "predictions"])
def test_the_writer_that_loses_a_commit_race_removes_its_marker(tmp_path: Path,
                                                                kind: int) -> None:
    """Two writers of one id: the exclusive document write decides; the loser gets None
    and leaves no duplicate marker behind (the winner's stays, at its document's time)."""
    versions = stores(open_store(tmp_path / "store"))[kind]
    seen: list[str] = []

    def document(created_at: str) -> dict[str, Any]:
        seen.append(created_at)
        return {"id": "v1", "created_at": created_at, "writer": len(seen)}

    won = versions.commit("v1", document)
    assert won is not None and won["writer"] == 1
    assert versions.commit("v1", document) is None
    [marker] = index_keys(versions)
    assert versions.store.read_json(versions.commit_key("v1"))["writer"] == 1
    assert marker_stamp(marker) == created_stamp(won["created_at"])
    assert len(seen) == 2


def test_a_data_version_raced_by_another_writer_keeps_one_marker(tmp_path: Path) -> None:
    """The pre-check misses a writer that commits in between: register still returns the
    same id (same content) and the index holds one marker for it."""
    versioner = DataVersioner(open_store(tmp_path / "store").child("data"))
    other = DataVersioner(open_store(tmp_path / "store").child("data"))
    frame = _workers.frame(5)
    real = versioner._record_or_none

    def not_yet(vid: str) -> Any:  # the other writer commits right after our pre-check
        versioner._record_or_none = real  # type: ignore[method-assign]
        assert other.register(frame) == vid
        return None

    versioner._record_or_none = not_yet  # type: ignore[method-assign]
    vid = versioner.register(frame)
    assert versioner.list_versions() == [vid]
    assert len(index_keys(versioner)) == 1
    assert versioner.load(vid)[0].equals(frame)


def test_the_commit_crash_points_exist_once() -> None:
    """Only the shared protocol names the commit's crash points (issue 23: the
    after-index crash point exists once in the code base)."""
    places = []
    for path in sorted(MLOPS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in (AFTER_PAYLOAD, AFTER_INDEX):
                places.append((path.relative_to(MLOPS).as_posix(), node.value))
    assert places == [("store/versioned.py", AFTER_PAYLOAD),
                      ("store/versioned.py", AFTER_INDEX)]


def test_records_written_by_the_protocol_read_back_typed(tmp_path: Path) -> None:
    """The document each store commits is its typed record (created_at = marker time)."""
    root = open_store(tmp_path / "store")
    data, models, preds = stores(root)
    assert isinstance(data, DataVersioner) and isinstance(models, ModelRegistry)
    assert isinstance(preds, PredictionsStore)
    vid = data.register(pd.DataFrame({"a": [1, 2], "target": [0, 1]}))
    models.save({"m": 1}, "m1")
    pid = preds.commit_manifest(predictions_manifest("fedcba9876543210"))
    for versions, version in ((data, vid), (models, "m1"), (preds, pid)):
        [(marker, listed)] = versions.index.entries()
        record = versions.get_record(version)
        assert listed == version and versions.list_versions() == [version]
        assert marker_stamp(marker) == created_stamp(record.created_at)
