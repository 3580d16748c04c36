"""The content hash separates types (issue #13 item 10) and keeps existing ids.

Before, an object column ``[1, 'a', 2.5]`` hashed like ``['1', 'a', '2.5']``, column
names ``0`` and ``'0'`` collided, and a categorical with another category order hashed
the same; registering one after the other returned the other's data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.data import generate_synthetic_data
from mlops.store.hashing import content_hash
from mlops.store.versioner import DataVersioner


def numeric_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"f0": rng.normal(size=50), "f1": rng.integers(0, 9, 50),
                         "target": rng.integers(0, 2, 50)})


# Digests computed with the hash definition before this change (format 1): a numeric
# frame's id must not move, or every store's existing versions would be re-registered.
PINNED = {
    "sha256": "8f4c31d0f275c54b9a16a1ea3fa25ade8fadbfbaef5a573f3d43a5f31f11b8dc",
    "blake2b": ("b485f1d1549167e3a5d6f5ccc827a413e7332c47515e20e723f91330acc52de8ca24bd3fb3"
                "c446995c5653728771f8eb39a69bdcf4bcdeecd6f484565c4dca01"),
}


@pytest.mark.parametrize("algorithm", sorted(PINNED))
def test_numeric_frame_ids_are_pinned(algorithm: str) -> None:
    assert content_hash(numeric_frame(), algorithm) == PINNED[algorithm]


def test_numeric_frame_with_named_index_is_pinned() -> None:
    df = numeric_frame().set_index(pd.Index(np.arange(100, 150), name="id"))
    assert content_hash(df) == "f058df476f926f1cab95135ff31052a72d8f474dac2fbfa3cd255dfa3eac97b4"


def test_synthetic_data_id_is_stable() -> None:
    a = content_hash(generate_synthetic_data(200, 4, 3))
    assert a == content_hash(generate_synthetic_data(200, 4, 3))


@pytest.mark.parametrize(("left", "right"), [
    (pd.DataFrame({"a": pd.Series([1, "a", 2.5], dtype=object)}),
     pd.DataFrame({"a": pd.Series(["1", "a", "2.5"], dtype=object)})),
    (pd.DataFrame({"a": pd.Series([1, 2, 3], dtype=object)}),
     pd.DataFrame({"a": pd.Series(["1", "2", "3"], dtype=object)})),
    (pd.DataFrame({"a": pd.Series([None, "x"], dtype=object)}),
     pd.DataFrame({"a": pd.Series([np.nan, "x"], dtype=object)})),
    (pd.DataFrame({0: [1.0, 2.0]}), pd.DataFrame({"0": [1.0, 2.0]})),
    (pd.DataFrame({"c": pd.Categorical(["x", "y"], categories=["x", "y"])}),
     pd.DataFrame({"c": pd.Categorical(["x", "y"], categories=["y", "x"])})),
    (pd.DataFrame({"c": pd.Categorical(["x", "y"], ordered=True)}),
     pd.DataFrame({"c": pd.Categorical(["x", "y"], ordered=False)})),
    (pd.DataFrame({"c": pd.Categorical([1, 2])}), pd.DataFrame({"c": pd.Categorical(["1", "2"])})),
    (pd.DataFrame({"a": [1.0]}, index=pd.Index([1], dtype=object)),
     pd.DataFrame({"a": [1.0]}, index=pd.Index(["1"], dtype=object))),
])
def test_types_separate_hashes(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert content_hash(left) != content_hash(right)


def test_registering_lookalikes_keeps_both() -> None:
    versioner = DataVersioner("memory://hash-types/data")
    ints = pd.DataFrame({"a": pd.Series([1, 2, 3], dtype=object), "b": [1.0, 2.0, 3.0]})
    text = pd.DataFrame({"a": pd.Series(["1", "2", "3"], dtype=object), "b": [1.0, 2.0, 3.0]})
    first, second = versioner.register(ints), versioner.register(text)
    assert first != second
    assert [type(v) for v in versioner.load(second)[0]["a"]] == [str, str, str]
