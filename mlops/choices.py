"""The closed sets of names a config may choose from, each written once.

:mod:`mlops.config` validates against them; :mod:`mlops.store.hashing` and
:mod:`mlops.drift` implement them. This module imports nothing, so the config (and
the quick CLI commands that load it) need not import numpy, pandas or SciPy.
"""

from __future__ import annotations

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
