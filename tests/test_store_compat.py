"""A store written by the previous release reads the same; records keep unknown keys.

``tests/data/store-0.1.0`` was written once by the code at e9f406e (``run_pipeline``
with ``run_id="run-1"``, a second data version ``extra-data``, a model ``seed-model``
saved through the seed API, a promote and a rollback, a metrics record), and
``store-0.1.0.expected.json`` is what that code read back from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mlops.config import Config
from mlops.data import generate_synthetic_data, split_xy
from mlops.records import AliasEvent, DataManifest, ModelRecord, TrainingFacts
from mlops.runner import run_pipeline
from mlops.store.filesystem import open_store
from mlops.store.registry import ModelRegistry
from mlops.store.versioner import DataVersioner
from mlops.store.workspace import Workspace

DATA = Path(__file__).parent / "data"
OLD = DATA / "store-0.1.0"
EXPECTED = json.loads((DATA / "store-0.1.0.expected.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path) -> Workspace:
    """A copy of the old store (tests never change the committed one)."""
    root = tmp_path / "store"
    shutil.copytree(OLD, root)
    return Workspace.open(Config.from_dict({"storage": {"uri": str(root)},
                                            "data": {"n_samples": 200, "n_features": 3},
                                            "reporting": {"enabled": False}}))


def test_old_store_reads_as_the_old_release_read_it(old_store: Workspace) -> None:
    ws = old_store
    assert ws.versioner.list_versions() == EXPECTED["data_versions"]
    assert ws.registry.list_versions() == EXPECTED["model_versions"]
    assert [m.to_dict() for m in ws.versioner.list_records()] == EXPECTED["data_manifests"]
    assert [r.to_dict() for r in ws.registry.list_records()] == EXPECTED["model_records"]
    assert ws.registry.get_alias() == EXPECTED["production"]
    assert ws.registry.alias_history() == EXPECTED["alias_history"]
    assert ws.monitor.get_history() == EXPECTED["history"]
    assert ws.list_runs() == EXPECTED["runs"]
    for vid, manifest in zip(EXPECTED["data_versions"], EXPECTED["data_manifests"],
                             strict=True):
        df, meta = ws.versioner.load(vid)
        assert meta == manifest and len(df) == manifest["rows"]
    model, record = ws.registry.load("run-1")
    # Every field the old release returned, and (issue 18 item 10) the saved metadata at
    # the top level, as the seed API documents.
    old = EXPECTED["model_records"][1]
    assert {k: record[k] for k in old} == old
    assert {k: record[k] for k in old["metadata"]} == old["metadata"]
    facts = ws.registry.get_record("run-1").training()
    assert facts.accuracy == record["metadata"]["accuracy"]
    assert facts.promote is True and facts.data_version == EXPECTED["data_versions"][1]
    x, _ = split_xy(ws.versioner.load(facts.data_version)[0], "target")
    assert len(model.predict(x)) == len(x)


def test_new_release_keeps_working_on_the_old_store(old_store: Workspace) -> None:
    ws = old_store
    before = {p.relative_to(OLD): p.read_bytes() for p in OLD.rglob("*") if p.is_file()}
    summary = run_pipeline(ws.config, run_id="run-2")
    assert summary["data_version"] == EXPECTED["data_versions"][1]  # same synthetic data
    assert summary["model_version"] == "run-1" and not summary["retrained"]
    ws.registry.set_alias("seed-model", reason="again", by="test")
    assert ws.registry.get_alias() == "seed-model"
    ws.registry.rollback(reason="back", by="test")
    assert ws.registry.get_alias() == "run-1"
    assert ws.registry.alias_events()[-1].action == "rollback"
    root = Path(ws.store.uri.removeprefix("file://"))
    for rel, data in before.items():  # nothing written by the old release changed...
        if rel.name == "current.json":
            continue  # ...but the alias pointers, replaced on every move by design
        assert (root / rel).read_bytes() == data, rel


def test_list_versions_returns_ids_newest_first_as_the_seed_says(tmp_path: Path) -> None:
    # Seed: "list_versions(): List version ids, newest first." for both classes, and
    # "get_latest_version(): Return latest version id or None".
    versioner = DataVersioner(str(tmp_path / "data"))
    registry = ModelRegistry(str(tmp_path / "models"))
    assert versioner.list_versions() == [] and versioner.get_latest_version() is None
    assert registry.list_versions() == [] and registry.get_latest_version() is None
    ids = [versioner.register(generate_synthetic_data(20, 2, seed)) for seed in range(3)]
    for name in ("m-a", "m-b", "m-c"):
        registry.save({"name": name}, name)
    assert versioner.list_versions() == ids[::-1]
    assert all(isinstance(v, str) for v in versioner.list_versions())
    assert registry.list_versions() == ["m-c", "m-b", "m-a"]
    assert versioner.get_latest_version() == ids[-1]
    assert registry.get_latest_version() == "m-c"
    assert [r.id for r in registry.list_records(limit=2)] == ["m-c", "m-b"]
    assert registry.list_versions(limit=1) == ["m-c"]


def test_unknown_keys_are_kept_through_a_round_trip(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    versioner = DataVersioner(store.child("data"))
    vid = versioner.register(pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]}))
    key = versioner.manifest_key(vid)
    doc = {**versioner.store.read_json(key), "lineage": {"parent": "x"}}
    versioner.store.write_json(key, doc)  # as a later release might write it
    record = versioner.get_record(vid)
    assert record.extra == {"lineage": {"parent": "x"}}
    assert versioner.get_metadata(vid) == doc
    assert DataManifest.from_dict(record.to_dict()) == record
    assert versioner.load(vid)[1]["lineage"] == {"parent": "x"}


def test_records_round_trip_and_defaults() -> None:
    rec = ModelRecord(id="m", created_at="t", artifact="m/a.joblib", sha256="0" * 64,
                      metadata={"accuracy": 0.5, "train_rows": 3, "test_rows": 1})
    assert ModelRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    facts = rec.training()
    assert (facts.promote, facts.promotion_reason, facts.champion_version) == (True, "", None)
    assert TrainingFacts.from_dict(facts.to_dict()) == facts
    event = AliasEvent(alias="production", action="promote", version="m", event="e.json")
    assert "event" not in event.stored() and AliasEvent.from_dict(event.to_dict()) == event
    with pytest.raises(TypeError, match="sha256"):
        ModelRecord.from_dict({"id": "m", "created_at": "t", "artifact": "a"})
