"""Smoke check of the benchmark harness at tiny sizes: every row, numeric ratios.

No timing assertions: timings and targets belong to ``make bench``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from benchmarks.run import QUICK, run

EXPECTED = {"N0", "B1", "B2", "B3", "B4", "B4p", "B5", "B6", "B7", "B8", "B9", "D1"}


def test_quick_run_produces_every_row(tmp_path: Path) -> None:
    rows = run(QUICK, tmp_path / "results", workdir=tmp_path)
    ids = {r.id for r in rows}
    assert ids >= EXPECTED
    assert {f"B9-{n:,}" for n in QUICK.b9_rows} <= ids
    has_dvc = importlib.util.find_spec("dvc") is not None
    for r in rows:
        if r.id == "B8" and not has_dvc:
            assert r.ratio is None and "skipped" in r.note
            continue
        assert isinstance(r.ratio, float) and math.isfinite(r.ratio) and r.ratio >= 0, r
        assert isinstance(r.met, bool) or r.id == "N0", r  # N0 is a control, no target
        for seconds in (r.a_seconds, r.b_seconds):
            assert seconds is None or (math.isfinite(seconds) and seconds > 0), r

    md = (tmp_path / "results" / "latest.md").read_text()
    for id_ in EXPECTED:
        assert f"| {id_} |" in md
    assert "Machine:" in md
    data = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert {r["id"] for r in data["rows"]} == ids
    assert data["machine"]["cores"] >= 1
