"""The run report: rendered files, embedded plots, tables, the store copy, bad input."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.errors import BadInputError
from mlops.observe.report import collect, write_report
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def runs(make_config: Any, n: int, **sections: dict[str, Any]) -> Config:
    cfg: Config = make_config()
    for i in range(n):
        cfg = make_config(data={"n_samples": 300, "n_features": 3, "random_state": i},
                          monitoring={"drift_method": "psi"}, **sections)
        run_pipeline(cfg, run_id=f"run-{i:02d}")
    return cfg


def test_report_renders_plots_and_tables(make_config: Any, tmp_path: Path) -> None:
    cfg = runs(make_config, 6)
    out = tmp_path / "report"
    files = write_report(Workspace.open(cfg), out)
    # realized.png: the nights' estimated scores (CBPE) beside any realized by late labels
    assert [f.name for f in files] == ["report.html", "accuracy.png", "drift.png",
                                       "realized.png"]
    for png in files[1:]:
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert png.stat().st_size > 10_000
    page = files[0].read_text(encoding="utf-8")
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)
    assert '<table class="drift">' in page and '<table class="registry">' in page
    # The latest drift report is the last run's, one row per feature.
    drift_table = page.split('<table class="drift">')[1].split("</table>")[0]
    assert drift_table.count("<tr>") == 1 + 3
    assert "run-05" in page
    # The registry lists the production alias next to its version.
    assert "<td>run-00</td><td>production</td>" in page


def test_report_data_follows_the_store(make_config: Any) -> None:
    cfg = runs(make_config, 3)
    data = collect(Workspace.open(cfg))
    assert [r.run_id for r in data.history] == ["run-00", "run-01", "run-02"]
    assert [run for run, _ in data.drift] == ["run-01", "run-02"]
    assert data.aliases == {"production": "run-00"}
    assert data.accuracy_threshold == cfg.monitoring.accuracy_min_threshold


def test_pipeline_writes_the_report_to_the_store_when_enabled(make_config: Any) -> None:
    cfg = make_config(reporting={"enabled": True}, data={"n_samples": 300})
    summary = run_pipeline(cfg, run_id="run-1")
    assert summary["report"] == "runs/run-1/report.html"
    ws = Workspace.open(cfg)
    page = ws.store.read_bytes("runs/run-1/report.html").decode()
    assert "data:image/png;base64," in page
    assert ws.read_result("run-1", "summary")["report"] == "runs/run-1/report.html"
    off = make_config(data={"n_samples": 300})
    assert "report" not in run_pipeline(off, run_id="run-2")
    assert not ws.store.exists("runs/run-2/report.html")


def test_cli_report_writes_the_folder(make_config: Any, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = runs(make_config, 2)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["report", "-c", str(path), "--output", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    assert (out / "accuracy.png").read_bytes().startswith(PNG_MAGIC)


def test_report_over_an_empty_store_is_bad_input(make_config: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config()
    ws = Workspace.open(cfg)
    with pytest.raises(BadInputError, match=r"nothing to report: the store .* has no runs yet"):
        collect(ws)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["report", "-c", str(path), "--output", str(out)]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert not out.exists()
    assert ws.store.walk("") == []
