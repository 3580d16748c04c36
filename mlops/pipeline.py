"""The nightly steps (ingest -> monitor-check -> train) and their results.

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
from typing import Any, Protocol, TypeVar

from mlops.config import Config
from mlops.data import (
    SYNTHETIC,
    feature_means,
    generate_synthetic_data,
    load_source,
    split_xy,
    validate,
)
from mlops.errors import BadInputError, DataValidationError, MLOpsError
from mlops.ids import check_version_id
from mlops.records import TrainingFacts
from mlops.registry import PRODUCTION
from mlops.storage import crash_point
from mlops.training import check_trainable, check_training, evaluate, split, train_model
from mlops.workspace import Workspace, serving_reference

log = logging.getLogger(__name__)

#: ``data.engine`` of the Dask engine (:mod:`mlops.dask_engine`, imported only then).
DASK = "dask"

INGEST = "ingest"
MONITOR_CHECK = "monitor-check"
TRAIN = "train"
STEPS = (INGEST, MONITOR_CHECK, TRAIN)
#: Retrain reason: the serving model cannot be loaded or cannot score the new data.
SERVING_MODEL_UNUSABLE = "serving_model_unusable"

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
    #: Why drift could not be measured (reference missing or malformed), else None.
    drift_error: str | None = None


@dataclass(frozen=True)
class TrainResult(StepResult):
    """The model trained in this run."""

    data_version: str
    model_version: str
    accuracy: float
    train_rows: int
    test_rows: int
    promoted: bool = True
    champion_version: str | None = None
    champion_accuracy: float | None = None


def _workspace(config: Config, ws: Workspace | None) -> Workspace:
    return ws if ws is not None else Workspace.open(config)


class _Trainer(Protocol):
    """The data side of the train step: one per engine (pandas here, Dask in
    :class:`mlops.dask_engine.DaskTrainer`); a context manager around the step."""

    features: list[str]

    @property
    def train_rows(self) -> int: ...

    @property
    def test_rows(self) -> int: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def fit(self) -> tuple[Any, dict[str, Any]]: ...

    def accuracy(self, model: Any) -> float | None: ...

    def reference(self) -> dict[str, Any]: ...


class _PandasTrainer:
    """The pandas engine's train data: a stratified split of the loaded frame."""

    def __init__(self, config: Config, ws: Workspace, version: str) -> None:
        self.config = config
        df, _ = ws.versioner.load(version)
        x, y = split_xy(df, config.data.target_column)
        self.features = [str(c) for c in x.columns]
        self.x_train, self.x_test, self.y_train, self.y_test = split(
            x, y, config.data.test_size, config.training.random_state)

    def __enter__(self) -> _PandasTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def train_rows(self) -> int:
        return len(self.x_train)

    @property
    def test_rows(self) -> int:
        return len(self.x_test)

    def fit(self) -> tuple[Any, dict[str, Any]]:
        return train_model(self.x_train, self.y_train, self.config), {}

    def accuracy(self, model: Any) -> float | None:
        return evaluate(model, self.x_test, self.y_test)

    def reference(self) -> dict[str, Any]:
        means = {str(c): float(v) for c, v in self.x_train.mean().items()}
        return {"feature_means": means, "reference_frame": self.x_train}


# --- steps -------------------------------------------------------------------------------
def ingest(config: Config, run_id: str, ws: Workspace | None = None) -> IngestResult:
    """Load the configured source, validate it and register it as a data version.

    Raises:
        DataValidationError: The source is missing or invalid (names the file or column).
    """
    check_version_id(run_id, "run id")
    check_training(config.training)  # a bad training.params fails before anything is written
    ws = _workspace(config, ws)
    d = config.data
    if d.engine == DASK:
        from mlops import dask_engine

        version, rows, means = dask_engine.ingest_source(config, ws)
    else:
        if d.source == SYNTHETIC:
            df = generate_synthetic_data(d.n_samples, d.n_features, d.random_state)
            validate(df, d.target_column, "synthetic data")
        else:
            df = load_source(d.source, d.target_column, config.storage.options)
        check_trainable(df[d.target_column], d.test_size,
                        "synthetic data" if d.source == SYNTHETIC else d.source)
        version, rows = ws.versioner.register(df), len(df)
        means = feature_means(df, d.target_column)
    result = IngestResult(run_id=run_id, data_version=version, rows=rows, source=d.source,
                          feature_means=means)
    ws.write_result(INGEST, result)
    log.info("ingest: %d rows from %s -> data version %s", rows, d.source, version)
    return result


def monitor_check(config: Config, run_id: str, ws: Workspace | None = None) -> MonitorCheckResult:
    """Evaluate the current model on the run's data and decide whether to retrain.

    When no retrain is needed, the current model's accuracy on the new data is
    recorded in the history, so the history has a point for every run.

    Raises:
        BadInputError: The run has no ingest result.
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, MONITOR_CHECK))
    current = ws.current_model_version()
    model: Any = None
    unusable = None
    if current is not None:
        try:
            model, _ = ws.registry.load(current)
        except (BadInputError, ValueError, KeyError, AttributeError, TypeError) as err:
            unusable = _unusable(current, err)
    reference, drift_error = serving_reference(ws, current)
    if config.data.engine == DASK:
        from mlops import dask_engine

        # Statistics and sketches from the manifest; the data is read only to score.
        try:
            batch = dask_engine.check_batch(config, ws, ingested.data_version, model)
        except (ValueError, KeyError, AttributeError, TypeError) as err:
            if model is None:
                raise
            unusable = _unusable(current, err)
            batch = dask_engine.check_batch(config, ws, ingested.data_version, None)
        accuracy, rows = batch.accuracy, batch.rows
        decision = ws.monitor.decide(accuracy, batch.means, no_model_yet=current is None,
                                     n_samples=rows, reference=reference,
                                     drift_error=drift_error, sketches=batch.sketches)
    else:
        df, _ = ws.versioner.load(ingested.data_version)
        x, y = split_xy(df, config.data.target_column)
        accuracy = None
        if model is not None:
            try:
                accuracy = evaluate(model, x, y)
            except (ValueError, KeyError, AttributeError, TypeError) as err:
                unusable = _unusable(current, err)
        rows = len(df)
        decision = ws.monitor.decide(accuracy, feature_means(df, config.data.target_column),
                                     no_model_yet=current is None, n_samples=rows,
                                     current_frame=x, reference=reference,
                                     drift_error=drift_error)
    if unusable is not None:
        decision = replace(decision, retrain=True,
                           reasons=(*decision.reasons, SERVING_MODEL_UNUSABLE))
    report = decision.drift_report
    result = MonitorCheckResult(
        run_id=run_id, data_version=ingested.data_version, model_version=current,
        retrain=decision.retrain, reasons=list(decision.reasons), accuracy=accuracy,
        drift=decision.drift, drift_counted=decision.drift_counted, n_samples=rows,
        drift_report=None if report is None else report.to_dict(),
        drift_error=decision.drift_error)
    if not decision.retrain and accuracy is not None:
        ws.monitor.record_metrics(accuracy, ingested.data_version, current,
                                  {"run_id": run_id, "retrained": False, "drift": decision.drift,
                                   "drift_error": decision.drift_error, "reasons": []})
    ws.write_result(MONITOR_CHECK, result)
    log.info("monitor-check: model %s accuracy %s drift %.4f -> retrain=%s %s", current,
             "n/a" if accuracy is None else f"{accuracy:.4f}", decision.drift,
             decision.retrain, list(decision.reasons))
    return result


def train(config: Config, run_id: str, ws: Workspace | None = None) -> TrainResult:
    """Fit the challenger, save it, and promote it to ``production`` if it is good enough.

    The challenger is always saved, with its drift reference (built from its training
    features) and a metrics record. It becomes the serving model (the ``production``
    alias moves to it, last: the one commit point of a promotion) when its held-out
    accuracy is at least the champion's accuracy on the same
    held-out rows minus ``promotion.tolerance``, or when there is no usable champion.
    Metrics are recorded for the challenger either way.

    The model version id is the run id, so a retried train step of the same run
    finds its model (and its recorded promotion decision) instead of saving a second one.

    Raises:
        BadInputError: The run has no ingest result.
        ConfigError: Bad training settings.
    """
    check_version_id(run_id, "run id")
    check_training(config.training)
    ws = _workspace(config, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, TRAIN))
    checked = ws.read_result(run_id, MONITOR_CHECK) or {}
    trainer: _Trainer
    if config.data.engine == DASK:
        from mlops import dask_engine

        trainer = dask_engine.DaskTrainer(config, ws, ingested.data_version)
    else:
        trainer = _PandasTrainer(config, ws, ingested.data_version)
    fresh = not ws.registry.exists(run_id)
    with trainer:
        if fresh:
            champion = ws.current_model_version()
            model, extra = trainer.fit()
            accuracy = trainer.accuracy(model)
            if accuracy is None:
                raise DataValidationError(
                    f"data version '{ingested.data_version}' leaves no rows for evaluation "
                    f"at data.test_size {config.data.test_size}")
            champion_accuracy = _champion_accuracy(ws, champion, trainer)
            promote, why = promotion_decision(accuracy, champion, champion_accuracy,
                                              config.promotion.tolerance)
            facts = TrainingFacts(
                accuracy=accuracy, data_version=ingested.data_version,
                model_type=config.training.model_type, params=config.training.params,
                train_rows=trainer.train_rows, test_rows=trainer.test_rows,
                features=list(trainer.features), run_id=run_id, champion_version=champion,
                champion_accuracy=champion_accuracy, promote=promote, promotion_reason=why,
                extra=extra)
            ws.registry.save(model, run_id, facts.to_dict())
        else:
            log.info("train: model %s already saved by this run; not training again", run_id)
        record = ws.registry.get_record(run_id)
        meta = record.training()
        accuracy = float(meta.accuracy)
        promote = bool(meta.promote)
        champion = meta.champion_version
        champion_accuracy = meta.champion_accuracy
        # Each part is written once and checked for on a resume, in this order; the alias
        # move comes last, so a promoted model always has its reference and its metrics.
        # The reference is kept with the model version, whichever engine built it.
        if ws.registry.get_reference(run_id) is None:
            ws.registry.save_reference(run_id, ws.monitor.reference_document(
                **trainer.reference(), data_version=ingested.data_version,
                model_version=run_id))
    crash_point("after-reference")
    ws.monitor.record_metrics(accuracy, ingested.data_version, run_id, {
        "run_id": run_id, "retrained": True, "drift": checked.get("drift"),
        "drift_error": checked.get("drift_error"),
        "reasons": checked.get("reasons", []), "promoted": promote,
        "champion_version": champion, "champion_accuracy": champion_accuracy},
        once=f"train-{run_id}", at=record.created_at)
    crash_point("after-metrics")
    if promote and not any(e.version == run_id for e in ws.registry.alias_events(PRODUCTION)):
        ws.registry.set_alias(run_id, PRODUCTION, reason=str(meta.promotion_reason),
                              by=f"pipeline run {run_id}")
        crash_point("after-alias")
    result = TrainResult(run_id=run_id, data_version=ingested.data_version, model_version=run_id,
                         accuracy=accuracy, train_rows=int(meta.train_rows),
                         test_rows=int(meta.test_rows), promoted=promote,
                         champion_version=champion, champion_accuracy=champion_accuracy)
    ws.write_result(TRAIN, result)
    log.info("train: %s on %d rows -> model %s, held-out accuracy %.4f; champion %s %s -> "
             "%s", config.training.model_type, int(meta.train_rows), run_id, accuracy, champion,
             "n/a" if champion_accuracy is None else f"{champion_accuracy:.4f}",
             "promoted" if promote else "not promoted")
    return result


def promotion_decision(challenger_accuracy: float, champion: str | None,
                       champion_accuracy: float | None, tolerance: float) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why (for the alias history).

    Args:
        challenger_accuracy: The challenger's accuracy on the held-out split.
        champion: The serving version (None when no model serves yet).
        champion_accuracy: The champion's accuracy on the same split (None when it
            could not be evaluated).
        tolerance: ``promotion.tolerance``.

    Returns:
        ``(promote, reason)``.
    """
    if champion is None:
        return True, "first model: nothing serves yet"
    if champion_accuracy is None:
        return True, f"champion {champion} cannot be evaluated on this data"
    promote = challenger_accuracy >= champion_accuracy - tolerance
    op = ">=" if promote else "<"
    return promote, (f"challenger accuracy {challenger_accuracy:.4f} {op} champion "
                     f"{champion} accuracy {champion_accuracy:.4f} - tolerance {tolerance:g} "
                     "on the same held-out split")


def _unusable(version: str | None, err: Exception) -> str:
    """Log and describe a serving model that cannot be loaded or cannot score the data
    (deleted/truncated artifact, corrupt metadata, alias to a missing version): the
    step retrains rather than failing every night. A transient storage error (exit 1)
    is not caught, so the step still fails and is retried."""
    why = f"{type(err).__name__}: {err}"
    log.warning("monitor-check: serving model %s is unusable (%s); retraining", version, why)
    return why


def _champion_accuracy(ws: Workspace, champion: str | None, trainer: _Trainer) -> float | None:
    if champion is None:
        return None
    try:
        model, _ = ws.registry.load(champion)
        return trainer.accuracy(model)
    except (MLOpsError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("train: champion %s cannot be evaluated (%s); the challenger wins",
                    champion, err)
        return None


#: The steps by name, in order.
STEP_FUNCTIONS = {INGEST: ingest, MONITOR_CHECK: monitor_check, TRAIN: train}
