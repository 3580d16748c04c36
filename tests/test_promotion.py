"""Champion/challenger promotion, the alias history, promote and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.config import Config
from mlops.data import split_xy
from mlops.errors import BadInputError, VersionNotFoundError
from mlops.pipeline import serving_reference, train
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from mlops.training import evaluate, split

GOOD: dict[str, Any] = {"n_samples": 600, "n_features": 4}
#: A logistic regression this regularized predicts (almost) one class: a worse challenger.
WORSE = {"params": {"C": 1e-8}}
#: Any move of a feature mean counts as drift, so every run on new data retrains (a
#: threshold of 1.0 would also keep every challenger from being promoted).
ALWAYS_RETRAIN = {"drift_method": "mean_l1", "drift_threshold": 0.0, "drift_min_samples": 0}


def snapshot(ws: Workspace) -> dict[str, bytes]:
    """Every object of the store, to prove that a failed command changed nothing."""
    return {key: ws.store.read_bytes(key) for key in ws.store.walk("")}


def config_file(cfg: Config, tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    return str(path)


def two_runs(make_config: Any, tolerance: float = 0.0,
             **monitoring: Any) -> tuple[Config, dict[str, Any]]:
    first = make_config(data=GOOD, monitoring=ALWAYS_RETRAIN)
    run_pipeline(first, run_id="run-1")
    worse = make_config(data={**GOOD, "random_state": 7},
                        monitoring={**ALWAYS_RETRAIN, **monitoring},
                        training=WORSE, promotion={"tolerance": tolerance})
    return worse, run_pipeline(worse, run_id="run-2")


def test_first_model_is_promoted(make_config: Any) -> None:
    cfg = make_config(data=GOOD)
    summary = run_pipeline(cfg, run_id="run-1")
    assert summary["promoted"] is True
    assert summary["model_version"] == "run-1"
    assert summary["champion_accuracy"] is None
    ws = Workspace.open(cfg)
    assert ws.registry.get_alias("production") == "run-1"
    [event] = ws.registry.alias_history("production")
    assert event["action"] == "promote" and event["previous"] is None
    assert event["by"] == "pipeline run run-1"
    assert "first model" in event["reason"]


def test_worse_challenger_is_saved_but_not_promoted(make_config: Any) -> None:
    cfg, summary = two_runs(make_config)
    ws = Workspace.open(cfg)
    assert ws.registry.exists("run-2")
    assert ws.registry.get_alias("production") == "run-1"
    assert ws.current_model_version() == "run-1"
    assert summary["promoted"] is False
    assert summary["retrained"] is True
    assert summary["model_version"] == "run-1"
    assert summary["challenger_version"] == "run-2"
    # The champion was evaluated on the challenger's own held-out split.
    df, _ = ws.versioner.load(summary["data_version"])
    x, y = split_xy(df, "target")
    _, x_test, _, y_test = split(x, y, cfg.data.test_size, cfg.training.random_state)
    champion, _ = ws.registry.load("run-1")
    assert summary["champion_accuracy"] == pytest.approx(evaluate(champion, x_test, y_test))
    assert summary["accuracy"] == summary["champion_accuracy"]
    assert summary["challenger_accuracy"] < summary["champion_accuracy"]
    # The history names the model that serves and its score, as the summary does; the
    # challenger's are under challenger_*, and the note says why it lost.
    record = ws.monitor.get_history()[-1]
    assert record["model_version"] == summary["model_version"] == "run-1"
    assert record["promoted"] is False
    assert record["accuracy"] == summary["accuracy"]
    assert record["score"] == summary["score"]
    assert record["challenger_version"] == "run-2"
    assert record["challenger_accuracy"] == summary["challenger_accuracy"]
    assert record["challenger_score"] == summary["challenger_score"]
    assert summary["note"] == record["note"] != ""
    assert summary["note"].startswith("challenger accuracy ")
    reference, why = serving_reference(ws, ws.current_model_version())  # the serving model's
    assert reference is not None and reference["model_version"] == "run-1", why
    # The next run is checked with the champion; a challenger rejected on this data version
    # with this config is not trained again, and the reason says so.
    third = run_pipeline(cfg, run_id="run-3")
    assert ws.read_result("run-3", "monitor-check")["model_version"] == "run-1"
    assert third["retrained"] is False and third["challenger_version"] is None
    assert third["reasons"] == ["drift", "rejected_before"]
    assert third["note"].startswith("challenger run-2 was trained on data version "
                                    f"{summary['data_version']} with the same config and not "
                                    "promoted")
    assert not ws.registry.exists("run-3")
    # Another config (or other data) trains again.
    other = make_config(data={**GOOD, "random_state": 7}, monitoring=ALWAYS_RETRAIN,
                        training={"params": {"C": 1e-7}})
    assert run_pipeline(other, run_id="run-4")["challenger_version"] == "run-4"


def test_tolerance_lets_a_slightly_worse_challenger_win(make_config: Any) -> None:
    # No accuracy limit: the one-class challenger is below the default 0.7; and no limit
    # on its fall below the champion's held-out score (max_degradation) either.
    cfg, summary = two_runs(make_config, tolerance=1.0, accuracy_min_threshold=0.0,
                            max_degradation=None)
    assert summary["promoted"] is True
    assert summary["model_version"] == "run-2"
    ws = Workspace.open(cfg)
    assert ws.registry.get_alias() == "run-2"
    event = ws.registry.alias_history()[-1]
    assert event["previous"] == "run-1"
    assert "tolerance 1" in event["reason"]


def test_retried_train_step_does_not_move_the_alias_again(make_config: Any) -> None:
    cfg = make_config(data=GOOD)
    run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    before = ws.registry.alias_history()
    again = train(cfg, "run-1", ws)
    assert again.promoted is True
    assert ws.registry.alias_history() == before
    assert len(ws.monitor.get_history()) == 1


def test_promote_and_rollback_walk_the_history(make_config: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = two_runs(make_config)
    path = config_file(cfg, tmp_path)
    assert main(["promote", "run-2", "--reason", "manual test", "-c", path]) == 0
    assert "run-2" in capsys.readouterr().out
    ws = Workspace.open(cfg)
    assert ws.registry.get_alias() == "run-2"
    event = ws.registry.alias_history()[-1]
    assert (event["action"], event["previous"], event["reason"]) == \
        ("promote", "run-1", "manual test")
    assert main(["rollback", "-c", path]) == 0
    assert ws.registry.get_alias() == "run-1"
    capsys.readouterr()
    assert main(["versions", "models", "-c", path]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:2] == ["ID", "ALIASES"]
    assert listing[1].split()[:2] == ["run-2", "-"]
    assert listing[2].split()[:2] == ["run-1", "production"]
    assert ws.current_model_version() == "run-1"
    last = ws.registry.alias_history()[-1]
    assert (last["action"], last["version"], last["previous"]) == ("rollback", "run-1", "run-2")
    # Nothing before run-1: a clear error, exit code 2, nothing changed.
    before = snapshot(ws)
    capsys.readouterr()
    assert main(["rollback", "-c", path]) == 2
    err = capsys.readouterr().err
    assert "cannot roll back alias 'production': its history has no earlier version" in err
    assert snapshot(ws) == before


def test_promote_of_a_missing_version_changes_nothing(make_config: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(data=GOOD)
    run_pipeline(cfg, run_id="run-1")
    ws = Workspace.open(cfg)
    before = snapshot(ws)
    assert main(["promote", "nope", "-c", config_file(cfg, tmp_path)]) == 2
    assert "unknown model version 'nope'" in capsys.readouterr().err
    assert snapshot(ws) == before
    with pytest.raises(VersionNotFoundError, match=r"cannot promote unknown model version 'x'"):
        ws.registry.set_alias("x")


def test_rollback_without_history_is_bad_input(make_config: Any) -> None:
    ws = Workspace.open(make_config())
    with pytest.raises(BadInputError, match=r"alias 'production': its history has no earlier"):
        ws.registry.rollback()
    assert ws.store.walk("") == []


def test_store_without_aliases_serves_the_newest_model(make_config: Any) -> None:
    ws = Workspace.open(make_config())
    ws.registry.save({"old": 1}, "old-1")
    ws.registry.save({"old": 2}, "old-2")
    assert ws.registry.get_alias() is None
    assert ws.current_model_version() == "old-2"
    ws.registry.set_alias("old-1")
    assert ws.current_model_version() == "old-1"


def test_stale_pointer_is_rederived_from_the_history(make_config: Any) -> None:
    ws = Workspace.open(make_config())
    for vid in ("a", "b", "c"):
        ws.registry.save({"v": vid}, vid)
        ws.registry.set_alias(vid)
    ws.registry.rollback()
    pointer = "_aliases/production/current.json"
    ws.registry.store.delete(pointer)
    assert ws.registry.get_alias() == "b"
    ws.registry.rollback()
    assert ws.registry.get_alias() == "a"
    assert ws.registry.aliases() == {"production": "a"}
    assert [e["action"] for e in ws.registry.alias_history()] == \
        ["promote", "promote", "promote", "rollback", "rollback"]
