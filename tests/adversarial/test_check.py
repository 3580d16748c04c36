"""``mlops gc --check`` reports what loads refuse (issue 19 item 10).

Each test damages the store one way, then expects ``gc --check --json`` to exit 2 with
a problem on the damaged key (never a crash).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import cli
from mlops.store.registry import ModelRegistry
from mlops.store.workspace import Workspace
from tests import _workers
from tests.adversarial.conftest import CliResult

LOCAL = pytest.mark.parametrize("backend", ["local"])


def _problems(run_cli: Callable[..., CliResult]) -> dict[str, str]:
    code, out, _ = run_cli("gc", "--check", "--json")
    assert code == 2, out
    return {p["key"]: p["problem"] for p in out["problems"]}


@pytest.fixture
def signed(store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> tuple[ModelRegistry, Callable[[], Any]]:
    """A store whose registry signs with a key (and gc --check of it)."""
    monkeypatch.setenv("MLOPS_TEST_SIGNING_KEY", "k" * 32)
    path = tmp_path / "signed.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": store_uri},
                                    "registry": {"signing_key_env": "MLOPS_TEST_SIGNING_KEY"}}))
    from mlops.config import load_config

    registry = Workspace.open(load_config(path)).registry
    registry.save({"m": 1}, "m1")
    registry.save({"m": 2}, "m2")

    def check() -> dict[str, str]:
        code = cli.main(["gc", "--check", "--json", "--config", str(path)])
        out = json.loads(capsys.readouterr().out)
        assert code == 2, out
        return {p["key"]: p["problem"] for p in out["problems"]}
    return registry, check


@LOCAL
def test_check_reports_a_tampered_signed_record(signed: Any) -> None:
    registry, check = signed
    doc = registry.get_metadata("m1")
    registry.store.write_json("m1/metadata.json", {**doc, "metadata": {"accuracy": 1.0}})
    assert "signature that does not match" in check()["models/m1/metadata.json"]


@LOCAL
def test_check_reports_a_signature_copied_from_another_version(signed: Any) -> None:
    registry, check = signed
    doc = registry.get_metadata("m1")
    doc["signature"] = registry.get_metadata("m2")["signature"]
    registry.store.write_json("m1/metadata.json", doc)
    assert "signature that does not match" in check()["models/m1/metadata.json"]


@LOCAL
def test_check_reports_a_planted_unsigned_version(signed: Any) -> None:
    registry, check = signed
    ModelRegistry(registry.store).save({"evil": True}, "planted")  # no key: unsigned
    assert "not signed" in check()["models/planted/metadata.json"]


@LOCAL
def test_check_reports_a_truncated_alias_event_behind_a_current_pointer(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "m1")
    registry.save({"m": 2}, "m2")
    registry.set_alias("m1")
    registry.set_alias("m2")
    first = registry.store.keys("_aliases/production/events")[0]
    key = f"_aliases/production/events/{first}"
    registry.store.write_bytes(key, registry.store.read_bytes(key)[:10])
    assert registry.get_alias() == "m2"  # the pointer is current: loads do not notice
    problems = _problems(run_cli)
    assert "alias 'production' history" in problems["models/_aliases/production/events"]


@LOCAL
def test_check_reports_another_models_reference_in_a_models_folder(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    registry = workspace.registry
    registry.save({"m": 1}, "m1")
    registry.save({"m": 2}, "m2")
    registry.save_reference("m2", {"model_version": "m2", "data_version": "d",
                                   "features": {}})
    registry.store.write_bytes("m1/reference.json", registry.store.read_bytes(
        "m2/reference.json"))
    assert "reference of model 'm2'" in _problems(run_cli)["models/m1/metadata.json"]


@LOCAL
def test_check_reports_corrupt_sketches_of_a_partitioned_version(
        workspace: Workspace, run_cli: Callable[..., CliResult]) -> None:
    versioner = workspace.versioner
    vid = versioner.register(_workers.frame(5))
    doc = versioner.get_metadata(vid)
    forged = {**doc, "id": "parted", "kind": "partitioned", "object": "",
              "partitions": [{"digest": doc["content_hash"], "object": doc["object"],
                              "rows": doc["rows"], "size_bytes": doc["size_bytes"]}],
              "moments": {}, "sketches": {"a": "bm90IGEgc2tldGNo"}, "sketch_k": 200}
    versioner.store.write_json("versions/parted.json", forged)
    assert "sketch of column 'a' does not decode" in _problems(run_cli)[
        "data/versions/parted.json"]


@LOCAL
@pytest.mark.parametrize(("field", "value"), [("rows", -1.5), ("columns", "x"),
                                              ("stats", "x")])
def test_check_reports_manifest_fields_of_the_wrong_type(
        workspace: Workspace, run_cli: Callable[..., CliResult], field: str,
        value: Any) -> None:
    versioner = workspace.versioner
    vid = versioner.register(_workers.frame(6))
    versioner.store.write_json(versioner.manifest_key(vid),
                               {**versioner.get_metadata(vid), field: value})
    assert field in _problems(run_cli)[f"data/versions/{vid}.json"]
