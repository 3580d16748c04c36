"""Everything that talks to the Kubernetes API: the only module importing ``kubernetes``.

* :func:`job_name`, :func:`label_value` and :func:`build_job` are pure: they turn the
  config's ``kubernetes`` section (rendered by the Helm chart) into a step Job manifest.
* :func:`load_target` loads credentials (a kubeconfig, or the pod's service account) and
  resolves the namespace; :class:`KubeClient` creates, adopts and watches step Jobs and
  reads the failing pod's log.
* :func:`translate` is the one place where a ``kubernetes`` ``ApiException`` or a
  connection error becomes an :mod:`mlops.errors` error: 5xx, 429 and connection errors
  are retried a bounded number of times and then raise :class:`KubernetesError` (exit 1);
  401/403/404/400/422 raise :class:`KubernetesBadRequestError` (exit 2).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from mlops.config import (
    DASK_SCHEDULER_PORT,
    DASK_WORKER_PORT,
    ENV_MEMORY_LIMIT,
    DaskConfig,
    DaskPlacementConfig,
    DaskSpillConfig,
    KubernetesConfig,
    StepPodConfig,
)
from mlops.errors import (
    KubernetesBadRequestError,
    KubernetesError,
    MLOpsError,
    StepFailedError,
    StepTimeoutError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = dict[str, Any]

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
ENV_NAMESPACE = "MLOPS_NAMESPACE"
ENV_KUBECONFIG = "KUBECONFIG"
ENV_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
DEFAULT_KUBECONFIG = "~/.kube/config"

COMMAND = "mlops"
#: The image's init (tini, see the Dockerfile), in front of every command a pod runs: it
#: reaps the zombies of worker processes and passes SIGTERM on to mlops or dask, which
#: handle it (exit 143) instead of waiting, as PID 1 without a handler, for SIGKILL.
INIT = ("tini", "--")
STEP_CONTAINER = "step"
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

#: Attempts of one API call on 5xx, 429 or a connection error (then exit 1).
API_ATTEMPTS = 4
#: Seconds between those attempts: ``API_BACKOFF * 2**attempt``.
API_BACKOFF = 0.2
#: Client-side timeout of one ordinary API request, seconds.
REQUEST_TIMEOUT = 30.0
#: Longest single watch request; a watch that ends is re-established until the step timeout.
WATCH_SECONDS = 300
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
            f"config key 'kubernetes.image' is not a valid image reference: {image!r} "
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


def default_pod_template(k8s: KubernetesConfig) -> dict[str, Any]:
    """The step pod spec of a config not rendered by the chart (``kubernetes.pod_template``
    empty), built from its ``image``, ``service_account``, ``config_map``, ``env``,
    ``credentials_*`` and ``pvc_*`` keys. No fixed ids: the image's numeric USER keeps
    ``runAsNonRoot`` true (the chart sets its ids from its values).
    """
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": k8s.config_mount_path, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": k8s.config_map}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if k8s.credentials_secret:
        mounts.append({"name": "credentials", "mountPath": k8s.credentials_mount_path,
                       "readOnly": True})
        volumes.append({"name": "credentials", "secret": {"secretName": k8s.credentials_secret}})
    if k8s.pvc_claim:
        mounts.append({"name": "data", "mountPath": k8s.pvc_mount_path})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": k8s.pvc_claim}})
    container: dict[str, Any] = {
        "name": STEP_CONTAINER,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": [*INIT, COMMAND],
        "args": ["--config", f"{k8s.config_mount_path.rstrip('/')}/config.yaml"],
        "env": [{"name": k, "value": str(v)} for k, v in k8s.env.items()],
        "volumeMounts": mounts,
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if k8s.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": k8s.env_from_secret}}]
    return {
        "restartPolicy": "Never",
        "serviceAccountName": k8s.service_account,
        # Steps only touch the store: no API token, so they cannot use the controller's Role.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }


def _template_container(spec: Mapping[str, Any]) -> dict[str, Any]:
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) != 1 \
            or not isinstance(containers[0], dict):
        raise KubernetesBadRequestError(
            "config key 'kubernetes.pod_template.containers' must hold exactly one container")
    return containers[0]


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

    The pod is ``kubernetes.pod_template`` (the chart's, or :func:`default_pod_template`);
    this sets its container's name (the step) and args (``<step> <template args> --run-id
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
        KubernetesBadRequestError: The image is not a valid image reference, or the pod
            template does not hold exactly one container.
    """
    pod: StepPodConfig = getattr(k8s.steps, _STEP_KEYS[step])
    name = job_name(k8s.release, run_id, step)
    labels = job_labels(k8s, run_id, step)
    spec = copy.deepcopy(k8s.pod_template) if k8s.pod_template else default_pod_template(k8s)
    container = _template_container(spec)
    check_image(str(container.get("image") or ""))
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
    _pin_to_controller(spec, k8s, owner)
    metadata = _owned_metadata(name, namespace, labels, run_id, owner)
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


def _pin_to_controller(spec: dict[str, Any], k8s: KubernetesConfig, owner: Owner | None
                       ) -> None:
    """A required pod affinity to the controller's pod (a ReadWriteOnce claim attaches to
    one node), when ``same_node_as_controller`` is set and the controller runs in a Job."""
    if k8s.same_node_as_controller and owner is not None:
        spec.setdefault("affinity", {})["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"batch.kubernetes.io/job-name": owner.name}},
            }]}


def _owned_metadata(name: str, namespace: str, labels: Mapping[str, str], run_id: str,
                    owner: Owner | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels),
                                "annotations": {LABEL_RUN_ID: run_id}}
    if owner is not None:
        metadata["ownerReferences"] = [owner.reference()]
    return metadata


# --- the Dask cluster of a run (dask.cluster: ephemeral or operator) ------------------------
#: The scheduler's port (Dask's default) and the name of that container port; a worker's
#: fixed port (a NetworkPolicy names them, see mlops.config).
DASK_PORT = DASK_SCHEDULER_PORT
DASK_PORT_NAME = "tcp-comm"
WORKER_PORT_NAME = "tcp-worker"
#: Where a worker spills (its --local-directory): the spill volume (kubernetes.dask.worker_spill).
DASK_SPILL_DIR = "/dask-spill"
DASK_SPILL_VOLUME = "dask-spill"
DASK_SCHEDULER = "dask-scheduler"
DASK_WORKER = "dask-worker"
#: The pod's IP and name (downward API): the scheduler and the workers listen on the IP,
#: a worker is named after its pod.
ENV_POD_IP = "MLOPS_POD_IP"
ENV_POD_NAME = "MLOPS_POD_NAME"
#: ``(group, version, plural)`` of the dask-kubernetes operator's DaskCluster.
DASK_CLUSTER_API = ("kubernetes.dask.org", "v1", "daskclusters")
#: The scheduler's ``distributed.scheduler.no-workers-timeout`` (dask's env config form).
ENV_NO_WORKERS_TIMEOUT = "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT"


@dataclass(frozen=True)
class DaskCluster:
    """The manifests of a run's ephemeral Dask cluster (see :func:`build_dask_cluster`)."""

    scheduler: Job  # an apps/v1 ReplicaSet of one scheduler pod
    service: Job  # a v1 Service (headless) in front of the scheduler
    workers: Job  # an apps/v1 ReplicaSet of dask.n_workers worker pods
    address: str  # tcp://<service>.<namespace>.svc:8786

    @property
    def workloads(self) -> list[Job]:
        """The scheduler's and the workers' ReplicaSets."""
        return [self.scheduler, self.workers]

    @property
    def objects(self) -> list[Job]:
        """Every object, in the order they are created."""
        return [self.scheduler, self.service, self.workers]


def dask_labels(k8s: KubernetesConfig, run_id: str, component: str) -> dict[str, str]:
    """The labels of a run's scheduler or worker pods and Service (``component`` is
    ``dask-scheduler`` or ``dask-worker``)."""
    labels = job_labels(k8s, run_id, component)
    labels["app.kubernetes.io/component"] = component
    return labels


def dask_selector(k8s: KubernetesConfig, run_id: str, component: str | None = None) -> str:
    """A label selector of the run's Dask pods (of one component, else both)."""
    instance = dask_labels(k8s, run_id, DASK_SCHEDULER)["app.kubernetes.io/instance"]
    which = (f"app.kubernetes.io/component={component}" if component else
             f"app.kubernetes.io/component in ({DASK_SCHEDULER},{DASK_WORKER})")
    return (f"app.kubernetes.io/managed-by=mlops-controller,{LABEL_RUN_ID}="
            f"{label_value(run_id)},app.kubernetes.io/instance={instance},{which}")


def _service_name(release: str, run_id: str) -> str:
    # A Service name is a DNS-1035 label: it must start with a letter.
    name = job_name(release, run_id, DASK_SCHEDULER)
    return name if name[0].isalpha() else job_name(f"d{release}", run_id, DASK_SCHEDULER)


def _dask_pod_spec(k8s: KubernetesConfig, run_id: str, component: str, args: list[str],
                   resources: Mapping[str, Any], extra_env: Mapping[str, str],
                   owner: Owner | None) -> dict[str, Any]:
    """The step pod (``kubernetes.pod_template``) running ``dask <component>``."""
    spec = copy.deepcopy(k8s.pod_template) if k8s.pod_template else default_pod_template(k8s)
    container = _template_container(spec)
    check_image(str(container.get("image") or ""))
    ours = {ENV_POD_IP, ENV_POD_NAME, ENV_MEMORY_LIMIT, ENV_NO_WORKERS_TIMEOUT}
    env = [e for e in container.get("env") or [] if isinstance(e, dict)
           and e.get("name") not in ours]
    declared = {e.get("name") for e in env}
    env += [{"name": k, "value": v} for k, v in extra_env.items() if k not in declared]
    env.append({"name": ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    env.append({"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}})
    name = component.removeprefix("dask-")
    if component == DASK_WORKER:
        # The container's memory limit in bytes: dask.memory_limit auto is derived from it
        # (never distributed's auto, which divides by the node's CPU count).
        env.append({"name": ENV_MEMORY_LIMIT, "valueFrom": {"resourceFieldRef": {
            "containerName": name, "resource": "limits.memory"}}})
    else:
        # A task that waits this long with no worker fails (the step exits 1) instead of
        # waiting for the step's deadline when every worker is lost.
        env.append({"name": ENV_NO_WORKERS_TIMEOUT,
                    "value": f"{k8s.dask.no_workers_timeout_seconds}s"})
    container.update(name=name, command=[*INIT, "dask"], args=args, env=env,
                     resources=copy.deepcopy(dict(resources)))
    if component == DASK_SCHEDULER:
        container["ports"] = [{"name": DASK_PORT_NAME, "containerPort": DASK_PORT,
                               "protocol": "TCP"}]
        # Ready (and so in the headless Service's DNS) once it accepts connections.
        container["readinessProbe"] = {"tcpSocket": {"port": DASK_PORT_NAME},
                                       "periodSeconds": 2, "failureThreshold": 3}
    # Run by a ReplicaSet: a container that dies is restarted in place, a pod that is
    # evicted, preempted or lost is replaced; drain and the autoscaler may move it.
    spec["restartPolicy"] = "Always"
    spec.pop("activeDeadlineSeconds", None)
    labels = dask_labels(k8s, run_id, component)
    if component == DASK_WORKER:
        container["ports"] = [{"name": WORKER_PORT_NAME, "containerPort": DASK_WORKER_PORT,
                               "protocol": "TCP"}]
        _add_spill_volume(spec, container, k8s.dask.worker_spill, labels)
    place_dask_pod(spec, k8s.dask.scheduler if component == DASK_SCHEDULER else k8s.dask.worker,
                   {k: labels[k] for k in ("app.kubernetes.io/instance",
                                           "app.kubernetes.io/component", LABEL_RUN_ID)})
    _pin_to_controller(spec, k8s, owner)
    return spec


def _replica_set(name: str, replicas: int, labels: Mapping[str, str], spec: dict[str, Any],
                 namespace: str, run_id: str, owner: Owner | None) -> Job:
    selector = {k: labels[k] for k in ("app.kubernetes.io/instance",
                                       "app.kubernetes.io/component", LABEL_RUN_ID)}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": _owned_metadata(name, namespace, labels, run_id, owner),
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


def worker_memory_arg(dask: DaskConfig) -> str:
    """``--memory-limit`` of a worker pod (one worker process per pod): the configured size,
    or for ``auto`` the container's ``limits.memory`` in bytes (``$(MLOPS_MEMORY_LIMIT)``,
    from the downward API; the node's allocatable memory when no limit is set). Dask's own
    ``auto`` is never passed: it is memory x threads / the node's CPU count."""
    text = dask.memory_limit.strip()
    return f"$({ENV_MEMORY_LIMIT})" if text.lower() == "auto" else text


def scheduler_args(k8s: KubernetesConfig) -> list[str]:
    """``dask scheduler`` arguments: on the pod's IP, no dashboard, and closing after
    ``kubernetes.dask.idle_timeout_seconds`` without work (a backstop for a cluster whose
    controller is gone)."""
    return ["scheduler", "--host", f"$({ENV_POD_IP})", "--port", str(DASK_PORT),
            "--no-dashboard", "--idle-timeout", f"{k8s.dask.idle_timeout_seconds}s"]


def worker_args(k8s: KubernetesConfig, dask: DaskConfig, address: str | None) -> list[str]:
    """``dask worker`` arguments (``address`` None: from ``$DASK_SCHEDULER_ADDRESS``, which
    the Dask operator sets)."""
    return ["worker", *([address] if address else []), "--host", f"$({ENV_POD_IP})",
            "--nworkers", "1",
            # The pod is the nanny: the kubelet restarts a worker that died and the
            # container's memory limit is enforced by the kernel.
            "--no-nanny",
            "--nthreads", str(dask.threads_per_worker), "--memory-limit",
            worker_memory_arg(dask), "--local-directory", DASK_SPILL_DIR,
            "--worker-port", str(DASK_WORKER_PORT), "--no-dashboard",
            # A worker whose scheduler is gone that long exits (no orphaned workers).
            "--death-timeout", str(k8s.dask.death_timeout_seconds),
            "--name", f"$({ENV_POD_NAME})"]


def place_dask_pod(spec: dict[str, Any], placement: DaskPlacementConfig,
                   own_labels: Mapping[str, str]) -> None:
    """Put ``kubernetes.dask.scheduler`` / ``.worker`` placement into a Dask pod spec:
    nodeSelector and tolerations (added to the template's), affinity,
    topologySpreadConstraints (one without labelSelector gets ``own_labels``: it spreads
    the run's own pods of this kind) and priorityClassName (else the template's, the
    run's). Works on the pod spec alone, so it holds wherever the pod is wrapped."""
    if placement.node_selector:
        spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **placement.node_selector}
    if placement.tolerations:
        spec["tolerations"] = [*(spec.get("tolerations") or []),
                               *copy.deepcopy(placement.tolerations)]
    if placement.affinity:
        spec["affinity"] = copy.deepcopy(placement.affinity)
    if placement.topology_spread_constraints:
        spec["topologySpreadConstraints"] = [
            {**c, "labelSelector": c.get("labelSelector") or {"matchLabels": dict(own_labels)}}
            for c in copy.deepcopy(placement.topology_spread_constraints)]
    if placement.priority_class_name:
        spec["priorityClassName"] = placement.priority_class_name


def _add_spill_volume(spec: dict[str, Any], container: dict[str, Any],
                      spill: DaskSpillConfig, labels: Mapping[str, str]) -> None:
    """The worker's spill volume at :data:`DASK_SPILL_DIR`: an emptyDir limited to the
    size, with an ephemeral-storage request of it (so the pod lands on a node with that
    much disk and is not evicted for using it), or a generic ephemeral volume (a claim of
    the size, created and deleted with the pod)."""
    if spill.volume == "ephemeral":
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": spill.size}}}
        if spill.storage_class:
            claim["storageClassName"] = spill.storage_class
        volume: dict[str, Any] = {"name": DASK_SPILL_VOLUME, "ephemeral": {
            "volumeClaimTemplate": {"metadata": {"labels": dict(labels)}, "spec": claim}}}
    else:
        volume = {"name": DASK_SPILL_VOLUME, "emptyDir": {"sizeLimit": spill.size}}
        requests = container.setdefault("resources", {}).setdefault("requests", {})
        requests.setdefault("ephemeral-storage", spill.size)
    spec["volumes"] = [*(spec.get("volumes") or []), volume]
    container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                 {"name": DASK_SPILL_VOLUME, "mountPath": DASK_SPILL_DIR}]


def build_dask_cluster(k8s: KubernetesConfig, dask: DaskConfig, run_id: str, *,
                       namespace: str, owner: Owner | None = None,
                       extra_env: Mapping[str, str] | None = None) -> DaskCluster:
    """The scheduler ReplicaSet, its headless Service and the worker ReplicaSet of
    ``dask.n_workers`` pods of a ``dask.cluster: ephemeral`` run (pure).

    The pods are the step pod (``kubernetes.pod_template``: same image, identity, security
    context, volumes, env) running ``dask scheduler`` / ``dask worker`` instead of
    ``mlops``, with ``kubernetes.dask`` resources and placement (:func:`place_dask_pod`),
    the workers' fixed port and spill volume (:data:`DASK_SPILL_DIR`, sized by
    ``kubernetes.dask.worker_spill``) and ``restartPolicy: Always``, under a ReplicaSet
    that replaces a pod that is evicted, preempted or lost (and lets ``kubectl drain`` and
    the Cluster Autoscaler move it). Every object is owned by the controller's Job and
    labelled with the run id. The Service is headless (``clusterIP: None``): its DNS name
    answers with the scheduler pod's IP once the pod is Ready (its TCP readiness probe), so
    no proxy sits between the steps and the scheduler.

    Raises:
        KubernetesBadRequestError: See :func:`build_job`.
    """
    env = dict(extra_env or {})
    service = _service_name(k8s.release, run_id)
    address = f"tcp://{service}.{namespace}.svc:{DASK_PORT}"
    labels = dask_labels(k8s, run_id, DASK_SCHEDULER)
    scheduler = _replica_set(
        job_name(k8s.release, run_id, DASK_SCHEDULER), 1, labels,
        _dask_pod_spec(k8s, run_id, DASK_SCHEDULER, scheduler_args(k8s),
                       k8s.dask.scheduler_resources, env, owner),
        namespace, run_id, owner)
    workers = _replica_set(
        job_name(k8s.release, run_id, DASK_WORKER), dask.n_workers,
        dask_labels(k8s, run_id, DASK_WORKER),
        _dask_pod_spec(k8s, run_id, DASK_WORKER, worker_args(k8s, dask, address),
                       k8s.dask.worker_resources, env, owner),
        namespace, run_id, owner)
    svc: Job = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _owned_metadata(service, namespace, labels, run_id, owner),
        "spec": {"clusterIP": "None", "type": "ClusterIP",
                 "selector": {k: labels[k] for k in ("app.kubernetes.io/instance",
                                                     "app.kubernetes.io/component",
                                                     LABEL_RUN_ID)},
                 "ports": [{"name": DASK_PORT_NAME, "port": DASK_PORT,
                            "targetPort": DASK_PORT_NAME, "protocol": "TCP"}]},
    }
    return DaskCluster(scheduler=scheduler, service=svc, workers=workers, address=address)


def operator_cluster_name(release: str, run_id: str) -> str:
    """The DaskCluster's name: its scheduler Service is ``<name>-scheduler``, a DNS-1035
    label of at most 63 characters."""
    name = job_name(release, run_id, "dask")[:MAX_NAME - len("-scheduler")].rstrip("-")
    return name if name[0].isalpha() else operator_cluster_name(f"d{release}", run_id)


def build_operator_cluster(k8s: KubernetesConfig, dask: DaskConfig, run_id: str, *,
                           namespace: str, owner: Owner | None = None,
                           extra_env: Mapping[str, str] | None = None) -> Job:
    """The ``kubernetes.dask.org/v1`` DaskCluster of a ``dask.cluster: operator`` run (pure).

    The dask-kubernetes operator turns it into a scheduler, its Service
    (``<name>-scheduler``) and ``dask.n_workers`` workers. The pods are the same as the
    ephemeral mode's (the chart's step pod running ``dask scheduler`` / ``dask worker``);
    the workers find the scheduler in ``$DASK_SCHEDULER_ADDRESS``, which the operator sets.
    The Service is headless, like the ephemeral one. ``spec.idleTimeout`` is
    ``kubernetes.dask.idle_timeout_seconds``: the operator deletes a cluster idle that long
    (a backstop for a controller that is gone). Owned by the controller's Job.
    """
    env = dict(extra_env or {})
    name = operator_cluster_name(k8s.release, run_id)
    labels = dask_labels(k8s, run_id, "dask-cluster")
    return {
        "apiVersion": "/".join(DASK_CLUSTER_API[:2]), "kind": "DaskCluster",
        "metadata": _owned_metadata(name, namespace, labels, run_id, owner),
        "spec": {
            "idleTimeout": k8s.dask.idle_timeout_seconds,
            "scheduler": {
                "spec": _dask_pod_spec(k8s, run_id, DASK_SCHEDULER, scheduler_args(k8s),
                                       k8s.dask.scheduler_resources, env, owner),
                "service": {"type": "ClusterIP", "clusterIP": "None",
                            "selector": {"dask.org/cluster-name": name,
                                         "dask.org/component": "scheduler"},
                            "ports": [{"name": DASK_PORT_NAME, "port": DASK_PORT,
                                       "targetPort": DASK_PORT_NAME, "protocol": "TCP"}]},
            },
            "worker": {
                "replicas": dask.n_workers,
                "spec": _dask_pod_spec(k8s, run_id, DASK_WORKER, worker_args(k8s, dask, None),
                                       k8s.dask.worker_resources, env, owner),
            },
        },
    }


def operator_address(name: str, namespace: str) -> str:
    """The scheduler address of a DaskCluster (its ``<name>-scheduler`` Service)."""
    return f"tcp://{name}-scheduler.{namespace}.svc:{DASK_PORT}"


def operator_selector(name: str, component: str) -> str:
    """A label selector of a DaskCluster's scheduler or worker pods (the operator's labels;
    ``component`` is ``scheduler`` or ``worker``)."""
    return f"dask.org/cluster-name={name},dask.org/component={component}"


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


# --- errors ------------------------------------------------------------------------------
class JobExistsError(KubernetesError):
    """Creating a Job answered 409 AlreadyExists (the caller adopts the Job)."""


class NotFoundError(KubernetesBadRequestError):
    """The object does not exist (404 in an existing namespace; exit 2 where it matters)."""


_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _status_message(err: ApiException) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(err.body) if err.body else {}
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or err.reason or "").replace("\n", " ").strip()
    return message, body.get("details") or {}


def translate(err: BaseException, what: str, namespace: str) -> MLOpsError:
    """Map a ``kubernetes`` or connection error to an :mod:`mlops.errors` error.

    Args:
        err: The exception raised by the ``kubernetes`` client.
        what: What was being done, e.g. ``create Job mlops-x-ingest``.
        namespace: The namespace of the request.

    Returns:
        The error to raise: exit 2 for 400/401/403/404/422, :class:`JobExistsError` for
        409 (the caller adopts the Job), else exit 1.
    """
    if not isinstance(err, ApiException):
        return KubernetesError(f"Kubernetes API unreachable ({what}): "
                               f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
    status = err.status or 0
    message, details = _status_message(err)
    if status == 409:
        return JobExistsError(f"{what}: {message}")
    if status == 404 and details.get("kind") == "namespaces":
        return KubernetesBadRequestError(f"namespace '{namespace}' does not exist ({what}: "
                                         f"{message})")
    if status == 403:
        return KubernetesBadRequestError(f"forbidden by RBAC in namespace '{namespace}' "
                                         f"({what}): {message}")
    if status == 401:
        return KubernetesBadRequestError(f"the Kubernetes API rejected the credentials "
                                         f"({what}): {message}")
    if status == 404:
        return NotFoundError(f"the Kubernetes API refused to {what} "
                             f"(HTTP {status}): {message}")
    if status in (400, 422):
        return KubernetesBadRequestError(f"the Kubernetes API refused to {what} "
                                         f"(HTTP {status}): {message}")
    return KubernetesError(f"Kubernetes API error ({what}): HTTP {status} {message}")


def _retryable(err: BaseException) -> bool:
    if isinstance(err, ApiException):
        return (err.status or 0) in _RETRYABLE_STATUS or (err.status or 0) == 0
    return isinstance(err, _CONNECTION_ERRORS)


# --- connection --------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where and as whom the controller talks to the API (see :func:`load_target`)."""

    configuration: Any  # kubernetes.client.Configuration
    namespace: str
    source: str  # "in-cluster" or the kubeconfig path(s)


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load_target(*, kubeconfig: str | None = None, context: str | None = None,
                namespace: str | None = None, config_namespace: str = "",
                env: Mapping[str, str] | None = None) -> Target:
    """Load credentials and resolve the namespace.

    Credentials: ``kubeconfig`` (``--kubeconfig``), else ``$KUBECONFIG``, else the pod's
    service account when ``$KUBERNETES_SERVICE_HOST`` is set (in cluster), else
    ``~/.kube/config``.

    Namespace, first non-empty wins: ``namespace`` (``--namespace``), ``config_namespace``
    (``kubernetes.namespace``), ``$MLOPS_NAMESPACE`` (the chart sets it from the downward
    API), the service account's namespace (in cluster) or the kubeconfig context's
    namespace, ``default``.

    Raises:
        KubernetesBadRequestError: The kubeconfig is missing, unreadable or invalid, or the
            context does not exist (exit 2).
    """
    env = os.environ if env is None else env
    conf = client.Configuration()
    path = kubeconfig or env.get(ENV_KUBECONFIG) or ""
    context_ns: str | None = None
    if not path and env.get(ENV_SERVICE_HOST):
        try:
            config.load_incluster_config(client_configuration=conf)
        except ConfigException as err:
            raise KubernetesBadRequestError(f"in-cluster Kubernetes configuration cannot be "
                                            f"loaded: {err}") from err
        source = "in-cluster"
        context_ns = _read_text(SERVICE_ACCOUNT_NAMESPACE)
    else:
        path = path or os.path.expanduser(DEFAULT_KUBECONFIG)
        for one in filter(None, path.split(os.pathsep)):
            if not os.path.isfile(one):
                raise KubernetesBadRequestError(
                    f"kubeconfig file not found: {one} (give --kubeconfig or set KUBECONFIG; "
                    "in a cluster KUBERNETES_SERVICE_HOST selects the service account)")
            if not os.access(one, os.R_OK):
                raise KubernetesBadRequestError(f"kubeconfig file cannot be read: {one}")
        try:
            config.load_kube_config(config_file=path, context=context,
                                    client_configuration=conf)
            contexts, active = config.list_kube_config_contexts(config_file=path)
        except (ConfigException, ValueError, TypeError, KeyError, OSError) as err:
            raise KubernetesBadRequestError(f"kubeconfig {path} is invalid: "
                                            f"{str(err).splitlines()[0] if str(err) else err!r}"
                                            ) from err
        except Exception as err:  # yaml errors and other parse failures of a bad file
            raise KubernetesBadRequestError(f"kubeconfig {path} cannot be parsed: "
                                            f"{type(err).__name__}") from err
        chosen = next((c for c in contexts if c.get("name") == context), None) \
            if context else active
        context_ns = ((chosen or {}).get("context") or {}).get("namespace")
        source = path
    ns = namespace or config_namespace or env.get(ENV_NAMESPACE) or context_ns or "default"
    return Target(configuration=conf, namespace=ns, source=source)


# --- the client --------------------------------------------------------------------------
#: KServe's API group and version.
_ISVC = ("serving.kserve.io", "v1beta1")


class KubeClient:
    """Step Jobs in one namespace: create or adopt, watch, read the failing pod's log.

    Args:
        target: From :func:`load_target`.
        attempts: Attempts of one call on a retryable error.
        backoff: Seconds before the second attempt (doubling).
        watch_seconds: Longest single watch request (default :data:`WATCH_SECONDS`).
    """

    def __init__(self, target: Target, attempts: int = API_ATTEMPTS,
                 backoff: float = API_BACKOFF, watch_seconds: int | None = None) -> None:
        self.namespace = target.namespace
        self.source = target.source
        self.api = client.ApiClient(target.configuration)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.watch_seconds = max(1, WATCH_SECONDS if watch_seconds is None else watch_seconds)

    def close(self) -> None:
        """Close the connection pool."""
        self.api.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return fn()
            except (ApiException, *_CONNECTION_ERRORS) as err:
                if _retryable(err) and attempt + 1 < self.attempts:
                    log.warning("%s failed (%s); retrying", what, _short(err))
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
                raise translate(err, what, self.namespace) from err
        raise AssertionError("unreachable")  # the loop returns or raises

    def _plain(self, obj: Any) -> Job:
        data = self.api.sanitize_for_serialization(obj)
        return data if isinstance(data, dict) else {}

    def create_job(self, body: Job) -> Job:
        """Create a Job.

        Returns:
            The created Job (with its resourceVersion).

        Raises:
            JobExistsError: A Job of that name exists already (409).
            KubernetesBadRequestError: 403, 404 namespace, 422 invalid (exit 2).
            KubernetesError: 5xx or connection errors after the retries (exit 1).
        """
        name = body["metadata"]["name"]
        return self._plain(self._call(
            f"create Job {name}", lambda: self.batch.create_namespaced_job(
                self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT)))

    def create_event(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an ``events.k8s.io/v1`` Event (see :func:`build_event`).

        Raises:
            KubernetesBadRequestError: 403 (the Role lacks the events rule), 422 (exit 2).
            KubernetesError: 5xx or connection errors after the retries (exit 1).
        """
        events = client.EventsV1Api(self.api)
        return self._plain(self._call(
            f"create Event {body.get('reason')}", lambda: events.create_namespaced_event(
                self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT)))

    def get_inference_service(self, name: str) -> dict[str, Any]:
        """KServe's InferenceService ``name`` (``serving.kserve.io/v1beta1``).

        Raises:
            KubernetesBadRequestError: 403 (no Role rule), 404 (exit 2).
            KubernetesError: 5xx or connection errors after the retries (exit 1).
        """
        api = client.CustomObjectsApi(self.api)
        return cast(dict[str, Any], self._call(
            f"get InferenceService {name}", lambda: api.get_namespaced_custom_object(
                *_ISVC, self.namespace, "inferenceservices", name,
                _request_timeout=REQUEST_TIMEOUT)))

    def patch_inference_service(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch to the InferenceService ``name``.

        Raises:
            See :meth:`get_inference_service` (422: the patch is invalid).
        """
        api = client.CustomObjectsApi(self.api)
        return cast(dict[str, Any], self._call(
            f"patch InferenceService {name}", lambda: api.patch_namespaced_custom_object(
                *_ISVC, self.namespace, "inferenceservices", name, patch,
                _request_timeout=REQUEST_TIMEOUT)))

    def get_job(self, name: str) -> Job:
        """Read a Job (see :meth:`create_job` for the errors)."""
        return self._plain(self._call(f"get Job {name}", lambda: self.batch.read_namespaced_job(
            name, self.namespace, _request_timeout=REQUEST_TIMEOUT)))

    def wait_for_job(self, name: str, resource_version: str | None, timeout: float) -> Job:
        """Watch a Job until it is Complete or Failed.

        Uses the watch API from ``resource_version`` (from the create or get). A watch that
        ends (server timeout, dropped connection, 410 Gone) is re-established after one GET
        of the Job, until ``timeout`` seconds have passed.

        Returns:
            The finished Job.

        Raises:
            StepTimeoutError: Not finished within ``timeout`` seconds (exit 1).
            KubernetesError: The Job was deleted while being watched, or the API kept
                failing (exit 1).
        """
        deadline = time.monotonic() + timeout
        rv = resource_version
        failures = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepTimeoutError(
                    f"step Job {name} in namespace '{self.namespace}' did not finish within "
                    f"{timeout:g} s (kubernetes.step_timeout_seconds); it keeps running: "
                    "start the controller again with the same run id to resume")
            seconds = max(1, min(int(remaining + 0.999), self.watch_seconds))
            w = watch.Watch()
            try:
                for event in w.stream(self.batch.list_namespaced_job, self.namespace,
                                      field_selector=f"metadata.name={name}",
                                      resource_version=rv, timeout_seconds=seconds,
                                      allow_watch_bookmarks=True,
                                      _request_timeout=(REQUEST_TIMEOUT, seconds + 10)):
                    obj = event.get("raw_object") or {}
                    meta = obj.get("metadata") or {}
                    rv = meta.get("resourceVersion") or rv
                    if event.get("type") == "DELETED" and meta.get("name") == name:
                        raise KubernetesError(f"step Job {name} was deleted before it "
                                              "finished")
                    if event.get("type") in ("ADDED", "MODIFIED") and job_state(obj):
                        return obj
                failures = 0
            except ApiException as err:
                if err.status != 410 and not _retryable(err):
                    raise translate(err, f"watch Job {name}", self.namespace) from err
                failures += err.status != 410
            except _CONNECTION_ERRORS as err:
                failures += 1
                if failures >= self.attempts:
                    raise translate(err, f"watch Job {name}", self.namespace) from err
            finally:
                w.stop()
            if failures:
                if failures >= self.attempts:
                    raise KubernetesError(f"watching Job {name} failed {failures} times in a "
                                          "row")
                time.sleep(min(self.backoff * 2 ** failures, max(0.0, remaining)))
            # The watch ended: re-read the Job (nothing missed) and watch from there.
            job = self.get_job(name)
            if job_state(job):
                return job
            rv = (job.get("metadata") or {}).get("resourceVersion")

    def _kind_calls(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any],
                                                Callable[..., Any]]:
        """``(create, read, delete)`` of a namespaced kind, called as the client's are:
        ``create(namespace, body)``, ``read(name, namespace)``, ``delete(name, namespace)``."""
        if kind == "DaskCluster":
            custom = client.CustomObjectsApi(self.api)
            group, version, plural = DASK_CLUSTER_API

            def create(ns: str, body: Any, **kw: Any) -> Any:
                return custom.create_namespaced_custom_object(group, version, ns, plural, body,
                                                              **kw)

            def read(name: str, ns: str, **kw: Any) -> Any:
                return custom.get_namespaced_custom_object(group, version, ns, plural, name,
                                                           **kw)

            def delete(name: str, ns: str, **kw: Any) -> Any:
                return custom.delete_namespaced_custom_object(group, version, ns, plural, name,
                                                              **kw)

            return create, read, delete
        if kind == "ReplicaSet":
            apps = client.AppsV1Api(self.api)
            return (apps.create_namespaced_replica_set, apps.read_namespaced_replica_set,
                    apps.delete_namespaced_replica_set)
        if kind == "Service":
            return (self.core.create_namespaced_service, self.core.read_namespaced_service,
                    self.core.delete_namespaced_service)
        return (self.core.create_namespaced_pod, self.core.read_namespaced_pod,
                self.core.delete_namespaced_pod)

    def create_object(self, body: Job) -> Job:
        """Create a Pod, Service, ReplicaSet or DaskCluster (a run's Dask cluster).

        Raises:
            JobExistsError: An object of that name exists already (409).
            KubernetesBadRequestError: 403, 404 namespace, 422 invalid (exit 2).
            KubernetesError: 5xx or connection errors after the retries (exit 1).
        """
        kind, name = body["kind"], body["metadata"]["name"]
        create = self._kind_calls(kind)[0]
        return self._plain(self._call(f"create {kind} {name}", lambda: create(
            self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT)))

    def get_object(self, kind: str, name: str) -> Job | None:
        """Read a Pod, Service, ReplicaSet or DaskCluster; None when it does not exist."""
        read = self._kind_calls(kind)[1]
        try:
            return self._plain(self._call(f"get {kind} {name}", lambda: read(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT)))
        except NotFoundError:
            return None

    def get_pod(self, name: str) -> Job | None:
        """Read a pod; None when it does not exist."""
        try:
            return self._plain(self._call(f"get Pod {name}", lambda: self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT)))
        except NotFoundError:
            return None

    def list_pods(self, label_selector: str) -> list[Job]:
        """The pods matching a label selector."""
        listed = self._plain(self._call(
            f"list pods {label_selector}", lambda: self.core.list_namespaced_pod(
                self.namespace, label_selector=label_selector,
                _request_timeout=REQUEST_TIMEOUT)))
        return [p for p in listed.get("items") or [] if isinstance(p, dict)]

    def delete_object(self, kind: str, name: str) -> bool:
        """Delete a Pod, Service, ReplicaSet or DaskCluster (a pod with its grace period, the
        others with their pods); False when it was gone.

        Raises:
            KubernetesBadRequestError: 403 (exit 2).
            KubernetesError: 5xx or connection errors after the retries (exit 1).
        """
        delete = self._kind_calls(kind)[2]
        # Background: the garbage collector removes a ReplicaSet's or DaskCluster's pods.
        extra = {} if kind in ("Pod", "Service") else {"propagation_policy": "Background"}
        try:
            self._call(f"delete {kind} {name}", lambda: delete(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT, **extra))
        except NotFoundError:
            return False
        return True

    def pod_log(self, name: str, container: str, tail_lines: int = 10) -> list[str]:
        """The last log lines of a pod's container (best effort: a line saying why not)."""
        try:
            text = self._call(f"read log of pod {name}",
                              lambda: self.core.read_namespaced_pod_log(
                                  name, self.namespace, container=container,
                                  tail_lines=tail_lines, _request_timeout=REQUEST_TIMEOUT))
        except MLOpsError as err:
            return [f"(log of pod {name} cannot be read: {err})"]
        return [ln for ln in str(text or "").splitlines() if ln.strip()][-tail_lines:]

    def failure_report(self, name: str, container: str, tail_lines: int = 10
                       ) -> tuple[int | None, list[str]]:
        """The failing pod's exit code and last log lines (best effort).

        Returns:
            ``(exit code or None, log lines)``; a log that cannot be read gives one line
            saying why.
        """
        try:
            listed = self._plain(self._call(
                f"list pods of Job {name}", lambda: self.core.list_namespaced_pod(
                    self.namespace, label_selector=f"job-name={name}",
                    _request_timeout=REQUEST_TIMEOUT)))
        except MLOpsError as err:
            return None, [f"(pods cannot be listed: {err})"]
        pods = [p for p in listed.get("items") or [] if isinstance(p, dict)]
        if not pods:
            return None, ["(no pod found)"]
        pods.sort(key=lambda p: (str(p["metadata"].get("creationTimestamp") or ""),
                                 str(p["metadata"].get("name"))))
        failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"] or pods
        pod = failed[-1]
        pod_name = str(pod["metadata"]["name"])
        code = None
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == container and term:
                code = term.get("exitCode")
        return code, self.pod_log(pod_name, container, tail_lines) or [
            f"(pod {pod_name} logged nothing)"]


def _short(err: BaseException) -> str:
    if isinstance(err, ApiException):
        return f"HTTP {err.status}"
    return type(err).__name__


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
