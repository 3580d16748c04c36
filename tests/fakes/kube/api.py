"""FakeKubeAPI: the store, the kubelet and the HTTP side put together, and its lifecycle."""

from __future__ import annotations

import collections
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.fakes.kube.model import DEFAULT_USER, JSON, JobRun, RequestRecord
from tests.fakes.kube.server import Handler, Router, Server
from tests.fakes.kube.workloads import Workloads


class FakeKubeAPI(Workloads, Router):
    """In-process Kubernetes API server with a subprocess-based kubelet (see the package doc)."""

    def __init__(
        self,
        namespaces: Iterable[str] = ("default",),
        command_map: Mapping[str, Sequence[str]] | None = None,
        pvc_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        base_env: Mapping[str, str] | None = None,
        user: str = DEFAULT_USER,
        retry_backoff: float = 0.1,
        termination_grace_seconds: float = 2.0,
        event_history: int = 1000,
        max_job_seconds: float = 600.0,
        kube_version: str = "1.30.0",
        enforce_owner_references: bool = False,
        node_cpus: int = 16,
        node_memory: int = 64 * 2**30,
    ) -> None:
        self.command_map: dict[str, list[str]] = {
            k: list(v) for k, v in (command_map or {}).items()
        }
        self.pvc_dirs: dict[str, Path] = {k: Path(v) for k, v in (pvc_dirs or {}).items()}
        self.base_env: dict[str, str] | None = dict(base_env) if base_env is not None else None
        self.user = user
        self.retry_backoff = retry_backoff
        self.termination_grace_seconds = termination_grace_seconds
        self.max_job_seconds = max_job_seconds
        self.kube_version = kube_version
        #: The fake node's allocatable CPUs and memory (bytes): what a resourceFieldRef of a
        #: limit that is not set answers, and the CPU count a process started through
        #: tests.fakes.kube.node sees. Real nodes have more cores than this machine.
        self.node_cpus = node_cpus
        self.node_memory = node_memory
        self.token = secrets.token_hex(16)
        self.kubelet_errors: list[str] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 1000
        self._objects: dict[tuple[str, str, str], JSON] = {}
        self._events: collections.deque[tuple[int, str, str, str, JSON, JSON | None]] = (
            collections.deque(maxlen=max(1, event_history))
        )
        self._compacted_rv = self._rv
        self._logs: dict[tuple[str, str], bytearray] = {}
        self.enforce_owner_references = enforce_owner_references
        self._forbidden: set[tuple[str, str, str | None]] = set()
        self._role: JSON | None = None
        self._faults: list[list[Any]] = []
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=10000)
        self._runs: dict[str, JobRun] = {}
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        for ns in namespaces:
            self.add_namespace(ns)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKubeAPI:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(("127.0.0.1", 0), Handler, self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="fake-kube-api", daemon=True,
        )
        self._serve_thread.start()
        self._start_controllers()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every container process, stop serving and join threads (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            runs = list(self._runs.values())
            self._cond.notify_all()
        self._join_controllers(max(0.1, deadline - time.monotonic()))
        with self._cond:
            runs = list(self._runs.values())
        for run in runs:
            run.cancel.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.1, deadline - time.monotonic()))
        server = self._server
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.join_handlers(max(0.1, deadline - time.monotonic()))
            server.server_close()
            if self._serve_thread is not None:
                self._serve_thread.join(max(0.1, deadline - time.monotonic()))
        self._server = None

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """TCP port the server listens on (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("FakeKubeAPI is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> Path:
        """Write a kubeconfig (JSON, which is YAML) pointing at this server; return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        out = Path(path)
        out.write_text(json.dumps(config, indent=2))
        return out

