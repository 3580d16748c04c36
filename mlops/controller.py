"""The controller: runs one pipeline run as step Jobs (ingest -> monitor-check -> train).

It shares nothing in memory with the steps. For each step it skips the step when its
result is already in the store (resume), else creates the step Job - or adopts it when a
Job of the same deterministic name exists (a restarted or concurrent controller) - and
waits with the watch API. A Complete Job's result is read from the store; train runs only
when monitor-check's result says ``retrain``. The run's summary goes to
``runs/<run-id>/summary.json`` and ``runs/<run-id>/controller.json`` records how the
controller ended (``succeeded``, ``failed`` with the exit code of any failure, exit 2
included, ``terminated`` on SIGTERM).

With ``data.engine: dask`` and ``dask.cluster: ephemeral`` the run gets a Dask cluster of
its own (:class:`EphemeralCluster`): scheduler and worker ReplicaSets and a headless
Service; with ``operator`` one DaskCluster of the dask-kubernetes operator
(:class:`OperatorCluster`). It is created before the first step, waited for (the workers
asked for, an Event naming pending pods), handed to the steps in ``$MLOPS_DASK_ADDRESS``
and deleted when the run ends, fails or is terminated - except when the controller's own
pod is disrupted (``DisruptionTarget``): the retried controller adopts it.
:func:`plan_run` lists every object of a run without an API server (``--dry-run``).

The Kubernetes calls live in :mod:`mlops.k8s` (this module does not import ``kubernetes``);
the backend is passed in, so the orchestration is the same for any backend with the
:class:`JobBackend` methods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any, Protocol

from mlops.config import ENV_DASK_ADDRESS, Config
from mlops.errors import BadInputError, ClusterError, MLOpsError, StepFailedError
from mlops.ids import check_version_id, iso, utc_now
from mlops.observe.report import require_matplotlib
from mlops.pipeline import INGEST, MONITOR_CHECK, SCORE, TRAIN
from mlops.runner import finish_run, record_failure, record_outcome
from mlops.validation import PREFIX as VALIDATION_PREFIX
from mlops.workspace import Workspace, new_run_id

log = logging.getLogger(__name__)

ENV_RUN_ID = "MLOPS_RUN_ID"
ENV_JOB_NAME = "MLOPS_JOB_NAME"
ENV_JOB_UID = "MLOPS_JOB_UID"
ENV_STORAGE_URI = "MLOPS_STORAGE_URI"
#: The controller's own pod (the chart's downward API; else ``$HOSTNAME``, the pod's name).
ENV_POD_NAME = "MLOPS_POD_NAME"
CONTROLLER = "controller"
#: Exit code after SIGTERM (128 + 15, as a shell reports a process killed by SIGTERM).
EXIT_TERMINATED = 143


class Terminated(BaseException):  # like KeyboardInterrupt: not caught as an Exception
    """SIGTERM arrived; raised from the signal handler to stop waiting at once."""


class JobBackend(Protocol):
    """What the controller needs from Kubernetes (implemented by mlops.k8s.KubeClient)."""

    namespace: str

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_job(self, name: str) -> dict[str, Any]: ...

    def wait_for_job(self, name: str, resource_version: str | None,
                     timeout: float) -> dict[str, Any]: ...

    def failure_report(self, name: str, container: str,
                       tail_lines: int = 10) -> tuple[int | None, list[str]]: ...

    def create_event(self, body: dict[str, Any]) -> dict[str, Any]: ...


class ClusterBackend(JobBackend, Protocol):
    """What the run's Dask cluster needs on top of the Job calls (implemented by
    mlops.k8s.KubeClient)."""

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, name: str) -> dict[str, Any] | None: ...

    def list_pods(self, label_selector: str) -> list[dict[str, Any]]: ...

    def delete_object(self, kind: str, name: str) -> bool: ...

    def pod_log(self, name: str, container: str, tail_lines: int = 10) -> list[str]: ...


def resolve_run_id(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The run id: ``--run-id``, else ``$MLOPS_RUN_ID``, else ``$MLOPS_JOB_NAME`` (the
    controller's own Job, so a retried controller pod resumes the same run), else a fresh
    UTC timestamp id.

    Raises:
        InvalidVersionIdError: The chosen id is not a safe name (exit 2).
    """
    env = os.environ if env is None else env
    for value, what in ((flag, "run id (--run-id)"), (env.get(ENV_RUN_ID), "run id "
                        f"(${ENV_RUN_ID})"), (env.get(ENV_JOB_NAME), f"run id (${ENV_JOB_NAME})")):
        if value:
            return check_version_id(value, what)
    return new_run_id()


def owner_from_env(env: Mapping[str, str] | None = None) -> Any:
    """The controller's own Job (``$MLOPS_JOB_NAME`` and ``$MLOPS_JOB_UID``), or None."""
    from mlops.k8s import Owner

    env = os.environ if env is None else env
    name, uid = env.get(ENV_JOB_NAME), env.get(ENV_JOB_UID)
    return Owner(name, uid) if name and uid else None


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        from mlops.k8s import JobExistsError

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
        from mlops.k8s import pod_problem, pod_ready

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
        from mlops.k8s import pod_ready

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
    from mlops.k8s import pod_problem

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
    worker ReplicaSet of ``dask.n_workers`` pods (see :func:`mlops.k8s.build_dask_cluster`).
    A ReplicaSet of the run that exists is adopted when its replicas are the ones asked
    for, else replaced."""

    kind = "ephemeral"

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None,
                 events: EventSink | None = None) -> None:
        from mlops.k8s import build_dask_cluster

        super().__init__(config, backend, run_id, owner=owner, extra_env=extra_env,
                         events=events)
        self.manifests = build_dask_cluster(config.kubernetes, config.dask, run_id,
                                            namespace=backend.namespace, owner=owner,
                                            extra_env=extra_env)
        self.address = self.manifests.address

    def objects(self) -> list[dict[str, Any]]:
        return self.manifests.objects

    def selector(self, component: str) -> str:
        from mlops.k8s import DASK_SCHEDULER, DASK_WORKER, dask_selector

        return dask_selector(self.config.kubernetes, self.run_id,
                             DASK_SCHEDULER if component == "scheduler" else DASK_WORKER)

    def _create_all(self) -> None:
        from mlops.k8s import JobExistsError

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
    made by the dask-kubernetes operator (see :func:`mlops.k8s.build_operator_cluster`);
    started when its phase is Running and the workers asked for run."""

    kind = "operator"

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None,
                 events: EventSink | None = None) -> None:
        from mlops.k8s import build_operator_cluster, operator_address

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
        from mlops.k8s import operator_selector

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


class Controller:
    """One run of the pipeline as step Jobs.

    Args:
        config: The config (its ``kubernetes`` section shapes the step Jobs).
        backend: The Kubernetes side, e.g. :class:`mlops.k8s.KubeClient`.
        run_id: The run id (a safe name).
        owner: The controller's own Job (a :class:`mlops.k8s.Owner`), or None.
        ws: The opened store (default: opened from ``config``).
        env: Environment for ``$MLOPS_STORAGE_URI`` forwarding (default ``os.environ``).
    """

    def __init__(self, config: Config, backend: JobBackend, run_id: str, *,
                 owner: Any = None, ws: Workspace | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.run_id = check_version_id(run_id, "run id")
        self.owner = owner
        self.ws = ws if ws is not None else Workspace.open(config)
        env = os.environ if env is None else env
        self.env = env
        # The steps read the same ConfigMap as the controller; a storage override given to
        # the controller is passed on so that both see the same store.
        uri = env.get(ENV_STORAGE_URI)
        self.extra_env = {ENV_STORAGE_URI: uri} if uri else {}
        self.steps: dict[str, str] = {}
        self.current: str | None = None

    def run(self) -> dict[str, Any]:
        """Run (or resume) the run to its end.

        Returns:
            The run summary (as written to ``runs/<run-id>/summary.json``).

        Raises:
            StepFailedError: A step Job failed (exit 2 when its pod exited 2, else 1).
            StepTimeoutError: A step did not finish in ``kubernetes.step_timeout_seconds``
                (never less than its deadline plus grace period, see
                :func:`mlops.k8s.step_wait_seconds`).
            KubernetesBadRequestError: RBAC, missing namespace, invalid Job (exit 2).
            KubernetesError: The API kept failing (exit 1).
            BadInputError: A Job completed but its result is not in the store (exit 2).
            ClusterError: The run's ephemeral Dask cluster did not start (exit 1).
            Terminated: SIGTERM arrived (``controller.json`` says ``terminated``).

        With ``dask.cluster: ephemeral`` the run's Dask cluster (:class:`EphemeralCluster`)
        is started before the first step and removed after the last, whatever the outcome.
        """
        from mlops.observe.hooks import RunObserver

        started = iso(utc_now())
        if self.ws.config.reporting.enabled:
            require_matplotlib()  # fail before any Job is created, not at the end
        observer = RunObserver(self.config, self.run_id, events=self._event,
                               where=f"{self.config.kubernetes.release}/"
                                     f"{self.backend.namespace}")
        observer.check()
        cluster = self._cluster()
        observer.run_started()
        disrupted = False
        try:
            try:
                if cluster is not None:
                    self.extra_env[ENV_DASK_ADDRESS] = cluster.start()
                self._observed(observer, INGEST)
                checked = self._observed(observer, MONITOR_CHECK)
                if checked.get("retrain"):
                    self._observed(observer, TRAIN)
                else:
                    self.steps[TRAIN] = "not needed"
                if self.config.scoring.source:
                    self._observed(observer, SCORE)
            except Terminated:
                disrupted = cluster is not None and self._disrupted()
                raise
            finally:
                if cluster is not None and disrupted:
                    cluster.leave()
                elif cluster is not None:
                    cluster.stop()
            self.current = None
            self._hand_off()
            summary = finish_run(self.ws, self.run_id, observer)
        except Terminated as err:
            self._record("terminated", started,
                         f"SIGTERM while running step {self.current or '-'}"
                         + ("; disrupted (DisruptionTarget): the Dask cluster is left for "
                            "the retried controller" if disrupted else ""), EXIT_TERMINATED)
            observer.run_failed(err)
            raise
        except Exception as err:
            if self.current in (MONITOR_CHECK, TRAIN, SCORE) or (  # data registered, or
                    self.current is not None and VALIDATION_PREFIX in str(err)):  # refused
                record_failure(self.ws, self.run_id, self.current, err)
            # Every failure, exit 2 too: `mlops status` reads this record.
            self._record("failed", started, err)
            observer.run_failed(err)
            raise
        self._record("succeeded", started, None)
        return summary

    def _cluster(self) -> RunCluster | None:
        """The run's Dask cluster (not started yet), or None unless ``dask.cluster`` is
        ephemeral or operator. Its manifests are built (and checked) here, before anything
        is created."""
        return run_cluster(self.config, self.backend, self.run_id, owner=self.owner,
                           extra_env=self.extra_env, events=self._event)

    def _disrupted(self) -> bool:
        """True when the controller's own pod carries ``DisruptionTarget`` (drain,
        preemption, eviction): its Job retries it, and the retried controller adopts the
        run and its Dask cluster. Best effort: False when the pod cannot be read."""
        name = self.env.get(ENV_POD_NAME) or self.env.get("HOSTNAME") or ""
        get_pod = getattr(self.backend, "get_pod", None)
        if not name or get_pod is None or self.owner is None:
            return False
        try:
            pod = get_pod(name)
        except MLOpsError as err:
            log.warning("cannot read the controller's pod %s: %s", name, err)
            return False
        return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
                   for c in ((pod or {}).get("status") or {}).get("conditions") or [])

    def step(self, step: str) -> dict[str, Any]:
        """Run one step as a Job (or skip it when its result exists) and return its result.

        Raises:
            See :meth:`run`.
        """
        from mlops.k8s import JobExistsError, build_job, job_state, step_failure, step_wait_seconds

        self.current = step
        done = self.ws.read_result(self.run_id, step)
        if done is not None:
            log.info("step %s of run %s: result exists, skipped", step, self.run_id)
            self.steps[step] = "skipped (result exists)"
            return done
        k8s = self.config.kubernetes
        body = build_job(k8s, self.run_id, step, namespace=self.backend.namespace,
                         owner=self.owner, extra_env=self.extra_env)
        name = body["metadata"]["name"]
        try:
            job = self.backend.create_job(body)
            how = "created"
        except JobExistsError:
            job = self.backend.get_job(name)
            how = "adopted"
        log.info("step %s of run %s: Job %s %s in namespace %s", step, self.run_id, name, how,
                 self.backend.namespace)
        if not job_state(job):
            rv = (job.get("metadata") or {}).get("resourceVersion")
            job = self.backend.wait_for_job(name, rv, step_wait_seconds(k8s, step))
        if job_state(job) == "Failed":
            code, lines = self.backend.failure_report(name, step)
            err = step_failure(job, step, code, lines)
            if how == "adopted":
                err = StepFailedError(f"adopted {err}", err.exit_code)
            raise err
        result = self.ws.read_result(self.run_id, step)
        if result is None:
            raise BadInputError(
                f"step {step} Job {name} completed but its result "
                f"{self.ws.store.url(self.ws.result_key(self.run_id, step))} is not in the "
                "store: do the steps and the controller use the same storage.uri?")
        self.steps[step] = f"{how} Job {name}"
        return result

    def _observed(self, observer: Any, step: str) -> dict[str, Any]:
        with observer.step(step) as box:
            box["result"] = self.step(step)
        return box["result"]

    def _event(self, type_: str, reason: str, action: str, note: str) -> None:
        """Write a Kubernetes Event on the controller's own Job (none without one)."""
        from mlops.k8s import build_event

        if self.owner is None:
            return
        self.backend.create_event(build_event(
            self.owner, self.backend.namespace, type_, reason, action, note))

    def _hand_off(self) -> None:
        """After a promotion, point ``serving.kserve.inference_service`` at the new version's
        export (a JSON merge patch of its storageUri) and write an Event. A failure is an
        alert of the run (``serving-handoff.json``, read by the summary), not a failure:
        the promotion stands and the next promotion patches again."""
        from mlops.serving import HANDOFF, inference_service_patch

        name = self.config.serving.kserve.inference_service
        trained = self.ws.read_result(self.run_id, TRAIN)
        if not name or not trained or not trained.get("promoted"):
            return
        version = str(trained["model_version"])
        if self.ws.registry.get_alias() != version:  # a resumed run no longer serves
            return
        backend: Any = self.backend
        record: dict[str, Any] = {"run_id": self.run_id, "inference_service": name,
                                  "model_version": version}
        try:
            isvc = backend.get_inference_service(name)
            patch, uri = inference_service_patch(isvc, self.ws.store, version)
            backend.patch_inference_service(name, patch)
        except MLOpsError as err:
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            log.warning("serving hand-off: InferenceService %s not updated to model %s: %s",
                        name, version, why)
            self.ws.write_result(HANDOFF, {**record, "status": "failed", "error": why})
            self._safe_event("Warning", "ServingUpdateFailed", f"InferenceService {name} "
                             f"not updated to model {version}: {why}")
            return
        log.info("serving hand-off: InferenceService %s storageUri -> %s", name, uri)
        self.ws.write_result(HANDOFF, {**record, "status": "patched", "storage_uri": uri})
        self._safe_event("Normal", "ServingUpdated",
                         f"InferenceService {name} storageUri set to {uri} (model {version})")

    def _safe_event(self, type_: str, reason: str, note: str) -> None:
        try:
            self._event(type_, reason, "PatchInferenceService", note)
        except MLOpsError as err:
            log.warning("cannot write Event %s: %s", reason, err)

    def _record(self, status: str, started: str, error: BaseException | str | None,
                exit_code: int | None = None) -> None:
        record_outcome(self.ws, self.run_id, CONTROLLER, status, error=error,
                       step=self.current, started_at=started, exit_code=exit_code,
                       namespace=self.backend.namespace, steps=dict(self.steps))


def plan_run(config: Config, run_id: str, *, namespace: str | None = None,
             env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every object the controller would create for ``run_id`` (pure: no API server):
    the run's Dask objects (ephemeral: the scheduler ReplicaSet, its Service, the worker
    ReplicaSet; operator: the DaskCluster), then the ingest, monitor-check and train Jobs
    (train is created only when monitor-check says retrain).

    Args:
        config: The config.
        run_id: The run id.
        namespace: ``--namespace``, else ``kubernetes.namespace``, else
            ``$MLOPS_NAMESPACE``, else ``default``.
        env: The environment (``$MLOPS_JOB_NAME``/``$MLOPS_JOB_UID``: the owner,
            ``$MLOPS_STORAGE_URI``: forwarded to the steps).

    Raises:
        KubernetesBadRequestError: An invalid image or pod template (exit 2).
    """
    from mlops.k8s import ENV_NAMESPACE, build_dask_cluster, build_job, build_operator_cluster

    env = os.environ if env is None else env
    rid = check_version_id(run_id, "run id (--run-id)")
    ns = namespace or config.kubernetes.namespace or env.get(ENV_NAMESPACE) or "default"
    owner = owner_from_env(env)
    uri = env.get(ENV_STORAGE_URI)
    extra = {ENV_STORAGE_URI: uri} if uri else {}
    objects: list[dict[str, Any]] = []
    if config.dask.cluster == "ephemeral":
        cluster = build_dask_cluster(config.kubernetes, config.dask, rid, namespace=ns,
                                     owner=owner, extra_env=extra)
        objects += cluster.objects
        extra[ENV_DASK_ADDRESS] = cluster.address
    elif config.dask.cluster == "operator":
        from mlops.k8s import operator_address

        body = build_operator_cluster(config.kubernetes, config.dask, rid, namespace=ns,
                                      owner=owner, extra_env=extra)
        objects.append(body)
        extra[ENV_DASK_ADDRESS] = operator_address(body["metadata"]["name"], ns)
    for step in (INGEST, MONITOR_CHECK, TRAIN):
        objects.append(build_job(config.kubernetes, rid, step, namespace=ns, owner=owner,
                                 extra_env=extra))
    return objects


def run_controller(config: Config, *, run_id: str | None = None, namespace: str | None = None,
                   kubeconfig: str | None = None, context: str | None = None,
                   env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Connect to Kubernetes and run (or resume) one run as step Jobs.

    Args:
        config: The config.
        run_id: ``--run-id`` (see :func:`resolve_run_id` for the fallbacks).
        namespace: ``--namespace`` (see :func:`mlops.k8s.load_target` for the fallbacks).
        kubeconfig: ``--kubeconfig``.
        context: ``--context``, a kubeconfig context.
        env: The environment (default ``os.environ``).

    Returns:
        The run summary.

    Raises:
        Terminated: SIGTERM arrived.
        MLOpsError: See :meth:`Controller.run`.
    """
    from mlops.k8s import KubeClient, load_target

    env = os.environ if env is None else env
    rid = resolve_run_id(run_id, env)
    target = load_target(kubeconfig=kubeconfig, context=context, namespace=namespace,
                         config_namespace=config.kubernetes.namespace, env=env)
    with sigterm_raises(), KubeClient(target) as backend:
        log.info("controller: run %s in namespace %s (%s)", rid, target.namespace,
                 target.source)
        return Controller(config, backend, rid, owner=owner_from_env(env), env=env).run()
