"""Config: parsing, validation messages that name the key, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import Config, ConfigError, iter_keys, load_config, reference_markdown


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "monitoring:\n  drift_threshold: 0.3\n"), env={})
    assert cfg.monitoring.drift_threshold == 0.3
    assert cfg.monitoring.accuracy_min_threshold == Config().monitoring.accuracy_min_threshold
    assert cfg.storage.uri == "./mlops-data"


def test_env_overrides_storage_uri(tmp_path: Path) -> None:
    path = write(tmp_path, "storage:\n  uri: /from/file\n")
    assert load_config(path, env={"MLOPS_STORAGE_URI": "memory://x"}).storage.uri == "memory://x"
    assert load_config(path, env={}).storage.uri == "/from/file"


def test_int_is_accepted_for_float_and_round_trips() -> None:
    cfg = Config.from_dict({"data": {"test_size": 0.25}, "monitoring": {"drift_threshold": 1}})
    assert cfg.monitoring.drift_threshold == 1.0
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("doc", "message"), [
    ({"monitoring": {"drift_treshold": 0.1}},
     r"unknown config key 'monitoring.drift_treshold' \(did you mean 'monitoring.drift_threshold'"),
    ({"bogus": {}}, r"unknown config key 'bogus'"),
    ({"monitoring": {"drift_threshold": "high"}},
     r"config key 'monitoring.drift_threshold' must be a number, got str"),
    ({"data": {"n_samples": 1.5}}, r"config key 'data.n_samples' must be an integer"),
    ({"data": {"n_samples": True}}, r"config key 'data.n_samples' must be an integer"),
    ({"data": {"n_samples": 0}}, r"config key 'data.n_samples' must be > 0"),
    ({"data": {"test_size": 1.0}}, r"config key 'data.test_size' must be between 0 and 1"),
    ({"training": {"model_type": "svm"}},
     r"config key 'training.model_type' must be one of 'logistic', 'linear', 'random_forest'"),
    ({"monitoring": []}, r"monitoring: expected a mapping, got list"),
    ({"kubernetes": {"steps": {"trian": {}}}}, r"unknown config key 'kubernetes.steps.trian'"),
    ({"storage": {"options": "x"}}, r"config key 'storage.options' must be a mapping"),
])
def test_bad_values_name_the_key(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(doc)


def test_missing_file_is_file_not_found_and_config_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "storage:\n  uri: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML at line \d"):
        load_config(path)


def test_non_mapping_document(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping of sections, not list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}) == Config()


def test_every_key_is_documented() -> None:
    keys = list(iter_keys())
    assert ("monitoring.drift_threshold", 0.1) in [(k, d) for k, d, _ in keys]
    undocumented = [k for k, _, help_text in keys if not help_text]
    assert undocumented == []
    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == reference_markdown(), \
        "docs/configuration.md is stale: run `mlops config --docs > docs/configuration.md`"
