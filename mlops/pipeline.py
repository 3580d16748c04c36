"""The nightly steps (ingest -> monitor-check -> train -> score) and their results.

Each step is a function with explicit inputs (the config and a run id) and a
result dataclass, persisted as JSON at ``runs/<run-id>/<step>.json``. Steps
share nothing in memory: a later step reads the earlier step's result from the
store, so the same functions run in one process (``mlops run``, see
:mod:`mlops.runner`) or as separate Kubernetes Jobs under the controller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, TypeVar

from mlops.choices import CLASSIFICATION
from mlops.config import Config
from mlops.decisions import (
    SERVING_BELOW_THRESHOLD,
    config_fingerprint,
    gate,
    lineage,
    promotion_decision,
    rejected_before,
    schema_of,
)
from mlops.engines import Trainer, engine_for
from mlops.engines import auto as auto_engine
from mlops.errors import (
    BadInputError,
    DataValidationError,
    IntegrityError,
    MLOpsError,
    SchemaChangeError,
)
from mlops.gating import DEGRADED, degraded
from mlops.gating import SERVING_MODEL_UNUSABLE as SERVING_MODEL_UNUSABLE
from mlops.monitor import TOO_FEW_ROWS as TOO_FEW_ROWS
from mlops.performance.cbpe import check_calibration, estimate
from mlops.performance.labels import (
    LOW_REALIZED_SCORE,
    LabelsReport,
    label_store,
    labelled_versions,
    process_labels,
    read_arrival,
    realized_drop,
    training_frame,
    window_of,
)
from mlops.records import PARTITIONED, HistoryRecord, TrainingFacts
from mlops.schema import SchemaChange, compare
from mlops.scoring import PROBABILITY, predictions_store, spec_of
from mlops.serving import export_for_serving
from mlops.store.filesystem import crash_point
from mlops.store.ids import check_version_id, iso, utc_now
from mlops.store.registry import PRODUCTION
from mlops.store.workspace import Workspace, serving_reference
from mlops.training import check_training, meets_threshold, too_few_rows

log = logging.getLogger(__name__)

INGEST = "ingest"
MONITOR_CHECK = "monitor-check"
TRAIN = "train"
SCORE = "score"
STEPS = (INGEST, MONITOR_CHECK, TRAIN)

R = TypeVar("R", bound="StepResult")


@dataclass(frozen=True)
class StepResult:
    """Base of the step results: JSON round trip."""

    run_id: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """Build from :meth:`to_dict` output (extra keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class IngestResult(StepResult):
    """What ingest registered."""

    data_version: str
    rows: int
    source: str
    feature_means: dict[str, float] = field(default_factory=dict)
    #: ``classification`` or ``regression``: ``data.task``, or what ``auto`` decided.
    task: str = ""
    #: Feature name -> ``numeric``, ``bool`` or ``categorical``.
    feature_kinds: dict[str, str] = field(default_factory=dict)
    #: The files read (``{"path", "size_bytes"}``); empty for synthetic data.
    source_files: list[dict[str, Any]] = field(default_factory=list)
    #: Why the batch is too small to train on ("" when it is not): it is still scored and
    #: drift-checked, never trained on (``training.min_rows``, ``min_test_rows``).
    too_few_rows: str = ""
    #: What looks wrong in the table but was accepted (mlops.data.table_warnings).
    warnings: list[str] = field(default_factory=list)
    #: The batch has no target column (``labels`` configured: its labels come later).
    unlabelled: bool = False
    #: The engine ingest ran on (``data.engine``, or what ``auto`` chose; "" in an older
    #: result); the later steps run on the same one (mlops.engines.auto).
    engine: str = ""


@dataclass(frozen=True)
class MonitorCheckResult(StepResult):
    """The retrain decision for the run's data version."""

    data_version: str
    model_version: str | None
    retrain: bool
    reasons: list[str]
    accuracy: float | None
    drift: float
    drift_counted: bool
    n_samples: int
    #: DriftReport.to_dict() of the batch (None without a reference); ``drift`` is its score.
    drift_report: dict[str, Any] | None = None
    task: str = ""
    #: The gating metric (``monitoring.metric`` or the task's default) and its limit.
    metric: str = "accuracy"
    threshold: float | None = None
    #: The serving model's value of ``metric`` on the new data (None: no model, or the
    #: batch's schema does not fit it).
    score: float | None = None
    #: Every metric of the serving model on the new data.
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: SchemaChange.to_dict() when the batch's columns differ from the serving model's.
    schema_change: dict[str, Any] | None = None
    #: Why a wanted retrain was skipped ("" when it was not).
    note: str = ""
    #: Why drift could not be measured (reference missing or malformed), else None.
    drift_error: str | None = None
    #: The serving model's ``metric`` on its own held-out split at training (what
    #: ``monitoring.max_degradation`` is relative to), None when unknown.
    baseline_score: float | None = None
    #: Why the serving model could not be loaded or used ("" when it could).
    serving_error: str = ""
    #: Rows the serving model was scored on (None: not scored), and rows skipped because
    #: they were among its training rows (the score is out-of-sample: docs/data.md).
    scored_rows: int | None = None
    skipped_seen_rows: int = 0
    #: CBPE (mlops.performance.cbpe): the serving model's ``metric`` and every metric of the task
    #: estimated from its calibrated probabilities on the batch, without its labels
    #: (empty, with ``estimate_note`` saying why, for a regression or an uncalibrated model).
    estimated_score: float | None = None
    estimated_metrics: dict[str, float | None] = field(default_factory=dict)
    estimate_note: str = ""
    #: The batch had no target: scored, its predictions stored (docs/labels.md).
    unlabelled: bool = False
    #: The predictions version of an unlabelled batch (None: not stored).
    predictions_version: str | None = None
    #: What the night's late labels did (mlops.performance.labels.LabelsReport.to_dict()), None when
    #: ``labels`` is not configured.
    labels: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainResult(StepResult):
    """The model trained in this run."""

    data_version: str
    model_version: str
    #: Held-out accuracy (None for a regression; ``score`` is the gating metric).
    accuracy: float | None
    train_rows: int
    test_rows: int
    promoted: bool = True
    champion_version: str | None = None
    champion_accuracy: float | None = None
    task: str = ""
    metric: str = "accuracy"
    threshold: float | None = None
    #: The challenger's value of ``metric`` and every metric, on the held-out split.
    score: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: The champion's, on the same held-out split (None without a usable champion).
    champion_score: float | None = None
    champion_metrics: dict[str, float | None] | None = None
    promotion_reason: str = ""
    #: The serving model's ``metric`` on its held-out split at training: the challenger's
    #: ``score`` when promoted, else the champion's own (None when unknown).
    baseline_score: float | None = None


@dataclass(frozen=True)
class ScoreResult(StepResult):
    """The predictions version the score step wrote (see :mod:`mlops.scoring`)."""

    predictions_version: str
    #: The URI of its manifest (which lists its Parquet objects).
    predictions_uri: str
    #: The serving model that scored the batch.
    model_version: str
    rows: int
    source: str
    #: The content hash of the scored rows (hashed like a data version, file by file).
    source_hash: str
    partitions: int


def _workspace(config: Config, ws: Workspace | None) -> Workspace:
    return ws if ws is not None else Workspace.open(config)


def _follow(config: Config, ws: Workspace, ingested: IngestResult) -> Config:
    """With ``data.engine: auto``, the config of the engine the night's ingest ran on."""
    if config.data.engine != auto_engine.AUTO or ingested.engine:
        return auto_engine.follow(config, ingested.engine)
    kind = ws.versioner.get_metadata(ingested.data_version).get("kind")
    return auto_engine.follow(config, "", kind == PARTITIONED)


# --- steps -------------------------------------------------------------------------------
def ingest(config: Config, run_id: str, ws: Workspace | None = None) -> IngestResult:
    """Load the configured source, validate it and register it as a data version.

    Raises:
        DataValidationError: The source is missing or invalid (names the file or column).
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    config, _ = auto_engine.resolve(config)  # data.engine: auto -> pandas or dask (logged)
    d = config.data
    # Checks the metric and training settings against the decided task before the
    # version is committed (exit 2).
    got = engine_for(config).ingest(config, ws)
    version, rows, task = got.data_version, got.rows, got.task
    result = IngestResult(run_id=run_id, data_version=version, rows=rows, source=d.source,
                          feature_means=got.feature_means, task=task,
                          feature_kinds=got.feature_kinds, source_files=got.source_files,
                          too_few_rows=got.too_few_rows, warnings=got.warnings,
                          unlabelled=got.unlabelled,
                          engine=d.engine)
    ws.write_result(INGEST, result)
    log.info("ingest: %d rows from %s -> data version %s (%s)", rows, d.source, version,
             task)
    return result


def monitor_check(config: Config, run_id: str, ws: Workspace | None = None) -> MonitorCheckResult:
    """Check the run's data against the serving model and decide whether to retrain.

    The batch is first compared with the serving model's input schema (see
    :mod:`mlops.schema`); a change fails the step (``monitoring.on_schema_change:
    fail``, exit 2, nothing written) or asks for a retrain (reason ``schema_change``).
    The serving model is then scored on the new data with every metric of the task;
    the gating metric (``monitoring.metric``) below its threshold asks for a retrain
    (``low_accuracy`` for accuracy, ``low_score`` otherwise), and so does drift. A
    retrain is skipped when a challenger trained on this data version with the same
    config was already rejected (reason ``rejected_before``).

    The configured engine (:func:`mlops.engines.engine_for`) opens the batch and
    profiles it; :meth:`mlops.monitor.ModelMonitor.decide` decides every reason from
    that profile, with the serving model's real score.

    When no retrain is needed, the serving model's score on the new data is recorded
    in the history, so the history has a point for every run.

    With ``labels`` configured (docs/labels.md), a batch without its target is scored
    and its predictions stored with their ids (no metric judges it), and the label files
    that arrived are versioned and joined with the stored predictions: each earlier
    night gains its realized score, and a realized gating metric of the serving model
    below its limit (or degraded) asks for a retrain (``low_realized_score``) on the
    labelled rows of the training window.

    Raises:
        BadInputError: The run has no ingest result.
        SchemaChangeError: The batch's schema changed and the policy is ``fail``.
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, MONITOR_CHECK))
    config = _follow(config, ws, ingested)
    recorded = ws.read_result(run_id, MONITOR_CHECK)
    if recorded is not None and recorded.get("retrain") and ws.registry.exists(run_id):
        # A resume after train saved this run's model and crashed before its alias
        # moved: the recorded decision stands (re-deciding would take the unpromoted
        # model for the serving one and never finish the promotion; issue 19 item 4).
        log.info("monitor-check: run %s already decided to retrain and saved model %s; "
                 "resuming its train step", run_id, run_id)
        return MonitorCheckResult.from_dict(recorded)
    # The label files that arrived are read and checked before this step writes anything.
    arrival = read_arrival(config, label_store(ws)) if config.labels.enabled else None
    current = ws.current_model_version()
    model: Any = None
    record: Any = None
    unusable = None
    unlabelled = ingested.unlabelled
    predictions: str | None = None
    predicted_rows: int | None = None
    if current is not None:
        try:
            model, record = ws.registry.load(current)
        except (BadInputError, ValueError, KeyError, AttributeError, TypeError) as err:
            unusable = _unusable(current, err)
    reference, drift_error = serving_reference(ws, current)
    change = None
    scorable, names = False, None
    engine = engine_for(config)
    batch = engine.batch(config, ws, ingested)
    # An unlabelled batch is judged as the serving model's task.
    task = batch.task or (_serving_task(record) if unlabelled else "")
    metric, threshold = gate(config, task) if task else \
        (config.monitoring.metric or "accuracy", None)
    if model is not None:
        try:
            change, scorable, names = _schema_check(config, ingested.data_version, current,
                                                    record, batch.columns(), task)
        except DamagedSchemaError as err:
            unusable, scorable, names = _unusable(current, err), False, None
    if model is not None and scorable and unusable is None and unlabelled:
        # Its predictions are stored with their ids; its labels judge the model later.
        try:
            scored_version = engine.score_version(ws, run_id, ingested.data_version, model,
                                                  record, current or "",
                                                  config.labels.id_columns)
            predictions, predicted_rows = scored_version.version, scored_version.rows
            log.info("monitor-check: unlabelled batch %s: %d predictions of model %s stored "
                     "as predictions version %s", ingested.data_version, scored_version.rows,
                     current, predictions)
        except (ValueError, KeyError, AttributeError, TypeError) as err:
            unusable = _unusable(current, err)
    scoring = model is not None and scorable and unusable is None and not unlabelled
    known = _training_rows(ws, current) if scoring else None
    # CBPE (mlops.performance.cbpe): the serving model's calibration map, kept in its record.
    calibration, estimate_note = _calibration_map(model, record, task) \
        if scoring or predictions is not None else (None, "no serving model scored the batch")
    # An unlabelled night is estimated from its stored predictions (both engines wrote
    # the same probability columns): what CBPE is for, labels that have not come yet.
    stored_estimate = _stored_estimate(ws, predictions, model, record, calibration) \
        if predictions is not None and calibration is not None else {}
    try:
        profile = batch.profile(model if scoring else None, names, known, calibration)
    except (ValueError, KeyError, AttributeError, TypeError) as err:
        if not scoring:
            raise
        unusable, scoring = _unusable(current, err), False
        profile = batch.profile(None, names)
    metrics = dict(profile.metrics)
    estimated = dict(profile.estimated_metrics) if scoring else stored_estimate
    if (scoring or predictions is not None) and calibration is not None and not estimated:
        estimate_note = "no rows to estimate on"
    score = metrics.get(metric)
    baseline = None if record is None else _baseline(record.get("metadata"), metric)
    trained_on = {None if record is None else (record.get("metadata") or {}).get(
        "data_version"), None if not isinstance(reference, Mapping)
        else reference.get("data_version")} - {None}
    def rejected() -> str:
        if not task:  # an unlabelled batch of unknown task: the window decides it
            return ""
        previous = rejected_before(ws.registry, ingested.data_version,
                                   config_fingerprint(config, task))
        return "" if previous is None else (
            f"challenger {previous.id} was trained on data version {ingested.data_version} "
            f"with the same config and not promoted "
            f"({previous.training().promotion_reason}): not training again")

    labels_report = drop = None
    if arrival is not None:
        labels_report = process_labels(ws, run_id, arrival)
        drop = realized_drop(config, labels_report.realized, current, baseline)
        if drop is not None:
            log.info("monitor-check: serving model %s realized %s %s on night %s (%d "
                     "labelled rows)", current, drop.metric, _fmt(drop.realized_score),
                     drop.run_id, drop.labelled_rows)
    labelled_only = unlabelled or drop is not None

    def window_too_small() -> str:
        return _window_too_small(config, ws, ingested, labelled_only)

    # The one decision: every retrain reason comes from the monitor, given the serving
    # model's real score on the batch.
    profile = replace(
        profile, no_model=current is None, metric=metric, score=score, threshold=threshold,
        scored=scoring, baseline_score=baseline,
        max_degradation=config.monitoring.max_degradation,
        schema_change=change is not None and change.changed, serving_error=unusable or "",
        reference=reference, drift_error=drift_error,
        own_data=ingested.data_version in trained_on, too_few_rows=ingested.too_few_rows,
        rejected=rejected, estimated_score=estimated.get(metric),
        estimated_metrics=estimated, realized_drop=drop is not None,
        window_too_few_rows=window_too_small if window_of(config, labelled_only) else None)
    decision = ws.monitor.decide(profile)
    rows = profile.rows
    scored_rows = profile.scored_rows if scoring else predicted_rows
    skipped = profile.skipped_seen_rows if scoring else 0
    reasons, retrain, note = list(decision.reasons), decision.retrain, decision.note
    drift_counted = decision.drift_counted
    limit = config.monitoring.max_degradation
    # Every row was in the serving model's training set: nothing to score it on.
    all_seen = profile.all_seen
    if all_seen:
        note = "; ".join(filter(None, [note, (
            f"every row of data version {ingested.data_version} was among serving model "
            f"{current}'s training rows: not scored")]))
    report = decision.drift_report
    accuracy = metrics.get("accuracy")
    result = MonitorCheckResult(
        run_id=run_id, data_version=ingested.data_version, model_version=current,
        retrain=retrain, reasons=reasons, accuracy=accuracy,
        drift=decision.drift, drift_counted=drift_counted, n_samples=int(rows or 0),
        drift_report=None if report is None else report.to_dict(), task=task, metric=metric,
        threshold=threshold, score=score, metrics=metrics,
        schema_change=None if change is None or not change.changed else change.to_dict(),
        note=note, drift_error=decision.drift_error, baseline_score=baseline,
        serving_error=unusable or "", scored_rows=scored_rows, skipped_seen_rows=skipped,
        estimated_score=estimated.get(metric), estimated_metrics=estimated,
        estimate_note=estimate_note, unlabelled=unlabelled, predictions_version=predictions,
        labels=None if labels_report is None else labels_report.to_dict())
    if not retrain and current is not None:
        alerts = [] if all_seen or unlabelled else \
            serving_alerts(score, threshold, metric, baseline, limit)
        record = HistoryRecord(
            timestamp=iso(utc_now()), accuracy=_float(accuracy),
            data_version=ingested.data_version, model_version=current, run_id=run_id,
            retrained=False, drift=decision.drift, drift_error=decision.drift_error,
            reasons=reasons, task=task, metric=metric, score=score, metrics=metrics,
            serving_score=score, baseline_score=baseline, alerts=alerts, note=note,
            status="succeeded", scored_rows=scored_rows, skipped_seen_rows=skipped,
            estimated_score=estimated.get(metric), estimated_metrics=estimated)
        if unlabelled:
            record = record.replace(unlabelled=True, predictions_version=predictions)
        if labels_report is not None:
            record = record.replace(labels=_labels_summary(labels_report))
        ws.monitor.record(record)
    ws.write_result(MONITOR_CHECK, result)
    log.info("monitor-check: model %s %s %s on %s rows (%d skipped as seen in training) "
             "drift %.4f -> retrain=%s %s%s", current, metric,
             "n/a" if score is None else f"{score:.4f}", scored_rows, skipped, decision.drift,
             retrain, reasons, f"; {note}" if note else "")
    return result


def train(config: Config, run_id: str, ws: Workspace | None = None) -> TrainResult:
    """Fit the challenger, save it, and promote it to ``production`` if it is good enough.

    The challenger is always saved, with its metrics, input schema, config
    fingerprint and lineage, then its drift reference (built from its training
    features, kept with its version) and a metrics record. It becomes the serving
    model (the ``production`` alias moves to it, last: the one commit point of a
    promotion) when nothing serves yet; otherwise only when its held-out score meets
    ``monitoring.metric_threshold`` and is at least as good as the champion's score on
    the same held-out rows (give or take ``promotion.tolerance``). Metrics are recorded
    for the challenger either way.

    The model version id is the run id, so a retried train step of the same run
    finds its model (and its recorded promotion decision) instead of saving a second one.

    With ``training.window`` (or, for an unlabelled batch or ``low_realized_score``, the
    last ``labels.lookback_days``) the model trains on the labelled rows of the window's
    data versions, deduplicated, and its lineage lists them (docs/labels.md).

    Raises:
        BadInputError: The run has no ingest result.
        ConfigError: Bad training settings.
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, TRAIN))
    config = _follow(config, ws, ingested)
    if ingested.task:
        check_training(config.training, ingested.task)
    checked = ws.read_result(run_id, MONITOR_CHECK) or {}
    window = window_of(config, ingested.unlabelled
                       or LOW_REALIZED_SCORE in checked.get("reasons", []))
    rows = None if window is None else training_frame(
        ws, ingested.data_version, versions=window[0], days=window[1])
    trainer = engine_for(config).trainer(config, ws, ingested,
                                         None if rows is None else rows[0])
    task = trainer.task
    metric, threshold = gate(config, task)
    fresh = not ws.registry.exists(run_id)
    with trainer:
        if fresh:
            t = config.training
            if trainer.train_rows < t.min_rows or trainer.test_rows < t.min_test_rows:
                raise DataValidationError(
                    f"data version '{ingested.data_version}' splits into "
                    f"{trainer.train_rows} training and {trainer.test_rows} held-out rows at "
                    f"data.test_size {config.data.test_size}: fewer than training.min_rows="
                    f"{t.min_rows} or training.min_test_rows={t.min_test_rows}; not "
                    "training")
            champion = ws.current_model_version()
            model, extra = trainer.fit()
            metrics = trainer.metrics(model)
            calibration = _calibration(trainer, model)
            champion_metrics, compared = _champion_metrics(ws, champion, trainer)
            champion_score = None if champion_metrics is None else champion_metrics.get(metric)
            challenger_score = metrics.get(metric)
            if compared is not None:
                # Compared on the held-out rows the champion did not train on (a growing
                # source holds out some of its training rows): the challenger too.
                challenger_score = trainer.metrics_unseen(model, None,
                                                          compared["known"])[0].get(metric)
                extra = {**extra, "comparison": {
                    "rows": compared["rows"], "skipped_seen_by_champion":
                        trainer.test_rows - compared["rows"],
                    "challenger_score": challenger_score, "champion_score": champion_score}}
            promote, why = promotion_decision(challenger_score, champion, champion_score,
                                              config.promotion.tolerance, metric, threshold)
            champion_baseline = _champion_baseline(ws, champion, metric)
            limit = config.monitoring.max_degradation
            if promote and champion is not None and champion_score is not None \
                    and degraded(metrics.get(metric), champion_baseline, metric, limit):
                # The challenger cannot reach what the champion reached at training: the
                # data (labels), not the model, looks broken. Keep the champion and alert.
                promote = False
                why = (f"challenger {metric} {_fmt(metrics.get(metric))} is more than "
                       f"monitoring.max_degradation {limit:g} worse than champion {champion}'s "
                       f"held-out {metric} {_fmt(champion_baseline)} at training: the new data "
                       "looks broken; champion keeps serving (alert degraded)")
            facts = TrainingFacts(
                accuracy=metrics.get("accuracy"), data_version=ingested.data_version,
                model_type=config.training.model_type, params=config.training.params,
                train_rows=trainer.train_rows, test_rows=trainer.test_rows,
                features=list(trainer.features), run_id=run_id, champion_version=champion,
                champion_accuracy=None if champion_metrics is None
                else champion_metrics.get("accuracy"),
                promote=promote, promotion_reason=why, task=task, metric=metric,
                threshold=threshold, score=metrics.get(metric), metrics=metrics,
                champion_score=champion_score, champion_metrics=champion_metrics,
                schema=trainer.schema().to_dict(),
                config_fingerprint=config_fingerprint(config, task),
                lineage=lineage(ingested.data_version, ingested.source, ingested.source_files,
                                None if rows is None else labelled_versions(rows[1])),
                calibration=calibration, extra=extra)
            ws.registry.save(model, run_id, facts.to_dict())
        else:
            log.info("train: model %s already saved by this run; not training again", run_id)
        record = ws.registry.get_record(run_id)
        meta = record.training()
        accuracy = meta.accuracy
        promote = bool(meta.promote)
        champion = meta.champion_version
        champion_accuracy = meta.champion_accuracy
        # A model saved before metrics existed: its accuracy is its score.
        metrics = dict(meta.metrics or {"accuracy": accuracy})
        score = meta.score if meta.metric else accuracy
        champion_score = meta.champion_score if meta.metric else champion_accuracy
        baseline = score if promote else _champion_baseline(ws, champion, metric)
        # Each part is written once and checked for on a resume, in this order; the alias
        # move comes last, so a promoted model always has its reference and its metrics.
        # The reference is kept with the model version, whichever engine built it.
        if ws.registry.get_reference(run_id) is None:
            ws.registry.save_reference(run_id, ws.monitor.reference_document(
                **trainer.reference(), data_version=ingested.data_version,
                model_version=run_id))
        if not ws.registry.has_training_rows(run_id):
            ws.registry.save_training_rows(run_id, trainer.training_rows())
    crash_point("after-reference")
    serving_score = score if promote else champion_score
    alerts = serving_alerts(serving_score, threshold, metric, baseline,
                            config.monitoring.max_degradation)
    # The record names the model that serves after the run and its score, as the run's
    # summary does; the challenger's are under challenger_* whether or not it won.
    serving = run_id if promote else champion
    serving_metrics = metrics if promote else (meta.champion_metrics or {})
    ws.monitor.record(HistoryRecord(
        timestamp=iso(datetime.fromisoformat(record.created_at)),
        accuracy=_float(accuracy if promote else champion_accuracy),
        data_version=ingested.data_version, model_version=serving, run_id=run_id,
        retrained=True, drift=checked.get("drift"), drift_error=checked.get("drift_error"),
        reasons=checked.get("reasons", []), promoted=promote, champion_version=champion,
        champion_accuracy=champion_accuracy, challenger_version=run_id,
        challenger_accuracy=accuracy, challenger_metrics=metrics, task=task, metric=metric,
        score=serving_score, metrics=serving_metrics, challenger_score=score,
        champion_score=champion_score, serving_score=serving_score, baseline_score=baseline,
        note="" if promote else str(meta.promotion_reason), alerts=alerts,
        status="succeeded"), once=f"train-{run_id}")
    crash_point("after-metrics")
    if promote and not any(e.version == run_id for e in ws.registry.alias_events(PRODUCTION)):
        # The serving exports come before the alias move: production never names a
        # version without them (a complete export is never rewritten on a resume).
        export_for_serving(ws.store, ws.registry, run_id)
        crash_point("after-export")
        ws.registry.set_alias(run_id, PRODUCTION, reason=str(meta.promotion_reason),
                              by=f"pipeline run {run_id}")
        crash_point("after-alias")
    result = TrainResult(run_id=run_id, data_version=ingested.data_version, model_version=run_id,
                         accuracy=accuracy, train_rows=int(meta.train_rows),
                         test_rows=int(meta.test_rows), promoted=promote,
                         champion_version=champion, champion_accuracy=champion_accuracy,
                         task=task, metric=metric, threshold=threshold, score=score,
                         metrics=metrics, champion_score=champion_score,
                         champion_metrics=meta.champion_metrics,
                         promotion_reason=str(meta.promotion_reason), baseline_score=baseline)
    ws.write_result(TRAIN, result)
    log.info("train: %s %s on %d rows -> model %s, held-out %s %s; champion %s %s -> %s",
             config.training.model_type, task, int(meta.train_rows), run_id, metric,
             "n/a" if score is None else f"{score:.4f}", champion,
             "n/a" if champion_score is None else f"{champion_score:.4f}",
             "promoted" if promote else "not promoted")
    return result


def score(config: Config, run_id: str, ws: Workspace | None = None, *,
          record: bool = True) -> ScoreResult:
    """Score ``scoring.source`` with the serving model; write a predictions version.

    Runs after train (or after monitor-check when there was no retrain), or alone
    (``mlops score``). See :mod:`mlops.scoring`. With ``record`` false the result is
    not written to ``runs/<run-id>/score.json`` (``mlops score`` without ``--run-id``:
    a run folder with only this step would look unfinished to ``mlops status``).

    Raises:
        BadInputError: ``scoring.source`` empty, no serving model, a missing id or feature
            column (nothing written).
        DataValidationError: The source is missing or cannot be parsed.
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    scored = engine_for(config).score(ws, run_id)
    result = ScoreResult(run_id=run_id, predictions_version=scored.version,
                         predictions_uri=scored.uri, model_version=scored.model_version,
                         rows=scored.rows, source=config.scoring.source,
                         source_hash=scored.input_hash, partitions=scored.partitions)
    if record:
        ws.write_result(SCORE, result)
    return result


class DamagedSchemaError(IntegrityError):
    """The serving model's recorded input schema is not a schema: the model is unusable
    and monitor-check retrains (``serving_model_unusable``), as the docs promise."""


def _schema_check(config: Config, data_version: str, current: str | None,
                  record: Mapping[str, Any] | None, frame: Any, task: str
                  ) -> tuple[SchemaChange | None, bool, list[str] | None]:
    """Compare a batch (``frame``: its rows, or an empty frame of its columns) with the
    serving model's input schema.

    Returns:
        ``(change, scorable, names)``: the change (None when the model recorded no
        schema), whether the model can score the batch, and the columns to give it, in
        its own order (None: the batch's features as they are).

    Raises:
        SchemaChangeError: The schema changed and ``monitoring.on_schema_change`` is fail.
    """
    try:
        schema = schema_of(record or {}, config.data.target_column)
    except (ValueError, KeyError, AttributeError, TypeError) as err:
        raise DamagedSchemaError(f"model version '{current}': the input schema in its "
                                 f"metadata.json is damaged ({type(err).__name__}: {err})"
                                 ) from err
    if schema is None:  # a model that recorded no schema scores the batch as it is
        return None, True, None
    change = compare(schema, frame, task)
    if change.changed and config.monitoring.on_schema_change == "fail":
        raise SchemaChangeError(
            f"schema change in data version {data_version} against serving "
            f"model {current}: {change.describe()} (monitoring.on_schema_change is fail; "
            "set it to retrain to train on the new columns)")
    return change, not (change.missing or change.retyped or change.task), schema.names


def serving_alerts(score: float | None, threshold: float | None, metric: str,
                   baseline: float | None, max_degradation: float | None) -> list[str]:
    """The alerts of the model that serves after a run: ``serving_below_threshold``
    when its score misses the gate's limit, ``degraded`` when it fell more than
    ``monitoring.max_degradation`` below its own held-out score at training."""
    alerts: list[str] = [] if meets_threshold(score, threshold, metric) \
        else [SERVING_BELOW_THRESHOLD]
    if degraded(score, baseline, metric, max_degradation):
        alerts.append(DEGRADED)
    return alerts


def _float(value: float | None) -> float | None:
    """An accuracy as a plain float for the history (None stays None)."""
    return None if value is None else float(value)


def _baseline(meta: Any, metric: str) -> float | None:
    """A model's ``metric`` on its own held-out split at training, from its record's
    metadata (None when it recorded none)."""
    if not isinstance(meta, Mapping):
        return None
    metrics = meta.get("metrics")
    value = metrics.get(metric) if isinstance(metrics, Mapping) else None
    if value is None and meta.get("metric", "accuracy") == metric:
        value = meta.get("score", meta.get("accuracy"))
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _champion_baseline(ws: Workspace, champion: str | None, metric: str) -> float | None:
    if champion is None:
        return None
    try:
        return _baseline(ws.registry.get_record(champion).to_dict().get("metadata"), metric)
    except (MLOpsError, ValueError, KeyError, TypeError) as err:
        log.warning("train: no held-out score of champion %s (%s)", champion, err)
        return None


def _calibration(trainer: Trainer, model: Any) -> dict[str, Any] | None:
    """The challenger's calibration map (mlops.performance.cbpe), None for a regression. A model
    without probabilities is logged and saved without one (monitor-check then
    estimates nothing for it): calibration never fails the train step."""
    if trainer.task != CLASSIFICATION:
        return None
    try:
        return trainer.calibration(model)
    except (ValueError, TypeError, AttributeError) as err:
        log.warning("train: no calibration map for the challenger (%s); its metrics "
                    "will not be estimated without labels", err)
        return None


def _calibration_map(model: Any, record: Any, task: str) -> tuple[Any, str]:
    """The serving model's calibration map from its record (mlops.performance.cbpe), or None and why
    its metrics cannot be estimated without labels."""
    if task != CLASSIFICATION:
        return None, ("regression: no estimate without labels (DLE is not implemented; "
                      "docs/estimated-performance.md)")
    meta = record.get("metadata") if isinstance(record, Mapping) else None
    calibration = meta.get("calibration") if isinstance(meta, Mapping) else None
    why = check_calibration(calibration, list(getattr(model, "classes_", [])))
    return (None, why) if why else (calibration, "")


def _stored_estimate(ws: Workspace, version: str, model: Any, record: Mapping[str, Any],
                     calibration: Mapping[str, Any]) -> dict[str, float | None]:
    """CBPE's estimated metrics of the serving model on a stored predictions version (an
    unlabelled night), from its ``probability_<class>`` columns in the model's class order
    (as :func:`mlops.scoring.score_frame` names them); empty when there are no rows or the
    columns are not the model's."""
    frame = predictions_store(ws).load(version)
    classes = spec_of(model, record, (), version).classes or []
    columns = [f"{PROBABILITY}{c}" for c in classes]
    if frame.empty or not columns or any(c not in frame.columns for c in columns):
        return {}
    return estimate(frame[columns].to_numpy(dtype=float), calibration)


def _serving_task(record: Mapping[str, Any] | None) -> str:
    """The task of the serving model (what an unlabelled batch is judged as), "" when none."""
    task = ((record or {}).get("metadata") or {}).get("task") if isinstance(record, Mapping) \
        else None
    return str(task) if task in ("classification", "regression") else ""


def _window_too_small(config: Config, ws: Workspace, ingested: IngestResult,
                      labelled_only: bool) -> str:
    """Why the training window holds too few labelled rows to train on ("" when it does
    not): a retrain asked on an unlabelled night waits for its labels."""
    window = window_of(config, labelled_only)
    assert window is not None
    try:
        df, _ = training_frame(ws, ingested.data_version, versions=window[0], days=window[1])
    except DataValidationError as err:
        return str(err)
    return too_few_rows(config.training, config.data.test_size, len(df), None,
                        ingested.task or CLASSIFICATION,
                        f"the training window of data version {ingested.data_version}")


def _labels_summary(report: LabelsReport) -> dict[str, Any]:
    """The night's labels in its history entry: counts, and the nights they realized."""
    doc = report.to_dict()
    doc["realized"] = [{"run_id": r.run_id, "realized_score": r.realized_score,
                        "labelled_rows": r.labelled_rows} for r in report.realized]
    return doc


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _training_rows(ws: Workspace, version: str | None) -> Any:
    """The hashes of the rows ``version`` was trained on, or None (a model saved before
    they were kept, or through the library API: every row is scored, as before)."""
    if version is None:
        return None
    try:
        return ws.registry.get_training_rows(version)
    except BadInputError as err:
        log.warning("monitor-check: the training rows of model %s cannot be read (%s); "
                    "scoring every row", version, err)
        return None


def _unusable(version: str | None, err: Exception) -> str:
    """Log and describe a serving model that cannot be loaded or cannot score the data
    (deleted/truncated artifact, corrupt metadata, alias to a missing version): the
    step retrains rather than failing every night. A transient storage error (exit 1)
    is not caught, so the step still fails and is retried."""
    why = f"{type(err).__name__}: {err}"
    log.warning("monitor-check: serving model %s is unusable (%s); retraining", version, why)
    return why


def _champion_metrics(ws: Workspace, champion: str | None, trainer: Trainer
                      ) -> tuple[dict[str, float | None] | None, dict[str, Any] | None]:
    """The champion's metrics on the held-out split, and (when some held-out rows were
    among its training rows) ``{"known", "rows"}``: its training rows' hashes and the
    held-out rows left, which the metrics were computed on instead."""
    if champion is None:
        return None, None
    try:
        model, record = ws.registry.load(champion)
        schema = schema_of(record, ws.config.data.target_column)
        names = None if schema is None else schema.names
        if schema is not None:
            change = compare(schema, trainer.columns(), trainer.task)
            if change.missing or change.retyped or change.task:
                log.warning("train: champion %s cannot score this data (%s); the challenger "
                            "wins", champion, change.describe())
                return None, None
        known = _training_rows(ws, champion)
        if known is not None:
            unseen, rows = trainer.metrics_unseen(model, names, known)
            if 0 < rows < trainer.test_rows:
                log.info("train: champion %s compared on the %d held-out rows it was not "
                         "trained on (of %d)", champion, rows, trainer.test_rows)
                return unseen, {"known": known, "rows": rows}
        return trainer.metrics(model, names), None
    except (MLOpsError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("train: champion %s cannot be evaluated (%s); the challenger wins",
                    champion, err)
        return None, None


#: The steps by name, in order.
STEP_FUNCTIONS = {INGEST: ingest, MONITOR_CHECK: monitor_check, TRAIN: train, SCORE: score}
