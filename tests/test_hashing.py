"""Content hashing: stable, sensitive to every part of the content, algorithm checks."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from mlops.errors import ConfigError
from mlops.store.hashing import SUPPORTED_ALGORITHMS, content_hash


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1, 2, 3], "s": ["x", "y", None]})


def test_same_content_same_hash_different_content_different_hash() -> None:
    base = content_hash(frame())
    assert content_hash(frame()) == base
    changed_value = frame()
    changed_value.loc[1, "a"] = 2.5
    renamed = frame().rename(columns={"a": "z"})
    retyped = frame().astype({"b": "int32"})
    reindexed = frame().set_axis([10, 11, 12])
    changed_str = frame()
    changed_str.loc[0, "s"] = "q"
    reordered = frame()[["b", "a", "s"]]
    hashes = {content_hash(f) for f in
              [changed_value, renamed, retyped, reindexed, changed_str, reordered]}
    assert base not in hashes
    assert len(hashes) == 6


def test_hash_does_not_depend_on_memory_layout_or_threads() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(300_000, 4)), columns=list("abcd"))
    fortran = pd.DataFrame(np.asfortranarray(df.to_numpy()), columns=list("abcd"))
    assert content_hash(df, workers=1) == content_hash(df, workers=4) == content_hash(fortran)


def test_known_digest_pins_the_definition() -> None:
    # If this changes, every stored version id changes: bump the format instead.
    df = pd.DataFrame({"x": np.array([1.0, 2.0]), "target": np.array([0, 1])})
    col = [hashlib.sha256(np.array([1.0, 2.0]).tobytes()).digest(),
           hashlib.sha256(np.array([0, 1], dtype=np.int64).tobytes()).digest()]
    header = ('{"columns": ["x", "target"], "dtypes": ["float64", "int64"], "format": 1, '
              '"index": ["range", 0, 2, 1, null], "rows": 2}')
    expected = hashlib.sha256(header.encode() + b"".join(col)).hexdigest()
    assert content_hash(df) == expected


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
def test_supported_algorithms(algorithm: str) -> None:
    digest = content_hash(frame(), algorithm)
    assert len(digest) == hashlib.new(algorithm).digest_size * 2


def test_unknown_algorithm_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown hash algorithm 'md5': use one of sha256"):
        content_hash(frame(), "md5")
