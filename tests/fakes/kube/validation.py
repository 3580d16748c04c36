"""Validation and defaulting of created objects (schema first, then the API's own rules)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import kubernetes_validate

from tests.fakes.kube.model import JSON, LABEL_NAME, LABEL_VALUE, Kind

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

def _json_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def schema_errors(obj: JSON, kube_version: str) -> list[tuple[str, str]]:
    """Errors of strict validation against the Kubernetes OpenAPI schema."""
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


def check_name(name: Any, errors: list[tuple[str, str]], field: str, max_len: int) -> None:
    """Append an error unless ``name`` is a DNS-1123 subdomain of at most ``max_len``."""
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


def check_labels(labels: Any, field: str, errors: list[tuple[str, str]]) -> None:
    """Append an error for each invalid label key or value."""
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if len(name) > 63 or not LABEL_NAME.match(name):
            errors.append((f"{field}", f'Invalid value: "{key}": name part must be a valid label'))
        if value is not None and (
            not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value)
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


def validate_job(job: JSON, errors: list[tuple[str, str]]) -> None:
    """The Job rules of the API beyond the schema (names, policies, deadlines)."""
    spec = job.get("spec") or {}
    check_name(job["metadata"].get("name"), errors, "metadata.name", 63)
    template = spec.get("template") or {}
    check_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels",
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


def validate_pod(pod: JSON, errors: list[tuple[str, str]]) -> None:
    """The Pod rules of the API beyond the schema (name, containers, restartPolicy, probes)."""
    check_name(pod["metadata"].get("name"), errors, "metadata.name", 253)
    spec = pod.get("spec") or {}
    _validate_pod_spec(spec, "spec", errors)
    restart = spec.get("restartPolicy", "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        errors.append(("spec.restartPolicy", f'Unsupported value: "{restart}": supported '
                       'values: "Always", "Never", "OnFailure"'))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and ads <= 0:
        errors.append(("spec.activeDeadlineSeconds",
                       f"Invalid value: {ads}: must be greater than 0"))
    for i, c in enumerate(spec.get("containers") or []):
        names = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
        port = ((c.get("readinessProbe") or {}).get("tcpSocket") or {}).get("port")
        if isinstance(port, str) and port not in names:
            errors.append((f"spec.containers[{i}].readinessProbe.tcpSocket.port",
                           f'Invalid value: "{port}": must contain at least one letter and '
                           "name a container port"))


def validate_service(svc: JSON, errors: list[tuple[str, str]]) -> None:
    """The Service rules: a DNS-1035 name, ports, a headless or ClusterIP type."""
    name = svc["metadata"].get("name")
    if not isinstance(name, str) or not _DNS1035_LABEL.match(name) or len(name) > 63:
        errors.append(("metadata.name", f'Invalid value: "{name}": a DNS-1035 label must '
                       "consist of lower case alphanumeric characters or '-', start with an "
                       "alphabetic character, and end with an alphanumeric character"))
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None":
        errors.append(("spec.ports", "Required value"))
    seen: set[str] = set()
    for i, port in enumerate(ports):
        pname = port.get("name", "")
        if len(ports) > 1 and not pname:
            errors.append((f"spec.ports[{i}].name", "Required value"))
        if pname in seen:
            errors.append((f"spec.ports[{i}].name", f'Duplicate value: "{pname}"'))
        seen.add(pname)
        if not 1 <= int(port.get("port") or 0) <= 65535:
            errors.append((f"spec.ports[{i}].port", f"Invalid value: {port.get('port')}: must "
                           "be between 1 and 65535, inclusive"))
    if spec.get("type", "ClusterIP") not in ("ClusterIP", "NodePort", "LoadBalancer",
                                             "ExternalName"):
        errors.append(("spec.type", f'Unsupported value: "{spec.get("type")}"'))
    if spec.get("clusterIP") == "None" and spec.get("type", "ClusterIP") != "ClusterIP":
        errors.append(("spec.clusterIPs[0]", 'Invalid value: "None": may only be set to '
                       "'None' for ClusterIP services"))


def default_pod(pod: JSON) -> None:
    """Fill in a created Pod's defaults and its first status (Pending, not scheduled yet)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("serviceAccountName", "default")
    default_pod_spec(spec)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def default_pod_spec(spec: JSON) -> None:
    """The defaults of a pod spec (a Pod's, or a Job's pod template)."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers") or []:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        image = str(c.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        for port in c.get("ports") or []:
            port.setdefault("protocol", "TCP")
        probe = c.get("readinessProbe")
        if probe is not None:
            for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10),
                               ("successThreshold", 1), ("failureThreshold", 3)):
                probe.setdefault(key, value)
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("fieldRef")
            if ref is not None:
                ref.setdefault("apiVersion", "v1")
    for v in spec.get("volumes") or []:
        for key in ("configMap", "secret"):
            if key in v:
                v[key].setdefault("defaultMode", 420)


def default_service(svc: JSON, cluster_ip: str) -> None:
    """Fill in a created Service's defaults (type, protocol, targetPort, its cluster IP)."""
    spec = svc.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if spec.get("clusterIP") != "None":
        spec["clusterIP"] = spec.get("clusterIP") or cluster_ip
    spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    svc["status"] = {"loadBalancer": {}}


def validate_config(obj: JSON, kind: Kind, errors: list[tuple[str, str]]) -> None:
    """The ConfigMap/Secret rules: key names and base64 data."""
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


def validate_event(obj: JSON, errors: list[tuple[str, str]]) -> None:
    """What the real server's ValidateEventCreate checks for an events.k8s.io/v1 Event."""
    for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(f):
            errors.append((f, "Required value"))
    for f in ("reportingInstance", "action", "reason"):
        if len(str(obj.get(f) or "")) > 128:
            errors.append((f, "Too long: may not be more than 128 bytes"))
    controller = str(obj.get("reportingController") or "")
    prefix, _, name = controller.rpartition("/")
    if controller and (not LABEL_NAME.match(name) or len(name) > 63
                       or (prefix and not _DNS1123_SUBDOMAIN.match(prefix))):
        errors.append(("reportingController", f'Invalid value: "{controller}": must be a '
                       "qualified name"))
    if obj.get("type") not in ("Normal", "Warning"):
        errors.append(("type", f'Unsupported value: "{obj.get("type")}": supported values: '
                       '"Normal", "Warning"'))
    if len(str(obj.get("note") or "").encode()) > 1024:
        errors.append(("note", "Too long: may not be more than 1024 bytes"))


def default_job(job: JSON, uid: str) -> None:
    """Fill in a created Job's defaults, selector and generated labels (SetDefaults_Job)."""
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
    default_pod_spec(template.setdefault("spec", {}))
    job["status"] = {}




def validate_replica_set(rs: JSON, errors: list[tuple[str, str]]) -> None:
    """The apps/v1 ReplicaSet rules beyond the schema: the selector selects the template's
    labels, ``restartPolicy: Always``, no ``activeDeadlineSeconds``."""
    check_name(rs["metadata"].get("name"), errors, "metadata.name", 253)
    spec = rs.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    check_labels(labels, "spec.template.metadata.labels", errors)
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    if not match:
        errors.append(("spec.selector", "Invalid value: empty selector is invalid for "
                       "deployment"))
    elif any(labels.get(k) != v for k, v in match.items()):
        errors.append(("spec.template.metadata.labels", "Invalid value: `selector` does not "
                       "match template `labels`"))
    pod_spec = template.get("spec") or {}
    _validate_pod_spec(pod_spec, "spec.template.spec", errors)
    restart = pod_spec.get("restartPolicy", "Always")
    if restart != "Always":
        errors.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{restart}": supported values: "Always"'))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errors.append(("spec.template.spec.activeDeadlineSeconds",
                       "Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"))
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, int) and replicas < 0:
        errors.append(("spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                       "equal to 0"))


def validate_dask_cluster(obj: JSON, kube_version: str, errors: list[tuple[str, str]]) -> None:
    """The ``kubernetes.dask.org/v1`` DaskCluster CRD's schema (the operator's
    daskcluster.yaml, in short): ``spec.scheduler.spec`` and ``spec.worker.spec`` are
    PodSpecs (validated as such), ``spec.scheduler.service`` a ServiceSpec,
    ``spec.worker.replicas`` an integer, ``spec.idleTimeout`` an integer."""
    check_name(obj["metadata"].get("name"), errors, "metadata.name", 253)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errors.append(("spec", "Required value"))
        return
    for key in spec:
        if key not in ("scheduler", "worker", "idleTimeout"):
            errors.append((f"spec.{key}", f'Invalid value: unknown field "spec.{key}"'))
    if "idleTimeout" in spec and not isinstance(spec["idleTimeout"], int):
        errors.append(("spec.idleTimeout", "Invalid value: must be an integer"))
    for part in ("scheduler", "worker"):
        sub = spec.get(part)
        if not isinstance(sub, dict) or not isinstance(sub.get("spec"), dict):
            errors.append((f"spec.{part}.spec", "Required value"))
            continue
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
               "spec": sub["spec"]}
        for path, message in schema_errors(pod, kube_version):
            errors.append((f"spec.{part}.{path}", message))
        _validate_pod_spec(sub["spec"], f"spec.{part}.spec", errors)
    worker = spec.get("worker") or {}
    if not isinstance(worker.get("replicas", 1), int):
        errors.append(("spec.worker.replicas", "Invalid value: must be an integer"))
    service = (spec.get("scheduler") or {}).get("service")
    if service is not None:
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
               "spec": service}
        for path, message in schema_errors(svc, kube_version):
            errors.append((f"spec.scheduler.service.{path}", message))
