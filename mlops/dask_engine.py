"""The Dask engine (``data.engine: dask``): where the cluster comes from, and the steps on it.

Where the cluster comes from (:func:`connect`):

* ``dask.address`` set: an existing scheduler (the dask-kubernetes operator's, the
  Dask Helm chart's, any other). If it cannot be reached within
  ``dask.connect_timeout`` seconds the step fails with :class:`ClusterError`
  (exit 1, retryable) naming the address.
* empty: a ``distributed.LocalCluster`` inside the step's own process/pod with
  ``dask.n_workers`` workers of ``dask.threads_per_worker`` threads and
  ``dask.memory_limit`` each (worker processes unless ``dask.processes`` is false).
* with ``dask.address`` empty, a ``distributed.Client`` already current in this
  process (a test's, a notebook's) is used as it is.

A worker that dies while running a task: the scheduler runs the task again on
another worker (up to ``distributed.scheduler.allowed-failures``, 3 by default);
after that the step fails with :class:`ClusterError` (exit 1) naming the task and
the worker. Nothing is committed: a version's manifest is written only after every
partition is stored.

The steps (:func:`ingest`, :func:`monitor_check`, :func:`train`) keep the pandas
steps' contracts and results; no step holds more than a partition of the data in its
own process (scikit-learn model types excepted: they train on a bounded sample,
``dask.max_train_rows``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.config import Config, DaskConfig
from mlops.errors import (
    BadInputError,
    ClusterError,
    DataValidationError,
    EngineMissingError,
    MLOpsError,
)
from mlops.partitions import is_partitioned, load_partitioned, register_partitioned
from mlops.sketches import (
    Moments,
    merge_moments,
    merge_sketches,
    numeric_columns,
    reference_from_sketches,
    sketch_columns,
)
from mlops.storage import list_table_source

if TYPE_CHECKING:
    from mlops.pipeline import IngestResult, MonitorCheckResult, TrainResult, Workspace

log = logging.getLogger(__name__)

DASK = "dask"
LIGHTGBM = "lightgbm"


def require_dask() -> None:
    """Fail early, with the fix, when the ``mlops[dask]`` extra is not installed.

    Raises:
        EngineMissingError: dask, distributed or datasketches is missing (exit 2).
    """
    try:
        import dask.dataframe  # noqa: F401
        import datasketches  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:
        raise EngineMissingError(f"config key 'data.engine': dask needs the mlops[dask] "
                                 f"extra ({err.name} is not installed)") from err


def _memory_limit(value: str) -> str | int:
    text = value.strip()
    return 0 if text == "0" else text


@contextlib.contextmanager
def connect(settings: DaskConfig) -> Iterator[Any]:
    """A ``distributed.Client`` for a step (see the module docstring for which one).

    Raises:
        ClusterError: ``dask.address`` cannot be reached in time, or a worker died for
            good while the step used the cluster (exit 1).
    """
    require_dask()
    from distributed import Client, LocalCluster

    current = None if settings.address else _current_client()
    if current is not None:
        with translate_cluster_errors("the current cluster"):
            yield current
        return
    cluster = None
    if settings.address:
        try:
            client = Client(settings.address, timeout=settings.connect_timeout,
                            set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"dask scheduler {settings.address} (dask.address) cannot be "
                               f"reached within {settings.connect_timeout:g} s: "
                               f"{str(err).splitlines()[0][:200]}") from err
        where = settings.address
    else:
        cluster = LocalCluster(n_workers=settings.n_workers,
                               threads_per_worker=settings.threads_per_worker,
                               memory_limit=_memory_limit(settings.memory_limit),
                               processes=settings.processes, dashboard_address=None)
        client = Client(cluster, set_as_default=False)
        where = "the local cluster"
    try:
        with translate_cluster_errors(where):
            yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _current_client() -> Any:
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def translate_cluster_errors(where: str) -> Iterator[None]:
    """Turn a lost worker or scheduler into :class:`ClusterError` naming it.

    Raises:
        ClusterError: ``KilledWorker`` (the task and its last worker are named) or a
            lost connection to the scheduler.
    """
    from distributed.scheduler import KilledWorker

    try:
        yield
    except KilledWorker as err:
        worker = getattr(getattr(err, "last_worker", None), "address", None) or "unknown"
        task = getattr(err, "task", "?")
        raise ClusterError(f"dask worker {worker} died while running task {task} on {where}, "
                           "after the scheduler's retries; nothing was committed") from err
    except (OSError, TimeoutError) as err:
        if isinstance(err, FileNotFoundError | PermissionError):
            raise
        raise ClusterError(f"lost the dask cluster at {where}: "
                           f"{str(err).splitlines()[0][:200]}") from err


def per_partition(client: Any, frame: Any, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``fn(partition, *args)`` for every partition of a Dask frame, run on the workers."""
    from dask import delayed

    shipped = [client.scatter(a, broadcast=True) if _is_large(a) else a for a in args]
    tasks = [delayed(fn)(part, *shipped) for part in frame.to_delayed()]
    return list(client.gather(client.compute(tasks)))


def _is_large(obj: Any) -> bool:
    # Models go to the workers once (scatter), not inside every task of the graph.
    return not isinstance(obj, str | int | float | bool | list | tuple | dict | type(None))


# --- per-partition work (runs on workers) ----------------------------------------------------
def _correct(part: pd.DataFrame, model: Any, features: list[str], target: str
             ) -> tuple[int, int]:
    if len(part) == 0:
        return 0, 0
    predicted = np.asarray(model.predict(part[features]))
    return int(np.count_nonzero(predicted == part[target].to_numpy())), len(part)


def _summary(part: pd.DataFrame, features: list[str], k: int) -> dict[str, Any]:
    x = part[features]
    return {"moments": {c: Moments.of(x[c].to_numpy(dtype=np.float64)).to_dict()
                        for c in numeric_columns(x)},
            "sketches": sketch_columns(x, numeric_columns(x), k)}


def accuracy(client: Any, frame: Any, model: Any, features: list[str], target: str
             ) -> float | None:
    """Accuracy of ``model`` over a Dask frame, scored partition by partition."""
    counts = per_partition(client, frame, _correct, model, features, target)
    right = sum(c[0] for c in counts)
    total = sum(c[1] for c in counts)
    return right / total if total else None


def summarize(client: Any, frame: Any, features: list[str], k: int
              ) -> tuple[dict[str, Moments], dict[str, str]]:
    """Merged moments and sketches of the features of a Dask frame (one pass)."""
    parts = per_partition(client, frame, _summary, features, k)
    moments = merge_moments({c: Moments.from_dict(m) for c, m in p["moments"].items()}
                            for p in parts)
    return moments, merge_sketches((p["sketches"] for p in parts), k)


# --- steps -----------------------------------------------------------------------------------
def _features(manifest: Mapping[str, Any], target: str) -> list[str]:
    return [c["name"] for c in manifest["columns"] if c["name"] != target]


def _partitioned(ws: Workspace, version: str) -> dict[str, Any]:
    manifest = ws.versioner.get_metadata(version)
    if not is_partitioned(manifest):
        raise BadInputError(f"data version '{version}' was made by the pandas engine; "
                            "data.engine: dask needs a partitioned version (ingest again)")
    return manifest


def ingest(config: Config, run_id: str, ws: Workspace) -> IngestResult:
    """The ingest step on Dask: register the source's files as a partitioned version.

    Raises:
        ConfigError: ``data.source`` is ``synthetic`` (the Dask engine reads files).
        DataValidationError: Nothing matches the source, or a file is invalid.
        ClusterError: The cluster cannot be reached or lost a worker (exit 1).
    """
    from mlops.pipeline import INGEST, IngestResult

    d = config.data
    if d.source == "synthetic":
        raise BadInputError("config key 'data.source': data.engine: dask reads CSV/Parquet "
                            "files (a directory, glob or prefix), not 'synthetic'")
    require_dask()
    try:
        source, files = list_table_source(d.source, config.storage.options)
    except FileNotFoundError as err:
        raise DataValidationError(f"data source {d.source} not found: no CSV or Parquet "
                                  "file matches") from err
    with connect(config.dask) as client:
        outcome = register_partitioned(client, source, files, ws.versioner.store,
                                       ws.versioner.index, d.target_column, d.hash_algorithm,
                                       config.dask.sketch_k)
    means = {c: float(m["sum"]) / int(m["count"])
             for c, m in outcome.manifest["moments"].items()
             if c != d.target_column and int(m["count"])}
    result = IngestResult(run_id=run_id, data_version=outcome.version_id, rows=outcome.rows,
                          source=d.source, feature_means=means)
    ws.write_result(INGEST, result)
    log.info("ingest (dask): %d rows in %d partitions from %s (%d read, %d from the "
             "fingerprint cache) -> data version %s", outcome.rows, outcome.partitions,
             d.source, outcome.hashed, outcome.partitions - outcome.hashed, outcome.version_id)
    return result


def monitor_check(config: Config, run_id: str, ws: Workspace) -> MonitorCheckResult:
    """The monitor-check step on Dask: drift from the version's stored statistics.

    mean_l1 is computed from the exact merged moments, psi/ks/wasserstein from the
    merged sketches (no data read); only scoring the serving model reads the
    partitions, one task each.
    """
    from mlops.pipeline import INGEST, MONITOR_CHECK, IngestResult, MonitorCheckResult

    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, MONITOR_CHECK))
    manifest = _partitioned(ws, ingested.data_version)
    target = config.data.target_column
    features = _features(manifest, target)
    moments = manifest["moments"]
    means = {c: float(moments[c]["sum"]) / int(moments[c]["count"]) for c in features
             if c in moments and int(moments[c]["count"])}
    rows = int(manifest["rows"])
    current = ws.current_model_version()
    acc = None
    if current is not None:
        model, _ = ws.registry.load(current)
        frame = load_partitioned(ws.versioner.store, manifest)
        with connect(config.dask) as client:
            acc = accuracy(client, frame, model, features, target)
    sketches = {c: s for c, s in manifest.get("sketches", {}).items() if c in features}
    decision = ws.monitor.decide(acc, means, no_model_yet=current is None, n_samples=rows,
                                 sketches=sketches)
    report = decision.drift_report
    result = MonitorCheckResult(
        run_id=run_id, data_version=ingested.data_version, model_version=current,
        retrain=decision.retrain, reasons=list(decision.reasons), accuracy=acc,
        drift=decision.drift, drift_counted=decision.drift_counted, n_samples=rows,
        drift_report=None if report is None else report.to_dict())
    if not decision.retrain and acc is not None:
        ws.monitor.record_metrics(acc, ingested.data_version, current,
                                  {"run_id": run_id, "retrained": False, "drift": decision.drift,
                                   "reasons": []})
    ws.write_result(MONITOR_CHECK, result)
    log.info("monitor-check (dask): model %s accuracy %s drift %.4f -> retrain=%s %s", current,
             "n/a" if acc is None else f"{acc:.4f}", decision.drift, decision.retrain,
             list(decision.reasons))
    return result


def _fit(client: Any, config: Config, train: Any, features: list[str], target: str,
         train_rows: int) -> tuple[Any, dict[str, Any]]:
    from mlops.training import train_model

    t = config.training
    if t.model_type == LIGHTGBM:
        from lightgbm import DaskLGBMClassifier

        params = {"random_state": t.random_state, "verbose": -1, **t.params}
        try:
            est = DaskLGBMClassifier(client=client, **params)
            with warnings.catch_warnings():
                # The estimator always passes its own n_jobs, then warns that the Dask
                # training replaces it with each worker's threads: nothing to act on.
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                est.fit(train[features], train[target])
        except (TypeError, ValueError) as err:
            raise BadInputError(f"training failed with config key 'training.params': "
                                f"{err}") from err
        return est.to_local(), {"method": "all rows (LightGBM Dask estimator)",
                                "rows": train_rows, "of_rows": train_rows}
    limit = config.dask.max_train_rows
    frac = min(1.0, limit / train_rows) if train_rows else 1.0
    sample = train if frac >= 1.0 else train.sample(frac=frac, random_state=t.random_state)
    local = client.compute(sample).result().iloc[:limit]
    model = train_model(local[features], local[target], config)
    return model, {"method": f"uniform random sample of at most dask.max_train_rows={limit} "
                             "rows, trained in the step's process",
                   "rows": len(local), "of_rows": train_rows, "fraction": frac,
                   "random_state": t.random_state}


def train(config: Config, run_id: str, ws: Workspace) -> TrainResult:
    """The train step on Dask (same promotion rules and result as the pandas step).

    lightgbm trains on every row through LightGBM's Dask estimator and is saved as a
    plain local LightGBM model; the scikit-learn types train on a bounded uniform
    sample (``dask.max_train_rows``). ``metadata.training_sample`` records which.
    The drift reference is built from the training split's sketches.
    """
    from mlops.pipeline import (
        INGEST,
        MONITOR_CHECK,
        TRAIN,
        IngestResult,
        TrainResult,
        promotion_decision,
    )
    from mlops.registry import PRODUCTION

    ingested = IngestResult.from_dict(ws.require_result(run_id, INGEST, TRAIN))
    checked = ws.read_result(run_id, MONITOR_CHECK) or {}
    manifest = _partitioned(ws, ingested.data_version)
    target = config.data.target_column
    features = _features(manifest, target)
    frame = load_partitioned(ws.versioner.store, manifest)
    test_size = config.data.test_size
    train_part, test_part = frame.random_split([1 - test_size, test_size],
                                               random_state=config.training.random_state)
    fresh = not ws.registry.exists(run_id)
    k = config.dask.sketch_k
    with connect(config.dask) as client:
        moments, sketches = summarize(client, train_part, features, k)
        train_rows = max((m.count for m in moments.values()), default=0)
        if fresh:
            champion = ws.current_model_version()
            model, sample = _fit(client, config, train_part, features, target, train_rows)
            acc = accuracy(client, test_part, model, features, target)
            if acc is None:
                raise DataValidationError(f"data version '{ingested.data_version}' leaves no "
                                          f"rows for evaluation at data.test_size {test_size}")
            test_rows = manifest["rows"] - train_rows
            champion_acc = _champion_accuracy(ws, client, champion, test_part, features,
                                              target)
            promote, why = promotion_decision(acc, champion, champion_acc,
                                              config.promotion.tolerance)
            ws.registry.save(model, run_id, {
                "accuracy": acc, "data_version": ingested.data_version,
                "model_type": config.training.model_type, "params": config.training.params,
                "train_rows": train_rows, "test_rows": test_rows, "features": features,
                "run_id": run_id, "champion_version": champion,
                "champion_accuracy": champion_acc, "promote": promote,
                "promotion_reason": why, "engine": DASK, "training_sample": sample,
            })
    meta = ws.registry.get_metadata(run_id).get("metadata", {})
    acc = float(meta["accuracy"])
    promote = bool(meta.get("promote", True))
    champion = meta.get("champion_version")
    champion_acc = meta.get("champion_accuracy")
    if promote and not any(e.get("version") == run_id
                           for e in ws.registry.alias_history(PRODUCTION)):
        ws.registry.set_alias(run_id, PRODUCTION, reason=str(meta.get("promotion_reason", "")),
                              by=f"pipeline run {run_id}")
        dist = reference_from_sketches(sketches, moments, ws.monitor.drift_settings.psi_bins,
                                       ws.monitor.reference_sample_size)
        ws.monitor.update_reference_distribution(
            {c: m.mean for c, m in moments.items()}, distribution=dist,
            data_version=ingested.data_version, model_version=run_id)
    if fresh:
        ws.monitor.record_metrics(acc, ingested.data_version, run_id, {
            "run_id": run_id, "retrained": True, "drift": checked.get("drift"),
            "reasons": checked.get("reasons", []), "promoted": promote,
            "champion_version": champion, "champion_accuracy": champion_acc})
    result = TrainResult(run_id=run_id, data_version=ingested.data_version,
                         model_version=run_id, accuracy=acc,
                         train_rows=int(meta["train_rows"]), test_rows=int(meta["test_rows"]),
                         promoted=promote, champion_version=champion,
                         champion_accuracy=champion_acc)
    ws.write_result(TRAIN, result)
    log.info("train (dask): %s on %d rows -> model %s, held-out accuracy %.4f -> %s",
             config.training.model_type, result.train_rows, run_id, acc,
             "promoted" if promote else "not promoted")
    return result


def _champion_accuracy(ws: Workspace, client: Any, champion: str | None, frame: Any,
                       features: Sequence[str], target: str) -> float | None:
    if champion is None:
        return None
    try:
        model, _ = ws.registry.load(champion)
        return accuracy(client, frame, model, list(features), target)
    except (MLOpsError, ValueError, KeyError) as err:
        log.warning("train: champion %s cannot be evaluated (%s); the challenger wins",
                    champion, err)
        return None


__all__ = ["DASK", "LIGHTGBM", "accuracy", "connect", "ingest", "monitor_check",
           "per_partition", "require_dask", "summarize", "train",
           "translate_cluster_errors"]
