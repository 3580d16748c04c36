"""The gate: which metric judges a model, its limit, and how far it may fall (no pandas,
no scikit-learn: ``mlops status`` judges with the same rules as the run).

* :data:`METRICS`: every metric, its task and whether higher is better.
* :func:`gate`: the gating metric of a task (``monitoring.metric``) and its limit
  (``monitoring.metric_threshold``; for ``accuracy`` it defaults to
  ``accuracy_min_threshold``).
* :func:`degradation`: how much worse a model scores now than on its own held-out split
  at training, relative to that score; :func:`degraded` compares it with
  ``monitoring.max_degradation``.
"""

from __future__ import annotations

import math

from mlops.choices import CLASSIFICATION, REGRESSION, Alert
from mlops.config import Config
from mlops.errors import ConfigError

#: Every metric: the task it belongs to and whether higher is better.
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": (CLASSIFICATION, True),
    "balanced_accuracy": (CLASSIFICATION, True),
    "f1_macro": (CLASSIFICATION, True),
    "roc_auc": (CLASSIFICATION, True),
    "log_loss": (CLASSIFICATION, False),
    "rmse": (REGRESSION, False),
    "mae": (REGRESSION, False),
    "r2": (REGRESSION, True),
}
#: The gating metric when ``monitoring.metric`` is null.
DEFAULT_METRIC = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}
#: Metrics whose values lie in [0, 1].
_UNIT_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
#: The retrain reason and alert of a model that fell more than ``max_degradation`` below
#: its own held-out score at training.
DEGRADED = Alert.DEGRADED
#: The alert of a serving model whose score does not meet the limit.
SERVING_BELOW_THRESHOLD = Alert.SERVING_BELOW_THRESHOLD
#: Retrain reason and alert: the serving model cannot be loaded or cannot score the new
#: data (a truncated or tampered artifact, an alias to a missing version).
SERVING_MODEL_UNUSABLE = Alert.SERVING_MODEL_UNUSABLE
#: The smallest baseline a relative degradation is divided by (a held-out r2 of 0.0001
#: would make every wobble look like a collapse).
_MIN_BASELINE = 0.05


def metric_for(task: str, metric: str | None) -> str:
    """The gating metric of ``task`` (``monitoring.metric``, or the task's default).

    Raises:
        ConfigError: The metric belongs to the other task (naming ``monitoring.metric``).
    """
    if metric is None:
        return DEFAULT_METRIC[task]
    if metric not in METRICS:
        raise ConfigError(f"config key 'monitoring.metric': unknown metric '{metric}' (use "
                          f"one of {', '.join(METRICS)})")
    if METRICS[metric][0] != task:
        names = ", ".join(m for m, (t, _) in METRICS.items() if t == task)
        raise ConfigError(f"config key 'monitoring.metric': '{metric}' is not a {task} "
                          f"metric (use one of {names})")
    return metric


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better."""
    return METRICS[metric][1]


def at_least_as_good(a: float, b: float, metric: str, tolerance: float = 0.0) -> bool:
    """Whether score ``a`` is at least as good as ``b`` minus ``tolerance`` for ``metric``."""
    return a >= b - tolerance if higher_is_better(metric) else a <= b + tolerance


def meets_threshold(score: float | None, threshold: float | None, metric: str) -> bool:
    """Whether ``score`` meets ``threshold`` (a minimum, or a maximum for lower-is-better).

    No threshold is always met; no score never is.
    """
    if threshold is None:
        return True
    if score is None or not math.isfinite(score):
        return False
    return score >= threshold if higher_is_better(metric) else score <= threshold


def gate(config: Config, task: str) -> tuple[str, float | None]:
    """The gating metric of ``task`` and its limit (None: no limit).

    Raises:
        ConfigError: ``monitoring.metric`` belongs to the other task, or
            ``monitoring.metric_threshold`` is out of the metric's range.
    """
    m = config.monitoring
    metric = metric_for(task, m.metric)
    threshold = m.metric_threshold
    if threshold is None:
        return metric, m.accuracy_min_threshold if metric == "accuracy" else None
    if metric in _UNIT_METRICS and not 0 <= threshold <= 1:
        raise ConfigError(f"config key 'monitoring.metric_threshold' must be between 0 and 1 "
                          f"for {metric}, got {threshold!r}")
    if metric in ("rmse", "mae", "log_loss") and threshold < 0:
        raise ConfigError(f"config key 'monitoring.metric_threshold' must be >= 0 for "
                          f"{metric}, got {threshold!r}")
    if metric == "r2" and threshold > 1:
        raise ConfigError(f"config key 'monitoring.metric_threshold' must be <= 1 for r2, "
                          f"got {threshold!r}")
    return metric, threshold


def degradation(score: float | None, baseline: float | None, metric: str) -> float | None:
    """How much worse ``score`` is than ``baseline`` (the model's held-out score at
    training), relative to the baseline: 0.25 means 25% worse, a negative value better.

    For a higher-is-better metric it is ``(baseline - score) / |baseline|``, for rmse, mae
    and log_loss ``(score - baseline) / |baseline|``; the divisor is at least 0.05 (a
    baseline near 0 would turn noise into a collapse). None when either is unknown.
    """
    if score is None or baseline is None or not math.isfinite(baseline):
        return None
    if not math.isfinite(score):
        return math.inf
    worse = baseline - score if higher_is_better(metric) else score - baseline
    return worse / max(abs(baseline), _MIN_BASELINE)


def degraded(score: float | None, baseline: float | None, metric: str,
             max_degradation: float | None) -> bool:
    """Whether ``score`` fell more than ``max_degradation`` (``monitoring.max_degradation``;
    None: never) below ``baseline``, relative to it (see :func:`degradation`)."""
    if max_degradation is None:
        return False
    drop = degradation(score, baseline, metric)
    return drop is not None and drop > max_degradation


__all__ = ["DEFAULT_METRIC", "DEGRADED", "METRICS", "SERVING_BELOW_THRESHOLD",
           "SERVING_MODEL_UNUSABLE", "at_least_as_good", "degradation",
           "degraded", "gate", "higher_is_better", "meets_threshold", "metric_for"]
