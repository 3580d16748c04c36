"""Shared fixtures: every storage-dependent suite runs on each backend that runs here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from mlops.config import Config

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Backends every storage-dependent suite is parametrized over.
BACKENDS = ["local", "memory"]


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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the storage backend under test."""
    return str(request.param)


@pytest.fixture
def store_uri(backend: str, tmp_path: Path) -> str:
    """A fresh, empty store root on the backend under test."""
    if backend == "local":
        return str(tmp_path / "store")
    if backend == "memory":
        return f"memory://mlops-{uuid.uuid4().hex[:8]}"
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture
def storage_options(backend: str) -> dict[str, Any]:
    """fsspec options of the backend under test."""
    return {}


@pytest.fixture
def make_config(store_uri: str, storage_options: dict[str, Any]) -> Any:
    """Build a Config on the store under test: ``make_config(data={...}, ...)``."""
    def build(**sections: dict[str, Any]) -> Config:
        doc: dict[str, Any] = {"storage": {"uri": store_uri, "options": storage_options}}
        for name, values in sections.items():
            doc[name] = {**doc.get(name, {}), **values}
        return Config.from_dict(doc)
    return build
