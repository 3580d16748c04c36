"""RunSummary and HistoryRecord: typed, and each document's JSON kept exactly.

A run's summary and the history records are read by ``mlops status``, the report and the
metrics long after they were written, by later releases: reading one and writing it back
must give the same keys (a key absent stays absent, a null stays null), and adding a
field must leave the documents of earlier releases readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import load_config
from mlops.records import HistoryRecord, RunSummary, optional
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace

DATA = Path(__file__).parent / "data"
GOOD = {"n_samples": 300, "n_features": 4}


def _docs(pattern: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text())) for p in sorted(DATA.glob(pattern))]


def test_the_records_of_earlier_releases_read_and_write_back_unchanged() -> None:
    summaries = _docs("store-*/runs/*/summary.json")
    history = _docs("store-*/monitoring/metrics/*.json")
    assert summaries and len(history) >= 4
    for path, doc in summaries:
        summary = RunSummary.from_dict(doc)
        assert summary.to_dict() == doc, path
        assert summary.reasons == doc["reasons"] and summary.score is None
        assert not summary.has("score") and summary.has("drift_report")
    for path, doc in history:
        record = HistoryRecord.from_dict(doc)
        assert record.to_dict() == doc, path
        assert record.accuracy == doc["accuracy"] and record.status == doc.get("status")


def test_absent_and_null_stay_apart_and_unknown_keys_are_kept() -> None:
    doc = {"timestamp": "2026-12-04T00:00:00+00:00", "accuracy": None, "drift": None,
           "calibrated_at": "x"}  # a key a later release writes
    record = HistoryRecord.from_dict(doc)
    assert record.drift is None and record.has("drift")
    assert record.score is None and not record.has("score")
    assert record.extra == {"calibrated_at": "x"}
    assert record.to_dict() == doc
    changed = record.replace(score=0.5, note="x")
    assert changed.to_dict() == {**doc, "score": 0.5, "note": "x"}
    assert record.to_dict() == doc  # frozen: the original is unchanged


def test_a_new_optional_field_is_one_line() -> None:
    @dataclass(frozen=True)
    class Later(HistoryRecord):
        calibrated_score: float | None = optional()

    for _, doc in _docs("store-*/monitoring/metrics/*.json"):
        assert Later.from_dict(doc).to_dict() == doc  # old records: the key stays absent
    later = Later.from_dict({"timestamp": "t", "calibrated_score": 0.75})
    assert later.calibrated_score == 0.75 and later.to_dict()["calibrated_score"] == 0.75


def test_a_fact_of_the_wrong_type_names_its_key() -> None:
    with pytest.raises(TypeError, match="key 'alerts'"):
        HistoryRecord.from_dict({"timestamp": "t", "alerts": "degraded"})
    with pytest.raises(TypeError, match="key 'run_id' is missing"):
        RunSummary.from_dict({"accuracy": 0.5})


def _config(tmp_path: Path, **sections: Any) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": str(tmp_path / "store")},
                                    "data": GOOD, **sections}))
    return str(path)


def test_a_run_writes_the_summary_and_history_it_always_did(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    returned = run_pipeline(cfg, run_id="night-1")
    ws = Workspace.open(load_config(cfg))
    stored = ws.read_result("night-1", "summary")
    assert stored is not None
    # The keys of this release's summary, in order, and nothing conditional that did not
    # apply (no scoring.source, no reporting, no webhooks, no KServe hand-off).
    assert list(returned) == [
        "run_id", "data_version", "model_version", "retrained", "accuracy", "reasons",
        "drift", "drift_report", "drift_error", "promoted", "challenger_version",
        "challenger_accuracy", "challenger_score", "challenger_metrics", "champion_accuracy",
        "task", "engine", "metric", "score", "metrics", "threshold", "baseline_score",
        "alerts", "note",
        "serving_error", "schema_change", "serving_uri", "scored_rows", "skipped_seen_rows",
        "estimated_score", "estimated_metrics", "estimated_model_version"]
    assert stored == {**returned, "step": "summary", "finished_at": stored["finished_at"]}
    assert returned["reasons"] == ["no_model"] and returned["drift_error"] is None
    assert RunSummary.from_dict(stored).to_dict() == stored
    [record] = ws.monitor.get_history()
    assert HistoryRecord.from_dict(record).to_dict() == record
    assert {"timestamp", "accuracy", "run_id", "retrained", "promoted", "challenger_version",
            "status"} <= set(record) and "step" not in record  # a train record, not a failure


def test_status_calls_a_summary_with_a_mistyped_key_damaged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    run_pipeline(cfg, run_id="night-1")
    path = tmp_path / "store" / "runs" / "night-1" / "summary.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "alerts": 5}))
    code = main(["status", "-c", cfg])
    out = capsys.readouterr().out
    assert code == 3
    assert "night-1" in out and "damaged" in out and "alerts" in out
