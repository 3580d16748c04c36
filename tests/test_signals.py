"""Signals a team can page on (issue 18 items 1, 2, 4, 5; issue 19 items 9 and 16's
truncated summary), on scikit-learn's offline real tables, on both engines where the data
matters: a failed night is unhealthy at once, one gate for the run and ``mlops status``, the
serving model verified by the registry's own checks, the same data version never drifts,
and ``monitoring.max_degradation`` catches a collapse no threshold was set for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import datasets

from mlops.cli import main
from mlops.config import Config
from mlops.runner import run_pipeline
from mlops.status import check_health
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

ENGINES = ["pandas", "dask"]


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process Dask cluster for the module (the dask engine's steps use it)."""
    try:
        from distributed import Client, LocalCluster

        from mlops.engines.dask import NO_DASHBOARD
    except ImportError:  # pragma: no cover - the dev extra installs it
        skip_or_fail("dask/distributed are not installed (the mlops[dask] extra)")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "dask":
        request.getfixturevalue("client")
    return str(request.param)


def table(name: str) -> pd.DataFrame:
    """A real table with its label as ``target`` (scikit-learn ships them offline)."""
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "diabetes": datasets.load_diabetes}[name]
    frame = loader(as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def source(tmp_path: Path, df: pd.DataFrame, name: str) -> str:
    """``df`` as a Parquet file (both engines read it)."""
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path, index=False)
    return str(path)


def write_config(tmp_path: Path, src: str, engine: str = "pandas", **sections: Any) -> str:
    doc: dict[str, Any] = {"storage": {"uri": str(tmp_path / f"store-{engine}")},
                           "data": {"source": src, "engine": engine,
                                    **sections.pop("data", {})}, **sections}
    path = tmp_path / f"config-{engine}-{abs(hash(json.dumps(doc, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def status_json(capsys: pytest.CaptureFixture[str], cfg: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = cli(capsys, "status", "-c", cfg, "--json")
    return code, json.loads(out)


# --- 18.1 / 19.9: every failed night is unhealthy at once ----------------------------------
def test_an_exit_2_night_makes_status_unhealthy_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str) -> None:
    df = table("breast_cancer")
    cfg = write_config(tmp_path, source(tmp_path, df, "night1"), engine)
    assert cli(capsys, "run", "-c", cfg, "--run-id", "20261101-020000-aaaa")[0] == 0
    assert status_json(capsys, cfg)[0] == 0
    # Night 2: a column is gone; on_schema_change is fail (the default): exit 2.
    changed = write_config(tmp_path, source(tmp_path, df.drop(columns=["mean_radius"]),
                                            "night2"), engine)
    code, _, err = cli(capsys, "run", "-c", changed, "--run-id", "20261102-020000-bbbb")
    assert code == 2 and "schema change" in err
    code, health = status_json(capsys, cfg)
    assert code == 3
    assert health["last_run"]["outcome"] == "failed"
    assert health["failed_last_week"] == 1
    [problem] = health["problems"]
    assert problem.startswith("the latest finished run 20261102-020000-bbbb failed: step "
                              "monitor-check: schema change")
    assert problem.endswith("(exit 2)")


def test_a_bad_config_at_ingest_is_recorded_and_unhealthy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = source(tmp_path, table("breast_cancer"), "night1")
    cfg = write_config(tmp_path, src)
    assert cli(capsys, "run", "-c", cfg, "--run-id", "20261101-020000-aaaa")[0] == 0
    # A regression metric for a classification: exit 2 at ingest, before any data is kept.
    bad = write_config(tmp_path, src, monitoring={"metric": "rmse"})
    code, _, err = cli(capsys, "run", "-c", bad, "--run-id", "20261102-020000-bbbb")
    assert code == 2 and "'rmse' is not a classification metric" in err
    code, out, _ = cli(capsys, "status", "-c", cfg)
    assert code == 3
    assert "the latest finished run 20261102-020000-bbbb failed: step ingest: config key " \
           "'monitoring.metric'" in out
    ws = Workspace.open(Config.from_dict(yaml.safe_load(Path(cfg).read_text())))
    assert ws.read_result("20261102-020000-bbbb", "ingest") is None  # nothing else written


# --- 18.2: one gate, one place -------------------------------------------------------------
def test_status_judges_the_configured_gating_metric(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = source(tmp_path, table("breast_cancer"), "night1")
    # roc_auc with its own limit: accuracy_min_threshold is not the gate.
    auc = write_config(tmp_path, src, monitoring={"metric": "roc_auc", "metric_threshold": 0.55,
                                                  "accuracy_min_threshold": 0.999})
    assert cli(capsys, "run", "-c", auc)[0] == 0
    code, health = status_json(capsys, auc)
    assert code == 0, health["problems"]
    assert health["serving"]["metric"] == "roc_auc" and health["serving"]["limit"] == 0.55
    assert health["serving"]["score"] >= 0.55
    # accuracy with metric_threshold 0.999: that limit, not accuracy_min_threshold's 0.7.
    strict = write_config(tmp_path, src, monitoring={"metric": "accuracy",
                                                     "metric_threshold": 0.999})
    code, health = status_json(capsys, strict)
    assert code == 3
    assert health["serving"]["limit"] == 0.999
    assert any("below the threshold 0.999" in p for p in health["problems"])


# --- 19.9: the serving model must be usable ------------------------------------------------
def _first_night(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 **sections: Any) -> tuple[str, Workspace, str]:
    cfg = write_config(tmp_path, source(tmp_path, table("wine"), "wine"), **sections)
    assert cli(capsys, "run", "-c", cfg, "--run-id", "20261101-020000-aaaa")[0] == 0
    ws = Workspace.open(Config.from_dict(yaml.safe_load(Path(cfg).read_text())))
    assert status_json(capsys, cfg)[0] == 0
    return cfg, ws, "20261101-020000-aaaa"


def test_a_tampered_serving_artifact_is_unhealthy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ws, version = _first_night(tmp_path, capsys)
    artifact = ws.registry.get_record(version).artifact
    payload = bytearray(ws.registry.store.read_bytes(artifact))
    payload[len(payload) // 2] ^= 0xFF
    ws.registry.store.write_bytes(artifact, bytes(payload))
    code, health = status_json(capsys, cfg)
    assert code == 3
    assert any(f"serving model {version} (the production alias) is unusable" in p
               and "failed its integrity check" in p for p in health["problems"])


def test_a_bad_signature_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_SIGNING_KEY", "k1")
    cfg, ws, version = _first_night(tmp_path, capsys,
                                    registry={"signing_key_env": "MLOPS_TEST_SIGNING_KEY"})
    key = f"{version}/metadata.json"  # an edited record: its signature no longer matches
    record = json.loads(ws.registry.store.read_bytes(key))
    record["metadata"]["accuracy"] = 0.999
    ws.registry.store.write_bytes(key, json.dumps(record).encode())
    code, health = status_json(capsys, cfg)
    assert code == 3
    assert any(f"serving model {version}" in p and "sign" in p for p in health["problems"])


def test_an_alias_to_a_missing_model_is_unhealthy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ws, version = _first_night(tmp_path, capsys)
    for key in list(ws.registry.store.walk(version)):
        ws.registry.store.delete(key)
    code, health = status_json(capsys, cfg)
    assert code == 3
    assert any(f"serving model {version} (the production alias) is unusable" in p
               for p in health["problems"])


def test_a_run_that_replaced_a_tampered_model_alerts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ws, version = _first_night(tmp_path, capsys)
    artifact = ws.registry.get_record(version).artifact
    ws.registry.store.write_bytes(artifact, b"not the model")
    code, out, _ = cli(capsys, "run", "-c", cfg, "--run-id", "20261102-020000-bbbb", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["promoted"] is True
    assert "serving_model_unusable" in summary["reasons"]
    assert "serving_model_unusable" in summary["alerts"]
    assert "failed its integrity check" in summary["serving_error"]
    code, health = status_json(capsys, cfg)
    assert code == 3  # the new model serves, but someone must look at the store
    assert any("run 20261102-020000-bbbb replaced a serving model it could not use" in p
               for p in health["problems"])


# --- 19.16: a truncated summary ------------------------------------------------------------
def test_a_truncated_summary_is_a_damaged_run_not_a_bad_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ws, first = _first_night(tmp_path, capsys)
    assert cli(capsys, "run", "-c", cfg, "--run-id", "20261102-020000-bbbb")[0] == 0
    key = f"runs/{first}/summary.json"
    ws.store.write_bytes(key, ws.store.read_bytes(key)[:40])
    code, health = status_json(capsys, cfg)  # an old damaged run: the others still judged
    assert code == 0, health["problems"]
    assert health["damaged_runs"] == [first]
    key = "runs/20261102-020000-bbbb/summary.json"
    ws.store.write_bytes(key, ws.store.read_bytes(key)[:40])
    code, out, err = cli(capsys, "status", "-c", cfg)
    assert code == 3, err
    assert "the latest finished run 20261102-020000-bbbb damaged" in out
    assert "damaged runs:  20261102-020000-bbbb, 20261101-020000-aaaa" in out


# --- 18.4: the same data version never drifts ----------------------------------------------
@pytest.mark.parametrize("method", ["mean_l1", "psi", "ks", "wasserstein"])
def test_the_same_data_version_never_counts_as_drift(
        tmp_path: Path, engine: str, method: str) -> None:
    df = table("breast_cancer")
    features = df.columns.drop("target")
    df[features] = (df[features] - df[features].mean()) / df[features].std()  # centred
    cfg = Config.from_dict(yaml.safe_load(Path(write_config(
        tmp_path, source(tmp_path, df, "scaled"), engine,
        monitoring={"drift_method": method, "drift_min_samples": 0})).read_text()))
    assert run_pipeline(cfg, run_id="night-1")["retrained"] is True
    second = run_pipeline(cfg, run_id="night-2")
    assert "drift" not in second["reasons"]
    assert second["retrained"] is False, second["reasons"]
    checked = Workspace.open(cfg).read_result("night-2", "monitor-check")
    assert checked is not None and checked["drift_counted"] is False


# --- 18.5: max_degradation -----------------------------------------------------------------
def test_scrambled_regression_labels_are_degraded_and_unhealthy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str) -> None:
    df = table("diabetes")
    cfg = write_config(tmp_path, source(tmp_path, df, "night1"), engine)
    assert cli(capsys, "run", "-c", cfg, "--run-id", "20261101-020000-aaaa")[0] == 0
    code, health = status_json(capsys, cfg)
    assert code == 0 and health["serving"]["metric"] == "rmse"
    scrambled = df.assign(target=np.random.default_rng(0).permutation(df["target"].to_numpy()))
    night2 = write_config(tmp_path, source(tmp_path, scrambled, "night2"), engine)
    code, out, _ = cli(capsys, "run", "-c", night2, "--run-id", "20261102-020000-bbbb",
                       "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["reasons"][0] == "degraded"
    # The challenger cannot reach what the champion reached: it is not promoted.
    assert summary["promoted"] is False and summary["model_version"] == "20261101-020000-aaaa"
    assert "monitoring.max_degradation 0.2" in summary["note"]
    assert "degraded" in summary["alerts"]
    assert summary["score"] > 1.2 * summary["baseline_score"]
    code, health = status_json(capsys, cfg)
    assert code == 3
    assert any("fell more than monitoring.max_degradation 0.2" in p
               for p in health["problems"])
    # null: no limit (as before): the scrambled night passes.
    loose = write_config(tmp_path, source(tmp_path, scrambled, "night2"), engine,
                         monitoring={"max_degradation": None})
    assert status_json(capsys, loose)[0] == 0


def test_max_degradation_must_be_positive(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (0, -0.1, ".nan"):
        path = tmp_path / "bad.yaml"
        path.write_text(f"monitoring:\n  max_degradation: {bad}\n")
        code, _, err = cli(capsys, "config", "-c", str(path))
        assert code == 2
        assert "config key 'monitoring.max_degradation' must be > 0 and finite" in err


def test_check_health_reads_the_gate_from_the_config(tmp_path: Path) -> None:
    cfg = Config.from_dict(yaml.safe_load(Path(write_config(
        tmp_path, source(tmp_path, table("breast_cancer"), "bc"))).read_text()))
    run_pipeline(cfg, run_id="night-1")
    health = check_health(cfg)
    assert health.healthy and health.serving["metric"] == "accuracy"
    assert health.serving["baseline"] == pytest.approx(health.serving["score"])


def test_the_drift_defaults_are_a_measured_setting() -> None:
    """The config's drift defaults are one of the settings benchmarks/drift_defaults.py
    measures (docs/decisions.md has the table), and its harness runs (one split, wine)."""
    from benchmarks.drift_defaults import measure, settings_grid

    m = Config().monitoring
    assert (m.drift_method, m.ks_p_value, m.drift_share) == ("ks", 0.001, 0.01)
    assert any(s.settings.method == m.drift_method and s.settings.ks_p_value == m.ks_p_value
               and s.settings.drift_share == m.drift_share for s in settings_grid())
    result = measure(1, only=["wine"])
    row = next(r for r in result["rows"]
               if r["setting"] == "ks ks_p_value=0.001 drift_share=0.01")
    assert result["null_batches"] == 1 and result["shifted_batches"] == 4
    assert 0.0 <= row["false_retrains"] <= 1.0 and 0.0 <= row["misses"] <= 1.0
    decisions = (Path(__file__).resolve().parents[1] / "docs" / "decisions.md").read_text()
    assert "| ks ks_p_value=0.001 drift_share=0.01 |" in decisions
