"""Training and evaluation of the classifier."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops.config import Config, TrainingConfig
from mlops.errors import ConfigError

MODEL_TYPES: dict[str, type] = {
    "logistic": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
}


#: Gradient-boosted trees from LightGBM (the mlops[dask] extra; on the Dask engine it
#: trains through LightGBM's Dask estimator, here through its scikit-learn one).
LIGHTGBM = "lightgbm"


def _lightgbm_classifier() -> type:
    try:
        from lightgbm import LGBMClassifier
    except ImportError as err:
        raise ConfigError("config key 'training.model_type': lightgbm needs the mlops[dask] "
                          "extra (lightgbm is not installed)") from err
    return LGBMClassifier


def _training_section(config: Config | TrainingConfig | Mapping[str, Any]) -> TrainingConfig:
    if isinstance(config, Config):
        return config.training
    if isinstance(config, TrainingConfig):
        return config
    section = config.get("training", config)
    return Config.from_dict({"training": dict(section)}).training


def build_model(training: TrainingConfig) -> Any:
    """An unfitted estimator for ``training`` (logistic regression is standardized first).

    Raises:
        ConfigError: Unknown model type or a parameter the estimator does not take.
    """
    cls = _lightgbm_classifier() if training.model_type == LIGHTGBM \
        else MODEL_TYPES.get(training.model_type)
    if cls is None:
        known = ", ".join([*MODEL_TYPES, LIGHTGBM])
        raise ConfigError(f"config key 'training.model_type': unknown model type "
                          f"'{training.model_type}' (use one of {known})")
    accepted = inspect.signature(cls).parameters
    for key in training.params:
        # LightGBM takes its many booster parameters through **kwargs.
        if key not in accepted and training.model_type != LIGHTGBM:
            raise ConfigError(f"config key 'training.params.{key}' is not a parameter of "
                              f"{cls.__name__}")
    params = dict(training.params)
    params.setdefault("random_state", training.random_state)
    if training.model_type == LIGHTGBM:
        params.setdefault("verbose", -1)
    if training.model_type == "logistic":
        params.setdefault("max_iter", 1000)
        return Pipeline([("scale", StandardScaler()), ("model", cls(**params))])
    return cls(**params)


def train_model(X_train: pd.DataFrame | np.ndarray, y_train: pd.Series | np.ndarray,
                config: Config | TrainingConfig | Mapping[str, Any]) -> Any:
    """Fit a classifier.

    Args:
        X_train: Features.
        y_train: Binary labels.
        config: The typed config, its training section, or the dict ``_load_config`` returns.

    Returns:
        The fitted scikit-learn classifier (deterministic given ``training.random_state``).

    Raises:
        ConfigError: Unknown model type or parameter.
    """
    model = build_model(_training_section(config))
    try:
        model.fit(X_train, y_train)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"training failed with config key 'training.params': {err}") from err
    return model


def evaluate(model: Any, X: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray) -> float:
    """Accuracy of ``model`` on ``(X, y)``."""
    predicted = model.predict(X)
    truth = np.asarray(y)
    # Integer (or bool) labels, one per row: accuracy is the share of equal pairs, the
    # exact number accuracy_score returns. Its label checks sort both arrays (np.unique,
    # ~0.9 s at 10M rows, a third of monitor-check); other labels still go through it.
    if truth.ndim == 1 and predicted.ndim == 1 and len(truth) == len(predicted) > 0 \
            and truth.dtype.kind in "biu" and predicted.dtype.kind in "biu":
        return float(np.count_nonzero(truth == predicted) / len(truth))
    return float(accuracy_score(y, predicted))


def split(X: pd.DataFrame, y: pd.Series, test_size: float,
          random_state: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """A stratified train/test split (plain when a class is too small to stratify)."""
    stratify = y if y.value_counts().min() >= 2 else None
    parts = train_test_split(X, y, test_size=test_size, random_state=random_state,
                             stratify=stratify)
    return parts[0], parts[1], parts[2], parts[3]
