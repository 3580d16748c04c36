"""The original ``src.main`` API, kept working as a thin shim over :mod:`mlops`.

``python -m src.main --config FILE`` runs the pipeline once and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from mlops.config import read_config_file
from mlops.data import generate_synthetic_data
from mlops.errors import MLOpsError
from mlops.monitor import ModelMonitor
from mlops.observe.logconf import setup_logging
from mlops.runner import run_pipeline
from mlops.store.registry import ModelRegistry
from mlops.store.versioner import DataVersioner
from mlops.training import train_model

__all__ = [
    "DataVersioner",
    "ModelMonitor",
    "ModelRegistry",
    "_load_config",
    "_setup_logging",
    "generate_synthetic_data",
    "main",
    "run_pipeline",
    "train_model",
]


def _load_config(config_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a YAML config; return it as a dict with every default filled in.

    Raises:
        FileNotFoundError: The file does not exist.
        ConfigError: Invalid YAML, unknown key or wrong type (names the key).
    """
    from mlops.config import Config

    return Config.from_dict(read_config_file(config_path)).to_dict()


def _setup_logging(level: str = "INFO",
                   log_file: str | os.PathLike[str] | None = None) -> logging.Logger:
    """Configure the application's logging (the root logger): the console and, when
    ``log_file`` is given, a rotating file; the user's own log lines reach both too."""
    return setup_logging(level, log_file, root=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.main [--config FILE]``: run the pipeline and print its summary."""
    parser = argparse.ArgumentParser(prog="python -m src.main",
                                     description="Run the nightly pipeline once.")
    parser.add_argument("--config", default=None, help="YAML config (default: embedded)")
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            cfg = _load_config(args.config)
            _setup_logging(cfg["logging"]["level"], cfg["logging"]["file"])
        summary = run_pipeline(args.config)
    except MLOpsError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
