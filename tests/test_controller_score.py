"""The score step as its own Job under the controller, with the chart's Role.

Real parts: the controller and the ``kubernetes`` client over HTTP to the local API server
(tests/fakes/kube), which authorizes every request by the Role the real Helm engine renders
from the chart, and whose kubelet runs each step Job's pod as a process. Stand-in, as in
tests/test_controller.py: the image's ``mlops`` entrypoint (the test wrapper that runs
``python -m mlops`` from this checkout).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops.cli import main
from mlops.data import generate_synthetic_data
from tests.chart_render import render_chart, values_file
from tests.test_controller import NS, Env, env  # noqa: F401 - env is a fixture

pytest_plugins = ["tests.fakes.kube_fixtures"]  # kube_api_factory


def test_controller_runs_score_as_its_own_job_under_the_charts_role(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    api = env.api
    docs = render_chart(values_file("values-dev.yaml"), name="nightly", namespace=NS)
    [role] = [d for ds in docs.values() for d in ds if d.get("kind") == "Role"]
    api.use_role(role)  # the controller may do exactly what the chart's Role grants

    batch = generate_synthetic_data(80, 4, 5).drop(columns=["target"])
    batch.insert(0, "row_id", range(80))
    (tmp_path / "score").mkdir()
    batch.to_parquet(tmp_path / "score" / "batch.parquet", index=False)
    env.write_config({
        "storage": {"uri": str(env.store)}, "data": {"n_samples": 300, "n_features": 4},
        "kubernetes": {"namespace": NS, "step_timeout_seconds": 120},
        "scoring": {"source": str(tmp_path / "score"), "id_columns": ["row_id"]}})

    code = main(["controller", "--config", str(env.config_file), "--kubeconfig",
                 env.kubeconfig, "--run-id", "night-1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert env.job_names() == [f"mlops-night-1-{s}" for s in
                               ("ingest", "monitor-check", "score", "train")]
    score_job = api.get_object("jobs", NS, "mlops-night-1-score")
    assert score_job["status"]["succeeded"] == 1
    container = score_job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "score" and container["args"][-2:] == ["--run-id", "night-1"]
    scored = env.result("night-1", "score")
    assert scored is not None and scored["rows"] == 80
    assert scored["model_version"] == summary["model_version"] == "night-1"
    assert summary["predictions_uri"] == scored["predictions_uri"]
    assert env.result("night-1", "controller")["steps"]["score"] == \
        "created Job mlops-night-1-score"
    manifest = json.loads(Path(summary["predictions_uri"].removeprefix("file://")).read_text())
    objects = [env.store / "predictions" / p["object"] for p in manifest["partitions"]]
    got = pd.concat([pd.read_parquet(o) for o in objects], ignore_index=True)
    assert got["row_id"].tolist() == list(range(80))
    assert {"prediction", "probability_0", "probability_1"} <= set(got.columns)

    # Next night, same data: no retrain, and the score Job still runs (after monitor-check);
    # the same model on the same rows gives the same predictions version.
    code = main(["controller", "--config", str(env.config_file), "--kubeconfig",
                 env.kubeconfig, "--run-id", "night-2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    second = json.loads(out)
    assert second["retrained"] is False
    assert "mlops-night-2-train" not in env.job_names()
    assert "mlops-night-2-score" in env.job_names()
    assert second["predictions_uri"] == summary["predictions_uri"]
