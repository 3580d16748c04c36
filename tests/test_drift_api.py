"""The public drift API, ``mlops.drift_report``: the pipeline's report, for notebooks."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlops
from mlops.config import Config
from mlops.data import split_xy
from mlops.drift import DriftReport
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from mlops.training import split

README = Path(__file__).resolve().parent.parent / "README.md"


def mixed(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """4 numeric and 2 categorical features, 5% missing, a target; ``shift`` moves
    ``num_0`` and re-weights ``cat_0``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"num_{i}": rng.normal(i + (shift if i == 0 else 0.0), 1.0, rows)
                          for i in range(4)})
    p = [0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]
    frame["cat_0"] = pd.Series(rng.choice(["a", "b", "c"], rows, p=p), dtype=object)
    frame["cat_1"] = pd.Series(rng.choice(["x", "y"], rows), dtype=object)
    for col in list(frame.columns):
        frame.loc[rng.random(rows) < 0.05, col] = None
    frame["target"] = (frame["num_1"].fillna(1) + rng.normal(0, 1, rows) > 1).astype(np.int64)
    return frame


@pytest.mark.parametrize(("method", "threshold"), [("auto", None), ("psi", 0.1),
                                                   ("ks", None)])
def test_report_equals_the_one_the_pipeline_records(tmp_path: Path, method: str,
                                                    threshold: float | None) -> None:
    night1, night2 = mixed(3000, 1), mixed(2000, 2, shift=0.5)
    night1.to_parquet(tmp_path / "n1.parquet")
    night2.to_parquet(tmp_path / "n2.parquet")
    monitoring: dict[str, object] = {"drift_method": method}
    if threshold is not None:
        monitoring["psi_threshold"] = threshold
    doc = {"storage": {"uri": str(tmp_path / "store")}, "monitoring": monitoring}
    cfg1 = Config.from_dict({**doc, "data": {"source": str(tmp_path / "n1.parquet")}})
    cfg2 = Config.from_dict({**doc, "data": {"source": str(tmp_path / "n2.parquet")}})
    assert run_pipeline(cfg1, run_id="night-1")["retrained"]
    run_pipeline(cfg2, run_id="night-2")
    recorded = Workspace.open(cfg2).read_result("night-2", "monitor-check")["drift_report"]

    # The same frames: the training split of night 1 (as the train step splits it) and
    # night 2's features.
    x, y = split_xy(night1, "target")
    x_train = split(x, y, cfg1.data.test_size, cfg1.training.random_state)[0]
    ours = mlops.drift_report(x_train, night2.drop(columns="target"), method=method,
                              threshold=threshold)
    assert isinstance(ours, DriftReport)
    # The recorded report lists the features in the order of the stored reference (JSON
    # with sorted keys); ours in column order. Everything else is identical.
    mine = ours.to_dict()
    assert [f["feature"] for f in mine["features"]] == list(x_train.columns)
    by_name = lambda doc: {f["feature"]: f for f in doc.pop("features")}  # noqa: E731
    assert by_name(mine) == by_name(recorded)
    assert mine == recorded
    assert "num_0" in ours.drifted_features and "cat_0" in ours.drifted_features
    assert "num_2" not in ours.drifted_features


def test_dask_frames_go_through_sketches_and_agree() -> None:
    dd = pytest.importorskip("dask.dataframe")
    reference, current = mixed(6000, 3).drop(columns="target"), \
        mixed(6000, 4, shift=0.5).drop(columns="target")
    plain = mlops.drift_report(reference, current, method="wasserstein")
    sketched = mlops.drift_report(dd.from_pandas(reference, npartitions=3),
                                  dd.from_pandas(current, npartitions=2), method="wasserstein")
    assert [f.feature for f in sketched.features] == [f.feature for f in plain.features]
    assert sketched.drifted_features == plain.drifted_features == ["num_0", "cat_0"]
    for a, b in zip(sketched.features, plain.features, strict=True):
        assert a.kind == b.kind and a.method == b.method
        assert a.statistic == pytest.approx(b.statistic, abs=0.02)
        assert a.missing_rate == pytest.approx(b.missing_rate)
    assert sketched.reference_rows == plain.reference_rows == 6000


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "chi2"}, r"method='chi2' is not a drift method"),
    ({"method": "ks", "threshold": 1.5}, r"threshold=1\.5 .*'ks'.*ks_p_value"),
    ({"method": "psi", "threshold": 0}, r"threshold=0 .*'psi'.*psi_threshold"),
    ({"threshold": -0.1}, r"threshold=-0\.1 .*'auto'.*wasserstein_threshold"),
    ({"threshold": "high"}, r"threshold='high'"),
])
def test_bad_method_or_threshold_is_a_value_error_naming_it(kwargs: dict[str, object],
                                                            match: str) -> None:
    frame = mixed(1500, 5).drop(columns="target")
    with pytest.raises(ValueError, match=match):
        mlops.drift_report(frame, frame, **kwargs)  # type: ignore[arg-type]


def test_frames_of_another_type_are_refused() -> None:
    frame = mixed(200, 5).drop(columns="target")
    with pytest.raises(ValueError, match="current is a dict"):
        mlops.drift_report(frame, {"num_0": [1.0]})


def test_readme_example_runs_and_prints_what_it_says() -> None:
    text = README.read_text()
    block = re.search(r"<!-- drift-report-example.*?-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "README lost its drift_report example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "['income']" and lines[1] == "True"
    assert [line.split()[0] for line in lines[2:]] == ["income", "age", "plan"]
