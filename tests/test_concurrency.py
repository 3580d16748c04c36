"""Several processes write to one store at once: nothing is lost or corrupted.

Runs on the backends shared between processes: local, gcs, s3. The memory
filesystem lives inside one process, so it cannot be shared and is exempt.
Note: gcp-storage-emulator does not enforce ``ifGenerationMatch=0`` (see
docs/storage.md), so on gcs the same-id race is last-writer-wins there; the
ids and the content are the same, so the outcome checked here is too.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from tests import _workers
from tests.conftest import SHARED_BACKENDS, emulator_for

WRITERS = 8
#: Bound of one whole round of writers (seconds).
ROUND_TIMEOUT = 120


@pytest.fixture(scope="module")
def pool(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Eight spawned worker processes, shared by every backend of this module."""
    # Start the emulators first: spawned children inherit their AWS_* environment.
    for name in ("gcs", "s3"):
        emulator_for(request, name)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as p:
        yield p
        p.close()
        p.join()


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_concurrent_writers_lose_nothing(pool: Any, store_uri: str,
                                         storage_options: dict[str, Any]) -> None:
    jobs = [(store_uri, storage_options, i) for i in range(WRITERS)]
    results = pool.map_async(_workers.writer, jobs).get(timeout=ROUND_TIMEOUT)

    versioner, registry, monitor = _workers.stores(store_uri, storage_options)
    own = {vid for r in results for vid in r["own"]}
    shared = {r["shared"] for r in results}
    assert len(own) == 2 * WRITERS
    assert len(shared) == 1, "the same DataFrame must end as one version"
    listed = versioner.list_versions()
    assert sorted(listed) == sorted(own | shared)
    for vid in own | shared:  # every version loads, intact
        df, manifest = versioner.load(vid)
        assert len(df) == manifest["rows"] == 50
    objects = versioner.store.walk("objects")
    assert len(objects) == 2 * WRITERS + 1, "one object per distinct content"

    models = set(registry.list_versions())
    assert models == {f"model-w{i}" for i in range(WRITERS)}
    for i in range(WRITERS):
        model, record = registry.load(f"model-w{i}")
        assert model == {"weights": list(range(i + 1)), "writer": i}
        assert record["metadata"] == {"writer": i}

    history = monitor.get_history()
    assert len(history) == WRITERS
    assert sorted(h["model_version"] for h in history) == sorted(models)
