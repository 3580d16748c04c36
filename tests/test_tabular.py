"""Real tabular data: feature kinds, tasks, the preprocessing pipeline, metrics, schemas,
and drift of every feature kind (pure functions, no store)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine

from mlops.config import Config
from mlops.data import detect_task, feature_kinds, validate
from mlops.drift import DriftSettings, build_reference, distribution_report, mean_l1_report
from mlops.errors import DataValidationError
from mlops.schema import InputSchema, compare
from mlops.training import compute_metrics, split, train_model

CLASSIFIERS = ["logistic", "random_forest", "gradient_boosting", "hist_gradient_boosting"]
REGRESSORS = ["linear", "random_forest", "gradient_boosting", "hist_gradient_boosting"]
#: Small ensembles keep the tests fast; the defaults are exercised by the benchmarks.
FAST: dict[str, dict[str, Any]] = {"random_forest": {"n_estimators": 25},
                                   "gradient_boosting": {"n_estimators": 30},
                                   "hist_gradient_boosting": {"max_iter": 10,
                                                              "early_stopping": False}}


def config_of(model_type: str) -> Config:
    return Config.from_dict({"training": {"model_type": model_type,
                                          "params": FAST.get(model_type, {})}})


def mixed_frame(n: int = 400, seed: int = 0, missing: float = 0.05,
                shift: float = 0.0) -> pd.DataFrame:
    """Numeric, integer, bool, string and category features with missing values; a
    binary target that depends on all of them."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, n)
    count = rng.integers(0, 30, n)
    flag = rng.random(n) < 0.4
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    size = rng.choice(["S", "M", "L"], n)
    logit = x1 + 0.1 * (count - 15) + 1.5 * flag + np.where(color == "red", 1.0, -1.0)
    df = pd.DataFrame({
        "x1": x1, "count": count.astype(np.int64), "flag": flag,
        "color": pd.Series(color, dtype=object),
        "size": pd.Categorical(size),
        "target": (logit + rng.normal(0, 0.5, n) > 0).astype(np.int64)})
    if missing:
        for col in ("x1", "color", "size"):
            df.loc[rng.random(n) < missing, col] = None
        df["flag"] = df["flag"].astype(object)
        df.loc[rng.random(n) < missing, "flag"] = None
    return df


def sk_frame(loader: Any) -> pd.DataFrame:
    x, y = loader(return_X_y=True, as_frame=True)
    return x.assign(target=y)


# --- feature kinds and tasks ---------------------------------------------------------------
def test_mixed_frame_kinds_and_task() -> None:
    df = mixed_frame()
    assert feature_kinds(df, "target") == {"x1": "numeric", "count": "numeric", "flag": "bool",
                                           "color": "categorical", "size": "categorical"}
    assert validate(df, "target") == "classification"
    string_dtype = df.assign(color=df["color"].astype("string"))
    assert feature_kinds(string_dtype, "target")["color"] == "categorical"


@pytest.mark.parametrize(("column", "match"), [
    (pd.Series(["a", 1, 2.5, "b"] * 5, dtype=object),
     r"feature column 'bad' in data mixes value types \(float, int, str\)"),
    (pd.Series([None] * 20, dtype=object), r"feature column 'bad' in data has only missing"),
    (pd.Series([np.nan] * 20), r"feature column 'bad' in data has only missing"),
    (pd.Series(pd.date_range("2024-01-01", periods=20)),
     r"column 'bad' in data holds dates or times, which are not features: add it to "
     r"data.exclude_columns"),
])
def test_unusable_feature_columns_are_named(column: pd.Series, match: str) -> None:
    df = pd.DataFrame({"ok": np.arange(20.0), "bad": column, "target": [0, 1] * 10})
    with pytest.raises(DataValidationError, match=match):
        validate(df, "target")


def test_constant_feature_is_kept_and_trains() -> None:
    df = mixed_frame().assign(const=1.0, label="same")
    assert validate(df, "target") == "classification"
    model = train_model(df.drop(columns="target"), df["target"], Config())
    assert model.predict(df.drop(columns="target")).shape == (len(df),)


@pytest.mark.parametrize(("loader", "task"), [
    (load_breast_cancer, "classification"), (load_wine, "classification"),
    (load_digits, "classification"), (load_diabetes, "regression")])
def test_auto_task_of_the_real_data_sets(loader: Any, task: str) -> None:
    assert validate(sk_frame(loader), "target") == task


@pytest.mark.parametrize(("values", "task"), [
    (np.arange(200) % 21, "regression"),            # integer, 21 distinct values: a count
    (np.arange(200) % 20, "classification"),        # 20 distinct integers: classes
    (np.tile([0.0, 1.0], 100), "classification"),   # float labels that are integers
    (np.linspace(0, 1, 200), "regression"),
    (np.tile(["yes", "no"], 100), "classification"),
    (np.tile([True, False], 100), "classification"),
])
def test_auto_rule(values: np.ndarray, task: str) -> None:
    assert detect_task(pd.Series(values)) == task


def test_classification_of_a_continuous_target_names_the_column() -> None:
    df = sk_frame(load_diabetes).rename(columns={"target": "y"})
    df["y"] = df["y"] + 0.5
    with pytest.raises(DataValidationError, match=r"target column 'y' in d\.csv is continuous"):
        validate(df, "y", "d.csv", "classification")
    with pytest.raises(DataValidationError, match=r"target column 'y' in d is not numeric"):
        validate(df.assign(y="a"), "y", "d", "regression")


# --- the model pipeline ----------------------------------------------------------------------
@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_pipeline_predicts_a_raw_frame_with_unseen_categories(model_type: str) -> None:
    df = mixed_frame(300)
    x, y = df.drop(columns="target"), df["target"]
    model = train_model(x, y, config_of(model_type))
    raw = mixed_frame(40, seed=9).drop(columns="target")
    raw.loc[0, "color"] = "purple"          # never seen in training
    raw["size"] = raw["size"].cat.add_categories(["XXL"])
    raw.loc[1, "size"] = "XXL"
    raw.loc[2, ["x1", "flag", "color"]] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predicted = model.predict(raw[list(reversed(raw.columns))][list(x.columns)])
    assert predicted.shape == (40,)
    assert compute_metrics(model, x, y, "classification")["accuracy"] > 0.75  # type: ignore


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_classifiers_on_breast_cancer(model_type: str) -> None:
    df = sk_frame(load_breast_cancer)
    x, y = df.drop(columns="target"), df["target"]
    xtr, xte, ytr, yte = split(x, y, 0.3, 0)
    metrics = compute_metrics(train_model(xtr, ytr, config_of(model_type)), xte, yte,
                              "classification")
    assert set(metrics) == {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss"}
    assert metrics["accuracy"] > 0.9 and metrics["roc_auc"] > 0.95  # type: ignore[operator]
    assert 0 < metrics["log_loss"] < 0.5  # type: ignore[operator]


@pytest.mark.parametrize("loader", [load_wine, load_digits])
def test_multiclass_metrics_one_vs_rest(loader: Any) -> None:
    df = sk_frame(loader).iloc[:600]
    x, y = df.drop(columns="target"), df["target"]
    xtr, xte, ytr, yte = split(x, y, 0.3, 0)
    metrics = compute_metrics(train_model(xtr, ytr, Config()), xte, yte, "classification")
    assert metrics["roc_auc"] is not None and metrics["roc_auc"] > 0.95
    assert metrics["f1_macro"] > 0.9  # type: ignore[operator]


@pytest.mark.parametrize("model_type", REGRESSORS)
def test_regressors_on_diabetes(model_type: str) -> None:
    df = sk_frame(load_diabetes)
    x, y = df.drop(columns="target"), df["target"]
    xtr, xte, ytr, yte = split(x, y, 0.3, 0, "regression")
    metrics = compute_metrics(train_model(xtr, ytr, config_of(model_type), "regression"), xte,
                              yte, "regression")
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.2  # type: ignore[operator]
    assert 0 < metrics["mae"] < metrics["rmse"] < float(y.std())  # type: ignore[operator]


def test_imbalanced_target_one_class_model_is_exposed() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=400)})
    y = pd.Series((np.arange(400) % 20 == 0).astype(int))  # 95 / 5
    cfg = Config.from_dict({"training": {"params": {"C": 1e-8}}})  # predicts the majority
    metrics = compute_metrics(train_model(x, y, cfg), x, y, "classification")
    assert metrics["accuracy"] == pytest.approx(0.95)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["f1_macro"] < 0.5  # type: ignore[operator]


# --- schemas ---------------------------------------------------------------------------------
def test_schema_records_kinds_and_categories_and_compares() -> None:
    df = mixed_frame()
    schema = InputSchema.from_frame(df, "target", "classification")
    assert InputSchema.from_dict(schema.to_dict()) == schema
    color = next(c for c in schema.features if c.name == "color")
    assert color.kind == "categorical" and color.categories == ("blue", "green", "red")
    assert not compare(schema, df[list(reversed(df.columns))]).changed
    assert not compare(schema, df.assign(count=df["count"].astype(float))).changed
    change = compare(schema, df.drop(columns="size").assign(extra=1.0, x1="a"),
                     "regression")
    assert change.added == ("extra",) and change.missing == ("size",)
    assert change.retyped == (("x1", "numeric", "categorical"),)
    assert change.describe() == ("added 'extra'; missing 'size'; retyped 'x1' (numeric -> "
                                 "categorical); target task classification -> regression")


# --- drift of every kind ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["psi", "ks", "wasserstein", "auto"])
def test_categorical_drift_counts_unseen_categories(method: str) -> None:
    ref_frame = mixed_frame(2000, 0).drop(columns="target")
    reference = build_reference(ref_frame)
    assert reference["features"]["color"]["kind"] == "categorical"
    assert reference["features"]["x1"]["missing_rate"] == pytest.approx(
        ref_frame["x1"].isna().mean())
    settings = DriftSettings(method=method)
    same = distribution_report(reference, mixed_frame(2000, 1).drop(columns="target"), settings)
    assert "color" not in same.drifted_features
    moved = mixed_frame(2000, 2, missing=0.0).drop(columns="target")
    moved["color"] = np.where(np.arange(2000) % 2 == 0, "purple", "blue")
    moved.loc[:299, "x1"] = None
    report = distribution_report(reference, moved, settings)
    color = next(f for f in report.features if f.feature == "color")
    assert color.drifted and color.unseen == 1000 and color.kind == "categorical"
    assert color.method == {"psi": "psi", "ks": "chi2", "wasserstein": "jensen_shannon",
                            "auto": "jensen_shannon"}[method]
    x1 = next(f for f in report.features if f.feature == "x1")
    assert x1.missing_rate == pytest.approx(0.15)
    assert x1.reference_missing_rate == pytest.approx(ref_frame["x1"].isna().mean())


def test_mean_l1_uses_the_numeric_features_of_a_mixed_frame() -> None:
    df = mixed_frame(500).drop(columns="target")
    means = {c: float(df[c].mean()) for c in ("x1", "count")}
    report = mean_l1_report(means, {**means, "x1": means["x1"] + 5}, DriftSettings())
    assert [f.feature for f in report.features] == ["x1", "count"]
    assert report.drifted_features == ["x1"]


def test_metric_names_have_one_owner() -> None:
    from mlops.choices import METRIC_NAMES
    from mlops.training import METRICS

    assert set(METRIC_NAMES) == set(METRICS)
