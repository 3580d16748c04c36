"""``mlops status``: is it healthy? One quick, read-only look at the store.

It reads only small JSON objects: the newest runs' summaries (or the controller's record
of a failure), and the ``production`` alias. It imports neither pandas nor scikit-learn,
so it answers in well under a second on a local store.

Unhealthy (exit 3) when any of these holds:

* the latest finished run failed (``runs/<id>/controller.json`` says failed or terminated,
  or a run has step results but no summary and a newer run exists);
* no run succeeded in the last ``max_age_hours`` (default 36: a nightly schedule plus
  margin), or none ever;
* the serving model's accuracy in the latest successful run is below
  ``monitoring.accuracy_min_threshold``, or, with another gating metric
  (``monitoring.metric``), that run flagged ``serving_below_threshold``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops import layout
from mlops.config import Config
from mlops.storage import Store, open_store

#: How many of the newest runs are read (bounds the time of a status call).
MAX_RUNS = 60
WEEK = datetime.timedelta(days=7)
DEFAULT_MAX_AGE_HOURS = 36.0
EXIT_UNHEALTHY = 3


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended: ``succeeded``, ``failed``, ``terminated`` or ``incomplete``."""

    run_id: str
    outcome: str
    finished_at: str | None
    summary: dict[str, Any] | None = None
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
    """How ``run_id`` ended, from its summary or the controller's record."""
    def read(name: str) -> dict[str, Any] | None:
        try:
            data = store.read_json(layout.step_result_key(run_id, name))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    summary = read("summary")
    if summary is not None:
        return RunOutcome(run_id, "succeeded", summary.get("finished_at"), summary)
    controller = read("controller")
    if controller is not None and controller.get("status") in ("failed", "terminated"):
        return RunOutcome(run_id, str(controller["status"]), controller.get("finished_at"),
                          message=str(controller.get("message") or ""))
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
    threshold = config.monitoring.accuracy_min_threshold
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

    summary: Mapping[str, Any] = (success.summary or {}) if success else {}
    serving_version = _production(store) or summary.get("model_version")
    accuracy = summary.get("accuracy") if summary.get("model_version") == serving_version \
        else None
    if isinstance(accuracy, int | float) and accuracy < threshold:
        problems.append(f"serving model {serving_version} accuracy {accuracy:.4f} is below "
                        f"the threshold {threshold:g}")
    metric = summary.get("metric")
    if metric not in (None, "accuracy") and serving_version is not None \
            and summary.get("model_version") == serving_version \
            and "serving_below_threshold" in (summary.get("alerts") or []):
        # Another gating metric (monitoring.metric): the run's own verdict on its limit.
        score, limit = summary.get("score"), summary.get("threshold")
        problems.append(f"serving model {serving_version} {metric} "
                        f"{score if score is None else f'{score:.4f}'} misses its "
                        f"threshold {limit if limit is None else f'{limit:g}'}")
    if serving_version is None and outcomes:
        problems.append("no model serves (the production alias is not set)")
    drift = None
    if summary:
        report = summary.get("drift_report") or {}
        drift = {"score": summary.get("drift"),
                 "detected": "drift" in (summary.get("reasons") or []),
                 "method": report.get("method"),
                 "features": [f.get("feature") for f in report.get("features", [])
                              if f.get("drifted")]}
    since = None
    n = 0
    for o in outcomes:
        if o.outcome != "succeeded" or o.summary is None:
            continue
        if o.summary.get("retrained"):
            since = n
            break
        n += 1
    week_ago = now - WEEK
    failed_week = sum(1 for i, o in enumerate(outcomes)
                      if o.outcome in ("failed", "terminated", "incomplete")
                      and not (i == 0 and o.outcome == "incomplete")
                      and (_when(o.finished_at) or now) >= week_ago)
    report_url = next((store.url(str(o.summary["report"])) for o in outcomes
                       if o.summary and o.summary.get("report")), None)
    return Health(
        healthy=not problems, problems=problems,
        last_run=None if last is None else {"run_id": last.run_id, "outcome": last.outcome,
                                            "finished_at": last.finished_at,
                                            "message": last.message},
        last_success=None if success is None else {"run_id": success.run_id,
                                                   "finished_at": success.finished_at},
        serving=_serving(summary, serving_version, accuracy, threshold),
        drift=drift, runs_since_retrain=since, failed_last_week=failed_week,
        report_url=report_url, checked_at=now.isoformat(timespec="seconds"))


def _serving(summary: Mapping[str, Any], version: str | None, accuracy: Any,
             accuracy_threshold: float) -> dict[str, Any]:
    """The serving model's gating metric, its score and limit (accuracy by default).

    ``accuracy`` and ``threshold`` stay for readers of the first release's JSON; with
    another ``monitoring.metric`` the run's own ``score`` and ``threshold`` are shown.
    """
    metric = summary.get("metric") or "accuracy"
    own = summary.get("model_version") == version
    score: Any = accuracy
    limit: Any = accuracy_threshold
    if metric != "accuracy":
        score = summary.get("score") if own else None
        limit = summary.get("threshold")
    return {"model_version": version, "metric": metric, "score": score, "limit": limit,
            "accuracy": accuracy, "threshold": accuracy_threshold}


def _production(store: Store) -> str | None:
    from mlops.registry import PRODUCTION, ModelRegistry

    return ModelRegistry(store.child("models")).get_alias(PRODUCTION)


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
                 f"{f'{limit:g}' if isinstance(limit, int | float) else '-'})")
    if h.drift is not None:
        feats = ", ".join(h.drift["features"][:5]) or "none"
        lines.append(f"last drift:    score {num(h.drift['score'])} "
                     f"({h.drift['method'] or '-'}), "
                     f"{'detected' if h.drift['detected'] else 'not detected'}; "
                     f"drifted features: {feats}")
    since = "-" if h.runs_since_retrain is None else str(h.runs_since_retrain)
    lines.append(f"nights since last retrain: {since}")
    lines.append(f"failed runs in the last week: {h.failed_last_week}")
    if h.report_url:
        lines.append(f"report:        {h.report_url}")
    return "\n".join(lines)
