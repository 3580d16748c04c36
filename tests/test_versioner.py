"""DataVersioner: content addressing, dedup, ordering, metadata, bad ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.data import generate_synthetic_data
from mlops.errors import (
    ConfigError,
    InvalidVersionIdError,
    VersionExistsError,
    VersionNotFoundError,
)
from mlops.store.filesystem import open_store
from mlops.store.versioner import DataVersioner


@pytest.fixture
def versioner(store_uri: str, storage_options: dict) -> DataVersioner:
    return DataVersioner(open_store(store_uri, storage_options).child("data"))


def test_register_load_round_trip_with_metadata(versioner: DataVersioner) -> None:
    df = generate_synthetic_data(200, 3, 1)
    df["name"] = [f"row{i}" for i in range(len(df))]
    vid = versioner.register(df)
    loaded, meta = versioner.load(vid)
    pd.testing.assert_frame_equal(loaded, df)
    assert meta["id"] == vid and meta["rows"] == 200
    assert meta["hash_algorithm"] == "sha256"
    assert meta["created_at"].endswith("+00:00")
    assert [c["name"] for c in meta["columns"]] == list(df.columns)
    assert meta["stats"]["feature_0"]["mean"] == pytest.approx(df["feature_0"].mean())
    assert meta["stats"]["feature_0"]["std"] == pytest.approx(df["feature_0"].std())
    assert meta["stats"]["feature_1"]["max"] == df["feature_1"].max()
    assert "name" not in meta["stats"]
    assert meta["size_bytes"] > 0


def test_identical_content_same_id_and_nothing_new(versioner: DataVersioner) -> None:
    df = generate_synthetic_data(100, 2, 3)
    first = versioner.register(df)
    before = versioner.store.walk()
    again = versioner.register(df.copy())
    assert again == first
    assert versioner.store.walk() == before
    assert versioner.list_versions() == [first]


def test_newest_first_and_latest(versioner: DataVersioner) -> None:
    assert versioner.get_latest_version() is None
    assert versioner.list_versions() == []
    ids = [versioner.register(generate_synthetic_data(50, 2, seed)) for seed in range(4)]
    assert versioner.list_versions() == ids[::-1]
    assert versioner.list_versions(limit=2) == ids[::-1][:2]
    assert versioner.get_latest_version() == ids[-1]


def test_same_content_stored_once_under_two_names(versioner: DataVersioner) -> None:
    df = generate_synthetic_data(60, 2, 5)
    a = versioner.register(df, version_id="jan")
    b = versioner.register(df, version_id="feb")
    assert (a, b) == ("jan", "feb")
    objects = [k for k in versioner.store.walk() if k.startswith("objects/")]
    assert len(objects) == 1
    assert versioner.register(df, version_id="jan") == "jan"


def test_given_id_with_other_content_is_refused(versioner: DataVersioner) -> None:
    versioner.register(generate_synthetic_data(60, 2, 5), version_id="v1")
    before = versioner.store.walk()
    with pytest.raises(VersionExistsError, match="data version 'v1' already exists"):
        versioner.register(generate_synthetic_data(60, 2, 6), version_id="v1")
    assert versioner.store.walk() == before


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "a..b", "", " x", "x\\y", ".hidden",
                                 "x" * 200])
def test_unsafe_ids_are_refused_before_any_write(versioner: DataVersioner, bad: str) -> None:
    with pytest.raises(InvalidVersionIdError, match="unsafe data version id"):
        versioner.register(generate_synthetic_data(20, 2, 1), version_id=bad)
    assert versioner.store.walk() == []
    with pytest.raises(InvalidVersionIdError):
        versioner.load(bad)


def test_unknown_version_is_named(versioner: DataVersioner) -> None:
    with pytest.raises(VersionNotFoundError, match="unknown data version 'nope'"):
        versioner.load("nope")


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "blake2b"])
def test_algorithms(store_uri: str, storage_options: dict, algorithm: str) -> None:
    v = DataVersioner(store_uri, algorithm, storage_options)
    vid = v.register(generate_synthetic_data(30, 2, 1))
    assert v.load(vid)[1]["hash_algorithm"] == algorithm


def test_unknown_algorithm(store_uri: str) -> None:
    with pytest.raises(ConfigError, match="unknown hash algorithm 'md5'"):
        DataVersioner(store_uri, "md5")


def test_non_range_index_and_dtypes_survive(versioner: DataVersioner) -> None:
    df = pd.DataFrame({"i32": np.arange(5, dtype=np.int32), "b": [True, False] * 2 + [True],
                       "t": pd.date_range("2026-01-01", periods=5, tz="UTC")},
                      index=pd.Index(list("abcde"), name="key"))
    loaded, _ = versioner.load(versioner.register(df))
    pd.testing.assert_frame_equal(loaded, df)


def test_a_new_versioner_sees_the_same_versions(store_uri: str, storage_options: dict) -> None:
    first = DataVersioner(store_uri, storage_options=storage_options)
    vid = first.register(generate_synthetic_data(30, 2, 9))
    second = DataVersioner(store_uri, storage_options=storage_options)
    assert second.get_latest_version() == vid


def test_kept_registration_loads_equal_and_isolated(store_uri: str,
                                                    storage_options: dict) -> None:
    v = DataVersioner(store_uri, storage_options=storage_options, keep_last_load=True)
    df = generate_synthetic_data(50, 2, 4)
    vid = v.register(df)
    expected = df.copy(deep=True)
    df.loc[0, "feature_0"] = -1.0  # the caller changes its frame after registering
    kept, _ = v.load(vid)
    pd.testing.assert_frame_equal(kept, expected)
    fresh, _ = DataVersioner(store_uri, storage_options=storage_options).load(vid)
    pd.testing.assert_frame_equal(kept, fresh)
