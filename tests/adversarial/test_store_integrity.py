"""Attacks on the store's own documents (issue 19 items 1, 2, 11 and part of 16).

Run on the local store and, where the backend's listing or writes matter, on the S3
(moto) and GCS emulator servers of tests/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mlops.errors import BadInputError, IntegrityError
from mlops.runner import run_pipeline
from mlops.store.retention import apply_retention, plan_retention
from mlops.store.workspace import Workspace
from tests import _workers
from tests.adversarial.conftest import CliResult

OBJECT_STORES = ["local", "s3", "gcs"]
FAR_FUTURE = "29991231T235959.000000Z"


def _write(ws_store: Any, key: str, doc: Any) -> None:
    ws_store.write_bytes(key, json.dumps(doc).encode())


# --- item 1: a repair writes only to the address of the manifest's own content hash ---
@pytest.mark.parametrize("backend", OBJECT_STORES)
def test_swapped_object_key_is_refused_and_never_overwrites_another_version(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    versioner = workspace.versioner
    v1 = versioner.register(_workers.frame(1))
    v2 = versioner.register(_workers.frame(2))
    m1, m2 = versioner.get_metadata(v1), versioner.get_metadata(v2)
    v2_bytes = versioner.store.read_bytes(m2["object"])
    # The attack: V1's manifest names V2's object.
    _write(versioner.store, versioner.manifest_key(v1), {**m1, "object": m2["object"]})

    with pytest.raises(IntegrityError) as err:
        versioner.register(_workers.frame(1))  # the "repair" of V1
    assert err.value.exit_code == 2 and v1 in str(err.value)
    assert versioner.store.read_bytes(m2["object"]) == v2_bytes  # V2 untouched
    with pytest.raises(IntegrityError, match=f"{v1}.*{v1}.json"):
        versioner.load(v1)
    assert versioner.load(v2)[0].equals(_workers.frame(2))

    code, out, _ = run_cli("gc", "--check", "--json")
    problems = {p["key"]: p["problem"] for p in out["problems"]}
    assert code == 2 and "not the address of its content hash" in problems[
        f"data/versions/{v1}.json"]
    # gc keeps V1's real object: the swapped manifest makes every data object suspect.
    assert run_cli("gc", "--grace-seconds", "0")[0] == 0
    assert versioner.store.exists(m1["object"]) and versioner.store.exists(m2["object"])


# --- item 2: forged index markers never reorder versions or steer retention -----------
@pytest.mark.parametrize("backend", OBJECT_STORES)
def test_forged_future_markers_do_not_make_retention_delete_the_newest(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    versioner, registry = workspace.versioner, workspace.registry
    data = [versioner.register(_workers.frame(10 + i)) for i in range(7)]  # oldest first
    models = [registry.save({"m": i}, f"m{i}") for i in range(7)]
    registry.set_alias(models[-1])
    for vid in data[:5]:  # far-future markers for the five oldest ids
        versioner.store.write_bytes(f"index/{FAR_FUTURE}~{vid}", b"")
    for vid in models[:5]:
        registry.store.write_bytes(f"_index/{FAR_FUTURE}~{vid}", b"")

    assert versioner.list_versions() == data[::-1]
    assert registry.list_versions() == models[::-1]
    code, out, _ = run_cli("gc", "--check", "--json")
    forged = {p["key"] for p in out["problems"] if "disagrees" in p["problem"]}
    assert code == 2 and forged == {f"data/index/{FAR_FUTURE}~{v}" for v in data[:5]} | {
        f"models/_index/{FAR_FUTURE}~{v}" for v in models[:5]}

    result = apply_retention(workspace, plan_retention(workspace, 5, 5))
    assert {d.version_id for d in result.deleted} == {*data[:2], *models[:2]}
    assert versioner.list_versions() == data[:1:-1]
    assert registry.list_versions() == models[:1:-1]
    # A forged marker of a kept version is damage gc collects (its mtime ages it).
    plan = run_cli("gc", "--grace-seconds", "0", "--json")[1]
    assert f"data/index/{FAR_FUTURE}~{data[2]}" in plan["orphans"]["deleted"]


# --- item 11: records of the wrong type are damage (exit 2 naming version and file) ---
@pytest.mark.parametrize("backend", ["local"])
@pytest.mark.parametrize(("field", "value"), [
    ("content_hash", None), ("partitions", "abc"), ("rows", "many"), ("columns", {}),
    ("stats", [1])])
def test_data_manifest_of_wrong_types_is_exit_2_naming_version_and_file(
        workspace: Workspace, run_cli: Callable[..., CliResult], field: str,
        value: Any) -> None:
    versioner = workspace.versioner
    vid = versioner.register(_workers.frame(3))
    doc = versioner.get_metadata(vid)
    if value is None:
        del doc[field]
    else:
        doc[field] = value
        if field == "partitions":
            doc["kind"] = "partitioned"
    _write(versioner.store, versioner.manifest_key(vid), doc)
    with pytest.raises(BadInputError, match=f"data version '{vid}'.*{vid}.json.*{field}"):
        versioner.load(vid)
    code, out, _ = run_cli("gc", "--check", "--json")
    assert code == 2 and field in {p["key"]: p["problem"] for p in out["problems"]}[
        f"data/versions/{vid}.json"]


@pytest.mark.parametrize("backend", ["local"])
def test_data_manifest_that_is_a_json_list_is_damage_not_unknown(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    versioner = workspace.versioner
    vid = versioner.register(_workers.frame(4))
    _write(versioner.store, versioner.manifest_key(vid), [versioner.get_metadata(vid)])
    with pytest.raises(IntegrityError, match=f"data version '{vid}'.*{vid}.json.*list"):
        versioner.load(vid)
    code, _, err = run_cli("show", "data", vid)
    assert code == 2 and f"{vid}.json" in err and "unknown" not in err


@pytest.mark.parametrize("backend", ["local"])
def test_alias_event_that_is_empty_is_exit_2_naming_the_file(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "m1")
    registry.set_alias("m1")
    registry.set_alias("m1", "staging")
    events = registry.store.keys("_aliases/staging/events")
    registry.store.write_bytes(f"_aliases/staging/events/{events[-1]}", b"{}")
    registry.store.delete("_aliases/staging/current.json")  # readers derive it again
    with pytest.raises(IntegrityError, match=events[-1]) as err:
        registry.get_alias("staging")
    assert err.value.exit_code == 2
    code, out, _ = run_cli("gc", "--check", "--json")  # reported, never a crash
    assert code == 2 and any("alias" in p["problem"] for p in out["problems"])


@pytest.mark.parametrize("backend", ["local"])
def test_models_list_each_record_with_its_status(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "good")
    registry.save({"m": 2}, "bad")
    _write(registry.store, "bad/metadata.json", {**registry.get_metadata("bad"),
                                                 "metadata": "x"})
    code, rows, _ = run_cli("versions", "models", "--json")
    status = {r["id"]: r["status"] for r in rows}
    assert code == 0 and status["good"] == "ok" and "metadata" in status["bad"]


@pytest.mark.parametrize("backend", ["local"])
def test_serving_model_with_metadata_of_wrong_type_retrains(
        workspace: Workspace) -> None:
    config = workspace.config
    run_pipeline(config, run_id="r1")
    serving = workspace.registry.get_alias()
    assert serving is not None
    _write(workspace.registry.store, f"{serving}/metadata.json",
           {**workspace.registry.get_metadata(serving), "metadata": "x"})
    summary = run_pipeline(config, run_id="r2")
    assert summary["retrained"] and "serving_model_unusable" in summary["reasons"]


@pytest.mark.parametrize("backend", ["local"])
def test_serving_model_with_a_damaged_schema_retrains(workspace: Workspace) -> None:
    config = workspace.config
    run_pipeline(config, run_id="r1")
    doc = workspace.registry.get_metadata("r1")
    _write(workspace.registry.store, "r1/metadata.json",
           {**doc, "metadata": {**doc["metadata"], "schema": "bad"}})
    summary = run_pipeline(config, run_id="r2")
    assert summary["retrained"] and "serving_model_unusable" in summary["reasons"]


@pytest.mark.parametrize("backend", ["local"])
def test_metrics_record_that_is_a_list_is_exit_2_naming_the_file(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    run_pipeline(workspace.config, run_id="r1")
    name = workspace.monitor.store.keys("metrics")[-1]
    _write(workspace.monitor.store, f"metrics/{name}", [1, 2])
    code, _, err = run_cli("history")
    assert code == 2 and name in err
