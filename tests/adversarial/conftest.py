"""Helpers of the adversarial tests: a workspace config file and the CLI as a function."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import cli
from mlops.config import load_config
from mlops.store.workspace import Workspace

#: ``(exit code, parsed --json stdout or None, stderr)``.
CliResult = tuple[int, Any, str]


@pytest.fixture
def config_file(store_uri: str, storage_options: dict[str, Any], tmp_path: Path) -> Path:
    """A config file for the store under test (small synthetic data)."""
    path = tmp_path / "mlops.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": store_uri, "options": storage_options},
                                    "data": {"n_samples": 120, "n_features": 2},
                                    "promotion": {"tolerance": 1.0}}))
    return path


@pytest.fixture
def workspace(config_file: Path) -> Workspace:
    """The workspace of ``config_file``."""
    return Workspace.open(load_config(config_file))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str],
            config_file: Path) -> Callable[..., CliResult]:
    """Run ``mlops <argv> --config <config_file>`` in process."""
    def run(*argv: str) -> CliResult:
        code = cli.main([*argv, "--config", str(config_file)])
        out, err = capsys.readouterr()
        try:
            parsed = json.loads(out) if out.strip() else None
        except ValueError:
            parsed = None
        return code, parsed, err
    return run
