"""``mlops gc`` retention racing ``mlops promote`` (issue 19 item 7).

The interleavings that lost are forced deterministically: the other side's write is
made at the worst moment from inside the store's delete (a fault-injection hook on
the real store, not a mock of it).
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops.errors import VersionNotFoundError
from mlops.store.retention import apply_retention, plan_retention
from mlops.store.workspace import Workspace


def _models(ws: Workspace, n: int) -> list[str]:
    ids = [ws.registry.save({"m": i}, f"m{i}") for i in range(n)]
    ws.registry.set_alias(ids[-1])
    return ids


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_promote_during_retention_keeps_the_promoted_model(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _models(workspace, 5)
    plan = plan_retention(workspace, keep_models=2)  # plans to delete m0..m2
    delete = workspace.store.delete
    other = Workspace.open(workspace.config)  # the promoting process

    def racing_delete(key: str) -> Any:
        if key == "models/m1/metadata.json":  # promote m1 after gc decided, before it deletes
            other.registry.set_alias("m1")
        return delete(key)

    monkeypatch.setattr(workspace.store, "delete", racing_delete)
    apply_retention(workspace, plan)
    serving = workspace.registry.get_alias()
    assert serving is not None and workspace.registry.exists(serving)
    workspace.registry.load(serving)  # record, artifact and checksum intact
    assert not workspace.registry.exists(ids[0])


@pytest.mark.parametrize("backend", ["local"])
def test_promote_of_a_model_deleted_meanwhile_fails_and_moves_the_alias_back(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = workspace.registry
    _models(workspace, 3)
    append = registry._append

    def gc_in_between(alias: str, action: str, version: str, *args: Any) -> Any:
        if version == "m0" and action == "promote":
            registry.store.delete("m0/metadata.json")  # gc retires m0 at this moment
        return append(alias, action, version, *args)

    monkeypatch.setattr(registry, "_append", gc_in_between)
    with pytest.raises(VersionNotFoundError, match="deleted"):
        registry.set_alias("m0")
    assert registry.get_alias() == "m2"
