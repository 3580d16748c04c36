"""Functions run in child processes by the concurrency and crash tests.

They live in their own small module so that ``spawn`` children import only this
(and mlops), not a test module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.monitor import ModelMonitor
from mlops.store.filesystem import open_store
from mlops.store.registry import ModelRegistry
from mlops.store.versioner import DataVersioner


def frame(seed: int, rows: int = 50) -> pd.DataFrame:
    """A small DataFrame whose content depends only on ``seed``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.integers(0, 9, size=rows),
                         "target": rng.integers(0, 2, size=rows)})


def stores(uri: str, options: dict[str, Any]) -> tuple[DataVersioner, ModelRegistry,
                                                       ModelMonitor]:
    """The versioner, registry and monitor of the workspace at ``uri``."""
    root = open_store(uri, options)
    return (DataVersioner(root.child("data")), ModelRegistry(root.child("models")),
            ModelMonitor(root.child("monitoring")))


def writer(args: tuple[str, dict[str, Any], int]) -> dict[str, Any]:
    """One concurrent writer: two distinct DataFrames, the shared one, a model, a metric."""
    uri, options, i = args
    versioner, registry, monitor = stores(uri, options)
    own = [versioner.register(frame(1000 + 2 * i)), versioner.register(frame(1001 + 2 * i))]
    shared = versioner.register(frame(7))
    model = {"weights": list(range(i + 1)), "writer": i}
    model_id = registry.save(model, f"model-w{i}", {"writer": i})
    monitor.record_metrics(0.5 + i / 100, data_version=own[0], model_version=model_id)
    return {"own": own, "shared": shared, "model": model_id}


def register_then_crash(uri: str, options: dict[str, Any], seed: int) -> None:
    """Register ``frame(seed)``; MLOPS_TEST_CRASH_AT makes the process die midway."""
    versioner, _, _ = stores(uri, options)
    versioner.register(frame(seed))


def save_then_crash(uri: str, options: dict[str, Any], version_id: str) -> None:
    """Save a model; MLOPS_TEST_CRASH_AT makes the process die midway."""
    _, registry, _ = stores(uri, options)
    registry.save({"crashed": version_id}, version_id)


def train_run(config: Any, run_id: str) -> None:
    """Ingest then train one run (a writer of the promotion race and crash tests)."""
    from mlops import pipeline

    pipeline.ingest(config, run_id)
    pipeline.train(config, run_id)
