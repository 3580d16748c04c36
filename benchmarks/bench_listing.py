"""Listing at scale: newest-first reads on 10,000 data versions in the GCS emulator.

list_versions() and get_latest_version() read the index (object *names*, one
paginated listing) and then only the manifests they return, never all of them.
The emulator rewrites its whole metadata file on every upload (O(n) per write),
so 20,000 uploads through its API would take hours. Instead one marker and one
manifest are uploaded through the API (to get the emulator's own object
resources), the emulator is stopped, the other 9,999 are written straight into
its on-disk store (data files plus its ``.meta``), and the emulator is started
again on that folder. Reads then go through the real API: gcsfs lists the
index (paginated, 1,000 per page) and reads only the manifests returned.
Target: < 2 s each for get_latest_version() and list_versions(limit=20).

Run: PYTHONPATH=. python benchmarks/bench_listing.py [--versions N]
Writes benchmarks/results/listing.json and prints it. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec

from mlops.store import layout
from mlops.store.ids import compact, iso
from mlops.store.versioner import DataVersioner

RESULTS = Path(__file__).parent / "results" / "listing.json"
TARGET_SECONDS = 2.0
BUCKET = "bench"
STORAGE_DIR = ".cloudstorage"  # gcp_storage_emulator.settings.STORAGE_DIR
START_TIMEOUT = 30.0
REPEATS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    proc = subprocess.Popen([str(exe), "--data-dir", str(data_dir), "start",
                             "--host=127.0.0.1", f"--port={port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SystemExit("gcp-storage-emulator did not start")


def version(i: int) -> tuple[str, str, bytes]:
    """(marker key, manifest key, manifest bytes) of version i, below the data base."""
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    vid = f"v{i:06d}"
    manifest = json.dumps({
        "id": vid, "created_at": iso(created), "content_hash": uuid.uuid4().hex,
        "hash_algorithm": "sha256", "object": f"objects/{vid}.parquet", "rows": 1,
        "columns": [], "stats": {}, "size_bytes": 1}).encode()
    return (layout.index_marker_key(layout.DATA_INDEX, compact(created), vid),
            layout.data_manifest_key(vid), manifest)


def _clone(resource: dict[str, object], old: str, new: str) -> dict[str, object]:
    text = json.dumps(resource)
    for a, b in ((old, new), (quote(old, safe=""), quote(new, safe="")),
                 (quote(old), quote(new))):
        text = text.replace(a, b)
    cloned: dict[str, object] = json.loads(text)
    return cloned


def populate(data_dir: Path, base: str, n: int) -> float:
    """Versions 1..n-1 written straight into the stopped emulator's store folder."""
    t0 = time.perf_counter()
    store = data_dir / STORAGE_DIR
    meta = json.loads((store / ".meta").read_text())
    objects = meta["objects"][BUCKET]
    seed_marker, seed_manifest, _ = version(0)
    for i in range(1, n):
        marker, manifest_key, manifest = version(i)
        for key, data, seed in ((marker, b"", seed_marker),
                                (manifest_key, manifest, seed_manifest)):
            name = f"{base}/{key}"
            path = store / BUCKET / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            objects[name] = _clone(objects[f"{base}/{seed}"], f"{base}/{seed}", name)
    (store / ".meta").write_text(json.dumps(meta))
    return time.perf_counter() - t0


def best_of(fn: object) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    port = free_port()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    base = "store/data"
    proc = start_emulator(port, work)
    try:  # the seed version, through the API
        fs = fsspec.filesystem("gs", skip_instance_cache=True, **options)
        fs.mkdir(BUCKET)
        marker, manifest_key, manifest = version(0)
        fs.pipe_file(f"{BUCKET}/{base}/{marker}", b"")
        fs.pipe_file(f"{BUCKET}/{base}/{manifest_key}", manifest)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    populate_s = populate(work, base, args.versions)
    proc = start_emulator(port, work)
    try:
        versioner = DataVersioner(f"gs://{BUCKET}/{base}", storage_options=options)
        latest = versioner.get_latest_version()
        page = versioner.list_versions(limit=20)
        assert latest == f"v{args.versions - 1:06d}", latest
        assert page == [f"v{args.versions - 1 - i:06d}" for i in range(20)]
        result = {
            "backend": "gcs (gcp-storage-emulator on disk, 127.0.0.1, via gcsfs)",
            "versions": args.versions,
            "populate_seconds": round(populate_s, 2),
            "get_latest_version_seconds": round(best_of(versioner.get_latest_version), 3),
            "list_versions_limit_20_seconds": round(
                best_of(lambda: versioner.list_versions(limit=20)), 3),
            "repeats": REPEATS, "statistic": "min",
            "target_seconds": TARGET_SECONDS,
        }
        result["meets_target"] = max(result["get_latest_version_seconds"],
                                     result["list_versions_limit_20_seconds"]) < TARGET_SECONDS
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
