"""Prometheus metrics of a run, pushed to a Pushgateway (``observability.pushgateway_url``).

A nightly Job lives too briefly to be scraped, so the run pushes its metrics at the end
of each step and of the run with ``pushadd`` (HTTP POST): only the metric names pushed
are replaced in the group, so a failed run (which pushes the failure timestamp and the
step durations) never overwrites the last success's metrics. The group is
``job=<observability.job>`` plus the grouping key ``release`` and ``namespace``.

Counters (``*_total``) are totals over the store's history (one record per night), so
they only grow and survive a Pushgateway restart. :data:`METRICS` is the list of every
metric; ``docs/observability.md`` documents each (a test checks both agree).

A push that fails logs a warning and never fails the run. prometheus-client is the
``mlops[metrics]`` extra: with a Pushgateway URL set and the package missing,
:func:`require_prometheus_client` stops the run before it starts (exit 2).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops.choices import RetrainReason
from mlops.config import Config
from mlops.errors import ConfigError
from mlops.observe import httppost
from mlops.records import RunSummary

log = logging.getLogger(__name__)

ENV_NAMESPACE = "MLOPS_NAMESPACE"
#: Grouping-key namespace of a run outside Kubernetes (no namespace configured or set).
LOCAL_NAMESPACE = "local"


@dataclass(frozen=True)
class MetricDef:
    """One metric: name, type (gauge or counter), label names and help text."""

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Sample:
    """One value of a metric, with its label values (in the metric's label order)."""

    name: str
    value: float
    labels: tuple[str, ...] = ()


def _m(name: str, kind: str, help_text: str, *labels: str) -> MetricDef:
    return MetricDef(name, kind, labels, help_text)


LAST_SUCCESS = "mlops_last_success_timestamp_seconds"
LAST_FAILURE = "mlops_last_failure_timestamp_seconds"
STEP_DURATION = "mlops_step_duration_seconds"
ROWS = "mlops_ingested_rows"
SERVING = "mlops_serving_model_metric"
SERVING_INFO = "mlops_serving_model_info"
THRESHOLD = "mlops_serving_model_threshold"
CHALLENGER = "mlops_challenger_metric"
DRIFT = "mlops_drift_score"
DRIFT_DETECTED = "mlops_drift_detected"
DRIFT_NIGHTS = "mlops_drift_consecutive_runs"
FEATURE_DRIFT = "mlops_feature_drift_statistic"
FEATURE_DRIFTED = "mlops_feature_drifted"
LAST_RETRAIN = "mlops_last_retrain_timestamp_seconds"
RETRAINS = "mlops_retrains_total"
PROMOTIONS = "mlops_promotions_total"
SCHEMA_CHANGES = "mlops_schema_changes_total"
ESTIMATED_SCORE = "mlops_estimated_score"

#: Every metric the suite pushes (documented in docs/observability.md).
METRICS: tuple[MetricDef, ...] = (
    _m(LAST_SUCCESS, "gauge", "Unix time the last successful run ended."),
    _m(LAST_FAILURE, "gauge", "Unix time the last failed run ended.", "step"),
    _m(STEP_DURATION, "gauge", "Wall time of each step of the latest run.", "step"),
    _m(ROWS, "gauge", "Rows ingested by the latest run."),
    _m(SERVING, "gauge", "The serving model's metrics after the latest run.", "metric"),
    _m(SERVING_INFO, "gauge", "1, labelled with the serving model version.", "model_version"),
    _m(THRESHOLD, "gauge", "The threshold below which the serving model retrains.",
       "metric"),
    _m(CHALLENGER, "gauge", "The challenger's held-out metrics (runs that retrained).",
       "metric"),
    _m(DRIFT, "gauge", "The latest run's overall drift score."),
    _m(DRIFT_DETECTED, "gauge", "1 when the latest run detected drift (a retrain reason)."),
    _m(DRIFT_NIGHTS, "gauge", "Consecutive latest runs that detected drift."),
    _m(FEATURE_DRIFT, "gauge", "Per-feature drift statistic of the latest run (for ks the "
       "p-value).", "feature", "method"),
    _m(FEATURE_DRIFTED, "gauge", "1 when the feature drifted in the latest run.",
       "feature", "method"),
    _m(LAST_RETRAIN, "gauge", "Unix time of the last run that retrained."),
    _m(RETRAINS, "counter", "Retrains over the store's history, by reason.", "reason"),
    _m(PROMOTIONS, "counter", "Promotion decisions over the store's history, by outcome "
       "(promoted, rejected).", "outcome"),
    _m(SCHEMA_CHANGES, "counter", "Data versions whose columns or dtypes differ from the "
       "previous data version's."),
    _m(ESTIMATED_SCORE, "gauge", "CBPE: the metrics of the model that scored the latest "
       "batch, estimated from its calibrated probabilities without labels (classifiers).",
       "metric"),
)
_BY_NAME = {m.name: m for m in METRICS}


def require_prometheus_client(config: Config) -> None:
    """Check the ``metrics`` extra when a Pushgateway is configured.

    Raises:
        ConfigError: ``observability.pushgateway_url`` is set and prometheus-client is
            missing (exit 2: a retry will not help).
    """
    if not config.observability.pushgateway_url:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError as err:
        raise ConfigError("observability.pushgateway_url is set but prometheus-client is not "
                          "installed: install mlops[metrics] (or empty the URL)") from err


def grouping_key(config: Config, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Pushgateway grouping key: ``release`` and ``namespace``.

    The namespace is ``kubernetes.namespace``, else ``$MLOPS_NAMESPACE``, else ``local``.
    """
    env = os.environ if env is None else env
    ns = config.kubernetes.namespace or env.get(ENV_NAMESPACE) or LOCAL_NAMESPACE
    return {"release": config.kubernetes.release, "namespace": ns}


@dataclass
class Pusher:
    """Pushes samples to the configured Pushgateway (a no-op when none is configured).

    Args:
        config: The config (``observability``, and ``kubernetes`` for the grouping key).
        env: Environment for ``$MLOPS_NAMESPACE`` (default ``os.environ``).
    """

    config: Config
    env: Mapping[str, str] | None = None
    pushes: list[bool] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        """True when ``observability.pushgateway_url`` is set."""
        return bool(self.config.observability.pushgateway_url)

    def push(self, samples: Sequence[Sample]) -> bool:
        """``pushadd`` the samples; a failure is logged as a warning, never raised.

        Returns:
            True when pushed (False when off, or when the push failed).
        """
        if not self.enabled or not samples:
            return False
        obs = self.config.observability
        try:
            from prometheus_client import CollectorRegistry, pushadd_to_gateway

            registry = CollectorRegistry()
            registry.register(_Collector(samples))
            pushadd_to_gateway(obs.pushgateway_url, job=obs.job, registry=registry,
                               grouping_key=grouping_key(self.config, self.env),
                               timeout=obs.push_timeout_seconds, handler=_deadline_handler)
        except Exception as err:  # a push never fails the run
            log.warning("metrics push to %s failed: %s", obs.pushgateway_url,
                        str(err).splitlines()[0] if str(err) else type(err).__name__)
            self.pushes.append(False)
            return False
        self.pushes.append(True)
        return True


def _deadline_handler(url: str, method: str, timeout: float | None,
                      headers: Sequence[tuple[str, str]], data: bytes) -> Any:
    """A prometheus-client push handler whose timeout is a wall-clock deadline for the
    whole push (the default one bounds each socket read: a Pushgateway answering one byte
    per second stalls the run), never following a redirect."""
    def handle() -> None:
        status = httppost.request(method, url, data, dict(headers),
                                  5.0 if timeout is None else timeout)
        if not 200 <= status < 300:
            raise OSError(f"error talking to pushgateway: HTTP {status}")
    return handle


class _Collector:
    """A prometheus-client collector yielding fixed samples as metric families."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        grouped: dict[str, list[Sample]] = {}
        for s in self.samples:
            grouped.setdefault(s.name, []).append(s)
        for name, group in grouped.items():
            d = _BY_NAME[name]
            if d.kind == "counter":
                family: Any = CounterMetricFamily(name.removesuffix("_total"), d.help,
                                                  labels=list(d.labels))
            else:
                family = GaugeMetricFamily(name, d.help, labels=list(d.labels))
            for s in group:
                family.add_metric(list(s.labels), s.value)
            yield family

    def describe(self) -> list[Any]:
        return []


# --- samples (pure) ----------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def step_samples(durations: Mapping[str, float]) -> list[Sample]:
    """``mlops_step_duration_seconds`` of every step finished so far in this run."""
    return [Sample(STEP_DURATION, float(s), (step,)) for step, s in durations.items()]


def failure_samples(step: str | None, durations: Mapping[str, float],
                    now: float | None = None) -> list[Sample]:
    """What a failed run pushes: the failure time (labelled by the failing step) and
    the durations of the steps that ran. The last success's metrics stay."""
    return [Sample(LAST_FAILURE, time.time() if now is None else now, (step or "",)),
            *step_samples(durations)]


def _metric_samples(name: str, metrics: Mapping[str, Any]) -> list[Sample]:
    out = []
    for metric, value in metrics.items():
        v = _finite(value)
        if v is not None:
            out.append(Sample(name, v, (str(metric),)))
    return out


def run_samples(summary: RunSummary, rows: int | None,
                history: Sequence[Mapping[str, Any]], schema_changes: int,
                durations: Mapping[str, float], now: float | None = None) -> list[Sample]:
    """What a successful run pushes.

    Args:
        summary: The run summary (:func:`mlops.runner.summarize`); ``metrics`` and
            ``challenger_metrics`` mappings are used when present, else the accuracies.
        rows: Rows ingested by the run.
        history: The store's metrics history, oldest first (for the counters).
        schema_changes: See :func:`schema_changes`.
        durations: Seconds per step of this run.
        now: The end time (default: now).
    """
    out = [Sample(LAST_SUCCESS, time.time() if now is None else now), *step_samples(durations)]
    if rows is not None:
        out.append(Sample(ROWS, float(rows)))
    serving = summary.metrics or {"accuracy": summary.accuracy}
    out += _metric_samples(SERVING, serving)
    if summary.model_version:
        out.append(Sample(SERVING_INFO, 1.0, (str(summary.model_version),)))
    threshold = _finite(summary.threshold)
    if threshold is not None:  # the gating metric's limit (none: the metric has no limit)
        out.append(Sample(THRESHOLD, threshold, (str(summary.metric or "accuracy"),)))
    if summary.retrained:
        challenger = summary.challenger_metrics or {"accuracy": summary.challenger_accuracy}
        out += _metric_samples(CHALLENGER, challenger)
    out += _metric_samples(ESTIMATED_SCORE, summary.estimated_metrics or {})
    drift = _finite(summary.drift)
    if drift is not None:
        out.append(Sample(DRIFT, drift))
    reasons = summary.reasons or []
    out.append(Sample(DRIFT_DETECTED, 1.0 if RetrainReason.DRIFT in reasons else 0.0))
    report = summary.drift_report or {}
    for f in report.get("features", []):
        labels = (str(f.get("feature")), str(f.get("method")))
        stat = _finite(f.get("statistic"))
        if stat is not None:
            out.append(Sample(FEATURE_DRIFT, stat, labels))
        out.append(Sample(FEATURE_DRIFTED, 1.0 if f.get("drifted") else 0.0, labels))
    out += history_samples(history)
    out.append(Sample(SCHEMA_CHANGES, float(schema_changes)))
    return out


def history_samples(history: Sequence[Mapping[str, Any]]) -> list[Sample]:
    """Counters and streaks from the metrics history (oldest first): retrains by reason,
    promotions by outcome, the last retrain time and consecutive drift nights."""
    retrains: dict[str, int] = {}
    outcomes = {"promoted": 0, "rejected": 0}
    last_retrain: float | None = None
    for rec in history:
        if not rec.get("retrained"):
            continue
        for reason in rec.get("reasons") or ["unknown"]:
            retrains[str(reason)] = retrains.get(str(reason), 0) + 1
        outcomes["promoted" if rec.get("promoted", True) else "rejected"] += 1
        with contextlib.suppress(KeyError, ValueError, TypeError):
            last_retrain = datetime.datetime.fromisoformat(str(rec["timestamp"])).timestamp()
    out = [Sample(RETRAINS, float(n), (r,)) for r, n in sorted(retrains.items())]
    out += [Sample(PROMOTIONS, float(n), (o,)) for o, n in outcomes.items()]
    if last_retrain is not None:
        out.append(Sample(LAST_RETRAIN, last_retrain))
    out.append(Sample(DRIFT_NIGHTS, float(drift_streak(history))))
    return out


def drift_streak(history: Sequence[Mapping[str, Any]]) -> int:
    """How many of the newest history records in a row have ``drift`` among their reasons."""
    n = 0
    for rec in reversed(history):
        if RetrainReason.DRIFT not in (rec.get("reasons") or []):
            break
        n += 1
    return n


def schema_changes(manifests: Iterable[Mapping[str, Any]]) -> int:
    """Data versions (oldest first) whose columns or dtypes differ from the previous one's."""
    changes, previous = 0, None
    for m in manifests:
        cols = [(c.get("name"), c.get("dtype")) for c in m.get("columns", [])]
        if previous is not None and cols != previous:
            changes += 1
        previous = cols
    return changes
