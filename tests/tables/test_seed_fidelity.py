"""Seed fidelity (issue 18, item 10): the documented seed API returns what it was given."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.tree import DecisionTreeClassifier

from mlops.errors import DataValidationError
from mlops.store.registry import ModelRegistry
from mlops.store.versioner import DataVersioner


def test_load_returns_the_metadata_the_caller_saved(tmp_path: Path) -> None:
    wine = load_wine(as_frame=True)
    model = DecisionTreeClassifier(random_state=0).fit(wine.data, wine.target)
    registry = ModelRegistry(tmp_path / "models")
    registry.save(model, "v1", {"accuracy": 0.91, "id": "caller's own", "notes": ["a"]})
    loaded, meta = registry.load("v1")
    assert meta["accuracy"] == 0.91 and meta["notes"] == ["a"]
    assert meta["id"] == "caller's own"  # the caller's key wins over the registry's
    # The registry's fields beside it.
    assert meta["sha256"] and meta["created_at"] and meta["model_class"] == "DecisionTreeClassifier"
    assert meta["metadata"] == {"accuracy": 0.91, "id": "caller's own", "notes": ["a"]}
    assert (loaded.predict(wine.data) == model.predict(wine.data)).all()


def test_register_of_mixed_python_types_names_the_column(tmp_path: Path) -> None:
    wine = load_wine(as_frame=True).frame
    versioner = DataVersioner(tmp_path / "data")
    mixed = wine.assign(batch=pd.Series([1 if i % 2 else "x" for i in range(len(wine))],
                                        dtype=object))
    with pytest.raises(DataValidationError, match=r"column 'batch' mixes value types "
                                                  r"\(int, str\)"):
        versioner.register(mixed)
    assert versioner.list_versions() == []
    assert not list((tmp_path / "data").rglob("*.parquet"))
    # Integers and floats together are one numeric column: stored as before.
    ok = wine.assign(batch=pd.Series([1 if i % 2 else 2.5 for i in range(len(wine))],
                                     dtype=object))
    vid = versioner.register(ok)
    assert versioner.load(vid)[0]["batch"].tolist() == ok["batch"].tolist()
