"""The CLI: output, exit codes, and bad input that leaves the store exactly as it was."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import main
from mlops.data import generate_synthetic_data
from mlops.store.filesystem import Store, open_store

ROOT = Path(__file__).resolve().parents[1]


def snapshot(store: Store) -> dict[str, bytes]:
    """Every object but the failure records of runs (``runs/<id>/run.json``), which a
    failed run writes for `mlops status` whatever its exit code."""
    return {k: store.read_bytes(k) for k in store.walk() if not k.endswith("/run.json")}


@pytest.fixture
def store(store_uri: str, storage_options: dict) -> Store:
    return open_store(store_uri, storage_options)


@pytest.fixture
def storage_yaml(store_uri: str, storage_options: dict) -> str:
    """The storage section of the store under test as YAML (emulator endpoints included)."""
    return yaml.safe_dump({"storage": {"uri": store_uri, "options": storage_options}})


@pytest.fixture
def write_config(tmp_path: Path, storage_yaml: str) -> Any:
    def write(extra: str = "", name: str = "config.yaml") -> str:
        path = tmp_path / name
        path.write_text(storage_yaml + "data:\n  n_samples: 300\n  n_features: 4\n" + extra)
        return str(path)
    return write


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_twice_then_list(write_config: Any, store: Store,
                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config()
    code, out, _ = run_cli(capsys, "run", "--config", cfg, "--json")
    first = json.loads(out)
    assert code == 0 and first["retrained"] is True
    code, out, _ = run_cli(capsys, "run", "--config", cfg)
    assert code == 0
    assert re.search(r"^retrained:\s+False$", out, re.M), out
    assert re.search(rf"^data_version:\s+{first['data_version']}$", out, re.M), out
    code, out, _ = run_cli(capsys, "versions", "data", "--config", cfg)
    assert code == 0 and first["data_version"] in out and "ROWS" in out
    code, out, _ = run_cli(capsys, "versions", "models", "--config", cfg, "--json")
    assert [m["id"] for m in json.loads(out)] == [first["model_version"]]
    code, out, _ = run_cli(capsys, "history", "--config", cfg, "--json")
    assert [h["retrained"] for h in json.loads(out)] == [True, False]
    code, out, _ = run_cli(capsys, "show", "model", first["model_version"], "--config", cfg,
                           "--json")
    assert json.loads(out)["metadata"]["data_version"] == first["data_version"]


def test_steps_one_by_one(write_config: Any, store: Store,
                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config()
    for step in ["ingest", "monitor-check", "train"]:
        code, out, err = run_cli(capsys, step, "--config", cfg, "--run-id", "r1", "--json")
        assert code == 0, err
        assert json.loads(out)["run_id"] == "r1"
    assert "runs/r1/train.json" in store.walk("runs")


def test_empty_store_listings(write_config: Any, store: Store,
                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config()
    assert run_cli(capsys, "versions", "models", "--config", cfg)[1] == "no model versions yet\n"
    assert run_cli(capsys, "history", "--config", cfg)[1] == "no metrics recorded yet\n"


BAD_CONFIGS = [
    ("malformed YAML", "monitoring: [oops\n", r"bad\.yaml is not valid YAML at line \d"),
    ("unknown key", "monitoring:\n  drift_treshold: 1\n",
     r"unknown config key 'monitoring\.drift_treshold'"),
    ("wrong type", "monitoring:\n  drift_threshold: high\n",
     r"config key 'monitoring\.drift_threshold' must be a number"),
    ("unknown model_type", "training:\n  model_type: svm\n", r"'training\.model_type'"),
    ("unknown hash algorithm", "data:\n  hash_algorithm: md5\n",
     r"config key 'data\.hash_algorithm' must be one of sha256, sha512, blake2b"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD_CONFIGS,
                         ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exit_2_one_line_store_unchanged(
        tmp_path: Path, write_config: Any, store: Store, storage_yaml: str,
        capsys: pytest.CaptureFixture[str],
        what: str, text: str, message: str) -> None:
    good = write_config()
    assert run_cli(capsys, "run", "--config", good)[0] == 0
    before = snapshot(store)
    bad = tmp_path / "bad.yaml"
    bad.write_text(storage_yaml + text)
    code, _, err = run_cli(capsys, "run", "--config", str(bad))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mlops: error: ")
    assert re.search(message, err), err
    assert snapshot(store) == before


def _source(tmp_path: Path, text: str) -> str:
    (tmp_path / "src.csv").write_text(text)
    return str(tmp_path / "src.csv")


BAD_DATA = [
    ("missing target column", "a,b\n1,2\n3,4\n", r"target column 'target' not found"),
    ("all-missing feature", "a,b,target\n1,,0\n2,,1\n",
     r"feature column 'b' .* has only missing values"),
    ("empty data", "a,target\n", r"is empty: no rows"),
    ("NaN in the target", "a,target\n1,0\n2,\n3,1\n", r"target column 'target' has 1 missing"),
    ("single class", "a,target\n1,1\n2,1\n", r"target column 'target' has a single class"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_exit_2_one_line_store_unchanged(
        tmp_path: Path, write_config: Any, store: Store, storage_yaml: str,
        capsys: pytest.CaptureFixture[str],
        what: str, text: str, message: str) -> None:
    assert run_cli(capsys, "run", "--config", write_config())[0] == 0
    before = snapshot(store)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(storage_yaml + f"data:\n  source: {_source(tmp_path, text)}\n")
    code, _, err = run_cli(capsys, "run", "--config", str(cfg))
    assert code == 2 and re.search(message, err), err
    assert err.count("\n") == 1
    assert snapshot(store) == before


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "none.yaml"))
    assert code == 2
    assert err == f"mlops: error: config file not found: {tmp_path / 'none.yaml'}\n"


def test_unsafe_run_id_and_unknown_version(write_config: Any, store: Store,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config()
    code, _, err = run_cli(capsys, "ingest", "--config", cfg, "--run-id", "../escape")
    assert code == 2 and "unsafe run id '../escape'" in err
    assert store.walk() == []
    code, _, err = run_cli(capsys, "show", "data", "nope", "--config", cfg)
    assert code == 2 and "unknown data version 'nope'" in err
    code, _, err = run_cli(capsys, "show", "model", "../x", "--config", cfg)
    assert code == 2 and "unsafe model version id '../x'" in err


def test_tampered_model_is_refused(write_config: Any, store: Store,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config()
    code, out, _ = run_cli(capsys, "run", "--config", cfg, "--json")
    model = json.loads(out)["model_version"]
    artifact = store.read_json(f"models/{model}/metadata.json")["artifact"]
    store.write_bytes(f"models/{artifact}", b"not the model")
    # The tampered artifact is never unpickled; since issue #13 (item 4) the run does not
    # fail every night on it: it retrains (serving_model_unusable) and the new model serves.
    code, out, err = run_cli(capsys, "run", "--config", cfg, "--json")
    assert code == 0, err
    assert f"model artifact of version '{model}' failed its integrity check" in err
    summary = json.loads(out)
    assert "serving_model_unusable" in summary["reasons"]
    assert summary["promoted"] and summary["model_version"] != model
    assert store.read_bytes(f"models/{artifact}") == b"not the model"  # left for inspection


def test_console_script_no_traceback_and_debug(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "mlops"]
    bad = tmp_path / "x.yaml"
    bad.write_text("nope: 1\n")
    proc = subprocess.run([*env_cmd, "run", "--config", str(bad)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr == "mlops: error: unknown config key 'nope'\n"
    proc = subprocess.run([*env_cmd, "--debug", "run", "--config", str(bad)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_help_documents_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ["run", "ingest", "monitor-check", "train", "versions", "history"]:
        assert command in out


def test_embedded_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "run", "--json")
    first: dict[str, Any] = json.loads(out)
    assert code == 0 and (tmp_path / "mlops-data" / "runs" / first["run_id"]).is_dir()
    second = json.loads(run_cli(capsys, "run", "--json")[1])
    assert (first["retrained"], second["retrained"]) == (True, False)
    assert second["data_version"] == first["data_version"]
    assert len(generate_synthetic_data(1000, 10, 42)) == 1000


def test_import_and_help_stay_light() -> None:
    """`mlops --help` and `import mlops` must not load pandas/scikit-learn (slow starts)."""
    code = ("import sys, mlops, mlops.cli; mlops.cli.build_parser(); "
            "print(sorted(m for m in ('pandas', 'sklearn', 'scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
    from mlops import DataVersioner  # the lazy names still resolve

    assert DataVersioner.__name__ == "DataVersioner"
