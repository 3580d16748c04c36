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

Types are part of the content, so that frames which print alike do not share an id:

* an object column whose values are not all ``str`` also hashes each value's type
  (``[1, 'a', 2.5]`` differs from ``['1', 'a', '2.5']``);
* a categorical column's header entry carries its categories in order (with their
  types) and whether it is ordered;
* column (and index level) names that are not all ``str`` add their types to the header
  (``0`` differs from ``'0'``).

Each addition appears only where it applies, so a frame of numeric columns with
string names (every version written before) keeps its id.
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
    import numpy as np
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


def _value_types(values: np.ndarray) -> np.ndarray | None:
    """Per-value type names of an object array, or None when every value is a ``str``
    (the common case, hashed as before)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return None
    return np.array([type(v).__name__ for v in values], dtype=object)


def _hash_values(algorithm: str, values: Any) -> bytes:
    import numpy as np
    import pandas as pd

    h = hashlib.new(algorithm)
    buf = _raw_buffer(values)
    if buf is None:
        if isinstance(values, pd.api.extensions.ExtensionArray):
            hashed = pd.util.hash_pandas_object(pd.Series(values), index=False).to_numpy()
        else:
            objects = np.asarray(values, dtype=object)
            hashed = pd.util.hash_array(objects)
            types = _value_types(objects)
            if types is not None:
                h.update(b"types:")
                h.update(memoryview(np.ascontiguousarray(pd.util.hash_array(types)).data)
                         .cast("B"))
        buf = memoryview(np.ascontiguousarray(hashed).data).cast("B")
    h.update(buf)
    return h.digest()


def _categories(dtype: Any) -> dict[str, Any] | None:
    """The category order of a categorical dtype (with value types), else None."""
    import pandas as pd

    if not isinstance(dtype, pd.CategoricalDtype):
        return None
    return {"ordered": bool(dtype.ordered),
            "categories": [[type(v).__name__, str(v)] for v in dtype.categories]}


def _type_header(df: pd.DataFrame) -> dict[str, Any]:
    """Header entries that separate types (see the module docstring); {} for plain frames."""
    out: dict[str, Any] = {}
    if not all(isinstance(c, str) for c in df.columns):
        out["column_name_types"] = [type(c).__name__ for c in df.columns]
    names = [n for n in df.index.names if n is not None]
    if not all(isinstance(n, str) for n in names):
        out["index_name_types"] = [type(n).__name__ for n in df.index.names]
    cats = {str(i): c for i, c in enumerate(_categories(t) for t in df.dtypes) if c}
    if cats:
        out["categories"] = cats
    index_cats = _categories(df.index.dtype)
    if index_cats:
        out["index_categories"] = index_cats
    return out


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
    types = _type_header(df)
    if types:
        header["types"] = types
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


# --- row hashes: which rows a model was trained on ----------------------------------------
def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row of ``df[columns]`` (pandas' stable per-value hashes,
    combined across the columns in order; the index is not part of it).

    Numeric columns hash as float64, so a night where a missing value turns an integer
    column into floats still recognises its rows. Used to tell the rows a model was
    trained on from new ones (see docs/data.md, "Out-of-sample serving score").
    """
    import numpy as np
    import pandas as pd

    part = df[columns]
    cast = {c: "float64" for c in columns
            if pd.api.types.is_numeric_dtype(part[c].dtype)
            and not pd.api.types.is_bool_dtype(part[c].dtype)
            and part[c].dtype != np.float64}
    if cast:
        part = part.astype(cast)
    return pd.util.hash_pandas_object(part, index=False).to_numpy(dtype=np.uint64)


def sorted_unique(hashes: np.ndarray) -> np.ndarray:
    """The distinct values of a uint64 array, sorted (``np.unique`` without its cost:
    a sort and one comparison pass, about 20 times faster on a million hashes)."""
    import numpy as np

    ordered = np.sort(np.asarray(hashes, dtype=np.uint64))
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def seen_rows(hashes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A boolean mask of ``hashes`` found in ``known`` (sorted, unique uint64)."""
    import numpy as np

    if not len(known) or not len(hashes):
        return np.zeros(len(hashes), dtype=bool)
    at = np.searchsorted(known, hashes)
    at[at == len(known)] = 0
    return np.asarray(known[at] == hashes)
