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
its own (:class:`mlops.kube.dask.EphemeralCluster`): scheduler and worker ReplicaSets and
a headless Service; with ``operator`` one DaskCluster of the dask-kubernetes operator
(:class:`mlops.kube.dask.OperatorCluster`). It is created before the first step, waited
for (the workers asked for, an Event naming pending pods), handed to the steps in
``$MLOPS_DASK_ADDRESS`` and deleted when the run ends, fails or is terminated - except
when the controller's own pod is disrupted (``DisruptionTarget``): the retried controller
adopts it.
:func:`plan_run` lists every object of a run without an API server (``--dry-run``).

The Kubernetes calls live in :mod:`mlops.kube.client` (this module does not import
``kubernetes``); the backend is passed in, so the orchestration is the same for any backend with the
:class:`JobBackend` methods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, Protocol

from mlops.config import ENV_DASK_ADDRESS, Config
from mlops.errors import BadInputError, JobExistsError, MLOpsError, StepFailedError
from mlops.kube.dask import (
    RunCluster,
    build_dask_cluster,
    build_operator_cluster,
    operator_address,
    run_cluster,
)
from mlops.kube.manifests import (
    ENV_NAMESPACE,
    ENV_POD_NAME,
    Owner,
    build_event,
    build_job,
    job_state,
    step_failure,
    step_pod,
    step_wait_seconds,
)
from mlops.observe.report import require_matplotlib
from mlops.pipeline import INGEST, MONITOR_CHECK, SCORE, TRAIN
from mlops.runner import finish_run, record_failure, record_outcome
from mlops.store.ids import check_version_id, iso, utc_now
from mlops.store.workspace import Workspace, new_run_id
from mlops.validation import PREFIX as VALIDATION_PREFIX

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
    """What the controller needs from Kubernetes (implemented by mlops.kube.client.KubeClient)."""

    namespace: str

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_job(self, name: str) -> dict[str, Any]: ...

    def wait_for_job(self, name: str, resource_version: str | None,
                     timeout: float) -> dict[str, Any]: ...

    def failure_report(self, name: str, container: str,
                       tail_lines: int = 10) -> tuple[int | None, list[str]]: ...

    def create_event(self, body: dict[str, Any]) -> dict[str, Any]: ...


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


def owner_from_env(env: Mapping[str, str] | None = None) -> Owner | None:
    """The controller's own Job (``$MLOPS_JOB_NAME`` and ``$MLOPS_JOB_UID``), or None."""
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


class Controller:
    """One run of the pipeline as step Jobs.

    Args:
        config: The config (its ``kubernetes`` section shapes the step Jobs).
        backend: The Kubernetes side, e.g. :class:`mlops.kube.client.KubeClient`.
        run_id: The run id (a safe name).
        owner: The controller's own Job (a :class:`mlops.kube.manifests.Owner`), or None.
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
                :func:`mlops.kube.manifests.step_wait_seconds`).
            KubernetesBadRequestError: No step pod in the config (it was not rendered by
                the chart), RBAC, missing namespace, invalid Job (exit 2).
            KubernetesError: The API kept failing (exit 1).
            BadInputError: A Job completed but its result is not in the store (exit 2).
            ClusterError: The run's ephemeral Dask cluster did not start (exit 1).
            Terminated: SIGTERM arrived (``controller.json`` says ``terminated``).

        With ``dask.cluster: ephemeral`` the run's Dask cluster
        (:class:`mlops.kube.dask.EphemeralCluster`) is started before the first step and
        removed after the last, whatever the outcome.
        """
        from mlops.observe.hooks import RunObserver

        started = iso(utc_now())
        step_pod(self.config.kubernetes)  # the chart's step pod, checked before any write
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
        KubernetesBadRequestError: No pod template, an invalid one or an invalid image (exit 2).
    """
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
        namespace: ``--namespace`` (see :func:`mlops.kube.client.load_target` for the fallbacks).
        kubeconfig: ``--kubeconfig``.
        context: ``--context``, a kubeconfig context.
        env: The environment (default ``os.environ``).

    Returns:
        The run summary.

    Raises:
        Terminated: SIGTERM arrived.
        MLOpsError: See :meth:`Controller.run`.
    """
    # Here, not at the top: the kubernetes client is the k8s extra, and the CLI imports this
    # module for every command (sigterm_raises, EXIT_TERMINATED).
    from mlops.kube.client import KubeClient, load_target

    env = os.environ if env is None else env
    rid = resolve_run_id(run_id, env)
    target = load_target(kubeconfig=kubeconfig, context=context, namespace=namespace,
                         config_namespace=config.kubernetes.namespace, env=env)
    with sigterm_raises(), KubeClient(target) as backend:
        log.info("controller: run %s in namespace %s (%s)", rid, target.namespace,
                 target.source)
        return Controller(config, backend, rid, owner=owner_from_env(env), env=env).run()
