"""The anchors' bench harness (benchmarks/bench_anchors.py) without the anchors.

Evidently and MLflow live in their own venvs, built by ``make bench`` only: here the
rows must come out marked skipped with the reason, and the frames of the agreement row
must move exactly the features the row names (checked with mlops alone). No timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlops
from benchmarks import bench_anchors


def test_rows_without_the_anchor_venvs_are_skipped_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_BENCH_VENVS", str(tmp_path / "no-venvs"))
    rows = bench_anchors.run(bench_anchors.QUICK, tmp_path / "out", workdir=tmp_path,
                             build=False)
    assert [r.id for r in rows] == ["EV1", "EV1m", "EV2", "EV2m", "EV3", "MF1", "MF2", "MF3"]
    for r in rows:
        assert r.met is None and r.ratio is None
        assert r.note.startswith("skipped: the ") and "venv is not built" in r.note, r
    assert [r.target for r in rows[:2]] == ["<= 0.2", "<= 0.5"]
    assert {r.target for r in rows[5:]} == {"<= 0.3"}
    md = (tmp_path / "out" / "anchors.md").read_text()
    assert "| EV1 |" in md and "| MF3 |" in md and "Load average" in md
    assert len(json.loads((tmp_path / "out" / "anchors.json").read_text())["rows"]) == 8


def test_agreement_frames_move_exactly_the_named_features() -> None:
    reference = bench_anchors.drift_frames(20_000, 12, 8, 1)
    current = bench_anchors.drift_frames(20_000, 12, 8, 2, bench_anchors.EV_SHIFTED)
    assert reference.shape == (20_000, 20)
    assert 0.04 < float(reference.isna().mean().mean()) < 0.06
    report = mlops.drift_report(reference, current)
    assert sorted(report.drifted_features) == sorted(bench_anchors.EV_SHIFTED)


def test_venv_requirements_pin_our_scikit_learn_for_mlflow() -> None:
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in bench_anchors.requirements("mlflow")
    assert "pandas<3" in bench_anchors.requirements("evidently")
