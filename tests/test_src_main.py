"""The original ``src.main`` API keeps working."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import src.main as legacy

ROOT = Path(__file__).resolve().parents[1]


def test_exports() -> None:
    for name in ["_load_config", "_setup_logging", "generate_synthetic_data", "train_model",
                 "run_pipeline", "main", "DataVersioner", "ModelRegistry", "ModelMonitor"]:
        assert callable(getattr(legacy, name)), name


def test_load_config_returns_a_dict_and_raises_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("monitoring:\n  drift_threshold: 0.2\n")
    cfg = legacy._load_config(str(path))
    assert isinstance(cfg, dict)
    assert cfg["monitoring"]["drift_threshold"] == 0.2
    assert cfg["training"]["model_type"] == "logistic"
    with pytest.raises(FileNotFoundError):
        legacy._load_config(str(tmp_path / "missing.yaml"))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root and ``mlops`` loggers back as they were (the seed API configures root)."""
    root, package = logging.getLogger(), logging.getLogger("mlops")
    saved = (root.level, list(root.handlers), package.level, list(package.handlers),
             package.propagate)
    yield
    for h in root.handlers:
        if h not in saved[1]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[0])
    package.setLevel(saved[2])
    package.handlers[:] = saved[3]
    package.propagate = saved[4]


def ours(logger: logging.Logger) -> list[str]:
    return [type(h).__name__ for h in logger.handlers if getattr(h, "_mlops_handler", False)]


def test_setup_logging_console_and_rotating_file(tmp_path: Path, restore_logging: Any) -> None:
    log_file = tmp_path / "logs" / "mlops.log"
    logger = legacy._setup_logging("DEBUG", str(log_file))
    logger.getChild("mlops.test").debug("hello file")
    assert sorted(ours(logger)) == ["RotatingFileHandler", "_StderrHandler"]
    for h in logger.handlers:
        h.flush()
    assert "hello file" in log_file.read_text()
    legacy._setup_logging("INFO")  # replaces, does not duplicate, and closes the file handler
    assert ours(logger) == ["_StderrHandler"]
    assert logger.level == logging.INFO


def test_setup_logging_configures_the_application_root_logger(tmp_path: Path,
                                                              restore_logging: Any) -> None:
    root = logging.getLogger()
    log_file = tmp_path / "app.log"
    assert legacy._setup_logging("INFO", str(log_file)) is root
    logging.getLogger("my_app").info("a line of the user's own")
    logging.getLogger("mlops.pipeline").info("a line of mlops")
    for h in root.handlers:
        h.flush()
    text = log_file.read_text()
    assert "my_app: a line of the user's own" in text
    assert "mlops.pipeline: a line of mlops" in text


def test_python_m_src_main(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  uri: {tmp_path / 'store'}\ndata:\n  n_samples: 200\n"
                   "  n_features: 3\n")
    proc = subprocess.run([sys.executable, "-m", "src.main", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["retrained"] is True
    assert {"data_version", "model_version", "retrained", "accuracy"} <= set(summary)
