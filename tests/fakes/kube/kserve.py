"""KServe's ``InferenceService`` (``serving.kserve.io/v1beta1``) for the fake API server.

The schema is a minimal CRD schema written here, not the one of the ``kserve`` package:
kserve 0.21 (the current release) requires pandas < 3 and would downgrade this project's
pandas, and pulls a model-server stack (fastapi, uvicorn, grpcio-tools) into the dev
environment; it does not install cleanly next to mlops. The schema keeps the fields of
KServe's CRD (``config/crd/full/serving.kserve.io_inferenceservices.yaml``) that a
predictor's storage location involves, with their types; as the fake does for built-in
kinds, unknown fields are refused (a real server prunes them from a structural schema).
"""

from __future__ import annotations

from typing import Any

import jsonschema

JSON = dict[str, Any]

_STR = {"type": "string"}
_RESOURCES = {"type": "object", "properties": {
    "limits": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
    "requests": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}},
    "additionalProperties": False}
#: A framework predictor (``sklearn``, ``lightgbm``...) and the ``model`` one.
_FRAMEWORK = {"type": "object", "properties": {
    "storageUri": _STR, "runtimeVersion": _STR, "protocolVersion": _STR, "image": _STR,
    "name": _STR, "resources": _RESOURCES,
    "env": {"type": "array", "items": {"type": "object"}}}, "additionalProperties": False}
_MODEL = {"type": "object", "properties": {
    **_FRAMEWORK["properties"],  # type: ignore[dict-item]
    "modelFormat": {"type": "object", "required": ["name"], "properties": {
        "name": _STR, "version": _STR}, "additionalProperties": False},
    "runtime": _STR}, "required": ["modelFormat"], "additionalProperties": False}
_FRAMEWORKS = ("sklearn", "lightgbm", "xgboost", "tensorflow", "pytorch", "onnx",
               "triton", "pmml", "paddle", "huggingface")
SCHEMA: JSON = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["predictor"], "properties": {
            "predictor": {"type": "object", "properties": {
                "model": _MODEL, **{f: _FRAMEWORK for f in _FRAMEWORKS},
                "minReplicas": {"type": "integer", "minimum": 0},
                "maxReplicas": {"type": "integer", "minimum": 0},
                "serviceAccountName": _STR,
                "scaleTarget": {"type": "integer"}, "scaleMetric": _STR,
            }, "additionalProperties": False},
            "transformer": {"type": "object"}, "explainer": {"type": "object"},
        }, "additionalProperties": False},
        "status": {"type": "object"},
    },
    "additionalProperties": False,
}


def schema_errors(obj: JSON) -> list[tuple[str, str]]:
    """Errors of ``obj`` against :data:`SCHEMA` (the fake's ``field: message`` pairs)."""
    errors = []
    for err in jsonschema.Draft7Validator(SCHEMA).iter_errors(obj):
        path = ".".join(str(p) for p in err.absolute_path)
        errors.append((path, f"Invalid value: {err.message}"))
    return errors


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``application/merge-patch+json``)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
