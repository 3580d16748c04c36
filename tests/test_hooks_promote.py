"""``mlops promote`` verifies the version as a load does (issue 19 item 12): with signing
on, an unsigned or tampered version is refused (exit 2) and the alias does not move."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.cli import main
from mlops.store.filesystem import open_store
from mlops.store.registry import ModelRegistry


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_promote_refuses_unsigned_and_tampered_versions_with_signing_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLOPS_TEST_PROMOTE_KEY", "k1")
    store_dir = tmp_path / "store"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{uri: {store_dir}}}\n"
                   "data: {n_samples: 300, n_features: 4}\n"
                   "registry: {signing_key_env: MLOPS_TEST_PROMOTE_KEY}\n")
    assert _cli(capsys, "run", "--config", str(cfg), "--run-id", "r1")[0] == 0
    models = ModelRegistry(open_store(str(store_dir)).child("models"))
    models.save({"w": 0}, "unsigned")  # a writer without the key
    assert _cli(capsys, "promote", "r1", "--alias", "staging", "--config", str(cfg))[0] == 0

    code, err = _cli(capsys, "promote", "unsigned", "--alias", "staging", "--config", str(cfg))
    assert code == 2 and err.count("\n") == 1 and "'unsigned' is not signed" in err, err
    assert models.get_alias("staging") == "r1"

    record = models.get_metadata("r1")
    models.store.write_json(models.metadata_key("r1"),
                            {**record, "metadata": {**record["metadata"], "accuracy": 0.123}})
    assert _cli(capsys, "promote", "r1", "--alias", "canary", "--config", str(cfg))[0] == 2
    assert models.get_alias("canary") is None
    code, err = _cli(capsys, "promote", "r1", "--config", str(cfg))
    assert code == 2 and "does not match the signing key" in err, err
    assert models.get_alias("production") == "r1"  # unchanged (already r1, no new event)
    assert len(models.alias_history("production")) == 1
