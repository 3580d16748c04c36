"""``data.engine: auto``: pandas when the data fits comfortably in the pod, Dask otherwise.

The rule (:func:`choose_engine`, a pure function)::

    pandas  if  estimated in-memory bytes x AUTO_MEMORY_FACTOR  <=  memory limit
    dask    otherwise

* The memory limit is the container's (:func:`mlops.engines.dask.container_memory_limit`:
  cgroup v2 ``memory.max``, cgroup v1 ``memory.limit_in_bytes``, else the pod's limit in
  ``$MLOPS_MEMORY_LIMIT``), else the machine's physical memory.
* :data:`AUTO_MEMORY_FACTOR` (4) covers what the pandas engine holds besides the frame:
  register adds up to 1.5x the frame (``make bench`` B5), the train split, the one-hot
  encoding and the model's copies add the rest.
* The in-memory size is estimated before anything is read (:func:`estimate_source_bytes`):
  synthetic data is ``n_samples x (n_features + 1) x 8`` bytes; a Parquet file counts
  the uncompressed size its footer records (every row group's ``total_byte_size``);
  a CSV file counts :data:`CSV_EXPANSION` x its size on disk.

Ingest decides; the later steps of the night follow the data version ingest made (a
partitioned version is the Dask engine's, one object the pandas engine's:
:func:`engine_of_version`), so one night never mixes them. The choice is logged and
recorded in the run summary (``engine``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mlops.errors import MLOpsError

log = logging.getLogger(__name__)

AUTO = "auto"
PANDAS = "pandas"
DASK = "dask"
#: pandas is chosen when the estimated in-memory size x this is at most the memory limit.
AUTO_MEMORY_FACTOR = 4
#: In-memory bytes of a CSV file per byte on disk (numbers parse to about their text
#: size; short strings become Python objects of ~50 bytes).
CSV_EXPANSION = 2.0
#: In-memory bytes per byte on disk when a Parquet footer cannot be read.
PARQUET_EXPANSION = 4.0


@dataclass(frozen=True)
class EngineChoice:
    """What ``data.engine: auto`` chose and why.

    Attributes:
        engine: ``pandas`` or ``dask``.
        estimated_bytes: The data's estimated in-memory size (None: not estimated).
        memory_limit: The memory limit compared with (bytes).
        reason: One sentence for the log and the summary.
    """

    engine: str
    estimated_bytes: int | None
    memory_limit: int | None
    reason: str


def choose_engine(estimated_bytes: int, memory_limit: int,
                  factor: float = AUTO_MEMORY_FACTOR) -> EngineChoice:
    """The rule: pandas when ``estimated_bytes x factor <= memory_limit``, else dask."""
    need = estimated_bytes * factor
    engine = PANDAS if need <= memory_limit else DASK
    cmp = "<=" if engine == PANDAS else ">"
    return EngineChoice(engine, estimated_bytes, memory_limit,
                        f"engine auto chose {engine}: estimated {_mb(estimated_bytes)} in "
                        f"memory x {factor:g} = {_mb(int(need))} {cmp} memory limit "
                        f"{_mb(memory_limit)}")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def memory_limit(root: str | None = None, env: Any = None) -> int:
    """The container's memory limit, else the machine's physical memory (bytes)."""
    from mlops.engines.dask import container_memory_limit

    limit = container_memory_limit(root, env)
    if limit:
        return limit
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _parquet_bytes(f: Any, size: int) -> int:
    try:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(f).metadata
        return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception:  # not a readable footer: the size on disk with an expansion
        return int(size * PARQUET_EXPANSION)


def estimate_source_bytes(data: Any, storage_options: dict[str, Any] | None = None) -> int:
    """The in-memory size of ``data`` (a :class:`mlops.config.DataConfig`'s source),
    estimated from the source's listing and Parquet footers only (no data is read).

    Raises:
        FileNotFoundError: No CSV or Parquet file matches the source.
        StorageError: The listing failed.
    """
    if data.source == "synthetic":
        return int(data.n_samples) * (int(data.n_features) + 1) * 8
    from mlops.store.sources import list_table_source

    store, files = list_table_source(data.source, storage_options)
    total = 0
    for file in files:
        if file.key.lower().endswith((".parquet", ".pq")):
            with store.open_read(file.key) as f:
                total += _parquet_bytes(f, file.size)
        else:
            total += int(file.size * CSV_EXPANSION)
    return total


def engine_of_version(partitioned: bool) -> str:
    """The engine of the later steps: the one that made the night's data version."""
    return DASK if partitioned else PANDAS


def resolve(config: Any, *, limit: int | None = None) -> tuple[Any, EngineChoice | None]:
    """``config`` with ``data.engine: auto`` replaced by the chosen engine (ingest's rule).

    A config naming its engine comes back as it is, with no choice. A source that cannot
    be listed here is left to the step, which reports it: the choice is then pandas.
    """
    import dataclasses

    if config.data.engine != AUTO:
        return config, None
    limit = memory_limit() if limit is None else limit
    try:
        estimate = estimate_source_bytes(config.data, config.storage.options)
    except (OSError, ValueError, MLOpsError) as err:
        choice = EngineChoice(PANDAS, None, limit, f"engine auto chose pandas: the source "
                              f"could not be sized ({err})")
    else:
        choice = choose_engine(estimate, limit)
    log.info("%s", choice.reason)
    data = dataclasses.replace(config.data, engine=choice.engine)
    return dataclasses.replace(config, data=data), choice


def follow(config: Any, engine: str, partitioned: bool | None = None) -> Any:
    """``config`` for a step after ingest: with ``data.engine: auto``, the engine ingest
    ran on (``engine``, from its result; empty in an older result: the data version's
    kind, ``partitioned``, decides). A config naming its engine comes back as it is."""
    import dataclasses

    if config.data.engine != AUTO:
        return config
    chosen = engine or engine_of_version(bool(partitioned))
    return dataclasses.replace(config, data=dataclasses.replace(config.data, engine=chosen))
