"""The chart's observability parts, rendered by the real Helm engine: the PrometheusRule
(checked and unit-tested by the real ``promtool``), the Events rule of the Role, and the
webhook URLs that come from Secrets and never reach the ConfigMap."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from mlops.config import Config
from tests.chart_render import PROMETHEUS_OPERATOR_API, by_kind, render_chart, render_raw
from tests.conftest import skip_or_fail

RULE_ON = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"prometheus": "main"},
                                          "driftConsecutiveRuns": 3}}}
SEL = 'job="mlops",release="demo-mlops",namespace="ns"'


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool is not installed (apt-get install prometheus)")
    return str(path)


def rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    (rule,) = by_kind(render_chart(values, api_versions=[PROMETHEUS_OPERATOR_API]),
                      "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["prometheus"] == "main"
    assert rule["metadata"]["namespace"] == "ns"
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_no_prometheus_rule_by_default() -> None:
    assert by_kind(render_chart(), "PrometheusRule") == []


def test_prometheus_rule_passes_promtool_check(tmp_path: Path) -> None:
    groups = rule_groups(RULE_ON)
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    assert alerts == {"MlopsNoRecentSuccess", "MlopsNeverSucceeded", "MlopsRunFailed",
                      "MlopsServingBelowThreshold", "MlopsDriftPersistent"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


def test_prometheus_rule_alerts_fire_on_the_pushed_series(tmp_path: Path) -> None:
    """``promtool test rules``: input series like the Pushgateway's, alerts expected."""
    groups = rule_groups(RULE_ON)
    for g in groups:  # the annotations' templates are checked above; here: expressions
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    warn = {"severity": "warning"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {   # Last success at t=0; the rule's limit is 26 h (93600 s).
                "interval": "10m",
                "input_series": [
                    {"series": f"mlops_last_success_timestamp_seconds{{{SEL}}}",
                     "values": "0x200"},
                    {"series": f"mlops_drift_consecutive_runs{{{SEL}}}",
                     "values": "1 2 3x200"},
                    {"series": f'mlops_serving_model_metric{{{SEL},metric="accuracy"}}',
                     "values": "0.9 0.6x200"},
                    {"series": f'mlops_serving_model_threshold{{{SEL},metric="accuracy"}}',
                     "values": "0.7x200"},
                ],
                "alert_rule_test": [
                    {"eval_time": "25h", "alertname": "MlopsNoRecentSuccess", "exp_alerts": []},
                    {"eval_time": "27h", "alertname": "MlopsNoRecentSuccess",
                     "exp_alerts": [{"exp_labels": warn}]},
                    {"eval_time": "27h", "alertname": "MlopsNeverSucceeded", "exp_alerts": []},
                    {"eval_time": "0m", "alertname": "MlopsServingBelowThreshold",
                     "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "MlopsServingBelowThreshold",
                     "exp_alerts": [{"exp_labels": {**warn, "job": "mlops",
                                                    "release": "demo-mlops",
                                                    "namespace": "ns",
                                                    "metric": "accuracy"}}]},
                    {"eval_time": "10m", "alertname": "MlopsDriftPersistent", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "MlopsDriftPersistent",
                     "exp_alerts": [{"exp_labels": {**warn, "job": "mlops",
                                                    "release": "demo-mlops",
                                                    "namespace": "ns"}}]},
                    {"eval_time": "20m", "alertname": "MlopsRunFailed", "exp_alerts": []},
                ],
            },
            {   # A failure after the last success fires; a success after it clears it.
                "interval": "10m",
                "input_series": [
                    {"series": f"mlops_last_success_timestamp_seconds{{{SEL}}}",
                     "values": "100x3 1800x3"},
                    {"series": f'mlops_last_failure_timestamp_seconds{{{SEL},step="train"}}',
                     "values": "900x6"},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "MlopsRunFailed",
                     "exp_alerts": [{"exp_labels": warn}]},
                    {"eval_time": "50m", "alertname": "MlopsRunFailed", "exp_alerts": []},
                ],
            },
            {   # Other releases' series do not count; nothing ever pushed: never succeeded.
                "interval": "1h",
                "input_series": [
                    {"series": 'mlops_last_success_timestamp_seconds{job="mlops",'
                               'release="other",namespace="ns"}', "values": "0x40"}],
                "alert_rule_test": [
                    {"eval_time": "25h", "alertname": "MlopsNeverSucceeded", "exp_alerts": []},
                    {"eval_time": "27h", "alertname": "MlopsNeverSucceeded",
                     "exp_alerts": [{"exp_labels": {**warn, "job": "mlops",
                                                    "release": "demo-mlops",
                                                    "namespace": "ns"}}]},
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_may_create_events_and_nothing_more_about_them() -> None:
    (role,) = by_kind(render_chart(), "Role")
    event_rules = [r for r in role["rules"] if "events.k8s.io" in r["apiGroups"]
                   or "events" in r["resources"]]
    assert event_rules == [{"apiGroups": ["events.k8s.io"], "resources": ["events"],
                            "verbs": ["create"]}]


def test_webhook_urls_come_from_secrets_and_never_reach_the_configmap() -> None:
    rendered = render_chart({
        "notifications": {"webhooks": [
            {"name": "ml-team", "existingSecret": "hooks", "key": "slack",
             "events": ["failure", "drift"]},
            {"name": "oncall", "existingSecret": "pager"}]},
        "config": {"notifications": {"timeout_seconds": 3}, "logging": {"format": "json"},
                   "observability": {"pushgateway_url": "http://pushgateway:9091"}}})
    (cm,) = by_kind(rendered, "ConfigMap")
    text = cm["data"]["config.yaml"]
    cfg = Config.from_dict(yaml.safe_load(text))  # the mlops loader accepts it
    assert cfg.notifications.webhooks == [
        {"name": "ml-team", "url_env": "MLOPS_WEBHOOK_ML_TEAM", "events": ["failure", "drift"]},
        {"name": "oncall", "url_env": "MLOPS_WEBHOOK_ONCALL"}]
    assert cfg.notifications.timeout_seconds == 3
    assert cfg.logging.format == "json"
    assert cfg.observability.pushgateway_url == "http://pushgateway:9091"
    assert "url:" not in text.replace("pushgateway_url:", "")
    (cron,) = by_kind(rendered, "CronJob")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLOPS_WEBHOOK_ML_TEAM"]["valueFrom"] == {
        "secretKeyRef": {"name": "hooks", "key": "slack"}}
    assert env["MLOPS_WEBHOOK_ONCALL"]["valueFrom"] == {
        "secretKeyRef": {"name": "pager", "key": "url"}}


def test_a_literal_webhook_url_in_the_config_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="must not hold a url"):
        render_raw({"config": {"notifications": {"webhooks": [{"url": "https://hooks/x"}]}}})


@pytest.mark.parametrize("values", [
    {"metrics": {"prometheusRule": {"enabled": True, "typo": 1}}},
    {"metrics": {"prometheusRule": {"driftConsecutiveRuns": 0}}},
    {"notifications": {"webhooks": [{"name": "Bad_Name", "existingSecret": "s"}]}},
    {"notifications": {"webhooks": [{"name": "x"}]}},
    {"notifications": {"webhooks": [{"name": "x", "existingSecret": "s",
                                     "events": ["lunch"]}]}},
])
def test_bad_observability_values_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_raw(values)
