"""Configuration: YAML parsed once into validated, frozen dataclasses.

Every key is a dataclass field below; the field's ``help`` metadata documents
it (``docs/configuration.md`` lists them all). Unknown keys, wrong types and
out-of-range values raise :class:`~mlops.errors.ConfigError` naming the full
key, e.g. ``monitoring.drift_threshold``.

``Config.from_dict`` is pure; ``load_config`` reads a file and applies the
environment overrides (``MLOPS_STORAGE_URI`` replaces ``storage.uri``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mlops.choices import (
    HASH_ALGORITHMS,
    DriftMethod,
    MetricName,
    NotifyEvent,
    SchemaPolicy,
    Task,
)
from mlops.errors import ConfigError

ENV_STORAGE_URI = "MLOPS_STORAGE_URI"
#: Set by the controller on the step pods of a ``dask.cluster: ephemeral`` run: the address
#: of the run's scheduler (``tcp://<service>.<namespace>.svc:8786``).
ENV_DASK_ADDRESS = "MLOPS_DASK_ADDRESS"
#: The container's memory limit in bytes (the downward API's ``limits.memory``), which a
#: worker's ``dask.memory_limit: auto`` is derived from when no cgroup file tells it.
ENV_MEMORY_LIMIT = "MLOPS_MEMORY_LIMIT"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ModelType = Literal["logistic", "linear", "random_forest", "gradient_boosting",
                    "hist_gradient_boosting", "lightgbm"]
Engine = Literal["pandas", "dask", "auto"]
ClusterKind = Literal["local", "ephemeral", "operator"]
#: The cluster kinds started by the controller for each run.
RUN_CLUSTERS = ("ephemeral", "operator")


def _opt(default: Any, help: str, check: Callable[[Any], bool] | None = None,
         rule: str = "") -> Any:
    """A dataclass field with documentation and an optional range check."""
    meta = {"help": help, "check": check, "rule": rule}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _fraction(v: float) -> bool:
    return 0 <= v <= 1


def _degradation(v: float | None) -> bool:
    return v is None or (math.isfinite(v) and v > 0)


def _open_fraction(v: float) -> bool:
    return 0 < v < 1


def _share(v: float) -> bool:
    return 0 < v <= 1


def _bins(v: int) -> bool:
    return 2 <= v <= 1000


def _retries(v: int) -> bool:
    return 0 <= v <= 5


def _keep(v: int | None) -> bool:
    return v is None or v >= 0


#: numpy and scikit-learn seeds must fit in 32 unsigned bits.
SEED_MAX = 2**32 - 1


def _seed(v: int) -> bool:
    return 0 <= v <= SEED_MAX


#: Bounds of a config file: its size and its node count with aliases expanded (a
#: "billion laughs" document is a few lines whose aliases expand to 10**9 nodes).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 20_000


@dataclass(frozen=True)
class StorageConfig:
    """Where the store lives."""

    uri: str = _opt("./mlops-data", "Root of the store: a path, file://, memory://, gs:// or "
                    "s3:// URI. Overridden by the MLOPS_STORAGE_URI environment variable.")
    options: dict[str, Any] = _opt({}, "fsspec storage options passed to the filesystem "
                                   "(e.g. endpoint_url, project). Never put credentials here.")


#: Bounds of synthetic data: beyond them the generator would exhaust memory (exit 1 with a
#: MemoryError, retried every night) instead of refusing the config (exit 2).
MAX_SYNTHETIC_FEATURES = 10_000
MAX_SYNTHETIC_CELLS = 200_000_000


@dataclass(frozen=True)
class CsvConfig:
    """How CSV sources are parsed (pandas.read_csv options; Parquet files ignore them)."""

    sep: str = _opt(",", "Field separator (e.g. ';' for tables written with a decimal comma).",
                    lambda v: len(v) >= 1, "a non-empty string")
    decimal: str = _opt(".", "Decimal mark of numbers (',' in much of Europe).",
                        lambda v: len(v) == 1, "one character")
    na_values: list[str] = _opt([], "Extra strings read as missing values (besides pandas' "
                                "defaults: '', 'NA', 'NaN', 'null'...), e.g. ['-', 'n/a', '?'].")
    encoding: str = _opt("utf-8", "Text encoding of the files (e.g. latin-1, cp1252).",
                         lambda v: _known_encoding(v), "a Python codec name")


def _known_encoding(name: str) -> bool:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


@dataclass(frozen=True)
class DataConfig:
    """Where each night's data comes from."""

    source: str = _opt("synthetic", "'synthetic', or a path, URI or glob of CSV/Parquet files.")
    target_column: str = _opt("target", "Name of the target (label) column.")
    task: Task = _opt("auto", "classification, regression, or auto: a non-numeric target "
                      "is a classification, a numeric one with a non-integer value a "
                      "regression, an integer one a classification with at most 20 distinct "
                      "values, else a regression (see docs/data.md).")
    n_samples: int = _opt(1000, "Rows of synthetic data.", _positive, "> 0")
    n_features: int = _opt(10, "Feature columns of synthetic data (at most "
                           f"{MAX_SYNTHETIC_FEATURES:,}; rows x features at most "
                           f"{MAX_SYNTHETIC_CELLS:,}).",
                           lambda v: 0 < v <= MAX_SYNTHETIC_FEATURES,
                           f"between 1 and {MAX_SYNTHETIC_FEATURES}")
    random_state: int = _opt(42, "Seed of the synthetic data generator.", _seed,
                             f"between 0 and {SEED_MAX}")
    test_size: float = _opt(0.2, "Share of rows held out for evaluation when training.",
                            _open_fraction, "between 0 and 1, exclusive")
    hash_algorithm: str = _opt("sha256", "Content hash of data versions: sha256, sha512 or "
                               "blake2b.", lambda v: v in HASH_ALGORITHMS,
                               f"one of {', '.join(HASH_ALGORITHMS)}")
    engine: Engine = _opt("pandas", "pandas (one process holds the data; fastest up to a few "
                          "GB), dask (partitioned versions, steps run on a Dask cluster: "
                          "see docs/scaling.md and the dask section) or auto (ingest picks "
                          "pandas when the source's estimated in-memory size x 4 is at most "
                          "the container's memory limit, else dask; the later steps follow "
                          "ingest; logged and in the run summary: see docs/scaling.md).")
    id_columns: list[str] = _opt([], "Columns that identify a row (customer id, order "
                                 "number): kept in the data versions and carried into outputs, "
                                 "never features.")
    exclude_columns: list[str] = _opt([], "Columns dropped when the source is read (free text, "
                                      "dates: see docs/data.md); never stored, never features.")
    csv: CsvConfig = _opt(CsvConfig(), "CSV parsing options.")

    def __post_init__(self) -> None:
        if self.source == "synthetic" and self.n_samples * self.n_features > MAX_SYNTHETIC_CELLS:
            raise ConfigError(f"config keys 'data.n_samples' x 'data.n_features' "
                              f"({self.n_samples} x {self.n_features}) must be at most "
                              f"{MAX_SYNTHETIC_CELLS} synthetic values")
        for key in ("id_columns", "exclude_columns"):
            names = getattr(self, key)
            if any(not isinstance(n, str) or not n for n in names):
                raise ConfigError(f"config key 'data.{key}' must be a list of column names")
            if self.target_column in names:
                raise ConfigError(f"config key 'data.{key}' names the target column "
                                  f"'{self.target_column}'")
        both = sorted(set(self.id_columns) & set(self.exclude_columns))
        if both:
            raise ConfigError(f"column '{both[0]}' is in both data.id_columns and "
                              "data.exclude_columns")
        if any(not isinstance(v, str) for v in self.csv.na_values):
            raise ConfigError("config key 'data.csv.na_values' must be a list of strings")


#: The rules of one column of ``validation.columns``.
VALIDATION_RULES = ("min", "max", "allowed", "unique", "max_missing")


def _missing_share(v: float | None) -> bool:
    return v is None or 0 <= v <= 1


@dataclass(frozen=True)
class ValidationConfig:
    """Rules each batch must meet at ingest, checked (with pandera) before anything is
    stored; a violation exits 2 naming the column, the rule and the rows that break it."""

    min_rows: int = _opt(0, "Refuse a batch of fewer rows than this (0: no limit).",
                         _non_negative, ">= 0")
    max_missing: float | None = _opt(None, "Largest share of missing values in any column, "
                                     "unless the column sets its own; null: no limit.",
                                     _missing_share, "between 0 and 1, or null")
    columns: dict[str, Any] = _opt(
        {}, "Per-column rules, column name -> mapping of: min and max (numbers, inclusive), "
        "allowed (a list of values), unique (true: no value twice), max_missing (share, "
        "overrides the section's). Missing values are not checked by min, max and allowed. "
        "A rule on a column the batch does not have is a violation.")

    def __post_init__(self) -> None:
        for name, rules in self.columns.items():
            _check_column_rules(str(name), rules)


def _check_column_rules(name: str, rules: Any) -> None:
    key = f"validation.columns.{name}"
    if not isinstance(rules, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping of rules "
                          f"({', '.join(VALIDATION_RULES)}), got {type(rules).__name__}")
    for rule, value in rules.items():
        where = f"{key}.{rule}"
        if rule not in VALIDATION_RULES:
            raise ConfigError(f"unknown config key '{where}' (use one of "
                              f"{', '.join(VALIDATION_RULES)})")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if rule in ("min", "max") and not number:
            raise ConfigError(f"config key '{where}' must be a number, got {value!r}")
        if rule == "max_missing" and not (number and 0 <= value <= 1):
            raise ConfigError(f"config key '{where}' must be between 0 and 1, got {value!r}")
        if rule == "unique" and not isinstance(value, bool):
            raise ConfigError(f"config key '{where}' must be true or false, got {value!r}")
        if rule == "allowed" and not (isinstance(value, list) and value and all(
                isinstance(v, str | int | float | bool) for v in value)):
            raise ConfigError(f"config key '{where}' must be a non-empty list of values, "
                              f"got {reprlib.repr(value)}")
    if "min" in rules and "max" in rules and rules["min"] > rules["max"]:
        raise ConfigError(f"config key '{key}.min' ({rules['min']}) is above its max "
                          f"({rules['max']})")


@dataclass(frozen=True)
class WindowConfig:
    """What the train step trains on: the last batch alone (both null), or the union of the
    last ``versions`` data versions or of the data versions of the last ``days`` days,
    rows deduplicated by content (see docs/labels.md)."""

    versions: int | None = _opt(None, "Train on the last N data versions (the run's own "
                                "included); null: not by count.",
                                lambda v: v is None or v > 0, "> 0 or null")
    days: float | None = _opt(None, "Train on the data versions created in the last D days "
                              "(the run's own included); null: not by age.",
                              lambda v: v is None or (math.isfinite(v) and v > 0),
                              "> 0 or null")

    def __post_init__(self) -> None:
        if self.versions is not None and self.days is not None:
            raise ConfigError("config key 'training.window' takes one of versions or days, "
                              "not both")

    @property
    def enabled(self) -> bool:
        """Whether a window is set (else the train step uses the run's batch alone)."""
        return self.versions is not None or self.days is not None


@dataclass(frozen=True)
class TrainingConfig:
    """How the model is trained."""

    model_type: ModelType = _opt(
        "logistic", "logistic or linear (the linear model of the task: logistic regression "
        "or ridge), random_forest, gradient_boosting, hist_gradient_boosting (native "
        "categorical and missing-value support) or lightgbm (needs the mlops[dask] extra; "
        "on the dask engine it trains through LightGBM's Dask estimators).")
    params: dict[str, Any] = _opt({}, "Keyword arguments passed to the scikit-learn estimator.")
    random_state: int = _opt(42, "Seed of the estimator and of the train/test split.", _seed,
                             f"between 0 and {SEED_MAX}")
    min_rows: int = _opt(50, "Never train (nor promote) on fewer rows than this: a smaller "
                         "batch (after holding out data.test_size) is still scored and "
                         "drift-checked when a model serves (reason too_few_rows, exit 0), "
                         "and refused (exit 2) when none does.", _positive, "> 0")
    min_test_rows: int = _opt(20, "Never judge a challenger on a held-out split of fewer "
                              "rows than this (the same rule as min_rows).", _positive, "> 0")
    max_seconds: float = _opt(3600.0, "Time box of one model fit: training that takes longer "
                              "stops with exit code 2 (too large training.params such as "
                              "n_estimators), and nothing is saved.", _positive, "> 0")
    window: WindowConfig = _opt(WindowConfig(), "The data versions a model is trained on: "
                                "{versions: N} or {days: D} (the union of the last N data "
                                "versions, or of the last D days, rows deduplicated by "
                                "content; unlabelled rows take their labels from the labels "
                                "section); unset: the run's batch alone.")


@dataclass(frozen=True)
class MonitoringConfig:
    """When a retrain is needed."""

    accuracy_min_threshold: float = _opt(0.7, "Retrain when the current model's accuracy on "
                                         "new data is below this (the threshold of metric "
                                         "accuracy when metric_threshold is null).",
                                         _fraction, "between 0 and 1")
    metric: MetricName | None = _opt(
        None, "The metric that gates retraining and promotion; null: accuracy for a "
        "classification, rmse for a regression. Classification: accuracy, "
        "balanced_accuracy, f1_macro, roc_auc, log_loss; regression: rmse, mae, r2.")
    metric_threshold: float | None = _opt(
        None, "Limit of monitoring.metric: a minimum for higher-is-better metrics, a maximum "
        "for rmse, mae and log_loss. Retrain when the serving model is worse; a challenger "
        "worse than it is not promoted (unless nothing serves). null: "
        "accuracy_min_threshold for accuracy, no limit for the others.")
    max_degradation: float | None = _opt(
        0.2, "Retrain (reason degraded) when the serving model's gating metric on new data "
        "is more than this much worse than its own held-out score at training, relative to "
        "that score (0.2: 20% worse; every metric and task, so a regression without "
        "metric_threshold has a limit too). A challenger that also falls this far below the "
        "champion's held-out score at training is not promoted (the data, not the model, "
        "looks broken): the run alerts degraded and mlops status is unhealthy. null: no "
        "limit.", _degradation, "> 0 and finite, or null")
    on_schema_change: SchemaPolicy = _opt(
        "fail", "When a batch's columns differ from the serving model's schema (added, "
        "missing or re-typed): fail (exit 2, nothing changes) or retrain (reason "
        "schema_change).")
    drift_threshold: float = _opt(0.1, "Retrain when the drift score exceeds this.",
                                  _non_negative, ">= 0")
    drift_min_samples: int = _opt(100, "Drift counts only for batches of at least this many "
                                  "rows (every drift method).", _non_negative, ">= 0")
    drift_method: DriftMethod = _opt(
        "ks", "ks (default: two-sample Kolmogorov-Smirnov per feature), mean_l1 (relative L1 "
        "of feature means, compared with drift_threshold; the seed's rule), psi, "
        "wasserstein, or auto (ks up to 1000 reference rows, else wasserstein). For all but "
        "mean_l1 the drift score is the share of drifted features. Defaults chosen by "
        "measurement: docs/decisions.md.")
    drift_share: float = _opt(0.01, "Per-feature methods: the data set drifts when at least "
                              "this share of features drifted (0.01: any one feature of up "
                              "to 100).", _share, "in (0, 1]")
    psi_threshold: float = _opt(0.2, "psi: a feature drifts at PSI >= this.", _positive, "> 0")
    psi_bins: int = _opt(10, "psi: quantile bins of the reference.", _bins,
                         "between 2 and 1000")
    ks_p_value: float = _opt(0.001, "ks: a feature drifts at a KS p-value below this "
                             "(0.001: a strict test per feature, since any one feature "
                             "counts).",
                             _open_fraction, "between 0 and 1, exclusive")
    wasserstein_threshold: float = _opt(0.1, "wasserstein: a feature drifts when the "
                                        "Wasserstein distance / reference std is >= this.",
                                        _positive, "> 0")
    reference_sample_size: int = _opt(5000, "Rows per feature kept in the reference sample "
                                      "(deterministic) for ks and wasserstein.",
                                      _positive, "> 0")


@dataclass(frozen=True)
class LoggingConfig:
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _opt(
        "INFO", "Log level.")
    file: str | None = _opt(None, "Optional log file (rotating); logs always go to stderr.")
    format: Literal["text", "json"] = _opt(
        "text", "text (one readable line per record) or json (one JSON object per line with "
        "time, level, logger, run_id, step and message, for cluster log collectors).")


@dataclass(frozen=True)
class StepPodConfig:
    """Pod settings of one step Job (rendered by the Helm chart from its values)."""

    resources: dict[str, Any] = _opt(
        {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "Kubernetes resources of the step container.")
    node_selector: dict[str, str] = _opt({}, "nodeSelector of the step pod.")
    tolerations: list[dict[str, Any]] = _opt([], "Tolerations of the step pod.")
    active_deadline_seconds: int = _opt(3600, "The step Job's activeDeadlineSeconds.",
                                        _positive, "> 0")
    backoff_limit: int = _opt(2, "The step Job's backoffLimit (retries of exit code 1).",
                              _non_negative, ">= 0")


@dataclass(frozen=True)
class StepsConfig:
    """Per-step pod settings."""

    ingest: StepPodConfig = _opt(StepPodConfig(), "Pod settings of the ingest Job.")
    monitor_check: StepPodConfig = _opt(StepPodConfig(), "Pod settings of the monitor-check Job.")
    train: StepPodConfig = _opt(StepPodConfig(), "Pod settings of the train Job.")
    score: StepPodConfig = _opt(StepPodConfig(), "Pod settings of the score Job.")


@dataclass(frozen=True)
class DaskPlacementConfig:
    """Where the scheduler or the worker pods of a ``dask.cluster: ephemeral`` run go."""

    node_selector: dict[str, str] = _opt({}, "nodeSelector of the pods.")
    tolerations: list[dict[str, Any]] = _opt([], "Tolerations of the pods.")
    affinity: dict[str, Any] = _opt({}, "Affinity of the pods (Kubernetes camelCase).")
    topology_spread_constraints: list[dict[str, Any]] = _opt(
        [], "topologySpreadConstraints of the pods; one without labelSelector spreads the "
        "run's own pods of this kind.")
    priority_class_name: str = _opt("", "priorityClassName of the pods; empty: the run's "
                                    "(kubernetes.pod_template's).")


SpillVolume = Literal["emptyDir", "ephemeral"]


@dataclass(frozen=True)
class DaskSpillConfig:
    """The volume each ephemeral worker spills to (its ``--local-directory``)."""

    volume: SpillVolume = _opt("emptyDir", "emptyDir (the node's disk, with an "
                               "ephemeral-storage request of the size) or ephemeral (a "
                               "generic ephemeral volume: a claim of the size per worker pod).")
    size: str = _opt("10Gi", "Size of the spill volume (a Kubernetes quantity).")
    storage_class: str = _opt("", "volume ephemeral: StorageClass of the claim; empty: the "
                              "cluster's default.")


@dataclass(frozen=True)
class DaskPodsConfig:
    """The pods of a ``dask.cluster: ephemeral`` run (rendered by the Helm chart)."""

    scheduler_resources: dict[str, Any] = _opt(
        {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "Kubernetes resources of the scheduler container.")
    worker_resources: dict[str, Any] = _opt(
        {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "Kubernetes resources of each worker container (with dask.memory_limit: auto the "
        "worker's memory limit is the container's limits.memory, in bytes).")
    start_timeout_seconds: int = _opt(300, "How long the controller waits for the scheduler "
                                      "pod to accept connections before the run fails "
                                      "(exit 1).", _positive, "> 0")
    idle_timeout_seconds: int = _opt(
        1800, "The scheduler closes after this long without work (dask scheduler "
        "--idle-timeout; operator mode: the DaskCluster's idleTimeout): a backstop for a "
        "cluster whose controller is gone. Longer than any gap between two steps' use.",
        _positive, "> 0")
    death_timeout_seconds: int = _opt(
        300, "A worker that cannot reach its scheduler this long exits (dask worker "
        "--death-timeout).", _positive, "> 0")
    no_workers_timeout_seconds: int = _opt(
        600, "A task that waits this long with no worker in the cluster fails (the "
        "scheduler's distributed.scheduler.no-workers-timeout), so a step whose workers are "
        "all lost fails with exit 1 instead of waiting for its deadline.", _positive, "> 0")
    scheduler: DaskPlacementConfig = _opt(DaskPlacementConfig(), "Placement of the "
                                          "scheduler pod.")
    worker: DaskPlacementConfig = _opt(DaskPlacementConfig(), "Placement of the worker pods.")
    worker_spill: DaskSpillConfig = _opt(DaskSpillConfig(), "The workers' spill volume.")


#: Keys an earlier release read, and what replaced them (said by the unknown-key error).
REMOVED_KEYS = {
    f"kubernetes.{key}": "the step pod is defined once, by the Helm chart, which renders it "
    "into kubernetes.pod_template; set the chart's values instead"
    for key in ("image", "image_pull_policy", "service_account", "config_map",
                "config_mount_path", "env", "env_from_secret", "credentials_secret",
                "credentials_mount_path", "pvc_claim", "pvc_mount_path")
}


@dataclass(frozen=True)
class KubernetesConfig:
    """How the controller launches step Jobs. The Helm chart renders this section."""

    namespace: str = _opt("", "Namespace of the step Jobs; empty means the controller's own "
                          "(in cluster) or the kubeconfig context's.")
    release: str = _opt("mlops", "Prefix of step Job names: <release>-<run-id>-<step>.")
    ttl_seconds_after_finished: int = _opt(86400, "ttlSecondsAfterFinished of step Jobs.",
                                           _non_negative, ">= 0")
    step_timeout_seconds: int = _opt(7200, "How long the controller waits for one step Job.",
                                     _positive, "> 0")
    labels: dict[str, str] = _opt({}, "Extra labels of step Jobs and pods.")
    pod_template: dict[str, Any] = _opt(
        {}, "The step pod spec (Kubernetes camelCase), rendered by the Helm chart "
        "(mlops.stepPodSpec, from the same pieces as the controller's pod): the one "
        "definition of the step pod. The controller sets the container's name and args and "
        "the step's settings, and refuses a config without it (exit 2).")
    same_node_as_controller: bool = _opt(
        False, "Run each step pod on the controller's node (set by the chart when the store "
        "claim is ReadWriteOnce).")
    steps: StepsConfig = _opt(StepsConfig(), "Per-step pod settings.")
    dask: DaskPodsConfig = _opt(DaskPodsConfig(), "Scheduler and worker pods of a "
                                "dask.cluster: ephemeral run.")


@dataclass(frozen=True)
class PromotionConfig:
    """When a retrained model (the challenger) replaces the serving one (the champion)."""

    tolerance: float = _opt(0.0, "Promote the challenger when its held-out accuracy is at "
                            "least the champion's accuracy on the same split minus this.",
                            _fraction, "between 0 and 1")


@dataclass(frozen=True)
class RegistryConfig:
    """The model registry."""

    signing_key_env: str = _opt(
        "", "Name of an environment variable (filled from a Secret) holding an HMAC key: "
        "saves sign each model's metadata (which names the artifact's sha256) and loads "
        "refuse unsigned or mis-signed models. Empty: no signing.",
        lambda v: v == "" or v.replace("_", "a").isalnum(), "an environment variable name")


@dataclass(frozen=True)
class ReportingConfig:
    """The HTML run report."""

    enabled: bool = _opt(False, "Write runs/<run-id>/report.html (plots embedded) after each "
                         "pipeline run; needs the mlops[report] extra (matplotlib).")


@dataclass(frozen=True)
class ObservabilityConfig:
    """Prometheus metrics (pushed to a Pushgateway) and Kubernetes Events."""

    pushgateway_url: str = _opt("", "Pushgateway to push the run's metrics to at the end of "
                                "each step and of the run (e.g. http://pushgateway:9091); "
                                "empty: off. Needs the mlops[metrics] extra.")
    push_timeout_seconds: float = _opt(5.0, "Timeout of one push; a push that fails logs a "
                                       "warning and never fails the run.", _positive, "> 0")
    job: str = _opt("mlops", "The Pushgateway job label of the pushed group (the grouping "
                    "key adds release and namespace).")
    kubernetes_events: bool = _opt(True, "The controller writes Kubernetes Events "
                                   "(events.k8s.io/v1) on its own Job.")


def _object_name(v: str) -> bool:
    return v == "" or bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v))


@dataclass(frozen=True)
class KServeConfig:
    """The hand-off of each promoted model to a KServe InferenceService."""

    inference_service: str = _opt(
        "", "Name of an InferenceService in the release's namespace: after each promotion "
        "the controller patches its predictor's storageUri to the new version's export "
        "(serving/<version>/kserve, or .../mlflow for an mlflow model format) and writes an "
        "Event; a failed patch is an alert (serving_handoff_failed), not a failed run. The "
        "chart's Role may get/patch inferenceservices only when this is set. Empty: off.",
        _object_name, "a Kubernetes object name (lowercase, digits, '-') or empty")


@dataclass(frozen=True)
class ServingConfig:
    """Model servers fed by each promotion (exports are written on every promotion)."""

    kserve: KServeConfig = _opt(KServeConfig(), "KServe InferenceService hand-off.")


#: The events a webhook receiver may subscribe to (``notifications.webhooks[].events``).
NOTIFY_EVENTS: tuple[str, ...] = tuple(NotifyEvent)
#: Body formats of a webhook receiver (``notifications.webhooks[].format``).
WEBHOOK_FORMATS = ("slack", "cloudevents")


@dataclass(frozen=True)
class ScoringConfig:
    """Batch scoring with the serving model (the ``score`` step, after train)."""

    source: str = _opt("", "CSV/Parquet files (a path, URI, directory or glob) to score with "
                       "the serving model after each run; the target column may be absent. "
                       "Empty: no score step.")
    id_columns: list[str] = _opt([], "Columns copied from the source into the predictions, "
                                 "next to prediction and probability_<class>.")
    output: str = _opt("", "Path or URI of the folder of predictions versions (objects/, "
                       "index/, versions/). Empty: <storage.uri>/predictions.")


@dataclass(frozen=True)
class LabelsConfig:
    """Labels that arrive after their batch, joined with stored predictions by id (see
    docs/labels.md). With a source set, a batch without data.target_column is valid."""

    source: str = _opt("", "CSV/Parquet label files (a path, URI, directory or glob): the "
                       "id columns and data.target_column, any column order. Each night the "
                       "files not seen before are versioned and joined with the predictions "
                       "of the last lookback_days; each earlier night's history entry gains "
                       "its realized score. Empty: off (every batch brings its target).")
    id_columns: list[str] = _opt([], "The columns that identify a prediction (each must be in "
                                 "data.id_columns, which unlabelled batches carry).")
    lookback_days: int = _opt(30, "Join labels with the predictions of the last this many "
                              "days (older predictions are no longer realized).",
                              _positive, "> 0")

    @property
    def enabled(self) -> bool:
        """Whether late labels are configured."""
        return bool(self.source)


@dataclass(frozen=True)
class NotificationsConfig:
    """Webhook notifications (Slack-compatible JSON) at the end of a run."""

    webhooks: list[dict[str, Any]] = _opt(
        [], "Receivers: each a mapping with url (a literal URL) or url_env (the name of an "
        "environment variable holding the URL, e.g. filled from a Secret), optional name, "
        "events (default: failure, drift, promotion, rejection, serving_below_threshold, "
        "rollback, validation_failed; success is opt-in), format (slack: Slack-compatible "
        "JSON, the default; cloudevents: one CloudEvents 1.0 structured event per event), "
        "type_prefix (of the CloudEvents type, default io.mlops), and secret_env (the name "
        "of an environment variable holding a whsec_ key: every delivery is signed with "
        "Standard Webhooks headers).")
    timeout_seconds: float = _opt(5.0, "Timeout of one webhook request.", _positive, "> 0")
    retries: int = _opt(2, "Further attempts of a webhook that fails (5xx, timeout, "
                        "connection error); a failing webhook never fails the run.",
                        _retries, "between 0 and 5")

    def __post_init__(self) -> None:
        for i, hook in enumerate(self.webhooks):
            _check_webhook(hook, f"notifications.webhooks[{i}]")


_WEBHOOK_KEYS = ("name", "url", "url_env", "events", "format", "type_prefix", "secret_env")
_TYPE_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")


def _check_webhook(hook: Any, key: str) -> None:
    if not isinstance(hook, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping with url or url_env, "
                          f"got {type(hook).__name__}")
    for k in hook:
        if k not in _WEBHOOK_KEYS:
            raise ConfigError(f"unknown config key '{key}.{k}' (use one of "
                              f"{', '.join(_WEBHOOK_KEYS)})")
    if ("url" in hook) == ("url_env" in hook):
        raise ConfigError(f"config key '{key}' needs exactly one of url or url_env")
    if "url" in hook and (not isinstance(hook["url"], str)
                          or not hook["url"].startswith(("http://", "https://"))
                          or any(c.isspace() or ord(c) < 32 for c in hook["url"])):
        raise ConfigError(f"config key '{key}.url' must be an http:// or https:// URL "
                          "without spaces")
    for env_key in ("url_env", "secret_env"):
        if env_key in hook and not (isinstance(hook[env_key], str)
                                    and _ENV_NAME.fullmatch(hook[env_key])):
            raise ConfigError(f"config key '{key}.{env_key}' must be an environment variable "
                              f"name, got {hook[env_key]!r}")
    if hook.get("format", "slack") not in WEBHOOK_FORMATS:
        raise ConfigError(f"config key '{key}.format' must be one of "
                          f"{', '.join(WEBHOOK_FORMATS)}, got {hook['format']!r}")
    if "type_prefix" in hook and not (isinstance(hook["type_prefix"], str)
                                      and _TYPE_PREFIX.fullmatch(hook["type_prefix"])):
        raise ConfigError(f"config key '{key}.type_prefix' must be a reverse-DNS name "
                          f"(letters, digits, '.', '-'), got {hook['type_prefix']!r}")
    if "name" in hook and not isinstance(hook["name"], str):
        raise ConfigError(f"config key '{key}.name' must be a string")
    events = hook.get("events", [])
    if not isinstance(events, list) or any(e not in NOTIFY_EVENTS for e in events):
        raise ConfigError(f"config key '{key}.events' must be a list of "
                          f"{', '.join(NOTIFY_EVENTS)}, got {events!r}")


@dataclass(frozen=True)
class RetentionConfig:
    """How many versions to keep (applied by mlops gc); aliased and reference versions stay."""

    keep_data_versions: int | None = _opt(None, "Keep the newest N data versions; 0 or null "
                                          "keeps all.", _keep, ">= 0 or null")
    keep_models: int | None = _opt(None, "Keep the newest N model versions; 0 or null keeps "
                                   "all.", _keep, ">= 0 or null")


def _memory_limit(v: str) -> bool:
    return bool(re.fullmatch(r"auto|0|\d+(\.\d+)?\s*([KMGT]i?B|B)?", v.strip(), re.I))


#: Fixed ports of an ephemeral cluster's pods, so a NetworkPolicy can name them (the
#: chart's templates/networkpolicy.yaml lists the same; tests/test_chart_network.py checks):
#: the scheduler (Dask's default), each worker, a worker's nanny, and the port each
#: LightGBM worker listens on while training (LightGBM's default ``local_listen_port``).
DASK_SCHEDULER_PORT = 8786
DASK_WORKER_PORT = 8788
DASK_NANNY_PORT = 8789
LIGHTGBM_PORT = 12400


@dataclass(frozen=True)
class DaskConfig:
    """The Dask cluster of ``data.engine: dask`` (see docs/scaling.md)."""

    cluster: ClusterKind = _opt(
        "local", "Where the cluster comes from when dask.address is empty: local (a cluster "
        "inside each step's own process/pod), ephemeral (under mlops controller: a "
        "scheduler and dask.n_workers worker pods, each under a ReplicaSet, started for the "
        "run and removed after it) or operator (under mlops controller: one DaskCluster of "
        "the dask-kubernetes operator per run). mlops run and a step run by hand fall back "
        "to a local cluster, with a warning. ephemeral and operator need data.engine: dask "
        "and an empty dask.address.")
    address: str = _opt("", "Scheduler of an existing cluster (tcp://host:8786); empty starts "
                        "a local cluster inside the step's own process/pod.")
    n_workers: int = _opt(2, "Local cluster: worker processes; ephemeral: worker pods.",
                          _positive, "> 0")
    threads_per_worker: int = _opt(1, "Local or ephemeral cluster: threads per worker.",
                                   _positive, "> 0")
    memory_limit: str = _opt("auto", "Local or ephemeral cluster: memory limit per worker "
                             "(e.g. 2GiB). auto: the container's memory limit (cgroup "
                             "memory.max, else the pod's limit, else the machine's memory) "
                             "divided by the worker processes in it, passed to Dask in bytes "
                             "(never Dask's own auto, which divides by the node's CPU count).",
                             _memory_limit,
                             "auto, 0 or a size such as 512MiB")
    processes: bool = _opt(True, "Local cluster: workers in their own processes (memory limits "
                           "enforced); false runs them as threads of the step.")
    connect_timeout: float = _opt(30.0, "Seconds to wait for dask.address before the step "
                                  "fails (exit 1).", _positive, "> 0")
    min_workers: int = _opt(0, "Ephemeral or operator cluster: workers the controller and each "
                            "step wait for before going on (0: all dask.n_workers).",
                            _non_negative, ">= 0")
    workers_timeout: float = _opt(
        600.0, "Ephemeral or operator cluster: seconds the controller and each step wait for "
        "dask.min_workers workers (new nodes, image pulls); the controller's Event says which "
        "pods are pending and why; past it the run fails with exit 1.", _positive, "> 0")
    oversize: Literal["sample", "fail"] = _opt(
        "sample", "lightgbm on the dask engine when the training split needs more worker "
        "memory than the cluster has free (about 3x its float32 size, against the workers' "
        "limits below their pause threshold): sample trains on a stratified sample that "
        "fits (at most dask.max_train_rows rows) with a warning naming both sizes; fail "
        "exits 2 saying how much memory it needs. Never a hang at the workers' limit.")
    max_train_rows: int = _opt(1_000_000, "scikit-learn model types on the dask engine train "
                               "on a uniform random sample of at most this many rows (recorded "
                               "in the model's metadata); lightgbm trains on every row.",
                               _positive, "> 0")
    sketch_k: int = _opt(2000, "Accuracy parameter k of the KLL quantile sketches kept per "
                         "partition (larger: more accurate drift statistics, larger manifests; "
                         "see docs/scaling.md).",
                         lambda v: 8 <= v <= 65535, "between 8 and 65535")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    storage: StorageConfig = _opt(StorageConfig(), "The store.")
    data: DataConfig = _opt(DataConfig(), "The data source.")
    validation: ValidationConfig = _opt(ValidationConfig(), "Rules each batch must meet at "
                                        "ingest (see docs/data.md).")
    training: TrainingConfig = _opt(TrainingConfig(), "Training.")
    monitoring: MonitoringConfig = _opt(MonitoringConfig(), "Retrain decisions.")
    logging: LoggingConfig = _opt(LoggingConfig(), "Logging.")
    kubernetes: KubernetesConfig = _opt(KubernetesConfig(), "Step Jobs (controller only).")
    promotion: PromotionConfig = _opt(PromotionConfig(), "Champion/challenger promotion.")
    registry: RegistryConfig = _opt(RegistryConfig(), "The model registry.")
    reporting: ReportingConfig = _opt(ReportingConfig(), "Run reports.")
    retention: RetentionConfig = _opt(RetentionConfig(), "Version retention.")
    dask: DaskConfig = _opt(DaskConfig(), "The Dask cluster (data.engine: dask).")
    observability: ObservabilityConfig = _opt(ObservabilityConfig(), "Metrics and Events.")
    notifications: NotificationsConfig = _opt(NotificationsConfig(), "Webhooks.")
    serving: ServingConfig = _opt(ServingConfig(), "Serving hand-off after promotions.")
    scoring: ScoringConfig = _opt(ScoringConfig(), "Batch scoring (the score step).")
    labels: LabelsConfig = _opt(LabelsConfig(), "Late labels joined by id (realized "
                                "scores).")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Config:
        """Build and validate a config from a plain mapping (pure, no I/O).

        Args:
            data: The parsed YAML document; missing keys take their defaults.

        Returns:
            The validated config.

        Raises:
            ConfigError: Unknown key, wrong type or out-of-range value, naming the key.
        """
        config: Config = _build(cls, {} if data is None else data, "")
        check_dask_cluster(config)
        check_labels(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (round-trips through ``from_dict``)."""
        return dataclasses.asdict(self)

    def with_storage_uri(self, uri: str) -> Config:
        """A copy of this config with another ``storage.uri``."""
        return dataclasses.replace(self, storage=dataclasses.replace(self.storage, uri=uri))


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the config at ``path``, with environment overrides.

    Args:
        path: A YAML file; ``None`` gives the embedded default.
        env: The environment to read overrides from (default ``os.environ``).

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, or invalid.
    """
    cfg = Config() if path is None else Config.from_dict(read_config_file(path))
    env = os.environ if env is None else env
    uri = env.get(ENV_STORAGE_URI)
    if uri:
        cfg = cfg.with_storage_uri(uri)
    address = env.get(ENV_DASK_ADDRESS)
    if address and cfg.dask.cluster in RUN_CLUSTERS:
        cfg = dataclasses.replace(cfg, dask=dataclasses.replace(cfg.dask, address=address))
    return cfg


def check_labels(config: Config) -> None:
    """Refuse a ``labels`` section the data cannot serve (exit 2, naming the key).

    Raises:
        ConfigError: ``labels.source`` set without ``labels.id_columns``, or an id column
            that is not in ``data.id_columns`` (an unlabelled batch would not carry it).
    """
    labels = config.labels
    if not labels.enabled:
        return
    if not labels.id_columns:
        raise ConfigError("config key 'labels.id_columns' must name the columns that join "
                          "labels to predictions when labels.source is set")
    for col in labels.id_columns:
        if not isinstance(col, str) or not col:
            raise ConfigError("config key 'labels.id_columns' must be a list of column names")
        if col not in config.data.id_columns:
            raise ConfigError(f"config key 'labels.id_columns': column '{col}' is not in "
                              "data.id_columns (batches must carry it to be joined)")


def check_dask_cluster(config: Config) -> None:
    """Refuse ``dask`` settings that contradict each other (exit 2, naming the key).

    Raises:
        ConfigError: ``dask.cluster: ephemeral`` with ``dask.address`` set (an existing
            scheduler and a cluster of the run's own), or with ``data.engine: pandas`` (no
            step would use the cluster).
    """
    kind = config.dask.cluster
    if kind not in RUN_CLUSTERS:
        return
    if config.dask.address:
        raise ConfigError(f"config key 'dask.cluster' is {kind} but dask.address is set "
                          f"({config.dask.address}): an existing scheduler and a cluster "
                          "started for the run exclude each other; set only one")
    if config.data.engine != "dask":
        raise ConfigError(f"config key 'dask.cluster' is {kind} but data.engine is "
                          f"{config.data.engine}: only data.engine: dask uses a Dask cluster")


def signing_key(config: Config, env: Mapping[str, str] | None = None) -> bytes | None:
    """The model signing key named by ``registry.signing_key_env``, or None when unset.

    Raises:
        ConfigError: The variable is named but missing or empty (names the key).
    """
    name = config.registry.signing_key_env
    if not name:
        return None
    value = (os.environ if env is None else env).get(name, "")
    if not value:
        raise ConfigError(f"config key 'registry.signing_key_env' names the environment "
                          f"variable {name}, which is not set or empty")
    return value.encode()


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """The config file does not exist."""


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a YAML config file into a mapping (no validation).

    Raises:
        ConfigNotFoundError: The file does not exist (also a FileNotFoundError).
        ConfigError: The file is unreadable, larger than MAX_CONFIG_BYTES, has more than
            MAX_CONFIG_NODES nodes (aliases expanded), is not valid YAML, or not a mapping.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as err:
        raise ConfigNotFoundError(f"config file not found: {p}") from err
    except OSError as err:
        raise ConfigError(f"config file {p} cannot be read: {err.strerror}") from err
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {p} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {p} is not UTF-8 text") from err
    try:
        data = _bounded_yaml(text, p)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, "
                          f"not {type(data).__name__}")
    return data


def _bounded_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load(text)``, refusing documents of more than MAX_CONFIG_NODES nodes
    once aliases are expanded (counted on the node graph, before anything is built)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(n: yaml.Node, depth: int) -> int:
            if id(n) in sizes:
                return sizes[id(n)]
            if depth > 100:
                raise ConfigError(f"config file {path} is nested too deeply (or an alias "
                                  "refers to itself)")
            sizes[id(n)] = MAX_CONFIG_NODES + 1  # a cycle counts as too large
            total = 1
            if isinstance(n, yaml.SequenceNode):
                total += sum(expanded(c, depth + 1) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total += sum(expanded(k, depth + 1) + expanded(v, depth + 1)
                             for k, v in n.value)
            sizes[id(n)] = min(total, MAX_CONFIG_NODES + 1)
            return sizes[id(n)]
        if expanded(node, 0) > MAX_CONFIG_NODES:
            raise ConfigError(f"config file {path} has more than {MAX_CONFIG_NODES} YAML "
                              "nodes with aliases expanded")
        _refuse_duplicate_keys(node, "", path, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, prefix: str, path: Path, seen: set[int]) -> None:
    """Refuse a mapping that holds a key twice (YAML loaders keep the last one silently:
    a second ``storage:`` would replace the first without a word), naming the key."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _refuse_duplicate_keys(child, f"{prefix}[{i}]", path, seen)
    elif isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                key = f"{prefix}.{k.value}" if prefix else str(k.value)
                if k.value in keys:
                    raise ConfigError(f"config file {path} has the key '{key}' twice (again "
                                      f"at line {k.start_mark.line + 1}); keep one")
                keys.add(k.value)
                _refuse_duplicate_keys(v, key, path, seen)


def iter_keys(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, Any, str]]:
    """Yield ``(dotted key, default, help)`` for every leaf key, for documentation."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = prefix + f.name
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from iter_keys(tp, key + ".")
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            yield key, default, f.metadata.get("help", "")


def reference_markdown() -> str:
    """The configuration reference (``docs/configuration.md``), generated from the fields."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `mlops config --docs` from `mlops/config.py`; do not edit by hand.",
        "Unknown keys, wrong types and out-of-range values are errors naming the key",
        "(exit code 2). `MLOPS_STORAGE_URI` overrides `storage.uri`; `MLOPS_DASK_ADDRESS`",
        "(set by the controller on the step pods of a `dask.cluster: ephemeral` run) is the",
        "address of the run's scheduler.",
        "",
        "| key | default | description |",
        "|-----|---------|-------------|",
    ]
    for key, default, help_text in iter_keys():
        shown = yaml.safe_dump(default, default_flow_style=True).strip()
        shown = shown.removesuffix("...").strip().replace("|", "\\|")
        lines.append(f"| `{key}` | `{shown}` | {help_text} |")
    return "\n".join(lines) + "\n"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return {dict: "a mapping", list: "a list"}.get(origin, str(origin))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, "a mapping" if dataclasses.is_dataclass(tp) else getattr(tp, "__name__", str(tp)))


def _build(cls: Any, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            suggestion = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
            if f"{prefix}{key}" in REMOVED_KEYS:
                suggestion = f" (removed: {REMOVED_KEYS[f'{prefix}{key}']})"
            raise ConfigError(f"unknown config key '{prefix}{key}'{suggestion}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            continue
        key = prefix + name
        value = _coerce(hints[name], data[name], key)
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"config key '{key}' must be {f.metadata['rule']}, "
                              f"got {reprlib.repr(value)}")
        kwargs[name] = value
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    def wrong() -> ConfigError:
        # Built only when raised, with a bounded repr: a value may be large or deeply shared.
        return ConfigError(f"config key '{key}' must be {_type_name(tp)}, "
                           f"got {type(value).__name__} {reprlib.repr(value)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key + ".")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise wrong()
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise wrong()
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise wrong()
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise wrong()
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module
