"""Object stores for real: exclusive create, clear errors, bounded retries.

Against gcp-storage-emulator and moto's S3 server on 127.0.0.1. A tiny
fault-injecting HTTP proxy (also on 127.0.0.1) answers the first requests with
503 to check that transient errors are retried.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import cli
from mlops.errors import StorageConfigError
from mlops.store.filesystem import RETRY_ATTEMPTS, object_store_defaults, open_store
from mlops.store.versioner import DataVersioner
from tests import _workers
from tests.conftest import Emulator, emulator_for, free_port


# --- exclusive create ---------------------------------------------------------------------
def test_exclusive_create(backend: str, store_uri: str,
                          storage_options: dict[str, Any]) -> None:
    store = open_store(store_uri, storage_options)
    store.write_bytes("x/obj", b"first", exclusive=True)
    if backend == "gcs":
        # gcp-storage-emulator ignores ifGenerationMatch=0 (real GCS answers 412, which
        # gcsfs raises as FileExistsError). Pin the emulator's behaviour so that a fixed
        # emulator shows up here; the model registry's own check still refuses (below).
        store.write_bytes("x/obj", b"second", exclusive=True)
        assert store.read_bytes("x/obj") == b"second"
    else:
        with pytest.raises(FileExistsError):
            store.write_bytes("x/obj", b"second", exclusive=True)
        assert store.read_bytes("x/obj") == b"first"


def test_object_store_defaults_bound_backend_retries() -> None:
    opts = object_store_defaults("s3", {"endpoint_url": "http://127.0.0.1:1",
                                        "config_kwargs": {"read_timeout": 5}})
    assert opts["use_listings_cache"] is False
    assert opts["config_kwargs"] == {"read_timeout": 5, "connect_timeout": 5,
                                     "retries": {"max_attempts": 1, "mode": "standard"}}
    assert object_store_defaults("file", {}) == {}


# --- CLI errors ---------------------------------------------------------------------------
def run_cli(tmp_path: Path, uri: str, options: dict[str, Any],
            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``mlops run`` in this process (the real CLI entry point), the store named by
    MLOPS_STORAGE_URI as in a step Job. Returns the exit code and stderr."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"uri": str(tmp_path / "unused"),
                                                  "options": options},
                                      "data": {"n_samples": 200}}))
    monkeypatch.setenv("MLOPS_STORAGE_URI", uri)
    code = cli.main(["run", "--config", str(config)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_missing_bucket_exits_2_naming_it(backend: str, request: pytest.FixtureRequest,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator_for(request, backend)
    assert emu is not None
    code, err = run_cli(tmp_path, emu.uri("no-such-bucket-x1"), emu.options, monkeypatch, capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("mlops: error")]
    assert errors == [f"mlops: error: bucket 'no-such-bucket-x1' of {emu.scheme}://"
                      "no-such-bucket-x1/store does not exist (create it, or fix storage.uri)"]
    # Nothing was created on the way.
    assert "no-such-bucket-x1" not in emu.filesystem().ls("")


def test_unreachable_endpoint_exits_1(request: pytest.FixtureRequest, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    # S3 only: s3fs retries a refused connection ~2 s, and Store._call 4 times (~10 s
    # in all). gcsfs would retry each request ~30 s by itself (documented bound).
    emulator_for(request, "s3")  # for its AWS_* environment
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, err = run_cli(tmp_path, "s3://some-bucket/store", {"endpoint_url": closed},
                        monkeypatch, capsys)
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("mlops: error")]
    assert len(errors) == 1 and "s3://some-bucket/store" in errors[0], err
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == RETRY_ATTEMPTS - 1


def test_bad_option_is_a_config_error(request: pytest.FixtureRequest) -> None:
    emu = emulator_for(request, "s3")
    assert emu is not None
    bucket = emu.new_bucket()
    with pytest.raises(StorageConfigError, match=f"bad storage.options for s3://{bucket}"):
        open_store(f"s3://{bucket}/store", {**emu.options, "no_such_option": 1})


# --- transient 5xx ------------------------------------------------------------------------
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that answers the first ``failures`` requests with 503
    (or ``status`` with ``payload``, e.g. a backend's own error document)."""

    def __init__(self, upstream: str, failures: int, status: int = 503,
                 payload: bytes = b'{"error": {"code": 503, "message": "injected"}}',
                 content_type: str = "application/json") -> None:
        self.upstream = upstream.removeprefix("http://")
        self.status, self.payload, self.content_type = status, payload, content_type
        self.remaining = failures
        self.failed = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    fail = proxy.remaining > 0
                    if fail:
                        proxy.remaining -= 1
                        proxy.failed += 1
                    else:
                        proxy.forwarded += 1
                if fail:
                    payload = proxy.payload
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Content-Type", proxy.content_type)
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "transfer-encoding")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding",
                                             "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def emulator(backend: str, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    emu = emulator_for(request, backend)
    assert emu is not None
    yield emu


@pytest.mark.parametrize(("backend", "failures"), [("s3", 3), ("gcs", 2)])
def test_transient_503_is_retried(emulator: Emulator, failures: int) -> None:
    # s3: botocore's retries are off (our defaults), so Store._call retries, up to
    # RETRY_ATTEMPTS = 4 attempts: 3 failures still succeed. gcs: gcsfs retries each
    # request itself (1 s, 2 s backoff), and Store._call makes one attempt.
    bucket = emulator.new_bucket()
    with FaultProxy(emulator.endpoint, failures) as proxy:
        options = {**emulator.options, "endpoint_url": proxy.url}
        versioner = DataVersioner(f"{emulator.scheme}://{bucket}/store/data",
                                  storage_options=options)
        vid = versioner.register(_workers.frame(5))
        assert proxy.failed == failures and proxy.forwarded > 0
    direct = DataVersioner(f"{emulator.scheme}://{bucket}/store/data",
                           storage_options=emulator.options)
    assert direct.load(vid)[0].equals(_workers.frame(5))
    assert direct.get_latest_version() == vid
