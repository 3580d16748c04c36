"""Data: the synthetic generator, loading CSV/Parquet sources, validation, statistics."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import DataValidationError
from mlops.storage import read_table_files

SYNTHETIC = "synthetic"
#: The synthetic concept (feature means, spreads, label weights) is fixed; only the sample
#: depends on ``random_state``. So two seeds are two samples of the same distribution.
_CONCEPT_SEED = 20240601


def _concept(n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_CONCEPT_SEED)
    means = 10.0 + np.arange(n_features, dtype=np.float64)
    spreads = 1.0 + (np.arange(n_features) % 3).astype(np.float64)
    weights = rng.normal(size=n_features)
    return means, spreads, weights


def generate_synthetic_data(n_samples: int = 1000, n_features: int = 10,
                            random_state: int = 42, *, shift: float = 0.0,
                            scale: float = 1.0) -> pd.DataFrame:
    """Generate a deterministic binary classification data set.

    Features ``feature_0 .. feature_{n-1}`` are normal with fixed, non-zero means;
    ``target`` follows a fixed linear concept with a little label noise.

    Args:
        n_samples: Rows.
        n_features: Feature columns.
        random_state: Seed of the sample (not of the concept).
        shift: Move every feature's mean by this many of its standard deviations
            (to simulate drift; the concept stays the same).
        scale: Multiply every feature's spread around its mean by this (drift of spread).

    Returns:
        The DataFrame with float64 features and an int64 ``target``.

    Raises:
        DataValidationError: ``n_samples`` or ``n_features`` is not positive.
    """
    if n_samples <= 0 or n_features <= 0:
        raise DataValidationError(f"n_samples and n_features must be positive, got "
                                  f"{n_samples} and {n_features}")
    means, spreads, weights = _concept(n_features)
    rng = np.random.default_rng(random_state)
    z = rng.standard_normal((n_samples, n_features)) * scale + shift
    logit = z @ weights / np.sqrt(n_features) * 3.0 + rng.normal(scale=0.3, size=n_samples)
    x = means + z * spreads
    frame = pd.DataFrame(x, columns=[f"feature_{i}" for i in range(n_features)])
    frame["target"] = (logit > 0).astype(np.int64)
    return frame


def _read_one(name: str, payload: bytes) -> pd.DataFrame:
    lower = name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(io.BytesIO(payload))
        return pd.read_csv(io.BytesIO(payload))
    except pd.errors.EmptyDataError as err:
        raise DataValidationError(f"data file {name} is empty") from err
    except Exception as err:
        raise DataValidationError(f"data file {name} cannot be parsed: "
                                  f"{str(err).splitlines()[0][:200]}") from err


def load_source(source: str, target_column: str = "target",
                storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Load and validate a CSV/Parquet source (a path, URI or glob).

    Raises:
        DataValidationError: Nothing matches, a file cannot be parsed, or validation fails.
        StorageError: The files cannot be read (retryable).
    """
    try:
        files = read_table_files(source, storage_options)
    except FileNotFoundError as err:
        raise DataValidationError(f"data source {source} not found: no CSV or Parquet "
                                  "file matches") from err
    frames = [_read_one(name, payload) for name, payload in files]
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for (name, _), frame in zip(files[1:], frames[1:], strict=True):
            if list(frame.columns) != cols:
                raise DataValidationError(f"data file {name} has columns "
                                          f"{list(frame.columns)}, expected {cols}")
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    validate(df, target_column, source)
    return df


def validate(df: pd.DataFrame, target_column: str, source: str = "data", *,
             whole: bool = True) -> None:
    """Check that ``df`` can be trained on.

    Args:
        df: The data.
        target_column: The label column.
        source: What to name in messages.
        whole: False for one partition of a larger data set (the Dask engine): an
            empty partition or one with a single class is fine there (those two are
            checked on the merged statistics).

    Raises:
        DataValidationError: Empty data, missing target column, NaN in the target,
            a single class, no features, a non-numeric feature, a missing, infinite or
            too large (> MAX_ABS_FEATURE) feature value; the message names the column
            and the source.
    """
    if whole and len(df) == 0:
        raise DataValidationError(f"{source} is empty: no rows")
    if target_column not in df.columns:
        cols = ", ".join(map(str, df.columns[:10]))
        raise DataValidationError(f"target column '{target_column}' not found in {source} "
                                  f"(columns: {cols})")
    target = df[target_column]
    n_missing = int(target.isna().sum())
    if n_missing:
        raise DataValidationError(f"target column '{target_column}' has {n_missing} missing "
                                  f"value(s) in {source}")
    classes = target.unique()
    if whole and len(classes) < 2:
        raise DataValidationError(f"target column '{target_column}' has a single class "
                                  f"({classes[0]!r}) in {source}: need at least two")
    features = feature_columns(df, target_column)
    if not features:
        raise DataValidationError(f"{source} has no feature columns besides "
                                  f"'{target_column}'")
    for col in features:
        dtype = df[col].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise DataValidationError(f"feature column '{col}' in {source} is not numeric "
                                      f"(dtype {dtype})")
        missing = int(df[col].isna().sum())
        if missing:
            raise DataValidationError(f"feature column '{col}' has {missing} missing "
                                      f"value(s) in {source}")
        _check_finite(df[col], col, source)


#: Largest magnitude of a feature value: its square (variances, scaling) stays finite.
MAX_ABS_FEATURE = 1e150


def _check_finite(column: pd.Series, name: str, source: str) -> None:
    """Refuse inf and values so large that statistics of them overflow."""
    values = column.to_numpy(dtype="float64", copy=False)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= MAX_ABS_FEATURE)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        first = values[np.flatnonzero(bad)[0]]
        raise DataValidationError(f"feature column '{name}' has {n_bad} infinite or too large "
                                  f"value(s) in {source} (e.g. {first!r}; the limit is "
                                  f"±{MAX_ABS_FEATURE:g})")


def feature_columns(df: pd.DataFrame, target_column: str) -> list[str]:
    """The columns of ``df`` other than the target, in order."""
    return [str(c) for c in df.columns if c != target_column]


def split_xy(df: pd.DataFrame, target_column: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target of ``df``."""
    return df[feature_columns(df, target_column)], df[target_column]


def column_stats(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean, std, min and max of each numeric (non-bool) column."""
    stats: dict[str, dict[str, float]] = {}
    for col in df.columns:
        s = df[col]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            continue
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if values.size == 0:
            continue
        # Fast path: min propagates NaN, so a non-NaN min proves the column has none and
        # the plain reductions (one pass each, no NaN-masked copies) give the same numbers.
        low = values.min()
        if not np.isnan(low):
            stats[str(col)] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "min": float(low),
                "max": float(values.max()),
            }
            continue
        if np.isnan(values).all():
            continue
        stats[str(col)] = {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values, ddof=1)) if values.size > 1 else 0.0,
            "min": float(np.nanmin(values)),
            "max": float(np.nanmax(values)),
        }
    return stats


def feature_means(df: pd.DataFrame, target_column: str) -> dict[str, float]:
    """Mean of each feature column."""
    x, _ = split_xy(df, target_column)
    return {str(c): float(v) for c, v in x.mean(numeric_only=True).items()}


__all__ = [
    "SYNTHETIC", "column_stats", "feature_columns", "feature_means",
    "generate_synthetic_data", "load_source", "split_xy", "validate",
]
