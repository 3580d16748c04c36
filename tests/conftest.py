"""Shared fixtures: every storage-dependent suite runs on each backend that runs here.

The ``gcs`` and ``s3`` backends are real servers: ``gcp-storage-emulator`` and
moto's server, each started once per session as a subprocess on a free port of
127.0.0.1 and stopped at the end. Every test gets a fresh bucket on them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Must be set before gcsfs is imported anywhere (see TESTING.md).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec
import pytest

from mlops.config import Config

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Backends every storage-dependent suite is parametrized over.
BACKENDS = ["local", "memory", "gcs", "s3"]
#: Backends that are servers shared by every process (the memory one is per process).
SHARED_BACKENDS = ["local", "gcs", "s3"]
#: Seconds an emulator may take to answer on its port.
EMULATOR_START_TIMEOUT = 30.0


def skip_or_fail(reason: str) -> None:
    """Skip a test whose real part is missing; in CI a missing part is a failure."""
    if IN_CI:
        pytest.fail(f"required test dependency missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_memory_fs() -> Iterator[None]:
    """fsspec's memory filesystem is global: clear it before and after each test."""
    mem = fsspec.filesystem("memory")
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")
    yield
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_STORAGE_URI", raising=False)
    monkeypatch.delenv("MLOPS_DASK_ADDRESS", raising=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before answering")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on 127.0.0.1:{port} "
                       f"within {EMULATOR_START_TIMEOUT:.0f}s")


@dataclass
class Emulator:
    """A running storage emulator: its endpoint, fsspec options and env."""

    name: str
    scheme: str
    endpoint: str
    options: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def filesystem(self) -> Any:
        """A fresh (uncached) fsspec filesystem on the emulator."""
        return fsspec.filesystem(self.scheme, skip_instance_cache=True,
                                 use_listings_cache=False, **self.options)

    def new_bucket(self) -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"mlops-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name

    def uri(self, bucket: str, prefix: str = "store") -> str:
        """The store URI of ``prefix`` in ``bucket``."""
        return f"{self.scheme}://{bucket}/{prefix}"


def _start(name: str, argv: list[str], port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which(argv[0], path=os.path.dirname(sys.executable)) or shutil.which(argv[0])
    if exe is None:
        skip_or_fail(f"{argv[0]} is not installed (pip install the dev extras)")
    proc = subprocess.Popen([str(exe), *argv[1:]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, name)
    except RuntimeError:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    """gcp-storage-emulator on 127.0.0.1 (in memory) for the whole session."""
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        skip_or_fail("gcsfs is not installed (pip install mlops[gcs])")
    port = free_port()
    proc = _start("gcp-storage-emulator", ["gcp-storage-emulator", "start", "--host=127.0.0.1",
                                           f"--port={port}", "--in-memory"], port)
    endpoint = f"http://127.0.0.1:{port}"
    # token="anon": the emulator needs no credentials (real GCS: Workload Identity).
    emu = Emulator("gcs", "gs", endpoint,
                   {"endpoint_url": endpoint, "token": "anon", "project": "test"}, proc=proc)
    yield emu
    _stop(proc)


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Emulator]:
    """moto's S3 server on 127.0.0.1 for the whole session.

    Credentials come from the environment, as in production: dummy AWS_* values
    are set for the session (and inherited by subprocesses), never in options.
    """
    try:
        import s3fs  # noqa: F401
    except ImportError:
        skip_or_fail("s3fs is not installed (pip install mlops[s3])")
    port = free_port()
    proc = _start("moto_server", ["moto_server", "-H", "127.0.0.1", "-p", str(port)], port)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in [*env, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(env)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    endpoint = f"http://127.0.0.1:{port}"
    yield Emulator("s3", "s3", endpoint, {"endpoint_url": endpoint}, env=env, proc=proc)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _stop(proc)


def emulator_for(request: pytest.FixtureRequest, backend: str) -> Emulator | None:
    """The session emulator of ``backend`` (started on first use), or None."""
    if backend == "gcs":
        return request.getfixturevalue("gcs_emulator")  # type: ignore[no-any-return]
    if backend == "s3":
        return request.getfixturevalue("s3_emulator")  # type: ignore[no-any-return]
    return None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the storage backend under test."""
    return str(request.param)


@pytest.fixture
def store_uri(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store root on the backend under test (a new bucket on gcs/s3)."""
    if backend == "local":
        return str(tmp_path / "store")
    if backend == "memory":
        return f"memory://mlops-{uuid.uuid4().hex[:8]}"
    emu = emulator_for(request, backend)
    if emu is None:
        raise AssertionError(f"unknown backend {backend}")
    return emu.uri(emu.new_bucket())


@pytest.fixture
def storage_options(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """fsspec options of the backend under test (endpoint of the emulator on gcs/s3)."""
    emu = emulator_for(request, backend)
    return dict(emu.options) if emu is not None else {}


@pytest.fixture
def make_config(store_uri: str, storage_options: dict[str, Any]) -> Any:
    """Build a Config on the store under test: ``make_config(data={...}, ...)``."""
    def build(**sections: dict[str, Any]) -> Config:
        doc: dict[str, Any] = {"storage": {"uri": store_uri, "options": storage_options}}
        for name, values in sections.items():
            doc[name] = {**doc.get(name, {}), **values}
        return Config.from_dict(doc)
    return build
