"""The register fast paths keep behaviour identical: stats, ids, objects, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops.data import column_stats, generate_synthetic_data
from mlops.store.filesystem import open_store
from mlops.store.versioner import DataVersioner


def _reference_stats(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """column_stats as first written: the NaN-aware reductions on every column."""
    out = {}
    for col in df.columns:
        s = df[col]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            continue
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if v.size == 0 or np.isnan(v).all():
            continue
        out[str(col)] = {"mean": float(np.nanmean(v)),
                         "std": float(np.nanstd(v, ddof=1)) if v.size > 1 else 0.0,
                         "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
    return out


def test_column_stats_fast_path_is_bit_identical() -> None:
    df = generate_synthetic_data(50_001, 4, 9)
    n = len(df)
    df["with_nan"] = np.where(np.arange(n) % 7 == 0, np.nan, np.arange(n) * 0.5)
    df["all_nan"] = np.nan
    df["nullable"] = pd.array([1, None] * (n // 2) + [4], dtype="Int64")
    df["flag"] = np.arange(n) % 2 == 0
    df["name"] = "x"
    assert column_stats(df) == _reference_stats(df)
    assert column_stats(df.head(1)) == _reference_stats(df.head(1))


def test_content_id_is_unchanged(tmp_path: Path) -> None:
    # Pinned before the fast paths: the id is the content hash, never the file's bytes.
    df = generate_synthetic_data(1000, 3)
    assert DataVersioner(tmp_path).register(df) == "6c5fbc6ce5c4692f"


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_register_round_trip_and_encoding(tmp_path: Path, backend: str) -> None:
    base = str(tmp_path / "store") if backend == "local" else "memory://fast-paths"
    versioner = DataVersioner(base)
    df = generate_synthetic_data(2000, 3)
    df["label"] = pd.Categorical(np.where(df["target"] == 1, "yes", "no"))
    vid = versioner.register(df)
    assert versioner.register(df) == vid
    loaded, manifest = versioner.load(vid)
    pd.testing.assert_frame_equal(loaded, df)
    assert manifest["stats"] == column_stats(df)
    store = versioner.store
    assert manifest["size_bytes"] == store.size(manifest["object"])
    if backend == "local":
        meta = pq.ParquetFile(store.path(manifest["object"])).metadata.row_group(0)
        encodings = {meta.column(i).path_in_schema: meta.column(i).encodings
                     for i in range(meta.num_columns)}
        assert "RLE_DICTIONARY" not in encodings["feature_0"]
        assert "RLE_DICTIONARY" in encodings["target"]


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_write_via_path_is_atomic_and_exclusive(tmp_path: Path, backend: str) -> None:
    store = open_store(str(tmp_path / "s") if backend == "local" else "memory://wvp")

    def writer(target: object) -> None:
        if isinstance(target, str):
            with open(target, "wb") as f:
                f.write(b"hello")
        else:
            target.write(b"hello")  # type: ignore[attr-defined]

    assert store.write_via_path("a/b.bin", writer) == 5
    assert store.read_bytes("a/b.bin") == b"hello"
    with pytest.raises(FileExistsError):
        store.write_via_path("a/b.bin", writer, exclusive=True)

    def failing(target: object) -> None:
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        store.write_via_path("a/c.bin", failing)
    assert not store.exists("a/c.bin")
    if backend == "local":
        assert os.listdir(store.path("a")) == ["b.bin"]  # no temp file left behind


def test_load_of_a_missing_object_names_the_version(tmp_path: Path) -> None:
    from mlops.errors import VersionNotFoundError

    versioner = DataVersioner(tmp_path)
    vid = versioner.register(generate_synthetic_data(100, 2))
    os.remove(versioner.store.path(versioner.get_metadata(vid)["object"]))
    with pytest.raises(VersionNotFoundError, match=vid):
        versioner.load(vid)


def test_evaluate_fast_path_equals_accuracy_score() -> None:
    from sklearn.metrics import accuracy_score

    from mlops.config import Config
    from mlops.data import split_xy
    from mlops.training import evaluate, train_model

    df = generate_synthetic_data(3001, 4, 5)
    x, y = split_xy(df, "target")
    model = train_model(x.iloc[:500], y.iloc[:500], Config())
    assert evaluate(model, x, y) == float(accuracy_score(y, model.predict(x)))
    labels = np.where(y.to_numpy() == 1, "yes", "no")  # not integers: accuracy_score path
    named = train_model(x.iloc[:500], labels[:500], Config())
    assert evaluate(named, x, labels) == float(accuracy_score(labels, named.predict(x)))


def test_keep_last_load_returns_independent_equal_frames(tmp_path: Path) -> None:
    versioner = DataVersioner(tmp_path, keep_last_load=True)
    df = generate_synthetic_data(500, 3)
    vid = versioner.register(df)
    first, manifest = versioner.load(vid)
    first["feature_0"] = -1.0  # the caller changes its frame ...
    first.loc[0, "feature_1"] = 99.0
    second, again = versioner.load(vid)  # ... the next load is unaffected
    pd.testing.assert_frame_equal(second, df)
    assert again == manifest
    other = versioner.register(generate_synthetic_data(500, 3, 7))
    third, _ = versioner.load(other)
    assert not third.equals(second)
    assert not DataVersioner(tmp_path).keep_last_load  # off by default
