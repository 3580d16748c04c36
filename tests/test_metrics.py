"""Run metrics pushed to the real Prometheus Pushgateway (Debian's prometheus-pushgateway).

The Pushgateway runs on 127.0.0.1 (a fresh one per test module); each test pushes with
its own namespace in the grouping key, scrapes ``/metrics`` and checks values and labels.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import Config
from mlops.errors import ConfigError
from mlops.observe.metrics import METRICS, Pusher, Sample, drift_streak, schema_changes
from mlops.runner import run_pipeline
from tests.conftest import free_port, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"n_samples": 400, "n_features": 4}


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Pushgateway on 127.0.0.1 (stopped at the end of the module)."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        skip_or_fail("prometheus-pushgateway is not installed (apt-get install "
                     "prometheus-pushgateway)")
    port = free_port()
    log = (tmp_path_factory.mktemp("pushgateway") / "log").open("wb")
    proc = subprocess.Popen([str(binary), f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # bounded: at most ~10 s
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the Pushgateway did not become ready in 10 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def scrape(url: str, namespace: str) -> Scrape:
    """The ``mlops_*`` samples of one grouping key, as ``{(name, labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode("utf-8")
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("mlops_") and s.labels.get("namespace") == namespace:
                labels = {k: v for k, v in s.labels.items()
                          if k not in ("job", "namespace", "release", "instance")}
                out[(s.name, frozenset(labels.items()))] = s.value
    return out


def value(samples: Scrape, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def config(make_config: Any, url: str, namespace: str, **sections: Any) -> Config:
    sections = {"data": GOOD, **sections}
    sections["observability"] = {"pushgateway_url": url, **sections.get("observability", {})}
    cfg: Config = make_config(kubernetes={"namespace": namespace, "release": "nightly"},
                              **sections)
    return cfg


def test_a_run_pushes_its_metrics_with_names_labels_and_values(
        make_config: Any, pushgateway: str) -> None:
    before = time.time()
    summary = run_pipeline(config(make_config, pushgateway, "ns-run"), run_id="run-1")
    got = scrape(pushgateway, "ns-run")
    assert before <= value(got, "mlops_last_success_timestamp_seconds") <= time.time()
    for step in ("ingest", "monitor-check", "train"):
        assert 0 < value(got, "mlops_step_duration_seconds", step=step) < 60
    assert value(got, "mlops_ingested_rows") == 400
    assert value(got, "mlops_serving_model_metric", metric="accuracy") == \
        pytest.approx(summary["accuracy"])
    assert value(got, "mlops_challenger_metric", metric="accuracy") == \
        pytest.approx(summary["challenger_accuracy"])
    assert value(got, "mlops_serving_model_threshold", metric="accuracy") == 0.7
    assert value(got, "mlops_serving_model_info", model_version="run-1") == 1
    assert value(got, "mlops_retrains_total", reason="no_model") == 1
    assert value(got, "mlops_promotions_total", outcome="promoted") == 1
    assert value(got, "mlops_promotions_total", outcome="rejected") == 0
    assert value(got, "mlops_drift_detected") == 0
    assert value(got, "mlops_schema_changes_total") == 0
    # The grouping key: job, release and namespace label every pushed series.
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'mlops_ingested_rows{instance="",job="mlops",namespace="ns-run",' \
           'release="nightly"} 400' in text

    # Night 2 on other data drifts (psi) and retrains: per-feature drift and counters grow.
    cfg2 = config(make_config, pushgateway, "ns-run",
                  monitoring={"drift_method": "psi", "accuracy_min_threshold": 1.0})
    cfg2 = Config.from_dict({**cfg2.to_dict(), "data": {**GOOD, "random_state": 3,
                                                        "n_samples": 500}})
    summary2 = run_pipeline(cfg2, run_id="run-2")
    got = scrape(pushgateway, "ns-run")
    assert value(got, "mlops_ingested_rows") == 500
    assert value(got, "mlops_retrains_total", reason="low_accuracy") == 1
    assert value(got, "mlops_retrains_total", reason="no_model") == 1
    assert value(got, "mlops_promotions_total", outcome="promoted") + \
        value(got, "mlops_promotions_total", outcome="rejected") == 2
    features = summary2["drift_report"]["features"]
    assert len(features) == 4
    for f in features:
        assert value(got, "mlops_feature_drift_statistic", feature=f["feature"],
                     method="psi") == pytest.approx(f["statistic"])
        assert value(got, "mlops_feature_drifted", feature=f["feature"], method="psi") == \
            float(f["drifted"])
    assert value(got, "mlops_drift_score") == pytest.approx(summary2["drift"])


def test_a_failed_run_keeps_the_last_success(make_config: Any, pushgateway: str,
                                             tmp_path: Path) -> None:
    cfg = config(make_config, pushgateway, "ns-fail")
    summary = run_pipeline(cfg, run_id="ok-1")
    good = scrape(pushgateway, "ns-fail")
    bad = Config.from_dict({**cfg.to_dict(),
                            "data": {"source": str(tmp_path / "missing.csv")}})
    with pytest.raises(Exception, match=r"missing\.csv"):
        run_pipeline(bad, run_id="bad-2")
    after = scrape(pushgateway, "ns-fail")
    failed_at = value(after, "mlops_last_failure_timestamp_seconds", step="ingest")
    assert failed_at > value(after, "mlops_last_success_timestamp_seconds")
    # pushadd: what the failed run did not push is the last success's, untouched.
    for name in ("mlops_last_success_timestamp_seconds", "mlops_ingested_rows"):
        assert value(after, name) == value(good, name)
    assert value(after, "mlops_serving_model_metric", metric="accuracy") == \
        pytest.approx(summary["accuracy"])
    assert ("mlops_step_duration_seconds", frozenset({("step", "ingest")})) in after


def test_an_unreachable_pushgateway_never_fails_the_run(
        make_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = config(make_config, dead, "ns-dead", observability={"push_timeout_seconds": 1})
    with caplog.at_level(logging.WARNING, logger="mlops"):
        summary = run_pipeline(cfg, run_id="run-1")
    assert summary["model_version"] == "run-1"
    warnings = [r.getMessage() for r in caplog.records if "metrics push" in r.getMessage()]
    assert warnings and all(dead in w for w in warnings)
    assert len(warnings) == 4  # three steps and the run; each failed push is one warning


def test_a_pushgateway_without_the_client_library_stops_before_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mlops.cli import main

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    store = tmp_path / "store"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"storage: {{uri: '{store}'}}\nobservability: "
                        "{pushgateway_url: 'http://127.0.0.1:9'}\n")
    assert main(["run", "-c", str(cfg_file)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "mlops: error: observability.pushgateway_url is set but prometheus-client is not "
        "installed: install mlops[metrics] (or empty the URL)"]
    assert not store.exists()  # checked before the first write


def test_check_without_url_needs_no_library(make_config: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops.observe.metrics import require_prometheus_client

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    require_prometheus_client(make_config())  # off: nothing to check
    with pytest.raises(ConfigError, match="mlops\\[metrics\\]"):
        require_prometheus_client(make_config(
            observability={"pushgateway_url": "http://127.0.0.1:9"}))


def test_pusher_refuses_unknown_metrics_and_streaks_count_from_the_end(
        make_config: Any) -> None:
    with pytest.raises(KeyError):  # a metric that is not documented cannot be pushed
        list(_collect([Sample("mlops_not_documented", 1.0)]))
    assert Pusher(make_config()).push([Sample("mlops_drift_score", 1.0)]) is False  # off
    history = [{"reasons": ["drift"]}, {"reasons": []}, {"reasons": ["drift"]},
               {"reasons": ["low_accuracy", "drift"]}]
    assert drift_streak(history) == 2
    assert drift_streak([]) == 0
    cols = [{"columns": [{"name": "a", "dtype": "int64"}]},
            {"columns": [{"name": "a", "dtype": "int64"}]},
            {"columns": [{"name": "a", "dtype": "float64"}]},
            {"columns": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "bool"}]}]
    assert schema_changes(cols) == 2


def _collect(samples: list[Sample]) -> Iterator[Any]:
    from mlops.observe.metrics import _Collector

    return _Collector(samples).collect()


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for m in METRICS:
        assert f"`{m.name}`" in doc, m.name
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{m.name}`"))
        assert m.kind in row, m.name
        for label in m.labels:
            assert f"`{label}`" in row, (m.name, label)
        # Prometheus naming conventions: units and _total suffixes.
        assert m.name.startswith("mlops_")
        assert (m.kind == "counter") == m.name.endswith("_total")
        if "timestamp" in m.name or "duration" in m.name:
            assert m.name.endswith("_seconds")
