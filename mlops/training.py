"""Training and evaluation: one scikit-learn Pipeline with its preprocessing, and metrics.

The saved model is a :class:`~sklearn.pipeline.Pipeline` ``prep -> model``, so
``model.predict(raw_frame)`` works on a raw frame with missing values and
categories never seen in training. ``prep`` is a ``ColumnTransformer``:

* numeric features: median imputation (and standardization for the linear models);
* bool features: as 0/1, most frequent value imputed;
* categorical features (strings, ``category``): missing values become the category
  ``__missing__``; one-hot encoded, unseen categories ignored (all zeros). For
  ``hist_gradient_boosting`` they are ordinal codes used as native categorical
  features, unseen categories treated as missing, and numeric missing values are
  left to the model.
"""

from __future__ import annotations

import inspect
import math
import signal
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops.config import Config, TrainingConfig
from mlops.data import BOOL, CATEGORICAL, CLASSIFICATION, NUMERIC, REGRESSION
from mlops.errors import ConfigError, DataValidationError, TrainingTimeoutError

# The gate lives in mlops.gating (no scikit-learn there, so `mlops status` can use it);
# re-exported here for the callers that know it from this module.
from mlops.gating import DEFAULT_METRIC as DEFAULT_METRIC
from mlops.gating import METRICS as METRICS
from mlops.gating import at_least_as_good as at_least_as_good
from mlops.gating import higher_is_better as higher_is_better
from mlops.gating import meets_threshold as meets_threshold
from mlops.gating import metric_for as metric_for
from mlops.performance.cbpe import merge_roc_points, roc_auc_of_points

#: Classifiers by ``training.model_type`` (``linear`` is the same as ``logistic``).
MODEL_TYPES: dict[str, type] = {
    "logistic": LogisticRegression,
    "linear": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}
#: Regressors by ``training.model_type`` (``logistic`` is the same as ``linear``: ridge).
REGRESSION_MODEL_TYPES: dict[str, type] = {
    "linear": Ridge,
    "logistic": Ridge,
    "random_forest": RandomForestRegressor,
    "gradient_boosting": GradientBoostingRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}
_LINEAR = ("logistic", "linear")
_HGB = "hist_gradient_boosting"
#: The category that stands for a missing value of a categorical feature.
MISSING_CATEGORY = "__missing__"
#: hist_gradient_boosting: a categorical feature keeps at most this many categories (the
#: rest are grouped as infrequent); the model takes at most 255 bins.
HGB_MAX_CATEGORIES = 250

#: Gradient-boosted trees from LightGBM (the mlops[dask] extra; on the Dask engine it
#: trains through LightGBM's Dask estimator, here through its scikit-learn one).
LIGHTGBM = "lightgbm"


def _lightgbm_estimator(task: str) -> type:
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
    except ImportError as err:
        raise ConfigError("config key 'training.model_type': lightgbm needs the mlops[dask] "
                          "extra (lightgbm is not installed)") from err
    return LGBMRegressor if task == REGRESSION else LGBMClassifier


def _training_section(config: Config | TrainingConfig | Mapping[str, Any]) -> TrainingConfig:
    if isinstance(config, Config):
        return config.training
    if isinstance(config, TrainingConfig):
        return config
    section = config.get("training", config)
    return Config.from_dict({"training": dict(section)}).training


# --- preprocessing (module-level functions: the pipeline is pickled) ----------------------
# Saved models refer to as_float, as_strings and FrameCodes by their import path
# (mlops.training.<name>): keep them importable from here, whatever moves, or stores
# written so far stop loading (tests/data/store-0.2, tests/test_store_compat_0_2.py).
# Serving exports replace them with scikit-learn transformers (mlops.serving).
def as_float(x: Any) -> Any:
    """Bool-like values as floats (True 1.0, False 0.0, missing NaN)."""
    frame = pd.DataFrame(x).astype(object)
    return frame.where(frame.notna(), np.nan).to_numpy(dtype=np.float64)


def as_strings(x: Any) -> Any:
    """Category values as strings, a missing value as :data:`MISSING_CATEGORY`.

    A column whose values already are strings (the usual categorical column) only has
    its missing values replaced: ``str()`` of each of a million values was most of the
    one-hot step's time (``make bench`` B11). Other columns go through ``str()``.
    """
    frame = pd.DataFrame(x)
    out = np.empty(frame.shape, dtype=object)
    for i in range(frame.shape[1]):
        values = frame.iloc[:, i].to_numpy(dtype=object)
        missing = pd.isna(values)
        if pd.api.types.infer_dtype(values, skipna=True) == "string":
            out[:, i] = values
            out[missing, i] = MISSING_CATEGORY
        else:
            column = frame.iloc[:, i].astype(object)
            out[:, i] = column.where(~missing, MISSING_CATEGORY).astype(str).to_numpy(
                dtype=object)
    return out


def _columns(kinds: Mapping[str, str], kind: str) -> list[str]:
    return [c for c, k in kinds.items() if k == kind]


def build_preprocessor(kinds: Mapping[str, str] | None, model_type: str) -> ColumnTransformer:
    """The ``ColumnTransformer`` of a model type for features of ``kinds``.

    Args:
        kinds: Feature name -> ``numeric``/``bool``/``categorical`` (None: every column
            is numeric, selected by position).
        model_type: ``training.model_type``.
    """
    hgb = model_type == _HGB
    numeric_steps: list[tuple[str, Any]] = []
    if not hgb:
        numeric_steps.append(("impute", SimpleImputer(strategy="median",
                                                      keep_empty_features=True)))
    if model_type in _LINEAR:
        numeric_steps.append(("scale", StandardScaler()))
    numeric: Any = Pipeline(numeric_steps) if numeric_steps else "passthrough"
    if kinds is None:
        return ColumnTransformer([("numeric", numeric, slice(None))])
    bools = Pipeline([("float", FunctionTransformer(as_float, feature_names_out="one-to-one")),
                      *([] if hgb else [("impute", SimpleImputer(
                          strategy="most_frequent", keep_empty_features=True))])])
    if hgb:
        encoder: Any = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                      max_categories=HGB_MAX_CATEGORIES)
    else:
        encoder = OneHotEncoder(handle_unknown="ignore")
    categorical = Pipeline([
        ("strings", FunctionTransformer(as_strings, feature_names_out="one-to-one")),
        ("encode", encoder)])
    parts = [(NUMERIC, numeric, _columns(kinds, NUMERIC)),
             (BOOL, bools, _columns(kinds, BOOL)),
             (CATEGORICAL, categorical, _columns(kinds, CATEGORICAL))]
    return ColumnTransformer([p for p in parts if p[2]], sparse_threshold=0.0 if hgb else 0.3)


def build_model(training: TrainingConfig, task: str = CLASSIFICATION,
                kinds: Mapping[str, str] | None = None) -> Pipeline:
    """An unfitted ``Pipeline([("prep", ColumnTransformer), ("model", estimator)])``.

    Args:
        training: The training section.
        task: ``classification`` or ``regression``.
        kinds: Feature name -> kind (see :func:`mlops.data.feature_kind`); None when
            every feature is numeric.

    Raises:
        ConfigError: Unknown model type or a parameter the estimator does not take.
    """
    table = REGRESSION_MODEL_TYPES if task == REGRESSION else MODEL_TYPES
    cls = _lightgbm_estimator(task) if training.model_type == LIGHTGBM \
        else table.get(training.model_type)
    if cls is None:
        known = ", ".join([*table, LIGHTGBM])
        raise ConfigError(f"config key 'training.model_type': unknown model type "
                          f"'{training.model_type}' (use one of {known})")
    accepted = inspect.signature(cls).parameters
    for key in training.params:
        # LightGBM takes its many booster parameters through **kwargs.
        if key not in accepted and training.model_type != LIGHTGBM:
            raise ConfigError(f"config key 'training.params.{key}' is not a parameter of "
                              f"{cls.__name__}")
    params = dict(training.params)
    if "random_state" in accepted or training.model_type == LIGHTGBM:
        params.setdefault("random_state", training.random_state)
    if training.model_type == LIGHTGBM:
        params.setdefault("verbose", -1)
    if cls is LogisticRegression:
        params.setdefault("max_iter", 1000)
    if training.model_type == _HGB and kinds is not None:
        ordered = [*_columns(kinds, NUMERIC), *_columns(kinds, BOOL)]
        n_cat = len(_columns(kinds, CATEGORICAL))
        params.setdefault("categorical_features",
                          [False] * len(ordered) + [True] * n_cat if n_cat else None)
    return Pipeline([("prep", build_preprocessor(kinds, training.model_type)),
                     ("model", cls(**params))])


def _kinds_of(x: pd.DataFrame | np.ndarray) -> dict[str, str] | None:
    if not isinstance(x, pd.DataFrame):
        return None
    from mlops.data import feature_kind

    return {str(c): feature_kind(x[c], str(c)) for c in x.columns}


def check_training(training: TrainingConfig, task: str = CLASSIFICATION) -> None:
    """Validate ``training`` against the estimator before anything is written.

    Each of ``training.params`` must be a parameter of the estimator (its signature) with
    a value the estimator accepts (scikit-learn's own parameter constraints, the check
    ``fit`` runs first), so a bad value fails the run before ingest registers data.

    Raises:
        ConfigError: Unknown model type, unknown parameter, or a value the estimator
            refuses; the message names ``training.params.<name>``.
    """
    model = build_model(training, task)  # unknown type or parameter names
    if training.model_type == LIGHTGBM:
        return  # booster parameters go through **kwargs, checked by LightGBM's own fit
    cls = type(model.named_steps["model"])
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


def check_trainable(y: pd.Series, test_size: float, source: str = "data",
                    task: str = CLASSIFICATION) -> None:
    """Refuse labels that the train/test split cannot divide.

    A classification's training part needs a row per class, and a stratified split
    (every class has 2 rows) a test row per class, as scikit-learn's split requires; a
    regression needs a row on each side. Checked before the data is registered.

    Raises:
        DataValidationError: Too few rows (names the source and the counts).
    """
    n = len(y)
    n_test = math.ceil(test_size * n)
    if task == REGRESSION:
        if n_test < 1 or n - n_test < 2:
            raise DataValidationError(f"{source} has {n} rows: too few to hold out "
                                      f"data.test_size={test_size:g} and train on the rest")
        return
    counts = y.value_counts()
    stratified = counts.min() >= 2  # as split() decides
    if n_test < (len(counts) if stratified else 1) or n - n_test < len(counts):
        raise DataValidationError(
            f"{source} has {n} rows ({', '.join(f'{k!r}: {v}' for k, v in counts.items())}): "
            f"too few to hold out data.test_size={test_size:g} with every class on the "
            "needed sides")


def too_few_rows(settings: TrainingConfig, test_size: float, rows: int, y: pd.Series | None = None,
                 task: str = CLASSIFICATION, source: str = "data") -> str:
    """Why a batch of ``rows`` rows is too small to train on, or "" when it is not.

    The split holds out ``ceil(test_size * rows)`` rows: the rest must be at least
    ``training.min_rows`` and the held-out rows at least ``training.min_test_rows``;
    with the target ``y`` the classes must also divide (:func:`check_trainable`).

    Args:
        settings: The ``training`` section (``min_rows``, ``min_test_rows``).
        test_size: ``data.test_size``.
        rows: Rows of the batch.
        y: Its target, when at hand (the pandas engine).
        task: ``classification`` or ``regression``.
        source: What to name in the message.
    """
    n_test = math.ceil(test_size * rows)
    n_train = rows - n_test
    if n_train < settings.min_rows:
        return (f"{source} has {rows} rows: too few to train on ({n_train} after holding "
                f"out data.test_size={test_size:g}, fewer than training.min_rows="
                f"{settings.min_rows})")
    if n_test < settings.min_test_rows:
        return (f"{source} has {rows} rows: too few to hold out ({n_test} at "
                f"data.test_size={test_size:g}, fewer than training.min_test_rows="
                f"{settings.min_test_rows})")
    if y is not None:
        try:
            check_trainable(y, test_size, source, task)
        except DataValidationError as err:
            return str(err)
    return ""


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
                config: Config | TrainingConfig | Mapping[str, Any],
                task: str = CLASSIFICATION,
                kinds: Mapping[str, str] | None = None) -> Any:
    """Fit the model of ``config`` with its preprocessing.

    Args:
        X_train: Features (a DataFrame of any supported kinds, or a numeric array).
        y_train: Labels (classification) or values (regression).
        config: The typed config, its training section, or the dict ``_load_config`` returns.
        task: ``classification`` or ``regression``.
        kinds: Feature kinds (default: detected from ``X_train``).

    Returns:
        The fitted scikit-learn Pipeline (deterministic given ``training.random_state``).

    Raises:
        ConfigError: Unknown model type or parameter, or parameters the estimator refuses.
        TrainingTimeoutError: The fit took longer than ``training.max_seconds``.
    """
    training = _training_section(config)
    model = build_model(training, task, kinds if kinds is not None else _kinds_of(X_train))
    try:
        with _TimeBox(training.max_seconds):
            model.fit(X_train, y_train)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"training failed with config key 'training.params': "
                          f"{str(err).splitlines()[0] if str(err) else err!r}") from err
    return model


def evaluate(model: Any, X: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray) -> float:
    """Accuracy of ``model`` on ``(X, y)``."""
    return _accuracy(np.asarray(y), np.asarray(model.predict(X)))


def _accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    # Integer (or bool) labels, one per row: accuracy is the share of equal pairs, the
    # exact number accuracy_score returns. Its label checks sort both arrays (np.unique,
    # ~0.9 s at 10M rows, a third of monitor-check); other labels still go through it.
    if truth.ndim == 1 and predicted.ndim == 1 and len(truth) == len(predicted) > 0 \
            and truth.dtype.kind in "biu" and predicted.dtype.kind in "biu":
        return float(np.count_nonzero(truth == predicted) / len(truth))
    return float(accuracy_score(truth, predicted))


# --- metrics -----------------------------------------------------------------------------
def _safe(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    try:
        with warnings.catch_warnings():
            # An undefined metric on a tiny batch (one class, one row) is None, not a warning.
            warnings.simplefilter("ignore")
            value = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def compute_metrics(model: Any, X: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray,
                    task: str) -> dict[str, float | None]:
    """Every metric of ``task`` for ``model`` on ``(X, y)``.

    Classification: ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``roc_auc``
    (binary, or one-vs-rest macro when there are more classes) and ``log_loss`` (both
    need ``predict_proba``); regression: ``rmse``, ``mae``, ``r2``. A metric that is
    undefined on this data (``roc_auc`` with one class present, ``r2`` of one row)
    is None.
    """
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        # Preprocess once for predict and predict_proba (the transform of a million rows
        # of categories costs about as much as the prediction itself).
        X, model = model[:-1].transform(X), model[-1]
    predicted = np.asarray(model.predict(X))
    proba = np.asarray(model.predict_proba(X)) \
        if task != REGRESSION and hasattr(model, "predict_proba") else None
    return prediction_metrics(y, predicted, task, proba,
                              None if proba is None else list(model.classes_))


def prediction_metrics(y: pd.Series | np.ndarray, predicted: pd.Series | np.ndarray,
                       task: str, proba: np.ndarray | None = None,
                       classes: list[Any] | None = None) -> dict[str, float | None]:
    """Every metric of ``task`` from predictions already made (what :func:`compute_metrics`
    computes after predicting; the realized metrics of stored predictions, docs/labels.md).

    Args:
        y: The true targets.
        predicted: The predictions, row for row.
        task: ``classification`` or ``regression``.
        proba: A classifier's probabilities (one column per class of ``classes``), or None:
            ``roc_auc`` and ``log_loss`` are then None.
        classes: The classes of ``proba``'s columns, in order.
    """
    truth = np.asarray(y)
    predicted = np.asarray(predicted)
    if task == REGRESSION:
        return {"rmse": _safe(lambda a, b: math.sqrt(mean_squared_error(a, b)), truth, predicted),
                "mae": _safe(mean_absolute_error, truth, predicted),
                "r2": _safe(r2_score, truth, predicted) if len(truth) > 1 else None}
    out: dict[str, float | None] = {
        "accuracy": _accuracy(truth, predicted),
        "balanced_accuracy": _safe(balanced_accuracy_score, truth, predicted),
        "f1_macro": _safe(f1_score, truth, predicted, average="macro", zero_division=0),
        "roc_auc": None, "log_loss": None}
    if proba is not None and classes is not None:
        if len(classes) == 2:
            out["roc_auc"] = _safe(roc_auc_score, truth == classes[1], proba[:, 1])
        else:
            out["roc_auc"] = _safe(roc_auc_score, truth, proba, multi_class="ovr",
                                   labels=classes)
        out["log_loss"] = _safe(log_loss, truth, proba, labels=classes)
    return out


def split(X: pd.DataFrame, y: pd.Series, test_size: float, random_state: int,
          task: str = CLASSIFICATION) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """A train/test split, stratified for a classification (plain when a class is too
    small to stratify, and for a regression)."""
    stratify = y if task == CLASSIFICATION and y.value_counts().min() >= 2 else None
    parts = train_test_split(X, y, test_size=test_size, random_state=random_state,
                             stratify=stratify)
    return parts[0], parts[1], parts[2], parts[3]


# --- the Dask engine's preprocessing: fitted from statistics, not rows ---------------------
class FrameCodes(TransformerMixin, BaseEstimator):
    """Raw features as float columns for LightGBM, fitted from merged statistics.

    The Dask engine cannot fit a ``ColumnTransformer`` on rows spread over workers, so
    its LightGBM models are ``Pipeline([("prep", FrameCodes), ("model", LightGBM)])``
    with this first step, built from what ingest counted: numeric features pass as
    float32 (LightGBM bins them into at most 255 bins anyway, and its Dask workers hold
    and concatenate their share of the rows: half the memory of float64; missing values
    stay NaN: LightGBM's own missing-value handling), bool
    features become 0/1 (missing NaN), and categorical features become the index of
    their value in ``categories`` (the categories seen in training, as strings), used
    by LightGBM as native categorical features; a missing or unseen category is NaN.

    Args:
        kinds: Feature name -> ``numeric``/``bool``/``categorical``, in input order.
        categories: Categorical feature -> its categories (strings), in code order.
    """

    def __init__(self, kinds: Mapping[str, str] | None = None,
                 categories: Mapping[str, list[str]] | None = None) -> None:
        self.kinds = kinds
        self.categories = categories

    def fit(self, X: Any = None, y: Any = None) -> FrameCodes:
        """Nothing to learn from rows (the statistics were given)."""
        self.n_features_in_ = len(self.kinds or {})
        self.feature_names_in_ = np.asarray(list(self.kinds or {}), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The float32 frame LightGBM trains and predicts on (columns in ``kinds`` order)."""
        kinds = self.kinds or {}
        out: dict[str, np.ndarray] = {}
        for col, kind in kinds.items():
            s = X[col]
            if kind == CATEGORICAL:
                out[col] = self._codes(s, list((self.categories or {}).get(col, [])))
            elif kind == BOOL:
                out[col] = as_float(s)[:, 0]
            else:
                out[col] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
        return pd.DataFrame({c: v.astype(np.float32) for c, v in out.items()}, index=X.index,
                            columns=list(kinds))

    @staticmethod
    def _codes(s: pd.Series, categories: list[str]) -> np.ndarray:
        cat = pd.Categorical(s)
        lookup = pd.Index(categories, dtype=object).get_indexer(
            pd.Index([str(c) for c in cat.categories], dtype=object))
        codes = np.where(cat.codes >= 0, lookup[np.maximum(cat.codes, 0)], -1) \
            if len(lookup) else np.full(len(s), -1)
        return np.where(codes >= 0, codes, np.nan).astype(np.float64)

    def categorical_features(self) -> list[str]:
        """The output columns LightGBM treats as categorical."""
        return [c for c, k in (self.kinds or {}).items() if k == CATEGORICAL]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names (the input names)."""
        return np.asarray(list(self.kinds or {}), dtype=object)


# --- metrics from mergeable parts (the Dask engine scores partition by partition) ---------
#: ``roc_auc`` from merged parts is exact while the held-out predictions have at most this
#: many distinct scores; beyond, scores are rounded to :data:`ROC_AUC_DECIMALS` decimals
#: (ties within 1e-9 then count half), which bounds the step's memory.
ROC_AUC_MAX_POINTS = 2_000_000
ROC_AUC_DECIMALS = 9


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _score_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, ...]:
    values, inverse = np.unique(scores, return_inverse=True)
    total = np.bincount(inverse, minlength=len(values)).astype(np.float64)
    pos = np.bincount(inverse, weights=positive.astype(np.float64), minlength=len(values))
    return values, pos, total - pos


def metric_parts(model: Any, X: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray,
                 task: str) -> dict[str, Any]:
    """Mergeable parts of every metric of ``task`` on one partition (plain data).

    Regression: rows, sums of squared and absolute errors, and the target's count, mean
    and sum of squared deviations. Classification: the confusion counts ``(true,
    predicted) -> rows``, the summed log-loss over the model's classes, and per class the
    distinct predicted probabilities with their positive and negative rows (for
    ``roc_auc``). :class:`MetricMerger` turns a list of them into the metrics of
    :func:`compute_metrics`, equal to it on the concatenated rows (to rounding).
    """
    truth = np.asarray(y)
    if not len(truth):  # an empty partition (a split can leave one)
        return {"n": 0}
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        X, model = model[:-1].transform(X), model[-1]
    predicted = np.asarray(model.predict(X))
    if task == REGRESSION:
        t = truth.astype(np.float64)
        err = t - predicted.astype(np.float64)
        mean = float(t.mean()) if len(t) else 0.0
        return {"n": len(t), "sse": float(np.dot(err, err)), "sae": float(np.abs(err).sum()),
                "mean": mean, "m2": float(np.square(t - mean).sum())}
    pairs = pd.DataFrame({"t": truth, "p": predicted}).value_counts(sort=False)
    confusion: dict[tuple[Any, Any], int] = {}
    for key, n in pairs.items():
        pair: tuple[Any, Any] = key  # type: ignore[assignment]  # a MultiIndex (true, predicted)
        confusion[(_py(pair[0]), _py(pair[1]))] = int(n)
    parts: dict[str, Any] = {"n": len(truth), "confusion": confusion}
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X))
        classes = list(model.classes_)
        parts["classes"] = [_py(c) for c in classes]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts["log_loss_sum"] = float(log_loss(truth, proba, labels=classes,
                                                       normalize=False))
        except ValueError:
            parts["log_loss_sum"] = None
        columns = [1] if len(classes) == 2 else range(len(classes))
        parts["roc"] = {i: _score_points(proba[:, i], truth == classes[i]) for i in columns}
    return parts


class MetricMerger:
    """Merges :func:`metric_parts` of partitions as they arrive (bounded memory)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.n = 0
        self.sse = self.sae = self.mean = self.m2 = 0.0
        self.confusion: dict[tuple[Any, Any], int] = {}
        self.log_loss_sum: float | None = 0.0
        self.classes: list[Any] | None = None
        self.roc: dict[int, tuple[np.ndarray, ...]] = {}
        self.proba = True
        self.rounded = False

    def add(self, parts: Mapping[str, Any]) -> None:
        """Merge one partition's parts."""
        n = int(parts["n"])
        if n == 0:
            return
        if self.task == REGRESSION:
            total = self.n + n
            delta = parts["mean"] - self.mean
            self.m2 += parts["m2"] + delta * delta * self.n * n / total
            self.mean += delta * n / total
            self.sse += parts["sse"]
            self.sae += parts["sae"]
            self.n = total
            return
        self.n += n
        for key, count in parts["confusion"].items():
            self.confusion[key] = self.confusion.get(key, 0) + count
        if "roc" not in parts:
            self.proba = False
            return
        if self.classes is None:
            self.classes = list(parts["classes"])
        ll = parts.get("log_loss_sum")
        self.log_loss_sum = None if ll is None or self.log_loss_sum is None \
            else self.log_loss_sum + ll
        for i, points in parts["roc"].items():
            self.roc[i] = points if i not in self.roc else self._merge(self.roc[i], points)

    def _merge(self, a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]
               ) -> tuple[np.ndarray, ...]:
        merged, rounded = merge_roc_points(a, b, ROC_AUC_MAX_POINTS, ROC_AUC_DECIMALS)
        self.rounded = self.rounded or rounded
        return merged

    def metrics(self) -> dict[str, float | None]:
        """The metrics of every part added (the keys of :func:`compute_metrics`)."""
        if self.task == REGRESSION:
            if not self.n:
                return {"rmse": None, "mae": None, "r2": None}
            r2: float | None = None
            if self.n > 1:  # r2_score's force_finite rule for a constant target
                r2 = 1.0 - self.sse / self.m2 if self.m2 > 0 else \
                    (1.0 if self.sse == 0 else 0.0)
            return {"rmse": math.sqrt(self.sse / self.n), "mae": self.sae / self.n, "r2": r2}
        out: dict[str, float | None] = {"accuracy": None, "balanced_accuracy": None,
                                        "f1_macro": None, "roc_auc": None, "log_loss": None}
        if not self.n:
            return out
        labels = sorted({t for t, _ in self.confusion} | {p for _, p in self.confusion})
        rows = dict.fromkeys(labels, 0)
        cols = dict.fromkeys(labels, 0)
        diag = dict.fromkeys(labels, 0)
        for (t, p), count in self.confusion.items():
            rows[t] += count
            cols[p] += count
            if t == p:
                diag[t] += count
        out["accuracy"] = sum(diag.values()) / self.n
        recalls = [diag[c] / rows[c] for c in labels if rows[c]]
        out["balanced_accuracy"] = float(np.mean(recalls)) if recalls else None
        f1 = [2 * diag[c] / (rows[c] + cols[c]) if rows[c] + cols[c] else 0.0 for c in labels]
        out["f1_macro"] = float(np.mean(f1))
        if self.proba and self.classes is not None:
            if self.log_loss_sum is not None and math.isfinite(self.log_loss_sum):
                out["log_loss"] = self.log_loss_sum / self.n
            aucs = [roc_auc_of_points(points) for _, points in sorted(self.roc.items())]
            if aucs and all(a is not None for a in aucs):
                out["roc_auc"] = float(np.mean([a for a in aucs if a is not None]))
        return out
