"""A writer killed mid-commit leaves no visible partial version; gc cleans up after it.

Each crash runs in a forked child process with ``MLOPS_TEST_CRASH_AT`` set (the
hook in mlops/store/filesystem.py: ``os._exit`` at that point, like a SIGKILL). Forked,
not spawned: a fresh interpreter spends seconds importing scikit-learn, a fork
none; fsspec recreates its filesystems and event loop in the child. Backends: local,
gcs, s3 (the memory filesystem dies with the process, so it is exempt).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import cli
from tests import _workers
from tests.conftest import SHARED_BACKENDS
from tests.crashing import crash


def gc_cli(config: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    """Run ``mlops gc --json`` in this process and return its orphan plan."""
    assert cli.main(["gc", "--config", str(config), "--json", *flags]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["retention"]["data"] == out["retention"]["models"] == []  # none configured
    return out["orphans"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_crash_mid_commit_is_invisible_and_collected(
        store_uri: str, storage_options: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"uri": store_uri,
                                                  "options": storage_options}}))
    versioner, registry, _ = _workers.stores(store_uri, storage_options)
    good = versioner.register(_workers.frame(1))
    registry.save({"good": True}, "good")
    before = set(versioner.store.walk()) | {f"models/{k}" for k in registry.store.walk()}

    crash(_workers.register_then_crash, store_uri, storage_options, 2, point="after-payload")
    crash(_workers.register_then_crash, store_uri, storage_options, 3, point="after-index")
    crash(_workers.save_then_crash, store_uri, storage_options, "crash-a", point="after-payload")
    crash(_workers.save_then_crash, store_uri, storage_options, "crash-b", point="after-index")

    # Readers see only the committed versions.
    assert versioner.list_versions() == [good]
    assert versioner.get_latest_version() == good
    assert registry.list_versions() == ["good"]
    assert registry.get_latest_version() == "good"
    assert not registry.exists("crash-a") and not registry.exists("crash-b")

    all_keys = {f"data/{k}" for k in versioner.store.walk()} | \
               {f"models/{k}" for k in registry.store.walk()}
    committed = {f"data/{k}" for k in before if not k.startswith("models/")} | \
                {k for k in before if k.startswith("models/")}
    orphans = all_keys - committed
    kinds = sorted(k.split("/")[1] if k.startswith("data/") else
                   ("_index" if "/_index/" in k else "artifact") for k in orphans)
    assert kinds == ["_index", "artifact", "artifact", "index", "objects", "objects"]

    # Within the grace period nothing is collected: they could be in-flight writes.
    plan = gc_cli(config, capsys, "--dry-run")
    assert plan["deletions"] == [] and set(plan["young"]) == orphans

    plan = gc_cli(config, capsys, "--dry-run", "--grace-seconds", "0")
    assert {d["key"] for d in plan["deletions"]} == orphans
    assert plan["deleted"] == []
    now = {f"data/{k}" for k in versioner.store.walk()} | \
          {f"models/{k}" for k in registry.store.walk()}
    assert now == all_keys, "a dry run deletes nothing"

    plan = gc_cli(config, capsys, "--grace-seconds", "0")
    assert set(plan["deleted"]) == orphans
    now = {f"data/{k}" for k in versioner.store.walk()} | \
          {f"models/{k}" for k in registry.store.walk()}
    assert now == committed
    assert gc_cli(config, capsys, "--grace-seconds", "0")["deletions"] == []

    # The committed versions are intact, and the crashed writes can be redone.
    assert versioner.load(good)[0].equals(_workers.frame(1))
    assert registry.load("good")[0] == {"good": True}
    again = versioner.register(_workers.frame(3))
    assert versioner.load(again)[0].equals(_workers.frame(3))
    registry.save({"crashed": "crash-b"}, "crash-b")
    assert registry.get_latest_version() == "crash-b"
    assert versioner.list_versions() == [again, good]
