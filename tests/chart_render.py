"""Render the Helm chart ``helm/mlops`` offline with the real Helm engine.

Used by ``tests/test_chart.py`` and by any test that needs the chart's objects
(e.g. running the controller against a fake API server)::

    from tests.chart_render import render_chart, values_file

    docs = render_chart(values_file("values-dev.yaml"))
    configmap = docs["mlops/templates/configmap.yaml"][0]

No cluster, network or helm binary is involved (``helm_python`` binds the Helm Go
SDK). Values are validated against ``values.schema.json`` exactly as by
``helm install``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = ROOT / "helm" / "mlops"


def values_file(name: str) -> dict[str, Any]:
    """The parsed values file ``helm/mlops/<name>`` (e.g. ``values-dev.yaml``)."""
    data = yaml.safe_load((CHART_DIR / name).read_text(encoding="utf-8"))
    return {} if data is None else dict(data)


def merge_values(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge values layers like repeated ``-f``: later layers win, maps merge."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            _merge_into(merged, layer)
    return merged


def _merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)


#: The API a cluster with the Prometheus Operator serves (``helm template --api-versions``).
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1/PrometheusRule"


def render_raw(values: Mapping[str, Any] | None = None, *, name: str = "demo",
               namespace: str = "ns", chart_dir: Path = CHART_DIR,
               api_versions: Iterable[str] = ()) -> dict[str, str]:
    """The rendered templates as ``{template path: text}`` (NOTES.txt included).

    Args:
        api_versions: Extra APIs the cluster serves, as ``helm template --api-versions``
            (``.Capabilities.APIVersions``), e.g. :data:`PROMETHEUS_OPERATOR_API`.

    Raises:
        helm_python.HelmValuesError: The values break values.schema.json.
        helm_python.HelmRenderError: A template failed (e.g. ``fail`` on image.tag latest).
    """
    extra = list(api_versions)
    with helm_python.Chart.load(chart_dir) as chart:
        if not extra:
            return chart.render(dict(values) if values else None, name=name,
                                namespace=namespace)
        # helm_python's Chart.render does not expose --api-versions, but its native
        # helm_render takes them in the same options object (api_versions), so the call
        # is made directly with the same arguments Chart.render passes.
        from helm_python import _native

        opts = {"name": name, "namespace": namespace, "api_versions": extra}
        raw = _native.call_string("helm_render", chart._raw(),
                                  json.dumps(dict(values)) if values else None,
                                  json.dumps(opts))
        manifests: dict[str, str] = json.loads(raw)
        return manifests


def parse_manifests(rendered: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Parse rendered YAML templates into ``{path: [docs]}``; empty files and docs dropped."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs = [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
        if docs:
            out[path] = docs
    return out


def render_chart(values: Mapping[str, Any] | None = None, *, name: str = "demo",
                 namespace: str = "ns", values_files: Iterable[str] = (),
                 api_versions: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """Render the chart and return ``{template path: [parsed YAML docs]}``.

    Args:
        values: User values (like ``--set``/``-f``), applied over ``values_files``.
        name: The release name.
        namespace: The release namespace.
        values_files: Names of values files in ``helm/mlops`` applied first, in order.
        api_versions: Extra APIs the cluster serves (see :func:`render_raw`).
    """
    layers = [values_file(f) for f in values_files]
    merged = merge_values(*layers, values)
    return parse_manifests(render_raw(merged, name=name, namespace=namespace,
                                      api_versions=api_versions))


def all_docs(rendered: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every document of a :func:`render_chart` result, in template-path order."""
    return [doc for path in sorted(rendered) for doc in rendered[path]]


def by_kind(rendered: Mapping[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    """The documents of one ``kind`` (e.g. ``"CronJob"``)."""
    return [doc for doc in all_docs(rendered) if doc.get("kind") == kind]


def chart_config(values: Mapping[str, Any] | None = None, *, name: str = "mlops",
                 namespace: str = "ns") -> dict[str, Any]:
    """The chart's ``config.yaml`` (from its ConfigMap), parsed."""
    (cm,) = by_kind(render_chart(values, name=name, namespace=namespace), "ConfigMap")
    data: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return data


#: Values of :func:`step_pod_template`'s default: no claim (a test's store is a folder).
NO_CLAIM = {"persistence": {"enabled": False}, "config": {"storage": {"uri": "s3://b/p"}}}


def step_pod_template(values: Mapping[str, Any] | None = None, *, name: str = "mlops",
                      namespace: str = "ns") -> dict[str, Any]:
    """The chart's step pod, ``kubernetes.pod_template`` of its config.yaml (``values``
    default: :data:`NO_CLAIM`). The chart is the only definition of the step pod, so a
    test config for the controller takes it from here. A fresh copy each call (cached)."""
    text = _step_pod_json(json.dumps(NO_CLAIM if values is None else values, sort_keys=True),
                          name, namespace)
    pod: dict[str, Any] = json.loads(text)
    return pod


@functools.cache
def _step_pod_json(values: str, name: str, namespace: str) -> str:
    config = chart_config(json.loads(values), name=name, namespace=namespace)
    return json.dumps(config["kubernetes"]["pod_template"])
