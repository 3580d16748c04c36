"""Content hashing of DataFrames.

The content address of a DataFrame is a hash of what it holds, not of a file
format's bytes: column names and dtypes, the index, and the values. It is
therefore the same across pyarrow or Parquet versions.

Layout (a two-level Merkle hash, so columns hash in parallel threads; hashlib
releases the GIL on large buffers):

    digest = H(header_json || H(index) || H(column_0) || ... || H(column_n))

Numeric, boolean and datetime columns hash their raw value buffer directly
(zero-copy); other columns (strings, categoricals, nullable extension types)
hash pandas' stable 64-bit per-value hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mlops.choices import HASH_ALGORITHMS
from mlops.errors import ConfigError

if TYPE_CHECKING:  # numpy and pandas load with the first hash: check_algorithm stays cheap
    import pandas as pd

SUPPORTED_ALGORITHMS = HASH_ALGORITHMS
#: Columns at least this large are hashed in parallel threads.
_PARALLEL_MIN_BYTES = 1 << 20


def check_algorithm(name: str) -> str:
    """Return ``name`` if it is a supported hash algorithm.

    Raises:
        ConfigError: The algorithm is not supported (the message lists the supported ones).
    """
    if name not in SUPPORTED_ALGORITHMS:
        raise ConfigError(f"unknown hash algorithm '{name}': use one of "
                          f"{', '.join(SUPPORTED_ALGORITHMS)}")
    return name


def _raw_buffer(values: Any) -> memoryview | None:
    """The value buffer of a plain numpy column, or None when it needs value hashing."""
    import numpy as np

    if not isinstance(values, np.ndarray) or values.dtype.kind not in "biufcmM":
        return None
    if values.dtype.kind in "mM":
        values = values.view("i8")
    if not values.flags.c_contiguous:
        values = np.ascontiguousarray(values)
    return memoryview(values.data).cast("B")


def _hash_values(algorithm: str, values: Any) -> bytes:
    import numpy as np
    import pandas as pd

    h = hashlib.new(algorithm)
    buf = _raw_buffer(values)
    if buf is None:
        hashed = pd.util.hash_array(np.asarray(values, dtype=object)) if not isinstance(
            values, pd.api.extensions.ExtensionArray) else pd.util.hash_pandas_object(
            pd.Series(values), index=False).to_numpy()
        buf = memoryview(np.ascontiguousarray(hashed).data).cast("B")
    h.update(buf)
    return h.digest()


def _column_values(df: pd.DataFrame, i: int) -> Any:
    import numpy as np
    import pandas as pd

    col = df.iloc[:, i]
    arr = col.array
    if isinstance(arr, pd.arrays.NumpyExtensionArray):
        return arr.to_numpy()
    return col.to_numpy() if col.dtype.kind in "biufcmM" and isinstance(
        col.dtype, np.dtype) else arr


def content_hash(df: pd.DataFrame, algorithm: str = "sha256", workers: int | None = None) -> str:
    """Hash the content of ``df``.

    Args:
        df: The DataFrame.
        algorithm: One of :data:`SUPPORTED_ALGORITHMS`.
        workers: Threads for column hashing (default: CPU count, at most 8).

    Returns:
        The hex digest.

    Raises:
        ConfigError: Unsupported algorithm.
    """
    import numpy as np
    import pandas as pd

    check_algorithm(algorithm)
    header: dict[str, Any] = {
        "format": 1,
        "columns": [str(c) for c in df.columns],
        "dtypes": [str(t) for t in df.dtypes],
        "rows": len(df),
    }
    index = df.index
    if isinstance(index, pd.RangeIndex):
        header["index"] = ["range", index.start, index.stop, index.step, index.name]
        index_values = None
    else:
        header["index"] = ["values", str(index.dtype), [str(n) for n in index.names]]
        index_values = index.to_numpy() if isinstance(index.dtype, np.dtype) else index.array

    columns = [_column_values(df, i) for i in range(df.shape[1])]
    total = sum(getattr(c, "nbytes", 0) for c in columns)
    n = workers if workers is not None else min(8, os.cpu_count() or 1)
    if n > 1 and total >= _PARALLEL_MIN_BYTES and len(columns) > 1:
        with ThreadPoolExecutor(max_workers=n) as pool:
            digests = list(pool.map(lambda v: _hash_values(algorithm, v), columns))
    else:
        digests = [_hash_values(algorithm, v) for v in columns]

    top = hashlib.new(algorithm)
    top.update(json.dumps(header, sort_keys=True, default=str).encode())
    if index_values is not None:
        top.update(_hash_values(algorithm, index_values))
    for d in digests:
        top.update(d)
    return top.hexdigest()
