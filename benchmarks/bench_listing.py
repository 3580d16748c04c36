"""Listing at scale: newest-first reads on 10,000 data versions in the GCS emulator.

list_versions() and get_latest_version() read the index (object *names*, one
paginated listing) and then only the manifests they return, never all of them.
This writes 10,000 index markers and manifests straight into a bucket of a
local gcp-storage-emulator (concurrently, through fsspec's batched pipe), then
times get_latest_version() and list_versions(limit=20). Target: < 2 s each.

Run: PYTHONPATH=. python benchmarks/bench_listing.py [--versions N]
Writes benchmarks/results/listing.json and prints it. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec

from mlops.catalog import compact, iso
from mlops.versioner import DataVersioner

RESULTS = Path(__file__).parent / "results" / "listing.json"
TARGET_SECONDS = 2.0
BATCH = 500
#: Concurrent uploads: the emulator stalls (client retries) under many more at once.
PIPE_CONCURRENCY = 4
START_TIMEOUT = 30.0
REPEATS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    proc = subprocess.Popen([str(exe), "start", "--host=127.0.0.1", f"--port={port}",
                             "--in-memory"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SystemExit("gcp-storage-emulator did not start")


def populate(fs: fsspec.AbstractFileSystem, base: str, n: int) -> float:
    t0 = time.perf_counter()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    items: dict[str, bytes] = {}
    for i in range(n):
        created = start + timedelta(minutes=i)
        vid = f"v{i:06d}"
        items[f"{base}/index/{compact(created)}~{vid}"] = b""
        items[f"{base}/versions/{vid}.json"] = json.dumps({
            "id": vid, "created_at": iso(created), "content_hash": uuid.uuid4().hex,
            "hash_algorithm": "sha256", "object": f"objects/{vid}.parquet", "rows": 1,
            "columns": [], "stats": {}, "size_bytes": 1}).encode()
        if len(items) >= BATCH:
            fs.pipe(items, batch_size=PIPE_CONCURRENCY)
            items = {}
    if items:
        fs.pipe(items, batch_size=PIPE_CONCURRENCY)
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
    port = free_port()
    proc = start_emulator(port)
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon",
                   "project": "test"}
        fs = fsspec.filesystem("gs", skip_instance_cache=True, **options)
        fs.mkdir("bench")
        base = "bench/store/data"
        populate_s = populate(fs, base, args.versions)
        versioner = DataVersioner(f"gs://{base}", storage_options=options)
        latest = versioner.get_latest_version()
        page = versioner.list_versions(limit=20)
        assert latest == f"v{args.versions - 1:06d}", latest
        assert [m["id"] for m in page] == [f"v{args.versions - 1 - i:06d}" for i in range(20)]
        result = {
            "backend": "gcs (gcp-storage-emulator, in memory, 127.0.0.1)",
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
