"""Overhead removed from ``mlops run`` (issue 24 item 4; timed in ``make bench`` B6/B11):
what is now computed on the other core while the model fits must be what was computed
after it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.run import mixed_frame
from mlops.config import Config
from mlops.engines.pandas import PandasTrainer
from mlops.pipeline import ingest
from mlops.store.workspace import Workspace
from mlops.training import MISSING_CATEGORY, as_strings


def test_drift_reference_built_during_fit_is_the_monitors(tmp_path: Path) -> None:
    src = tmp_path / "mixed.parquet"
    mixed_frame(3_000).to_parquet(src)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src)},
                            "monitoring": {"psi_bins": 7, "reference_sample_size": 500}})
    ws = Workspace.open(cfg)
    ingested = ingest(cfg, "run-1", ws)
    trainer = PandasTrainer(cfg, ws, ingested)
    trainer.fit()
    during = ws.monitor.reference_document(**trainer.reference())
    after = ws.monitor.reference_document(trainer.reference()["feature_means"],
                                          reference_frame=trainer.x_train)
    assert set(during["distribution"]["features"]) == set(trainer.features)
    for doc in (during, after):
        doc.pop("updated_at")
    assert json.dumps(during, sort_keys=True) == json.dumps(after, sort_keys=True)


def _as_strings_before(x: Any) -> Any:
    """``mlops.training.as_strings`` as it was (str() of every value): the reference."""
    frame = pd.DataFrame(x).astype(object)
    return frame.where(frame.notna(), MISSING_CATEGORY).astype(str).to_numpy(dtype=object)


def test_as_strings_fast_path_gives_what_str_of_every_value_gave() -> None:
    rng = np.random.default_rng(0)
    cases: dict[str, Any] = {
        "object, None": pd.DataFrame({"a": pd.Series(["x", "y", None, "z"] * 25, dtype=object)}),
        "object, NaN": pd.DataFrame({"a": pd.Series(["x", np.nan, "y", "w"] * 25, dtype=object)}),
        "str dtype": pd.DataFrame({"a": pd.Series(["x", None, "y", "w"] * 25, dtype="str")}),
        "string dtype": pd.DataFrame({"a": pd.Series(["x", None, "y", "w"] * 25,
                                                     dtype="string")}),
        "category": pd.DataFrame({"a": pd.Categorical(["x", None, "y", "w"] * 25)}),
        "mixed": pd.DataFrame({"a": pd.Series([1, "x", 2.5, None] * 25, dtype=object)}),
        "numbers": pd.DataFrame({"a": rng.integers(0, 5, 100), "b": rng.normal(size=100)}),
        "bool": pd.DataFrame({"a": pd.Series([True, False, None, True] * 25, dtype=object)}),
        "all missing": pd.DataFrame({"a": pd.Series([None] * 10, dtype=object)}),
        "no rows": pd.DataFrame({"a": pd.Series([], dtype=object)}),
        "ndarray": np.array([["x", None], ["y", "z"]], dtype=object),
    }
    for name, x in cases.items():
        got, want = as_strings(x), _as_strings_before(x)
        assert got.dtype == want.dtype == object and got.shape == want.shape, name
        assert (got == want).all(), name
        assert all(type(v) is str for v in got.ravel()), name
