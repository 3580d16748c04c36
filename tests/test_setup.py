"""Set-up hygiene: `make run` installs once per pyproject.toml change; clean metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make_dry_run(tree: Path, target: str) -> str:
    """What `make -n TARGET` would run in ``tree`` (nothing is run)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run([make, "-n", "-C", str(tree), target], capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml with a .venv whose python exists (never run)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(ROOT / "mk", tmp_path / "mk")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    past = time.time() - 100
    os.utime(python, (past, past))
    os.utime(tmp_path / "pyproject.toml", (past, past))
    return tmp_path


def test_make_run_installs_once_per_pyproject_change(tree: Path) -> None:
    first = _make_dry_run(tree, "run")
    assert "pip install --quiet -e ." in first and "mlops run" in first
    # What the first run leaves behind: the stamp, newer than pyproject.toml.
    (tree / ".venv" / ".installed-run").write_text("")
    second = _make_dry_run(tree, "run")
    assert "pip" not in second and "mlops run" in second
    # Editing pyproject.toml (new dependency) installs again.
    future = time.time() + 100
    os.utime(tree / "pyproject.toml", (future, future))
    assert "pip install --quiet -e ." in _make_dry_run(tree, "run")


def test_package_builds_with_spdx_license_and_no_warnings(tmp_path: Path) -> None:
    """A real isolated build (the build requirement's setuptools): PEP 639 metadata."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("mlops", "jobs", "src"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                         timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "deprecated" not in out.stderr.lower(), out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("mlops-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License: " not in metadata  # the deprecated table form is gone
