"""Kubernetes Events (events.k8s.io/v1) the controller writes on its own Job, read back from
the fake API server (tests/fakes/kube/) that the real client talks to: a retraining
night, a quiet night, a failed step, a rejected challenger, and a Role without the events
rule (403), which must not fail the run."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest

from mlops.kube.manifests import Owner, build_event
from tests.test_controller import NS, Env, env, run  # noqa: F401 - env is a fixture

pytest_plugins = ["tests.fakes.kube_fixtures"]

JOB = "mlops-nightly-1"
UID = "0c6f3c1e-0000-4000-8000-0000000000aa"
EVENTS_PATH = f"/apis/events.k8s.io/v1/namespaces/{NS}/events"
GOOD = {"n_samples": 300, "n_features": 4}
ALWAYS_RETRAIN = {"accuracy_min_threshold": 1.0}


@pytest.fixture
def job_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:  # noqa: F811
    """The fake cluster, with the controller inside its own Job (as the chart sets it up)."""
    monkeypatch.setenv("MLOPS_JOB_NAME", JOB)
    monkeypatch.setenv("MLOPS_JOB_UID", UID)
    return env


def configure(e: Env, **sections: Any) -> None:
    """Like Env.configure, with other config sections too."""
    doc: dict[str, Any] = {"storage": {"uri": str(e.store)}, "data": GOOD,
                           "kubernetes": {"namespace": NS, "step_timeout_seconds": 120},
                           **sections}
    e.write_config(doc)


def story(e: Env, since: int = 0) -> list[tuple[str, str]]:
    """(type, reason) of the Events written so far, oldest first; checks each one."""
    out = []
    for ev in e.api.events(NS)[since:]:
        assert ev["regarding"] == {"apiVersion": "batch/v1", "kind": "Job", "name": JOB,
                                   "namespace": NS, "uid": UID}
        assert ev["reportingController"] == "mlops/controller"
        assert ev["metadata"]["name"].startswith(f"{JOB}.")
        assert ev["note"] and "\n" not in ev["note"]
        out.append((ev["type"], ev["reason"]))
    return out


def notes(e: Env) -> dict[str, str]:
    return {ev["reason"]: ev["note"] for ev in e.api.events(NS)}


def test_a_retraining_night_a_rejected_challenger_and_a_quiet_night(
        job_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    e = job_env
    configure(e, monitoring=ALWAYS_RETRAIN)
    code, _, err = run(e, capsys, "night-1")
    assert code == 0, err
    assert story(e) == [
        ("Normal", "RunStarted"), ("Normal", "StepSucceeded"), ("Normal", "StepSucceeded"),
        ("Normal", "RetrainStarted"), ("Normal", "StepSucceeded"), ("Normal", "ModelPromoted"),
        ("Normal", "RunSucceeded")]
    n = notes(e)
    assert n["RetrainStarted"] == "retraining: no_model"
    assert re.fullmatch(r"model night-1 promoted to production \(accuracy [01]\.\d{4}\)",
                        n["ModelPromoted"])
    assert n["RunSucceeded"].startswith("run night-1 succeeded: model night-1 serves")
    steps = [ev["note"] for ev in e.api.events(NS) if ev["reason"] == "StepSucceeded"]
    assert [s.split(" succeeded")[0] for s in steps] == [
        "step ingest", "step monitor-check", "step train"]

    # Night 2: the serving model is below the (strict) threshold, the challenger is worse.
    seen = len(e.api.events(NS))
    configure(e, monitoring=ALWAYS_RETRAIN, data={**GOOD, "random_state": 7},
              training={"params": {"C": 1e-8}})
    code, out, err = run(e, capsys, "night-2")
    assert code == 0, err
    assert json.loads(out)["promoted"] is False
    assert story(e, seen) == [
        ("Normal", "RunStarted"), ("Normal", "StepSucceeded"), ("Normal", "StepSucceeded"),
        ("Warning", "ServingBelowThreshold"), ("Normal", "RetrainStarted"),
        ("Normal", "StepSucceeded"), ("Warning", "PromotionRejected"),
        ("Normal", "RunSucceeded")]
    n = {ev["reason"]: ev["note"] for ev in e.api.events(NS)[seen:]}
    assert "< champion night-1 " in n["PromotionRejected"]
    assert n["PromotionRejected"].startswith("challenger night-2 accuracy ")
    assert n["PromotionRejected"].endswith(": not promoted")
    assert n["ServingBelowThreshold"].startswith("serving model night-1 accuracy ")
    assert n["ServingBelowThreshold"].endswith(" below 1")

    # Night 3, same data, the usual threshold: a quiet night.
    seen = len(e.api.events(NS))
    configure(e, data={**GOOD, "random_state": 7})
    code, out, err = run(e, capsys, "night-3")
    assert code == 0, err
    assert json.loads(out)["retrained"] is False
    assert story(e, seen) == [("Normal", "RunStarted"), ("Normal", "StepSucceeded"),
                              ("Normal", "StepSucceeded"), ("Normal", "RunSucceeded")]


def test_a_failed_step(job_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    e = job_env
    configure(e, data={"source": "/nonexistent/night.csv"})
    code, _, err = run(e, capsys, "night-1")
    assert code == 2, err
    assert story(e) == [("Normal", "RunStarted"), ("Warning", "StepFailed"),
                        ("Warning", "RunFailed")]
    n = notes(e)
    assert n["StepFailed"].startswith("step ingest failed: ")
    assert n["RunFailed"].startswith("run night-1 failed at step ingest: ")


def test_a_forbidden_event_does_not_fail_the_run(
        job_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    e = job_env
    e.api.forbid("create", "events")
    code, out, err = run(e, capsys, "night-1")
    assert code == 0, err
    assert json.loads(out)["model_version"] == "night-1"
    assert e.api.events(NS) == []
    assert "Kubernetes Event RunStarted not written" in err and "forbidden" in err
    # After the first 403 the run stops trying: one request, not ten.
    posts = [r for r in e.api.requests if r.method == "POST" and r.path == EVENTS_PATH]
    assert len(posts) == 1


def test_an_event_is_strictly_valid_and_one_line_of_at_most_1024_bytes() -> None:
    ev = build_event(Owner("j", "u"), "ns", "Warning", "StepFailed", "Step",
                     "x" * 5000 + "\nsecond line", instance="pod-1")
    kubernetes_validate.validate(ev, "1.30", strict=True)
    assert len(ev["note"].encode()) == 1024 and "second" not in ev["note"]
    assert ev["eventTime"].endswith("Z") and ev["reportingInstance"] == "pod-1"
