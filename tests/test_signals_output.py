"""Output that agrees with itself (issue 18 item 9), on scikit-learn's offline real tables:
the history names the model and score the summary names, the report draws one metric per
plot with its limit and names only drifted features, a regression's history never says
accuracy, ``--json`` is one JSON document whatever the engine, and a closed pipe is not a
failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.observe.report import collect, history_metrics, render_html, render_plots, score_records
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests.test_signals import ENGINES, source, table, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"


def _config(path: str) -> Config:
    return Config.from_dict(yaml.safe_load(Path(path).read_text()))


def test_history_and_summary_name_the_same_model_for_a_rejected_regression(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = table("diabetes")
    run_pipeline(_config(write_config(tmp_path, source(tmp_path, df, "n1"))), run_id="n1")
    scrambled = df.assign(target=np.random.default_rng(1).permutation(df["target"].to_numpy()))
    cfg = _config(write_config(tmp_path, source(tmp_path, scrambled, "n2")))
    summary = run_pipeline(cfg, run_id="n2")
    assert summary["promoted"] is False
    record = Workspace.open(cfg).monitor.get_history()[-1]
    assert record["model_version"] == summary["model_version"] == "n1"
    assert record["score"] == record["serving_score"] == summary["score"]
    assert record["challenger_version"] == summary["challenger_version"] == "n2"
    assert record["challenger_score"] == summary["challenger_score"] is not None
    assert record["note"] == summary["note"] and "max_degradation" in summary["note"]
    # A regression's history never says accuracy, in the table or in JSON.
    path = write_config(tmp_path, source(tmp_path, scrambled, "n2"))
    assert main(["history", "-c", path]) == 0
    table_out = capsys.readouterr().out
    assert "accuracy" not in table_out and "rmse" in table_out
    assert main(["history", "-c", path, "--json"]) == 0
    assert "accuracy" not in capsys.readouterr().out


def test_a_failed_regression_night_does_not_say_accuracy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = table("diabetes")
    path = write_config(tmp_path, source(tmp_path, df, "n1"))
    assert main(["run", "-c", path]) == 0
    dropped = write_config(tmp_path, source(tmp_path, df.drop(columns=["bmi"]), "n2"))
    assert main(["run", "-c", dropped]) == 2  # schema change after ingest: a history point
    capsys.readouterr()
    assert main(["history", "-c", path]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "accuracy" not in out


def test_the_report_draws_one_metric_per_plot_with_its_limit(tmp_path: Path) -> None:
    df = table("breast_cancer")
    src = source(tmp_path, df, "bc")
    run_pipeline(_config(write_config(tmp_path, src)), run_id="n1")
    # monitoring.metric switched: the old accuracy points are not drawn on roc_auc's axis.
    auc = _config(write_config(tmp_path, source(tmp_path, df.sample(frac=1, random_state=1),
                                                "bc2"),
                               monitoring={"metric": "roc_auc", "metric_threshold": 0.6}))
    run_pipeline(auc, run_id="n2")
    data = collect(Workspace.open(auc))
    assert history_metrics(data) == ["roc_auc", "accuracy"]
    assert [r.run_id for r in score_records(data, "roc_auc")] == ["n2"]
    assert [r.run_id for r in score_records(data, "accuracy")] == ["n1"]
    plots = render_plots(data)
    assert {"accuracy.png", "score-accuracy.png"} <= set(plots)
    page = render_html(data, plots)
    assert "<h2>roc_auc per run</h2>" in page and "<h2>accuracy per run</h2>" in page


def test_most_drifted_features_are_only_drifted_ones(tmp_path: Path) -> None:
    df = table("wine")
    src = source(tmp_path, df, "w1")
    cfg = _config(write_config(tmp_path, src, monitoring={"drift_method": "psi"}))
    run_pipeline(cfg, run_id="n1")
    shifted = df.assign(alcohol=df["alcohol"] * 2.5)
    run_pipeline(_config(write_config(tmp_path, source(tmp_path, shifted, "w2"),
                                      monitoring={"drift_method": "psi"})), run_id="n2")
    from mlops.observe.report import _most_drifted

    data = collect(Workspace.open(cfg))
    series = {str(f["feature"]): [0.0] for _, rep in data.drift for f in rep["features"]}
    named, rest = _most_drifted(data.drift, series)
    drifted = {f["feature"] for _, rep in data.drift for f in rep["features"] if f["drifted"]}
    assert "alcohol" in named and set(named) <= drifted
    assert set(rest) == set(series) - set(named)
    assert _most_drifted([], series) == ([], list(series))  # nothing drifted: none named


def test_help_says_classifier_or_regressor(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "classifier or regressor" in " ".join(capsys.readouterr().out.split())


def test_a_closed_pipe_is_not_a_failure(tmp_path: Path) -> None:
    path = write_config(tmp_path, source(tmp_path, table("wine"), "w"))
    run_pipeline(_config(path), run_id="n1")
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already exited
    try:
        proc = subprocess.run([sys.executable, "-m", "mlops", "versions", "data", "-c", path],
                              stdout=write, stderr=subprocess.PIPE, cwd=ROOT, timeout=120,
                              check=False)
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""


@pytest.mark.parametrize("engine", ENGINES)
def test_json_is_one_document_whatever_the_engine(tmp_path: Path, engine: str) -> None:
    path = write_config(tmp_path, source(tmp_path, table("breast_cancer"), "bc"), engine,
                        training={"model_type": "lightgbm"})
    proc = subprocess.run([sys.executable, "-m", "mlops", "run", "-c", path, "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary: dict[str, Any] = json.loads(proc.stdout)  # exactly one document, nothing else
    assert summary["retrained"] is True
    assert "[LightGBM]" not in proc.stdout
