"""Chart safety with the real Helm engine (issue 20 item 10): the store's claim survives
``helm uninstall``, a run's config cannot change under it (content-hashed, immutable
ConfigMap), the chart works as a subchart and with ``--set`` numbers, and the
PrometheusRule asks for the Prometheus Operator's API instead of failing at apply time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.chart_render import (
    CHART_DIR,
    PROMETHEUS_OPERATOR_API,
    by_kind,
    parse_manifests,
    render_chart,
    render_raw,
)

KEEP = {"helm.sh/resource-policy": "keep"}


def _pod_spec(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (cronjob,) = by_kind(rendered, "CronJob")
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def _config_volume(spec: dict[str, Any]) -> str:
    (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    return str(volume["configMap"]["name"])


def test_the_store_claim_survives_helm_uninstall() -> None:
    (pvc,) = by_kind(render_chart(), "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"] == KEEP
    kubernetes_validate.validate(pvc, "1.30.0", strict=True)


def test_the_config_map_is_immutable_and_named_by_its_content() -> None:
    default = render_chart()
    (cm,) = by_kind(default, "ConfigMap")
    name = cm["metadata"]["name"]
    assert cm["immutable"] is True
    assert cm["metadata"]["annotations"] == KEEP  # a running run may still mount it
    assert name.startswith("demo-mlops-config-") and len(name) == len("demo-mlops-config-") + 10
    kubernetes_validate.validate(cm, "1.30.0", strict=True)
    # Every pod mounts this very ConfigMap: the controller, the helm test pod and the
    # step pod template inside config.yaml.
    assert _config_volume(_pod_spec(default)) == name
    (test_pod,) = by_kind(default, "Pod")
    assert _config_volume(test_pod["spec"]) == name
    step = yaml.safe_load(cm["data"]["config.yaml"])["kubernetes"]["pod_template"]
    assert _config_volume(step) == name
    # Same values, same name (an upgrade without changes keeps the ConfigMap) ...
    assert by_kind(render_chart(), "ConfigMap")[0]["metadata"]["name"] == name
    # ... another config, another ConfigMap, and the controller pod follows it, so an
    # upgrade mid-run leaves the running run's ConfigMap (and config) as it was.
    for values in ({"config": {"logging": {"level": "DEBUG"}}},
                   {"steps": {"train": {"backoffLimit": 3}}},
                   {"image": {"tag": "0.1.1"}}):
        other = render_chart(values)
        (cm2,) = by_kind(other, "ConfigMap")
        assert cm2["metadata"]["name"] != name
        assert _config_volume(_pod_spec(other)) == cm2["metadata"]["name"]


def test_the_config_map_name_fits_for_a_long_release() -> None:
    (cm,) = by_kind(render_chart(name="r" * 53), "ConfigMap")
    assert len(cm["metadata"]["name"]) <= 63


def _parent_chart(tmp_path: Path) -> Path:
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART_DIR, parent / "charts" / "mlops")
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "mlops", "version": "0.1.0"}]}), encoding="utf-8")
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example", "storageClass": "fast"},
        "mlops": {"image": {"tag": "0.1.0"}}}), encoding="utf-8")
    return parent


def test_the_chart_works_as_a_subchart(tmp_path: Path) -> None:
    parent = _parent_chart(tmp_path)
    with helm_python.Chart.load(parent) as chart:
        rendered = parse_manifests(chart.render(
            {"mlops": {"config": {"logging": {"level": "DEBUG"}}}}, name="prod", namespace="ml"))
    (cronjob,) = by_kind(rendered, "CronJob")
    assert cronjob["metadata"]["name"] == "prod-mlops"
    # The schema still refuses a misspelled key under the subchart's values.
    with helm_python.Chart.load(parent) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.render({"mlops": {"imgae": {"tag": "1"}}}, name="prod", namespace="ml")


@pytest.mark.parametrize("expression", ["image.tag=1234567", "image.tag=20261204"])
def test_a_numeric_image_tag_from_set_is_kept_as_digits(expression: str) -> None:
    values = helm_python.parse_set_string(expression)  # exactly as `helm --set` parses it
    tag = expression.split("=")[1]
    assert values == {"image": {"tag": int(tag)}}
    spec = _pod_spec(render_chart(values))
    assert spec["containers"][0]["image"] == f"mlops:{tag}"
    # A values file gives the number as a float; still printed whole.
    spec = _pod_spec(render_chart({"image": {"tag": float(tag)}}))
    assert spec["containers"][0]["image"] == f"mlops:{tag}"


def test_a_prometheus_rule_needs_the_operators_api() -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True}}}
    with pytest.raises(helm_python.HelmRenderError) as info:
        render_raw(values)
    message = str(info.value)
    assert "metrics.prometheusRule.enabled" in message
    assert "monitoring.coreos.com/v1" in message and "--api-versions" in message
    rendered = render_chart(values, api_versions=[PROMETHEUS_OPERATOR_API])
    assert len(by_kind(rendered, "PrometheusRule")) == 1
