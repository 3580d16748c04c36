"""The closed sets of stored names in mlops.choices: their values never change.

Retrain reasons, alerts and notification events are written into the history, the run
summaries and webhook payloads (and named in configs): a renamed value would make old
records unreadable to ``mlops status`` and break receivers' filters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.choices import Alert, EventReason, NotifyEvent, RetrainReason
from mlops.config import NOTIFY_EVENTS, Config
from mlops.errors import ConfigError
from mlops.observe.hooks import EVENT_TYPES
from mlops.observe.notify import CLOUDEVENT_TYPES, DEFAULT_EVENTS

DATA = Path(__file__).parent / "data"


def test_the_stored_values_are_pinned() -> None:
    assert [str(r) for r in RetrainReason] == [
        "no_model", "low_accuracy", "low_score", "low_realized_score", "drift",
        "schema_change", "degraded",
        "serving_model_unusable", "too_few_rows", "rejected_before"]
    assert [str(e) for e in NotifyEvent] == [
        "failure", "drift", "promotion", "rejection", "serving_below_threshold", "rollback",
        "success", "validation_failed"]
    assert [str(a) for a in Alert] == [
        "serving_below_threshold", "degraded", "serving_model_unusable",
        "serving_handoff_failed"]
    assert [str(e) for e in EventReason] == [
        "RunStarted", "StepSucceeded", "StepFailed", "DriftDetected", "RetrainStarted",
        "ModelPromoted", "PromotionRejected", "ServingBelowThreshold", "RunSucceeded",
        "RunFailed", "ValidationFailed"]
    assert set(EVENT_TYPES) == set(EventReason)  # each Event has its type


def test_they_are_plain_strings_in_json_logs_and_comparisons() -> None:
    reasons = [RetrainReason.NO_MODEL, RetrainReason.DRIFT]
    assert json.dumps({"reasons": reasons}) == '{"reasons": ["no_model", "drift"]}'
    assert str(reasons) == "['no_model', 'drift']"  # how a log line prints the list
    assert f"{Alert.DEGRADED}" == "degraded"
    assert "drift" in reasons and RetrainReason.DRIFT in ["drift"]  # read back from JSON
    assert {RetrainReason.DRIFT: 1}["drift"] == 1


def test_every_reason_in_the_stores_of_earlier_releases_is_a_member() -> None:
    docs = [json.loads(p.read_text()) for p in DATA.glob("store-*/**/*.json")]
    reasons = {r for d in docs if isinstance(d, dict) for r in d.get("reasons") or []}
    alerts = {a for d in docs if isinstance(d, dict) for a in d.get("alerts") or []}
    assert reasons  # the fixtures hold some
    assert reasons <= set(RetrainReason) and alerts <= set(Alert)


def test_webhook_events_come_from_the_enum() -> None:
    assert tuple(NotifyEvent) == NOTIFY_EVENTS
    assert set(DEFAULT_EVENTS) == set(NotifyEvent) - {NotifyEvent.SUCCESS}
    assert set(CLOUDEVENT_TYPES) == set(NotifyEvent)
    hook = {"url": "http://127.0.0.1:9/x", "events": ["drift", "rolback"]}
    with pytest.raises(ConfigError, match="rolback"):
        Config.from_dict({"notifications": {"webhooks": [hook]}})
