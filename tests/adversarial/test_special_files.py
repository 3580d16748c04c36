"""Objects that are not regular files on a local store (issue 19 item 13).

A data object or a model artifact replaced by a symlink to a FIFO blocked
``monitor-check`` forever; one to ``/dev/zero`` read until MemoryError. Both are
refused at once as damage (exit 2), naming the object. Each load runs in a forked
child with a deadline, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import IntegrityError
from mlops.store.workspace import Workspace
from tests import _workers

DEADLINE_SECONDS = 20.0


def _target(kind: str, tmp_path: Path) -> str:
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return str(path)
    return "/dev/zero"


def _load_in_child(fn: Any, *args: Any) -> str:
    """Run ``fn(*args)`` in a forked child; its IntegrityError's text, or what happened."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run() -> None:
        try:
            fn(*args)
            child.send("loaded")
        except IntegrityError as err:
            child.send(f"refused exit={err.exit_code}: {err}")
        except BaseException as err:
            child.send(f"{type(err).__name__}: {err}")

    proc = ctx.Process(target=run)
    proc.start()
    proc.join(DEADLINE_SECONDS)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "blocked"
    return str(parent.recv()) if parent.poll() else f"died {proc.exitcode}"


@pytest.mark.parametrize("backend", ["local"])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_data_object_that_is_a_special_file_is_refused(
        workspace: Workspace, tmp_path: Path, kind: str) -> None:
    versioner = workspace.versioner
    vid = versioner.register(_workers.frame(1))
    obj = versioner.store.local_path(versioner.get_metadata(vid)["object"])
    assert obj is not None
    os.remove(obj)
    os.symlink(_target(kind, tmp_path), obj)
    fresh = Workspace.open(workspace.config).versioner
    outcome = _load_in_child(fresh.load, vid)
    assert outcome.startswith("refused exit=2") and "not a regular file" in outcome, outcome


@pytest.mark.parametrize("backend", ["local"])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_model_artifact_that_is_a_special_file_is_refused(
        workspace: Workspace, tmp_path: Path, kind: str) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "m1")
    artifact = registry.store.local_path(registry.get_metadata("m1")["artifact"])
    assert artifact is not None
    os.remove(artifact)
    os.symlink(_target(kind, tmp_path), artifact)
    outcome = _load_in_child(registry.load, "m1")
    assert outcome.startswith("refused exit=2") and "not a regular file" in outcome, outcome
