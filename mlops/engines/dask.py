"""The Dask engine (``data.engine: dask``): where the cluster comes from, and the steps on it.

Where the cluster comes from (:func:`connect`):

* ``dask.address`` set: an existing scheduler (the dask-kubernetes operator's, the
  Dask Helm chart's, any other). If it cannot be reached within
  ``dask.connect_timeout`` seconds the step fails with :class:`ClusterError`
  (exit 1, retryable) naming the address.
* empty: a ``distributed.LocalCluster`` inside the step's own process/pod with
  ``dask.n_workers`` workers of ``dask.threads_per_worker`` threads and
  ``dask.memory_limit`` each (worker processes unless ``dask.processes`` is false).
  ``mlops run`` starts one for all its steps (:func:`mlops.runner.run_pipeline`).
* with ``dask.address`` empty, a ``distributed.Client`` already current in this
  process (a test's, a notebook's) is used as it is.
* ``dask.cluster: ephemeral``: under ``mlops controller`` the step pods get the address of
  the run's own scheduler in ``$MLOPS_DASK_ADDRESS`` (see :class:`mlops.kube.dask.
  EphemeralCluster`); the step waits up to ``dask.connect_timeout`` seconds for it and for
  a first worker. Without that variable (``mlops run``, a step run by hand) it falls back
  to a local cluster, with a warning.

A worker that dies while running a task: the scheduler runs the task again on
another worker (up to ``distributed.scheduler.allowed-failures``, 3 by default);
after that the step fails with :class:`ClusterError` (exit 1) naming the task and
the worker. Nothing is committed: a version's manifest is written only after every
partition is stored.

The steps of :mod:`mlops.pipeline` call :class:`DaskEngine` (the
:class:`mlops.engines.base.Engine` interface) when ``data.engine`` is ``dask`` and keep
their contracts and results: :func:`ingest_source`, :class:`DaskBatch` (monitor-check),
:class:`DaskTrainer` and the score step (one task per file, :func:`dask_map`).
Metrics are computed from mergeable per-partition parts (:func:`score`): the same
values as the pandas engine's :func:`mlops.training.compute_metrics` on the same rows.
No step holds more than a partition of the data in its own process (scikit-learn model
types excepted: they train on a bounded sample, ``dask.max_train_rows``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.config import (
    ENV_DASK_ADDRESS,
    ENV_MEMORY_LIMIT,
    LIGHTGBM_PORT,
    RUN_CLUSTERS,
    Config,
    DaskConfig,
)
from mlops.data import (
    CATEGORICAL,
    NUMERIC,
    REGRESSION,
    feature_kinds,
    read_options,
    validate,
    without_ids,
)
from mlops.engines.base import Ingested, IngestedVersion, check_task_settings
from mlops.engines.sketches import (
    Moments,
    categorical_reference,
    category_summary,
    merge_categories,
    merge_counts,
    merge_moments,
    merge_sketches,
    numeric_columns,
    reference_from_sketches,
    sketch_columns,
)
from mlops.errors import (
    BadInputError,
    ClusterError,
    DataValidationError,
    EngineMissingError,
    IntegrityError,
)
from mlops.monitor import BatchProfile
from mlops.records import DataManifest
from mlops.schema import MAX_CATEGORIES, ColumnSchema, InputSchema
from mlops.scoring import MapFiles, Scored, score_data_version, score_source
from mlops.store.filesystem import Store
from mlops.store.partitions import load_partitioned, meta_frame, register_partitioned
from mlops.store.sources import list_table_source

if TYPE_CHECKING:
    from mlops.store.workspace import Workspace

log = logging.getLogger(__name__)

DASK = "dask"
LIGHTGBM = "lightgbm"
#: The task of a version ingested before the Dask engine decided tasks (all were
#: classifications); newer versions carry the task ingest decided (``data.task``).
TASK = "classification"


#: LocalCluster options: no dashboard, and the scheduler's HTTP server (health and
#: metrics routes, which it starts even without a dashboard) on a free loopback port,
#: not 8787 (taken by any other cluster on the host: a warning, so a failure in tests).
NO_DASHBOARD: dict[str, Any] = {"dashboard_address": None,
                                "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}


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


#: Where a container's cgroup files are mounted (v2: ``memory.max``; v1:
#: ``memory/memory.limit_in_bytes``).
CGROUP_ROOT = "/sys/fs/cgroup"
#: cgroup v1 reports "no limit" as a page-rounded 2**63 - 1: anything this large is none.
_UNLIMITED = 2**60


def container_memory_limit(root: str | None = None, env: Mapping[str, str] | None = None
                           ) -> int | None:
    """The memory limit of the container this process runs in, in bytes, or None.

    cgroup v2 ``memory.max``, else cgroup v1 ``memory.limit_in_bytes``, else the pod's
    configured limit handed over in ``$MLOPS_MEMORY_LIMIT`` (the downward API's
    ``limits.memory``, set by the controller on Dask pods).
    """
    base = Path(CGROUP_ROOT if root is None else root)
    for path in (base / "memory.max", base / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and 0 < int(text) < _UNLIMITED:
            return int(text)
        if text == "max" or text.isdigit():
            break  # a cgroup without a limit: the pod's limit (if any) decides
    value = (os.environ if env is None else env).get(ENV_MEMORY_LIMIT, "").strip()
    if value.isdigit() and 0 < int(value) < _UNLIMITED:
        return int(value)
    return None


def worker_memory_limit(setting: str, processes: int, *, root: str | None = None,
                        env: Mapping[str, str] | None = None) -> int:
    """``dask.memory_limit`` as the bytes one worker gets (0: no limit).

    ``auto`` is the container's memory limit (:func:`container_memory_limit`, else the
    machine's memory) divided by the ``processes`` workers sharing it. Dask's own ``auto``
    is never passed on: distributed computes it as memory x threads / CPU count, and
    without a CPU limit the CPU count is the node's cores, so a 2 GiB worker on a 16-core
    node would get 128 MiB.
    """
    from dask.utils import parse_bytes
    from distributed.system import MEMORY_LIMIT

    text = setting.strip()
    if text == "0":
        return 0
    if text.lower() != "auto":
        return int(parse_bytes(text))
    total = container_memory_limit(root, env) or int(MEMORY_LIMIT)
    return max(1, total // max(1, processes))


@contextlib.contextmanager
def connect(settings: DaskConfig) -> Iterator[Any]:
    """A ``distributed.Client`` for a step (see the module docstring for which one).

    Raises:
        ClusterError: ``dask.address`` cannot be reached in time, or a worker died for
            good while the step used the cluster (exit 1).
    """
    require_dask()
    from distributed import Client, LocalCluster

    ephemeral = settings.cluster in RUN_CLUSTERS
    if ephemeral and not settings.address:
        log.warning("dask.cluster is %s but no cluster was handed over (%s is unset: "
                    "not under mlops controller); using a local cluster in this process",
                    settings.cluster, ENV_DASK_ADDRESS)
    current = None if settings.address else _current_client()
    if current is not None:
        with translate_cluster_errors("the current cluster"):
            yield current
        return
    cluster = None
    if settings.address:
        key = f"${ENV_DASK_ADDRESS}, the run's {settings.cluster} cluster" if ephemeral \
            else "dask.address"
        try:
            client = Client(settings.address, timeout=settings.connect_timeout,
                            set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"dask scheduler {settings.address} ({key}) cannot be "
                               f"reached within {settings.connect_timeout:g} s: "
                               f"{str(err).splitlines()[0][:200]}") from err
        if ephemeral:
            _wait_for_workers(client, settings, key)
        where = settings.address
    else:
        cluster = LocalCluster(n_workers=settings.n_workers,
                               threads_per_worker=settings.threads_per_worker,
                               memory_limit=worker_memory_limit(settings.memory_limit,
                                                                settings.n_workers),
                               processes=settings.processes, **NO_DASHBOARD)
        client = Client(cluster, set_as_default=False)
        where = "the local cluster"
    try:
        # Current for this step's code: libraries that find the client themselves
        # (LightGBM's Dask training calls distributed.wait) see this one, which is not
        # the process-wide default (set_as_default=False).
        with translate_cluster_errors(where), client.as_current():
            yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _wait_for_workers(client: Any, settings: DaskConfig, key: str) -> None:
    """The run's own workers start with the scheduler (new nodes, image pulls): wait, at
    most ``dask.workers_timeout`` seconds, for ``dask.min_workers`` of them (0: all
    ``dask.n_workers``)."""
    wanted = min(settings.min_workers or settings.n_workers, settings.n_workers)
    try:
        client.wait_for_workers(wanted, timeout=settings.workers_timeout)
    except (OSError, TimeoutError) as err:
        joined = len(client.scheduler_info().get("workers") or {})
        client.close()
        raise ClusterError(f"{joined} of the {wanted} dask workers asked for (dask.min_workers,"
                           f" else dask.n_workers) joined the scheduler {settings.address} "
                           f"({key}) within {settings.workers_timeout:g} s "
                           "(dask.workers_timeout)") from err
    workers = client.scheduler_info().get("workers") or {}
    log.info("dask: connected to %s (%s) with %d worker(s): %s", settings.address, key,
             len(workers), ", ".join(sorted(str(w.get("name", a)) for a, w in workers.items())))


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
def _metric_parts(part: pd.DataFrame, model: Any, features: list[str], target: str,
                  task: str, known: Any = None, calibration: Any = None) -> dict[str, Any]:
    from mlops.training import metric_parts

    skipped = 0
    if known is not None:  # score only the rows the model was not trained on
        from mlops.store.hashing import row_hashes, seen_rows

        seen = seen_rows(row_hashes(part, [*features, target]), known)
        skipped = int(seen.sum())
        if skipped:
            part = part[~seen]
    if calibration is None or not len(part):
        return {**metric_parts(model, part[features], part[target], task),
                "skipped": skipped}
    # CBPE's sums (mlops.performance.cbpe) too, no labels used: the rows are transformed once.
    from mlops.performance.cbpe import estimate_parts, model_proba, prepared

    final, xt = prepared(model, part[features])
    return {**metric_parts(final, xt, part[target], task), "skipped": skipped,
            "estimate": estimate_parts(model_proba(final, xt)[0], calibration)}


def _calibration_parts(part: pd.DataFrame, model: Any, features: list[str], target: str
                       ) -> dict[str, Any]:
    from mlops.performance.cbpe import calibration_parts, model_proba

    if not len(part):
        return {"n": 0}
    proba, classes = model_proba(model, part[features])
    return calibration_parts(proba, part[target].to_numpy(), classes)


def _row_hashes(part: pd.DataFrame, columns: list[str]) -> np.ndarray:
    from mlops.store.hashing import row_hashes, sorted_unique

    return sorted_unique(row_hashes(part, columns))


def _summary(part: pd.DataFrame, features: list[str], k: int,
             kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    x = part[features]
    numeric = [c for c in numeric_columns(x) if kinds is None or kinds.get(c) == NUMERIC]
    other = [c for c in features if kinds is not None and kinds.get(c, NUMERIC) != NUMERIC]
    counts, missing = category_summary(x, other)
    return {"rows": len(part),
            "moments": {c: Moments.of(x[c].to_numpy(dtype=np.float64, na_value=np.nan)
                                      ).to_dict() for c in numeric},
            "sketches": sketch_columns(x, numeric, k), "categories": counts,
            "category_missing": missing}


def _transform(part: pd.DataFrame, prep: Any) -> pd.DataFrame:
    return prep.transform(part)


def score(client: Any, frame: Any, model: Any, features: list[str], target: str,
          task: str = TASK) -> dict[str, float | None]:
    """Every metric of ``task`` (the keys of :func:`mlops.training.compute_metrics`) for
    ``model`` over a Dask frame: each partition's task returns the mergeable parts of
    the metrics (:func:`mlops.training.metric_parts`), merged here as they arrive."""
    return score_unseen(client, frame, model, features, target, task)[0]


def score_unseen(client: Any, frame: Any, model: Any, features: list[str], target: str,
                 task: str = TASK, known: Any = None, calibration: Any = None,
                 estimated: dict[str, float | None] | None = None
                 ) -> tuple[dict[str, float | None], int, int]:
    """:func:`score` on the rows whose hash is not in ``known`` (the sorted hashes of
    the model's training rows, :func:`mlops.store.hashing.row_hashes` of ``features`` and
    ``target``; None: every row), filtered in each partition's task.

    With ``calibration`` (the model's map, :mod:`mlops.performance.cbpe`), each task also returns
    CBPE's sums of its rows, merged into ``estimated`` (a dict filled in place).

    Returns:
        ``(metrics, rows scored, rows skipped as seen in training)``; the metrics are
        empty when every row was seen.
    """
    from dask import delayed
    from distributed import as_completed

    from mlops.performance.cbpe import EstimateMerger
    from mlops.training import ROC_AUC_DECIMALS, ROC_AUC_MAX_POINTS, MetricMerger

    # hash=False: a fresh key per call, so a model scored twice in a step never waits on
    # the key of an earlier call's released copy ("lost dependencies").
    shipped = client.scatter(model, broadcast=True, hash=False)
    hashes = None if known is None else client.scatter(known, broadcast=True, hash=False)
    tasks = [delayed(_metric_parts)(part, shipped, features, target, task, hashes,
                                    calibration)
             for part in frame.to_delayed()]
    merger = MetricMerger(task)
    estimates = EstimateMerger()
    skipped = 0
    for future in as_completed(client.compute(tasks)):
        parts = future.result()
        skipped += int(parts.pop("skipped", 0))
        if "estimate" in parts:
            estimates.add(parts.pop("estimate"))
        merger.add(parts)
    if estimated is not None and estimates.n:
        estimated.update(estimates.metrics())
    if merger.rounded:
        log.warning("roc_auc: more than %d distinct predicted scores; rounded to %d decimals",
                    ROC_AUC_MAX_POINTS, ROC_AUC_DECIMALS)
    if known is not None and merger.n == 0:
        return {}, 0, skipped
    return merger.metrics(), merger.n, skipped


def accuracy(client: Any, frame: Any, model: Any, features: list[str], target: str
             ) -> float | None:
    """Accuracy of ``model`` over a Dask frame, scored partition by partition."""
    return score(client, frame, model, features, target)["accuracy"]


@dataclass(frozen=True)
class Summary:
    """Merged per-partition summaries of a Dask frame's features (one pass).

    Attributes:
        rows: Rows.
        moments: Numeric features' moments.
        sketches: Numeric features' encoded KLL sketches.
        categories: Categorical and bool features' rows per category.
        category_missing: Their missing values.
    """

    rows: int
    moments: dict[str, Moments]
    sketches: dict[str, str]
    categories: dict[str, dict[str, int]]
    category_missing: dict[str, int]


def summarize(client: Any, frame: Any, features: list[str], k: int,
              kinds: Mapping[str, str] | None = None) -> Summary:
    """The merged summaries of the features of a Dask frame (``kinds``: which are
    categorical or bool; None: the numeric columns only)."""
    parts = per_partition(client, frame, _summary, features, k, dict(kinds or {}) or None)
    moments = merge_moments({c: Moments.from_dict(m) for c, m in p["moments"].items()}
                            for p in parts)
    return Summary(rows=sum(int(p["rows"]) for p in parts), moments=moments,
                   sketches=merge_sketches((p["sketches"] for p in parts), k),
                   categories=merge_categories(p["categories"] for p in parts),
                   category_missing=merge_counts(p["category_missing"] for p in parts))


#: Worker memory LightGBM's Dask training takes per byte of the float32 training matrix:
#: the partitions a worker holds, their concatenation and LightGBM's own Dataset.
LIGHTGBM_MEMORY_FACTOR = 3.0
#: Share of the free memory a sample is sized to (headroom for the model and the rest).
SAMPLE_HEADROOM = 0.5
#: What a worker process holds before any data once LightGBM, scikit-learn and pandas are
#: loaded (measured: 230-270 MB): counted when the process holds less so far.
WORKER_BASELINE_BYTES = 256 * 2**20
#: A sample smaller than this is no model: exit 2 instead.
MIN_SAMPLE_ROWS = 1000


def _size(n: float) -> str:
    from dask.utils import format_bytes

    return str(format_bytes(int(n)))


def free_cluster_memory(client: Any) -> int | None:
    """Bytes the workers can still take before they pause (their ``memory_limit`` x
    ``distributed.worker.memory.pause`` minus what each process holds now, at least
    :data:`WORKER_BASELINE_BYTES`); None when a
    worker has no memory limit (nothing to compare against)."""
    import dask.config

    pause = dask.config.get("distributed.worker.memory.pause", 0.8) or 1.0
    total = 0
    workers = (client.scheduler_info().get("workers") or {}).values()
    for w in workers:
        limit = int(w.get("memory_limit") or 0)
        if not limit:
            return None
        used = max(int((w.get("metrics") or {}).get("memory") or 0), WORKER_BASELINE_BYTES)
        total += max(0, int(limit * float(pause)) - used)
    return total if workers else None


def _stratified(part: pd.DataFrame, target: str, frac: float, seed: int) -> pd.DataFrame:
    return part.groupby(target, group_keys=False, observed=True, dropna=False).sample(
        frac=frac, random_state=seed)


def _within_memory(client: Any, config: Config, train: Any, features: list[str],
                   target: str, train_rows: int, task: str) -> tuple[Any, dict[str, Any]]:
    """The training split LightGBM can hold: all of it when it fits in the workers' free
    memory, else (``dask.oversize: sample``) a stratified sample (classification; uniform
    for regression) sized to fit and bounded by ``dask.max_train_rows``.

    Raises:
        BadInputError: It does not fit and ``dask.oversize`` is ``fail`` (exit 2).
    """
    data = train_rows * (4 * len(features) + 8)  # float32 features and the label
    needed = LIGHTGBM_MEMORY_FACTOR * data
    available = free_cluster_memory(client)
    if available is None or needed <= available:
        return train, {}
    workers = len(client.scheduler_info().get("workers") or {})
    sizes = (f"the training split ({train_rows} rows x {len(features)} features, "
             f"{_size(data)} as float32) needs about {_size(needed)} of worker memory for "
             f"LightGBM, the cluster has {_size(available)} free ({workers} worker(s) below "
             "their pause threshold)")
    frac = min(1.0, SAMPLE_HEADROOM * available / needed,
               config.dask.max_train_rows / max(1, train_rows))
    if config.dask.oversize == "fail" or frac * train_rows < MIN_SAMPLE_ROWS:
        raise BadInputError(f"{sizes}: raise dask.memory_limit or dask.n_workers (at least "
                            f"{_size(needed - available)} more)"
                            + ("" if config.dask.oversize == "fail" else
                               f"; a sample that fits would have fewer than "
                               f"{MIN_SAMPLE_ROWS} rows")
                            + (", or set dask.oversize: sample"
                               if config.dask.oversize == "fail" else ""))
    seed = config.training.random_state
    if task == REGRESSION:
        sample = train.sample(frac=frac, random_state=seed)
        how = "uniform"
    else:
        sample = train.map_partitions(_stratified, target, frac, seed, meta=train._meta)
        how = "stratified (by class)"
    log.warning("dask: %s: training on a %s sample of %.1f%% of the rows (dask.oversize: "
                "sample)", sizes, how, 100 * frac)
    return sample, {"method": f"{how} sample of {frac:.2%} of the training split: {sizes} "
                              "(dask.oversize: sample)",
                    "fraction": frac, "needed_bytes": int(needed),
                    "available_bytes": int(available)}


def _lightgbm_network(client: Any, config: Config, params: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """LightGBM's fixed listen port (:data:`LIGHTGBM_PORT`) on the run's ephemeral cluster,
    so a NetworkPolicy can allow it. Elsewhere, when two workers share a host (one port
    cannot serve both) or when training.params names a port or the machines, LightGBM
    picks its ports itself, as before."""
    from urllib.parse import urlparse

    from lightgbm.basic import _ConfigAliases

    if config.dask.cluster != "ephemeral" or not config.dask.address:
        return {}
    if any(alias in params for alias in _ConfigAliases.get("local_listen_port", "machines")):
        return {}
    workers = list(client.scheduler_info().get("workers", {}))
    if len({urlparse(w).hostname for w in workers}) < len(workers):
        return {}
    return {"local_listen_port": LIGHTGBM_PORT}


def _fit(client: Any, config: Config, train: Any, features: list[str], target: str,
         train_rows: int, task: str = TASK, kinds: Mapping[str, str] | None = None,
         categories: Mapping[str, list[str]] | None = None) -> tuple[Any, dict[str, Any]]:
    from sklearn.pipeline import Pipeline

    from mlops.training import FrameCodes, train_model

    t = config.training
    kinds = dict(kinds) if kinds is not None else dict.fromkeys(features, NUMERIC)
    if t.model_type == LIGHTGBM:
        from lightgbm import DaskLGBMClassifier, DaskLGBMRegressor

        prep = FrameCodes(kinds, {c: list(v) for c, v in (categories or {}).items()}).fit()
        train, sampled = _within_memory(client, config, train, features, target, train_rows,
                                        task)
        meta = pd.DataFrame({c: pd.Series(dtype=np.float32) for c in kinds})
        x = train[features].map_partitions(_transform, prep, meta=meta)
        params = {"random_state": t.random_state, "verbose": -1, **t.params}
        params.update(_lightgbm_network(client, config, params))
        cls = DaskLGBMRegressor if task == REGRESSION else DaskLGBMClassifier
        fit_args: dict[str, Any] = {}
        if prep.categorical_features():
            fit_args["categorical_feature"] = prep.categorical_features()
        try:
            est = cls(client=client, **params)
            with warnings.catch_warnings():
                # The estimator always passes its own n_jobs, then warns that the Dask
                # training replaces it with each worker's threads: nothing to act on.
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                est.fit(x, train[target], **fit_args)
        except (TypeError, ValueError) as err:
            raise BadInputError(f"training failed with config key 'training.params': "
                                f"{err}") from err
        model = Pipeline([("prep", prep), ("model", est.to_local())])
        if sampled:
            rows = int(client.compute(train.map_partitions(len).sum()).result())
            return model, {**sampled, "method": f"{sampled['method']}, LightGBM Dask "
                                                f"estimator {cls.__name__}",
                           "rows": rows, "of_rows": train_rows,
                           "random_state": t.random_state}
        return model, {"method": f"all rows (LightGBM Dask estimator {cls.__name__})",
                       "rows": train_rows, "of_rows": train_rows}
    limit = config.dask.max_train_rows
    frac = min(1.0, limit / train_rows) if train_rows else 1.0
    sample = train if frac >= 1.0 else train.sample(frac=frac, random_state=t.random_state)
    local = client.compute(sample).result().iloc[:limit]
    model = train_model(local[features], local[target], config, task, kinds)
    return model, {"method": f"uniform random sample of at most dask.max_train_rows={limit} "
                             "rows, trained in the step's process",
                   "rows": len(local), "of_rows": train_rows, "fraction": frac,
                   "random_state": t.random_state}


# --- what the steps use -----------------------------------------------------------------------
def _features(manifest: DataManifest, target: str, ids: Sequence[str] = ()) -> list[str]:
    """The feature columns: all but the target and ``data.id_columns``."""
    return [c["name"] for c in manifest.columns if c["name"] != target and c["name"] not in ids]


def _kinds(manifest: DataManifest, target: str, ids: Sequence[str] = ()) -> dict[str, str]:
    """Feature kinds in column order (a version ingested before kinds were kept: numeric)."""
    known = manifest.extra.get("feature_kinds") or {}
    return {c: str(known.get(c, NUMERIC)) for c in _features(manifest, target, ids)}


def _partitioned(ws: Workspace, version: str) -> DataManifest:
    manifest = ws.versioner.get_record(version)
    if not manifest.partitioned:
        raise BadInputError(f"data version '{version}' was made by the pandas engine; "
                            "data.engine: dask needs a partitioned version (ingest again)")
    return manifest


def _means(moments: Mapping[str, Any], features: Sequence[str]) -> dict[str, float]:
    return {c: float(moments[c]["sum"]) / int(moments[c]["count"]) for c in features
            if c in moments and int(moments[c]["count"])}


def ingest_source(config: Config, ws: Workspace) -> Ingested:
    """Register ``data.source`` as a partitioned version (the ingest step on Dask).

    Each partition is validated in its own task (:func:`mlops.store.partitions.ingest_file`);
    the task (``data.task``, decided as on the pandas engine) and the feature kinds are
    decided on the merged summaries, and the metric and training settings are checked
    against the task, before the manifest is committed.

    Returns:
        What was registered; the files are ``{"path", "size_bytes"}`` like the pandas
        engine's lineage; ``too_few_rows`` says why the batch is too small to train on
        ("" when it is not, see :func:`mlops.training.too_few_rows`; refused when no
        model serves).

    Raises:
        BadInputError: ``data.source`` is ``synthetic`` (the Dask engine reads files).
        ConfigError: A metric or training setting that does not fit the task.
        DataValidationError: Nothing matches the source, or a file is invalid.
        ClusterError: The cluster cannot be reached or lost a worker (exit 1).
    """
    d = config.data
    if d.source == "synthetic":
        raise BadInputError("config key 'data.source': data.engine: dask reads CSV/Parquet "
                            "files (a directory, glob or prefix), not 'synthetic'")
    check_task_settings(config)
    require_dask()
    try:
        source, files = list_table_source(d.source, config.storage.options)
    except FileNotFoundError as err:
        raise DataValidationError(f"data source {d.source} not found: no CSV or Parquet "
                                  "file matches") from err
    from mlops.training import too_few_rows

    serving = ws.current_model_version()
    small = [""]

    def before_commit(task: str, rows: int) -> None:
        if not task:  # an unlabelled batch: scored now, trained on once labelled
            return
        check_task_settings(config, task)
        small[0] = too_few_rows(config.training, d.test_size, rows, None, task, d.source)
        if small[0] and serving is None:
            raise DataValidationError(f"{small[0]}; no model serves yet to score it")

    with connect(config.dask) as client:
        outcome = register_partitioned(
            client, source, files, ws.versioner, d.target_column,
            d.hash_algorithm, config.dask.sketch_k, task=d.task, source_uri=d.source,
            rules=config.validation, before_commit=before_commit,
            options={**read_options(d), "ids": list(d.id_columns),
                     "unlabelled": config.labels.enabled})
    log.info("ingest (dask): %d partitions, %d read, %d from the fingerprint cache",
             outcome.partitions, outcome.hashed, outcome.partitions - outcome.hashed)
    manifest = DataManifest.from_dict(outcome.manifest)
    features = _features(manifest, d.target_column, d.id_columns)
    read = [{"path": source.url(f.key), "size_bytes": f.size} for f in files]
    if not small[0] and outcome.task:  # the version existed already (nothing committed)
        small[0] = too_few_rows(config.training, d.test_size, outcome.rows, None,
                                outcome.task, d.source)
    return Ingested(data_version=outcome.version_id, rows=outcome.rows,
                    feature_means=_means(manifest.moments, features),
                    feature_kinds=_kinds(manifest, d.target_column, d.id_columns),
                    source_files=read, task=outcome.task, too_few_rows=small[0],
                    warnings=list(outcome.warnings),
                    unlabelled=config.labels.enabled and not outcome.task)


def _kind_frame(columns: Sequence[Mapping[str, str]], kinds: Mapping[str, str]
                ) -> pd.DataFrame:
    # An empty object column has no inferable kind: categorical ones become strings and
    # bool ones (object when a file had missing values) nullable booleans.
    frame = meta_frame(columns)
    for col, kind in kinds.items():
        if pd.api.types.is_object_dtype(frame[col].dtype):
            frame[col] = frame[col].astype("string" if kind == CATEGORICAL else "boolean")
    return frame


def columns_frame(ws: Workspace, version: str) -> pd.DataFrame:
    """An empty frame with a partitioned version's columns and dtypes (for schema checks)."""
    manifest = _partitioned(ws, version)
    kinds = _kinds(manifest, ws.config.data.target_column, ws.config.data.id_columns)
    return _kind_frame([c for c in manifest.columns if c["name"] not in
                        ws.config.data.id_columns], kinds)


def _missing_rates(manifest: DataManifest, features: Sequence[str]) -> dict[str, float]:
    rows = manifest.rows
    numeric = {c: int(m.get("missing", 0)) for c, m in manifest.moments.items()}
    other = manifest.extra.get("category_missing") or {}
    return {c: (numeric.get(c, 0) + int(other.get(c, 0))) / rows if rows else 0.0
            for c in features}


def check_batch(config: Config, ws: Workspace, version: str, model: Any | None,
                names: list[str] | None = None, task: str = TASK, known: Any = None,
                calibration: Any = None) -> BatchProfile:
    """The monitor-check profile of a partitioned version: statistics (exact means,
    merged sketches, category counts, missing rates) from the manifest; the data is
    read only to score ``model`` (on ``names``, the model's own features in its order,
    or every feature of the version) with every metric of ``task``, on the rows whose
    hash is not in ``known`` (the model's training rows; None: every row); with
    ``calibration`` (the model's map) CBPE's estimates on the same rows, from the same
    partition tasks (``estimated_metrics``)."""
    manifest = _partitioned(ws, version)
    target = config.data.target_column
    features = _features(manifest, target, config.data.id_columns)
    metrics: dict[str, float | None] = {}
    scored: int | None = None
    skipped = 0
    estimated: dict[str, float | None] = {}
    if model is not None:
        frame = load_partitioned(ws.versioner.store, manifest)
        with connect(config.dask) as client:
            metrics, scored, skipped = score_unseen(
                client, frame, model, features if names is None else names, target, task,
                known, calibration, estimated)
    return BatchProfile(scored_rows=scored, skipped_seen_rows=skipped,
                        estimated_metrics=estimated,
                        rows=manifest.rows, means=_means(manifest.moments, features),
                        sketches=_checked_sketches(ws, manifest, features),
                        metrics=metrics,
                        categories=dict(manifest.extra.get("categories") or {}),
                        missing=_missing_rates(manifest, features))


class DaskBatch:
    """A partitioned version, for monitor-check: statistics from its manifest, the data
    read (on the cluster) only to score a model."""

    def __init__(self, config: Config, ws: Workspace, ingested: IngestedVersion) -> None:
        self.config, self.ws, self.version = config, ws, ingested.data_version
        # An unlabelled batch (no target, docs/labels.md) has no task of its own.
        unlabelled = bool(getattr(ingested, "unlabelled", False))
        self.task = ingested.task or ("" if unlabelled else TASK)

    def columns(self) -> pd.DataFrame:
        return columns_frame(self.ws, self.version)

    def profile(self, model: Any = None, names: list[str] | None = None,
                known: Any = None, calibration: Any = None) -> BatchProfile:
        return check_batch(self.config, self.ws, self.version, model, names, self.task,
                           known, calibration)


def _checked_sketches(ws: Workspace, manifest: DataManifest,
                      features: Iterable[str]) -> dict[str, str]:
    """The manifest's sketches of ``features``, each decoded once to check it.

    Raises:
        IntegrityError: A sketch does not decode: damage a retry reads again (exit 2,
            names the version and its manifest; issue 19 item 11).
    """
    from mlops.engines.sketches import decode

    wanted = set(features)
    out = {}
    for column, text in manifest.sketches.items():
        if column not in wanted:
            continue
        try:
            decode(text)
        except Exception as err:  # the sketch library raises several kinds
            where = ws.versioner.store.url(ws.versioner.manifest_key(manifest.id))
            raise IntegrityError(f"data version '{manifest.id}': the sketch of column "
                                 f"'{column}' in {where} does not decode "
                                 f"({type(err).__name__}); ingest the source again") from err
        out[column] = text
    return out


class DaskTrainer:
    """The train step's data side on Dask (a context manager holding the cluster).

    The held-out split is ``random_split`` with ``data.test_size`` and
    ``training.random_state``. ``lightgbm`` trains on every training row through
    ``lightgbm.DaskLGBMClassifier`` or ``DaskLGBMRegressor`` and is saved as a
    ``Pipeline`` of :class:`mlops.training.FrameCodes` (fitted from the training split's
    category counts) and the plain local LightGBM model; the scikit-learn types train
    their usual Pipeline on a uniform sample of at most ``dask.max_train_rows`` rows.
    The drift reference comes from the training split's sketches and category counts.
    """

    def __init__(self, config: Config, ws: Workspace, ingested: IngestedVersion,
                 rows: pd.DataFrame | None = None) -> None:
        self.config = config
        self.target = config.data.target_column
        ids = config.data.id_columns
        if rows is None:
            self.task = ingested.task or (config.data.task if config.data.task != "auto"
                                          else TASK)
            check_task_settings(config, self.task)
            manifest = _partitioned(ws, ingested.data_version)
            self.features = _features(manifest, self.target, ids)
            self.kinds = _kinds(manifest, self.target, ids)
            self._columns = _kind_frame([c for c in manifest.columns if c["name"] not in ids],
                                        self.kinds)
            frame = load_partitioned(ws.versioner.store, manifest)
            self.rows = manifest.rows
        else:
            # A training window's labelled rows (mlops.performance.labels.training_frame), assembled
            # in this process and trained on the cluster as a version's rows are.
            import dask.dataframe as dd

            rows = without_ids(rows, ids, ingested.data_version)
            self.task = validate(rows, self.target, ingested.data_version, config.data.task)
            check_task_settings(config, self.task)
            self.kinds = feature_kinds(rows, self.target)
            self.features = list(self.kinds)
            self._columns = rows[self.features].iloc[:0]
            frame = dd.from_pandas(rows, npartitions=max(1, config.dask.n_workers))
            self.rows = len(rows)
        test_size = config.data.test_size
        self.train, self.test = frame.random_split([1 - test_size, test_size],
                                                   random_state=config.training.random_state)
        self._stack = contextlib.ExitStack()
        self.client: Any = None
        self.summary = Summary(0, {}, {}, {}, {})

    def __enter__(self) -> DaskTrainer:
        self.client = self._stack.enter_context(connect(self.config.dask))
        self.summary = summarize(self.client, self.train, self.features,
                                 self.config.dask.sketch_k, self.kinds)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def moments(self) -> dict[str, Moments]:
        """The training split's numeric feature moments."""
        return self.summary.moments

    @property
    def sketches(self) -> dict[str, str]:
        """The training split's numeric feature sketches."""
        return self.summary.sketches

    @property
    def train_rows(self) -> int:
        """Rows of the training split."""
        return self.summary.rows

    @property
    def test_rows(self) -> int:
        """Rows of the held-out split."""
        return self.rows - self.train_rows

    def fit(self) -> tuple[Any, dict[str, Any]]:
        """The fitted model and the facts to keep in its metadata (``engine``,
        ``training_sample``)."""
        categories = {c: list(v) for c, v in self.summary.categories.items()}
        model, sample = _fit(self.client, self.config, self.train, self.features, self.target,
                             self.train_rows, self.task, self.kinds, categories)
        return model, {"engine": DASK, "training_sample": sample}

    def accuracy(self, model: Any, names: list[str] | None = None) -> float | None:
        """Accuracy of ``model`` on the held-out split, scored partition by partition."""
        return self.metrics(model, names).get("accuracy")

    def metrics(self, model: Any, names: list[str] | None = None
                ) -> dict[str, float | None]:
        """Every metric of the task for ``model`` on the held-out split (see :func:`score`)."""
        return score(self.client, self.test, model,
                     self.features if names is None else names, self.target, self.task)

    def training_rows(self) -> np.ndarray:
        """The sorted, unique hashes of the training split's rows (features and target),
        computed partition by partition (:func:`mlops.store.hashing.row_hashes`)."""
        parts = per_partition(self.client, self.train, _row_hashes,
                              [*self.features, self.target])
        from mlops.store.hashing import sorted_unique

        return sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)

    def calibration(self, model: Any) -> dict[str, Any] | None:
        """The classifier's calibration map (mlops.performance.cbpe) from the held-out split, from
        per-partition bin counts merged here."""
        from mlops.performance.cbpe import fit_calibration

        return fit_calibration(per_partition(self.client, self.test, _calibration_parts,
                                             model, self.features, self.target))

    def metrics_unseen(self, model: Any, names: list[str] | None, known: Any
                       ) -> tuple[dict[str, float | None], int]:
        """:meth:`metrics` on the held-out rows whose hash is not in ``known`` (a
        champion's training rows), and how many rows that is."""
        metrics, scored, _ = score_unseen(self.client, self.test, model,
                                          self.features if names is None else names,
                                          self.target, self.task, known)
        return metrics, scored

    def columns(self) -> pd.DataFrame:
        """An empty frame of the features (for the champion's schema check)."""
        return self._columns[self.features]

    def schema(self) -> InputSchema:
        """The input schema of the model trained here; a categorical feature's categories
        are the most frequent ones of the training split (as the pandas engine keeps)."""
        cols = []
        for name in self.features:
            kind = self.kinds[name]
            cats: tuple[str, ...] = ()
            truncated = False
            if kind == CATEGORICAL:
                seen = list(self.summary.categories.get(name, {}))
                truncated = len(seen) > MAX_CATEGORIES
                cats = tuple(sorted(seen[:MAX_CATEGORIES]))
            cols.append(ColumnSchema(name, str(self._columns[name].dtype), kind, cats,
                                     truncated))
        return InputSchema(target=self.target, task=self.task, features=tuple(cols))

    def reference(self) -> dict[str, Any]:
        """Keyword arguments of ``ModelMonitor.update_reference_distribution``."""
        settings = self.config.monitoring
        dist = reference_from_sketches(self.sketches, self.moments, settings.psi_bins,
                                       settings.reference_sample_size)
        found = dict(dist["features"])
        for col, counts in self.summary.categories.items():
            found[col] = categorical_reference(counts,
                                               self.summary.category_missing.get(col, 0))
        dist["features"] = {c: found[c] for c in self.features if c in found}
        dist["rows"] = self.train_rows
        return {"feature_means": {c: m.mean for c, m in self.moments.items() if m.count},
                "distribution": dist}


def dask_map(client: Any) -> MapFiles:
    """The Dask engine's :data:`mlops.scoring.MapFiles`: one task per file on the
    cluster's workers (the model and spec are scattered once), results in file order."""

    def run(fn: Callable[..., Any], source: Store, keys: Sequence[str], *args: Any
            ) -> list[Any]:
        from dask import delayed

        # The model and the spec go to the workers once, not inside every task. Keys of
        # their own (hash=False): a second map scattering the same spec must not meet the
        # first map's key while the scheduler is still releasing it ("lost data").
        shipped = [a if isinstance(a, str | int | float | bool | Store | type(None))
                   else client.scatter(a, broadcast=True, hash=False) for a in args]
        tasks = [delayed(fn, pure=False)(source, key, *shipped) for key in keys]
        with translate_cluster_errors("the score step"):
            return list(client.gather(client.compute(tasks)))

    return run


class DaskEngine:
    """``data.engine: dask`` (see the module docstring)."""

    name = DASK

    def ingest(self, config: Config, ws: Workspace) -> Ingested:
        return ingest_source(config, ws)

    def batch(self, config: Config, ws: Workspace, ingested: IngestedVersion) -> DaskBatch:
        return DaskBatch(config, ws, ingested)

    def trainer(self, config: Config, ws: Workspace, ingested: IngestedVersion,
                rows: pd.DataFrame | None = None) -> DaskTrainer:
        return DaskTrainer(config, ws, ingested, rows)

    def score(self, ws: Workspace, run_id: str) -> Scored:
        require_dask()
        with connect(ws.config.dask) as client:
            return score_source(ws, run_id, dask_map(client))

    def score_version(self, ws: Workspace, run_id: str, data_version: str, model: Any,
                      metadata: Mapping[str, Any], model_version: str,
                      id_columns: Sequence[str]) -> Scored:
        require_dask()
        with connect(ws.config.dask) as client:
            return score_data_version(ws, run_id, data_version, model, metadata,
                                      model_version, id_columns, dask_map(client))


__all__ = ["DASK", "LIGHTGBM", "TASK", "DaskBatch", "DaskEngine", "DaskTrainer", "Summary",
           "accuracy", "check_batch", "columns_frame", "connect", "container_memory_limit",
           "dask_map", "ingest_source", "per_partition", "require_dask", "score",
           "score_unseen", "summarize", "translate_cluster_errors", "worker_memory_limit"]
