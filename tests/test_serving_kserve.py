"""The KServe hand-off: after a promotion the controller points an InferenceService's
storageUri at the new version's export, under the chart's own Role, with an Event.

The controller runs in this process with the real ``kubernetes`` client against the fake
API server (tests/fakes/kube/), which holds InferenceService objects validated by the
minimal CRD schema of ``tests/fakes/kube/kserve.py`` (that module says why it is not the
``kserve`` package's) and takes JSON merge patches of them, as a real API server does for
custom resources.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes import client

from mlops.config import Config
from mlops.errors import ExportError
from mlops.serving import export_for_serving, inference_service_patch
from mlops.store.workspace import Workspace
from tests.chart_render import by_kind, render_chart
from tests.fakes.kube import FakeKubeAPI
from tests.test_controller import NS, Env, env  # noqa: F401 - env is a fixture
from tests.test_controller_events import configure, job_env, run, story  # noqa: F401

pytest_plugins = ["tests.fakes.kube_fixtures"]

ISVC = "iris"
RULE = {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
        "resourceNames": [ISVC], "verbs": ["get", "patch"]}


def isvc(predictor: dict[str, Any], name: str = ISVC) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NS}, "spec": {"predictor": predictor}}


def chart_role(**serving: Any) -> dict[str, Any]:
    values = {"config": {"storage": {"uri": "gs://b/p"}}, "serving": {"kserve": serving}}
    roles = by_kind(render_chart(values, namespace=NS), "Role")
    assert len(roles) == 1
    return roles[0]


def storage_uri(api: FakeKubeAPI, key: str = "model") -> str:
    obj = api.get_object("inferenceservices", NS, ISVC)
    assert obj is not None
    return str(obj["spec"]["predictor"][key]["storageUri"])


# --- the chart --------------------------------------------------------------------------------
def test_the_role_may_patch_the_named_inference_service_only_when_set() -> None:
    assert RULE not in chart_role()["rules"]
    assert RULE in chart_role(inferenceService=ISVC)["rules"]
    values = {"config": {"storage": {"uri": "gs://b/p"}},
              "serving": {"kserve": {"inferenceService": ISVC}}}
    configmap = by_kind(render_chart(values), "ConfigMap")[0]
    rendered = yaml.safe_load(configmap["data"]["config.yaml"])
    assert rendered["serving"] == {"kserve": {"inference_service": ISVC}}
    Config.from_dict(rendered)  # the loader takes what the chart renders
    with pytest.raises(helm_python.HelmValuesError):
        render_chart({**values, "serving": {"kserve": {"inferenceService": "Not_A_Name"}}})
    # Set only in the pass-through config, the Role would lack the rule: refused.
    with pytest.raises(helm_python.HelmRenderError, match=r"serving\.kserve\.inferenceService"):
        render_chart({"config": {"storage": {"uri": "gs://b/p"},
                                 "serving": {"kserve": {"inference_service": ISVC}}}})


# --- the fake API server holds InferenceServices ----------------------------------------------
def test_the_local_api_server_validates_and_merge_patches_inference_services(
        kube_api: FakeKubeAPI, kube_client: Any) -> None:
    api = client.CustomObjectsApi(kube_client)
    args = ("serving.kserve.io", "v1beta1", "mlops", "inferenceservices")
    body = isvc({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://a/b"}})
    body["metadata"]["namespace"] = "mlops"
    created = api.create_namespaced_custom_object(*args, body)
    assert created["metadata"]["uid"]
    bad = isvc({"model": {"modelFormat": {"name": "sklearn"}, "storageUrl": "s3://a/b"}})
    bad["metadata"].update(name="bad", namespace="mlops")
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object(*args, bad)
    assert err.value.status == 422 and "storageUrl" in str(err.value.body)
    patched = api.patch_namespaced_custom_object(
        *args, ISVC, {"spec": {"predictor": {"model": {"storageUri": "s3://a/c"}}}})
    assert patched["spec"]["predictor"]["model"] == {"modelFormat": {"name": "sklearn"},
                                                     "storageUri": "s3://a/c"}
    assert int(patched["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"])
    with pytest.raises(client.ApiException) as err:
        api.patch_namespaced_custom_object(
            *args, ISVC, {"spec": {"predictor": {"model": {"storageUri": 5}}}})
    assert err.value.status == 422


# --- the patch ---------------------------------------------------------------------------------
def test_the_patch_names_the_folder_of_the_predictors_format(tmp_path: Any) -> None:
    from tests.test_serving import mixed

    src = tmp_path / "mixed.parquet"
    mixed(150, 0).to_parquet(src, index=False)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src)}})
    from mlops.runner import run_pipeline

    version = run_pipeline(cfg, run_id="v1")["model_version"]
    ws = Workspace.open(cfg)
    export_for_serving(ws.store, ws.registry, version)
    base = ws.store.url("serving/v1")
    for predictor, key, folder in (
            ({"model": {"modelFormat": {"name": "sklearn"}}}, "model", "kserve"),
            ({"model": {"modelFormat": {"name": "mlflow"}}}, "model", "mlflow"),
            ({"sklearn": {"storageUri": "gs://x"}}, "sklearn", "kserve")):
        patch, uri = inference_service_patch(isvc(predictor), ws.store, version)
        assert uri == f"{base}/{folder}"
        assert patch == {"spec": {"predictor": {key: {"storageUri": uri}}}}
    with pytest.raises(ExportError, match="not a LightGBM model"):
        inference_service_patch(isvc({"lightgbm": {}}), ws.store, version)
    with pytest.raises(ExportError, match="onnx"):
        inference_service_patch(isvc({"model": {"modelFormat": {"name": "onnx"}}}), ws.store,
                                version)
    with pytest.raises(ExportError, match="no complete kserve export"):
        inference_service_patch(isvc({"sklearn": {}}), ws.store, "other")


# --- the controller ----------------------------------------------------------------------------
def test_a_promotion_points_the_inference_service_at_the_new_export(
        job_env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    e = job_env
    e.api.use_role(chart_role(inferenceService=ISVC))
    e.api.create_object(isvc({"model": {"modelFormat": {"name": "sklearn"},
                                        "storageUri": "gs://models/previous"}}))
    configure(e, serving={"kserve": {"inference_service": ISVC}})
    code, out, err = run(e, capsys, "night-1")
    assert code == 0, err
    summary = json.loads(out)
    export = f"{summary['serving_uri']}/kserve"
    assert storage_uri(e.api) == export
    assert export.endswith("/serving/night-1/kserve")  # the version's own folder
    assert summary["serving_handoff"] == {"inference_service": ISVC, "model_version": "night-1",
                                          "status": "patched", "storage_uri": export}
    assert summary["alerts"] == []
    assert ("Normal", "ServingUpdated") in story(e)
    assert [r.method for r in e.api.requests
            if "inferenceservices" in r.path] == ["GET", "PATCH"]


def test_a_failed_patch_is_an_alert_not_a_failed_night(
        job_env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    e = job_env
    e.api.use_role(chart_role())  # the Role of a release without serving.kserve set
    e.api.create_object(isvc({"model": {"modelFormat": {"name": "sklearn"},
                                        "storageUri": "gs://models/previous"}}))
    configure(e, serving={"kserve": {"inference_service": ISVC}})
    code, out, err = run(e, capsys, "night-1")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["promoted"] and summary["model_version"] == "night-1"
    assert summary["alerts"] == ["serving_handoff_failed"]
    assert summary["serving_handoff"]["status"] == "failed"
    assert "forbidden" in summary["serving_handoff"]["error"]
    assert storage_uri(e.api) == "gs://models/previous"
    assert ("Warning", "ServingUpdateFailed") in story(e)
