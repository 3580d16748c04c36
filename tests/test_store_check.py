"""``mlops gc --check`` and ``mlops versions``: broken objects are reported, not fatal.

Issue #13 items 4 and 11: a deleted data object kept deduplicating to a broken
manifest and ``versions`` listed it as fine; one corrupt manifest broke ``mlops
versions`` (exit 1) and gc deleted its index marker while keeping the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import cli
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests import _workers


def _config(tmp_path: Path, store_uri: str, options: dict[str, Any]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": store_uri, "options": options},
                                    "data": {"n_samples": 120, "n_features": 3}}))
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = cli.main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_check_lists_each_problem_and_exits_2(store_uri: str, storage_options: dict[str, Any],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, store_uri, storage_options)
    ws = Workspace.open(yaml_config(cfg))
    run_pipeline(ws.config, run_id="r1")
    assert _cli(capsys, "gc", "--check", "--json", "--config", str(cfg)) == (0, {"problems": []})

    gone = ws.versioner.register(_workers.frame(1))
    ws.versioner.store.delete(ws.versioner.get_record(gone).object)
    corrupt = ws.versioner.register(_workers.frame(2))
    ws.versioner.store.write_bytes(ws.versioner.manifest_key(corrupt), b"{oops")
    ws.registry.store.delete(ws.registry.reference_key("r1"))

    code, out = _cli(capsys, "gc", "--check", "--json", "--config", str(cfg))
    assert code == 2
    found = {p["key"]: p["problem"] for p in out["problems"]}
    assert "object missing" in found[f"data/versions/{gone}.json"]
    assert "corrupt manifest" in found[f"data/versions/{corrupt}.json"]
    assert "drift cannot be measured" in found["models/r1/reference.json"]

    # `versions` lists both with their status instead of failing.
    code, rows = _cli(capsys, "versions", "data", "--json", "--config", str(cfg))
    status = {r["id"]: r["status"] for r in rows}
    assert code == 0 and "object missing" in status[gone] and "corrupt" in status[corrupt]

    # gc keeps the corrupt manifest's index marker (it is committed, only unreadable).
    markers = ws.versioner.store.keys("index")
    assert cli.main(["gc", "--grace-seconds", "0", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert ws.versioner.store.keys("index") == markers

    # Registering the same content again repairs the missing object.
    assert ws.versioner.register(_workers.frame(1)) == gone
    code, out = _cli(capsys, "gc", "--check", "--json", "--config", str(cfg))
    assert gone not in json.dumps(out)


def yaml_config(path: Path) -> Any:
    from mlops.config import load_config

    return load_config(path)
