"""Retention planning and deletion: limits, protected versions, shared payloads."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlops.config import Config
from mlops.errors import ConfigError
from mlops.pipeline import serving_reference
from mlops.runner import run_pipeline
from mlops.store.retention import apply_retention, plan_retention
from mlops.store.workspace import Workspace

#: Any move of a feature mean is drift, so each run on new data retrains (an accuracy
#: minimum of 1.0 would also keep every challenger from being promoted).
ALWAYS_RETRAIN = {"drift_method": "mean_l1", "drift_threshold": 0.0, "drift_min_samples": 0}


def five_runs(make_config: Any, **retention: Any) -> Config:
    """run-0..run-4 each with new data and a new model; run-4's challenger is worse,
    so production (and the reference) stay on run-3."""
    cfg: Config = make_config()
    for i in range(5):
        training = {"params": {"C": 1e-8}} if i == 4 else {}
        cfg = make_config(data={"n_samples": 300, "n_features": 3, "random_state": i},
                          monitoring=ALWAYS_RETRAIN, training=training, retention=retention)
        run_pipeline(cfg, run_id=f"run-{i}")
    ws = Workspace.open(cfg)
    assert ws.registry.get_alias() == "run-3"
    return cfg


def data_of(ws: Workspace, run: str) -> str:
    return str(ws.read_result(run, "ingest")["data_version"])


def test_keep_models_deletes_old_versions_but_never_protected_ones(make_config: Any) -> None:
    cfg = five_runs(make_config, keep_models=1)
    ws = Workspace.open(cfg)
    plan = plan_retention(ws)
    assert [d.version_id for d in plan.models] == ["run-2", "run-1", "run-0"]
    assert all("retention.keep_models" in d.reason for d in plan.models)
    assert plan.protected["model:run-3"] == "alias 'production' points to it"
    assert plan.data == ()  # keep_data_versions is unset: keep all
    result = apply_retention(ws, plan)
    assert [d.version_id for d in result.deleted] == ["run-2", "run-1", "run-0"]
    assert ws.registry.list_versions() == ["run-4", "run-3"]
    assert not any(k.startswith(("run-0/", "run-1/", "run-2/")) for k in ws.registry.store.walk())
    assert not any(name.endswith(("~run-0", "~run-1", "~run-2"))
                   for name in ws.registry.store.keys("_index"))
    assert "models/run-0/metadata.json" in result.deleted_keys
    # The serving model still loads and the pipeline still runs.
    ws.registry.load("run-3")
    # (Same data and config as run-4, whose challenger was rejected: not trained again.)
    again = run_pipeline(cfg, run_id="run-5")
    assert again["reasons"][-1] == "rejected_before" and again["model_version"] == "run-3"


def test_keep_data_versions_spares_the_reference_and_serving_training_data(
        make_config: Any) -> None:
    cfg = five_runs(make_config, keep_data_versions=1)
    ws = Workspace.open(cfg)
    reference = serving_reference(ws, ws.current_model_version())[0]  # the serving model's
    assert reference is not None and reference["data_version"] == data_of(ws, "run-3")
    plan = plan_retention(ws)
    doomed = {d.version_id for d in plan.data}
    assert doomed == {data_of(ws, f"run-{i}") for i in range(3)}
    assert data_of(ws, "run-3") not in doomed and data_of(ws, "run-4") not in doomed
    objects = {v.id: v.object for v in ws.versioner.list_records()}
    apply_retention(ws, plan)
    for vid in doomed:
        assert not ws.versioner.exists(vid)
        assert not ws.versioner.store.exists(objects[vid])
    assert set(ws.versioner.list_versions()) == \
        {data_of(ws, "run-3"), data_of(ws, "run-4")}
    ws.versioner.load(data_of(ws, "run-3"))


@pytest.mark.parametrize("keep", [0, None])
def test_zero_or_null_keeps_everything(make_config: Any, keep: int | None) -> None:
    cfg = make_config(data={"n_samples": 300}, retention={"keep_models": keep,
                                                          "keep_data_versions": keep})
    run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    plan = plan_retention(ws)
    assert plan.empty
    before = ws.store.walk("")
    assert apply_retention(ws, plan).deleted == ()
    assert ws.store.walk("") == before


def test_payload_shared_by_another_version_is_kept(make_config: Any) -> None:
    cfg = make_config(retention={"keep_data_versions": 1})
    ws = Workspace.open(cfg)
    df = pd.DataFrame({"feature_0": [1.0, 2.0], "target": [0, 1]})
    ws.versioner.register(df, "older")
    ws.versioner.register(df, "newer")
    plan = plan_retention(ws)
    assert [d.version_id for d in plan.data] == ["older"]
    obj = ws.versioner.get_metadata("older")["object"]
    result = apply_retention(ws, plan)
    assert not ws.versioner.exists("older")
    assert ws.versioner.store.exists(obj)
    assert f"data/{obj}" not in result.deleted_keys
    pd.testing.assert_frame_equal(ws.versioner.load("newer")[0], df)


def test_a_plan_gone_stale_does_not_delete_a_newly_promoted_model(make_config: Any) -> None:
    cfg = five_runs(make_config, keep_models=3)
    ws = Workspace.open(cfg)
    plan = plan_retention(ws)
    assert "run-1" in [d.version_id for d in plan.models]
    ws.registry.set_alias("run-1", reason="someone rolled forward by hand")
    result = apply_retention(ws, plan)
    assert ws.registry.exists("run-1")
    assert [(d.version_id, why) for d, why in result.skipped] == \
        [("run-1", "protected: alias 'production' points to it")]


def test_store_without_aliases_keeps_the_newest_model(make_config: Any) -> None:
    ws = Workspace.open(make_config(retention={"keep_models": 1}))
    for vid in ("m1", "m2", "m3"):
        ws.registry.save({"v": vid}, vid)
    plan = plan_retention(ws, keep_models=1)
    assert [d.version_id for d in plan.models] == ["m2", "m1"]
    assert plan.protected == {"model:m3": "it is the model that serves"}


def test_negative_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"retention\.keep_models' must be >= 0 or null"):
        Config.from_dict({"retention": {"keep_models": -1}})
    with pytest.raises(ConfigError, match=r"retention\.keep_data_versions' must be"):
        Config.from_dict({"retention": {"keep_data_versions": "3"}})


def test_mlops_gc_applies_retention_dry_run_changes_nothing(
        make_config: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import yaml

    from mlops.cli import main

    cfg = five_runs(make_config, keep_models=3)
    config_file = tmp_path / "gc.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    ws = Workspace.open(cfg)
    before = {k: ws.store.read_bytes(k) for k in ws.store.walk()}
    assert main(["gc", "--config", str(config_file), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert [m["version_id"] for m in planned["retention"]["models"]] == ["run-1", "run-0"]
    assert {k: ws.store.read_bytes(k) for k in ws.store.walk()} == before
    assert main(["gc", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "deleted model version run-1  (" in out
    assert ws.registry.list_versions() == ["run-4", "run-3", "run-2"]
