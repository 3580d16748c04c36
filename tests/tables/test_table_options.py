"""Tables as they come (issue 18, item 6): ``data.id_columns``, ``data.exclude_columns``,
``data.csv`` options, date columns, and the warnings for string columns and target labels.
The wine and breast cancer tables, written with ids, dates and European number formats,
on both engines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_wine

from mlops.cli import main
from mlops.config import Config
from mlops.errors import ConfigError, DataValidationError
from mlops.pipeline import ingest
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests.tables.conftest import ENGINES, cancer, write_source


def wine() -> pd.DataFrame:
    """The wine table with what real exports carry: an id, a bottling date, a region."""
    df = load_wine(as_frame=True).frame
    n = len(df)
    regions = np.array(["Rhône", "Bordeaux", "Rioja"])
    return df.assign(bottle_id=[f"B-{i:05d}" for i in range(n)],
                     bottled_on=pd.date_range("2021-01-01", periods=n, freq="D")
                     .strftime("%Y-%m-%d"),
                     region=regions[df["target"].to_numpy()])


def config(tmp_path: Path, source: str, engine: str, **data: Any) -> Config:
    return Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                             "data": {"source": source, "engine": engine, **data}})


def write_csvs(folder: Path, df: pd.DataFrame, **to_csv: Any) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    half = len(df) // 2
    df.iloc[:half].to_csv(folder / "part-000.csv", index=False, **to_csv)
    df.iloc[half:].to_csv(folder / "part-001.csv", index=False, **to_csv)
    return str(folder / "*.csv")


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_id_columns_are_kept_and_never_features_and_dates_are_excluded(
        tmp_path: Path, engine: str) -> None:
    source = write_csvs(tmp_path / "src", wine())
    cfg = config(tmp_path, source, engine, id_columns=["bottle_id"],
                 exclude_columns=["bottled_on"])
    summary = run_pipeline(cfg, run_id="night-1")
    assert summary["retrained"] and summary["score"] > 0.8
    ws = Workspace.open(cfg)
    stored = [c["name"] for c in ws.versioner.get_record(summary["data_version"]).columns]
    assert "bottle_id" in stored and "bottled_on" not in stored  # kept / never stored
    record = ws.registry.get_record("night-1")
    names = [f["name"] for f in record.training().schema["features"]]
    assert "bottle_id" not in names and "bottled_on" not in names and "region" in names
    model, _ = ws.registry.load("night-1")
    raw = wine().drop(columns=["target", "bottle_id", "bottled_on"])
    assert len(model.predict(raw[names])) == len(raw)
    # The next night scores and checks drift on the features only (no schema change).
    again = run_pipeline(cfg, run_id="night-2")
    assert again["schema_change"] is None and again["scored_rows"] == \
        ws.read_result("night-1", "train")["test_rows"]  # type: ignore[index]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_date_column_is_refused_naming_it_and_exclude_columns(
        tmp_path: Path, engine: str, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    df = wine().drop(columns=["bottle_id"])
    if fmt == "parquet":
        df["bottled_on"] = pd.to_datetime(df["bottled_on"])  # a real datetime64 column
        folder = tmp_path / "src"
        folder.mkdir()
        df.to_parquet(folder / "part-000.parquet", index=False)
        source = str(folder / "*.parquet")
    else:
        source = write_csvs(tmp_path / "src", df)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, source, engine).to_dict()))
    capsys.readouterr()
    assert main(["run", "--run-id", "night-1", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "column 'bottled_on'" in err and "data.exclude_columns" in err
    assert Workspace.open(config(tmp_path, source, engine)).versioner.list_versions() == []


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_csv_options_read_a_european_export(tmp_path: Path, engine: str) -> None:
    df = wine().drop(columns=["bottle_id", "bottled_on"])
    df.loc[[5, 100], "magnesium"] = np.nan
    text_folder = tmp_path / "src"
    # Semicolons, decimal commas, '-' for missing, latin-1 text.
    source = write_csvs(text_folder, df, sep=";", decimal=",", na_rep="-",
                        encoding="latin-1")
    cfg = config(tmp_path, source, engine,
                 csv={"sep": ";", "decimal": ",", "na_values": ["-"], "encoding": "latin-1"})
    result = ingest(cfg, "night-1", Workspace.open(cfg))
    assert result.feature_kinds["alcohol"] == "numeric"
    assert result.feature_kinds["magnesium"] == "numeric"
    assert result.feature_means["alcohol"] == pytest.approx(df["alcohol"].mean())
    assert result.feature_kinds["region"] == "categorical"
    loaded, _ = Workspace.open(cfg).versioner.load(result.data_version)
    frame = loaded.compute() if engine == "dask" else loaded
    assert "Rhône" in set(frame["region"]) and int(frame["magnesium"].isna().sum()) == 2
    # Without the options the same files do not read as numbers.
    plain = config(tmp_path / "plain", source, engine)
    with pytest.raises(DataValidationError,
                       match=r"target column 'target' not found|cannot be parsed"):
        ingest(plain, "night-1", Workspace.open(plain))


def test_warnings_for_string_columns_and_target_labels(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    df = cancer()
    n = len(df)
    df["target"] = np.where(df["target"] == 1, "Benign", "Malignant").astype(object)
    df.loc[[3, 30], "target"] = "benign "  # a label that differs only by case and a space
    price = df["mean area"].round(1).astype(str).astype(object)
    price.iloc[[1, 7, 9]] = ["?", "-", "1,234.5"]
    df["area_text"] = price
    df["patient"] = [f"P{i:06d}" for i in range(n)]
    df["seen_on"] = pd.date_range("2020-01-01", periods=n, freq="D").strftime("%d/%m/%Y")
    df.loc[::7, "seen_on"] = "unknown"  # mostly dates, a few not: warned, not refused
    source = write_source(tmp_path / "src", [df], "pandas")
    cfg = config(tmp_path, source, "pandas")
    with caplog.at_level(logging.WARNING, logger="mlops.data"):
        result = ingest(cfg, "night-1", Workspace.open(cfg))
    found = "\n".join(result.warnings)
    assert "column 'area_text'" in found and "'1,234.5'" in found
    assert "column 'patient'" in found and "data.id_columns" in found
    assert "column 'seen_on'" in found and "dates" in found
    assert "differ only by case or spaces: 'Benign', 'benign '" in found
    assert len(result.warnings) == 4
    assert all(w in caplog.text for w in result.warnings)
    # Declared as an id, the column is no longer warned about (and no longer a feature).
    ids = config(tmp_path / "ids", source, "pandas", id_columns=["patient"])
    second = ingest(ids, "night-1", Workspace.open(ids))
    assert not any("'patient'" in w for w in second.warnings)
    assert "patient" not in second.feature_kinds


def test_bad_table_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'data\.id_columns' names the target column"):
        Config.from_dict({"data": {"id_columns": ["target"]}})
    with pytest.raises(ConfigError, match=r"'customer' is in both data\.id_columns and "
                                          r"data\.exclude_columns"):
        Config.from_dict({"data": {"id_columns": ["customer"],
                                   "exclude_columns": ["customer"]}})
    with pytest.raises(ConfigError, match=r"'data\.csv\.encoding' must be a Python codec name"):
        Config.from_dict({"data": {"csv": {"encoding": "klingon-8"}}})
    source = write_source(tmp_path / "src", [cancer()], "pandas")
    cfg = config(tmp_path, source, "pandas", exclude_columns=["no such column"])
    with pytest.raises(DataValidationError,
                       match=r"'data\.exclude_columns' names 'no such column'"):
        ingest(cfg, "night-1", Workspace.open(cfg))
    cfg = config(tmp_path, source, "pandas", id_columns=["customer_id"])
    with pytest.raises(DataValidationError, match=r"'data\.id_columns' names 'customer_id'"):
        ingest(cfg, "night-1", Workspace.open(cfg))
