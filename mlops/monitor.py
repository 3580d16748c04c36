"""ModelMonitor: the metrics history, the reference distribution and the retrain decision.

Layout below the monitor's folder:

    <metrics stem>/<time>-<uuid>.json   one object per record: object stores have no
                                        append, and two writers never touch the same object
    <drift_file>                        the reference feature distribution (replaced whole)

Drift (the ``mean_l1`` rule) is the relative L1 distance of feature means over the
features the current batch shares with the reference::

    drift = sum(|current_i - reference_i|) / sum(|reference_i|)

When every shared reference mean is 0 the denominator is replaced by 1, so the
score is the absolute L1 distance ``sum(|current_i|)`` (0 when nothing moved)
rather than a division by zero. No reference, or no shared feature, gives 0.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlops.catalog import compact, iso, utc_now
from mlops.storage import Store, as_store

NO_MODEL = "no_model"
LOW_ACCURACY = "low_accuracy"
DRIFT = "drift"


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why.

    Attributes:
        retrain: True when any reason applies.
        reasons: Subset of ``no_model``, ``low_accuracy``, ``drift``, in that order.
        accuracy: The current model's accuracy on the new data (None without a model).
        drift: The drift score (0.0 without a reference).
        drift_counted: False when the batch was too small for drift to count.
        n_samples: Rows in the batch (None when unknown).
    """

    retrain: bool
    reasons: tuple[str, ...]
    accuracy: float | None
    drift: float
    drift_counted: bool
    n_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainDecision:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "reasons": tuple(data.get("reasons", ()))})


class ModelMonitor:
    """Records metrics and decides when to retrain.

    Args:
        monitoring_dir: A path, URI or :class:`~mlops.storage.Store`.
        metrics_file: Name of the metrics history; its stem names the records' folder.
        drift_file: Name of the reference distribution object.
        accuracy_min_threshold: Retrain below this accuracy.
        drift_threshold: Retrain above this drift score.
        drift_min_samples: Drift counts only for batches of at least this many rows.
        storage_options: fsspec options when ``monitoring_dir`` is a URI.
    """

    def __init__(self, monitoring_dir: str | os.PathLike[str] | Store = "monitoring",
                 metrics_file: str = "metrics.json", drift_file: str = "reference.json",
                 accuracy_min_threshold: float = 0.7, drift_threshold: float = 0.1,
                 drift_min_samples: int = 100,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.store = as_store(monitoring_dir, storage_options)
        stem = os.path.splitext(os.path.basename(metrics_file))[0] or "metrics"
        self.metrics_prefix = stem
        self.drift_key = os.path.basename(drift_file) or "reference.json"
        self.accuracy_min_threshold = float(accuracy_min_threshold)
        self.drift_threshold = float(drift_threshold)
        self.drift_min_samples = int(drift_min_samples)

    # --- history -----------------------------------------------------------------------
    def record_metrics(self, accuracy: float, data_version: str | None = None,
                       model_version: str | None = None,
                       extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append one record to the history (one new object; never overwrites).

        Returns:
            The record written.
        """
        now = utc_now()
        record = {
            "timestamp": iso(now),
            "accuracy": float(accuracy),
            "data_version": data_version,
            "model_version": model_version,
            **dict(extra or {}),
        }
        key = f"{self.metrics_prefix}/{compact(now)}-{uuid.uuid4().hex[:12]}.json"
        self.store.write_json(key, record, exclusive=True)
        return record

    def get_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records oldest first (the last ``limit`` ones when given)."""
        names = [n for n in self.store.list(self.metrics_prefix) if n.endswith(".json")]
        if limit is not None:
            names = names[-limit:] if limit > 0 else []
        return [self.store.read_json(f"{self.metrics_prefix}/{n}") for n in names]

    def get_latest_accuracy(self) -> float | None:
        """Accuracy of the newest record, or None when the history is empty."""
        latest = self.get_history(limit=1)
        return float(latest[0]["accuracy"]) if latest else None

    # --- reference ---------------------------------------------------------------------
    def update_reference_distribution(self, feature_means: Mapping[str, float],
                                      **extra: Any) -> None:
        """Replace the reference distribution (after a retrain)."""
        doc = {"updated_at": iso(utc_now()),
               "feature_means": {str(k): float(v) for k, v in feature_means.items()},
               **extra}
        self.store.write_json(self.drift_key, doc)

    def get_reference(self) -> dict[str, Any] | None:
        """The reference document, or None when none was recorded."""
        try:
            doc = self.store.read_json(self.drift_key)
        except FileNotFoundError:
            return None
        return doc if isinstance(doc, dict) else None

    def compute_drift(self, feature_means: Mapping[str, float]) -> float:
        """Relative L1 distance of ``feature_means`` from the reference (see module doc)."""
        reference = self.get_reference()
        if reference is None:
            return 0.0
        return relative_l1(reference.get("feature_means", {}), feature_means)

    # --- decision ----------------------------------------------------------------------
    def decide(self, current_accuracy: float | None,
               current_feature_means: Mapping[str, float], no_model_yet: bool,
               n_samples: int | None = None) -> RetrainDecision:
        """The retrain decision with its reasons.

        Args:
            current_accuracy: The current model's accuracy on the new data.
            current_feature_means: Feature means of the new data.
            no_model_yet: True when no model exists.
            n_samples: Rows in the new data; drift counts only when None or at least
                ``drift_min_samples``.
        """
        reasons = []
        if no_model_yet:
            reasons.append(NO_MODEL)
        if current_accuracy is not None and current_accuracy < self.accuracy_min_threshold:
            reasons.append(LOW_ACCURACY)
        drift = self.compute_drift(current_feature_means)
        counted = n_samples is None or n_samples >= self.drift_min_samples
        if counted and drift > self.drift_threshold:
            reasons.append(DRIFT)
        return RetrainDecision(retrain=bool(reasons), reasons=tuple(reasons),
                               accuracy=current_accuracy, drift=drift, drift_counted=counted,
                               n_samples=n_samples)

    def should_retrain(self, current_accuracy: float | None,
                       current_feature_means: Mapping[str, float], no_model_yet: bool,
                       n_samples: int | None = None) -> bool:
        """True when there is no model, accuracy is low, or (counted) drift is high."""
        return self.decide(current_accuracy, current_feature_means, no_model_yet,
                           n_samples).retrain


def relative_l1(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """``sum|current - reference| / sum|reference|`` over shared keys (see module doc)."""
    shared = [k for k in reference if k in current]
    if not shared:
        return 0.0
    num = sum(abs(float(current[k]) - float(reference[k])) for k in shared)
    den = sum(abs(float(reference[k])) for k in shared)
    score = num / den if den > 0 else num
    return score if math.isfinite(score) else math.inf
