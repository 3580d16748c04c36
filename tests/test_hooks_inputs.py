"""Bad input is exit 2 with one line naming what is wrong, before anything is written
(issue 19 item 16, the parts about CLI bounds, YAML keys and CSV headers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.cli import main
from mlops.store.filesystem import open_store
from mlops.store.partitions import read_table


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.exists() else {}


@pytest.fixture
def config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A config whose store holds one run."""
    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {{uri: {tmp_path / 'store'}}}\n"
                    "data: {n_samples: 300, n_features: 4}\n")
    assert _cli(capsys, "run", "--config", str(path))[0] == 0
    return path


@pytest.mark.parametrize(("argv", "message"), [
    (["status", "--max-age-hours", "nan"], "--max-age-hours must be a finite number > 0"),
    (["status", "--max-age-hours", "1e400"], "--max-age-hours must be a finite number > 0"),
    (["report", "-o", "/proc/x"], "report --output /proc/x: cannot write"),
    (["report", "--port", "99999", "--serve"], "report --port must be between 0 and 65535"),
])
def test_out_of_range_arguments_exit_2_with_one_line(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path / "store")
    code, err = _cli(capsys, *argv, "--config", str(config))
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert _files(tmp_path / "store") == before
    assert not (tmp_path / "mlops-report").exists()  # --port is checked before writing


@pytest.mark.parametrize(("data", "message"), [
    ("{n_features: 100000000}", "'data.n_features' must be between 1 and 10000"),
    ("{n_samples: 100000000, n_features: 100}",
     "'data.n_samples' x 'data.n_features' (100000000 x 100) must be at most"),
])
def test_synthetic_data_too_large_for_memory_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {{uri: {tmp_path / 'store'}}}\ndata: {data}\n")
    code, err = _cli(capsys, "run", "--config", str(path))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("text", "key"), [
    ("storage: {uri: STORE}\ndata: {n_samples: 300}\nstorage:\n  uri: /elsewhere\n",
     "'storage' twice (again at line 3)"),
    ("storage: {uri: STORE}\ndata: {n_samples: 300, n_features: 4, n_samples: 5}\n",
     "'data.n_samples' twice"),
    ("storage: {uri: STORE}\nnotifications:\n  webhooks:\n    - {url: 'http://a/', "
     "url: 'http://b/'}\n", "'notifications.webhooks[0].url' twice"),
])
def test_a_duplicated_yaml_key_is_refused_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("STORE", str(tmp_path / "store")))
    code, err = _cli(capsys, "run", "--config", str(path))
    assert code == 2 and err.count("\n") == 1 and key in err, err
    assert not (tmp_path / "store").exists()


CSV = "a,b,target,target\n" + "".join(f"{i},{i % 7},{i % 2},{i % 2}\n" for i in range(200))


def test_a_csv_header_naming_a_column_twice_is_refused_on_both_engines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src" / "nightly.csv"
    source.parent.mkdir()
    source.write_text(CSV)
    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {{uri: {tmp_path / 'store'}}}\ndata: {{source: {source}}}\n")
    code, err = _cli(capsys, "run", "--config", str(path))
    assert code == 2, err
    assert err.count("\n") == 1 and "column 'target' more than once" in err, err
    assert "nightly.csv" in err
    assert not any(k.startswith(("data", "models")) for k in _files(tmp_path / "store"))

    # The dask engine reads each file through partitions.read_table: the same refusal.
    from mlops.errors import DataValidationError

    with pytest.raises(DataValidationError, match="column 'target' more than once"):
        read_table(open_store(str(source.parent)), "nightly.csv")
    # A header without repeats still reads (quoted names included).
    (source.parent / "ok.csv").write_text('a,"b,c",target\n1,2,0\n3,4,1\n')
    assert list(read_table(open_store(str(source.parent)), "ok.csv").columns) == [
        "a", "b,c", "target"]
