"""The read-only commands a person types, timed as whole processes (row B10 of run.py).

``mlops --help``, ``versions``, ``show``, ``history``, ``status`` and ``config`` are
run as separate processes on a store with N data and N model versions (1,000 in
``make bench``), alternating with the baseline ``python -c "import yaml, fsspec"``
(the two libraries every command needs). Target: each command's median <= 0.5 s
and <= 2x the baseline's.

The store is built cheaply: one data version, one model version and one metrics
record are written through the library, then every file whose key carries the
seed's version id or timestamp is copied N-1 times with the id and the times
shifted (as bench_listing.py seeds its emulator). So the copies are in whatever
layout the library writes, without registering N DataFrames.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

#: Seed ids: every copy replaces them (same length, so sorting stays numeric).
DATA_SEED = "dv000000"
MODEL_SEED = "mv000000"
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
_COMPACT = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
#: The baseline process: the two libraries every mlops command imports.
BASELINE = [sys.executable, "-c", "import yaml, fsspec"]


def _shift(text: str, minutes: int) -> str:
    def iso(m: re.Match[str]) -> str:
        return (datetime.fromisoformat(m.group(0)) + timedelta(minutes=minutes)).isoformat(
            timespec="microseconds")

    def compact(m: re.Match[str]) -> str:
        when = datetime.strptime(m.group(0), "%Y%m%dT%H%M%S.%fZ") + timedelta(minutes=minutes)
        return when.strftime("%Y%m%dT%H%M%S.%fZ")

    return _COMPACT.sub(compact, _ISO.sub(iso, text))


def _copy_of(text: str, i: int) -> str:
    text = text.replace(DATA_SEED, f"dv{i:06d}").replace(MODEL_SEED, f"mv{i:06d}")
    return _shift(text, i)


def seed_store(root: Path, versions: int) -> dict[str, str]:
    """A local store with ``versions`` data and model versions and metrics records.

    Returns:
        The newest data and model version ids (``{"data": ..., "model": ...}``).
    """
    from mlops.config import Config
    from mlops.data import generate_synthetic_data
    from mlops.store.workspace import Workspace

    ws = Workspace.open(Config.from_dict({"storage": {"uri": str(root)}}))
    df = generate_synthetic_data(50, 3, 1)
    ws.versioner.register(df, version_id=DATA_SEED)
    ws.registry.save({"weights": [1, 2, 3]}, MODEL_SEED,
                     {"accuracy": 0.9, "data_version": DATA_SEED, "model_type": "logistic"})
    ws.monitor.record_metrics(0.9, data_version=DATA_SEED, model_version=MODEL_SEED)
    seeds = [p for p in root.rglob("*") if p.is_file() and (
        DATA_SEED in str(p.relative_to(root)) or MODEL_SEED in str(p.relative_to(root))
        or _COMPACT.search(str(p.relative_to(root))))]
    for path in seeds:
        rel = str(path.relative_to(root))
        data = path.read_bytes()
        text = data.decode() if path.suffix == ".json" else None
        for i in range(1, versions):
            target = root / _copy_of(rel, i)
            target.parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                target.write_bytes(data)
            else:
                target.write_text(_copy_of(text, i))
    newest = versions - 1
    ws.registry.set_alias(f"mv{newest:06d}", "production", reason="bench")
    return {"data": f"dv{newest:06d}", "model": f"mv{newest:06d}"}


def mlops_command() -> list[str]:
    """The ``mlops`` console script next to this Python (else ``python -m mlops``)."""
    script = Path(sys.executable).parent / "mlops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops"]


def read_only_commands(ids: dict[str, str]) -> dict[str, list[str]]:
    """Label -> arguments of every read-only command the ``mlops`` parser has."""
    from mlops.cli import build_parser

    parser = build_parser()
    names: set[str] = set()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        names.update(getattr(action, "choices", None) or {})
    wanted = {
        "--help": ["--help"],
        "versions data": ["versions", "data"],
        "versions models": ["versions", "models"],
        "show data": ["show", "data", ids["data"]],
        "show model": ["show", "model", ids["model"]],
        "history": ["history"],
        "status": ["status"],
        "config": ["config"],
    }
    return {label: args for label, args in wanted.items()
            if args[0] == "--help" or args[0] in names}


#: Exit codes that are answers, not failures: ``mlops status`` says 3 (unhealthy) on the
#: bench store, which holds versions but no run.
ANSWERS = {"status": (0, 3)}


def runner(args: list[str], store: Path) -> Callable[[], None]:
    """A call that runs one whole process (output discarded; a failure raises)."""
    # Bytecode as an installed package has it: pip byte-compiles site-packages (the
    # baseline's yaml and fsspec), while an editable checkout compiles mlops on first
    # import, unless PYTHONDONTWRITEBYTECODE forbids writing the cache, which would make
    # every measured run of mlops (and only of mlops) compile its modules again.
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
           "MLOPS_STORAGE_URI": str(store)}
    ok = next((codes for cmd, codes in ANSWERS.items() if cmd in args), (0,))

    def run() -> None:
        proc = subprocess.run(args, check=False, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        if proc.returncode not in ok:
            raise subprocess.CalledProcessError(proc.returncode, args, stderr=proc.stderr)

    return run
