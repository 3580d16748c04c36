"""``mlops.drift_report``: the drift report of two frames, for notebooks.

A thin function over what the steps use: the reference is built as the train step
builds it (:meth:`mlops.monitor.ModelMonitor.reference_document`) and the report is made
as monitor-check makes it (:meth:`mlops.monitor.ModelMonitor.drift_report`), with the
``monitoring:`` defaults of :class:`mlops.config.Config` for every setting not given
here. So the report equals the one the pipeline records for the same frames and settings.

Dask frames go through the Dask engine's path: per-partition moments, KLL sketches and
category counts (:func:`mlops.engines.dask.summarize`), merged, without collecting the
data; on the default distributed client when there is one, else on Dask's local
threaded scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.config import Config
from mlops.drift import AUTO, AUTO_KS_MAX_ROWS, KS, MEAN_L1, METHODS, PSI, WASSERSTEIN
from mlops.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from mlops.drift import DriftReport
    from mlops.monitor import ModelMonitor

#: The ``monitoring.*`` key that ``threshold`` sets, per method.
THRESHOLD_KEYS = {MEAN_L1: "drift_threshold", PSI: "psi_threshold", KS: "ks_p_value",
                  WASSERSTEIN: "wasserstein_threshold"}


def drift_report(reference: Any, current: Any, method: str = AUTO,
                 threshold: float | None = None) -> DriftReport:
    """The drift of ``current`` against ``reference``, as monitor-check reports it.

    Args:
        reference: The features the model was trained on (a pandas or Dask DataFrame;
            leave the target out).
        current: The new batch's features (the same kind of frame).
        method: ``auto`` (Evidently's rule: ``ks`` up to 1,000 reference rows, else
            ``wasserstein``), ``ks``, ``wasserstein``, ``psi`` or ``mean_l1``.
        threshold: The per-feature threshold of the method (``ks``: the p-value below
            which a feature drifts; ``wasserstein``: distance / reference std;
            ``psi``: PSI; ``mean_l1``: the relative change of the means); None: the
            ``monitoring:`` default. The data set drifts when at least
            ``monitoring.drift_share`` of the features drifted (default: any one).

    Returns:
        The :class:`~mlops.drift.DriftReport` (``drifted_features``, ``features`` with
        each statistic, ``dataset_drifted``).

    Raises:
        ValueError: An unknown ``method``, a ``threshold`` out of its range, or frames
            that are neither pandas nor Dask DataFrames (the message names the argument).
    """
    import pandas as pd

    if method not in METHODS:
        raise ValueError(f"drift_report: method={method!r} is not a drift method (use one "
                         f"of {', '.join(METHODS)})")
    dask = [_is_dask(f) for f in (reference, current)]
    for name, frame, is_dask in (("reference", reference, dask[0]),
                                 ("current", current, dask[1])):
        if not (is_dask or isinstance(frame, pd.DataFrame)):
            raise ValueError(f"drift_report: {name} is a {type(frame).__name__}, not a "
                             "pandas or Dask DataFrame")
    if dask[0] != dask[1]:
        raise ValueError("drift_report: reference and current must both be pandas or both "
                         "Dask DataFrames")
    monitor = _monitor(method, threshold, None if dask[0] else len(reference))
    if dask[0]:
        return _dask_report(monitor, reference, current)
    from mlops.data import feature_means

    doc = monitor.reference_document(feature_means(reference, ""), reference_frame=reference)
    report = monitor.drift_report(current, means=feature_means(current, ""), reference=doc)
    assert report is not None  # a reference document was given
    return report


def _is_dask(frame: Any) -> bool:
    return type(frame).__module__.startswith("dask") and hasattr(frame, "to_delayed")


def _monitor(method: str, threshold: float | None, reference_rows: int | None
             ) -> ModelMonitor:
    """The monitor the steps would build from a config with these drift settings."""
    from mlops.store.filesystem import open_store
    from mlops.store.workspace import monitor_for

    section: dict[str, Any] = {"drift_method": method}
    if threshold is not None:
        resolved = method
        if method == AUTO:
            resolved = KS if reference_rows is not None and \
                reference_rows <= AUTO_KS_MAX_ROWS else WASSERSTEIN
        section[THRESHOLD_KEYS[resolved]] = threshold
    try:
        config = Config.from_dict({"monitoring": section})
        # Nothing is written: the monitor only builds the reference and the report.
        return monitor_for(config, open_store("memory://mlops-drift-report"))
    except (ConfigError, TypeError, ValueError) as err:
        raise ValueError(f"drift_report: threshold={threshold!r} is out of range for "
                         f"method {method!r} ({err})") from err


def _dask_report(monitor: ModelMonitor, reference: Any, current: Any) -> DriftReport:
    from mlops.data import feature_kinds
    from mlops.engines import dask as dask_engine
    from mlops.engines.sketches import categorical_reference, reference_from_sketches

    dask_engine.require_dask()
    head: pd.DataFrame = reference.get_partition(0).compute()
    kinds = feature_kinds(head, "")
    features = [str(c) for c in reference.columns]
    k = Config().dask.sketch_k
    settings = Config().monitoring
    with _client() as client:
        ref = dask_engine.summarize(client, reference, features, k, kinds)
        cur = dask_engine.summarize(client, current[[c for c in features
                                                     if c in current.columns]],
                                    [c for c in features if c in current.columns], k, kinds)
    dist = reference_from_sketches(ref.sketches, ref.moments, monitor.drift_settings.psi_bins,
                                   settings.reference_sample_size)
    for col, counts in ref.categories.items():
        dist["features"][col] = categorical_reference(counts, ref.category_missing.get(col, 0))
    dist["features"] = {c: dist["features"][c] for c in features if c in dist["features"]}
    dist["rows"] = ref.rows
    doc = monitor.reference_document({c: m.mean for c, m in ref.moments.items() if m.count},
                                     distribution=dist)
    means = {c: m.mean for c, m in cur.moments.items() if m.count}
    missing = {c: m.missing / cur.rows for c, m in cur.moments.items()} if cur.rows else {}
    missing.update({c: n / cur.rows for c, n in cur.category_missing.items()}
                   if cur.rows else {})
    report = monitor.drift_report(means, means=means, reference=doc, sketches=cur.sketches,
                                  rows=cur.rows, categories=cur.categories, missing=missing)
    assert report is not None
    return report


class _client:
    """The default distributed client when there is one; else a stand-in with the three
    calls :func:`mlops.engines.dask.summarize` makes, running the partition tasks on
    Dask's local threaded scheduler (no cluster to start for a notebook call)."""

    def __enter__(self) -> Any:
        try:
            from distributed import default_client

            return default_client()
        except (ImportError, ValueError):
            return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def scatter(obj: Any, broadcast: bool = False) -> Any:
        return obj

    @staticmethod
    def compute(tasks: list[Any]) -> list[Any]:
        return tasks

    @staticmethod
    def gather(tasks: list[Any]) -> list[Any]:
        import dask

        return list(dask.compute(*tasks, scheduler="threads"))


__all__ = ["THRESHOLD_KEYS", "drift_report"]
