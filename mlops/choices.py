"""The closed sets of names a config may choose from, each written once.

:mod:`mlops.config` validates against them; :mod:`mlops.store.hashing` and
:mod:`mlops.drift` implement them. This module imports nothing, so the config (and
the quick CLI commands that load it) need not import numpy, pandas or SciPy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

#: Content hash algorithms of data versions (``data.hash_algorithm``).
HashAlgorithm = Literal["sha256", "sha512", "blake2b"]
HASH_ALGORITHMS: tuple[str, ...] = get_args(HashAlgorithm)

#: Drift methods (``monitoring.drift_method``).
DriftMethod = Literal["mean_l1", "psi", "ks", "wasserstein", "auto"]
DRIFT_METHODS: tuple[str, ...] = get_args(DriftMethod)

#: Learning tasks (``data.task``); mlops.data decides ``auto``.
Task = Literal["auto", "classification", "regression"]
#: The two learning tasks a model can have (what ``auto`` decides between).
CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS: tuple[str, ...] = get_args(Task)

#: What monitor-check does when a batch's columns change (``monitoring.on_schema_change``).
SchemaPolicy = Literal["fail", "retrain"]

#: Metrics ``monitoring.metric`` may choose; mlops.training.METRICS computes them and says
#: which task each belongs to and whether higher is better.
MetricName = Literal["accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss",
                     "rmse", "mae", "r2"]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)

#: Kinds of feature columns (mlops.data.feature_kind decides them).
NUMERIC = "numeric"
BOOL = "bool"
CATEGORICAL = "categorical"

#: Serving export formats (``mlops export --format``; mlops.serving writes them).
ServingFormat = Literal["kserve", "mlflow"]
SERVING_FORMATS: tuple[str, ...] = get_args(ServingFormat)
KSERVE = "kserve"
MLFLOW = "mlflow"


class _Name(StrEnum):
    """A stored name: compares, hashes, formats and prints as its string value (a list of
    them reads in a log line as it is written in the store's JSON)."""

    __repr__ = str.__repr__


class RetrainReason(_Name):
    """Why monitor-check wants a retrain (or, for the last two, why it did not train).

    The values are in the stored history and step results and in webhook payloads: never
    rename one.
    """

    #: No model serves yet.
    NO_MODEL = "no_model"
    #: The serving model's accuracy is below ``monitoring.accuracy_threshold``.
    LOW_ACCURACY = "low_accuracy"
    #: The serving model's gating metric (not accuracy) does not meet its limit.
    LOW_SCORE = "low_score"
    #: The serving model's realized gating metric (late labels joined with an earlier
    #: night's predictions, docs/labels.md) misses its limit or fell past max_degradation.
    LOW_REALIZED_SCORE = "low_realized_score"
    #: The batch drifted from the serving model's reference.
    DRIFT = "drift"
    #: The batch's columns differ from the model's input schema (``on_schema_change: retrain``).
    SCHEMA_CHANGE = "schema_change"
    #: The score fell more than ``monitoring.max_degradation`` below its own baseline.
    DEGRADED = "degraded"
    #: The serving model cannot be loaded or cannot score the new data.
    SERVING_MODEL_UNUSABLE = "serving_model_unusable"
    #: A retrain was wanted but the batch is smaller than ``training.min_rows``.
    TOO_FEW_ROWS = "too_few_rows"
    #: A challenger of this data and config was rejected before: not training again.
    REJECTED_BEFORE = "rejected_before"


class NotifyEvent(_Name):
    """The events a webhook receiver may ask for (``notifications.webhooks[].events``).

    The values are in the config and in webhook payloads: never rename one.
    """

    FAILURE = "failure"
    DRIFT = "drift"
    PROMOTION = "promotion"
    REJECTION = "rejection"
    SERVING_BELOW_THRESHOLD = "serving_below_threshold"
    ROLLBACK = "rollback"
    #: Every run that succeeds (opt-in: it is every night).
    SUCCESS = "success"
    #: A batch broke a rule of the ``validation:`` section (the run failed at ingest).
    VALIDATION_FAILED = "validation_failed"


class Alert(_Name):
    """The alerts of a run summary and history record (``alerts``): what ``mlops status``
    reports about the serving model. Stored values: never rename one."""

    #: The serving model's score does not meet the gating limit.
    SERVING_BELOW_THRESHOLD = "serving_below_threshold"
    #: The score fell more than ``monitoring.max_degradation`` below its own baseline.
    DEGRADED = "degraded"
    #: The run replaced a serving model it could not load or use.
    SERVING_MODEL_UNUSABLE = "serving_model_unusable"
    #: The controller could not patch the KServe InferenceService.
    SERVING_HANDOFF_FAILED = "serving_handoff_failed"


class EventReason(_Name):
    """The ``reason`` of each Kubernetes Event a run writes (``kubectl get events``); what
    alert rules and dashboards select on: never rename one."""

    RUN_STARTED = "RunStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    DRIFT_DETECTED = "DriftDetected"
    RETRAIN_STARTED = "RetrainStarted"
    MODEL_PROMOTED = "ModelPromoted"
    PROMOTION_REJECTED = "PromotionRejected"
    SERVING_BELOW_THRESHOLD = "ServingBelowThreshold"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    VALIDATION_FAILED = "ValidationFailed"
