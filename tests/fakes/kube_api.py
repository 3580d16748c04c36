"""A small, strict Kubernetes API server plus "kubelet" for tests.

There is no kube-apiserver, kind or Docker in CI, so the controller's tests talk HTTP to this
server with the real ``kubernetes`` Python client. It listens on ``127.0.0.1`` (free port),
authenticates a bearer token from a generated kubeconfig, and aims to be *no easier* than a
real API server: objects are schema-validated strictly, defaults and server-side fields are
filled in, errors are Kubernetes ``Status`` objects worded like the real server's, and Jobs
run their container as a local subprocess with real exit codes.

Public API
==========

``FakeKubeAPI(namespaces=("default",), command_map=None, pvc_dirs=None, base_env=None,
user=DEFAULT_USER, retry_backoff=0.1, termination_grace_seconds=2.0, event_history=1000,
max_job_seconds=600.0, kube_version="1.30.0")``

Lifecycle and connection:
    ``start()`` / ``stop()`` (kills every process, joins threads, bounded), context manager;
    ``url`` (``http://127.0.0.1:PORT``), ``port``, ``token``;
    ``write_kubeconfig(path, namespace="default") -> Path``.

Configuration (may be changed while running):
    ``command_map`` (``command[0]`` -> argv prefix), ``pvc_dirs`` (claim name -> local dir),
    ``base_env`` (env the containers start from; default ``os.environ`` at spawn time),
    ``add_namespace(name)``, ``forbid(verb, resource, namespace=None)``,
    ``allow(verb, resource, namespace=None)``,
    ``inject_faults(method, path_prefix, status, count=1, message=None, retry_after=None)``,
    ``clear_faults()``.

Inspection and driving:
    ``requests`` (list of :class:`RequestRecord` ``(method, path, query)``),
    ``clear_requests()``, ``jobs(namespace)``, ``pods(namespace, job_name=None)``,
    ``get_object(resource, namespace, name)`` (``None`` if absent),
    ``create_object(obj) -> dict`` (same validation/defaulting as HTTP; raises
    :class:`KubeAPIError`), ``delete_object(resource, namespace, name, propagation_policy)``,
    ``pod_log(namespace, pod_name)``, ``wait_for_job(namespace, name, timeout=10.0) -> dict``
    (waits for a Complete/Failed condition), ``evict(namespace, job_name) -> pod name``,
    ``kubelet_errors`` (problems the kubelet hit, e.g. an unmapped PVC).

Resources: ``batch/v1`` jobs (create, get, ``/status`` get, list, watch, delete),
``events.k8s.io/v1`` events (create, get, list, watch, delete; ``events(namespace)``;
``forbid("create", "events")`` answers 403 like a Role without the events rule),
``v1`` pods (get, list, watch, ``/log``), ``v1`` configmaps and secrets (create, get, list,
watch, delete), ``v1`` namespaces (get, list), ``/version``, ``/api``, ``/apis`` discovery.

Deliberate differences from a real cluster (see also the report in the commit history):

* Any request naming a namespace that does not exist gets 404 ``namespaces "x" not found``
  (a real server answers list with an empty list and get with ``jobs.batch "y" not found``).
* Unknown fields are rejected with 422 Invalid (a real server's default ``fieldValidation``
  is ``Warn``: it drops them silently).
* No update/patch (PUT/PATCH answer 405), no pod creation or pod deletion through the API.
* ``ttlSecondsAfterFinished``, ``spec.suspend``, ``parallelism``/``completions`` > 1,
  Indexed completion mode, resource limits, probes, images and init containers are ignored:
  each Job runs one pod at a time, the first container of the template only.
* Retry back-off is ``retry_backoff`` seconds instead of 10 s, 20 s, 40 s ...
* A Job whose thread runs longer than ``max_job_seconds`` is failed with
  ``DeadlineExceeded`` (a safety bound; a real Job without a deadline runs forever).
* A pod whose volumes cannot be prepared (missing ConfigMap/Secret, unmapped PVC) stays
  Pending like on a real node and the problem is appended to ``kubelet_errors``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import datetime
import functools
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

JSON = dict[str, Any]

DEFAULT_USER = "system:serviceaccount:mlops:mlops-controller"
LOG_LIMIT_BYTES = 1024 * 1024
_MAX_FAULTS = 1000
_MAX_ATTEMPTS = 200
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_VAR_REF = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_JOB_LABELS = (
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
)


class RequestRecord(NamedTuple):
    """One request the server received: method, path and query (first value per key)."""

    method: str
    path: str
    query: dict[str, str]


class KubeAPIError(Exception):
    """An API error carrying the Kubernetes ``Status`` object the server would send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> JSON:
        """Return the ``v1 Status`` body for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class _Kind(NamedTuple):
    resource: str
    group: str
    version: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


_KINDS: dict[str, _Kind] = {
    "jobs": _Kind("jobs", "batch", "v1", "Job", True),
    "pods": _Kind("pods", "", "v1", "Pod", True),
    "configmaps": _Kind("configmaps", "", "v1", "ConfigMap", True),
    "secrets": _Kind("secrets", "", "v1", "Secret", True),
    "namespaces": _Kind("namespaces", "", "v1", "Namespace", False),
    "events": _Kind("events", "events.k8s.io", "v1", "Event", True),
}
_GROUP_PREFIX = {"": "/api/v1", "batch": "/apis/batch/v1",
                 "events.k8s.io": "/apis/events.k8s.io/v1"}
_KIND_BY_NAME = {k.kind: k for k in _KINDS.values()}
_FIELDS: dict[str, set[str]] = {
    "jobs": {"metadata.name", "metadata.namespace", "status.successful"},
    "pods": {
        "metadata.name",
        "metadata.namespace",
        "status.phase",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "configmaps": {"metadata.name", "metadata.namespace"},
    "secrets": {"metadata.name", "metadata.namespace", "type"},
    "namespaces": {"metadata.name", "status.phase"},
    "events": {"metadata.name", "metadata.namespace", "reason", "type", "regarding.name"},
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _not_found(kind: _Kind, name: str) -> KubeAPIError:
    return KubeAPIError(
        404,
        "NotFound",
        f'{kind.qualified} "{name}" not found',
        {"name": name, "group": kind.group, "kind": kind.resource},
    )


def _namespace_not_found(namespace: str) -> KubeAPIError:
    return KubeAPIError(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        {"name": namespace, "kind": "namespaces"},
    )


def _bad_request(message: str) -> KubeAPIError:
    return KubeAPIError(400, "BadRequest", message)


def _invalid(kind: _Kind, name: str, errors: list[tuple[str, str]]) -> KubeAPIError:
    texts = [f"{field}: {msg}" if field else msg for field, msg in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    causes = [
        {"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in errors
    ]
    return KubeAPIError(
        422,
        "Invalid",
        f'{kind.kind}.{kind.group} "{name}" is invalid: {joined}'
        if kind.group
        else f'{kind.kind} "{name}" is invalid: {joined}',
        {"name": name, "group": kind.group, "kind": kind.kind, "causes": causes},
    )


# --------------------------------------------------------------------------- selectors


class _Requirement(NamedTuple):
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...]


def _split_selector(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[_Requirement]:
    """Parse a label selector (``a=b,c!=d,e in (f,g),h notin (i),j,!k``)."""
    reqs: list[_Requirement] = []
    for term in _split_selector(text):
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\(([^)]*)\)", term)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            key, op = m.group(1), m.group(2)
            if not values:
                raise _bad_request(
                    f"unable to parse requirement: for '{op}' operator, values set can't be empty"
                )
        elif "!=" in term:
            key, _, value = term.partition("!=")
            op, values = "!=", (value.strip(),)
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            op, values = "=", (value.strip(),)
        elif term.startswith("!"):
            key, op, values = term[1:], "!", ()
        else:
            key, op, values = term, "exists", ()
        key = key.strip()
        if not _LABEL_NAME.match(key.rsplit("/", 1)[-1]) or any(
            not _LABEL_VALUE.match(v) for v in values
        ):
            raise _bad_request(f"unable to parse requirement: invalid label selector: {term!r}")
        reqs.append(_Requirement(key, op, values))
    return reqs


def _labels_match(labels: Mapping[str, str], reqs: Sequence[_Requirement]) -> bool:
    for r in reqs:
        present = r.key in labels
        value = labels.get(r.key)
        if r.op == "=" and value != r.values[0]:
            return False
        if r.op == "!=" and present and value == r.values[0]:
            return False
        if r.op == "in" and value not in r.values:
            return False
        if r.op == "notin" and present and value in r.values:
            return False
        if r.op == "exists" and not present:
            return False
        if r.op == "!" and present:
            return False
    return True


def _parse_field_selector(resource: str, text: str) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    for term in _split_selector(text):
        if "!=" in term:
            field, _, value = term.partition("!=")
            equal = False
        elif "=" in term:
            field, _, value = term.replace("==", "=", 1).partition("=")
            equal = True
        else:
            raise _bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in _FIELDS[resource]:
            raise _bad_request(
                f'"{field}" is not a known field selector: only "'
                + '", "'.join(sorted(_FIELDS[resource]))
                + '"'
            )
        out.append((field, equal, value.strip()))
    return out


def _field_value(obj: JSON, field: str) -> str:
    if field == "status.successful":
        return str(obj.get("status", {}).get("succeeded", 0))
    cur: Any = obj
    for part in field.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


class _Selector:
    def __init__(self, resource: str, labels: str | None, fields: str | None) -> None:
        self.labels = parse_label_selector(labels or "")
        self.fields = _parse_field_selector(resource, fields or "")

    def matches(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        if not _labels_match(obj.get("metadata", {}).get("labels") or {}, self.labels):
            return False
        return all((_field_value(obj, f) == v) == eq for f, eq, v in self.fields)


# --------------------------------------------------------------------------- validation


def _json_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _schema_errors(obj: JSON, kube_version: str) -> list[tuple[str, str]]:
    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = _json_path(e.path)
        if e.validator == "additionalProperties":
            found = re.findall(r"'([^']+)'", str(e.message))
            fields = [f"{path}.{f}" if path else f for f in found] or [path]
            return [(f, f'Invalid value: unknown field "{f}"') for f in fields]
        return [(path, f"Invalid value: {e.message}")]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [("", e.message)]
    return []


def _check_name(name: Any, errors: list[tuple[str, str]], field: str, max_len: int) -> None:
    if not isinstance(name, str) or not name:
        errors.append((field, "Required value: name or generateName is required"))
        return
    if len(name) > max_len:
        errors.append(
            (field, f'Invalid value: "{name}": must be no more than {max_len} characters')
        )
    if not _DNS1123_SUBDOMAIN.match(name):
        errors.append(
            (
                field,
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        )


def _check_labels(labels: Any, field: str, errors: list[tuple[str, str]]) -> None:
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if len(name) > 63 or not _LABEL_NAME.match(name):
            errors.append((f"{field}", f'Invalid value: "{key}": name part must be a valid label'))
        if value is not None and (
            not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value)
        ):
            errors.append(
                (f"{field}", f'Invalid value: "{value}": a valid label must be an empty string '
                 "or consist of at most 63 alphanumeric characters, '-', '_' or '.'")
            )


def _validate_pod_spec(spec: JSON, field: str, errors: list[tuple[str, str]]) -> None:
    containers = spec.get("containers") or []
    if not containers:
        errors.append((f"{field}.containers", "Required value"))
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for i, c in enumerate(containers):
        cf = f"{field}.containers[{i}]"
        if not _DNS1123_LABEL.match(str(c.get("name", ""))):
            errors.append((f"{cf}.name", f'Invalid value: "{c.get("name", "")}": must be a '
                           "lowercase RFC 1123 label"))
        if not c.get("image"):
            errors.append((f"{cf}.image", "Required value"))
        for j, env in enumerate(c.get("env") or []):
            if not _ENV_NAME.match(str(env.get("name", ""))):
                errors.append((f"{cf}.env[{j}].name", f'Invalid value: "{env.get("name")}": a '
                               "valid environment variable name must consist of alphabetic "
                               "characters, digits, '_', '-', or '.'"))
            vf = env.get("valueFrom")
            if vf is not None and "value" in env and env["value"]:
                errors.append((f"{cf}.env[{j}].valueFrom", "Invalid value: \"\": may not be "
                               "specified when `value` is not empty"))
            if vf is not None and len(vf) != 1:
                errors.append((f"{cf}.env[{j}].valueFrom", "Invalid value: \"\": may not have "
                               "more than one field specified at a time"))
        for j, vm in enumerate(c.get("volumeMounts") or []):
            if vm.get("name") not in volumes:
                errors.append((f"{cf}.volumeMounts[{j}].name", f'Not found: "{vm.get("name")}"'))
            if not str(vm.get("mountPath", "")).startswith("/"):
                errors.append((f"{cf}.volumeMounts[{j}].mountPath", "Invalid value: must be an "
                               "absolute path"))


def _validate_job(job: JSON, errors: list[tuple[str, str]]) -> None:
    spec = job.get("spec") or {}
    _check_name(job["metadata"].get("name"), errors, "metadata.name", 63)
    template = spec.get("template") or {}
    _check_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels",
                  errors)
    pod_spec = template.get("spec") or {}
    _validate_pod_spec(pod_spec, "spec.template.spec", errors)
    restart = pod_spec.get("restartPolicy", "Always")
    if restart not in ("OnFailure", "Never"):
        errors.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"'))
    for key in ("backoffLimit", "completions", "parallelism"):
        if isinstance(spec.get(key), int) and spec[key] < 0:
            errors.append((f"spec.{key}", f"Invalid value: {spec[key]}: must be greater than or "
                           "equal to 0"))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and ads <= 0:
        errors.append(("spec.activeDeadlineSeconds",
                       f"Invalid value: {ads}: must be greater than 0"))
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        errors.append(("spec.selector", "Invalid value: selector not auto-generated"))
    pfp = spec.get("podFailurePolicy")
    if pfp is not None:
        if restart != "Never":
            errors.append(("spec.template.spec.restartPolicy", f'Invalid value: "{restart}": '
                           'only "Never" is supported when podFailurePolicy is specified'))
        for i, rule in enumerate(pfp.get("rules") or []):
            rf = f"spec.podFailurePolicy.rules[{i}]"
            if rule.get("action") not in ("FailJob", "FailIndex", "Ignore", "Count"):
                errors.append((f"{rf}.action", f'Unsupported value: "{rule.get("action")}": '
                               'supported values: "Count", "FailIndex", "FailJob", "Ignore"'))
            has_codes = rule.get("onExitCodes") is not None
            has_conds = bool(rule.get("onPodConditions"))
            if has_codes == has_conds:
                errors.append((rf, "Invalid value: specifying one of OnExitCodes and "
                               "OnPodConditions is required"))
            codes = rule.get("onExitCodes") or {}
            if codes:
                if codes.get("operator") not in ("In", "NotIn"):
                    errors.append((f"{rf}.onExitCodes.operator", f'Unsupported value: '
                                   f'"{codes.get("operator")}": supported values: "In", "NotIn"'))
                values = codes.get("values") or []
                if not values:
                    errors.append((f"{rf}.onExitCodes.values", "Required value"))
                if codes.get("operator") == "In" and 0 in values:
                    errors.append((f"{rf}.onExitCodes.values", "Invalid value: 0: must not be 0 "
                                   "for the In operator"))
                if len(set(values)) != len(values) or sorted(values) != list(values):
                    errors.append((f"{rf}.onExitCodes.values", "Invalid value: must be ordered "
                                   "and without duplicates"))


def _validate_config(obj: JSON, kind: _Kind, errors: list[tuple[str, str]]) -> None:
    for section in ("data", "binaryData", "stringData"):
        for key, value in (obj.get(section) or {}).items():
            if not _CONFIG_KEY.match(key):
                errors.append((f"{section}[{key}]", f'Invalid value: "{key}": a valid config key '
                               "must consist of alphanumeric characters, '-', '_' or '.'"))
            if (section == "binaryData" or (kind.kind == "Secret" and section == "data")) and (
                isinstance(value, str)
            ):
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    errors.append((f"{section}[{key}]", "Invalid value: illegal base64 data"))


def _validate_event(obj: JSON, errors: list[tuple[str, str]]) -> None:
    # What the real server's ValidateEventCreate checks for events.k8s.io/v1.
    for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(f):
            errors.append((f, "Required value"))
    for f in ("reportingInstance", "action", "reason"):
        if len(str(obj.get(f) or "")) > 128:
            errors.append((f, "Too long: may not be more than 128 bytes"))
    controller = str(obj.get("reportingController") or "")
    prefix, _, name = controller.rpartition("/")
    if controller and (not _LABEL_NAME.match(name) or len(name) > 63
                       or (prefix and not _DNS1123_SUBDOMAIN.match(prefix))):
        errors.append(("reportingController", f'Invalid value: "{controller}": must be a '
                       "qualified name"))
    if obj.get("type") not in ("Normal", "Warning"):
        errors.append(("type", f'Unsupported value: "{obj.get("type")}": supported values: '
                       '"Normal", "Warning"'))
    if len(str(obj.get("note") or "").encode()) > 1024:
        errors.append(("note", "Too long: may not be more than 1024 bytes"))


def _default_job(job: JSON, uid: str) -> None:
    spec = job.setdefault("spec", {})
    name = job["metadata"]["name"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    template_labels_given = bool(tmeta.get("labels"))
    labels = tmeta.setdefault("labels", {})
    generated = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels.update(generated)
    # Like SetDefaults_Job: empty Job labels share the template's label map (which then gets
    # the generated labels too); with no template labels the Job keeps no labels.
    if not job["metadata"].get("labels") and template_labels_given:
        job["metadata"]["labels"] = dict(labels)
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in pod_spec.get("containers") or []:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        image = str(c.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("fieldRef")
            if ref is not None:
                ref.setdefault("apiVersion", "v1")
    for v in pod_spec.get("volumes") or []:
        for key in ("configMap", "secret"):
            if key in v:
                v[key].setdefault("defaultMode", 420)
    job["status"] = {}


# --------------------------------------------------------------------------- job runtime


class _JobRun:
    """Kubelet-side state of one Job's execution."""

    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.cancel = threading.Event()
        self.evict_pod: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pod_name: str | None = None
        self.thread: threading.Thread | None = None
        self.orphaned = False
        self.started: float | None = None


class _Fault(NamedTuple):
    method: str
    path_prefix: str
    status: int
    message: str | None
    retry_after: int | None


_FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class FakeKubeAPI:
    """In-process Kubernetes API server with a subprocess-based kubelet (see module doc)."""

    def __init__(
        self,
        namespaces: Iterable[str] = ("default",),
        command_map: Mapping[str, Sequence[str]] | None = None,
        pvc_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        base_env: Mapping[str, str] | None = None,
        user: str = DEFAULT_USER,
        retry_backoff: float = 0.1,
        termination_grace_seconds: float = 2.0,
        event_history: int = 1000,
        max_job_seconds: float = 600.0,
        kube_version: str = "1.30.0",
    ) -> None:
        self.command_map: dict[str, list[str]] = {
            k: list(v) for k, v in (command_map or {}).items()
        }
        self.pvc_dirs: dict[str, Path] = {k: Path(v) for k, v in (pvc_dirs or {}).items()}
        self.base_env: dict[str, str] | None = dict(base_env) if base_env is not None else None
        self.user = user
        self.retry_backoff = retry_backoff
        self.termination_grace_seconds = termination_grace_seconds
        self.max_job_seconds = max_job_seconds
        self.kube_version = kube_version
        self.token = secrets.token_hex(16)
        self.kubelet_errors: list[str] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 1000
        self._objects: dict[tuple[str, str, str], JSON] = {}
        self._events: collections.deque[tuple[int, str, str, str, JSON, JSON | None]] = (
            collections.deque(maxlen=max(1, event_history))
        )
        self._compacted_rv = self._rv
        self._logs: dict[tuple[str, str], bytearray] = {}
        self._forbidden: set[tuple[str, str, str | None]] = set()
        self._faults: list[list[Any]] = []
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=10000)
        self._runs: dict[str, _JobRun] = {}
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        for ns in namespaces:
            self.add_namespace(ns)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKubeAPI:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="fake-kube-api", daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every container process, stop serving and join threads (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            runs = list(self._runs.values())
            self._cond.notify_all()
        for run in runs:
            run.cancel.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.1, deadline - time.monotonic()))
        server = self._server
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.join_handlers(max(0.1, deadline - time.monotonic()))
            server.server_close()
            if self._serve_thread is not None:
                self._serve_thread.join(max(0.1, deadline - time.monotonic()))
        self._server = None

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """TCP port the server listens on (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("FakeKubeAPI is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> Path:
        """Write a kubeconfig (JSON, which is YAML) pointing at this server; return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        out = Path(path)
        out.write_text(json.dumps(config, indent=2))
        return out

    # ------------------------------------------------------------------ configuration

    def add_namespace(self, name: str) -> None:
        """Create a namespace (idempotent)."""
        with self._lock:
            if ("namespaces", "", name) in self._objects:
                return
            obj = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _now(),
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self._put("namespaces", "", obj, "ADDED")

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Deny ``verb`` on ``resource`` (e.g. ``"jobs"``, ``"pods/log"``), optionally per ns."""
        with self._lock:
            self._forbidden.add((verb, resource, namespace))

    def allow(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Undo a matching ``forbid``."""
        with self._lock:
            self._forbidden.discard((verb, resource, namespace))

    def inject_faults(
        self,
        method: str,
        path_prefix: str,
        status: int,
        count: int = 1,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching (method or ``"*"``, path prefix) with
        ``status``.

        ``retry_after`` adds a ``Retry-After`` header: note that urllib3 (under the kubernetes
        client) then transparently retries 413/429/503 answers, up to 3 times.
        """
        if not 1 <= count <= _MAX_FAULTS:
            raise ValueError(f"count must be in 1..{_MAX_FAULTS}")
        fault = _Fault(method.upper(), path_prefix, status, message, retry_after)
        with self._lock:
            self._faults.append([fault, count])

    def clear_faults(self) -> None:
        """Remove all pending injected faults."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received so far (last 10000)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def get_object(self, resource: str, namespace: str, name: str) -> JSON | None:
        """Return a deep copy of a stored object, or ``None``."""
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def _list(self, resource: str, namespace: str | None, selector: _Selector | None) -> list[JSON]:
        with self._lock:
            items = [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self._objects.items())
                if r == resource and (namespace is None or ns == namespace)
                and (selector is None or selector.matches(o))
            ]
        return items

    def jobs(self, namespace: str) -> list[JSON]:
        """All Jobs in a namespace."""
        return self._list("jobs", namespace, None)

    def events(self, namespace: str) -> list[JSON]:
        """All events.k8s.io/v1 Events in a namespace, in the order they were created."""
        return sorted(self._list("events", namespace, None),
                      key=lambda e: int(e["metadata"]["resourceVersion"]))

    def pods(self, namespace: str, job_name: str | None = None) -> list[JSON]:
        """All pods in a namespace, optionally only those of one Job (oldest first)."""
        sel = _Selector("pods", f"job-name={job_name}" if job_name else None, None)
        pods = self._list("pods", namespace, sel)
        return sorted(pods, key=lambda p: int(p["metadata"]["resourceVersion"]))

    def pod_log(self, namespace: str, pod_name: str) -> str:
        """The captured stdout+stderr of a pod's container."""
        with self._lock:
            return bytes(self._logs.get((namespace, pod_name), b"")).decode(errors="replace")

    def create_object(self, obj: JSON) -> JSON:
        """Create an object server-side with the same validation as HTTP (raises KubeAPIError)."""
        kind = _KIND_BY_NAME.get(str(obj.get("kind")))
        if kind is None or kind.resource in ("pods", "namespaces"):
            raise _bad_request(f"cannot create kind {obj.get('kind')!r} in the fake")
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        return self._create(kind, ns, copy.deepcopy(obj))

    def delete_object(
        self, resource: str, namespace: str, name: str, propagation_policy: str = "Background"
    ) -> None:
        """Delete an object server-side (raises KubeAPIError)."""
        self._delete(_KINDS[resource], namespace, name, propagation_policy)

    def wait_for_job(self, namespace: str, name: str, timeout: float = 10.0) -> JSON:
        """Wait (bounded) until a Job has a Complete or Failed condition; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._objects.get(("jobs", namespace, name))
                if job is None:
                    raise _not_found(_KINDS["jobs"], name)
                conds = job.get("status", {}).get("conditions") or []
                if any(c["type"] in ("Complete", "Failed") for c in conds):
                    return copy.deepcopy(job)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"job {namespace}/{name} did not finish in {timeout}s")
                self._cond.wait(min(remaining, 0.2))

    def evict(self, namespace: str, job_name: str, timeout: float = 5.0) -> str:
        """Evict the Job's running pod: kill it and mark it with ``DisruptionTarget``.

        Waits (bounded) for the pod to be running; returns the pod name.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                job = self._objects.get(("jobs", namespace, job_name))
                run = self._runs.get(job["metadata"]["uid"]) if job else None
                if run is not None and run.proc is not None and run.pod_name is not None:
                    run.evict_pod = run.pod_name
                    return run.pod_name
            time.sleep(0.02)
        raise TimeoutError(f"job {namespace}/{job_name} has no running pod to evict")

    # ------------------------------------------------------------------ store

    def _put(self, resource: str, namespace: str, obj: JSON, event: str) -> JSON:
        """Store obj with a fresh resourceVersion and record a watch event (lock held)."""
        with self._cond:
            key = (resource, namespace, obj["metadata"]["name"])
            old = self._objects.get(key)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            if event == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
            if len(self._events) == self._events.maxlen:
                self._compacted_rv = self._events[0][0]
            self._events.append(
                (self._rv, resource, namespace, event, copy.deepcopy(obj),
                 copy.deepcopy(old) if old is not None else None)
            )
            self._cond.notify_all()
            return copy.deepcopy(obj)

    def _require_namespace(self, namespace: str) -> None:
        if ("namespaces", "", namespace) not in self._objects:
            raise _namespace_not_found(namespace)

    def _create(self, kind: _Kind, namespace: str, obj: JSON) -> JSON:
        if not isinstance(obj, dict):
            raise _bad_request("the body of the request was in an unknown format")
        if obj.get("apiVersion") != kind.api_version or obj.get("kind") != kind.kind:
            raise _bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({kind.api_version})"
                if obj.get("apiVersion") != kind.api_version
                else f"the kind in the data ({obj.get('kind')}) does not match the expected "
                f"kind ({kind.kind})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if meta.get("namespace") not in (None, "", namespace):
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if meta.get("resourceVersion"):
            raise KubeAPIError(500, "InternalError",
                               "resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"]) + _random_suffix()
        name = str(meta.get("name") or "")
        errors = _schema_errors(obj, self.kube_version)
        if not errors:
            if kind.resource == "jobs":
                _validate_job(obj, errors)
            elif kind.resource == "events":
                _check_name(meta.get("name"), errors, "metadata.name", 253)
                _validate_event(obj, errors)
            else:
                _check_name(meta.get("name"), errors, "metadata.name", 253)
                _validate_config(obj, kind, errors)
            _check_labels(meta.get("labels"), "metadata.labels", errors)
        if errors:
            raise _invalid(kind, name, errors)
        with self._lock:
            self._require_namespace(namespace)
            if (kind.resource, namespace, name) in self._objects:
                raise KubeAPIError(
                    409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                    {"name": name, "group": kind.group, "kind": kind.resource},
                )
            uid = str(uuid.uuid4())
            meta.update(
                namespace=namespace, uid=uid, creationTimestamp=_now(), generation=1
            )
            meta.pop("deletionTimestamp", None)
            if kind.resource == "jobs":
                _default_job(obj, uid)
            elif kind.resource == "secrets":
                obj.setdefault("type", "Opaque")
                data = obj.setdefault("data", {})
                for k, v in (obj.pop("stringData", None) or {}).items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                if not data:
                    obj.pop("data")
                meta.pop("generation")
            else:
                meta.pop("generation")
            stored = self._put(kind.resource, namespace, obj, "ADDED")
            if kind.resource == "jobs" and not self._stopping.is_set():
                run = _JobRun(namespace, name, uid)
                run.thread = threading.Thread(
                    target=self._run_job, args=(run,), name=f"kubelet-{name}", daemon=True
                )
                self._runs[uid] = run
                run.thread.start()
            return stored

    def _delete(self, kind: _Kind, namespace: str, name: str, policy: str | None) -> JSON:
        with self._lock:
            self._require_namespace(namespace)
            obj = self._objects.get((kind.resource, namespace, name))
            if obj is None:
                raise _not_found(kind, name)
            uid = obj["metadata"]["uid"]
            details = {"name": name, "group": kind.group, "kind": kind.resource, "uid": uid}
            success: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success", "details": details}
            if kind.resource != "jobs":
                self._put(kind.resource, namespace, copy.deepcopy(obj), "DELETED")
                return success
            # batch/v1 Jobs default to orphaning their pods when deleted through the API.
            policy = policy or "Orphan"
            if policy not in ("Orphan", "Background", "Foreground"):
                raise _invalid(kind, name, [("propagationPolicy",
                                             f'Unsupported value: "{policy}"')])
            run = self._runs.get(uid)
            if policy == "Orphan":
                for pod in self._list("pods", namespace, _Selector("pods", None, None)):
                    refs = pod["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs):
                        pod["metadata"]["ownerReferences"] = [
                            r for r in refs if r.get("uid") != uid
                        ]
                        self._put("pods", namespace, pod, "MODIFIED")
                if run is not None:
                    run.orphaned = True
                self._put("jobs", namespace, copy.deepcopy(obj), "DELETED")
                return success
            if policy == "Foreground":
                fg = copy.deepcopy(obj)
                fg["metadata"]["deletionTimestamp"] = _now()
                fg["metadata"]["deletionGracePeriodSeconds"] = 0
                fg["metadata"]["finalizers"] = ["foregroundDeletion"]
                result = self._put("jobs", namespace, fg, "MODIFIED")
            else:
                self._put("jobs", namespace, copy.deepcopy(obj), "DELETED")
                result = success
        # Kill the container and garbage-collect pods outside the lock.
        if run is not None:
            run.cancel.set()
            if run.thread is not None:
                run.thread.join(self.termination_grace_seconds + 5)
        with self._lock:
            for pod in self._list("pods", namespace, _Selector("pods", None, None)):
                if any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or []):
                    self._put("pods", namespace, pod, "DELETED")
                    self._logs.pop((namespace, pod["metadata"]["name"]), None)
            if policy == "Foreground":
                current = self._objects.get(("jobs", namespace, name))
                if current is not None and current["metadata"]["uid"] == uid:
                    current = copy.deepcopy(current)
                    current["metadata"]["finalizers"] = []
                    self._put("jobs", namespace, current, "DELETED")
            self._runs.pop(uid, None)
        return result

    # ------------------------------------------------------------------ kubelet

    def _update(self, resource: str, namespace: str, name: str, uid: str,
                mutate: Callable[[JSON], None]) -> bool:
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            if obj is None or obj["metadata"]["uid"] != uid:
                return False
            obj = copy.deepcopy(obj)
            mutate(obj)
            self._put(resource, namespace, obj, "MODIFIED")
            return True

    def _job_status(self, run: _JobRun, mutate: Callable[[JSON], None]) -> bool:
        if run.orphaned:
            return False
        return self._update("jobs", run.namespace, run.name, run.uid,
                            lambda job: mutate(job.setdefault("status", {})))

    def _deadline(self, run: _JobRun) -> float | None:
        job = self.get_object("jobs", run.namespace, run.name)
        ads = (job or {}).get("spec", {}).get("activeDeadlineSeconds")
        start = run.started
        return None if ads is None or start is None else start + float(ads)

    def _run_job(self, run: _JobRun) -> None:
        started = time.monotonic()
        run.started = started
        hard_deadline = started + self.max_job_seconds
        job = self.get_object("jobs", run.namespace, run.name)
        if job is None:
            return
        spec = job["spec"]
        backoff_limit = int(spec.get("backoffLimit", 6))
        failed = 0
        self._job_status(run, lambda s: s.update(startTime=_now(), ready=0,
                                                 uncountedTerminatedPods={}, terminating=0))
        for _attempt in range(_MAX_ATTEMPTS):
            if run.cancel.is_set() or self._stopping.is_set():
                return
            deadline = self._deadline(run)
            if deadline is not None and time.monotonic() >= deadline:
                self._fail_job(run, failed, "DeadlineExceeded",
                               "Job was active longer than specified deadline")
                return
            outcome = self._run_pod(run, job, min(hard_deadline, deadline or hard_deadline))
            if outcome is None or run.orphaned:
                return
            exit_code, pod, reason = outcome
            if reason == "DeadlineExceeded":
                self._fail_job(run, failed + 1, "DeadlineExceeded",
                               "Job was active longer than specified deadline")
                return
            if exit_code == 0:
                self._complete_job(run, failed)
                return
            action, rule_msg = self._match_failure_policy(spec, pod, exit_code)
            if action == "FailJob":
                self._fail_job(run, failed + 1, "PodFailurePolicy", rule_msg)
                return
            if action != "Ignore":
                failed += 1
            self._job_status(run, functools.partial(_set_fields, failed=failed, active=0,
                                                    ready=0))
            if failed > backoff_limit:
                self._fail_job(run, failed, "BackoffLimitExceeded",
                               "Job has reached the specified backoff limit")
                return
            wait_until = time.monotonic() + self.retry_backoff
            while time.monotonic() < wait_until and not run.cancel.is_set():
                time.sleep(min(0.02, max(0.0, wait_until - time.monotonic())))
        self._fail_job(run, failed, "BackoffLimitExceeded", "Job has reached the specified "
                       "backoff limit")

    def _finish_conditions(self, status: JSON, types: Sequence[str], reason: str,
                           message: str) -> None:
        now = _now()
        conds = status.setdefault("conditions", [])
        for t in types:
            conds.append({"type": t, "status": "True", "reason": reason, "message": message,
                          "lastProbeTime": now, "lastTransitionTime": now})

    def _complete_job(self, run: _JobRun, failed: int) -> None:
        reason, message = "CompletionsReached", "Reached expected number of succeeded pods"

        def first(s: JSON) -> None:
            s.pop("active", None)
            s.update(ready=0, succeeded=1, terminating=0)
            if failed:
                s["failed"] = failed
            self._finish_conditions(s, ["SuccessCriteriaMet"], reason, message)

        def second(s: JSON) -> None:
            s["completionTime"] = _now()
            self._finish_conditions(s, ["Complete"], reason, message)

        self._job_status(run, first)
        self._job_status(run, second)

    def _fail_job(self, run: _JobRun, failed: int, reason: str, message: str) -> None:
        def first(s: JSON) -> None:
            self._finish_conditions(s, ["FailureTarget"], reason, message)

        def second(s: JSON) -> None:
            s.pop("active", None)
            s.update(ready=0, terminating=0)
            if failed:
                s["failed"] = failed
            self._finish_conditions(s, ["Failed"], reason, message)

        self._job_status(run, first)
        self._job_status(run, second)

    def _match_failure_policy(self, spec: JSON, pod: JSON, exit_code: int) -> tuple[str, str]:
        ns, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        conditions = {c["type"]: c.get("status") for c in pod["status"].get("conditions") or []}
        rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
        container = pod["spec"]["containers"][0]["name"]
        for index, rule in enumerate(rules):
            action = rule["action"]
            codes = rule.get("onExitCodes")
            if codes:
                if codes.get("containerName") not in (None, container):
                    continue
                hit = exit_code in codes["values"]
                if codes["operator"] == "NotIn":
                    hit = not hit and exit_code != 0
                if hit:
                    return action, (
                        f"Container {container} for pod {ns}/{pod_name} failed with exit code "
                        f"{exit_code} matching {action} rule at index {index}"
                    )
                continue
            for pattern in rule.get("onPodConditions") or []:
                if conditions.get(pattern.get("type")) == pattern.get("status", "True"):
                    return action, (
                        f"Pod {ns}/{pod_name} has condition {pattern['type']} matching "
                        f"{action} rule at index {index}"
                    )
        return "Count", ""

    def _kubelet_error(self, pod_name: str, message: str) -> None:
        with self._lock:
            entry = f"pod {pod_name}: {message}"
            if len(self.kubelet_errors) < 1000 and entry not in self.kubelet_errors[-1:]:
                self.kubelet_errors.append(entry)

    def _run_pod(self, run: _JobRun, job: JSON, deadline: float
                 ) -> tuple[int, JSON, str] | None:
        """Run one attempt; return (exit code, final pod, reason) or None when cancelled."""
        ns = run.namespace
        template = job["spec"]["template"]
        pod_name = f"{run.name}-{_random_suffix()}"
        container = template["spec"]["containers"][0]
        cname = container["name"]
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{run.name}-",
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "finalizers": ["batch.kubernetes.io/job-tracking"],
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": run.name, "uid": run.uid,
                    "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": "fake-node",
                     "serviceAccountName": template["spec"].get("serviceAccountName", "default")},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True",
                                "lastTransitionTime": _now()}],
                "containerStatuses": [{
                    "name": cname, "image": container.get("image", ""), "imageID": "",
                    "ready": False, "restartCount": 0, "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                }],
                "qosClass": "BestEffort",
            },
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        pod["metadata"]["labels"].update({
            "batch.kubernetes.io/controller-uid": run.uid,
            "batch.kubernetes.io/job-name": run.name,
            "controller-uid": run.uid,
            "job-name": run.name,
        })
        with self._lock:
            if run.cancel.is_set():
                return None
            self._put("pods", ns, pod, "ADDED")
            self._logs[(ns, pod_name)] = bytearray()
        pod_uid = pod["metadata"]["uid"]
        self._job_status(run, lambda s: s.update(active=1))
        tmp = Path(tempfile.mkdtemp(prefix=f"fake-kubelet-{pod_name}-"))
        try:
            spawn: tuple[list[str], dict[str, str], str | None] | None = None
            while spawn is None:
                try:
                    spawn = self._prepare(pod, container, tmp)
                except _PodSetupError as e:
                    self._kubelet_error(pod_name, str(e))
                    waiting = {"reason": e.reason, "message": str(e)}
                    self._update("pods", ns, pod_name, pod_uid,
                                 functools.partial(_set_waiting, waiting=waiting))
                    stop_at = time.monotonic() + 0.2
                    while time.monotonic() < stop_at:
                        if run.cancel.is_set() or self._stopping.is_set():
                            return None
                        if time.monotonic() >= deadline:
                            self._terminate_pod(run, pod_name, pod_uid, 1, "DeadlineExceeded")
                            return 1, self._pod_or(pod, ns, pod_name), "DeadlineExceeded"
                        time.sleep(0.02)
            argv, env, cwd = spawn
            return self._execute(run, pod, argv, env, cwd, deadline)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _pod_or(self, pod: JSON, ns: str, name: str) -> JSON:
        return self.get_object("pods", ns, name) or pod

    def _terminate_pod(self, run: _JobRun, pod_name: str, pod_uid: str, code: int,
                       reason: str, extra_condition: JSON | None = None) -> None:
        now = _now()

        def mutate(p: JSON) -> None:
            st = p["status"]
            st["phase"] = "Succeeded" if code == 0 else "Failed"
            if reason == "DeadlineExceeded":
                st["reason"] = "DeadlineExceeded"
                st["message"] = "Pod was active on the node longer than the specified deadline"
            cs = st["containerStatuses"][0]
            started = (cs["state"].get("running") or {}).get("startedAt", now)
            cs["state"] = {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else (
                    "StartError" if reason == "StartError" else "Error"),
                "startedAt": started, "finishedAt": now, "containerID": cs.get("containerID", ""),
            }}
            cs.update(ready=False, started=False)
            conds = [c for c in st.get("conditions", []) if c["type"] == "PodScheduled"]
            conds += [{"type": t, "status": "False", "reason": "PodCompleted" if code == 0
                       else "PodFailed", "lastTransitionTime": now}
                      for t in ("Initialized", "Ready", "ContainersReady")]
            if extra_condition is not None:
                conds.append(extra_condition)
            st["conditions"] = conds
            p["metadata"]["finalizers"] = []

        self._update("pods", run.namespace, pod_name, pod_uid, mutate)

    def _execute(self, run: _JobRun, pod: JSON, argv: list[str], env: dict[str, str],
                 cwd: str | None, deadline: float) -> tuple[int, JSON, str] | None:
        ns, pod_name, pod_uid = run.namespace, pod["metadata"]["name"], pod["metadata"]["uid"]
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:
            with self._lock:
                self._logs[(ns, pod_name)] += f"exec: {e}\n".encode()
            self._terminate_pod(run, pod_name, pod_uid, 128, "StartError")
            return 128, self._pod_or(pod, ns, pod_name), "StartError"
        now = _now()

        def running(p: JSON) -> None:
            st = p["status"]
            st.update(phase="Running", startTime=now, hostIP="127.0.0.1", podIP="127.0.0.1")
            cs = st["containerStatuses"][0]
            cs.update(ready=True, started=True, containerID=f"fake://{proc.pid}",
                      state={"running": {"startedAt": now}})
            st["conditions"] = [c for c in st["conditions"] if c["type"] == "PodScheduled"] + [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady")]

        reader = threading.Thread(target=self._pump_log, args=(proc, ns, pod_name),
                                  name=f"log-{pod_name}", daemon=True)
        reader.start()
        with self._lock:
            run.proc = proc
            run.pod_name = pod_name
        try:
            self._update("pods", ns, pod_name, pod_uid, running)
            self._job_status(run, lambda s: s.update(active=1, ready=1))
            reason = ""
            condition: JSON | None = None
            while proc.poll() is None:
                if run.cancel.is_set() or self._stopping.is_set():
                    reason = "Deleted"
                elif run.evict_pod == pod_name:
                    reason = "Evicted"
                    condition = {"type": "DisruptionTarget", "status": "True",
                                 "reason": "EvictionByEvictionAPI",
                                 "message": "Eviction API: evicting",
                                 "lastTransitionTime": _now()}
                    self._update("pods", ns, pod_name, pod_uid,
                                 functools.partial(_add_condition, condition=condition))
                elif time.monotonic() >= deadline:
                    reason = "DeadlineExceeded"
                if reason:
                    self._kill(proc)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.02)
            code = proc.wait()
        finally:
            with self._lock:
                run.proc = None
                run.pod_name = None
            reader.join(5)
            if proc.stdout is not None:
                proc.stdout.close()
        exit_code = 128 - code if code < 0 else code
        if reason == "Deleted":
            if run.orphaned:
                self._terminate_pod(run, pod_name, pod_uid, exit_code, "Error")
            return None
        self._terminate_pod(run, pod_name, pod_uid, exit_code, reason, condition)
        return exit_code, self._pod_or(pod, ns, pod_name), reason

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.termination_grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _pump_log(self, proc: subprocess.Popen[bytes], ns: str, pod_name: str) -> None:
        stream = proc.stdout
        if stream is None:
            return
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self._cond:
                buf = self._logs.get((ns, pod_name))
                if buf is not None:
                    buf += chunk
                    if len(buf) > LOG_LIMIT_BYTES:
                        del buf[: len(buf) - LOG_LIMIT_BYTES]
                self._cond.notify_all()

    def _lookup(self, resource: str, ns: str, name: str, key: str | None, optional: bool
                ) -> dict[str, str] | None:
        obj = self.get_object(resource, ns, name)
        kind = "configmap" if resource == "configmaps" else "secret"
        if obj is None:
            if optional:
                return None
            raise _PodSetupError("CreateContainerConfigError", f'{kind} "{name}" not found')
        data: dict[str, str] = dict(obj.get("data") or {})
        if resource == "secrets":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        if key is not None and key not in data:
            if optional:
                return None
            raise _PodSetupError("CreateContainerConfigError",
                                 f"couldn't find key {key} in {kind.capitalize()} {ns}/{name}")
        return data

    def _prepare(self, pod: JSON, container: JSON, tmp: Path
                 ) -> tuple[list[str], dict[str, str], str | None]:
        ns = pod["metadata"]["namespace"]
        volumes: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            vname = vol["name"]
            if "configMap" in vol or "secret" in vol:
                is_cm = "configMap" in vol
                src = vol["configMap"] if is_cm else vol["secret"]
                ref = src.get("name") if is_cm else src.get("secretName")
                resource = "configmaps" if is_cm else "secrets"
                obj = self.get_object(resource, ns, str(ref))
                if obj is None and not src.get("optional"):
                    kind = "configmap" if is_cm else "secret"
                    raise _PodSetupError("ContainerCreating", f'MountVolume.SetUp failed for '
                                         f'volume "{vname}" : {kind} "{ref}" not found')
                target = tmp / "volumes" / vname
                target.mkdir(parents=True, exist_ok=True)
                files: dict[str, bytes] = {}
                if obj is not None:
                    for k, v in (obj.get("data") or {}).items():
                        files[k] = base64.b64decode(v) if not is_cm else str(v).encode()
                    for k, v in (obj.get("binaryData") or {}).items():
                        files[k] = base64.b64decode(v)
                items = src.get("items")
                if items:
                    files = {i["path"]: files[i["key"]] for i in items if i["key"] in files}
                for rel, content in files.items():
                    path = target / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                volumes[vname] = target
            elif "emptyDir" in vol:
                target = tmp / "volumes" / vname
                target.mkdir(parents=True, exist_ok=True)
                volumes[vname] = target
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                if claim not in self.pvc_dirs:
                    raise _PodSetupError(
                        "ContainerCreating",
                        f'persistentvolumeclaim "{claim}" not found (no pvc_dirs mapping)')
                self.pvc_dirs[claim].mkdir(parents=True, exist_ok=True)
                volumes[vname] = self.pvc_dirs[claim]
            else:
                raise _PodSetupError("ContainerCreating",
                                     f"volume {vname}: unsupported volume type in the fake")
        mounts: list[tuple[str, str]] = []
        for vm in container.get("volumeMounts") or []:
            local = volumes[vm["name"]]
            if vm.get("subPath"):
                local = local / vm["subPath"]
            mounts.append((vm["mountPath"].rstrip("/") or "/", str(local)))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)

        def rewrite(value: str) -> str:
            for mount_path, local in mounts:
                if value == mount_path or value.startswith(mount_path + "/"):
                    return local + value[len(mount_path):]
            return value

        # Container-declared env (envFrom, then env) is expanded and path-rewritten; the base
        # env (default: this process's environment) is only the layer underneath.
        cenv: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for key, resource in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if key in src:
                    data = self._lookup(resource, ns, src[key]["name"], None,
                                        bool(src[key].get("optional")))
                    for k, v in (data or {}).items():
                        cenv[prefix + k] = v
        for item in container.get("env") or []:
            value = self._env_value(pod, item)
            if value is not None:
                cenv[item["name"]] = _VAR_REF.sub(lambda m: cenv.get(m.group(1), m.group(0)),
                                                  value)
        env: dict[str, str] = dict(self.base_env if self.base_env is not None else os.environ)
        env.update({k: rewrite(v) for k, v in cenv.items()})
        for mount_path, local_dir in mounts:
            if mount_path == "/tmp":
                env["TMPDIR"] = local_dir
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        if not command:
            raise _PodSetupError("CreateContainerError",
                                 "container has no command (images are not run by the fake)")
        expanded = [_VAR_REF.sub(lambda m: cenv.get(m.group(1), m.group(0)), a)
                    for a in command + args]
        head = self.command_map.get(expanded[0], [expanded[0]])
        argv = list(head) + [rewrite(a) for a in expanded[1:]]
        cwd: str | None = None
        if container.get("workingDir"):
            mapped = rewrite(container["workingDir"])
            if mapped != container["workingDir"]:
                cwd = mapped
        return argv, env, cwd

    def _env_value(self, pod: JSON, item: JSON) -> str | None:
        if "valueFrom" not in item:
            return str(item.get("value", ""))
        src = item["valueFrom"]
        ns = pod["metadata"]["namespace"]
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            meta = pod["metadata"]
            simple = {
                "metadata.name": meta["name"],
                "metadata.namespace": ns,
                "metadata.uid": meta["uid"],
                "spec.nodeName": pod["spec"].get("nodeName", ""),
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
            }
            if path in simple:
                return str(simple[path])
            m = _FIELD_REF.match(path)
            if m:
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            raise _PodSetupError("CreateContainerConfigError",
                                 f"unsupported fieldRef fieldPath {path!r}")
        for key, resource in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if key in src:
                ref = src[key]
                data = self._lookup(resource, ns, ref["name"], ref["key"],
                                    bool(ref.get("optional")))
                return None if data is None else data[ref["key"]]
        raise _PodSetupError("CreateContainerConfigError", "unsupported valueFrom in the fake")

    # ------------------------------------------------------------------ HTTP dispatch

    def _check_access(self, verb: str, kind: _Kind, namespace: str | None, name: str | None,
                      sub: str | None) -> None:
        resource = kind.resource + (f"/{sub}" if sub else "")
        with self._lock:
            denied = any(
                v == verb and r == resource and (n is None or n == namespace)
                for v, r, n in self._forbidden
            )
        if not denied:
            return
        what = f'{kind.qualified} "{name}"' if name else kind.qualified
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        raise KubeAPIError(
            403, "Forbidden",
            f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" in '
            f'API group "{kind.group}"{where}',
            {"name": name, "group": kind.group, "kind": kind.resource} if name else
            {"group": kind.group, "kind": kind.resource},
        )

    def _take_fault(self, method: str, path: str) -> KubeAPIError | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if fault.method in ("*", method) and path.startswith(fault.path_prefix):
                    entry[1] = remaining - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                    reason = _FAULT_REASONS.get(fault.status, "InternalError")
                    msg = fault.message or f"injected fault: {reason}"
                    headers = {} if fault.retry_after is None else {
                        "Retry-After": str(fault.retry_after)}
                    return KubeAPIError(fault.status, reason, msg, headers=headers)
        return None

    def _discovery(self, path: str) -> JSON | None:
        def resources(group_version: str) -> list[JSON]:
            out: list[JSON] = []
            for k in _KINDS.values():
                if k.api_version != group_version:
                    continue
                out.append({"name": k.resource, "singularName": k.kind.lower(),
                            "namespaced": k.namespaced, "kind": k.kind,
                            "verbs": ["create", "delete", "get", "list", "watch"]})
                if k.resource == "pods":
                    out.append({"name": "pods/log", "singularName": "", "namespaced": True,
                                "kind": "Pod", "verbs": ["get"]})
            return out

        if path == "/version":
            major, minor = self.kube_version.split(".")[:2]
            return {"major": major, "minor": minor, "gitVersion": f"v{self.kube_version}",
                    "gitCommit": "fake", "gitTreeState": "clean",
                    "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22.0",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        batch = {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}
        events = {"name": "events.k8s.io",
                  "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
                  "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [batch, events]}
        if path == "/apis/batch":
            return {"kind": "APIGroup", "apiVersion": "v1", **batch}
        if path == "/apis/events.k8s.io":
            return {"kind": "APIGroup", "apiVersion": "v1", **events}
        if path in ("/api/v1", "/apis/batch/v1", "/apis/events.k8s.io/v1"):
            gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": resources(gv)}
        return None

    def handle(self, handler: _Handler, method: str) -> None:
        """Serve one HTTP request (called by the request handler thread)."""
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append(RequestRecord(method, path, query))
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
            if path in ("/healthz", "/livez", "/readyz") and method == "GET":
                handler.send_text(200, "ok")
                return
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                raise KubeAPIError(401, "Unauthorized", "Unauthorized")
            fault = self._take_fault(method, path)
            if fault is not None:
                raise fault
            disc = self._discovery(path)
            if disc is not None:
                if method != "GET":
                    raise KubeAPIError(405, "MethodNotAllowed", "the server does not allow this "
                                       "method on the requested resource")
                handler.send_json(200, disc)
                return
            self._route(handler, method, path, query, body)
        except KubeAPIError as e:
            handler.send_json(e.code, e.status(), e.headers)

    def _route(self, handler: _Handler, method: str, path: str, query: dict[str, str],
               body: bytes) -> None:
        m = re.fullmatch(
            r"/(?:api/v1|apis/batch/v1|apis/events\.k8s\.io/v1)(?:/namespaces/([^/]+))?/([a-z]+)"
            r"(?:/([^/]+))?(?:/(\w+))?", path)
        if m is None:
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name, sub = m.groups()
        group_prefix = "/".join(path.split("/")[:4]) if path.startswith("/apis/") else "/api/v1"
        if resource == "namespaces" and ns is None:
            resource, ns, name = "namespaces", None, name
        elif ns is not None and resource is None:
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        kind = _KINDS.get(resource)
        prefix = _GROUP_PREFIX[kind.group] if kind is not None else "/api/v1"
        if kind is None or prefix != group_prefix or (kind.namespaced and ns is None and name) \
                or (sub not in (None, "status", "log")) or (sub == "log" and resource != "pods") \
                or (sub is not None and name is None):
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        watching = query.get("watch") in ("true", "1")
        if method == "GET" and name is None:
            verb = "watch" if watching else "list"
        else:
            verb = {"GET": "get", "POST": "create", "DELETE": "delete", "PUT": "update",
                    "PATCH": "patch"}.get(method, method.lower())
        if method == "POST" and name is not None:
            raise KubeAPIError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
        self._check_access(verb, kind, ns, name, sub)
        if ns is not None:
            with self._lock:
                self._require_namespace(ns)
        selector = _Selector(kind.resource, query.get("labelSelector"),
                             query.get("fieldSelector"))
        if verb == "watch":
            self._watch(handler, kind, ns, selector, query)
        elif verb == "list":
            self._send_list(handler, kind, ns, selector, query)
        elif verb == "get" and sub == "log":
            self._send_log(handler, str(ns), str(name), query)
        elif verb == "get":
            obj = self.get_object(kind.resource, ns or "", str(name))
            if obj is None:
                raise _not_found(kind, str(name))
            handler.send_json(200, obj)
        elif verb == "create" and kind.resource in ("jobs", "configmaps", "secrets", "events"):
            try:
                doc = json.loads(body or b"null")
            except ValueError as e:
                raise _bad_request(f"error decoding request body: {e}") from None
            if query.get("dryRun"):
                raise _bad_request("dryRun is not supported by the fake API server")
            handler.send_json(201, self._create(kind, str(ns), doc))
        elif verb == "delete" and kind.resource in ("jobs", "configmaps", "secrets", "events"):
            policy = query.get("propagationPolicy")
            if body:
                with contextlib.suppress(ValueError, AttributeError):
                    policy = json.loads(body).get("propagationPolicy") or policy
                    if json.loads(body).get("orphanDependents") is True:
                        policy = policy or "Orphan"
            headers = {}
            if policy is None and kind.resource == "jobs":
                headers["Warning"] = (
                    '299 - "child pods are preserved by default when jobs are deleted; set '
                    'propagationPolicy=Background to remove them or set propagationPolicy='
                    'Orphan to suppress this warning"')
            handler.send_json(200, self._delete(kind, str(ns), str(name), policy), headers)
        else:
            raise KubeAPIError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")

    def _send_list(self, handler: _Handler, kind: _Kind, ns: str | None, selector: _Selector,
                   query: dict[str, str]) -> None:
        with self._lock:
            rv = self._rv
            items = self._list(kind.resource, ns, selector)
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        meta: JSON = {"resourceVersion": str(rv)}
        cont = query.get("continue")
        if cont:
            try:
                after = base64.urlsafe_b64decode(cont.encode()).decode()
            except ValueError:
                raise _bad_request("continue key is not valid") from None
            items = [i for i in items if
                     f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" > after]
        limit = int(query.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(
                f"{last.get('namespace', '')}/{last['name']}".encode()).decode()
            meta["remainingItemCount"] = 1
        handler.send_json(200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                                "metadata": meta, "items": items})

    def _send_log(self, handler: _Handler, ns: str, name: str, query: dict[str, str]) -> None:
        pod = self.get_object("pods", ns, name)
        if pod is None:
            raise _not_found(_KINDS["pods"], name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        cname = query.get("container") or names[0]
        if cname not in names:
            raise _bad_request(f"container {cname} is not valid for pod {name}")
        state = pod["status"]["containerStatuses"][0]["state"]
        if "waiting" in state:
            raise _bad_request(f'container "{cname}" in pod "{name}" is waiting to start: '
                               f'{state["waiting"].get("reason", "ContainerCreating")}')
        if query.get("previous") in ("true", "1"):
            raise _bad_request(f'previous terminated container "{cname}" in pod "{name}" not '
                               "found")
        text = self.pod_log(ns, name)
        tail = query.get("tailLines")
        if tail:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        data = text.encode()
        if query.get("limitBytes"):
            data = data[: int(query["limitBytes"])]
        if query.get("follow") not in ("true", "1"):
            handler.send_raw(200, data, "text/plain")
            return
        handler.start_chunked(200, "text/plain")
        sent = len(self._logs.get((ns, name), b""))
        if not handler.write_chunk(data):
            return
        end = time.monotonic() + 600
        while time.monotonic() < end and not self._stopping.is_set():
            with self._cond:
                buf = self._logs.get((ns, name), bytearray())
                new = bytes(buf[sent:])
                sent = len(buf)
                pod_now = self._objects.get(("pods", ns, name))
                done = pod_now is None or pod_now["status"]["phase"] in ("Succeeded", "Failed")
                if not new and not done:
                    self._cond.wait(0.2)
            if new and not handler.write_chunk(new):
                return
            if done and not new:
                break
        handler.end_chunked()

    def _watch(self, handler: _Handler, kind: _Kind, ns: str | None, selector: _Selector,
               query: dict[str, str]) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        end = time.monotonic() + min(max(timeout, 0.0), 3600.0)
        rv_text = query.get("resourceVersion") or ""
        initial: list[JSON] = []
        with self._lock:
            if rv_text in ("", "0"):
                cursor = self._rv
                initial = self._list(kind.resource, ns, selector)
            else:
                try:
                    cursor = int(rv_text)
                except ValueError:
                    raise _bad_request(f'invalid resource version: "{rv_text}"') from None
        handler.start_chunked(200, "application/json")
        for obj in initial:
            if not handler.write_chunk(_event_line("ADDED", obj)):
                return
        while time.monotonic() < end and not self._stopping.is_set():
            lines: list[bytes] = []
            with self._cond:
                if cursor < self._compacted_rv:
                    gone = KubeAPIError(410, "Expired", f"too old resource version: {cursor} "
                                        f"({self._compacted_rv + 1})")
                    handler.write_chunk(_event_line("ERROR", gone.status()))
                    break
                for rv, resource, ens, etype, obj, old in self._events:
                    if rv <= cursor or resource != kind.resource or (ns is not None and ens != ns):
                        continue
                    new_match, old_match = selector.matches(obj), selector.matches(old)
                    if etype == "DELETED":
                        if old_match or new_match:
                            lines.append(_event_line("DELETED", obj))
                    elif new_match and (etype == "ADDED" or old_match):
                        lines.append(_event_line(etype, obj))
                    elif new_match:
                        lines.append(_event_line("ADDED", obj))
                    elif old_match:
                        lines.append(_event_line("DELETED", obj))
                cursor = self._rv
                if not lines:
                    self._cond.wait(min(0.25, max(0.0, end - time.monotonic())))
            for line in lines:
                if not handler.write_chunk(line):
                    return
        handler.end_chunked()


def _set_fields(obj: JSON, **fields: Any) -> None:
    obj.update(fields)


def _set_waiting(pod: JSON, waiting: JSON) -> None:
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": waiting}


def _add_condition(pod: JSON, condition: JSON) -> None:
    pod["status"].setdefault("conditions", []).append(condition)


def _event_line(event_type: str, obj: JSON) -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


class _PodSetupError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[_Handler], api: FakeKubeAPI
                 ) -> None:
        self.api = api
        self._conns: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             daemon=True)
        with self._conn_lock:
            self._conns.add(request)
            self._handler_threads = [h for h in self._handler_threads if h.is_alive()]
            self._handler_threads.append(t)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            threads = list(self._handler_threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _dispatch(self) -> None:
        try:
            self.server.api.handle(self, self.command)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def send_raw(self, code: int, data: bytes, content_type: str,
                 headers: Mapping[str, str] | None = None) -> None:
        """Send a complete response with Content-Length."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        """Send a JSON response."""
        self.send_raw(code, json.dumps(obj).encode(), "application/json", headers)

    def send_text(self, code: int, text: str) -> None:
        """Send a text/plain response."""
        self.send_raw(code, text.encode(), "text/plain; charset=utf-8")

    def start_chunked(self, code: int, content_type: str) -> None:
        """Start a streaming (chunked) response."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> bool:
        """Write one chunk; False when the client went away."""
        if not data:
            return True
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def end_chunked(self) -> None:
        """Terminate a chunked response."""
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


__all__ = ["DEFAULT_USER", "FakeKubeAPI", "KubeAPIError", "RequestRecord",
           "parse_label_selector"]
