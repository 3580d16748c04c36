"""The object store: objects by (resource, namespace, name), resourceVersions and the
event history that watches replay; create and delete with the API's validation."""

from __future__ import annotations

import base64
import collections
import copy
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.kube import kserve
from tests.fakes.kube.model import (
    JSON,
    KIND_BY_NAME,
    KINDS,
    JobRun,
    Kind,
    KubeAPIError,
    RequestRecord,
    bad_request_error,
    invalid_error,
    namespace_not_found_error,
    not_found_error,
    random_suffix,
    utc_timestamp,
)
from tests.fakes.kube.selectors import Selector
from tests.fakes.kube.validation import (
    check_labels,
    check_name,
    default_job,
    default_pod,
    default_pod_spec,
    default_service,
    schema_errors,
    validate_config,
    validate_dask_cluster,
    validate_event,
    validate_job,
    validate_pod,
    validate_replica_set,
    validate_service,
)


class ObjectStore:
    """Objects by (resource, namespace, name), resourceVersions and the watch event history.

    The state of every part of the server is declared here and set by
    :class:`~tests.fakes.kube.api.FakeKubeAPI`; one lock (``_cond``'s) guards all of it.
    """

    # Configuration (see FakeKubeAPI).
    command_map: dict[str, list[str]]
    pvc_dirs: dict[str, Path]
    base_env: dict[str, str] | None
    user: str
    retry_backoff: float
    node_cpus: int
    node_memory: int
    termination_grace_seconds: float
    max_job_seconds: float
    kube_version: str
    token: str
    enforce_owner_references: bool
    kubelet_errors: list[str]
    # Store.
    _lock: threading.RLock
    _cond: threading.Condition
    _rv: int
    _objects: dict[tuple[str, str, str], JSON]
    _events: collections.deque[tuple[int, str, str, str, JSON, JSON | None]]
    _compacted_rv: int
    _logs: dict[tuple[str, str], bytearray]
    # Access, faults, requests (server) and running Jobs (kubelet).
    _forbidden: set[tuple[str, str, str | None]]
    _role: JSON | None
    _faults: list[list[Any]]
    _requests: collections.deque[RequestRecord]
    _runs: dict[str, JobRun]
    _stopping: threading.Event

    def _start_job(self, run: JobRun) -> None:
        """Start running a created Job (the kubelet's part)."""
        raise NotImplementedError

    def _start_pod(self, run: JobRun) -> None:
        """Start running a pod created through the API (the kubelet's part)."""
        raise NotImplementedError

    def _check_owner_references(self, kind: Kind, namespace: str, obj: JSON) -> None:
        """Admission of ownerReferences (the server's part): raise KubeAPIError to refuse."""

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
                    "creationTimestamp": utc_timestamp(),
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self._put("namespaces", "", obj, "ADDED")


    def get_object(self, resource: str, namespace: str, name: str) -> JSON | None:
        """Return a deep copy of a stored object, or ``None``."""
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def _list(self, resource: str, namespace: str | None, selector: Selector | None) -> list[JSON]:
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
        sel = Selector("pods", f"job-name={job_name}" if job_name else None, None)
        pods = self._list("pods", namespace, sel)
        return sorted(pods, key=lambda p: int(p["metadata"]["resourceVersion"]))

    def services(self, namespace: str) -> list[JSON]:
        """All Services in a namespace."""
        return self._list("services", namespace, None)

    def created(self, resource: str, namespace: str) -> list[JSON]:
        """Every object of ``resource`` created in ``namespace`` as it was when created (from
        the event history, so deleted ones too), oldest first."""
        with self._lock:
            return [copy.deepcopy(obj) for _, r, ns, etype, obj, _ in self._events
                    if r == resource and ns == namespace and etype == "ADDED"]

    def pod_log(self, namespace: str, pod_name: str) -> str:
        """The captured stdout+stderr of a pod's container."""
        with self._lock:
            return bytes(self._logs.get((namespace, pod_name), b"")).decode(errors="replace")

    def create_object(self, obj: JSON) -> JSON:
        """Create an object server-side with the same validation as HTTP (raises KubeAPIError)."""
        kind = KIND_BY_NAME.get(str(obj.get("kind")))
        if kind is None or kind.resource == "namespaces":
            raise bad_request_error(f"cannot create kind {obj.get('kind')!r} in the fake")
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        return self._create(kind, ns, copy.deepcopy(obj))

    def delete_object(
        self, resource: str, namespace: str, name: str, propagation_policy: str = "Background"
    ) -> None:
        """Delete an object server-side (raises KubeAPIError)."""
        self._delete(KINDS[resource], namespace, name, propagation_policy)

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
            raise namespace_not_found_error(namespace)

    def _create(self, kind: Kind, namespace: str, obj: JSON, admit: bool = True) -> JSON:
        """Validate, default and store a new object; ``admit=False`` for the cluster's own
        controllers (no admission of their ownerReferences)."""
        if not isinstance(obj, dict):
            raise bad_request_error("the body of the request was in an unknown format")
        if obj.get("apiVersion") != kind.api_version or obj.get("kind") != kind.kind:
            raise bad_request_error(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({kind.api_version})"
                if obj.get("apiVersion") != kind.api_version
                else f"the kind in the data ({obj.get('kind')}) does not match the expected "
                f"kind ({kind.kind})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request_error("metadata must be an object")
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request_error(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if meta.get("resourceVersion"):
            raise KubeAPIError(500, "InternalError",
                               "resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"]) + random_suffix()
        name = str(meta.get("name") or "")
        # A DaskCluster (a custom resource) has no bundled schema: its CRD's rules are
        # checked below; an InferenceService's minimal CRD schema is kserve.schema_errors.
        if kind.resource == "inferenceservices":
            errors = kserve.schema_errors(obj)
        elif kind.resource == "daskclusters":
            errors = []
        else:
            errors = schema_errors(obj, self.kube_version)
        if not errors and kind.resource == "inferenceservices":
            check_name(meta.get("name"), errors, "metadata.name", 253)
        elif not errors:
            if kind.resource == "jobs":
                validate_job(obj, errors)
            elif kind.resource == "events":
                check_name(meta.get("name"), errors, "metadata.name", 253)
                validate_event(obj, errors)
            elif kind.resource == "pods":
                validate_pod(obj, errors)
            elif kind.resource == "services":
                validate_service(obj, errors)
            elif kind.resource == "replicasets":
                validate_replica_set(obj, errors)
            elif kind.resource == "daskclusters":
                validate_dask_cluster(obj, self.kube_version, errors)
            else:
                check_name(meta.get("name"), errors, "metadata.name", 253)
                validate_config(obj, kind, errors)
            check_labels(meta.get("labels"), "metadata.labels", errors)
        if errors:
            raise invalid_error(kind, name, errors)
        if admit:
            self._check_owner_references(kind, namespace, obj)
        with self._lock:
            self._require_namespace(namespace)
            if (kind.resource, namespace, name) in self._objects:
                raise KubeAPIError(
                    409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                    {"name": name, "group": kind.group, "kind": kind.resource},
                )
            uid = str(uuid.uuid4())
            meta.update(
                namespace=namespace, uid=uid, creationTimestamp=utc_timestamp(), generation=1
            )
            meta.pop("deletionTimestamp", None)
            if kind.resource == "jobs":
                default_job(obj, uid)
            elif kind.resource == "secrets":
                obj.setdefault("type", "Opaque")
                data = obj.setdefault("data", {})
                for k, v in (obj.pop("stringData", None) or {}).items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                if not data:
                    obj.pop("data")
                meta.pop("generation")
            elif kind.resource == "pods":
                meta.pop("generation")
                default_pod(obj)
            elif kind.resource == "replicasets":
                obj["spec"].setdefault("replicas", 1)
                default_pod_spec(obj["spec"]["template"]["spec"])
                obj["status"] = {"replicas": 0}
            elif kind.resource == "daskclusters":
                obj["status"] = {"phase": "Created"}
            elif kind.resource == "services":
                meta.pop("generation")
                default_service(obj, f"10.96.{self._rv // 250 % 250}.{self._rv % 250 + 1}")
            else:
                meta.pop("generation")
            stored = self._put(kind.resource, namespace, obj, "ADDED")
            if kind.resource in ("jobs", "pods") and not self._stopping.is_set():
                run = JobRun(namespace, name, uid)
                self._runs[uid] = run
                if kind.resource == "jobs":
                    self._start_job(run)
                else:
                    run.bare = True
                    self._start_pod(run)
            return stored

    def _delete(self, kind: Kind, namespace: str, name: str, policy: str | None) -> JSON:
        with self._lock:
            self._require_namespace(namespace)
            obj = self._objects.get((kind.resource, namespace, name))
            if obj is None:
                raise not_found_error(kind, name)
            uid = obj["metadata"]["uid"]
            details = {"name": name, "group": kind.group, "kind": kind.resource, "uid": uid}
            success: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success", "details": details}
            if kind.resource == "pods":
                return self._delete_pod(obj)
            if kind.resource == "services":  # the registry returns the deleted Service
                return self._put(kind.resource, namespace, copy.deepcopy(obj), "DELETED")
            if kind.resource != "jobs":
                self._put(kind.resource, namespace, copy.deepcopy(obj), "DELETED")
                return success
            # batch/v1 Jobs default to orphaning their pods when deleted through the API.
            policy = policy or "Orphan"
            if policy not in ("Orphan", "Background"):
                raise invalid_error(kind, name, [("propagationPolicy",
                                             f'Unsupported value: "{policy}"')])
            run = self._runs.get(uid)
            if policy == "Orphan":
                for pod in self._list("pods", namespace, Selector("pods", None, None)):
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
            self._put("jobs", namespace, copy.deepcopy(obj), "DELETED")
        # Kill the container and garbage-collect pods outside the lock.
        if run is not None:
            run.cancel.set()
            if run.thread is not None:
                run.thread.join(self.termination_grace_seconds + 5)
        with self._lock:
            for pod in self._list("pods", namespace, Selector("pods", None, None)):
                if any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or []):
                    bare = self._runs.get(pod["metadata"]["uid"])
                    if bare is not None and bare.bare:  # a pod of its own: stopped gracefully
                        self._delete_pod(pod)
                        continue
                    self._put("pods", namespace, pod, "DELETED")
                    self._logs.pop((namespace, pod["metadata"]["name"]), None)
            # The garbage collector: other dependents of the Job (e.g. Services) go too.
            for (resource, ons, _), other in list(self._objects.items()):
                if resource not in ("pods", "jobs", "namespaces") and ons == namespace and any(
                        r.get("uid") == uid for r in other["metadata"].get("ownerReferences")
                        or []):
                    self._put(resource, namespace, copy.deepcopy(other), "DELETED")
            self._runs.pop(uid, None)
        return success

    def _delete_pod(self, pod: JSON) -> JSON:
        """Delete a pod (lock held). A pod created through the API whose container runs is
        deleted gracefully like on a real node: the answer is the pod with its
        ``deletionTimestamp``; the kubelet stops the container (SIGTERM, grace period,
        SIGKILL) and only then the pod disappears. Other pods go at once; a Job's pod is
        not deletable through the fake (405)."""
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        run = self._runs.get(meta["uid"])
        if run is None or not run.bare:
            if "job-name" in (meta.get("labels") or {}):
                raise KubeAPIError(405, "MethodNotAllowed", "the fake deletes a Job's pods "
                                   "only with the Job")
            self._put("pods", ns, copy.deepcopy(pod), "DELETED")
            self._logs.pop((ns, name), None)
            return pod
        if not meta.get("deletionTimestamp"):
            pod = copy.deepcopy(pod)
            pod["metadata"]["deletionTimestamp"] = utc_timestamp()
            pod["metadata"]["deletionGracePeriodSeconds"] = int(
                pod["spec"].get("terminationGracePeriodSeconds", 30))
            pod = self._put("pods", ns, pod, "MODIFIED")
        run.cancel.set()
        return pod

    def _merge_patch(self, kind: Kind, namespace: str, name: str, patch: Any) -> JSON:
        """A JSON merge patch of an InferenceService, validated as a create is."""
        if not isinstance(patch, dict):
            raise bad_request_error("the body of the request was in an unknown format")
        with self._lock:
            obj = self._objects.get((kind.resource, namespace, name))
            if obj is None:
                raise not_found_error(kind, name)
            merged = kserve.merge_patch(copy.deepcopy(obj), patch)
            errors = kserve.schema_errors(merged)
            if errors:
                raise invalid_error(kind, name, errors)
            for key in ("uid", "name", "namespace", "creationTimestamp"):
                merged["metadata"][key] = obj["metadata"][key]
            if merged.get("spec") != obj.get("spec"):
                merged["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            return self._put(kind.resource, namespace, merged, "MODIFIED")

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

