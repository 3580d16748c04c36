"""Models written by the release before serving exports keep loading and predicting the same.

``tests/data/store-0.2`` was written once by ``tests/data/make_store_0_2.py`` (at 9436faf):
a random forest and a hist_gradient_boosting model of the pandas engine on a mixed-type
frame, whose pickles refer to ``mlops.training.as_float`` and ``as_strings``, and the Dask
engine's LightGBM regressor, whose first step is ``mlops.training.FrameCodes`` with the
category codes counted at ingest. ``store-0.2.expected.json`` holds what each predicted
then on the saved raw inputs (missing values and an unseen category included). A later
release that moves those helpers must keep these import paths importable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.config import Config
from mlops.store.workspace import Workspace

DATA = Path(__file__).parent / "data"
STORE = DATA / "store-0.2"
EXPECTED = json.loads((DATA / "store-0.2.expected.json").read_text())
INPUTS = {"mixed-rf": "mixed", "mixed-hgb": "mixed", "dask-lgbm": "dask"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A copy of the fixture store (tests never change the committed one)."""
    root = tmp_path_factory.mktemp("compat") / "store"
    shutil.copytree(STORE, root)
    return Workspace.open(Config.from_dict({"storage": {"uri": str(root)}}))


def raw_input(name: str) -> pd.DataFrame:
    return pd.read_parquet(DATA / f"store-0.2.inputs-{name}.parquet")


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_models_of_the_0_2_store_predict_as_they_did(store: Workspace, version: str) -> None:
    model, record = store.registry.load(version)  # verifies the artifact's sha256
    frame = raw_input(INPUTS[version])
    expected = EXPECTED[version]
    assert np.asarray(model.predict(frame)).tolist() == expected["predict"]
    if "predict_proba" in expected:
        assert np.asarray(model.predict_proba(frame)).tolist() == expected["predict_proba"]
    assert record["metadata"]["schema"]["features"]


def test_the_fixture_holds_each_kind_of_model(store: Workspace) -> None:
    """What the fixture covers: the helpers by import path, and LightGBM's category codes."""
    from lightgbm import LGBMRegressor

    from mlops.training import FrameCodes, as_float, as_strings

    rf, _ = store.registry.load("mixed-rf")
    funcs = {step.func for _, t, _ in rf.named_steps["prep"].transformers_
             if hasattr(t, "steps") for _, step in t.steps if hasattr(step, "func")}
    assert funcs == {as_float, as_strings}
    lgbm, _ = store.registry.load("dask-lgbm")
    assert isinstance(lgbm[0], FrameCodes) and isinstance(lgbm[-1], LGBMRegressor)
    assert lgbm[0].categories["city"] == ["north", "south", "east"]  # codes in this order
    assert store.registry.get_alias() == "dask-lgbm"
