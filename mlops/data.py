"""Data: the synthetic generator, loading CSV/Parquet sources, validation, statistics."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import numpy as np
import pandas as pd

from mlops.choices import BOOL, CATEGORICAL, CLASSIFICATION, NUMERIC, REGRESSION
from mlops.choices import TASKS as CHOICES_TASKS
from mlops.errors import DataValidationError
from mlops.store.sources import read_table_files

log = logging.getLogger(__name__)

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


def read_options(data: Any) -> dict[str, Any]:
    """How sources are read, as plain data for a Dask task: ``data.csv`` as
    ``pandas.read_csv`` keywords and ``data.exclude_columns`` (``data``: the config's
    ``data`` section)."""
    csv: dict[str, Any] = {"sep": data.csv.sep, "decimal": data.csv.decimal,
                           "encoding": data.csv.encoding}
    if data.csv.na_values:
        csv["na_values"] = list(data.csv.na_values)
    return {"csv": csv, "exclude": list(data.exclude_columns)}


def read_csv(handle: Any, options: dict[str, Any] | None = None) -> pd.DataFrame:
    """``pandas.read_csv`` with ``data.csv`` (see :func:`read_options`)."""
    return pd.read_csv(handle, **(options or {}).get("csv", {}))


def drop_excluded(df: pd.DataFrame, name: str, options: dict[str, Any] | None = None
                  ) -> pd.DataFrame:
    """``df`` without ``data.exclude_columns``.

    Raises:
        DataValidationError: An excluded column is not in the file (a typo would
            otherwise go unnoticed); names it and the file.
    """
    return _drop_named(df, list((options or {}).get("exclude") or []),
                       "data.exclude_columns", f"data file {name}")


def _drop_named(df: pd.DataFrame, names: list[str], key: str, where: str) -> pd.DataFrame:
    """``df`` without the columns config key ``key`` names; one it lacks is refused."""
    if not names:
        return df
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataValidationError(f"config key '{key}' names '{missing[0]}', which {where} "
                                  "does not have")
    return df.drop(columns=names)


def check_unique_columns(name: str, columns: Any) -> None:
    """Refuse a file whose header names a column twice.

    pandas renames a repeated CSV column (``target`` -> ``target.1``): a repeated target
    would become a feature holding the label (scoring 1.0, and promoted).

    Raises:
        DataValidationError: Naming the file and the column.
    """
    seen: set[str] = set()
    for col in columns:
        key = str(col)
        if key in seen:
            raise DataValidationError(f"data file {name} has the column '{key}' more than "
                                      "once in its header; rename or drop the copies")
        seen.add(key)


def csv_header(source: Any, options: dict[str, Any] | None = None) -> list[str]:
    """The header row of a CSV file as written (before pandas renames repeated names),
    read with ``data.csv``'s separator and encoding (see :func:`read_options`)."""
    csv = (options or {}).get("csv", {})
    row = pd.read_csv(source, header=None, nrows=1, dtype=str, keep_default_na=False,
                      **{k: csv[k] for k in ("sep", "encoding") if k in csv})
    return [str(v) for v in row.iloc[0].tolist()] if len(row) else []


def _read_one(name: str, payload: bytes, options: dict[str, Any] | None = None
              ) -> pd.DataFrame:
    lower = name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            df = pd.read_parquet(io.BytesIO(payload))
            check_unique_columns(name, df.columns)
        else:
            check_unique_columns(name, csv_header(io.BytesIO(payload), options))
            df = read_csv(io.BytesIO(payload), options)
    except DataValidationError:
        raise
    except pd.errors.EmptyDataError as err:
        raise DataValidationError(f"data file {name} is empty") from err
    except Exception as err:
        raise DataValidationError(f"data file {name} cannot be parsed: "
                                  f"{str(err).splitlines()[0][:200]}") from err
    return drop_excluded(df, name, options)


def read_source(source: str, storage_options: dict[str, Any] | None = None,
                options: dict[str, Any] | None = None,
                ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read a CSV/Parquet source (a path, URI or glob) without validating it
    (``options``: :func:`read_options`, the CSV options and excluded columns).

    Returns:
        The frame (files concatenated in name order) and the files read, each
        ``{"path", "size_bytes"}`` (the lineage of the data version).

    Raises:
        DataValidationError: Nothing matches, a file cannot be parsed, or the files'
            columns differ.
        StorageError: The files cannot be read (retryable).
    """
    try:
        files = read_table_files(source, storage_options)
    except FileNotFoundError as err:
        raise DataValidationError(f"data source {source} not found: no CSV or Parquet "
                                  "file matches") from err
    frames = [_read_one(name, payload, options) for name, payload in files]
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for (name, _), frame in zip(files[1:], frames[1:], strict=True):
            if list(frame.columns) != cols:
                raise DataValidationError(f"data file {name} has columns "
                                          f"{list(frame.columns)}, expected {cols}")
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return df, [{"path": name, "size_bytes": len(payload)} for name, payload in files]


def load_source(source: str, target_column: str = "target",
                storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Load and validate a CSV/Parquet source (a path, URI or glob).

    Raises:
        DataValidationError: Nothing matches, a file cannot be parsed, or validation fails.
        StorageError: The files cannot be read (retryable).
    """
    df, _ = read_source(source, storage_options)
    validate(df, target_column, source)
    return df


#: Kinds of feature columns (see :func:`feature_kind`).
KINDS = (NUMERIC, BOOL, CATEGORICAL)
#: Learning tasks (``data.task``).
AUTO = "auto"
TASKS = CHOICES_TASKS  # ("auto", "classification", "regression"), owned by mlops.choices
#: Under ``data.task: auto`` an integer-valued numeric target with more distinct values
#: than this is a regression (a price, a count), whatever ``type_of_target`` says.
AUTO_MAX_CLASSES = 20
_NUMERIC_OBJECTS = ("integer", "floating", "mixed-integer-float", "decimal")


def feature_kind(series: pd.Series, name: str, source: str = "data") -> str:
    """The kind of a feature column: ``numeric``, ``bool`` or ``categorical``.

    Numeric: integer and float dtypes. Bool: ``bool``/``boolean`` dtypes and object
    columns holding only booleans (and missing values). Categorical: ``category``,
    ``string`` and object columns of strings. Missing values are allowed in any kind.

    Raises:
        DataValidationError: The column is entirely missing, holds values of mixed
            types (strings and numbers...), or has an unsupported dtype (dates, bytes,
            complex numbers); the message names the column and the source.
    """
    dtype = series.dtype
    if len(series) and series.isna().all():
        raise DataValidationError(f"feature column '{name}' in {source} has only missing "
                                  "values: drop it or fill it")
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype) \
            or pd.api.types.is_timedelta64_dtype(dtype):
        raise _date_column(name, source)
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if isinstance(dtype, pd.CategoricalDtype) or (
            pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype)):
        if _date_share(series) == 1.0:
            raise _date_column(name, source)
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred == "string":
            if _date_share(series) == 1.0:
                raise _date_column(name, source)
            return CATEGORICAL
        if inferred in ("datetime", "datetime64", "date", "time", "timedelta", "period"):
            raise _date_column(name, source)
        if inferred == "boolean":
            return BOOL
        if inferred in _NUMERIC_OBJECTS:
            return NUMERIC
        if inferred.startswith("mixed"):
            types = sorted({type(v).__name__ for v in series.dropna().head(1000)})
            raise DataValidationError(f"feature column '{name}' in {source} mixes value types "
                                      f"({', '.join(types)}): make it all strings or all "
                                      "numbers")
        raise DataValidationError(f"feature column '{name}' in {source} holds {inferred} "
                                  "values, which are not supported (use numbers, booleans "
                                  "or strings)")
    raise DataValidationError(f"feature column '{name}' in {source} has unsupported dtype "
                              f"{dtype} (use numbers, booleans or strings)")


#: Dates and times as text: ISO 8601 (2024-05-31, 2024-05-31 13:45[:07][Z|+02:00]) and
#: day/month/year or month/day/year with / or . (31/05/2024, 5.31.2024 13:45).
_DATE = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:?\d{2})?)?|\d{1,2}[/.]\d{1,2}[/.]\d{4}"
                   r"( \d{1,2}:\d{2}(:\d{2})?)?)\s*$")
#: Values of a string column looked at by the date rule and the warnings.
_SAMPLE = 2000


def _sample(series: pd.Series) -> pd.Series:
    # The head first: dropping the missing values of a whole column copies all of it.
    values = series.iloc[:4 * _SAMPLE].dropna()
    if values.empty and len(series) > 4 * _SAMPLE:
        values = series.dropna()
    return values.iloc[:_SAMPLE].astype(str)


def _date_share(series: pd.Series) -> float:
    """The share of a string column's first non-missing values that read as dates."""
    values = _sample(series)
    if values.empty:
        return 0.0
    return float(values.str.match(_DATE).mean())


def _date_column(name: str, source: str) -> DataValidationError:
    return DataValidationError(
        f"column '{name}' in {source} holds dates or times, which are not features: add it "
        "to data.exclude_columns (or data.id_columns to keep it), or derive numeric "
        "features from it before ingest (docs/data.md)")


def table_warnings(df: pd.DataFrame, target_column: str, id_columns: list[str] | tuple[()]
                   = (), source: str = "data") -> list[str]:
    """What looks wrong in a table that ingest still accepts (each a line, also logged):

    * a string feature that reads as numbers but for a few markers (``n/a``, ``-``,
      ``1,234``, ``12 %``): fix it with ``data.csv`` (``na_values``, ``decimal``) or at
      the source;
    * a string feature whose values mostly read as dates (all of them: refused);
    * a string feature with a distinct value in every row: an identifier (``data.id_columns``);
    * target labels that differ only by case or spaces (``Yes``, ``yes ``).
    """
    out: list[str] = []
    ids = set(id_columns)
    for col in feature_columns(df, target_column):
        if col in ids:
            continue
        series = df[col]
        dtype = series.dtype
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            continue
        values = _sample(series)
        if values.empty or pd.api.types.infer_dtype(values, skipna=True) != "string":
            continue
        numeric = pd.to_numeric(values.str.strip(), errors="coerce")
        share = float(numeric.notna().mean())
        if 0.8 <= share < 1.0:
            markers = sorted(set(values[numeric.isna()].head(50)))[:3]
            out.append(f"column '{col}' in {source} reads as numbers except {1 - share:.1%} "
                       f"of its values (e.g. {', '.join(repr(m) for m in markers)}): it is "
                       "kept as categories; set data.csv.na_values / decimal or fix the "
                       "source to make it numeric")
            continue
        dates = float(values.str.match(_DATE).mean())
        if dates >= 0.8:
            out.append(f"column '{col}' in {source}: {dates:.0%} of its values read as "
                       "dates: add it to data.exclude_columns")
            continue
        if len(values) >= 20 and values.nunique() == len(values) \
                and int(series.nunique()) == int(series.notna().sum()):
            out.append(f"column '{col}' in {source} has a distinct value in every row: an "
                       "identifier? add it to data.id_columns (kept, never a feature)")
    target = df[target_column] if target_column in df.columns else None
    if target is not None and (pd.api.types.is_object_dtype(target.dtype)
                               or pd.api.types.is_string_dtype(target.dtype)):
        labels = pd.Series(target.dropna().unique())
        if labels.map(lambda v: isinstance(v, str)).all():
            folded = labels.str.strip().str.casefold()
            for _, group in labels.groupby(folded.to_numpy()):
                if len(group) > 1:
                    out.append(f"target column '{target_column}' in {source} has labels that "
                               f"differ only by case or spaces: "
                               f"{', '.join(repr(v) for v in sorted(group))}: they are "
                               "different classes; clean them at the source")
    for line in out:
        log.warning("%s", line)
    return out


def without_ids(df: pd.DataFrame, id_columns: list[str] | tuple[()], source: str = "data"
                ) -> pd.DataFrame:
    """``df`` without its ``data.id_columns`` (what features are computed from).

    Raises:
        DataValidationError: An id column is not in ``df`` (names it).
    """
    return _drop_named(df, list(id_columns), "data.id_columns", source)


def feature_kinds(df: pd.DataFrame, target_column: str,
                  source: str = "data") -> dict[str, str]:
    """The kind of every feature column, in column order (see :func:`feature_kind`)."""
    return {col: feature_kind(df[col], col, source)
            for col in feature_columns(df, target_column)}


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))


def detect_task(target: pd.Series, task: str = AUTO, target_column: str = "target",
                source: str = "data", *, whole: bool = True) -> str:
    """The learning task of ``target`` (the rule of ``data.task: auto`` is in docs/data.md).

    ``auto``: a target that is not numeric (strings, categories, booleans) is a
    classification; a numeric target with a non-integer value is a regression; an
    integer-valued target is a classification when it has at most
    :data:`AUTO_MAX_CLASSES` distinct values, else a regression.

    Args:
        target: The target column (no missing values).
        task: ``auto``, ``classification`` or ``regression`` (``data.task``).
        target_column: Its name, for messages.
        source: Where the data came from, for messages.
        whole: False for one partition of a larger data set: fewer than two distinct
            values are fine there.

    Returns:
        ``classification`` or ``regression``.

    Raises:
        DataValidationError: ``classification`` asked of a continuous target,
            ``regression`` of a non-numeric one, fewer than two classes, or a constant
            regression target; the message names the target column.
    """
    if task not in TASKS:
        raise DataValidationError(f"config key 'data.task': unknown task '{task}' (use one "
                                  f"of {', '.join(TASKS)})")
    dtype = target.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if task == REGRESSION and not numeric:
        raise DataValidationError(f"target column '{target_column}' in {source} is not numeric "
                                  f"(dtype {dtype}): data.task regression needs numbers")
    n_unique = int(target.nunique())
    if numeric:
        values = target.to_numpy(dtype=np.float64)
        integral = _integral(values)
        if task == CLASSIFICATION and not integral:
            raise DataValidationError(
                f"target column '{target_column}' in {source} is continuous (non-integer "
                "values) but data.task is classification: set data.task to regression or auto")
        if task == AUTO:
            task = CLASSIFICATION if integral and n_unique <= AUTO_MAX_CLASSES else REGRESSION
    elif task == AUTO:
        task = CLASSIFICATION
    if not whole:
        return task  # one partition: fewer than two distinct values are fine there
    if task == CLASSIFICATION and n_unique < 2:
        raise DataValidationError(f"target column '{target_column}' has a single class "
                                  f"({target.iloc[0]!r}) in {source}: need at least two")
    if task == REGRESSION and n_unique < 2:
        raise DataValidationError(f"target column '{target_column}' is constant "
                                  f"({target.iloc[0]!r}) in {source}: nothing to learn")
    return task


def validate(df: pd.DataFrame, target_column: str, source: str = "data",
             task: str = AUTO, *, whole: bool = True, unlabelled: bool = False) -> str:
    """Check that ``df`` can be trained on, and decide its task.

    Args:
        df: The data.
        target_column: The target column.
        source: What to name in messages.
        task: ``data.task``.
        whole: False for one partition of a larger data set (the Dask engine): an
            empty partition or one with a single class is fine there (those two are
            checked on the merged statistics), and the task is the partition's own.
        unlabelled: A batch without its target is valid (``labels`` configured: its
            labels arrive later, docs/labels.md): its features are checked and the task
            is "" (unknown from this batch).

    Returns:
        The task: ``classification`` or ``regression`` (see :func:`detect_task`).

    Raises:
        DataValidationError: Empty data, missing target column, a missing value in the
            target, a target that does not fit ``task``, no features, a feature column
            that is all missing, of mixed types or of an unsupported dtype, or a numeric
            feature with an infinite or too large (> MAX_ABS_FEATURE) value; the message
            names the column and the source.
    """
    if whole and len(df) == 0:
        raise DataValidationError(f"{source} is empty: no rows")
    if target_column not in df.columns and unlabelled:
        features = feature_columns(df, target_column)
        if not features:
            raise DataValidationError(f"{source} has no feature columns")
        for col in features:
            if feature_kind(df[col], col, source) == NUMERIC:
                _check_finite(df[col], col, source)
        return ""
    if target_column not in df.columns:
        cols = ", ".join(map(str, df.columns[:10]))
        raise DataValidationError(f"target column '{target_column}' not found in {source} "
                                  f"(columns: {cols})")
    target = df[target_column]
    n_missing = int(target.isna().sum())
    if n_missing:
        raise DataValidationError(f"target column '{target_column}' has {n_missing} missing "
                                  f"value(s) in {source}")
    features = feature_columns(df, target_column)
    if not features:
        raise DataValidationError(f"{source} has no feature columns besides "
                                  f"'{target_column}'")
    for col in features:
        if feature_kind(df[col], col, source) == NUMERIC:
            _check_finite(df[col], col, source)
    return detect_task(target, task, target_column, source, whole=whole)


#: Largest magnitude of a feature value: its square (variances, scaling) stays finite.
MAX_ABS_FEATURE = 1e150


def _check_finite(column: pd.Series, name: str, source: str) -> None:
    """Refuse inf and values so large that statistics of them overflow (a missing value
    is allowed: imputation handles it)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64",
                                                             na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > MAX_ABS_FEATURE  # inf too; NaN compares False
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
    """Mean of each numeric (non-bool) feature column, missing values skipped.

    Columns with no value at all are left out.
    """
    x = df[feature_columns(df, target_column)]
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c].dtype)
               and not pd.api.types.is_bool_dtype(x[c].dtype)]
    means = x[numeric].mean() if numeric else pd.Series(dtype=np.float64)
    return {str(c): float(v) for c, v in means.items() if not pd.isna(v)}


__all__ = [
    "AUTO",
    "AUTO_MAX_CLASSES",
    "BOOL",
    "CATEGORICAL",
    "CLASSIFICATION",
    "KINDS",
    "NUMERIC",
    "REGRESSION",
    "SYNTHETIC",
    "TASKS",
    "column_stats",
    "detect_task",
    "drop_excluded",
    "feature_columns",
    "feature_kind",
    "feature_kinds",
    "feature_means",
    "generate_synthetic_data",
    "load_source",
    "read_csv",
    "read_options",
    "read_source",
    "split_xy",
    "table_warnings",
    "validate",
    "without_ids",
]
