"""A run's own Dask cluster on Kubernetes (``dask.cluster: ephemeral`` or ``operator``).

* The manifests (pure): :func:`build_dask_cluster` (the scheduler and worker ReplicaSets
  and a headless Service, made of the step pod) and :func:`build_operator_cluster` (one
  DaskCluster of the dask-kubernetes operator).
* Their life, driven by the controller: :class:`EphemeralCluster` and
  :class:`OperatorCluster` create (or adopt) them, wait for the scheduler and the workers
  and delete them; :func:`run_cluster` picks one from ``dask.cluster``.

The Dask *client* side (connecting a step to the scheduler) is :mod:`mlops.engines.dask`'s.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops.config import (
    DASK_SCHEDULER_PORT,
    DASK_WORKER_PORT,
    ENV_MEMORY_LIMIT,
    Config,
    DaskConfig,
    DaskPlacementConfig,
    DaskSpillConfig,
    KubernetesConfig,
)
from mlops.errors import ClusterError, JobExistsError, MLOpsError
from mlops.kube.manifests import (
    DASK_CLUSTER_API,
    ENV_POD_NAME,
    INIT,
    LABEL_RUN_ID,
    MAX_NAME,
    Job,
    Owner,
    job_labels,
    job_name,
    label_value,
    owned_metadata,
    pin_to_controller,
    pod_problem,
    pod_ready,
    step_pod,
)

log = logging.getLogger(__name__)


class ClusterBackend(Protocol):
    """What the run's Dask cluster needs from Kubernetes (implemented by
    mlops.kube.client.KubeClient)."""

    namespace: str

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, name: str) -> dict[str, Any] | None: ...

    def list_pods(self, label_selector: str) -> list[dict[str, Any]]: ...

    def delete_object(self, kind: str, name: str) -> bool: ...

    def pod_log(self, name: str, container: str, tail_lines: int = 10) -> list[str]: ...


# --- manifests (pure) -----------------------------------------------------------------
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
#: The pod's IP (downward API): the scheduler and the workers listen on it (a worker is
#: named after its pod, manifests.ENV_POD_NAME).
ENV_POD_IP = "MLOPS_POD_IP"
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
    spec, container = step_pod(k8s)
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
    pin_to_controller(spec, k8s, owner)
    return spec


def _replica_set(name: str, replicas: int, labels: Mapping[str, str], spec: dict[str, Any],
                 namespace: str, run_id: str, owner: Owner | None) -> Job:
    selector = {k: labels[k] for k in ("app.kubernetes.io/instance",
                                       "app.kubernetes.io/component", LABEL_RUN_ID)}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": owned_metadata(name, namespace, labels, run_id, owner),
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
        KubernetesBadRequestError: See :func:`mlops.kube.manifests.build_job`.
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
        "metadata": owned_metadata(service, namespace, labels, run_id, owner),
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
        "metadata": owned_metadata(name, namespace, labels, run_id, owner),
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


# --- the cluster's life: create or adopt, wait, delete -------------------------------
#: Seconds between two reads of a pod the controller waits for (doubling up to the max).
POLL_SECONDS, POLL_MAX_SECONDS = 0.2, 2.0
#: Restarts of the scheduler's container before the controller stops waiting for it (a
#: scheduler that keeps exiting will not become Ready: a bad image, command or setting).
CRASH_RESTARTS = 2
#: How long the controller waits for the cluster's pods to be gone after deleting them.
DELETE_WAIT_SECONDS = 60.0

#: Events at most while waiting for the workers (one per new reason they are pending for).
PENDING_EVENTS = 3

EventSink = Callable[[str, str, str, str], None]


def _no_events(type_: str, reason: str, action: str, note: str) -> None:
    return None


class RunCluster:
    """The Dask cluster of one run, started by the controller (``dask.cluster:
    ephemeral`` or ``operator``): create or adopt, wait for the scheduler and the workers,
    remove. Subclasses say what the objects are and how their pods are selected.

    Names are deterministic per run id, so a resumed or concurrent controller of the same
    run (a retried controller pod after a disruption) adopts the running cluster instead of
    starting a second one.
    """

    kind = ""

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None,
                 events: EventSink | None = None) -> None:
        self.config = config
        self.backend = backend
        self.run_id = run_id
        self.owner = owner
        self.events = events or _no_events
        self.address = ""

    # What a subclass provides.
    def objects(self) -> list[dict[str, Any]]:
        """Every object of the cluster, in creation order."""
        raise NotImplementedError

    def selector(self, component: str) -> str:
        """Label selector of the scheduler (``scheduler``) or worker (``worker``) pods."""
        raise NotImplementedError

    def _create_all(self) -> None:
        raise NotImplementedError

    # Shared.
    def start(self) -> str:
        """Create (or adopt) the cluster, wait until the scheduler is Ready and the workers
        asked for are running.

        Returns:
            The scheduler's address.

        Raises:
            ClusterError: The scheduler pod did not become Ready within
                ``kubernetes.dask.start_timeout_seconds``, or fewer than
                ``dask.min_workers`` workers ran within ``dask.workers_timeout`` (exit 1).
            KubernetesBadRequestError: RBAC, an invalid object (exit 2).
        """
        self._create_all()
        self.wait_workers()
        return self.address

    def _ensure(self, body: dict[str, Any], same: Callable[[dict[str, Any]], bool]) -> None:
        """Create ``body``, or adopt the object of that name when ``same(existing)``; an
        object that differs or is being deleted is deleted and created again."""
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            self.backend.create_object(body)
            return
        except JobExistsError:
            found = self.backend.get_object(kind, name)
        if found is not None and not found["metadata"].get("deletionTimestamp") \
                and same(found):
            log.info("dask: %s %s of run %s exists, adopted", kind, name, self.run_id)
            return
        if found is not None:
            log.info("dask: %s %s of run %s differs from this run's, replaced", kind, name,
                     self.run_id)
            self.backend.delete_object(kind, name)
        deadline = time.monotonic() + self.config.kubernetes.dask.start_timeout_seconds
        pause = POLL_SECONDS
        while self.backend.get_object(kind, name) is not None:
            if time.monotonic() >= deadline:
                raise ClusterError(f"dask: {kind} {name} of run {self.run_id} was not deleted "
                                   "within kubernetes.dask.start_timeout_seconds")
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)
        self.backend.create_object(body)

    def _pods(self, component: str) -> list[dict[str, Any]]:
        return [p for p in self.backend.list_pods(self.selector(component))
                if not p["metadata"].get("deletionTimestamp")]

    def wait_scheduler(self) -> None:
        """Wait until a scheduler pod is Ready (bounded; a crash loop ends it early)."""
        timeout = self.config.kubernetes.dask.start_timeout_seconds
        deadline = time.monotonic() + timeout
        pause = POLL_SECONDS
        while True:
            pods = self._pods("scheduler")
            if any(pod_ready(p) for p in pods):
                return
            worst = max(pods, key=_restarts, default=None)
            restarts = _restarts(worst) if worst is not None else 0
            if restarts >= CRASH_RESTARTS or time.monotonic() >= deadline:
                name = str(worst["metadata"]["name"]) if worst is not None else "(none)"
                problem = pod_problem(worst) if worst is not None else "no pod was created"
                lines = self.backend.pod_log(name, "scheduler") if worst is not None else []
                why = (f"keeps exiting ({restarts} restarts: {problem})"
                       if restarts >= CRASH_RESTARTS else
                       f"was not ready within {timeout} s "
                       "(kubernetes.dask.start_timeout_seconds)"
                       + (f": {problem}" if problem else ""))
                raise ClusterError(f"dask scheduler pod {name} of run {self.run_id} {why}; "
                                   f"pod log: {' | '.join(lines) or '(empty)'}")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def wait_workers(self) -> None:
        """Wait (``dask.workers_timeout``) until ``dask.min_workers`` (0: all
        ``dask.n_workers``) worker pods are running and Ready. While some are pending, one
        Event on the controller's Job says which pods and why (unschedulable, pulling the
        image, ...), and the timeout's error says the same."""
        dask = self.config.dask
        wanted = min(dask.min_workers or dask.n_workers, dask.n_workers)
        deadline = time.monotonic() + dask.workers_timeout
        pause = POLL_SECONDS
        told = ""
        events_left = PENDING_EVENTS
        while True:
            pods = self._pods("worker")
            ready = [p for p in pods if pod_ready(p)]
            if len(ready) >= wanted:
                if told:
                    self.events("Normal", "DaskWorkersReady", "Dask",
                                f"{len(ready)} of {dask.n_workers} dask workers of run "
                                f"{self.run_id} are running")
                log.info("dask: %d of %d workers of run %s running", len(ready),
                         dask.n_workers, self.run_id)
                return
            pending = describe_pending([p for p in pods if not pod_ready(p)],
                                       dask.n_workers - len(pods))
            note = (f"waiting for {wanted - len(ready)} more dask worker(s) of run "
                    f"{self.run_id} ({len(ready)} of {dask.n_workers} running, "
                    f"dask.min_workers {wanted}): {pending}")
            if time.monotonic() >= deadline:
                raise ClusterError(f"only {len(ready)} of the {wanted} dask workers asked for "
                                   f"ran within {dask.workers_timeout:g} s "
                                   f"(dask.workers_timeout): {pending}")
            reasons = _reasons(pending)
            if reasons != told and events_left > 0:  # a new reason: say it (a few times)
                self.events("Warning" if "Unschedulable" in pending else "Normal",
                            "DaskWorkersPending", "Dask", note)
                told = reasons
                events_left -= 1
                log.info("dask: %s", note)
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def stop(self) -> None:
        """Delete the cluster's objects (workers first) and wait (bounded) until its pods
        are gone. Best effort: a failure is logged (the objects are owned by the
        controller's Job and are garbage-collected with it), never raised."""
        try:
            for obj in reversed(self.objects()):
                self.backend.delete_object(obj["kind"], obj["metadata"]["name"])
            deadline = time.monotonic() + DELETE_WAIT_SECONDS
            pause = POLL_SECONDS
            while True:  # pods that are terminating count: wait until they are gone
                left = (self.backend.list_pods(self.selector("scheduler"))
                        + self.backend.list_pods(self.selector("worker")))
                if not left or time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, POLL_MAX_SECONDS)
        except MLOpsError as err:
            log.warning("dask: cannot delete the %s cluster of run %s: %s (its objects are "
                        "removed with the controller's Job)", self.kind, self.run_id, err)
            return
        if left:
            log.warning("dask: pods %s of run %s still terminating after %g s",
                        ", ".join(str(p["metadata"]["name"]) for p in left), self.run_id,
                        DELETE_WAIT_SECONDS)
        else:
            log.info("dask: %s cluster of run %s removed", self.kind, self.run_id)

    def leave(self) -> None:
        """Leave the cluster running for the retried controller (a disruption)."""
        log.warning("dask: controller disrupted; the %s cluster of run %s is left for the "
                    "retried controller, which adopts it", self.kind, self.run_id)


def _reasons(pending: str) -> str:
    """The reasons of :func:`describe_pending`'s line without the pod names."""
    return "; ".join(sorted({p.split(" ", 1)[-1] for p in pending.split("; ")}))


def _restarts(pod: dict[str, Any]) -> int:
    return max([int(cs.get("restartCount") or 0) for cs in
                (pod.get("status") or {}).get("containerStatuses") or []] or [0])


def describe_pending(pods: list[dict[str, Any]], missing: int = 0) -> str:
    """Which pods are not running yet and why, in one line: the scheduler's reason
    (``Unschedulable: 0/3 nodes are available ...``), a container's waiting reason
    (``ContainerCreating``, ``ErrImagePull``) or the phase."""
    parts = []
    for pod in pods:
        status = pod.get("status") or {}
        why = ""
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                why = f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}"
        if not why:
            for cs in status.get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting")
                if waiting:
                    why = str(waiting.get("reason") or "Waiting")
            why = pod_problem(pod) or why or str(status.get("phase") or "Pending")
        parts.append(f"{pod['metadata']['name']} {why.strip()}")
    if missing > 0:
        parts.append(f"{missing} pod(s) not created yet")
    return "; ".join(parts) or "no worker pod yet"


class EphemeralCluster(RunCluster):
    """``dask.cluster: ephemeral``: a scheduler ReplicaSet, its headless Service and a
    worker ReplicaSet of ``dask.n_workers`` pods (see
    :func:`build_dask_cluster`). A ReplicaSet of the run that exists
    is adopted when its replicas are the ones asked for, else replaced."""

    kind = "ephemeral"

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None,
                 events: EventSink | None = None) -> None:
        super().__init__(config, backend, run_id, owner=owner, extra_env=extra_env,
                         events=events)
        self.manifests = build_dask_cluster(config.kubernetes, config.dask, run_id,
                                            namespace=backend.namespace, owner=owner,
                                            extra_env=extra_env)
        self.address = self.manifests.address

    def objects(self) -> list[dict[str, Any]]:
        return self.manifests.objects

    def selector(self, component: str) -> str:
        return dask_selector(self.config.kubernetes, self.run_id,
                             DASK_SCHEDULER if component == "scheduler" else DASK_WORKER)

    def _create_all(self) -> None:
        m = self.manifests

        def same(found: dict[str, Any], body: dict[str, Any]) -> bool:
            return (found.get("spec") or {}).get("replicas") == body["spec"]["replicas"]

        self._ensure(m.scheduler, lambda f: same(f, m.scheduler))
        try:
            self.backend.create_object(m.service)
        except JobExistsError:  # the run's Service: its selector names this run's scheduler
            log.info("dask: Service %s of run %s exists, reused",
                     m.service["metadata"]["name"], self.run_id)
        self.wait_scheduler()
        self._ensure(m.workers, lambda f: same(f, m.workers))
        log.info("dask: ephemeral cluster of run %s at %s (%d workers asked for)",
                 self.run_id, self.address, self.config.dask.n_workers)


class OperatorCluster(RunCluster):
    """``dask.cluster: operator``: one ``kubernetes.dask.org/v1`` DaskCluster per run,
    made by the dask-kubernetes operator (see :func:`build_operator_cluster`);
    started when its phase is Running and the workers asked for run."""

    kind = "operator"

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None,
                 events: EventSink | None = None) -> None:
        super().__init__(config, backend, run_id, owner=owner, extra_env=extra_env,
                         events=events)
        self.body = build_operator_cluster(config.kubernetes, config.dask, run_id,
                                           namespace=backend.namespace, owner=owner,
                                           extra_env=extra_env)
        self.name = str(self.body["metadata"]["name"])
        self.address = operator_address(self.name, backend.namespace)

    def objects(self) -> list[dict[str, Any]]:
        return [self.body]

    def selector(self, component: str) -> str:
        return operator_selector(self.name, component)

    def _create_all(self) -> None:
        want = self.config.dask.n_workers
        self._ensure(self.body, lambda f: (f.get("spec") or {}).get("worker", {}).get(
            "replicas") == want)
        self.wait_scheduler()
        timeout = self.config.kubernetes.dask.start_timeout_seconds
        deadline = time.monotonic() + timeout
        pause = POLL_SECONDS
        while True:
            found = self.backend.get_object("DaskCluster", self.name)
            phase = ((found or {}).get("status") or {}).get("phase")
            if phase == "Running":
                break
            if found is None or time.monotonic() >= deadline:
                raise ClusterError(
                    f"DaskCluster {self.name} of run {self.run_id} "
                    + ("was deleted" if found is None else
                       f"is in phase {phase or '(none)'} after {timeout} s "
                       "(kubernetes.dask.start_timeout_seconds); is the dask-kubernetes "
                       "operator running?"))
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)
        log.info("dask: DaskCluster %s of run %s Running at %s", self.name, self.run_id,
                 self.address)


def run_cluster(config: Config, backend: Any, run_id: str, *, owner: Any = None,
                extra_env: Mapping[str, str] | None = None,
                events: EventSink | None = None) -> RunCluster | None:
    """The run's Dask cluster (not started), or None unless ``dask.cluster`` is
    ``ephemeral`` or ``operator``. Its manifests are built (and checked) here."""
    kinds = {"ephemeral": EphemeralCluster, "operator": OperatorCluster}
    cls = kinds.get(config.dask.cluster)
    if cls is None:
        return None
    return cls(config, backend, run_id, owner=owner, extra_env=extra_env, events=events)
