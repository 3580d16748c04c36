"""Small batches, one rule (issue 18, item 8): never train or promote on fewer rows than
``training.min_rows`` or a held-out split smaller than ``training.min_test_rows``; a
small batch is still scored and drift-checked when a model serves (exit 0, reason
recorded). A real table (breast cancer), both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.store.workspace import Workspace
from tests.tables.conftest import ENGINES, cancer, write_source


def config_path(tmp_path: Path, source: str, engine: str, **monitoring: Any) -> str:
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": source, "engine": engine},
                            "monitoring": monitoring})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("rows", [4, 60])
def test_too_small_without_a_model_is_refused_and_stores_nothing(
        tmp_path: Path, engine: str, rows: int, capsys: pytest.CaptureFixture[str]) -> None:
    # Both classes among the first rows (the table starts with a run of one class).
    both = cancer().iloc[[0, 1, 19, 20, *range(21, 85)]]
    source = write_source(tmp_path / "src", [both.iloc[:rows]], engine)
    path = config_path(tmp_path, source, engine)
    capsys.readouterr()
    assert main(["run", "--run-id", "night-1", "-c", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("training.min_rows=50" in line and "no model serves" in line for line in err)
    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(tmp_path / "store")}}))
    assert ws.registry.list_versions() == [] and ws.versioner.list_versions() == []


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_small_batch_is_scored_and_drift_checked_not_trained(
        tmp_path: Path, engine: str) -> None:
    df = cancer().sample(frac=1.0, random_state=1).reset_index(drop=True)
    folder = tmp_path / "src"
    # Any drift at all asks for a retrain: the small night must still not train.
    path = config_path(tmp_path, write_source(folder, [df.iloc[:400]], engine), engine,
                       drift_threshold=0.0, drift_min_samples=0,
                       drift_method="mean_l1")
    assert main(["run", "--run-id", "night-1", "-c", path]) == 0
    small = tmp_path / "small"
    path = config_path(tmp_path, write_source(small, [df.iloc[400:440]], engine), engine,
                       drift_threshold=0.0, drift_min_samples=0,
                       drift_method="mean_l1")
    assert main(["run", "--run-id", "night-2", "-c", path]) == 0
    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(tmp_path / "store")}}))
    summary = ws.read_result("night-2", "summary")
    assert summary is not None
    assert not summary["retrained"] and summary["model_version"] == "night-1"
    assert summary["reasons"][-1] == "too_few_rows" and "drift" in summary["reasons"]
    assert "training.min_rows=50" in summary["note"]
    assert summary["scored_rows"] == 40 and summary["score"] is not None
    assert ws.registry.list_versions() == ["night-1"]
    last = ws.monitor.get_history()[-1]
    assert last["run_id"] == "night-2" and "too_few_rows" in last["reasons"]
    assert last["score"] == summary["score"]


def test_min_test_rows_and_min_rows_are_configurable(tmp_path: Path) -> None:
    # 100 rows at test_size 0.2: 80 to train on, 20 held out; raising either limit refuses.
    source = write_source(tmp_path / "src", [cancer().iloc[:100]], "pandas")
    for training, ok in (({}, True), ({"min_test_rows": 21}, False),
                         ({"min_rows": 81}, False)):
        store = tmp_path / f"store-{len(training)}-{ok}-{sorted(training)}"
        cfg = Config.from_dict({"storage": {"uri": str(store)}, "data": {"source": source},
                                "training": training})
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
        assert main(["run", "--run-id", "night-1", "-c", str(path)]) == (0 if ok else 2)
