"""HTTP: routing, authentication, access checks, injected faults, lists, logs and watches."""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.fakes.kube.model import (
    GROUP_PREFIX,
    JSON,
    KIND_BY_NAME,
    KINDS,
    Kind,
    KubeAPIError,
    RequestRecord,
    bad_request_error,
    not_found_error,
)
from tests.fakes.kube.selectors import Selector
from tests.fakes.kube.store import ObjectStore

_MAX_FAULTS = 1000
#: Resources that can be created and deleted through the API.
_WRITABLE = ("jobs", "configmaps", "secrets", "events", "pods", "services", "replicasets",
             "daskclusters", "inferenceservices")


class _Fault(NamedTuple):
    method: str
    path_prefix: str
    status: int
    message: str | None
    retry_after: int | None


_FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}





def _grants(allowed: Any, value: str) -> bool:
    return isinstance(allowed, list) and (value in allowed or "*" in allowed)


class Router(ObjectStore):
    """Serves the API over HTTP."""

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Deny ``verb`` on ``resource`` (e.g. ``"jobs"``, ``"pods/log"``), optionally per ns."""
        with self._lock:
            self._forbidden.add((verb, resource, namespace))

    def allow(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Undo a matching ``forbid``."""
        with self._lock:
            self._forbidden.discard((verb, resource, namespace))

    def inject_faults(
        self,
        method: str,
        path_prefix: str,
        status: int,
        count: int = 1,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching (method or ``"*"``, path prefix) with
        ``status``.

        ``retry_after`` adds a ``Retry-After`` header: note that urllib3 (under the kubernetes
        client) then transparently retries 413/429/503 answers, up to 3 times.
        """
        if not 1 <= count <= _MAX_FAULTS:
            raise ValueError(f"count must be in 1..{_MAX_FAULTS}")
        fault = _Fault(method.upper(), path_prefix, status, message, retry_after)
        with self._lock:
            self._faults.append([fault, count])

    def clear_faults(self) -> None:
        """Remove all pending injected faults."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received so far (last 10000)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ HTTP dispatch

    def use_role(self, role: JSON | None) -> None:
        """Authorize every request against this RBAC Role (e.g. the one the chart renders).

        The user is then allowed exactly what the Role's rules grant in the Role's
        namespace (nothing elsewhere); ``None`` goes back to allowing everything not
        :meth:`forbid`-den.
        """
        with self._lock:
            self._role = copy.deepcopy(role) if role is not None else None

    def _allowed(self, verb: str, group: str, resource: str, namespace: str | None,
                 name: str | None) -> bool:
        with self._lock:
            if any(v == verb and r == resource and (n is None or n == namespace)
                   for v, r, n in self._forbidden):
                return False
            role = self._role
        if role is None:
            return True
        if namespace is None or namespace != role["metadata"].get("namespace"):
            return False
        for rule in role.get("rules") or []:
            names = rule.get("resourceNames")
            if _grants(rule.get("verbs"), verb) and _grants(rule.get("apiGroups"), group) \
                    and _grants(rule.get("resources"), resource) and (not names or name in names):
                return True
        return False

    def _check_access(self, verb: str, kind: Kind, namespace: str | None, name: str | None,
                      sub: str | None) -> None:
        resource = kind.resource + (f"/{sub}" if sub else "")
        if self._allowed(verb, kind.group, resource, namespace, name):
            return
        what = f'{kind.qualified} "{name}"' if name else kind.qualified
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        raise KubeAPIError(
            403, "Forbidden",
            f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" in '
            f'API group "{kind.group}"{where}',
            {"name": name, "group": kind.group, "kind": kind.resource} if name else
            {"group": kind.group, "kind": kind.resource},
        )

    def _check_owner_references(self, kind: Kind, namespace: str, obj: JSON) -> None:
        """The OwnerReferencesPermissionEnforcement admission plugin (when enabled).

        Setting ownerReferences needs ``delete`` on the object itself, and setting
        ``blockOwnerDeletion`` needs ``update`` on the owner's ``finalizers`` subresource;
        the answer and its wording are the real plugin's.
        """
        refs = obj["metadata"].get("ownerReferences") or []
        if not self.enforce_owner_references or not refs:
            return
        name = str(obj["metadata"].get("name"))
        details = {"name": name, "group": kind.group, "kind": kind.resource}
        prefix = f'{kind.qualified} "{name}" is forbidden: '
        if not self._allowed("delete", kind.group, kind.resource, namespace, name):
            raise KubeAPIError(403, "Forbidden", prefix + "cannot set an ownerRef on a resource "
                               "you can't delete: , <nil>", details)
        for ref in refs:
            if not ref.get("blockOwnerDeletion"):
                continue
            owner = KIND_BY_NAME.get(str(ref.get("kind")))
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            resource = f"{owner.resource if owner else str(ref.get('kind')).lower() + 's'}"
            if not self._allowed("update", group, resource + "/finalizers", namespace,
                                 ref.get("name")):
                raise KubeAPIError(403, "Forbidden", prefix + "cannot set blockOwnerDeletion "
                                   "if an ownerReference refers to a resource you can't set "
                                   "finalizers on: , <nil>", details)

    def _take_fault(self, method: str, path: str) -> KubeAPIError | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if fault.method in ("*", method) and path.startswith(fault.path_prefix):
                    entry[1] = remaining - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                    reason = _FAULT_REASONS.get(fault.status, "InternalError")
                    msg = fault.message or f"injected fault: {reason}"
                    headers = {} if fault.retry_after is None else {
                        "Retry-After": str(fault.retry_after)}
                    return KubeAPIError(fault.status, reason, msg, headers=headers)
        return None

    def _version(self) -> JSON:
        major, minor = self.kube_version.split(".")[:2]
        return {"major": major, "minor": minor, "gitVersion": f"v{self.kube_version}",
                "gitCommit": "fake", "gitTreeState": "clean",
                "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22.0",
                "compiler": "gc", "platform": "linux/amd64"}

    def handle(self, handler: Handler, method: str) -> None:
        """Serve one HTTP request (called by the request handler thread)."""
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append(RequestRecord(method, path, query))
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
            if path in ("/healthz", "/livez", "/readyz") and method == "GET":
                handler.send_text(200, "ok")
                return
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                raise KubeAPIError(401, "Unauthorized", "Unauthorized")
            fault = self._take_fault(method, path)
            if fault is not None:
                raise fault
            if path == "/version" and method == "GET":
                handler.send_json(200, self._version())
                return
            self._route(handler, method, path, query, body)
        except KubeAPIError as e:
            handler.send_json(e.code, e.status(), e.headers)

    def _route(self, handler: Handler, method: str, path: str, query: dict[str, str],
               body: bytes) -> None:
        m = re.fullmatch(
            r"/(?:api/v1|apis/batch/v1|apis/events\.k8s\.io/v1|apis/apps/v1|"
            r"apis/kubernetes\.dask\.org/v1|apis/serving\.kserve\.io/v1beta1)"
            r"(?:/namespaces/([^/]+))?/([a-z]+)"
            r"(?:/([^/]+))?(?:/(\w+))?", path)
        if m is None:
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name, sub = m.groups()
        group_prefix = "/".join(path.split("/")[:4]) if path.startswith("/apis/") else "/api/v1"
        if resource == "namespaces" and ns is None:
            resource, ns, name = "namespaces", None, name
        elif ns is not None and resource is None:
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        kind = KINDS.get(resource)
        prefix = GROUP_PREFIX[kind.group] if kind is not None else "/api/v1"
        if kind is None or prefix != group_prefix or (kind.namespaced and ns is None and name) \
                or (sub not in (None, "status", "log")) or (sub == "log" and resource != "pods") \
                or (sub is not None and name is None):
            raise KubeAPIError(404, "NotFound", "the server could not find the requested resource")
        watching = query.get("watch") in ("true", "1")
        if method == "GET" and name is None:
            verb = "watch" if watching else "list"
        else:
            verb = {"GET": "get", "POST": "create", "DELETE": "delete", "PUT": "update",
                    "PATCH": "patch"}.get(method, method.lower())
        if method == "POST" and name is not None:
            raise KubeAPIError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
        self._check_access(verb, kind, ns, name, sub)
        if ns is not None:
            with self._lock:
                self._require_namespace(ns)
        selector = Selector(kind.resource, query.get("labelSelector"),
                             query.get("fieldSelector"))
        if verb == "watch":
            self._watch(handler, kind, ns, selector, query)
        elif verb == "list":
            self._send_list(handler, kind, ns, selector, query)
        elif verb == "get" and sub == "log":
            self._send_log(handler, str(ns), str(name), query)
        elif verb == "get":
            obj = self.get_object(kind.resource, ns or "", str(name))
            if obj is None:
                raise not_found_error(kind, str(name))
            handler.send_json(200, obj)
        elif verb == "create" and sub is None and kind.resource in _WRITABLE:
            try:
                doc = json.loads(body or b"null")
            except ValueError as e:
                raise bad_request_error(f"error decoding request body: {e}") from None
            handler.send_json(201, self._create(kind, str(ns), doc))
        elif verb == "patch" and sub is None and kind.resource == "inferenceservices":
            # Custom resources take JSON merge patches (no strategic merge patch).
            ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/merge-patch+json":
                raise KubeAPIError(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - "
                                   f"accepted media types include: application/merge-patch+json"
                                   f" (got {ctype or 'none'})")
            try:
                doc = json.loads(body or b"null")
            except ValueError as e:
                raise bad_request_error(f"error decoding request body: {e}") from None
            handler.send_json(200, self._merge_patch(kind, str(ns), str(name), doc))
        elif verb == "delete" and sub is None and kind.resource in _WRITABLE:
            policy = query.get("propagationPolicy")
            if body:
                with contextlib.suppress(ValueError, AttributeError):
                    policy = json.loads(body).get("propagationPolicy") or policy
                    if json.loads(body).get("orphanDependents") is True:
                        policy = policy or "Orphan"
            headers = {}
            if policy is None and kind.resource == "jobs":
                headers["Warning"] = (
                    '299 - "child pods are preserved by default when jobs are deleted; set '
                    'propagationPolicy=Background to remove them or set propagationPolicy='
                    'Orphan to suppress this warning"')
            handler.send_json(200, self._delete(kind, str(ns), str(name), policy), headers)
        else:
            raise KubeAPIError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")

    def _send_list(self, handler: Handler, kind: Kind, ns: str | None, selector: Selector,
                   query: dict[str, str]) -> None:
        with self._lock:
            rv = self._rv
            items = self._list(kind.resource, ns, selector)
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        meta: JSON = {"resourceVersion": str(rv)}
        handler.send_json(200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                                "metadata": meta, "items": items})

    def _send_log(self, handler: Handler, ns: str, name: str, query: dict[str, str]) -> None:
        pod = self.get_object("pods", ns, name)
        if pod is None:
            raise not_found_error(KINDS["pods"], name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        cname = query.get("container") or names[0]
        if cname not in names:
            raise bad_request_error(f"container {cname} is not valid for pod {name}")
        state = pod["status"]["containerStatuses"][0]["state"]
        if "waiting" in state:
            raise bad_request_error(f'container "{cname}" in pod "{name}" is waiting to start: '
                               f'{state["waiting"].get("reason", "ContainerCreating")}')
        text = self.pod_log(ns, name)
        tail = query.get("tailLines")
        if tail:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        handler.send_raw(200, text.encode(), "text/plain")

    def _watch(self, handler: Handler, kind: Kind, ns: str | None, selector: Selector,
               query: dict[str, str]) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        end = time.monotonic() + min(max(timeout, 0.0), 3600.0)
        rv_text = query.get("resourceVersion") or ""
        initial: list[JSON] = []
        with self._lock:
            if rv_text in ("", "0"):
                cursor = self._rv
                initial = self._list(kind.resource, ns, selector)
            else:
                try:
                    cursor = int(rv_text)
                except ValueError:
                    raise bad_request_error(f'invalid resource version: "{rv_text}"') from None
        handler.start_chunked(200, "application/json")
        for obj in initial:
            if not handler.write_chunk(event_line("ADDED", obj)):
                return
        while time.monotonic() < end and not self._stopping.is_set():
            lines: list[bytes] = []
            with self._cond:
                if cursor < self._compacted_rv:
                    gone = KubeAPIError(410, "Expired", f"too old resource version: {cursor} "
                                        f"({self._compacted_rv + 1})")
                    handler.write_chunk(event_line("ERROR", gone.status()))
                    break
                for rv, resource, ens, etype, obj, old in self._events:
                    if rv <= cursor or resource != kind.resource or (ns is not None and ens != ns):
                        continue
                    new_match, old_match = selector.matches(obj), selector.matches(old)
                    if etype == "DELETED":
                        if old_match or new_match:
                            lines.append(event_line("DELETED", obj))
                    elif new_match and (etype == "ADDED" or old_match):
                        lines.append(event_line(etype, obj))
                    elif new_match:
                        lines.append(event_line("ADDED", obj))
                    elif old_match:
                        lines.append(event_line("DELETED", obj))
                cursor = self._rv
                if not lines:
                    self._cond.wait(min(0.25, max(0.0, end - time.monotonic())))
            for line in lines:
                if not handler.write_chunk(line):
                    return
        handler.end_chunked()


def event_line(event_type: str, obj: JSON) -> bytes:
    """One watch event as a JSON line."""
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"



class Server(http.server.ThreadingHTTPServer):
    """The HTTP server: a thread per connection, every connection closable at stop."""
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[Handler], api: Router
                 ) -> None:
        self.api = api
        self._conns: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a tracked daemon thread."""
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             daemon=True)
        with self._conn_lock:
            self._conns.add(request)
            self._handler_threads = [h for h in self._handler_threads if h.is_alive()]
            self._handler_threads.append(t)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open connection down (watches included)."""
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, timeout: float) -> None:
        """Wait (bounded) for the handler threads to end."""
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            threads = list(self._handler_threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


class Handler(http.server.BaseHTTPRequestHandler):
    """One HTTP connection; every method is dispatched to the Router."""
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    timeout = 120
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _dispatch(self) -> None:
        try:
            self.server.api.handle(self, self.command)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def send_raw(self, code: int, data: bytes, content_type: str,
                 headers: Mapping[str, str] | None = None) -> None:
        """Send a complete response with Content-Length."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        """Send a JSON response."""
        self.send_raw(code, json.dumps(obj).encode(), "application/json", headers)

    def send_text(self, code: int, text: str) -> None:
        """Send a text/plain response."""
        self.send_raw(code, text.encode(), "text/plain; charset=utf-8")

    def start_chunked(self, code: int, content_type: str) -> None:
        """Start a streaming (chunked) response."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> bool:
        """Write one chunk; False when the client went away."""
        if not data:
            return True
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def end_chunked(self) -> None:
        """Terminate a chunked response."""
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True



