"""``logging.format: json``: one JSON object per line, with the run id and the step."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlops.cli import main
from mlops.observe.logconf import log_context, setup_logging


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    setup_logging("INFO")  # back to text for the other tests


def json_config(tmp_path: Path) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"uri": str(tmp_path / "store")},
                                   "data": {"n_samples": 300, "n_features": 3},
                                   "logging": {"format": "json"}}))
    return str(cfg)


def test_a_run_logs_json_lines_with_run_id_and_step(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-c", json_config(tmp_path), "--run-id", "night-1"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert records
    for r in records:
        assert set(r) == {"time", "level", "logger", "run_id", "step", "message"}
        assert r["time"].endswith("Z") and r["level"] in ("INFO", "WARNING")
    by_step = {r["step"]: r for r in records if r["logger"] == "mlops.pipeline"}
    assert set(by_step) == {"ingest", "monitor-check", "train"}
    assert all(r["run_id"] == "night-1" for r in by_step.values())
    assert by_step["ingest"]["message"].startswith("ingest: 300 rows from synthetic")


def test_a_step_command_logs_its_run_id_and_step(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "-c", json_config(tmp_path), "--run-id", "r-7"]) == 0
    records = [json.loads(ln) for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    [rec] = [r for r in records if r["logger"] == "mlops.pipeline"]
    assert (rec["run_id"], rec["step"]) == ("r-7", "ingest")


def test_json_records_carry_context_and_exceptions(
        capsys: pytest.CaptureFixture[str]) -> None:
    log = setup_logging("DEBUG", fmt="json")
    with log_context(run_id="r1"):
        with log_context(step="train"):
            log.getChild("t").info("inside %d", 1)
        try:
            raise ValueError("bad value")
        except ValueError:
            log.exception("failed")
    log.warning("outside")
    a, b, c = (json.loads(ln) for ln in capsys.readouterr().err.splitlines())
    assert (a["run_id"], a["step"], a["message"], a["logger"]) == ("r1", "train", "inside 1",
                                                                   "mlops.t")
    assert (b["run_id"], b["step"], b["level"]) == ("r1", None, "ERROR")
    assert "ValueError: bad value" in b["exception"]
    assert (c["run_id"], c["step"]) == (None, None)


def test_text_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO").getChild("t").info("plain")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO mlops.t: plain")
    assert logging.getLogger("mlops").propagate is False
