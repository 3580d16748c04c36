"""A virtual environment without ``mlops``: what a user's model server has installed.

Created once (``python -m venv`` in a cache folder outside the repository, named by a
hash of its requirements, so a change of versions makes a new one) and reused by every
later session; pip installs by name from the package index. It holds only what a model
server image holds: scikit-learn, pandas, numpy, joblib, pyarrow and lightgbm at this
environment's versions (a pickle loads with the versions it was written with), and
``mlflow-skinny`` for the MLflow format. Frames go in and out as Parquet files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

#: Packages pinned to this environment's versions.
PINNED = ("scikit-learn", "pandas", "numpy", "joblib", "pyarrow", "lightgbm")
#: The MLflow client without its server (the pyfunc loader and the sklearn flavor).
UNPINNED = ("mlflow-skinny",)
#: Seconds pip may take to create the environment (a fresh machine downloads ~100 MB).
INSTALL_TIMEOUT = 900


def requirements() -> list[str]:
    """The environment's requirement lines."""
    return [f"{name}=={version(name)}" for name in PINNED] + list(UNPINNED)


def cache_root() -> Path:
    """``$MLOPS_TEST_ENVS`` or ``~/.cache/mlops-test-envs`` (outside the repository)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops-test-envs"
    return Path(os.environ.get("MLOPS_TEST_ENVS", default))


def ensure_env() -> Path:
    """The environment's python, creating the environment when it is missing.

    A finished environment has ``ready.json`` (written last); a half-made one (an
    interrupted install) is made again.
    """
    reqs = requirements()
    key = hashlib.sha256(json.dumps([sys.version_info[:2], reqs]).encode()).hexdigest()[:16]
    home = cache_root() / key
    python = home / "bin" / "python"
    if (home / "ready.json").exists():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    # Two sessions at once (two checkouts, CI jobs on one runner) build it once.
    with open(home.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "ready.json").exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(home)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *reqs], check=True,
                           timeout=INSTALL_TIMEOUT)
            (home / "ready.json").write_text(json.dumps({"requirements": reqs}))
    return python


if __name__ == "__main__":
    print(ensure_env())
