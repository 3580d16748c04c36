"""Training and evaluation of the classifier."""

from __future__ import annotations

import inspect
import math
import signal
import threading
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
from mlops.errors import ConfigError, DataValidationError, TrainingTimeoutError

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


def check_training(training: TrainingConfig) -> None:
    """Validate ``training`` against the estimator before anything is written.

    Each of ``training.params`` must be a parameter of the estimator (its signature) with
    a value the estimator accepts (scikit-learn's own parameter constraints, the check
    ``fit`` runs first), so a bad value fails the run before ingest registers data.

    Raises:
        ConfigError: Unknown model type, unknown parameter, or a value the estimator
            refuses; the message names ``training.params.<name>``.
    """
    model = build_model(training)  # unknown type or parameter names
    if training.model_type == LIGHTGBM:
        return  # booster parameters go through **kwargs, checked by LightGBM's own fit
    cls = type(model.named_steps["model"] if isinstance(model, Pipeline) else model)
    for key, value in {**training.params, "random_state": training.params.get(
            "random_state", training.random_state)}.items():
        validate = getattr(cls(**{key: value}), "_validate_params", None)
        if not callable(validate):  # scikit-learn < 1.2: fit reports it instead
            return
        try:
            validate()
        except (TypeError, ValueError) as err:
            where = f"training.params.{key}" if key in training.params else \
                "training.random_state"
            raise ConfigError(f"config key '{where}': {str(err).splitlines()[0]}") from None


def check_trainable(y: pd.Series, test_size: float, source: str = "data") -> None:
    """Refuse labels that the stratified train/test split cannot divide.

    The training part needs a row per class, and a stratified split (every class has
    2 rows) a test row per class, as scikit-learn's split requires; checked before the
    data is registered.

    Raises:
        DataValidationError: Too few rows (names the source and the counts).
    """
    counts = y.value_counts()
    n = len(y)
    n_test = math.ceil(test_size * n)
    stratified = counts.min() >= 2  # as split() decides
    if n_test < (len(counts) if stratified else 1) or n - n_test < len(counts):
        raise DataValidationError(
            f"{source} has {n} rows ({', '.join(f'{k!r}: {v}' for k, v in counts.items())}): "
            f"too few to hold out data.test_size={test_size:g} with every class on the "
            "needed sides")


class _TimeBox:
    """Raise TrainingTimeoutError in the main thread after ``seconds`` (SIGALRM timer).

    Python runs the handler between bytecodes, which scikit-learn's fits reach at least
    once per iteration or tree. Outside the main thread (where no signal can be
    delivered) there is no time box; the step Job's activeDeadlineSeconds still bounds it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = (threading.current_thread() is threading.main_thread()
                      and hasattr(signal, "setitimer"))
        self.previous: Any = None

    def _expired(self, signum: int, frame: Any) -> None:
        raise TrainingTimeoutError(
            f"training took longer than config key 'training.max_seconds' "
            f"({self.seconds:g} s): reduce training.params (e.g. n_estimators) or the data, "
            "or raise training.max_seconds; nothing was saved")

    def __enter__(self) -> _TimeBox:
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


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
        TrainingTimeoutError: The fit took longer than ``training.max_seconds``.
    """
    training = _training_section(config)
    model = build_model(training)
    try:
        with _TimeBox(training.max_seconds):
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
