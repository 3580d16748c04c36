"""The Kubernetes API client: the only module importing ``kubernetes``.

* :func:`load_target` loads credentials (a kubeconfig, or the pod's service account) and
  resolves the namespace; :class:`KubeClient` creates, adopts and watches step Jobs (and a
  run's Dask objects) and reads the failing pod's log.
* :func:`translate` is the one place where a ``kubernetes`` ``ApiException`` or a
  connection error becomes an :mod:`mlops.errors` error: 5xx, 429 and connection errors
  are retried a bounded number of times and then raise :class:`KubernetesError` (exit 1);
  401/403/404/400/422 raise :class:`KubernetesBadRequestError` (exit 2).

The manifests it sends are built by :mod:`mlops.kube.manifests` (pure).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from mlops.errors import (
    JobExistsError,
    KubernetesBadRequestError,
    KubernetesError,
    KubernetesNotFoundError,
    MLOpsError,
    StepTimeoutError,
)
from mlops.kube.manifests import DASK_CLUSTER_API, ENV_NAMESPACE, Job, job_state

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
ENV_KUBECONFIG = "KUBECONFIG"
ENV_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
DEFAULT_KUBECONFIG = "~/.kube/config"

#: Attempts of one API call on 5xx, 429 or a connection error (then exit 1).
API_ATTEMPTS = 4
#: Seconds between those attempts: ``API_BACKOFF * 2**attempt``.
API_BACKOFF = 0.2
#: Client-side timeout of one ordinary API request, seconds.
REQUEST_TIMEOUT = 30.0
#: Longest single watch request; a watch that ends is re-established until the step timeout.
WATCH_SECONDS = 300


# --- error translation ---------------------------------------------------------------
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
        return KubernetesNotFoundError(f"the Kubernetes API refused to {what} "
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
        """Create an ``events.k8s.io/v1`` Event (see :func:`mlops.kube.manifests.build_event`).

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
        except KubernetesNotFoundError:
            return None

    def get_pod(self, name: str) -> Job | None:
        """Read a pod; None when it does not exist."""
        try:
            return self._plain(self._call(f"get Pod {name}", lambda: self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT)))
        except KubernetesNotFoundError:
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
        except KubernetesNotFoundError:
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

