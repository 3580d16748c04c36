"""The run: the steps in sequence, its summary and report (above the steps and the report).

``run_pipeline`` runs ingest -> monitor-check -> (train) in this process;
:func:`finish_run` ends a run the same way in one process or under the controller.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlops.choices import Alert, RetrainReason
from mlops.config import Config, load_config
from mlops.engines import auto as auto_engine
from mlops.errors import BadInputError, MLOpsError, ValidationFailedError
from mlops.observe.report import require_matplotlib, write_report_to_store
from mlops.pipeline import (
    INGEST,
    MONITOR_CHECK,
    SCORE,
    STEP_FUNCTIONS,
    STEPS,
    TRAIN,
    StepResult,
    ingest,
    monitor_check,
    score,
    serving_alerts,
    train,
)
from mlops.records import HistoryRecord, RunSummary
from mlops.serving import HANDOFF, serving_uri
from mlops.store.ids import check_version_id, iso, utc_now
from mlops.store.workspace import Workspace, new_run_id

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlops.observe.hooks import RunObserver

SUMMARY = "summary"
#: ``runs/<run-id>/run.json``: how a run of ``mlops run`` ended when it failed
#: (``runs/<run-id>/controller.json`` is the controller's record of the same facts).
RUN = "run"
FAILED = "failed"


def run_step(step: str, config: Config, run_id: str, ws: Workspace | None = None) -> StepResult:
    """Run one step by name (``ingest``, ``monitor-check``, ``train`` or ``score``)."""
    if step not in STEP_FUNCTIONS:
        raise BadInputError(f"unknown step '{step}': use one of {', '.join(STEPS)}")
    return STEP_FUNCTIONS[step](config, run_id, ws)


# --- the whole run -----------------------------------------------------------------------
def summarize(ws: Workspace, run_id: str) -> RunSummary:
    """The run's summary from its persisted step results.

    ``model_version`` is the model that serves after the run and ``accuracy`` is its
    accuracy: on the held-out split when the run retrained (the challenger's when it
    was promoted, the champion's otherwise), on the new data when it did not.

    ``score`` is the serving model's value of the gating ``metric`` on the same data
    as ``accuracy``, ``metrics`` every metric of it there (the history's record of the
    run names the same model and score); ``baseline_score`` is its ``metric`` on its own
    held-out split at training. ``alerts`` holds ``serving_below_threshold`` when that
    score does not meet ``threshold``, ``degraded`` when it fell more than
    ``monitoring.max_degradation`` below ``baseline_score``, and
    ``serving_model_unusable`` when the run replaced a serving model it could not load
    or use (``serving_error`` says why). A rejected challenger's results are under
    ``challenger_*``, and ``note`` says why it lost. ``estimated_score`` and
    ``estimated_metrics`` are CBPE's estimates (:mod:`mlops.performance.cbpe`) of the model
    monitor-check scored the batch with, from its calibrated probabilities alone (None
    and empty for a regression or a model trained without a calibration map).

    Returns:
        The :class:`~mlops.records.RunSummary` ``{run_id, data_version, model_version,
        retrained, accuracy, reasons, drift,
        drift_report, drift_error, promoted, challenger_version, challenger_accuracy,
        challenger_score, challenger_metrics, champion_accuracy, task, metric, score,
        metrics, threshold, baseline_score, alerts, note, serving_error, schema_change,
        serving_uri, estimated_score, estimated_metrics, estimated_model_version,
        engine}`` (``accuracy`` is None for a regression; ``engine`` the one the night ran
        on, what ``data.engine: auto`` chose); ``drift_error`` says why drift could not be
        measured (then ``drift`` is 0.0 but unknown); ``serving_uri`` is
        the serving model's export folder (``serving/<version>``, one subfolder per format),
        None when it has none; ``predictions_uri`` (only when ``scoring.source`` is set) is
        the manifest of the score step's predictions version (None before that step ran);
        ``serving_handoff`` (only when the controller patched or failed to patch a KServe
        InferenceService) says how it went, and a failure adds the alert
        ``serving_handoff_failed``.
    """
    ingested = ws.require_result(run_id, INGEST, SUMMARY)
    checked = ws.require_result(run_id, MONITOR_CHECK, SUMMARY)
    trained = ws.read_result(run_id, TRAIN) if checked["retrain"] else None
    if checked["retrain"] and trained is None:
        raise BadInputError(f"run '{run_id}' asked for a retrain but has no train result")
    promoted = bool(trained is not None and trained.get("promoted", True))
    if trained is None:
        serving, accuracy = checked["model_version"], checked["accuracy"]
        score, metrics = checked.get("score"), checked.get("metrics") or {}
    elif promoted:
        serving, accuracy = trained["model_version"], trained["accuracy"]
        score, metrics = trained.get("score"), trained.get("metrics") or {}
    else:
        serving, accuracy = trained.get("champion_version"), trained.get("champion_accuracy")
        score, metrics = trained.get("champion_score"), trained.get("champion_metrics") or {}
    metric = checked.get("metric", "accuracy")
    threshold = checked.get("threshold")
    handoff = ws.read_result(run_id, HANDOFF)  # the controller's KServe patch, if any
    baseline = checked.get("baseline_score") if trained is None \
        else trained.get("baseline_score")
    # A night whose every row was in the serving model's training set is not scored.
    unscored = trained is None and checked.get("scored_rows") == 0
    alerts = serving_alerts(score, threshold, metric, baseline,
                            ws.config.monitoring.max_degradation) \
        if serving is not None and not unscored else []
    if RetrainReason.SERVING_MODEL_UNUSABLE in checked["reasons"]:
        alerts.append(Alert.SERVING_MODEL_UNUSABLE)
    note = checked.get("note", "")
    if trained is not None and not promoted:  # why the challenger lost
        note = "; ".join(n for n in (note, str(trained.get("promotion_reason") or "")) if n)
    if handoff and handoff.get("status") == "failed":
        alerts.append(Alert.SERVING_HANDOFF_FAILED)
    summary = RunSummary(
        run_id=run_id,
        data_version=ingested["data_version"],
        model_version=serving,
        retrained=trained is not None,
        accuracy=accuracy,
        reasons=checked["reasons"],
        drift=checked["drift"],
        drift_report=checked.get("drift_report"),
        drift_error=checked.get("drift_error"),
        promoted=promoted,
        challenger_version=trained["model_version"] if trained else None,
        challenger_accuracy=trained["accuracy"] if trained else None,
        challenger_score=trained.get("score") if trained else None,
        challenger_metrics=trained.get("metrics") if trained else None,
        champion_accuracy=trained.get("champion_accuracy") if trained else None,
        task=checked.get("task") or ingested.get("task"),
        # The engine the night ran on: data.engine, or what auto chose (mlops.engines.auto).
        engine=ingested.get("engine") or ws.config.data.engine,
        metric=metric,
        score=score,
        metrics=metrics,
        threshold=threshold,
        baseline_score=baseline,
        alerts=alerts,
        note=note,
        serving_error=checked.get("serving_error", ""),
        schema_change=checked.get("schema_change"),
        serving_uri=serving_uri(ws.store, serving),
        # The serving model's score on the new data counts only rows it was not trained on.
        scored_rows=checked.get("scored_rows"),
        skipped_seen_rows=checked.get("skipped_seen_rows", 0),
        # CBPE: monitor-check's serving model's metrics on the batch estimated without
        # its labels (mlops.performance.cbpe; empty for a regression or a model without a map).
        estimated_score=checked.get("estimated_score"),
        estimated_metrics=checked.get("estimated_metrics") or {},
        # The model the estimate is of (on a night that retrained: the one replaced).
        estimated_model_version=checked.get("model_version")
        if checked.get("estimated_metrics") else None,
    )
    if ws.config.scoring.source:
        scored = ws.read_result(run_id, SCORE) or {}
        summary = summary.replace(predictions_uri=scored.get("predictions_uri"))
    if handoff:
        summary = summary.replace(serving_handoff={k: v for k, v in handoff.items() if k not in (
            "run_id", "step", "finished_at")})
    return summary


def write_summary(ws: Workspace, run_id: str, summary: RunSummary | Mapping[str, Any]) -> None:
    """Persist ``runs/<run-id>/summary.json``."""
    ws.write_result(SUMMARY, summary)


def finish_run(ws: Workspace, run_id: str,
               observer: RunObserver | None = None) -> dict[str, Any]:
    """End a run, in one process or under the controller: summarize it, write its report
    (``runs/<run-id>/report.html``, when ``reporting.enabled``) and ``summary.json``.

    Args:
        ws: The workspace.
        run_id: The run.
        observer: The run's :class:`mlops.observe.hooks.RunObserver`: it pushes the run's
            metrics and sends its notifications before the summary is written.

    Returns:
        The summary (see :func:`summarize`), plus ``report`` and ``report_url`` when one
        was written and ``notifications`` (each webhook's outcome) when any was sent.
    """
    summary = summarize(ws, run_id)
    if ws.config.reporting.enabled:
        report = write_report_to_store(ws, run_id)
        summary = summary.replace(report=report, report_url=ws.store.url(report))
    if observer is not None:
        notifications = observer.run_succeeded(ws, summary)
        if notifications:
            summary = summary.replace(notifications=notifications)
    write_summary(ws, run_id, summary)
    return summary.to_dict()


def _run_cluster(config: Config) -> contextlib.AbstractContextManager[Any]:
    """One local Dask cluster for all the steps of ``mlops run`` on the Dask engine (each
    step finds it as the current client), instead of one started per step: starting
    worker processes is most of a small night's cost (``make bench`` B16)."""
    if config.data.engine != "dask" or config.dask.address:
        return contextlib.nullcontext()
    from mlops.engines import dask as dask_engine

    return dask_engine.connect(config.dask)


def run_pipeline(config_path: str | os.PathLike[str] | Config | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """Run ingest -> monitor-check -> (train) -> (score, when ``scoring.source``) here.

    Args:
        config_path: A YAML file, a :class:`~mlops.config.Config`, or None for the
            embedded default.
        run_id: The run id (default: a fresh timestamped one).

    Returns:
        ``{data_version, model_version, retrained, accuracy}`` plus ``run_id``,
        ``reasons``, ``drift``, ``drift_report``, ``promoted`` and the challenger's and
        champion's accuracies (see :func:`summarize`); ``report`` (the key of
        ``runs/<run-id>/report.html``) and ``report_url`` when ``reporting.enabled``;
        ``notifications`` when webhooks were sent.

    Raises:
        ConfigError: ``reporting.enabled`` without matplotlib, or
            ``observability.pushgateway_url`` without prometheus-client (before anything
            runs).
    """
    from mlops.observe.hooks import RunObserver

    config = config_path if isinstance(config_path, Config) else load_config(config_path)
    run_id = check_version_id(run_id, "run id") if run_id else new_run_id()
    if config.reporting.enabled:
        require_matplotlib()  # fail before the run, not after it
    observer = RunObserver(config, run_id)
    observer.check()
    ws = Workspace.open(config)
    observer.run_started()
    step: str | None = INGEST
    cluster = contextlib.ExitStack()
    try:
        config, _ = auto_engine.resolve(config)  # data.engine: auto, once for the night
        cluster.enter_context(_run_cluster(config))
        with observer.step(INGEST) as box:
            box["result"] = ingest(config, run_id, ws).to_dict()
        step = MONITOR_CHECK
        with observer.step(MONITOR_CHECK) as box:
            decision = monitor_check(config, run_id, ws)
            box["result"] = decision.to_dict()
        if decision.retrain:
            step = TRAIN
            with observer.step(TRAIN) as box:
                box["result"] = train(config, run_id, ws).to_dict()
        if config.scoring.source:
            step = SCORE
            with observer.step(SCORE) as box:
                box["result"] = score(config, run_id, ws).to_dict()
        step = None
        cluster.close()
        return finish_run(ws, run_id, observer)
    except Exception as err:
        cluster.close()
        # A bad source or config at ingest leaves the data, models and history untouched
        # (a refused validation is recorded in the history too); only the run's own record
        # says it failed (what `mlops status` reads).
        if step in (MONITOR_CHECK, TRAIN, SCORE) or isinstance(err, ValidationFailedError):
            record_failure(ws, run_id, str(step), err)
        record_outcome(ws, run_id, RUN, FAILED, error=err, step=step)
        observer.run_failed(err)
        raise


def record_outcome(ws: Workspace, run_id: str, record: str, status: str, *,
                   error: BaseException | str | None = None, step: str | None = None,
                   started_at: str | None = None, exit_code: int | None = None,
                   **extra: Any) -> None:
    """Write how a run ended to ``runs/<run-id>/<record>.json`` (``run`` for ``mlops run``,
    ``controller`` for the controller): ``{run_id, status, failed_step, message, exit_code,
    started_at, finished_at}``, whatever the exit code, so ``mlops status`` sees a failed
    run at once. Never raises: the real failure must not be hidden.

    Args:
        ws: The workspace.
        run_id: The run.
        record: The record's name (``run`` or ``controller``).
        status: ``failed``, ``terminated`` or ``succeeded``.
        error: The failure (its first line is the message).
        step: The step that failed, if one did.
        started_at: When the run started.
        exit_code: The process's exit code (default: the error's, 0 without one).
        **extra: More facts (the controller's steps, namespace).
    """
    message = ""
    code = 0
    if error is not None:
        text = str(error).strip().splitlines()
        message = text[0] if text else type(error).__name__
        if isinstance(error, BaseException) and not isinstance(error, MLOpsError):
            message = f"{type(error).__name__}: {message}"
        code = error.exit_code if isinstance(error, MLOpsError) else 1
    if exit_code is not None:
        code = exit_code
    data = {"run_id": run_id, "status": status, "failed_step": step, "message": message,
            "exit_code": code, "started_at": started_at, **extra}
    try:
        ws.write_result(record, data)
    except (MLOpsError, OSError) as err:
        log.warning("cannot record that run %s %s: %s", run_id, status, err)


def record_failure(ws: Workspace, run_id: str, step: str, error: BaseException | str,
                   **extra: Any) -> None:
    """Add a failed run to the metrics history: the failing step and its one-line error
    (``extra``: further fields, e.g. ``terminated=True`` for a step stopped by SIGTERM).

    Only failures after ingest registered the data are recorded (a bad source or config
    leaves the store untouched), and a batch refused by the ``validation:`` section (a
    point in the history with no data version). Never raises: the real failure must not be hidden.
    """
    text = str(error).strip().splitlines()
    message = text[0] if text else type(error).__name__
    ingested = ws.read_result(run_id, INGEST) or {}
    try:
        ws.monitor.record(HistoryRecord(
            timestamp=iso(utc_now()), accuracy=None, data_version=ingested.get("data_version"),
            model_version=None, run_id=run_id, status="failed", step=step, error=message,
            task=ingested.get("task"), retrained=False, reasons=[], alerts=[],
        ).replace(**extra))
    except (MLOpsError, OSError) as err:
        log.warning("cannot record the failure of run %s in the history: %s", run_id, err)

