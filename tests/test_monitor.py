"""ModelMonitor: history, reference, relative L1 drift, decisions with reasons."""

from __future__ import annotations

import math

import pytest

from mlops.monitor import BatchProfile, ModelMonitor, RetrainDecision, relative_l1


@pytest.fixture
def monitor(store_uri: str, storage_options: dict) -> ModelMonitor:
    return ModelMonitor(store_uri, "metrics.json", "reference.json", accuracy_min_threshold=0.8,
                        drift_threshold=0.1, drift_min_samples=100,
                        storage_options=storage_options)


def test_history_round_trip_and_latest(monitor: ModelMonitor) -> None:
    assert monitor.get_latest_accuracy() is None
    monitor.record_metrics(0.91, "d1", "m1", {"run_id": "r1"})
    monitor.record_metrics(0.85, "d2", "m1", {"run_id": "r2"})
    assert monitor.get_latest_accuracy() == 0.85
    history = monitor.get_history()
    assert [h["run_id"] for h in history] == ["r1", "r2"]
    assert history[0]["data_version"] == "d1"
    assert [h["run_id"] for h in monitor.get_history(limit=1)] == ["r2"]


def test_a_new_monitor_sees_the_same_history_and_reference(store_uri: str,
                                                            storage_options: dict) -> None:
    a = ModelMonitor(store_uri, storage_options=storage_options)
    a.record_metrics(0.9)
    a.update_reference_distribution({"x": 2.0})
    b = ModelMonitor(store_uri, storage_options=storage_options)
    assert b.get_latest_accuracy() == 0.9
    assert b.compute_drift({"x": 3.0}) == pytest.approx(0.5)


def test_relative_l1() -> None:
    assert relative_l1({"a": 10.0, "b": -10.0}, {"a": 11.0, "b": -12.0}) == pytest.approx(0.15)
    assert relative_l1({"a": 1.0}, {"b": 5.0}) == 0.0  # no shared feature
    assert relative_l1({"a": 1.0, "z": 1.0}, {"a": 1.5}) == pytest.approx(0.5)  # shared only
    # All-zero reference: the absolute L1 distance, not a division by zero.
    assert relative_l1({"a": 0.0, "b": 0.0}, {"a": 0.3, "b": -0.1}) == pytest.approx(0.4)
    assert relative_l1({"a": 0.0}, {"a": 0.0}) == 0.0
    assert not math.isnan(relative_l1({"a": 0.0}, {"a": 1e308}))


def test_no_reference_means_no_drift(monitor: ModelMonitor) -> None:
    assert monitor.compute_drift({"x": 100.0}) == 0.0


@pytest.mark.parametrize(("accuracy", "means", "no_model", "n", "reasons"), [
    (None, {"x": 10.0}, True, 500, ("no_model",)),
    (0.95, {"x": 10.0}, False, 500, ()),
    (0.5, {"x": 10.0}, False, 500, ("low_accuracy",)),
    (0.95, {"x": 12.0}, False, 500, ("drift",)),
    (0.95, {"x": 12.0}, False, 99, ()),           # too few rows for drift to count
    (0.95, {"x": 12.0}, False, 100, ("drift",)),  # exactly the minimum counts
    (0.95, {"x": 12.0}, False, None, ("drift",)),  # unknown size counts
    (0.5, {"x": 12.0}, False, 500, ("low_accuracy", "drift")),
    (0.95, {"x": 11.0}, False, 500, ()),           # exactly the threshold is not above it
])
def test_decisions(monitor: ModelMonitor, accuracy: float | None, means: dict,
                   no_model: bool, n: int | None, reasons: tuple) -> None:
    monitor.update_reference_distribution({"x": 10.0})
    decision = monitor.decide(accuracy, means, no_model, n)
    assert decision.reasons == reasons
    assert decision.retrain is bool(reasons)
    assert monitor.should_retrain(accuracy, means, no_model, n) is bool(reasons)
    assert RetrainDecision.from_dict(decision.to_dict()) == decision


# --- one batch profile, every reason from one place (issue 23) ---------------------------
def profile(**facts: object) -> BatchProfile:
    base: dict = {"rows": 500, "means": {"x": 10.0}, "reference": {"feature_means": {"x": 10.0}},
                  "metric": "accuracy", "threshold": 0.8, "score": 0.9, "scored": True,
                  "scored_rows": 500}
    return BatchProfile(**{**base, **facts})


@pytest.mark.parametrize(("facts", "reasons", "retrain"), [
    ({}, (), False),
    ({"score": 0.5}, ("low_accuracy",), True),
    ({"metric": "rmse", "threshold": 1.0, "score": 2.0}, ("low_score",), True),
    ({"metric": "rmse", "threshold": 1.0, "score": None}, ("low_score",), True),
    # Not measured (no model, a schema change, every row seen): no low score.
    ({"score": None, "scored": False}, (), False),
    ({"score": 0.1, "scored_rows": 0, "skipped_seen_rows": 500}, (), False),
    ({"no_model": True, "scored": False, "score": None, "reference": None},
     ("no_model",), True),
    ({"schema_change": True, "serving_error": "broken", "score": 0.1},
     ("schema_change", "serving_model_unusable"), True),
    ({"baseline_score": 0.99, "score": 0.85, "max_degradation": 0.1}, ("degraded",), True),
    ({"score": 0.5, "means": {"x": 12.0}}, ("low_accuracy", "drift"), True),
    ({"means": {"x": 12.0}, "own_data": True}, (), False),
    ({"means": {"x": 12.0}, "rows": 99}, (), False),
    ({"score": 0.5, "too_few_rows": "60 rows"}, ("low_accuracy", "too_few_rows"), False),
    ({"score": 0.5, "rejected": lambda: "rejected before"},
     ("low_accuracy", "rejected_before"), False),
    ({"score": 0.5, "rejected": lambda: ""}, ("low_accuracy",), True),
    # A broken serving model is replaced even when a challenger was rejected before.
    ({"serving_error": "broken", "rejected": lambda: "rejected before"},
     ("serving_model_unusable",), True),
])
def test_decide_takes_one_batch_profile(monitor: ModelMonitor, facts: dict,
                                        reasons: tuple, retrain: bool) -> None:
    decision = monitor.decide(profile(**facts))
    assert decision.reasons == reasons
    assert decision.retrain is retrain
    assert RetrainDecision.from_dict(decision.to_dict()) == decision


def test_rejected_before_is_asked_only_when_a_retrain_is_wanted(monitor: ModelMonitor) -> None:
    asked: list[int] = []

    def rejected() -> str:
        asked.append(1)
        return ""

    monitor.decide(profile(rejected=rejected))
    assert asked == []
    monitor.decide(profile(score=0.1, rejected=rejected))
    assert asked == [1]
