"""mlops gc: what is an orphan, the grace period, and the candidate-source hook."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from mlops import cli
from mlops.errors import BadInputError
from mlops.store.filesystem import open_store
from mlops.store.gc import (
    DEFAULT_GRACE_SECONDS,
    Deletion,
    GcContext,
    apply_gc,
    check_grace,
    plan_gc,
    run_gc,
)
from tests import _workers


def _workspace(store_uri: str, storage_options: dict[str, Any]) -> Any:
    root = open_store(store_uri, storage_options)
    versioner, registry, monitor = _workers.stores(store_uri, storage_options)
    return root, versioner, registry, monitor


def test_committed_versions_are_never_collected(store_uri: str,
                                                storage_options: dict[str, Any]) -> None:
    root, versioner, registry, monitor = _workspace(store_uri, storage_options)
    vid = versioner.register(_workers.frame(1))
    registry.save({"m": 1}, "m1")
    monitor.record_metrics(0.9, vid, "m1")
    before = root.walk()
    plan = run_gc(root, grace_seconds=0)
    assert plan.deletions == () and plan.young == ()
    assert root.walk() == before


def test_lost_race_leftovers_are_orphans(store_uri: str,
                                         storage_options: dict[str, Any]) -> None:
    root, versioner, registry, _ = _workspace(store_uri, storage_options)
    vid = versioner.register(_workers.frame(1))
    registry.save({"m": 1}, "m1")
    # What a writer that lost a same-id race leaves: another artifact in the model's
    # folder, and a second index marker with another time.
    root.write_bytes("models/m1/model-0123456789abcdef.joblib", b"loser")
    root.write_bytes(f"data/index/20200101T000000.000000Z~{vid}", b"")
    plan = plan_gc(root, grace_seconds=0)
    assert [(d.key, d.kind) for d in plan.deletions] == [
        (f"data/index/20200101T000000.000000Z~{vid}", "index-marker"),
        ("models/m1/model-0123456789abcdef.joblib", "model-artifact")]
    assert "lost the race" in plan.deletions[0].reason
    run_gc(root, grace_seconds=0)
    assert versioner.list_versions()[0] == vid
    assert registry.load("m1")[0] == {"m": 1}


def test_stray_temp_files_are_collected_after_the_grace(tmp_path: Path) -> None:
    root = open_store(str(tmp_path / "store"))
    versioner = _workers.stores(root.uri, {})[0]
    vid = versioner.register(_workers.frame(1))
    tmp = tmp_path / "store" / "data" / "versions" / ".tmp-deadbeef"
    tmp.write_bytes(b"partial")
    assert plan_gc(root).young == ("data/versions/.tmp-deadbeef",)
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    plan = run_gc(root)
    assert plan.deleted == ("data/versions/.tmp-deadbeef",)
    assert not tmp.exists() and versioner.exists(vid)


def test_candidate_sources_retire_versions_and_cannot_touch_others(
        store_uri: str, storage_options: dict[str, Any]) -> None:
    root, versioner, registry, _ = _workspace(store_uri, storage_options)
    old = versioner.register(_workers.frame(1))
    new = versioner.register(_workers.frame(2))
    registry.save({"m": 1}, "m1")

    def retention(ctx: GcContext) -> list[Deletion]:
        # A retention policy (future work) proposes commit points; here: the oldest
        # data version, and (wrongly) the object of the newest, which is refused.
        assert set(ctx.data_manifests) == {old, new}
        return [Deletion(f"data/versions/{old}.json", "data-version", "retention"),
                Deletion(f"data/{ctx.data_manifests[new]['object']}", "data-object", "bad")]

    plan = plan_gc(root, grace_seconds=3600, sources=[retention])
    assert plan.deletions[0].key == f"data/versions/{old}.json"  # commit point first
    kinds = sorted(d.kind for d in plan.deletions)
    assert kinds == ["data-object", "data-version", "index-marker"]
    assert plan.refused == (f"data/{versioner.get_metadata(new)['object']}",)
    assert plan.to_dict()["refused"] == list(plan.refused)

    apply_gc(root, plan)
    assert versioner.list_versions() == [new]
    assert versioner.load(new)[0].equals(_workers.frame(2))


def test_negative_grace_is_bad_input(store_uri: str, storage_options: dict[str, Any],
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = open_store(store_uri, storage_options)
    with pytest.raises(BadInputError, match="grace period must be >= 0 seconds, got -1"):
        run_gc(root, grace_seconds=-1)
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  n_samples: 100\n")
    monkeypatch.setenv("MLOPS_STORAGE_URI", str(tmp_path / "s"))
    assert cli.main(["gc", "--config", str(config), "--grace-seconds", "-1"]) == 2
    assert capsys.readouterr().err.strip() == \
        "mlops: error: grace period must be >= 0 seconds, got -1.0"


def test_gc_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "s"
    root = open_store(str(store))
    root.write_bytes("data/objects/ab/cdef.parquet", b"orphan")
    monkeypatch.setenv("MLOPS_STORAGE_URI", str(store))
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  n_samples: 100\n")
    assert cli.main(["gc", "--config", str(config), "--dry-run", "--grace-seconds", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "would delete data/objects/ab/cdef.parquet  " \
                     "(data object referenced by no manifest)"
    assert out[-1].startswith("would delete 0 data and 0 model version(s) by retention, "
                              "1 orphaned object(s); kept 0 younger than 0s")
    assert root.exists("data/objects/ab/cdef.parquet")


# --- one engine: retention and orphans in one plan --------------------------------------
def test_one_gc_run_retires_versions_and_collects_leftovers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention and crash leftovers in one plan: the retired versions' parts go with
    them (young as they are) and are not reported as orphans; a young leftover stays."""
    store = tmp_path / "s"
    root = open_store(str(store))
    versioner, registry, _ = _workers.stores(root.uri, {})
    old, new = versioner.register(_workers.frame(1)), versioner.register(_workers.frame(2))
    for vid in ("m1", "m2", "m3"):
        registry.save({"m": vid}, vid)
    registry.set_alias("m3")
    old_object = f"data/{versioner.get_metadata(old)['object']}"
    root.write_bytes("data/objects/ab/cdef.parquet", b"orphan")  # old enough, below
    old_mtime = time.time() - 7200
    os.utime(store / "data/objects/ab/cdef.parquet", (old_mtime, old_mtime))
    root.write_bytes("models/m9/model-0123456789abcdef.joblib", b"young leftover")
    monkeypatch.setenv("MLOPS_STORAGE_URI", str(store))
    config = tmp_path / "c.yaml"
    config.write_text("retention:\n  keep_data_versions: 1\n  keep_models: 1\n")

    assert cli.main(["gc", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        f"deleted data version {old}  (older than the newest 1 data versions "
        "(retention.keep_data_versions))",
        "deleted model version m2  (older than the newest 1 model versions "
        "(retention.keep_models))",
        "deleted model version m1  (older than the newest 1 model versions "
        "(retention.keep_models))",
        "deleted data/objects/ab/cdef.parquet  (data object referenced by no manifest)"]
    assert out[-1].startswith("deleted 1 data and 2 model version(s) by retention, "
                              "1 orphaned object(s); kept 1 younger than 3600s")
    assert versioner.list_versions() == [new] and registry.list_versions() == ["m3"]
    left = set(root.walk())
    assert old_object not in left and not any(k.startswith(("models/m1/", "models/m2/"))
                                              for k in left)
    assert not any(k.endswith(("~m1", "~m2", f"~{old}")) for k in left)
    assert "models/m9/model-0123456789abcdef.joblib" in left  # young: maybe in flight
    registry.load("m3")
    versioner.load(new)


def test_retired_version_parts_ignore_the_grace_but_young_leftovers_do_not(
        tmp_path: Path) -> None:
    root = open_store(str(tmp_path / "s"))
    versioner = _workers.stores(root.uri, {})[0]
    old = versioner.register(_workers.frame(1))
    versioner.register(_workers.frame(2))
    root.write_bytes("data/index/29990101T000000.000000Z~ghost", b"")  # a future marker
    plan = plan_gc(root, sources=[lambda ctx: [Deletion.version("data", old, "test")]])
    retired = [d for d in plan.deletions if d.part_of == f"data/versions/{old}.json"]
    assert sorted(d.kind for d in retired) == ["data-object", "index-marker"]
    assert [d.version_id for d in plan.versions] == [old]
    assert plan.young == ("data/index/29990101T000000.000000Z~ghost",)
    assert plan.orphans().deletions == ()


def test_a_source_may_only_report(tmp_path: Path) -> None:
    """The place for a consistency check: a source that proposes nothing, reports."""
    root = open_store(str(tmp_path / "s"))
    versioner = _workers.stores(root.uri, {})[0]
    vid = versioner.register(_workers.frame(1))

    def check(ctx: GcContext) -> list[Deletion]:
        ctx.warnings.extend(f"checked {v}" for v in ctx.data_manifests)
        return []

    plan = run_gc(root, grace_seconds=0, sources=[check])
    assert plan.warnings == (f"checked {vid}",) and plan.deletions == ()


def test_grace_check_and_default_are_shared() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["gc"])
    assert args.grace_seconds == DEFAULT_GRACE_SECONDS
    assert check_grace(0) == 0
    with pytest.raises(BadInputError, match=r"got -0\.5"):
        check_grace(-0.5)
