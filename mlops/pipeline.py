"""The nightly steps (ingest -> monitor-check -> train) and ``run_pipeline``.

Each step is a function with explicit inputs (the config and a run id) and a
result dataclass, persisted as JSON at ``runs/<run-id>/<step>.json``. Steps
share nothing in memory: a later step reads the earlier step's result from the
store, so the same functions run in one process (``mlops run``) or as separate
Kubernetes Jobs under the controller.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from mlops.catalog import check_version_id, iso, utc_now
from mlops.config import Config, load_config
from mlops.data import (
    SYNTHETIC,
    feature_means,
    generate_synthetic_data,
    load_source,
    split_xy,
    validate,
)
from mlops.drift import DriftSettings
from mlops.errors import BadInputError, MLOpsError
from mlops.monitor import ModelMonitor
from mlops.registry import PRODUCTION, ModelRegistry
from mlops.report import require_matplotlib, write_report_to_store
from mlops.storage import Store, open_store
from mlops.training import evaluate, split, train_model
from mlops.versioner import DataVersioner

log = logging.getLogger(__name__)

INGEST = "ingest"
MONITOR_CHECK = "monitor-check"
TRAIN = "train"
STEPS = (INGEST, MONITOR_CHECK, TRAIN)
SUMMARY = "summary"

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


@dataclass
class Workspace:
    """The store of a config, opened once, with its versioner, registry and monitor."""

    config: Config
    store: Store
    versioner: DataVersioner
    registry: ModelRegistry
    monitor: ModelMonitor

    @classmethod
    def open(cls, config: Config) -> Workspace:
        """Open the store named by ``config.storage``."""
        store = open_store(config.storage.uri, config.storage.options)
        return cls(
            config=config,
            store=store,
            versioner=DataVersioner(store.child("data"), config.data.hash_algorithm,
                                    keep_last_load=True),
            registry=ModelRegistry(store.child("models")),
            monitor=monitor_for(config, store.child("monitoring")),
        )

    # --- step results ------------------------------------------------------------------
    @staticmethod
    def result_key(run_id: str, step: str) -> str:
        """Key of a step's result (``runs/<run-id>/<step>.json``)."""
        return f"runs/{run_id}/{step}.json"

    def write_result(self, step: str, result: StepResult | Mapping[str, Any]) -> None:
        """Persist a step's result."""
        data = result.to_dict() if isinstance(result, StepResult) else dict(result)
        data = {**data, "step": step, "finished_at": iso(utc_now())}
        self.store.write_json(self.result_key(data["run_id"], step), data)

    def read_result(self, run_id: str, step: str) -> dict[str, Any] | None:
        """A step's persisted result, or None when the step has not finished."""
        try:
            data = self.store.read_json(self.result_key(run_id, step))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def require_result(self, run_id: str, step: str, needed_by: str) -> dict[str, Any]:
        """A step's result, or a BadInputError saying which step must run first."""
        data = self.read_result(run_id, step)
        if data is None:
            raise BadInputError(f"run '{run_id}' has no {step} result at "
                                f"{self.store.url(self.result_key(run_id, step))}: "
                                f"run {step} before {needed_by}")
        return data

    def list_runs(self) -> list[str]:
        """Run ids that have results, oldest first (run ids sort by time)."""
        return self.store.list_dirs("runs")

    def current_model_version(self) -> str | None:
        """The model that serves now: the ``production`` alias.

        A store written before aliases existed has models but no alias: then the
        newest saved model serves, as it did before.
        """
        version = self.registry.get_alias(PRODUCTION)
        return version if version is not None else self.registry.get_latest_version()


def monitor_for(config: Config, store: Store) -> ModelMonitor:
    """The monitor configured by ``config.monitoring`` on ``store``.

    Raises:
        ConfigError: A drift setting is out of range (naming the key).
    """
    m = config.monitoring
    settings = DriftSettings(method=m.drift_method, drift_threshold=m.drift_threshold,
                             drift_share=m.drift_share, psi_threshold=m.psi_threshold,
                             psi_bins=m.psi_bins, ks_p_value=m.ks_p_value,
                             wasserstein_threshold=m.wasserstein_threshold)
    return ModelMonitor(store, "metrics.json", "reference.json", m.accuracy_min_threshold,
                        m.drift_threshold, m.drift_min_samples, drift=settings,
                        reference_sample_size=m.reference_sample_size)


def new_run_id() -> str:
    """A fresh, sortable, DNS-safe run id: ``YYYYMMDD-HHMMSS-xxxx``."""
    return utc_now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _workspace(config: Config, ws: Workspace | None) -> Workspace:
    return ws if ws is not None else Workspace.open(config)


# --- steps -------------------------------------------------------------------------------
def ingest(config: Config, run_id: str, ws: Workspace | None = None) -> IngestResult:
    """Load the configured source, validate it and register it as a data version.

    Raises:
        DataValidationError: The source is missing or invalid (names the file or column).
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    if config.data.engine == "dask":
        from mlops import dask_engine

        return dask_engine.ingest(config, run_id, ws)
    d = config.data
    if d.source == SYNTHETIC:
        df = generate_synthetic_data(d.n_samples, d.n_features, d.random_state)
        validate(df, d.target_column, "synthetic data")
    else:
        df = load_source(d.source, d.target_column, config.storage.options)
    version = ws.versioner.register(df)
    result = IngestResult(run_id=run_id, data_version=version, rows=len(df), source=d.source,
                          feature_means=feature_means(df, d.target_column))
    ws.write_result(INGEST, result)
    log.info("ingest: %d rows from %s -> data version %s", len(df), d.source, version)
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
    if config.data.engine == "dask":
        from mlops import dask_engine

        return dask_engine.monitor_check(config, run_id, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, MONITOR_CHECK))
    df, _ = ws.versioner.load(ingested.data_version)
    x, y = split_xy(df, config.data.target_column)
    current = ws.current_model_version()
    accuracy = None
    if current is not None:
        model, _ = ws.registry.load(current)
        accuracy = evaluate(model, x, y)
    decision = ws.monitor.decide(accuracy, feature_means(df, config.data.target_column),
                                 no_model_yet=current is None, n_samples=len(df),
                                 current_frame=x)
    report = decision.drift_report
    result = MonitorCheckResult(
        run_id=run_id, data_version=ingested.data_version, model_version=current,
        retrain=decision.retrain, reasons=list(decision.reasons), accuracy=accuracy,
        drift=decision.drift, drift_counted=decision.drift_counted, n_samples=len(df),
        drift_report=None if report is None else report.to_dict())
    if not decision.retrain and accuracy is not None:
        ws.monitor.record_metrics(accuracy, ingested.data_version, current,
                                  {"run_id": run_id, "retrained": False, "drift": decision.drift,
                                   "reasons": []})
    ws.write_result(MONITOR_CHECK, result)
    log.info("monitor-check: model %s accuracy %s drift %.4f -> retrain=%s %s", current,
             "n/a" if accuracy is None else f"{accuracy:.4f}", decision.drift,
             decision.retrain, list(decision.reasons))
    return result


def train(config: Config, run_id: str, ws: Workspace | None = None) -> TrainResult:
    """Fit the challenger, save it, and promote it to ``production`` if it is good enough.

    The challenger is always saved. It becomes the serving model (the ``production``
    alias moves to it and the drift reference is rebuilt from its training features)
    when its held-out accuracy is at least the champion's accuracy on the same
    held-out rows minus ``promotion.tolerance``, or when there is no usable champion.
    Metrics are recorded for the challenger either way.

    The model version id is the run id, so a retried train step of the same run
    finds its model (and its recorded promotion decision) instead of saving a second one.

    Raises:
        BadInputError: The run has no ingest result.
        ConfigError: Bad training settings.
    """
    check_version_id(run_id, "run id")
    ws = _workspace(config, ws)
    if config.data.engine == "dask":
        from mlops import dask_engine

        return dask_engine.train(config, run_id, ws)
    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, TRAIN))
    checked = ws.read_result(run_id, MONITOR_CHECK) or {}
    df, _ = ws.versioner.load(ingested.data_version)
    target = config.data.target_column
    x, y = split_xy(df, target)
    x_train, x_test, y_train, y_test = split(x, y, config.data.test_size,
                                             config.training.random_state)
    fresh = not ws.registry.exists(run_id)
    if fresh:
        champion = ws.current_model_version()
        model = train_model(x_train, y_train, config)
        accuracy = evaluate(model, x_test, y_test)
        champion_accuracy = _champion_accuracy(ws, champion, x_test, y_test)
        promote, why = promotion_decision(accuracy, champion, champion_accuracy,
                                          config.promotion.tolerance)
        ws.registry.save(model, run_id, {
            "accuracy": accuracy, "data_version": ingested.data_version,
            "model_type": config.training.model_type, "params": config.training.params,
            "train_rows": len(x_train), "test_rows": len(x_test), "features": list(x.columns),
            "run_id": run_id, "champion_version": champion,
            "champion_accuracy": champion_accuracy, "promote": promote,
            "promotion_reason": why,
        })
    else:
        log.info("train: model %s already saved by this run; not training again", run_id)
    meta = ws.registry.get_metadata(run_id).get("metadata", {})
    accuracy = float(meta["accuracy"])
    promote = bool(meta.get("promote", True))
    champion = meta.get("champion_version")
    champion_accuracy = meta.get("champion_accuracy")
    if promote and not any(e.get("version") == run_id
                           for e in ws.registry.alias_history(PRODUCTION)):
        ws.registry.set_alias(run_id, PRODUCTION, reason=str(meta.get("promotion_reason", "")),
                              by=f"pipeline run {run_id}")
        means = {str(c): float(v) for c, v in x_train.mean().items()}
        ws.monitor.update_reference_distribution(means, x_train,
                                                 data_version=ingested.data_version,
                                                 model_version=run_id)
    if fresh:
        ws.monitor.record_metrics(accuracy, ingested.data_version, run_id, {
            "run_id": run_id, "retrained": True, "drift": checked.get("drift"),
            "reasons": checked.get("reasons", []), "promoted": promote,
            "champion_version": champion, "champion_accuracy": champion_accuracy})
    result = TrainResult(run_id=run_id, data_version=ingested.data_version, model_version=run_id,
                         accuracy=accuracy, train_rows=int(meta["train_rows"]),
                         test_rows=int(meta["test_rows"]), promoted=promote,
                         champion_version=champion, champion_accuracy=champion_accuracy)
    ws.write_result(TRAIN, result)
    log.info("train: %s on %d rows -> model %s, held-out accuracy %.4f; champion %s %s -> "
             "%s", config.training.model_type, len(x_train), run_id, accuracy, champion,
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


def _champion_accuracy(ws: Workspace, champion: str | None, x: Any, y: Any) -> float | None:
    if champion is None:
        return None
    try:
        model, _ = ws.registry.load(champion)
        return evaluate(model, x, y)
    except (MLOpsError, ValueError, KeyError) as err:
        log.warning("train: champion %s cannot be evaluated (%s); the challenger wins",
                    champion, err)
        return None


STEP_FUNCTIONS = {INGEST: ingest, MONITOR_CHECK: monitor_check, TRAIN: train}


def run_step(step: str, config: Config, run_id: str, ws: Workspace | None = None) -> StepResult:
    """Run one step by name (``ingest``, ``monitor-check`` or ``train``)."""
    if step not in STEP_FUNCTIONS:
        raise BadInputError(f"unknown step '{step}': use one of {', '.join(STEPS)}")
    return STEP_FUNCTIONS[step](config, run_id, ws)


# --- the whole run -----------------------------------------------------------------------
def summarize(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's summary from its persisted step results.

    ``model_version`` is the model that serves after the run and ``accuracy`` is its
    accuracy: on the held-out split when the run retrained (the challenger's when it
    was promoted, the champion's otherwise), on the new data when it did not.

    Returns:
        ``{run_id, data_version, model_version, retrained, accuracy, reasons, drift,
        drift_report, promoted, challenger_version, challenger_accuracy,
        champion_accuracy}``.
    """
    ingested = ws.require_result(run_id, INGEST, SUMMARY)
    checked = ws.require_result(run_id, MONITOR_CHECK, SUMMARY)
    trained = ws.read_result(run_id, TRAIN) if checked["retrain"] else None
    if checked["retrain"] and trained is None:
        raise BadInputError(f"run '{run_id}' asked for a retrain but has no train result")
    promoted = bool(trained is not None and trained.get("promoted", True))
    if trained is None:
        serving, accuracy = checked["model_version"], checked["accuracy"]
    elif promoted:
        serving, accuracy = trained["model_version"], trained["accuracy"]
    else:
        serving, accuracy = trained.get("champion_version"), trained.get("champion_accuracy")
    return {
        "run_id": run_id,
        "data_version": ingested["data_version"],
        "model_version": serving,
        "retrained": trained is not None,
        "accuracy": accuracy,
        "reasons": checked["reasons"],
        "drift": checked["drift"],
        "drift_report": checked.get("drift_report"),
        "promoted": promoted,
        "challenger_version": trained["model_version"] if trained else None,
        "challenger_accuracy": trained["accuracy"] if trained else None,
        "champion_accuracy": trained.get("champion_accuracy") if trained else None,
    }


def write_summary(ws: Workspace, run_id: str, summary: Mapping[str, Any]) -> None:
    """Persist ``runs/<run-id>/summary.json``."""
    ws.write_result(SUMMARY, summary)


def finish_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """End a run, in one process or under the controller: summarize it, write its report
    (``runs/<run-id>/report.html``, when ``reporting.enabled``) and ``summary.json``.

    Returns:
        The summary (see :func:`summarize`), plus ``report`` when one was written.
    """
    summary = summarize(ws, run_id)
    if ws.config.reporting.enabled:
        summary["report"] = write_report_to_store(ws, run_id)
    write_summary(ws, run_id, summary)
    return summary


def run_pipeline(config_path: str | os.PathLike[str] | Config | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """Run ingest -> monitor-check -> (train) in this process.

    Args:
        config_path: A YAML file, a :class:`~mlops.config.Config`, or None for the
            embedded default.
        run_id: The run id (default: a fresh timestamped one).

    Returns:
        ``{data_version, model_version, retrained, accuracy}`` plus ``run_id``,
        ``reasons``, ``drift``, ``drift_report``, ``promoted`` and the challenger's and
        champion's accuracies (see :func:`summarize`); ``report`` (the key of
        ``runs/<run-id>/report.html``) when ``reporting.enabled``.

    Raises:
        ConfigError: ``reporting.enabled`` without matplotlib (before anything runs).
    """
    config = config_path if isinstance(config_path, Config) else load_config(config_path)
    run_id = check_version_id(run_id, "run id") if run_id else new_run_id()
    if config.reporting.enabled:
        require_matplotlib()  # fail before the run, not after it
    ws = Workspace.open(config)
    ingest(config, run_id, ws)
    decision = monitor_check(config, run_id, ws)
    if decision.retrain:
        train(config, run_id, ws)
    return finish_run(ws, run_id)
