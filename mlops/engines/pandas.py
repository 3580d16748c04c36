"""The pandas engine (``data.engine: pandas``, the default): one frame in this process.

Every statistic is computed from the values: exact feature means, drift statistics
from the frame (:data:`mlops.drift.STAT_TESTS`' exact implementations), metrics with
:func:`mlops.training.compute_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd

from mlops.config import Config
from mlops.data import (
    SYNTHETIC,
    feature_columns,
    feature_kinds,
    feature_means,
    generate_synthetic_data,
    read_options,
    read_source,
    split_xy,
    table_warnings,
    validate,
    without_ids,
)
from mlops.drift import build_reference
from mlops.engines.base import Ingested, IngestedVersion, check_task_settings
from mlops.errors import DataValidationError
from mlops.monitor import BatchProfile
from mlops.performance.cbpe import (
    calibration_parts,
    estimate,
    fit_calibration,
    model_proba,
    prepared,
)
from mlops.schema import InputSchema
from mlops.scoring import Scored, score_data_version, score_source
from mlops.store.hashing import row_hashes, seen_rows, sorted_unique
from mlops.store.workspace import Workspace
from mlops.training import compute_metrics, split, too_few_rows, train_model
from mlops.validation import check as check_rules

PANDAS = "pandas"


class PandasBatch:
    """A data version loaded whole, for monitor-check."""

    def __init__(self, config: Config, ws: Workspace, ingested: IngestedVersion) -> None:
        df, _ = ws.versioner.load(ingested.data_version)
        self.df = without_ids(df, config.data.id_columns, ingested.data_version)
        self.target = config.data.target_column
        # An unlabelled batch (no target, docs/labels.md) has no task of its own.
        self.unlabelled = self.target not in self.df.columns and \
            bool(getattr(ingested, "unlabelled", False))
        self.task = ingested.task or ("" if self.unlabelled else validate(
            self.df, self.target, ingested.data_version, config.data.task))

    def columns(self) -> pd.DataFrame:
        return self.df

    def profile(self, model: Any = None, names: list[str] | None = None,
                known: Any = None, calibration: Any = None) -> BatchProfile:
        df, target = self.df, self.target
        x = df[feature_columns(df, target)]
        metrics: dict[str, float | None] = {}
        estimated: dict[str, float | None] = {}
        scored: int | None = None
        skipped = 0
        if model is not None:
            y = df[target]
            xs, ys = x if names is None else x[names], y
            if known is not None:  # only the rows the model was not trained on
                seen = seen_rows(row_hashes(df, [*xs.columns, target]), known)
                skipped = int(seen.sum())
                if skipped:
                    xs, ys = xs[~seen], ys[~seen]
            scored = len(xs)
            if calibration is not None and len(xs):  # CBPE too: the rows transformed once
                final, xt = prepared(model, xs)
                metrics = compute_metrics(final, xt, ys, self.task)
                estimated = estimate(model_proba(final, xt)[0], calibration)
            else:
                metrics = compute_metrics(model, xs, ys, self.task) if len(xs) else {}
        return BatchProfile(rows=len(df), means=feature_means(df, target), frame=x,
                            metrics=metrics, scored_rows=scored, skipped_seen_rows=skipped,
                            estimated_metrics=estimated)


class PandasTrainer:
    """The pandas engine's train data: a split of the loaded frame (stratified for a
    classification)."""

    def __init__(self, config: Config, ws: Workspace, ingested: IngestedVersion,
                 rows: pd.DataFrame | None = None) -> None:
        self.config = config
        if rows is None:
            df, _ = ws.versioner.load(ingested.data_version)
        else:  # a training window's labelled rows (mlops.performance.labels.training_frame)
            df = rows
        df = without_ids(df, config.data.id_columns, ingested.data_version)
        self.target = target = config.data.target_column
        self.task = (ingested.task if rows is None else "") or validate(
            df, target, ingested.data_version, config.data.task)
        x, y = split_xy(df, target)
        # In column order (a result read back from JSON has its keys sorted).
        known = (ingested.feature_kinds if rows is None else {}) or feature_kinds(df, target)
        self.kinds = {c: known[c] for c in x.columns}
        self.features = [str(c) for c in x.columns]
        self.x_train, self.x_test, self.y_train, self.y_test = split(
            x, y, config.data.test_size, config.training.random_state, self.task)
        self._rows: Future[Any] | None = None
        self._reference: Future[dict[str, Any]] | None = None

    def __enter__(self) -> PandasTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def train_rows(self) -> int:
        return len(self.x_train)

    @property
    def test_rows(self) -> int:
        return len(self.x_test)

    def fit(self) -> tuple[Any, dict[str, Any]]:
        # The training rows' hashes and the drift reference (both only read x_train) are
        # computed on the other core while the model fits (make bench B6, B11).
        with ThreadPoolExecutor(max_workers=1) as pool:
            self._rows = pool.submit(self._training_rows)
            self._reference = pool.submit(self._reference_now)
            return train_model(self.x_train, self.y_train, self.config, self.task,
                               self.kinds), {}

    def metrics(self, model: Any, names: list[str] | None = None
                ) -> dict[str, float | None]:
        x = self.x_test if names is None else self.x_test[names]
        return compute_metrics(model, x, self.y_test, self.task)

    def metrics_unseen(self, model: Any, names: list[str] | None, known: Any
                       ) -> tuple[dict[str, float | None], int]:
        """Metrics on the held-out rows whose hash is not in ``known`` (a champion's
        training rows), and how many rows that is."""
        rows = self.x_test.assign(**{self.target: self.y_test})
        keep = ~seen_rows(row_hashes(rows, [*self.features, self.target]), known)
        x, y = self.x_test[keep], self.y_test[keep]
        if not len(x):
            return {}, 0
        return compute_metrics(model, x if names is None else x[names], y, self.task), len(x)

    def columns(self) -> pd.DataFrame:
        return self.x_test

    def schema(self) -> InputSchema:
        return InputSchema.from_frame(self.x_train, self.target, self.task, self.kinds)

    def reference(self) -> dict[str, Any]:
        return self._reference.result() if self._reference is not None \
            else self._reference_now()

    def _reference_now(self) -> dict[str, Any]:
        """The drift reference of the training features, as the monitor builds it."""
        m = self.config.monitoring
        return {"feature_means": feature_means(self.x_train, self.target),
                "distribution": build_reference(self.x_train, m.psi_bins,
                                                m.reference_sample_size)}

    def training_rows(self) -> Any:
        return self._rows.result() if self._rows is not None else self._training_rows()

    def calibration(self, model: Any) -> dict[str, Any] | None:
        """The classifier's calibration map from the held-out split (mlops.performance.cbpe)."""
        if not len(self.x_test):
            return None
        proba, classes = model_proba(model, self.x_test)
        return fit_calibration([calibration_parts(proba, self.y_test.to_numpy(), classes)])

    def _training_rows(self) -> Any:
        rows = self.x_train.assign(**{self.target: self.y_train})
        return sorted_unique(row_hashes(rows, [*self.features, self.target]))


class PandasEngine:
    """``data.engine: pandas`` (see the module docstring)."""

    name = PANDAS

    def ingest(self, config: Config, ws: Workspace) -> Ingested:
        d = config.data
        name = "synthetic data" if d.source == SYNTHETIC else d.source
        files: list[dict[str, Any]] = []
        if d.source == SYNTHETIC:
            df = generate_synthetic_data(d.n_samples, d.n_features, d.random_state)
        else:
            df, files = read_source(d.source, config.storage.options, read_options(d))
        check_rules(df, config.validation, name)  # the validation: section
        features = without_ids(df, d.id_columns, name)  # ids are kept, never features
        unlabelled = config.labels.enabled and d.target_column not in df.columns
        task = validate(features, d.target_column, name, d.task, unlabelled=unlabelled)
        warned = table_warnings(df, d.target_column, d.id_columns, name)
        small = ""
        if not unlabelled:  # an unlabelled batch is scored now, trained on once labelled
            check_task_settings(config, task)  # a metric of the other task, bad params: exit 2
            small = too_few_rows(config.training, d.test_size, len(df), df[d.target_column],
                                 task, name)
            if small and ws.current_model_version() is None:
                raise DataValidationError(f"{small}; no model serves yet to score it")
        version = ws.versioner.register(df, source={"uri": d.source, "files": files})
        return Ingested(data_version=version, rows=len(df),
                        feature_means=feature_means(features, d.target_column),
                        feature_kinds=feature_kinds(features, d.target_column),
                        source_files=files, task=task, too_few_rows=small, warnings=warned,
                        unlabelled=unlabelled)

    def batch(self, config: Config, ws: Workspace, ingested: IngestedVersion) -> PandasBatch:
        return PandasBatch(config, ws, ingested)

    def trainer(self, config: Config, ws: Workspace, ingested: IngestedVersion,
                rows: pd.DataFrame | None = None) -> PandasTrainer:
        return PandasTrainer(config, ws, ingested, rows)

    def score(self, ws: Workspace, run_id: str) -> Scored:
        return score_source(ws, run_id)

    def score_version(self, ws: Workspace, run_id: str, data_version: str, model: Any,
                      metadata: Mapping[str, Any], model_version: str,
                      id_columns: Sequence[str]) -> Scored:
        return score_data_version(ws, run_id, data_version, model, metadata, model_version,
                                  id_columns)


__all__ = ["PANDAS", "PandasBatch", "PandasEngine", "PandasTrainer"]
