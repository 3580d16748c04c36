"""The controller: runs one pipeline run as step Jobs (ingest -> monitor-check -> train).

It shares nothing in memory with the steps. For each step it skips the step when its
result is already in the store (resume), else creates the step Job - or adopts it when a
Job of the same deterministic name exists (a restarted or concurrent controller) - and
waits with the watch API. A Complete Job's result is read from the store; train runs only
when monitor-check's result says ``retrain``. The run's summary goes to
``runs/<run-id>/summary.json`` and ``runs/<run-id>/controller.json`` records how the
controller ended (``succeeded``, ``failed`` for retryable failures, ``terminated`` on
SIGTERM; a bad-input failure, exit 2, writes nothing).

With ``data.engine: dask`` and ``dask.cluster: ephemeral`` the run gets a Dask cluster of
its own (:class:`EphemeralCluster`): scheduler and worker pods and a headless Service,
created before the first step, handed to the steps in ``$MLOPS_DASK_ADDRESS`` and deleted
when the run ends, fails or is terminated.

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
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, Protocol

from mlops.config import ENV_DASK_ADDRESS, Config
from mlops.errors import BadInputError, ClusterError, MLOpsError, StepFailedError
from mlops.ids import check_version_id, iso, utc_now
from mlops.pipeline import INGEST, MONITOR_CHECK, SCORE, TRAIN
from mlops.report import require_matplotlib
from mlops.runner import finish_run, record_failure
from mlops.workspace import Workspace, new_run_id

log = logging.getLogger(__name__)

ENV_RUN_ID = "MLOPS_RUN_ID"
ENV_JOB_NAME = "MLOPS_JOB_NAME"
ENV_JOB_UID = "MLOPS_JOB_UID"
ENV_STORAGE_URI = "MLOPS_STORAGE_URI"
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
    """What the run's ephemeral Dask cluster needs on top of the Job calls (implemented by
    mlops.k8s.KubeClient)."""

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]: ...

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


class EphemeralCluster:
    """The Dask cluster of one run (``dask.cluster: ephemeral``): a scheduler pod, its
    headless Service and ``dask.n_workers`` worker pods (see
    :func:`mlops.k8s.build_dask_cluster`).

    The names are deterministic per run id, so a resumed or concurrent controller of the
    same run adopts the running objects instead of starting a second cluster; pods that
    have ended are deleted and created again, and worker pods of the run beyond
    ``dask.n_workers`` are deleted.
    """

    def __init__(self, config: Config, backend: ClusterBackend, run_id: str, *,
                 owner: Any = None, extra_env: Mapping[str, str] | None = None) -> None:
        from mlops.k8s import build_dask_cluster

        self.config = config
        self.backend = backend
        self.run_id = run_id
        self.manifests = build_dask_cluster(config.kubernetes, config.dask, run_id,
                                            namespace=backend.namespace, owner=owner,
                                            extra_env=extra_env)
        self.address = self.manifests.address

    def start(self) -> str:
        """Create (or adopt) the cluster and wait until the scheduler is Ready.

        Returns:
            The scheduler's address, ``tcp://<service>.<namespace>.svc:8786``.

        Raises:
            ClusterError: The scheduler pod ended or was not Ready within
                ``kubernetes.dask.start_timeout_seconds`` (exit 1).
            KubernetesBadRequestError: RBAC (pods/services create), invalid pod (exit 2).
        """
        from mlops.k8s import DASK_WORKER, JobExistsError, dask_selector

        m = self.manifests
        self._ensure_pod(m.scheduler)
        try:
            self.backend.create_object(m.service)
        except JobExistsError:  # the run's Service: its selector names this run's scheduler
            log.info("dask: Service %s of run %s exists, reused",
                     m.service["metadata"]["name"], self.run_id)
        self._wait_ready(m.scheduler["metadata"]["name"])
        for worker in m.workers:
            self._ensure_pod(worker)
        wanted = set(m.pod_names)
        for pod in self.backend.list_pods(dask_selector(self.config.kubernetes, self.run_id,
                                                        DASK_WORKER)):
            name = str(pod["metadata"]["name"])
            if name not in wanted:
                log.info("dask: worker pod %s is not part of this run's cluster, deleted", name)
                self.backend.delete_object("Pod", name)
        log.info("dask: ephemeral cluster of run %s at %s (%d workers)", self.run_id,
                 self.address, len(m.workers))
        return self.address

    def _ensure_pod(self, body: dict[str, Any]) -> None:
        from mlops.k8s import JobExistsError

        name = body["metadata"]["name"]
        try:
            self.backend.create_object(body)
            return
        except JobExistsError:
            pod = self.backend.get_pod(name)
        phase = ((pod or {}).get("status") or {}).get("phase")
        if pod is not None and phase not in ("Succeeded", "Failed") \
                and not pod["metadata"].get("deletionTimestamp"):
            log.info("dask: pod %s of run %s exists, adopted", name, self.run_id)
            return
        if pod is not None:
            self.backend.delete_object("Pod", name)
        self._wait_gone([name], self.config.kubernetes.dask.start_timeout_seconds)
        self.backend.create_object(body)

    def _wait_ready(self, name: str) -> None:
        from mlops.k8s import pod_problem, pod_ready

        timeout = self.config.kubernetes.dask.start_timeout_seconds
        deadline = time.monotonic() + timeout
        pause = POLL_SECONDS
        while True:
            pod = self.backend.get_pod(name)
            if pod is None:
                raise ClusterError(f"dask scheduler pod {name} of run {self.run_id} was "
                                   "deleted before it was ready")
            if pod_ready(pod):
                return
            problem = pod_problem(pod)
            restarts = max([int(cs.get("restartCount") or 0) for cs in
                            (pod.get("status") or {}).get("containerStatuses") or []] or [0])
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") \
                    or restarts >= CRASH_RESTARTS or time.monotonic() >= deadline:
                lines = self.backend.pod_log(name, "scheduler")
                why = (f"ended ({problem})" if "phase" in problem else
                       f"keeps exiting ({restarts} restarts: {problem})"
                       if restarts >= CRASH_RESTARTS else
                       f"was not ready within {timeout} s "
                       "(kubernetes.dask.start_timeout_seconds)"
                       + (f": {problem}" if problem else ""))
                raise ClusterError(f"dask scheduler pod {name} of run {self.run_id} {why}; "
                                   f"pod log: {' | '.join(lines) or '(empty)'}")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def _wait_gone(self, names: list[str], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        pause = POLL_SECONDS
        left = list(names)
        while left:
            left = [n for n in left if self.backend.get_pod(n) is not None]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX_SECONDS)
        return left

    def stop(self) -> None:
        """Delete the run's scheduler, workers and Service and wait (bounded) until the pods
        are gone. Best effort: a failure is logged (the objects are owned by the
        controller's Job and are garbage-collected with it), never raised."""
        from mlops.k8s import dask_selector

        m = self.manifests
        try:
            names = set(m.pod_names) | {
                str(p["metadata"]["name"]) for p in self.backend.list_pods(
                    dask_selector(self.config.kubernetes, self.run_id))}
            scheduler = m.scheduler["metadata"]["name"]
            # Workers first: they then stop without trying to reach a scheduler that left.
            for name in [*sorted(names - {scheduler}), scheduler]:
                self.backend.delete_object("Pod", name)
            self.backend.delete_object("Service", m.service["metadata"]["name"])
            left = self._wait_gone(sorted(names), DELETE_WAIT_SECONDS)
        except MLOpsError as err:
            log.warning("dask: cannot delete the ephemeral cluster of run %s: %s (its objects "
                        "are removed with the controller's Job)", self.run_id, err)
            return
        if left:
            log.warning("dask: pods %s of run %s still terminating after %g s",
                        ", ".join(left), self.run_id, DELETE_WAIT_SECONDS)
        else:
            log.info("dask: ephemeral cluster of run %s removed", self.run_id)


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
        from mlops.observe import RunObserver

        started = iso(utc_now())
        if self.ws.config.reporting.enabled:
            require_matplotlib()  # fail before any Job is created, not at the end
        observer = RunObserver(self.config, self.run_id, events=self._event,
                               where=f"{self.config.kubernetes.release}/"
                                     f"{self.backend.namespace}")
        observer.check()
        cluster = self._cluster()
        observer.run_started()
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
            finally:
                if cluster is not None:
                    cluster.stop()
            self.current = None
            self._hand_off()
            summary = finish_run(self.ws, self.run_id, observer)
        except Terminated as err:
            self._record("terminated", started,
                         f"SIGTERM while running step {self.current or '-'}")
            observer.run_failed(err)
            raise
        except MLOpsError as err:
            if self.current in (MONITOR_CHECK, TRAIN, SCORE):  # data registered: a history point
                record_failure(self.ws, self.run_id, self.current, err)
            if not isinstance(err, BadInputError) and err.exit_code != 2:
                self._record("failed", started, str(err).splitlines()[0] if str(err) else "")
            observer.run_failed(err)
            raise
        self._record("succeeded", started, "")
        return summary

    def _cluster(self) -> EphemeralCluster | None:
        """The run's ephemeral Dask cluster (not started yet), or None unless
        ``dask.cluster`` is ephemeral. Its manifests are built (and checked) here, before
        anything is created."""
        if self.config.dask.cluster != "ephemeral":
            return None
        backend: Any = self.backend
        return EphemeralCluster(self.config, backend, self.run_id, owner=self.owner,
                                extra_env=self.extra_env)

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

    def _record(self, status: str, started: str, message: str) -> None:
        data = {"run_id": self.run_id, "status": status, "started_at": started,
                "namespace": self.backend.namespace, "steps": dict(self.steps),
                "message": message}
        try:
            self.ws.write_result(CONTROLLER, data)
        except (MLOpsError, OSError) as err:  # never hide the real outcome behind this
            log.warning("cannot record controller status %s: %s", status, err)


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
