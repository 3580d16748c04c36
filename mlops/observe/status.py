"""``mlops status``: is it healthy? One quick, read-only look at the store.

It reads only small JSON objects: the newest runs' summaries (or the controller's record
of a failure), and the ``production`` alias. It imports neither pandas nor scikit-learn,
so it answers in well under a second on a local store.

Unhealthy (exit 3) when any of these holds:

* the latest finished run failed, whatever its exit code (``runs/<id>/run.json`` of
  ``mlops run`` or ``runs/<id>/controller.json`` says failed or terminated, or a run has
  step results but no summary and a newer run exists), or its summary is damaged (not a
  JSON object: the run is reported as ``damaged``, the others are still judged);
* no run succeeded in the last ``max_age_hours`` (default 36: a nightly schedule plus
  margin), or none ever;
* the serving model (the ``production`` alias) is missing, its artifact fails its
  integrity check or its record its signature (the registry's own verification, without
  unpickling);
* in the latest successful run, the serving model misses the gate: the gating metric
  (``monitoring.metric``, see :func:`mlops.gating.gate`) against its limit, or it fell
  more than ``monitoring.max_degradation`` below its own held-out score at training
  (alert ``degraded``); or that run replaced a serving model it could not use (alert
  ``serving_model_unusable``: a tampered or truncated artifact someone must look at).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.choices import RetrainReason
from mlops.config import Config, signing_key
from mlops.errors import BadInputError, IntegrityError
from mlops.gating import (
    DEGRADED,
    SERVING_MODEL_UNUSABLE,
    degraded,
    gate,
    higher_is_better,
    meets_threshold,
)
from mlops.records import RunSummary
from mlops.store import layout
from mlops.store.filesystem import Store, open_store

#: How many of the newest runs are read (bounds the time of a status call).
MAX_RUNS = 60
WEEK = datetime.timedelta(days=7)
DEFAULT_MAX_AGE_HOURS = 36.0
EXIT_UNHEALTHY = 3
#: The outcome of a run whose summary cannot be read (truncated, not a JSON object).
DAMAGED = "damaged"
#: The run records that say how a run ended: ``mlops run``'s and the controller's.
_RECORDS = ("run", "controller")
#: The serving model's alias (mlops.store.registry.PRODUCTION; the registry loads on demand).
PRODUCTION = "production"


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended: ``succeeded``, ``failed``, ``terminated``, ``incomplete`` or
    ``damaged`` (its summary cannot be read)."""

    run_id: str
    outcome: str
    finished_at: str | None
    summary: RunSummary | None = None
    message: str = ""


@dataclass(frozen=True)
class Health:
    """The answer of ``mlops status``.

    Attributes:
        healthy: False when any ``problems``.
        problems: One line each.
        last_run: The newest run: id, outcome, when, message.
        last_success: The newest successful run's id and end time.
        serving: The serving model, its accuracy after the last successful run and the
            threshold.
        drift: The last successful run's drift score, whether drift was a retrain reason,
            and the drifted features.
        runs_since_retrain: Successful runs since the last one that retrained (None when
            none retrained among the runs read).
        failed_last_week: Runs that failed in the last 7 days.
        report_url: The newest run report (``reporting.enabled``), if any.
        damaged_runs: Runs among those read whose summary is damaged.
    """

    healthy: bool
    problems: list[str]
    last_run: dict[str, Any] | None
    last_success: dict[str, Any] | None
    serving: dict[str, Any]
    drift: dict[str, Any] | None
    runs_since_retrain: int | None
    failed_last_week: int
    report_url: str | None = None
    checked_at: str = field(default="")
    damaged_runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def _when(value: Any) -> datetime.datetime | None:
    try:
        ts = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)


def read_outcome(store: Store, run_id: str) -> RunOutcome:
    """How ``run_id`` ended, from its summary or its failure record (``mlops run``'s or the
    controller's); ``damaged`` when the summary exists but cannot be read."""
    def read(name: str) -> dict[str, Any] | None:
        try:
            data = store.read_json(layout.step_result_key(run_id, name))
        except (FileNotFoundError, IntegrityError):
            return None
        return data if isinstance(data, dict) else None

    key = layout.step_result_key(run_id, "summary")
    try:
        summary: Any = store.read_json(key)
    except FileNotFoundError:
        summary = None
    except IntegrityError as err:  # truncated or not JSON: this run is damaged, not the config
        return RunOutcome(run_id, DAMAGED, None, message=f"{store.url(key)}: {err}")
    if summary is not None and not isinstance(summary, dict):
        return RunOutcome(run_id, DAMAGED, None, message=f"{store.url(key)} is a "
                          f"{type(summary).__name__}, not a JSON object")
    if summary is not None:
        try:
            typed = RunSummary.from_dict(summary)
        except TypeError as err:  # a key of the wrong type: damaged too
            return RunOutcome(run_id, DAMAGED, None, message=f"{store.url(key)}: {err}")
        return RunOutcome(run_id, "succeeded", typed.finished_at, typed)
    for name in _RECORDS:
        record = read(name)
        if record is not None and record.get("status") in ("failed", "terminated"):
            step = f"step {record['failed_step']}: " if record.get("failed_step") else ""
            code = record.get("exit_code")
            exit_ = f" (exit {code})" if isinstance(code, int) and code else ""
            return RunOutcome(run_id, str(record["status"]), record.get("finished_at"),
                              message=f"{step}{record.get('message') or ''}{exit_}".strip())
    latest = None
    for step in ("train", "monitor-check", "ingest"):
        data = read(step)
        if data is not None:
            latest = data.get("finished_at")
            break
    return RunOutcome(run_id, "incomplete", latest)


def check_health(config: Config, store: Store | None = None,
                 now: datetime.datetime | None = None,
                 max_age_hours: float = DEFAULT_MAX_AGE_HOURS) -> Health:
    """Read the store and judge its health (read-only).

    Args:
        config: The config (store and threshold).
        store: The store (default: opened from ``config.storage``).
        now: The current time (default: now, UTC).
        max_age_hours: A successful run must have ended at most this long ago.

    Raises:
        StorageError: The store cannot be read.
    """
    store = store if store is not None else open_store(config.storage.uri,
                                                       config.storage.options)
    now = now or datetime.datetime.now(datetime.UTC)
    run_ids = store.list_dirs(layout.RUNS)[-MAX_RUNS:]
    outcomes = [read_outcome(store, r) for r in reversed(run_ids)]  # newest first
    problems: list[str] = []

    finished = [o for i, o in enumerate(outcomes) if o.outcome != "incomplete" or i > 0]
    last = outcomes[0] if outcomes else None
    if finished and finished[0].outcome != "succeeded":
        f = finished[0]
        why = f": {f.message}" if f.message else ""
        problems.append(f"the latest finished run {f.run_id} {f.outcome}{why}"
                        if f.outcome != "incomplete" else
                        f"the latest finished run {f.run_id} stopped before its summary")
    success = next((o for o in outcomes if o.outcome == "succeeded"), None)
    ended = _when(success.finished_at) if success else None
    if success is None:
        problems.append("no successful run yet" if not outcomes else
                        f"no successful run among the newest {len(outcomes)}")
    elif ended is not None and now - ended > datetime.timedelta(hours=max_age_hours):
        problems.append(f"no successful run in the last {max_age_hours:g} hours (the last "
                        f"ended {success.finished_at})")

    summary = success.summary if success else None
    if summary is None:  # no successful run: nothing known of the serving model
        summary = RunSummary(run_id="")
    registry = _registry(store, config)
    try:
        alias = registry.get_alias(PRODUCTION)
    except (BadInputError, TypeError, KeyError, ValueError) as err:
        alias = None
        problems.append(f"the production alias cannot be read: {err}")
    serving_version = alias or summary.model_version
    if alias is not None:
        problem = _unusable(registry, alias)
        if problem:
            problems.append(problem)
    own = summary.model_version == serving_version
    task = str(summary.task or "classification")
    metric, threshold = gate(config, task)
    score = _score(summary, metric) if own else None
    accuracy = _score(summary, "accuracy") if own else None
    if isinstance(score, int | float) and not meets_threshold(score, threshold, metric):
        side = "below" if higher_is_better(metric) else "above"
        problems.append(f"serving model {serving_version} {metric} {score:.4f} is {side} "
                        f"the threshold {threshold:g}")
    baseline = summary.baseline_score if summary.metric == metric else None
    limit = config.monitoring.max_degradation
    if own and limit is not None and (degraded(score, baseline, metric, limit) or (
            baseline is None and DEGRADED in (summary.alerts or []))):
        problems.append(f"serving model {serving_version} {metric} "
                        f"{_num(score)} fell more than monitoring.max_degradation "
                        f"{limit:g} below its held-out "
                        f"{_num(baseline)} at training (alert degraded)")
    if success is not None and SERVING_MODEL_UNUSABLE in (summary.alerts or []):
        why = summary.serving_error or "see the run's log"
        problems.append(f"run {success.run_id} replaced a serving model it could not use "
                        f"({why}): check the store (mlops gc --check)")
    if serving_version is None and outcomes:
        problems.append("no model serves (the production alias is not set)")
    drift = None
    if success is not None:
        report = summary.drift_report or {}
        drift = {"score": summary.drift,
                 "detected": RetrainReason.DRIFT in (summary.reasons or []),
                 "method": report.get("method"),
                 "features": [f.get("feature") for f in report.get("features", [])
                              if f.get("drifted")]}
    since = None
    n = 0
    for o in outcomes:
        if o.outcome != "succeeded" or o.summary is None:
            continue
        if o.summary.retrained:
            since = n
            break
        n += 1
    week_ago = now - WEEK
    failed_week = sum(1 for i, o in enumerate(outcomes)
                      if o.outcome in ("failed", "terminated", "incomplete")
                      and not (i == 0 and o.outcome == "incomplete")
                      and (_when(o.finished_at) or now) >= week_ago)
    report_url = next((store.url(str(o.summary.report)) for o in outcomes
                       if o.summary and o.summary.report), None)
    damaged = [o.run_id for o in outcomes if o.outcome == DAMAGED]
    return Health(
        healthy=not problems, problems=problems,
        last_run=None if last is None else {"run_id": last.run_id, "outcome": last.outcome,
                                            "finished_at": last.finished_at,
                                            "message": last.message},
        last_success=None if success is None else {"run_id": success.run_id,
                                                   "finished_at": success.finished_at},
        serving={"model_version": serving_version, "metric": metric, "score": score,
                 "limit": threshold, "baseline": baseline, "accuracy": accuracy,
                 # CBPE: the last successful run's estimate without labels (mlops.performance.cbpe),
                 # of the model that scored its batch.
                 "estimated_score": summary.estimated_score
                 if (summary.metric or "accuracy") == metric else None,
                 "estimated_model_version": summary.estimated_model_version,
                 "threshold": threshold if metric == "accuracy"
                 else config.monitoring.accuracy_min_threshold},
        drift=drift, runs_since_retrain=since, failed_last_week=failed_week,
        report_url=report_url, checked_at=now.isoformat(timespec="seconds"),
        damaged_runs=damaged)


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and not isinstance(v, bool) else "n/a"


def _score(summary: RunSummary, metric: str) -> Any:
    """The serving model's ``metric`` in a run summary: from ``metrics`` (every metric),
    else ``score`` when the run gated on ``metric``, else ``accuracy`` (first release)."""
    metrics = summary.metrics
    if isinstance(metrics, Mapping) and metrics.get(metric) is not None:
        return metrics[metric]
    if (summary.metric or "accuracy") == metric and summary.score is not None:
        return summary.score
    return summary.accuracy if metric == "accuracy" else None


def _registry(store: Store, config: Config) -> Any:
    from mlops.store.registry import ModelRegistry

    return ModelRegistry(store.child(layout.MODELS), signing_key=signing_key(config))


def _unusable(registry: Any, version: str) -> str | None:
    """Why the serving model cannot be loaded (the registry's own checks: record,
    signature, artifact sha256; nothing is unpickled), or None."""
    try:
        registry.verify(version)
    except (BadInputError, TypeError, KeyError, ValueError) as err:
        return f"serving model {version} (the production alias) is unusable: {err}"
    return None


def render(h: Health) -> str:
    """The one screen of ``mlops status``."""
    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, int | float) and not isinstance(v, bool) else "-"

    lines = [f"health:        {'HEALTHY' if h.healthy else 'UNHEALTHY'}"]
    lines += [f"  problem:     {p}" for p in h.problems]
    if h.last_run:
        r = h.last_run
        lines.append(f"last run:      {r['run_id']} {r['outcome']} at {r['finished_at'] or '-'}"
                     + (f" ({r['message']})" if r.get("message") else ""))
    else:
        lines.append("last run:      none yet")
    if h.last_success:
        lines.append(f"last success:  {h.last_success['run_id']} at "
                     f"{h.last_success['finished_at'] or '-'}")
    s = h.serving
    limit = s.get("limit")
    lines.append(f"serving model: {s['model_version'] or '-'} {s.get('metric') or 'accuracy'} "
                 f"{num(s.get('score'))} (threshold "
                 f"{f'{limit:g}' if isinstance(limit, int | float) else '-'}"
                 + (f"; held-out {num(s['baseline'])} at training"
                    if s.get("baseline") is not None else "") + ")")
    if s.get("estimated_score") is not None:
        of = s.get("estimated_model_version")
        lines.append(f"estimated:     {s.get('metric') or 'accuracy'} "
                     f"{num(s['estimated_score'])} on the last batch"
                     + (f" for model {of}" if of and of != s["model_version"] else "")
                     + " (CBPE, from calibrated probabilities without labels; assumes no "
                     "concept shift)")
    if h.drift is not None:
        feats = ", ".join(h.drift["features"][:5]) or "none"
        lines.append(f"last drift:    score {num(h.drift['score'])} "
                     f"({h.drift['method'] or '-'}), "
                     f"{'detected' if h.drift['detected'] else 'not detected'}; "
                     f"drifted features: {feats}")
    since = "-" if h.runs_since_retrain is None else str(h.runs_since_retrain)
    lines.append(f"nights since last retrain: {since}")
    lines.append(f"failed runs in the last week: {h.failed_last_week}")
    if h.damaged_runs:
        lines.append(f"damaged runs:  {', '.join(h.damaged_runs)} (summary unreadable)")
    if h.report_url:
        lines.append(f"report:        {h.report_url}")
    return "\n".join(lines)
