"""The retrain and promotion rules that use the gating metric, and a model's lineage.

* :func:`gate`: the gating metric of a task (``monitoring.metric``) and its limit
  (``monitoring.metric_threshold``; for ``accuracy`` it defaults to
  ``accuracy_min_threshold``).
* :func:`promotion_decision`: a challenger replaces the champion when nothing serves,
  or when it meets the limit and is at least as good as the champion on the same
  held-out rows (give or take ``promotion.tolerance``).
* :func:`rejected_before`: a challenger already rejected on a data version with the
  same config (same :func:`config_fingerprint`) is not trained again.

The retrain reasons themselves are decided in one place, :meth:`mlops.monitor.
ModelMonitor.decide` (their names are re-exported here).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from typing import Any

from mlops.config import Config
from mlops.data import CLASSIFICATION, NUMERIC
from mlops.gating import (
    METRICS,
    SERVING_BELOW_THRESHOLD,
    at_least_as_good,
    gate,
    higher_is_better,
    meets_threshold,
)
from mlops.monitor import (
    LOW_ACCURACY,
    LOW_SCORE,
    REJECTED_BEFORE,
    SCHEMA_CHANGE,
    low_score_reason,
)
from mlops.records import ModelRecord
from mlops.registry import ModelRegistry
from mlops.schema import ColumnSchema, InputSchema


def promotion_decision(challenger_score: float | None, champion: str | None,
                       champion_score: float | None, tolerance: float,
                       metric: str = "accuracy",
                       threshold: float | None = None) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why (for the alias history).

    Args:
        challenger_score: The challenger's ``metric`` on the held-out split.
        champion: The serving version (None when no model serves yet).
        champion_score: The champion's ``metric`` on the same split (None when it could
            not be evaluated).
        tolerance: ``promotion.tolerance`` (in units of the metric).
        metric: The gating metric.
        threshold: Its limit (None: no limit).

    Returns:
        ``(promote, reason)``.
    """
    if champion is None:
        return True, "first model: nothing serves yet"
    shown = "n/a" if challenger_score is None else f"{challenger_score:.4f}"
    if not meets_threshold(challenger_score, threshold, metric):
        limit = "minimum" if higher_is_better(metric) else "maximum"
        return False, (f"challenger {metric} {shown} does not meet monitoring.metric_threshold "
                       f"({limit} {threshold:g}); champion {champion} keeps serving")
    if champion_score is None:
        return True, f"champion {champion} cannot be evaluated on this data"
    if challenger_score is None:
        return False, f"challenger {metric} is undefined on the held-out split"
    promote = at_least_as_good(challenger_score, champion_score, metric, tolerance)
    better = higher_is_better(metric)
    op = (">=" if promote else "<") if better else ("<=" if promote else ">")
    sign = "-" if better else "+"
    return promote, (f"challenger {metric} {shown} {op} champion {champion} {metric} "
                     f"{champion_score:.4f} {sign} tolerance {tolerance:g} on the same "
                     "held-out split")


def config_fingerprint(config: Config, task: str) -> str:
    """A short hash of everything in ``config`` that shapes a challenger and its verdict."""
    metric, threshold = gate(config, task)
    doc = {"training": config.to_dict()["training"], "task": task,
           "target": config.data.target_column, "test_size": config.data.test_size,
           "metric": metric, "threshold": threshold,
           "tolerance": config.promotion.tolerance}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rejected_before(registry: ModelRegistry, data_version: str,
                    fingerprint: str) -> ModelRecord | None:
    """The newest model trained on ``data_version`` with config ``fingerprint`` and not
    promoted, or None."""
    for record in registry.list_records():
        facts = record.metadata
        if facts.get("data_version") == data_version \
                and facts.get("config_fingerprint") == fingerprint \
                and facts.get("promote") is False:
            return record
    return None


def schema_of(record: Mapping[str, Any], target: str) -> InputSchema | None:
    """The input schema of a model record; a model saved before schemas were recorded:
    its numeric ``features`` in a classification, or None when it names none (a model
    saved through the library API), so nothing can be compared."""
    meta = record.get("metadata", {})
    if meta.get("schema"):
        return InputSchema.from_dict(meta["schema"])
    if not meta.get("features"):
        return None
    return InputSchema(target=target, task=str(meta.get("task", CLASSIFICATION)),
                       features=tuple(ColumnSchema(str(f), "float64", NUMERIC)
                                      for f in meta["features"]))


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def lineage(data_version: str, source: str,
            source_files: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Where a model came from: its data version and source, and the versions of Python,
    scikit-learn, pandas, NumPy and mlops that trained it."""
    return {"data_version": data_version, "source": source,
            "source_files": [dict(f) for f in source_files],
            "python": platform.python_version(), "scikit_learn": _version("scikit-learn"),
            "pandas": _version("pandas"), "numpy": _version("numpy"), "mlops": _version("mlops")}


__all__ = ["LOW_ACCURACY", "LOW_SCORE", "METRICS", "REJECTED_BEFORE", "SCHEMA_CHANGE",
           "SERVING_BELOW_THRESHOLD", "config_fingerprint", "gate", "lineage",
           "low_score_reason", "promotion_decision", "rejected_before", "schema_of"]
