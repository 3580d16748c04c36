"""Bad input is refused before the first write, with exit 2 and one line naming the key.

Issue #13 items 5, 6, 8 and 9: seeds out of range, an unwritable logging.file or report
folder, inf/1e308/too few rows in the data, training.params the estimator refuses, a
billion-laughs or oversized config, a fit that never ends, ``gc --grace-seconds nan``.
Each runs the real CLI in this process and checks that the store is still empty.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.cli import main
from mlops.config import MAX_CONFIG_BYTES, ConfigError, read_config_file
from mlops.errors import TrainingTimeoutError
from mlops.training import train_model


def _config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {"storage": {"uri": str(tmp_path / "store")},
                           "data": {"n_samples": 200, "n_features": 3}}
    for name, values in sections.items():
        doc[name] = {**doc.get(name, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _store_files(tmp_path: Path) -> list[str]:
    """The store's files but the failure records of runs (``runs/<id>/run.json``), which a
    failed `mlops run` writes for `mlops status` whatever its exit code."""
    root = tmp_path / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name != "run.json") if root.exists() else []


@pytest.mark.parametrize(("sections", "key"), [
    ({"data": {"random_state": -1}}, "data.random_state"),
    ({"training": {"random_state": 2**40}}, "training.random_state"),
    ({"training": {"max_seconds": 0}}, "training.max_seconds"),
    ({"training": {"params": {"C": -1.0}}}, "training.params.C"),
    ({"training": {"model_type": "random_forest", "params": {"n_estimators": 1e20}}},
     "training.params.n_estimators"),
    ({"training": {"params": {"no_such": 1}}}, "training.params.no_such"),
])
def test_bad_settings_exit_2_before_any_write(tmp_path: Path, sections: dict[str, Any],
                                              key: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "run", "--config", str(_config(tmp_path, **sections)))
    assert code == 2, err
    assert key in err and len(err.strip().splitlines()) == 1, err
    assert not [f for f in _store_files(tmp_path) if not f.startswith("runs/")] \
        and not [f for f in _store_files(tmp_path) if f.endswith("ingest.json")]


@pytest.mark.parametrize(("values", "column"), [
    ([np.inf] + [0.5] * 39, "x"),
    ([1e308] + [0.5] * 39, "x"),
    ([-1e308] + [0.5] * 39, "x"),
])
def test_unusable_values_exit_2_before_any_write(tmp_path: Path, values: list[float],
                                                 column: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "in.csv"
    pd.DataFrame({column: values, "target": [0, 1] * 20}).to_csv(csv, index=False)
    cfg = _config(tmp_path, data={"source": str(csv)})
    code, err = _run(capsys, "run", "--config", str(cfg))
    assert code == 2 and f"feature column '{column}'" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _store_files(tmp_path) == []


def test_two_rows_exit_2_before_any_write(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "in.csv"
    pd.DataFrame({"x": [0.1, 0.2], "target": [0, 1]}).to_csv(csv, index=False)
    code, err = _run(capsys, "run", "--config", str(_config(tmp_path, data={"source": str(csv)})))
    assert code == 2 and "too few" in err and len(err.strip().splitlines()) == 1, err
    assert _store_files(tmp_path) == []


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = "storage:\n  options:\n" + "".join(f"    {line}\n" for line in lines)
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="YAML nodes with aliases expanded"):
        read_config_file(path)
    assert time.monotonic() - started < 5  # bounded work, not 9**10 nodes


def test_oversized_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("storage:\n  options:\n    pad: '" + "x" * MAX_CONFIG_BYTES + "'\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_config_file(path)


def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("storage:\n  options: &x\n    again: *x\n")
    with pytest.raises(ConfigError, match=r"nodes|nested"):
        read_config_file(path)


def test_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("storage:\n  options: &o {project: p}\ndata:\n  source: synthetic\n")
    assert read_config_file(path)["storage"]["options"] == {"project": "p"}


def test_training_is_time_boxed() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = pd.Series(rng.integers(0, 2, 400))
    config = {"training": {"model_type": "random_forest", "max_seconds": 0.3,
                           "params": {"n_estimators": 10**6}}}
    started = time.monotonic()
    with pytest.raises(TrainingTimeoutError, match=r"training\.max_seconds"):
        train_model(x, y, config)
    assert time.monotonic() - started < 10


def test_unwritable_log_file_is_exit_2(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = _config(tmp_path, logging={"file": str(blocker / "sub" / "mlops.log")})
    code, err = _run(capsys, "versions", "data", "--config", str(cfg))
    assert code == 2 and "logging.file" in err, err


def test_unwritable_report_output_is_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = str(_config(tmp_path))
    assert _run(capsys, "run", "--config", cfg)[0] == 0
    code, err = _run(capsys, "report", "--config", cfg, "--output", str(blocker / "out"))
    assert code == 2 and "report --output" in err, err


@pytest.mark.parametrize("value", ["nan", "-1"])  # inf keeps everything: allowed
def test_gc_grace_seconds_must_be_finite(tmp_path: Path, value: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store" / "data" / "objects" / "ab"
    store.mkdir(parents=True)
    young = store / ".tmp-inflight"
    young.write_bytes(b"x")
    code, err = _run(capsys, "gc", "--config", str(_config(tmp_path)),
                     f"--grace-seconds={value}")
    assert code == 2 and "grace period must be >= 0 seconds" in err, err
    assert young.exists()
