"""Crashes between a model's save and its first alias write (issue 19 item 4)."""

from __future__ import annotations

import pytest

from mlops.runner import run_pipeline
from mlops.store.registry import PRODUCTION
from mlops.store.workspace import Workspace
from tests.test_crash import crash


def _run(config: object, run_id: str) -> None:
    run_pipeline(config, run_id=run_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(("backend", "point"), [
    ("local", "after-reference"), ("local", "after-metrics"), ("s3", "after-metrics")])
def test_resume_after_a_crash_before_the_first_alias_finishes_the_promotion(
        workspace: Workspace, point: str) -> None:
    config = workspace.config
    crash(_run, config, "r1", point=point)  # an empty store: r1 is saved, no alias yet
    assert workspace.registry.get_alias(PRODUCTION) is None
    summary = run_pipeline(config, run_id="r1")  # the resume
    assert summary["model_version"] == "r1" and summary["retrained"]
    assert workspace.registry.get_alias(PRODUCTION) == "r1"


@pytest.mark.parametrize("backend", ["local"])
def test_a_rejected_challenger_never_serves_for_lack_of_an_alias(
        workspace: Workspace) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "r1", {"promote": True})
    registry.save({"m": 2}, "r2", {"promote": False, "promotion_reason": "worse"})
    assert workspace.current_model_version() == "r1"
