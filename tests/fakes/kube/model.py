"""Values shared by the fake API server: kinds, errors as ``Status`` objects, names."""

from __future__ import annotations

import datetime
import re
import secrets
import subprocess
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

JSON = dict[str, Any]

DEFAULT_USER = "system:serviceaccount:mlops:mlops-controller"
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")



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


class Kind(NamedTuple):
    """A resource the server serves: name, group, version, kind, namespaced."""
    resource: str
    group: str
    version: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``resource.group`` as in error messages (``jobs.batch``)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


KINDS: dict[str, Kind] = {
    "jobs": Kind("jobs", "batch", "v1", "Job", True),
    "pods": Kind("pods", "", "v1", "Pod", True),
    "configmaps": Kind("configmaps", "", "v1", "ConfigMap", True),
    "secrets": Kind("secrets", "", "v1", "Secret", True),
    "services": Kind("services", "", "v1", "Service", True),
    "namespaces": Kind("namespaces", "", "v1", "Namespace", False),
    "events": Kind("events", "events.k8s.io", "v1", "Event", True),
    "replicasets": Kind("replicasets", "apps", "v1", "ReplicaSet", True),
    "daskclusters": Kind("daskclusters", "kubernetes.dask.org", "v1", "DaskCluster", True),
    "inferenceservices": Kind("inferenceservices", "serving.kserve.io", "v1beta1",
                              "InferenceService", True),
}
#: URL prefix of each API group served.
GROUP_PREFIX = {"": "/api/v1", "batch": "/apis/batch/v1",
                "events.k8s.io": "/apis/events.k8s.io/v1", "apps": "/apis/apps/v1",
                "kubernetes.dask.org": "/apis/kubernetes.dask.org/v1",
                "serving.kserve.io": "/apis/serving.kserve.io/v1beta1"}
KIND_BY_NAME = {k.kind: k for k in KINDS.values()}
FIELDS: dict[str, set[str]] = {
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
    "services": {"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"},
    "namespaces": {"metadata.name", "status.phase"},
    "events": {"metadata.name", "metadata.namespace", "reason", "type", "regarding.name"},
    "replicasets": {"metadata.name", "metadata.namespace", "status.replicas"},
    "daskclusters": {"metadata.name", "metadata.namespace"},
    "inferenceservices": {"metadata.name", "metadata.namespace"},
}


def utc_timestamp() -> str:
    """Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(n: int = 5) -> str:
    """A generateName suffix from the apimachinery alphabet."""
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def not_found_error(kind: Kind, name: str) -> KubeAPIError:
    """404 NotFound for an object of ``kind``."""
    return KubeAPIError(
        404,
        "NotFound",
        f'{kind.qualified} "{name}" not found',
        {"name": name, "group": kind.group, "kind": kind.resource},
    )


def namespace_not_found_error(namespace: str) -> KubeAPIError:
    """404 NotFound for a namespace that does not exist."""
    return KubeAPIError(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        {"name": namespace, "kind": "namespaces"},
    )


def bad_request_error(message: str) -> KubeAPIError:
    """400 BadRequest with ``message``."""
    return KubeAPIError(400, "BadRequest", message)


def invalid_error(kind: Kind, name: str, errors: list[tuple[str, str]]) -> KubeAPIError:
    """422 Invalid listing the field errors, worded like the real server."""
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



# --------------------------------------------------------------------------- job runtime


class JobRun:
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
        #: A pod created through the API (not a Job's): its name is ``name``.
        self.bare = False


