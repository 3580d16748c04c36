"""Drift methods: statistics checked against SciPy/numpy, synthetic shifts, config errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops.config import Config
from mlops.data import generate_synthetic_data, split_xy
from mlops.drift import (
    DriftReport,
    DriftSettings,
    build_reference,
    distribution_report,
    mean_l1_report,
)
from mlops.errors import ConfigError
from mlops.monitor import ModelMonitor
from mlops.runner import run_pipeline
from mlops.workspace import Workspace
from tests.conftest import skip_or_fail

N_FEATURES = 4


def features(n: int = 2000, seed: int = 1, shift: float = 0.0, scale: float = 1.0
             ) -> pd.DataFrame:
    x, _ = split_xy(generate_synthetic_data(n, N_FEATURES, seed, shift=shift, scale=scale),
                    "target")
    return x


def report_for(method: str, current: pd.DataFrame, ref_rows: int = 2000,
               **thresholds: Any) -> DriftReport:
    reference = features(ref_rows, seed=1)
    settings = DriftSettings(method=method, **thresholds)
    if method == "mean_l1":
        return mean_l1_report(reference.mean().to_dict(), current.mean().to_dict(), settings)
    return distribution_report(build_reference(reference, settings.psi_bins), current, settings)


# --- the statistics against SciPy / a direct formula -------------------------------------
def test_psi_matches_a_direct_numpy_formula() -> None:
    ref, cur = features(seed=1), features(1000, seed=7, shift=0.3)
    report = report_for("psi", cur)
    for f in report.features:
        r, c = ref[f.feature].to_numpy(), cur[f.feature].to_numpy()
        edges = np.quantile(r, np.linspace(0, 1, 11))
        edges[0], edges[-1] = -np.inf, np.inf
        rs = np.histogram(r, edges)[0] / len(r)
        cs = np.histogram(c, edges)[0] / len(c)
        rs, cs = np.clip(rs, 1e-4, None), np.clip(cs, 1e-4, None)
        expected = float(np.sum((cs - rs) * np.log(cs / rs)))
        assert f.statistic == pytest.approx(expected, rel=1e-9)


def test_ks_and_wasserstein_match_scipy_on_the_same_data() -> None:
    ref, cur = features(seed=1), features(800, seed=3, scale=1.3)
    ks = report_for("ks", cur)
    ws = report_for("wasserstein", cur)
    for f_ks, f_ws in zip(ks.features, ws.features, strict=True):
        r, c = ref[f_ks.feature].to_numpy(), cur[f_ks.feature].to_numpy()
        assert f_ks.statistic == pytest.approx(stats.ks_2samp(r, c).pvalue, rel=1e-9)
        expected = stats.wasserstein_distance(r, c) / np.std(r, ddof=1)
        assert f_ws.statistic == pytest.approx(expected, rel=1e-9)


def test_reference_sample_is_bounded_and_deterministic() -> None:
    big = features(12000, seed=5)
    a = build_reference(big, sample_size=5000)
    b = build_reference(big, sample_size=5000)
    assert a == b
    sample = a["features"]["feature_0"]["sample"]
    assert len(sample) == 5000
    assert set(sample) <= set(big["feature_0"].tolist())
    assert len(a["features"]["feature_0"]["edges"]) == 9
    assert sum(a["features"]["feature_0"]["shares"]) == pytest.approx(1.0)
    assert a["rows"] == 12000


# --- synthetic shifts --------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mean_l1", "psi", "ks", "wasserstein", "auto"])
def test_mean_shift_is_caught_by_every_method(method: str) -> None:
    report = report_for(method, features(1000, seed=9, shift=1.5))
    assert report.dataset_drifted
    if method != "mean_l1":
        assert report.share_drifted == 1.0
        assert report.score == 1.0


@pytest.mark.parametrize("method", ["psi", "ks", "wasserstein", "auto"])
def test_spread_only_change_is_caught_by_distribution_methods(method: str) -> None:
    report = report_for(method, features(1000, seed=9, scale=1.8))
    assert report.dataset_drifted
    assert report.drifted_features == [f"feature_{i}" for i in range(N_FEATURES)]


def test_spread_only_change_is_missed_by_mean_l1() -> None:
    report = report_for("mean_l1", features(1000, seed=9, scale=1.8))
    assert not report.dataset_drifted
    assert report.score < 0.01
    assert report.drifted_features == []


@pytest.mark.parametrize("method", ["mean_l1", "psi", "ks", "wasserstein", "auto"])
def test_no_shift_is_not_drift(method: str) -> None:
    report = report_for(method, features(1000, seed=11))
    assert not report.dataset_drifted
    assert report.share_drifted < 0.5


def test_auto_uses_ks_for_small_references_and_wasserstein_above() -> None:
    cur = features(500, seed=4)
    small = report_for("auto", cur, ref_rows=1000)
    large = report_for("auto", cur, ref_rows=1001)
    assert {f.method for f in small.features} == {"ks"}
    assert {f.method for f in large.features} == {"wasserstein"}
    assert small.method == large.method == "auto"


def test_thresholds_are_configurable() -> None:
    cur = features(1000, seed=9, shift=0.15)
    assert not report_for("psi", cur, psi_threshold=5.0).dataset_drifted
    assert report_for("wasserstein", cur, wasserstein_threshold=0.01).dataset_drifted
    strict_share = report_for("ks", features(1000, seed=9, shift=1.0), drift_share=1.0)
    assert strict_share.dataset_drifted


def test_report_round_trips_through_json_data() -> None:
    report = report_for("psi", features(1000, seed=9, shift=1.0))
    assert DriftReport.from_dict(report.to_dict()) == report


# --- the monitor: reference document, fallback, min samples ------------------------------
def test_monitor_reference_and_decision_with_psi(store_uri: str,
                                                 storage_options: dict[str, Any]) -> None:
    monitor = ModelMonitor(store_uri, drift=DriftSettings(method="psi"), drift_min_samples=100,
                           storage_options=storage_options)
    train = features(2000, seed=1)
    monitor.update_reference_distribution(train.mean().to_dict(), train, model_version="m1")
    doc = monitor.get_reference()
    assert doc is not None and doc["model_version"] == "m1"
    assert set(doc["distribution"]["features"]) == set(train.columns)
    wide = features(1000, seed=2, scale=2.0)
    decision = monitor.decide(0.9, wide.mean().to_dict(), no_model_yet=False,
                              n_samples=len(wide), current_frame=wide)
    assert decision.reasons == ("drift",)
    assert decision.drift == 1.0
    small = wide.head(50)
    uncounted = monitor.decide(0.9, small.mean().to_dict(), no_model_yet=False,
                               n_samples=len(small), current_frame=small)
    assert not uncounted.retrain and not uncounted.drift_counted
    # The public mean_l1 API is unchanged.
    assert monitor.compute_drift(wide.mean().to_dict()) < 0.01


def test_old_reference_without_distribution_falls_back_to_mean_l1(
        store_uri: str, storage_options: dict[str, Any]) -> None:
    old = ModelMonitor(store_uri, storage_options=storage_options)
    old.update_reference_distribution({"feature_0": 10.0})
    monitor = ModelMonitor(store_uri, drift=DriftSettings(method="ks"),
                           storage_options=storage_options)
    report = monitor.drift_report(pd.DataFrame({"feature_0": [12.0] * 10}))
    assert report is not None and report.method == "mean_l1"
    assert "no distribution summary" in report.note
    assert report.score == pytest.approx(0.2)


def test_pipeline_records_the_drift_report(make_config: Any) -> None:
    cfg: Config = make_config(monitoring={"drift_method": "wasserstein"},
                              data={"n_samples": 400, "n_features": 3})
    first = run_pipeline(cfg, run_id="run-1")
    assert first["drift_report"] is None and first["retrained"]
    second = run_pipeline(cfg, run_id="run-2")
    report = DriftReport.from_dict(second["drift_report"])
    assert report.method == "wasserstein"
    assert [f.feature for f in report.features] == ["feature_0", "feature_1", "feature_2"]
    assert second["drift"] == report.share_drifted
    ws = Workspace.open(cfg)
    assert ws.read_result("run-2", "monitor-check")["drift_report"] == second["drift_report"]


# --- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(("section", "match"), [
    ({"drift_method": "chi2"}, r"monitoring\.drift_method.*'chi2'"),
    ({"psi_threshold": 0}, r"monitoring\.psi_threshold' must be > 0"),
    ({"psi_bins": 1}, r"monitoring\.psi_bins' must be between 2 and 1000"),
    ({"ks_p_value": 1.5}, r"monitoring\.ks_p_value' must be between 0 and 1"),
    ({"wasserstein_threshold": -0.1}, r"monitoring\.wasserstein_threshold' must be > 0"),
    ({"drift_share": 0}, r"monitoring\.drift_share' must be in \(0, 1\]"),
])
def test_bad_drift_settings_are_config_errors(section: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"monitoring": section})


def test_monitor_rejects_an_unknown_method_directly() -> None:
    with pytest.raises(ConfigError, match=r"unknown drift method 'median'"):
        DriftSettings(method="median")


def test_cli_run_prints_one_drift_line(make_config: Any, tmp_path: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from mlops.cli import main

    cfg: Config = make_config(monitoring={"drift_method": "ks"},
                              data={"n_samples": 300, "n_features": 3})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    assert main(["run", "-c", str(path), "--run-id", "r1"]) == 0
    assert main(["run", "-c", str(path), "--run-id", "r2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"drift_report:\s+-\n", out)  # the first run has no reference
    assert "ks: 0/3 features drifted; no data set drift" in out


# --- the statistics table (issue 23): one row per statistic, both implementations -------------
def test_every_drift_statistic_is_one_row_with_an_exact_and_a_sketch_implementation() -> None:
    from dataclasses import fields

    from mlops.choices import CATEGORICAL, NUMERIC
    from mlops.drift import STAT_TESTS, stat_test

    try:
        from mlops.engines.sketches import SketchContext, sketch_of_values
    except ImportError:
        skip_or_fail("datasketches is not installed (the mlops[dask] extra)")
    rows = [(t.method, t.kind) for t in STAT_TESTS]
    assert len(rows) == len(set(rows))
    keys = {f.name for f in fields(DriftSettings)}
    for test in STAT_TESTS:
        assert test.threshold_key in keys
        assert callable(test.exact) and callable(test.sketch)
    for method in ("psi", "ks", "wasserstein"):
        for kind in (NUMERIC, CATEGORICAL):
            assert stat_test(method, kind).method == method
    # The direction decides, at the threshold itself too.
    settings = DriftSettings()
    assert stat_test("psi").judge("x", settings.psi_threshold, settings).drifted
    assert not stat_test("ks").judge("x", settings.ks_p_value, settings).drifted
    assert stat_test("ks").judge("x", settings.ks_p_value / 2, settings).drifted
    assert not stat_test("mean_l1").judge("x", settings.drift_threshold, settings).drifted
    # Exact values and sketches measure the same thing.
    reference = build_reference(features(5000, seed=1), 10)
    for shift, drifted in ((0.0, False), (1.0, True)):
        values = features(5000, seed=2, shift=shift)["feature_0"].to_numpy()
        ref = reference["features"]["feature_0"]
        ctx = SketchContext(len(values), reference["rows"], reference["sample_size"], 2000,
                            float(values.mean()))
        for method in ("psi", "ks", "wasserstein"):
            test = stat_test(method)
            exact = test.exact(ref, values)
            sketched = test.sketch(ref, sketch_of_values(values), ctx)
            t = test.threshold(settings)
            assert test.drifted(exact, t) is test.drifted(sketched, t) is drifted, method
            if method != "ks":
                assert sketched == pytest.approx(exact, abs=0.02), method
