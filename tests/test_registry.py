"""ModelRegistry: save/load, integrity check before unpickling, no overwrite, order."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression

from mlops.data import generate_synthetic_data, split_xy
from mlops.errors import (
    IntegrityError,
    InvalidVersionIdError,
    VersionExistsError,
    VersionNotFoundError,
)
from mlops.store.filesystem import open_store
from mlops.store.registry import ModelRegistry


@pytest.fixture
def registry(store_uri: str, storage_options: dict) -> ModelRegistry:
    return ModelRegistry(open_store(store_uri, storage_options).child("models"))


def fitted() -> LogisticRegression:
    x, y = split_xy(generate_synthetic_data(100, 3, 0), "target")
    return LogisticRegression().fit(x, y)


def test_save_load_round_trip(registry: ModelRegistry) -> None:
    model = fitted()
    registry.save(model, "m1", {"accuracy": 0.9})
    loaded, record = registry.load("m1")
    x, _ = split_xy(generate_synthetic_data(20, 3, 1), "target")
    assert (loaded.predict(x) == model.predict(x)).all()
    assert record["metadata"] == {"accuracy": 0.9}
    assert len(record["sha256"]) == 64
    assert record["created_at"].endswith("+00:00")


def test_refuses_to_overwrite(registry: ModelRegistry) -> None:
    registry.save(fitted(), "m1", {"n": 1})
    before = registry.store.walk()
    with pytest.raises(VersionExistsError, match="model version 'm1' already exists"):
        registry.save(fitted(), "m1", {"n": 2})
    assert registry.store.walk() == before
    assert registry.load("m1")[1]["metadata"] == {"n": 1}


def test_tampered_artifact_is_refused_before_unpickling(registry: ModelRegistry) -> None:
    registry.save(fitted(), "m1")
    artifact = registry.get_metadata("m1")["artifact"]
    # A payload that would run code if unpickled: the check must come first.
    registry.store.write_bytes(artifact, b"cos\nsystem\n(S'touch /tmp/pwned-by-mlops'\ntR.")
    with pytest.raises(IntegrityError, match="model artifact of version 'm1' failed its "
                                             "integrity check"):
        registry.load("m1")


def test_order_latest_and_unknown(registry: ModelRegistry) -> None:
    assert registry.get_latest_version() is None
    for vid in ["b", "a", "c"]:
        registry.save(fitted(), vid)
    assert registry.list_versions() == ["c", "a", "b"]
    assert registry.get_latest_version() == "c"
    with pytest.raises(VersionNotFoundError, match="unknown model version 'zzz'"):
        registry.load("zzz")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "..", "_index"])
def test_unsafe_ids(registry: ModelRegistry, bad: str) -> None:
    with pytest.raises(InvalidVersionIdError, match="unsafe model version id"):
        registry.save(fitted(), bad)
    assert registry.store.walk() == []
