"""Verified data loads: each object's CRC32C, checked as it is read (issue #13, item 3).

A data manifest records ``object_checksum`` (``crc32c:<hex>`` of the Parquet object's
bytes); a load refuses bytes that do not match with exit code 2, naming the version
(and the partition, for a partitioned version of the Dask engine). Damage is made
in every region of the file: a data page, the footer (the file metadata), a truncated
tail, and another valid Parquet file in the object's place. Manifests written before
(only ``object_sha256``) still verify with sha256; ``mlops gc --check`` hashes both.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlops import checksums, cli, storage
from mlops.check import check_store
from mlops.config import Config
from mlops.errors import IntegrityError
from mlops.pipeline import ingest
from mlops.storage import open_store
from mlops.versioner import DataVersioner
from mlops.workspace import Workspace
from tests import _workers

#: Local and one emulated bucket (the read paths differ: native chunked read / download).
VERIFY_BACKENDS = ["local", "gcs"]


def _footer_start(data: bytes) -> int:
    """Offset of the Parquet footer (file metadata): before its 4-byte length and PAR1."""
    assert data[-4:] == b"PAR1"
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little")


def _flip_page(data: bytes, other: bytes) -> bytes:
    mid = _footer_start(data) // 2  # inside the column chunks, far from the footer
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 8]) + data[mid + 8:]


def _flip_footer(data: bytes, other: bytes) -> bytes:
    at = _footer_start(data) + 20
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _truncate(data: bytes, other: bytes) -> bytes:
    return data[:-100]


def _swap(data: bytes, other: bytes) -> bytes:
    return other  # another valid Parquet object of the same store, copied in its place


DAMAGE: dict[str, Callable[[bytes, bytes], bytes]] = {
    "page": _flip_page, "footer": _flip_footer, "truncated": _truncate, "swapped": _swap}


def _crc(data: bytes) -> str:
    return f"crc32c:{google_crc32c.value(data):08x}"


@pytest.mark.parametrize("backend", VERIFY_BACKENDS)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_object_is_refused_naming_the_version(store_uri: str, damage: str,
                                                      storage_options: dict[str, Any]) -> None:
    versioner = DataVersioner(open_store(store_uri, storage_options).child("data"))
    frame = _workers.frame(1, 300)
    vid, other = versioner.register(frame), versioner.register(_workers.frame(2, 300))
    key = versioner.get_record(vid).object
    data = versioner.store.read_bytes(key)
    damaged = DAMAGE[damage](data, versioner.store.read_bytes(versioner.get_record(other).object))
    if damage == "swapped":  # still a valid Parquet file: only the checksum tells
        assert pq.read_table(io.BytesIO(damaged)).num_rows == 300
    versioner.store.write_bytes(key, damaged)
    with pytest.raises(IntegrityError, match=f"data version '{vid}'.*integrity check") as info:
        versioner.load(vid)
    assert info.value.exit_code == 2
    assert versioner.store.read_bytes(key) != data  # nothing was "repaired" by the load
    ws = Workspace.open(Config.from_dict({"storage": {"uri": store_uri,
                                                      "options": storage_options}}))
    found = {p.key: p.problem for p in check_store(ws)}  # what `mlops gc --check` lists
    assert (f"data version '{vid}': object fails its crc32c checksum" if damage != "truncated"
            else f"data version '{vid}': object is ") in found[f"data/versions/{vid}.json"]
    assert versioner.register(frame) == vid  # registering the same data repairs it
    pd.testing.assert_frame_equal(versioner.load(vid)[0], frame)
    assert check_store(ws) == []


@pytest.mark.parametrize("backend", ["local"])
def test_new_manifests_record_a_crc32c_of_the_object(store_uri: str) -> None:
    versioner = DataVersioner(store_uri)
    frame = _workers.frame(3, 200)
    vid = versioner.register(frame)
    doc = versioner.get_metadata(vid)
    assert doc["object_checksum"] == _crc(versioner.store.read_bytes(doc["object"]))
    assert "object_sha256" not in doc
    pd.testing.assert_frame_equal(versioner.load(vid)[0], frame)
    pd.testing.assert_frame_equal(versioner.load(vid, verify=False)[0], frame)
    # A checksum of an algorithm this release does not know is refused, not skipped.
    versioner.store.write_json(versioner.manifest_key(vid),
                               {**doc, "object_checksum": "blake9:00"})
    with pytest.raises(IntegrityError, match=f"data version '{vid}': checksum 'blake9:00'"):
        versioner.load(vid)


@pytest.mark.parametrize("backend", VERIFY_BACKENDS)
def test_manifests_with_only_a_sha256_still_verify(store_uri: str,
                                                   storage_options: dict[str, Any]) -> None:
    """What releases before object_checksum wrote: the sha256 of the object's bytes."""
    root = open_store(store_uri, storage_options)
    versioner = DataVersioner(root.child("data"))
    frame = _workers.frame(4, 300)
    vid = versioner.register(frame)
    doc = versioner.get_metadata(vid)
    key = doc.pop("object")
    data = versioner.store.read_bytes(key)
    del doc["object_checksum"]
    versioner.store.write_json(versioner.manifest_key(vid), {
        **doc, "object": key, "object_sha256": hashlib.sha256(data).hexdigest()})
    pd.testing.assert_frame_equal(versioner.load(vid)[0], frame)
    ws = Workspace.open(Config.from_dict({"storage": {"uri": store_uri,
                                                      "options": storage_options}}))
    assert check_store(ws) == []

    versioner.store.write_bytes(key, _flip_page(data, b""))
    with pytest.raises(IntegrityError, match=f"data version '{vid}'.*sha256"):
        versioner.load(vid)
    assert [p.problem for p in check_store(ws)] == [
        f"data version '{vid}': object fails its sha256 checksum (register the same data "
        "again to repair it)"]
    # The repair writes the object again and records today's checksum.
    assert versioner.register(frame) == vid
    repaired = versioner.get_metadata(vid)
    assert repaired["object_checksum"] == _crc(data) and "object_sha256" not in repaired
    assert check_store(ws) == []


# --- partitioned versions (the Dask engine) ----------------------------------------------
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process Dask cluster: partitions are read (and checked) in its tasks."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - the dev extra installs it
        from tests.conftest import skip_or_fail

        skip_or_fail("distributed is not installed (the mlops[dask] extra)")
    from mlops.engines.dask import NO_DASHBOARD

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      **NO_DASHBOARD) as cluster, Client(cluster) as c:
        yield c


def _ingest(tmp_path: Path, store_uri: str, options: dict[str, Any],
            frames: list[pd.DataFrame]) -> tuple[Path, Workspace, str]:
    src = tmp_path / "src"
    src.mkdir()
    for i, df in enumerate(frames):
        df.to_parquet(src / f"part-{i}.parquet", index=False)
    doc = {"storage": {"uri": store_uri, "options": options},
           "data": {"source": str(src), "engine": "dask"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = Config.from_dict(doc)
    ws = Workspace.open(cfg)
    return path, ws, ingest(cfg, "run-1", ws).data_version


@pytest.mark.parametrize("backend", VERIFY_BACKENDS)
def test_corrupt_partition_is_refused_in_its_task_and_reported_by_check(
        client: Any, store_uri: str, storage_options: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    frames = [_workers.frame(10 + i, 200) for i in range(3)]
    cfg, ws, vid = _ingest(tmp_path, store_uri, storage_options, frames)
    store = ws.versioner.store
    parts = ws.versioner.get_metadata(vid)["partitions"]
    assert [p["checksum"] for p in parts] == [_crc(store.read_bytes(p["object"]))
                                             for p in parts]
    loaded = ws.versioner.load(vid)[0].compute()
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True),
                                  pd.concat(frames, ignore_index=True), check_dtype=False)
    assert cli.main(["gc", "--check", "--json", "--config", str(cfg)]) == 0
    capsys.readouterr()

    key = parts[1]["object"]
    good = store.read_bytes(key)
    store.write_bytes(key, _flip_footer(good, b""))
    with pytest.raises(IntegrityError, match=f"data version '{vid}' partition 1 "
                       r"\(source part-1.parquet\).*integrity check") as info:
        ws.versioner.load(vid)[0].compute()
    assert info.value.exit_code == 2
    assert cli.main(["gc", "--check", "--json", "--config", str(cfg)]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [p["problem"] for p in problems] == [
        f"data version '{vid}': partition 1 (source part-1.parquet): object {key} fails "
        "its crc32c checksum (delete it and ingest the source again)"]

    # Another valid partition swapped in (same size or not): refused as well.
    store.write_bytes(key, store.read_bytes(parts[2]["object"]))
    with pytest.raises(IntegrityError, match="partition 1"):
        ws.versioner.load(vid)[0].compute()
    # The explicit unverified load reads what is there.
    assert len(ws.versioner.load(vid, verify=False)[0].compute()) == 600


# --- the checksum itself ------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(0, 5), (5, 0), (1, 1), (1000, 777), (3 << 20, 12345)])
def test_crc32c_combine_matches_the_crc_of_the_concatenation(sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(sizes))
    a, b = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes)
    assert checksums.crc32c_combine(google_crc32c.value(a), google_crc32c.value(b),
                                    len(b)) == google_crc32c.value(a + b)


@pytest.mark.parametrize("size", [0, 1, 4097, (3 << 20) + 5])
def test_read_hashed_returns_the_bytes_and_their_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Both local paths (one pass, and two threads over two halves) and a download."""
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    local = open_store(str(tmp_path / "s"))
    local.write_bytes("o", data)
    memory = open_store(f"memory://verify-{size}")
    memory.write_bytes("o", data)
    expected = {"crc32c": f"{google_crc32c.value(data):08x}",
                "sha256": hashlib.sha256(data).hexdigest()}
    for threshold in (storage.PARALLEL_HASH_BYTES, 1000):
        monkeypatch.setattr(storage, "PARALLEL_HASH_BYTES", threshold)
        for store in (local, memory):
            for algorithm, digest in expected.items():
                buf, found = store.read_hashed("o", algorithm)
                assert (found, buf.to_pybytes()) == (digest, data)
