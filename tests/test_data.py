"""Data: deterministic synthetic data, source loading and validation messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import column_stats, feature_means, generate_synthetic_data, load_source
from mlops.errors import DataValidationError


def test_synthetic_is_deterministic_and_balanced() -> None:
    a = generate_synthetic_data(500, 5, 7)
    pd.testing.assert_frame_equal(a, generate_synthetic_data(500, 5, 7))
    assert not a.equals(generate_synthetic_data(500, 5, 8))
    assert list(a.columns) == [f"feature_{i}" for i in range(5)] + ["target"]
    assert a["target"].dtype == np.int64 and 0.2 < a["target"].mean() < 0.8
    assert all(a[f"feature_{i}"].dtype == np.float64 for i in range(5))


def test_shift_and_scale_move_the_distribution() -> None:
    base = generate_synthetic_data(4000, 3, 1)
    shifted = generate_synthetic_data(4000, 3, 1, shift=1.0)
    wide = generate_synthetic_data(4000, 3, 1, scale=2.0)
    assert shifted["feature_0"].mean() - base["feature_0"].mean() == pytest.approx(1.0, abs=0.1)
    assert wide["feature_0"].std() / base["feature_0"].std() == pytest.approx(2.0, rel=0.05)
    assert wide["feature_0"].mean() == pytest.approx(base["feature_0"].mean(), abs=0.1)


def test_load_csv_parquet_and_glob(tmp_path: Path) -> None:
    df = generate_synthetic_data(40, 2, 1)
    df.iloc[:20].to_csv(tmp_path / "part-1.csv", index=False)
    df.iloc[20:].to_csv(tmp_path / "part-2.csv", index=False)
    df.to_parquet(tmp_path / "all.parquet")
    loaded = load_source(str(tmp_path / "part-*.csv"))
    pd.testing.assert_frame_equal(loaded, df, check_exact=False)
    pd.testing.assert_frame_equal(load_source(str(tmp_path / "all.parquet")), df)
    assert len(load_source(f"file://{tmp_path}/all.parquet")) == 40


def _csv(tmp_path: Path, text: str, name: str = "d.csv") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize(("text", "message"), [
    ("a,b\n1,0\n2,1\n", r"target column 'target' not found in .*d\.csv \(columns: a, b\)"),
    ("a,target\n", r"d\.csv is empty: no rows"),
    ("a,target\n1,0\n2,\n", r"target column 'target' has 1 missing value\(s\) in .*d\.csv"),
    ("a,target\n1,1\n2,1\n", r"target column 'target' has a single class \(.*1.*\)"),
    ("a,target\n,0\n,1\n", r"feature column 'a' in .*d\.csv has only missing values"),
    ("a,b,target\n1,2,x\n2,2,\n", r"target column 'target' has 1 missing value"),
    ("target\n0\n1\n", r"has no feature columns besides 'target'"),
])
def test_validation_names_the_column_and_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        load_source(_csv(tmp_path, text))


def test_empty_and_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"data file .*empty\.csv is empty"):
        load_source(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DataValidationError, match=r"data source .*nothing-\*\.csv not found"):
        load_source(str(tmp_path / "nothing-*.csv"))


def test_files_with_different_columns_are_named(tmp_path: Path) -> None:
    _csv(tmp_path, "a,target\n1,0\n2,1\n", "p1.csv")
    _csv(tmp_path, "b,target\n1,0\n2,1\n", "p2.csv")
    with pytest.raises(DataValidationError, match=r"data file .*p2\.csv has columns"):
        load_source(str(tmp_path / "p*.csv"))


def test_stats_and_means() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"], "target": [0, 1, 0]})
    stats = column_stats(df)
    assert stats["x"] == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert "s" not in stats
    assert feature_means(df.drop(columns=["s"]), "target") == {"x": 2.0}
