"""The read-only commands a person types load no data-science library.

Each command runs in a fresh Python process (as `mlops ...` does) on a small local
store, and the process reports which of pandas, scikit-learn, scipy and pyarrow it
imported: none may be (nor numpy, which alone would cost a third of the budget
on this machine). Their timing is benchmark B10 (`make bench`), not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.cli import build_parser
from mlops.data import generate_synthetic_data
from mlops.monitor import ModelMonitor
from mlops.store.registry import ModelRegistry
from mlops.store.versioner import DataVersioner

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sklearn", "scipy", "pyarrow", "numpy")

#: Runs the CLI's entry point as the console script does, then writes the exit code
#: and the heavy modules it loaded to the file named by $PROBE_OUT.
_PROBE = """
import json, os, sys
from mlops.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(os.environ["PROBE_HEAVY"].split()))
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump({"code": code, "heavy": heavy}, f)
"""


def _subcommands() -> set[str]:
    parser = build_parser()
    assert parser._subparsers is not None
    return {name for action in parser._subparsers._group_actions
            for name in (getattr(action, "choices", None) or {})}


#: Label -> arguments; "status" joins when the CLI has it (it is being added).
COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "versions-data": ["versions", "data"],
    "versions-models": ["versions", "models", "--json"],
    "show-data": ["show", "data", "DATA"],
    "show-model": ["show", "model", "MODEL"],
    "history": ["history"],
    "config": ["config"],
}
if "status" in _subcommands():
    COMMANDS["status"] = ["status"]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A local store with two data versions, two models (one promoted) and metrics."""
    root = tmp_path_factory.mktemp("quick-store")
    versioner = DataVersioner(root / "data")
    registry = ModelRegistry(root / "models")
    monitor = ModelMonitor(root / "monitoring")
    data = [versioner.register(generate_synthetic_data(40, 3, seed)) for seed in (1, 2)]
    for i, vid in enumerate(data):
        registry.save({"weights": [i]}, f"model-{i}", {"accuracy": 0.8 + i / 10,
                                                       "data_version": vid})
        monitor.record_metrics(0.8 + i / 10, data_version=vid, model_version=f"model-{i}")
    registry.set_alias("model-1", reason="test")
    return root, data[-1], "model-1"


def _run(args: list[str], store: Path, out: Path) -> tuple[dict[str, object], str]:
    env = {**os.environ, "MLOPS_STORAGE_URI": str(store), "PROBE_OUT": str(out),
           "PROBE_HEAVY": " ".join(HEAVY), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert out.exists(), proc.stderr
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.parametrize("label", sorted(COMMANDS))
def test_read_only_command_imports_no_heavy_library(
        label: str, small_store: tuple[Path, str, str], tmp_path: Path) -> None:
    store, data_id, model_id = small_store
    args = [{"DATA": data_id, "MODEL": model_id}.get(a, a) for a in COMMANDS[label]]
    probe, stdout = _run(args, store, tmp_path / "probe.json")
    # status answers 3 (unhealthy) on this store: it holds no run, only versions.
    assert probe["code"] == (3 if label == "status" else 0), stdout
    assert probe["heavy"] == [], f"mlops {' '.join(args)} imported {probe['heavy']}"
    # The command did its work (the output is not an empty shell).
    expected = {"help": "versions", "versions-data": data_id, "versions-models": model_id,
                "show-data": data_id, "show-model": model_id, "history": "model-1",
                "config": "storage:", "status": "no successful run yet"}.get(label)
    if expected:
        assert expected in stdout


def test_probe_sees_heavy_imports(small_store: tuple[Path, str, str], tmp_path: Path) -> None:
    """The probe itself works: loading a version's data does import pandas and pyarrow."""
    store, data_id, _ = small_store
    code = ("from mlops.store.versioner import DataVersioner; "
            f"DataVersioner({str(store / 'data')!r}).load({data_id!r})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(sorted("
                          "{m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow'}))"],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['pandas', 'pyarrow']"
