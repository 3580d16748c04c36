"""The pure manifest builders: the config's ``kubernetes`` section -> step Job manifests.

* :func:`job_name`, :func:`label_value` and :func:`build_job` turn the config's
  ``kubernetes`` section (rendered by the Helm chart) into a step Job manifest.
* :func:`build_event` builds the Events the controller writes on its own Job.
* :func:`job_state`, :func:`pod_ready`, :func:`step_failure` read what the API returned.

Nothing here talks to the API (see :mod:`mlops.kube.client`) or imports ``kubernetes``.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops.config import (
    KubernetesConfig,
    StepPodConfig,
)
from mlops.errors import KubernetesBadRequestError, StepFailedError

Job = dict[str, Any]

#: The namespace of the step Jobs when neither --namespace nor kubernetes.namespace say
#: (the chart sets it from the downward API).
ENV_NAMESPACE = "MLOPS_NAMESPACE"
#: A pod's own name (downward API): the controller's (the chart sets it; else ``$HOSTNAME``)
#: and a Dask worker's, which is named after its pod.
ENV_POD_NAME = "MLOPS_POD_NAME"

#: The image's init (tini, see the Dockerfile), in front of every command a pod runs: it
#: reaps the zombies of worker processes and passes SIGTERM on to mlops or dask, which
#: handle it (exit 143) instead of waiting, as PID 1 without a handler, for SIGKILL.
INIT = ("tini", "--")
LABEL_RUN_ID = "mlops/run-id"
LABEL_STEP = "mlops/step"
MAX_NAME = 63
_HASH_LEN = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# A container image reference: [registry[:port]/]path[:tag][@digest], path lowercase.
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+:[a-f0-9]{32,})?$")
_STEP_KEYS = {"ingest": "ingest", "monitor-check": "monitor_check", "train": "train",
              "score": "score"}

#: ``(group, version, plural)`` of the dask-kubernetes operator's DaskCluster.
DASK_CLUSTER_API = ("kubernetes.dask.org", "v1", "daskclusters")
#: The pod's terminationGracePeriodSeconds when the template does not set it (the API default).
DEFAULT_GRACE_SECONDS = 30
#: Seconds the controller waits beyond a step's deadline and grace period, for the Job
#: controller to write the Job's terminal condition.
WAIT_MARGIN_SECONDS = 60
#: Job conditions that decide the outcome. Since Kubernetes 1.31 the Job controller sets
#: SuccessCriteriaMet / FailureTarget first and Complete / Failed only once every pod has
#: terminated (after the pod's grace period).
_TERMINAL = {"Complete": "Complete", "SuccessCriteriaMet": "Complete",
             "Failed": "Failed", "FailureTarget": "Failed"}


# --- names and labels --------------------------------------------------------------------
def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LEN]


def job_name(release: str, run_id: str, step: str) -> str:
    """The step Job's name: ``<release>-<run-id>-<step>``, a DNS-1123 label.

    The name is lowercased and characters other than ``a-z0-9-`` become ``-``. When that
    changed anything or the name is longer than 63 characters, it is cut and ends in
    ``-<8 hex digits of sha256(original name)>``, so it stays deterministic and unique.

    Args:
        release: The ``kubernetes.release`` prefix.
        run_id: The run id (a safe name).
        step: ``ingest``, ``monitor-check`` or ``train``.

    Returns:
        A name of at most 63 characters.
    """
    raw = f"{release}-{run_id}-{step}"
    name = re.sub(r"[^a-z0-9-]", "-", raw.lower()).strip("-")
    if name == raw and len(name) <= MAX_NAME and _DNS_LABEL.match(name):
        return name
    suffix = "-" + _short_hash(raw)
    keep = MAX_NAME - len(suffix)
    head = f"-{step}"
    # Keep the step visible at the end when the name must be cut.
    base = name[: max(1, keep - len(head))].rstrip("-") + head if len(name) > keep else name
    return (base[:keep].rstrip("-") or "x") + suffix


def label_value(value: str) -> str:
    """``value`` as a valid label value (<= 63 characters, alphanumeric at both ends).

    Unchanged when already valid; otherwise cut and suffixed with a short hash.
    """
    if len(value) <= MAX_NAME and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    cut = cleaned[: MAX_NAME - _HASH_LEN - 1].strip("-_.")
    return f"{cut}-{_short_hash(value)}" if cut else _short_hash(value)


def check_image(image: str) -> str:
    """Return ``image`` if it is a valid container image reference.

    Raises:
        KubernetesBadRequestError: It is not (the API server would accept it and the pod
            would then never start).
    """
    if not _IMAGE.match(image) or len(image) > 255:
        raise KubernetesBadRequestError(
            "config key 'kubernetes.pod_template.containers[0].image' (the chart's image "
            f"values) is not a valid image reference: {image!r} "
            "(expected [registry/]name[:tag][@digest], name in lowercase)")
    return image


def job_labels(k8s: KubernetesConfig, run_id: str, step: str) -> dict[str, str]:
    """The labels of a step Job and its pods.

    ``k8s.labels`` (the chart renders its own selector labels there: name, instance,
    component) are kept as they are; the name and instance labels are only defaulted for a
    config not rendered by the chart. The manager, run id and step labels are always ours.
    """
    labels = {"app.kubernetes.io/name": "mlops",
              "app.kubernetes.io/instance": label_value(k8s.release),
              "app.kubernetes.io/component": "step",
              **k8s.labels}
    labels.update({"app.kubernetes.io/managed-by": "mlops-controller",
                   LABEL_RUN_ID: label_value(run_id), LABEL_STEP: step})
    return labels


@dataclass(frozen=True)
class Owner:
    """The controller's own Job, owner of the step Jobs (garbage collected with it)."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """The ownerReference of a step Job.

        ``blockOwnerDeletion`` stays: deleting a run with ``--cascade=foreground`` then
        waits for its step Jobs. Under the OwnerReferencesPermissionEnforcement admission
        plugin (OpenShift, hardened clusters) setting it needs ``update`` on
        ``jobs/finalizers``, which the chart's Role grants.
        """
        return {"apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": self.uid,
                "controller": False, "blockOwnerDeletion": True}


#: ``reportingController`` of the Events the controller writes (a qualified name).
EVENT_CONTROLLER = "mlops/controller"
_EVENT_NOTE_BYTES = 1024  # the API server's limit on an Event's note


def build_event(owner: Owner, namespace: str, type_: str, reason: str, action: str,
                note: str, instance: str | None = None) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event about the controller's own Job (pure).

    Args:
        owner: The controller's Job (``regarding``).
        namespace: Its namespace.
        type_: ``Normal`` or ``Warning``.
        reason: CamelCase reason, e.g. ``RunStarted``.
        action: What was done, e.g. ``Run``, ``Step``, ``Promote``.
        note: One line (cut to the API's 1024 bytes).
        instance: ``reportingInstance`` (default: the pod's host name).
    """
    now = datetime.datetime.now(datetime.UTC)
    line = note.splitlines()[0] if note else reason
    text = line.encode("utf-8")[:_EVENT_NOTE_BYTES].decode("utf-8", "ignore")
    host = instance or os.environ.get("HOSTNAME") or socket.gethostname() or "mlops"
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": f"{owner.name}.", "namespace": namespace},
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": EVENT_CONTROLLER,
        "reportingInstance": host[:128],
        "action": action,
        "reason": reason,
        "type": type_,
        "note": text,
        "regarding": {"apiVersion": "batch/v1", "kind": "Job", "name": owner.name,
                      "namespace": namespace, "uid": owner.uid},
    }


def step_pod(k8s: KubernetesConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of the step pod and its container: ``kubernetes.pod_template``.

    The Helm chart renders it (``mlops.stepPodSpec`` in ``helm/mlops/templates/_pod.tpl``)
    into config.yaml: that template is the one definition of the step pod, and every step
    Job and Dask pod is made from it. There is no fallback: a config without it was not
    rendered by the chart.

    Returns:
        ``(pod spec, its one container)``, the container being part of the spec.

    Raises:
        KubernetesBadRequestError: ``kubernetes.pod_template`` is empty, does not hold
            exactly one container, or that container's image is not a valid image
            reference (exit 2).
    """
    if not k8s.pod_template:
        raise KubernetesBadRequestError(
            "config key 'kubernetes.pod_template' is empty: the step pod is defined by the "
            "Helm chart (helm/mlops), which renders it into config.yaml; give the controller "
            "the chart's config.yaml (its ConfigMap, or `helm template`)")
    spec = copy.deepcopy(k8s.pod_template)
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) != 1 \
            or not isinstance(containers[0], dict):
        raise KubernetesBadRequestError(
            "config key 'kubernetes.pod_template.containers' must hold exactly one container")
    container: dict[str, Any] = containers[0]
    check_image(str(container.get("image") or ""))
    return spec, container


def step_wait_seconds(k8s: KubernetesConfig, step: str) -> float:
    """How long the controller waits for a step Job.

    ``kubernetes.step_timeout_seconds``, but never less than the step's
    ``activeDeadlineSeconds`` plus the pod's grace period plus :data:`WAIT_MARGIN_SECONDS`:
    a Job past its deadline is only marked Failed after its pod has terminated, and the
    controller must see that (``DeadlineExceeded`` and the pod's log), not its own timeout.
    """
    pod: StepPodConfig = getattr(k8s.steps, _STEP_KEYS[step])
    spec = k8s.pod_template or {}
    grace = spec.get("terminationGracePeriodSeconds")
    grace = DEFAULT_GRACE_SECONDS if not isinstance(grace, int) else grace
    return float(max(k8s.step_timeout_seconds,
                     pod.active_deadline_seconds + grace + WAIT_MARGIN_SECONDS))


def build_job(k8s: KubernetesConfig, run_id: str, step: str, *, namespace: str,
              owner: Owner | None = None, extra_env: Mapping[str, str] | None = None) -> Job:
    """The batch/v1 Job manifest that runs ``mlops <step>`` for ``run_id``.

    The pod is ``kubernetes.pod_template``, the chart's step pod (:func:`step_pod`); this
    sets its container's name (the step) and args (``<step> <template args> --run-id
    <id>``), the step's resources, nodeSelector and tolerations, and, when
    ``same_node_as_controller`` is set and the controller runs in a Job, a required pod
    affinity to the controller's pod (a ReadWriteOnce claim attaches to one node).

    Args:
        k8s: The config's ``kubernetes`` section.
        run_id: The run id.
        step: ``ingest``, ``monitor-check`` or ``train``.
        namespace: The namespace of the Job.
        owner: The controller's Job, when the controller runs in one.
        extra_env: Defaults forwarded from the controller (``$MLOPS_STORAGE_URI``); an env
            entry of the template of the same name wins over them.

    Returns:
        The manifest as plain data (camelCase keys, as the API expects).

    Raises:
        KubernetesBadRequestError: No pod template, or see :func:`step_pod` (exit 2).
    """
    pod: StepPodConfig = getattr(k8s.steps, _STEP_KEYS[step])
    name = job_name(k8s.release, run_id, step)
    labels = job_labels(k8s, run_id, step)
    spec, container = step_pod(k8s)
    env = [e for e in container.get("env") or [] if isinstance(e, dict)]
    declared = {e.get("name") for e in env}
    env += [{"name": k, "value": v} for k, v in (extra_env or {}).items() if k not in declared]
    container.update(name=step, args=[step, *(container.get("args") or []), "--run-id", run_id],
                     resources=copy.deepcopy(pod.resources))
    if env:
        container["env"] = env
    spec["restartPolicy"] = "Never"
    if pod.node_selector:
        spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        spec["tolerations"] = copy.deepcopy(pod.tolerations)
    pin_to_controller(spec, k8s, owner)
    metadata = owned_metadata(name, namespace, labels, run_id, owner)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": pod.backoff_limit,
            "activeDeadlineSeconds": pod.active_deadline_seconds,
            "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": step, "operator": "In", "values": [2]}},
                {"action": "Ignore",
                 "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def pin_to_controller(spec: dict[str, Any], k8s: KubernetesConfig, owner: Owner | None
                      ) -> None:
    """A required pod affinity to the controller's pod (a ReadWriteOnce claim attaches to
    one node), when ``same_node_as_controller`` is set and the controller runs in a Job."""
    if k8s.same_node_as_controller and owner is not None:
        spec.setdefault("affinity", {})["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"batch.kubernetes.io/job-name": owner.name}},
            }]}


def owned_metadata(name: str, namespace: str, labels: Mapping[str, str], run_id: str,
                   owner: Owner | None) -> dict[str, Any]:
    """The metadata of an object of a run: name, labels, the run id annotation and, when
    the controller runs in a Job, its ownerReference (garbage-collected with it)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels),
                                "annotations": {LABEL_RUN_ID: run_id}}
    if owner is not None:
        metadata["ownerReferences"] = [owner.reference()]
    return metadata


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """True when the pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_problem(pod: Mapping[str, Any]) -> str:
    """Why a pod is not running, from its phase and container states ("" if nothing)."""
    status = pod.get("status") or {}
    parts = []
    if status.get("phase") in ("Failed", "Succeeded"):
        parts.append(f"phase {status['phase']}")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting, term = state.get("waiting"), state.get("terminated")
        last = (cs.get("lastState") or {}).get("terminated")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            parts.append(f"{cs.get('name')} waiting: {waiting.get('reason')} "
                         f"{waiting.get('message') or ''}".strip())
        for t in (term, last):
            if t:
                parts.append(f"{cs.get('name')} exited {t.get('exitCode')} "
                             f"({t.get('reason') or 'Error'})")
    return "; ".join(parts)


def job_state(job: Mapping[str, Any]) -> str | None:
    """``"Complete"``, ``"Failed"`` or None (still running) from a Job's conditions.

    ``SuccessCriteriaMet`` counts as Complete and ``FailureTarget`` as Failed: from
    Kubernetes 1.31 they come first, and Complete/Failed follow only once the pods have
    terminated (after their grace period).
    """
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in _TERMINAL:
            return _TERMINAL[str(cond["type"])]
    return None


def failed_condition(job: Mapping[str, Any]) -> tuple[str, str]:
    """``(reason, message)`` of a failed Job's Failed (or FailureTarget) condition."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and cond.get("status") == "True":
            return str(cond.get("reason") or ""), str(cond.get("message") or "")
    return "", ""


def step_failure(job: Job, step: str, exit_code: int | None, lines: list[str]) -> StepFailedError:
    """The error of a failed step Job: exit 2 when its pod exited 2, else 1."""
    reason, message = failed_condition(job)
    name = (job.get("metadata") or {}).get("name", "?")
    code_text = f", exit code {exit_code}" if exit_code is not None else ""
    tail = " | ".join(lines)
    if len(tail) > 1500:
        tail = "..." + tail[-1500:]
    return StepFailedError(
        f"step {step} failed: Job {name} {reason or 'Failed'}{code_text}"
        f"{': ' + message if message else ''}; pod log: {tail}",
        exit_code=2 if exit_code == 2 else 1)
