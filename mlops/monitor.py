"""ModelMonitor: the metrics history, the reference distribution and the retrain decision.

Layout below the monitor's folder:

    <metrics stem>/<time>-<uuid>.json   one object per record: object stores have no
                                        append, and two writers never touch the same object
    <drift_file>                        the reference feature distribution (replaced whole)

Drift (the ``mean_l1`` rule) is the relative L1 distance of feature means over the
features the current batch shares with the reference::

    drift = sum(|current_i - reference_i|) / sum(|reference_i|)

When every shared reference mean is 0 the denominator is replaced by 1, so the
score is the absolute L1 distance ``sum(|current_i|)`` (0 when nothing moved)
rather than a division by zero. No reference, or no shared feature, gives 0.

Other drift methods (``psi``, ``ks``, ``wasserstein``, ``auto``) are per-feature
statistics computed in :mod:`mlops.drift` from the reference's distribution summary
(written by :meth:`ModelMonitor.update_reference_distribution` when it is given the
training features). For them the ``drift`` score is the share of drifted features.
A reference without a distribution summary (written before these methods existed)
falls back to ``mean_l1`` and says so in the report's ``note``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops import layout
from mlops.drift import (
    DEFAULT_SAMPLE_SIZE,
    MEAN_L1,
    DriftReport,
    DriftSettings,
    build_reference,
    distribution_report,
    mean_l1_report,
    relative_l1,
)
from mlops.gating import DEGRADED, SERVING_MODEL_UNUSABLE, degraded, meets_threshold
from mlops.ids import compact, iso, utc_now
from mlops.storage import CorruptObjectError, Store, as_store

if TYPE_CHECKING:  # pandas loads with the data a drift check is given, not with the monitor
    import pandas as pd

log = logging.getLogger(__name__)

#: The retrain reasons, all decided by :meth:`ModelMonitor.decide`, in the order a
#: decision lists them: why a retrain is wanted, then why a wanted one is skipped.
NO_MODEL = "no_model"
SCHEMA_CHANGE = "schema_change"
LOW_ACCURACY = "low_accuracy"
LOW_SCORE = "low_score"
DRIFT = "drift"
#: Skipped: the batch is smaller than ``training.min_rows`` / ``min_test_rows``.
TOO_FEW_ROWS = "too_few_rows"
#: Skipped: a challenger trained on this data with the same config was rejected before.
REJECTED_BEFORE = "rejected_before"


def low_score_reason(metric: str) -> str:
    """The retrain reason of a serving model below the limit (``low_accuracy`` for accuracy)."""
    return LOW_ACCURACY if metric == "accuracy" else LOW_SCORE


@dataclass(frozen=True)
class BatchProfile:
    """One batch as the retrain decision sees it: its statistics (from an engine, see
    :mod:`mlops.engines`) and the serving model's result on it (from the step).

    Attributes:
        rows: Rows of the batch (None: unknown; drift then counts).
        means: Feature means of the batch.
        frame: The batch's features (exact-values drift statistics), or None.
        sketches: Encoded KLL sketches of its numeric features (sketch drift statistics,
            the Dask engine), or None.
        categories: With ``sketches``: rows per category of its categorical features.
        missing: With ``sketches``: the missing-value rate of each feature.
        no_model: True when no model serves yet.
        metric: The gating metric; ``score`` is the serving model's value of it on the
            batch and ``threshold`` its limit (None: no limit).
        metrics: Every metric of the serving model on the batch.
        scored: Whether the serving model's score on the batch was measured (False
            without a model, with a schema change, or when every row was seen).
        scored_rows: Rows it was scored on (None: not scored); ``skipped_seen_rows``:
            rows left out as among its training rows.
        baseline_score: Its ``metric`` on its held-out split at training.
        max_degradation: ``monitoring.max_degradation`` (None: never degraded).
        schema_change: The batch's columns differ from the serving model's.
        serving_error: Why the serving model cannot be used ("" when it can).
        reference: The drift reference to compare with (None: none).
        drift_error: Why drift cannot be measured, when known.
        own_data: The batch is the serving model's own data version: never drift.
        too_few_rows: Why the batch is too small to train on ("" when it is not).
        rejected: Called only when a retrain is wanted: why a challenger of this batch
            was already rejected with the same config ("" when none was).
        estimated_score: An estimate of the serving model's ``metric`` without labels
            (None: not estimated); ``estimated_metrics`` every estimated metric.
    """

    rows: int | None
    means: Mapping[str, float]
    frame: pd.DataFrame | None = None
    sketches: Mapping[str, str] | None = None
    categories: Mapping[str, Mapping[str, int]] | None = None
    missing: Mapping[str, float] | None = None
    no_model: bool = False
    metric: str = "accuracy"
    score: float | None = None
    threshold: float | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    scored: bool = False
    scored_rows: int | None = None
    skipped_seen_rows: int = 0
    baseline_score: float | None = None
    max_degradation: float | None = None
    schema_change: bool = False
    serving_error: str = ""
    reference: Any = None
    drift_error: str | None = None
    own_data: bool = False
    too_few_rows: str = ""
    rejected: Callable[[], str] | None = None
    estimated_score: float | None = None
    estimated_metrics: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def all_seen(self) -> bool:
        """Every row was among the serving model's training rows: nothing was scored."""
        return self.scored_rows == 0 and self.skipped_seen_rows > 0


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why.

    Attributes:
        retrain: True when any reason asks for a retrain and none skips it.
        reasons: In order: ``no_model``; ``schema_change`` and ``serving_model_unusable``,
            or ``low_accuracy`` / ``low_score``, or ``degraded``; ``drift``; then
            ``too_few_rows`` or ``rejected_before`` when a wanted retrain is skipped.
        accuracy: The current model's accuracy on the new data (None without a model).
        drift: The drift score (0.0 without a reference).
        drift_counted: False when the batch was too small for drift to count.
        n_samples: Rows in the batch (None when unknown).
        drift_report: The per-feature report behind ``drift`` (None without a reference).
        drift_error: Why drift could not be measured (a serving model whose reference is
            missing or malformed, no feature shared with it), or None. ``drift`` is then
            0.0 but means "unknown", not "no drift".
    """

    retrain: bool
    reasons: tuple[str, ...]
    accuracy: float | None
    drift: float
    drift_counted: bool
    n_samples: int | None = None
    drift_report: DriftReport | None = None
    drift_error: str | None = None
    #: Why a wanted retrain is skipped (too few rows, rejected before), or "".
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d["drift_report"] = None if self.drift_report is None else self.drift_report.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainDecision:
        """Inverse of :meth:`to_dict`."""
        report = data.get("drift_report")
        return cls(**{**data, "reasons": tuple(data.get("reasons", ())),
                      "drift_report": None if report is None else DriftReport.from_dict(report)})


#: drift_report's default: the reference at ``<monitoring>/reference.json``.
_DEFAULT_REFERENCE: Any = object()


def reference_problem(doc: Any) -> str | None:
    """Why ``doc`` cannot serve as a drift reference, or None when it can."""
    if not isinstance(doc, Mapping):
        return f"the reference is a {type(doc).__name__}, not a mapping"
    means = doc.get("feature_means")
    dist = doc.get("distribution")
    # Categorical features have a distribution but no mean: one of the two must be there.
    if not isinstance(means, Mapping) or not (means or (isinstance(dist, Mapping) and dist)):
        return "the reference has no feature means"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in means.values()):
        return "the reference's feature means are not numbers"
    return None


class ModelMonitor:
    """Records metrics and decides when to retrain.

    Args:
        monitoring_dir: A path, URI or :class:`~mlops.storage.Store`.
        metrics_file: Names the folder of the metrics history (one object per record):
            the seed's ``metrics.json`` and ``metrics`` both name ``metrics/``, since
            its extension, if any, is dropped.
        drift_file: Name of the reference distribution object.
        accuracy_min_threshold: Retrain below this accuracy.
        drift_threshold: Retrain above this drift score.
        drift_min_samples: Drift counts only for batches of at least this many rows
            (every method).
        storage_options: fsspec options when ``monitoring_dir`` is a URI.
        drift: Method and per-method thresholds (default: ``mean_l1`` with
            ``drift_threshold``); its ``drift_threshold`` is replaced by the argument above.
        reference_sample_size: Rows per feature kept in the reference sample.

    Raises:
        ConfigError: Unknown drift method or a threshold out of range (naming the key).
    """

    def __init__(self, monitoring_dir: str | os.PathLike[str] | Store = "monitoring",
                 metrics_file: str = "metrics.json", drift_file: str = "reference.json",
                 accuracy_min_threshold: float = 0.7, drift_threshold: float = 0.1,
                 drift_min_samples: int = 100,
                 storage_options: dict[str, Any] | None = None, *,
                 drift: DriftSettings | None = None,
                 reference_sample_size: int = DEFAULT_SAMPLE_SIZE) -> None:
        self.store = as_store(monitoring_dir, storage_options)
        stem = os.path.splitext(os.path.basename(metrics_file))[0] or layout.METRICS
        self.metrics_prefix = stem
        self.drift_key = os.path.basename(drift_file) or layout.REFERENCE
        self.accuracy_min_threshold = float(accuracy_min_threshold)
        self.drift_threshold = float(drift_threshold)
        self.drift_min_samples = int(drift_min_samples)
        base = drift or DriftSettings()
        self.drift_settings = DriftSettings(**{**asdict(base),
                                               "drift_threshold": self.drift_threshold})
        self.reference_sample_size = int(reference_sample_size)

    # --- history -----------------------------------------------------------------------
    def record_metrics(self, accuracy: float | None, data_version: str | None = None,
                       model_version: str | None = None,
                       extra: Mapping[str, Any] | None = None, *, once: str | None = None,
                       at: str | None = None) -> dict[str, Any]:
        """Append one record to the history (one new object; never overwrites).

        Args:
            accuracy: The accuracy to record.
            data_version: The data it was measured on.
            model_version: The model it was measured for.
            extra: More facts kept in the record.
            once: A token naming this record (e.g. ``train-<run-id>``): with ``at``, the
                record's key is derived from them, so a resumed step that records it
                again finds it there and writes nothing.
            at: ISO time of the record (default: now).

        Returns:
            The record written (or, with ``once``, the one already there).
        """
        now = utc_now() if not at else datetime.fromisoformat(at)
        record = {
            "timestamp": iso(now),
            "accuracy": None if accuracy is None else float(accuracy),
            "data_version": data_version,
            "model_version": model_version,
            **dict(extra or {}),
        }
        suffix = hashlib.sha256(once.encode()).hexdigest()[:12] if once else \
            uuid.uuid4().hex[:12]
        key = f"{self.metrics_prefix}/{layout.timestamped_name(compact(now), suffix)}"
        try:
            self.store.write_json(key, record, exclusive=True)
        except FileExistsError:
            if once is None:
                raise
            existing = self.store.read_json(key)
            return existing if isinstance(existing, dict) else record
        return record

    def get_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records oldest first (the last ``limit`` ones when given)."""
        names = [n for n in self.store.keys(self.metrics_prefix) if n.endswith(".json")]
        if limit is not None:
            names = names[-limit:] if limit > 0 else []
        return [self._record(f"{self.metrics_prefix}/{n}") for n in names]

    def _record(self, key: str) -> dict[str, Any]:
        """One metrics record.

        Raises:
            CorruptObjectError: Not valid JSON, or not a JSON object (exit code 2, names
                the file; issue 19 item 11).
        """
        doc = self.store.read_json(key)
        if not isinstance(doc, dict):
            raise CorruptObjectError(f"metrics record {self.store.url(key)} is damaged (a "
                                     f"JSON {type(doc).__name__}, not an object)", key)
        return doc

    def get_latest_accuracy(self) -> float | None:
        """Accuracy of the newest record, or None when the history is empty (or the
        newest record has none: a regression or a failed run)."""
        latest = self.get_history(limit=1)
        value = latest[0].get("accuracy") if latest else None
        return None if value is None else float(value)

    # --- reference ---------------------------------------------------------------------
    def update_reference_distribution(self, feature_means: Mapping[str, float],
                                      reference_frame: pd.DataFrame | None = None,
                                      distribution: Mapping[str, Any] | None = None,
                                      **extra: Any) -> None:
        """Replace the reference distribution (after a model is promoted).

        Args:
            feature_means: Mean of each training feature (what ``mean_l1`` needs).
            reference_frame: The training features; when given, the document also
                keeps what the per-feature methods need (bin edges and shares, std, a
                bounded sample; see :func:`mlops.drift.build_reference`).
            distribution: A ready distribution summary instead of ``reference_frame``
                (the Dask engine's, built from sketches:
                :func:`mlops.engines.sketches.reference_from_sketches`).
            **extra: Facts kept with it (``data_version``, ``model_version``...).
        """
        doc = self.reference_document(feature_means, reference_frame, distribution, **extra)
        self.store.write_json(self.drift_key, doc, compact=True)

    def reference_document(self, feature_means: Mapping[str, float],
                           reference_frame: pd.DataFrame | None = None,
                           distribution: Mapping[str, Any] | None = None,
                           **extra: Any) -> dict[str, Any]:
        """The reference document of :meth:`update_reference_distribution`, not written
        (the pipeline keeps it with the model version it belongs to)."""
        doc: dict[str, Any] = {
            "updated_at": iso(utc_now()),
            "feature_means": {str(k): float(v) for k, v in feature_means.items()},
            **extra}
        if reference_frame is not None:
            doc["distribution"] = build_reference(reference_frame, self.drift_settings.psi_bins,
                                                  self.reference_sample_size)
        elif distribution is not None:
            doc["distribution"] = dict(distribution)
        return doc

    def get_reference(self) -> dict[str, Any] | None:
        """The reference document, or None when none was recorded."""
        try:
            doc = self.store.read_json(self.drift_key)
        except FileNotFoundError:
            return None
        return doc if isinstance(doc, dict) else None

    def compute_drift(self, feature_means: Mapping[str, float]) -> float:
        """Relative L1 distance of ``feature_means`` from the reference (see module doc)."""
        reference = self.get_reference()
        if reference is None:
            return 0.0
        return relative_l1(reference.get("feature_means", {}), feature_means)

    def drift_report(self, current: pd.DataFrame | Mapping[str, float],
                     means: Mapping[str, float] | None = None,
                     reference: Any = _DEFAULT_REFERENCE, *,
                     sketches: Mapping[str, str] | None = None,
                     rows: int | None = None,
                     categories: Mapping[str, Mapping[str, int]] | None = None,
                     missing: Mapping[str, float] | None = None) -> DriftReport | None:
        """The configured method's report of ``current`` against the reference.

        Args:
            current: The new batch's features (a DataFrame, for every method), or only
                its feature means (enough for ``mean_l1``; other methods then fall back
                to ``mean_l1`` and say so in the note, unless ``sketches`` are given).
            sketches: Encoded KLL sketches of the batch's features (the Dask engine's
                partitioned versions keep them): the per-feature methods are computed
                from them (:func:`mlops.engines.sketches.sketch_report`) without the data.
            rows: Rows of the batch (with ``sketches``).
            categories: Rows per category of the batch's categorical features (with
                ``sketches``: the Dask engine's merged counts).
            missing: Missing-value rate of each feature of the batch (with ``sketches``).
            means: The batch's feature means when the caller has them already (a pass
                over the data saved); computed from ``current`` otherwise.
            reference: The reference document to compare with (the serving model's);
                by default the one at ``<monitoring>/reference.json``.

        Returns:
            The report, or None when no reference was recorded.
        """
        import pandas as pd

        if reference is _DEFAULT_REFERENCE:
            reference = self.get_reference()
        if not isinstance(reference, Mapping):
            return None
        settings = self.drift_settings
        ref_means = reference.get("feature_means", {})
        if means is not None:
            means = {str(k): float(v) for k, v in means.items()}
        elif isinstance(current, pd.DataFrame):
            means = {str(c): float(v) for c, v in current.mean(numeric_only=True).items()}
        else:
            means = {str(k): float(v) for k, v in current.items()}
        if settings.method == MEAN_L1:
            return mean_l1_report(ref_means, means, settings)
        dist = reference.get("distribution")
        if dist is not None and sketches is not None:
            from mlops.engines.sketches import sketch_report

            return sketch_report(dist, sketches, int(rows or 0), settings, means=means,
                                 categories=categories, missing=missing)
        if dist is None or not isinstance(current, pd.DataFrame):
            why = ("the reference has no distribution summary (written before "
                   f"'{settings.method}' was configured)" if dist is None
                   else "only feature means were given")
            log.warning("drift: %s; using mean_l1", why)
            return mean_l1_report(ref_means, means, settings,
                                  note=f"{settings.method} unavailable: {why}; used mean_l1")
        return distribution_report(dist, current, settings)

    # --- decision ----------------------------------------------------------------------
    def decide(self, current: BatchProfile | float | None,
               current_feature_means: Mapping[str, float] | None = None,
               no_model_yet: bool = False, n_samples: int | None = None,
               current_frame: pd.DataFrame | None = None,
               reference: Any = _DEFAULT_REFERENCE,
               drift_error: str | None = None) -> RetrainDecision:
        """The retrain decision with its reasons: the one place that decides them.

        Args:
            current: The batch's :class:`BatchProfile` (what the pipeline passes), or, as
                in the seed API, the current model's accuracy on the new data (None when
                unknown), with the arguments below.
            current_feature_means: Feature means of the new data.
            no_model_yet: True when no model exists.
            n_samples: Rows in the new data; drift counts only when None or at least
                ``drift_min_samples``.
            current_frame: The new data's features, needed by every method but
                ``mean_l1``.
            reference: The reference to measure drift against (see :meth:`drift_report`);
                None when there is none.
            drift_error: Why there is no usable reference, when the caller knows.

        Returns:
            The decision; ``drift`` is the report's score (the relative L1 score for
            ``mean_l1``, the share of drifted features otherwise). With a profile, the
            gating metric below its threshold gives ``low_accuracy`` (accuracy) or
            ``low_score``; in the seed form, an accuracy below ``accuracy_min_threshold``
            gives ``low_accuracy``.
        """
        if isinstance(current, BatchProfile):
            profile = current
        else:
            profile = BatchProfile(
                rows=n_samples, means=dict(current_feature_means or {}), frame=current_frame,
                no_model=no_model_yet, score=current, threshold=self.accuracy_min_threshold,
                metrics={"accuracy": current}, scored=current is not None,
                reference=self.get_reference() if reference is _DEFAULT_REFERENCE
                else reference, drift_error=drift_error)
        return self._decide(profile)

    def _decide(self, p: BatchProfile) -> RetrainDecision:
        reasons = [NO_MODEL] if p.no_model else []
        serving = []  # what the serving model's state on the batch asks for
        if p.schema_change:
            serving.append(SCHEMA_CHANGE)
        if p.serving_error:
            serving.append(SERVING_MODEL_UNUSABLE)
        if p.scored and not serving and not p.all_seen:
            if not meets_threshold(p.score, p.threshold, p.metric):
                serving.append(low_score_reason(p.metric))
            elif not p.no_model and degraded(p.score, p.baseline_score, p.metric,
                                             p.max_degradation):
                serving.append(DEGRADED)  # within the limit, far below its own baseline
        reasons += serving
        report = self.drift_report(p.frame if p.frame is not None else p.means,
                                   means=p.means, reference=p.reference, sketches=p.sketches,
                                   rows=p.rows, categories=p.categories, missing=p.missing)
        drift_error = p.drift_error
        if report is not None and not report.features and drift_error is None:
            drift_error = "the data shares no feature with the reference"
        if drift_error is not None:
            log.warning("drift could not be measured: %s", drift_error)
            report = None
        drift = 0.0 if report is None else report.score
        # The serving model's own data version never drifts, whatever the method: its
        # reference is the training split, so a statistic of the whole version against
        # it measures the split, not a change of the data.
        counted = (p.rows is None or p.rows >= self.drift_min_samples) and not p.own_data
        if counted and report is not None and report.dataset_drifted:
            reasons.append(DRIFT)
        retrain = bool(reasons)
        note = ""
        if retrain and p.too_few_rows:  # scored and drift-checked, never trained on
            retrain, note = False, f"not training: {p.too_few_rows}"
            reasons.append(TOO_FEW_ROWS)
        if retrain and not p.serving_error and p.rejected is not None:
            # A broken serving model is replaced regardless.
            why = p.rejected()
            if why:
                retrain, note = False, why
                reasons.append(REJECTED_BEFORE)
        accuracy = p.score if p.metric == "accuracy" else p.metrics.get("accuracy")
        return RetrainDecision(retrain=retrain, reasons=tuple(reasons),
                               accuracy=accuracy, drift=drift, drift_counted=counted,
                               n_samples=p.rows, drift_report=report,
                               drift_error=drift_error, note=note)

    def should_retrain(self, current_accuracy: float | None,
                       current_feature_means: Mapping[str, float], no_model_yet: bool,
                       n_samples: int | None = None) -> bool:
        """True when there is no model, accuracy is low, or (counted) drift is high."""
        return self.decide(current_accuracy, current_feature_means, no_model_yet,
                           n_samples).retrain


__all__ = ["DRIFT", "LOW_ACCURACY", "LOW_SCORE", "NO_MODEL", "REJECTED_BEFORE",
           "SCHEMA_CHANGE", "TOO_FEW_ROWS", "BatchProfile", "ModelMonitor", "RetrainDecision",
           "low_score_reason", "relative_l1"]
