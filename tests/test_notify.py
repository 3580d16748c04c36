"""Webhook notifications against local HTTP servers on 127.0.0.1: one that records what it
receives, one that answers 500, one that hangs. A failing webhook never fails or delays the
run past ``notifications.timeout_seconds``; its failure is in the run's summary."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import Config
from mlops.errors import ConfigError
from mlops.observe.notify import Notice, send
from mlops.runner import run_pipeline

GOOD = {"n_samples": 300, "n_features": 4}


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"


class Receiver:
    """An HTTP server on 127.0.0.1 whose answer is chosen by ``mode``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.hits = 0
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.hits += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                if outer.mode == "hang":
                    outer.release.wait(30)  # bounded; released at teardown
                    return
                if outer.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[str], Receiver]]:
    made: list[Receiver] = []

    def make(mode: str = "ok") -> Receiver:
        r = Receiver(mode)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def hooks(*entries: dict[str, Any], timeout: float = 2.0, retries: int = 2) -> dict[str, Any]:
    return {"webhooks": list(entries), "timeout_seconds": timeout, "retries": retries}


def test_a_run_notifies_promotion_with_a_slack_compatible_body_and_a_quiet_night_does_not(
        make_config: Any, receiver: Callable[[str], Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ok = receiver("ok")
    everything = receiver("ok")
    monkeypatch.setenv("TEAM_HOOK", everything.url)
    cfg = make_config(data=GOOD, notifications=hooks(
        {"name": "chat", "url": ok.url},
        {"url_env": "TEAM_HOOK", "events": ["success", "failure"]}))
    summary = run_pipeline(cfg, run_id="night-1")
    [body] = ok.bodies
    assert body["text"].splitlines()[0] == "mlops mlops/local: run night-1 succeeded"
    assert "- model night-1 promoted to production" in body["text"]
    assert body["mlops"]["events"] == ["promotion"]  # success is not in the defaults
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["model_version"] == "night-1"
    assert float(fields["accuracy"]) == pytest.approx(summary["accuracy"])
    [team] = everything.bodies
    assert team["mlops"]["events"] == ["success"]
    assert [(n["receiver"], n["ok"], n["attempts"]) for n in summary["notifications"]] == [
        ("chat", True, 1), ("TEAM_HOOK", True, 1)]

    # Same data next night: no retrain, nothing the default receiver wants.
    summary = run_pipeline(cfg, run_id="night-2")
    assert len(ok.bodies) == 1
    assert len(everything.bodies) == 2
    assert summary["retrained"] is False


def test_a_failing_run_notifies_failure(make_config: Any, receiver: Callable[[str], Receiver],
                                        tmp_path: Path) -> None:
    ok = receiver("ok")
    cfg = make_config(data={"source": str(tmp_path / "nope.csv")},
                      notifications=hooks({"url": ok.url}))
    with pytest.raises(Exception, match=r"nope\.csv"):
        run_pipeline(cfg, run_id="night-1")
    [body] = ok.bodies
    assert body["mlops"]["status"] == "failed" and body["mlops"]["events"] == ["failure"]
    assert "run night-1 failed at step ingest" in body["text"]
    assert body["attachments"][0]["color"] == "danger"


def test_a_500_is_retried_a_bounded_number_of_times_and_reported(
        make_config: Any, receiver: Callable[[str], Receiver],
        caplog: pytest.LogCaptureFixture) -> None:
    bad = receiver("500")
    ok = receiver("ok")
    cfg = make_config(data=GOOD, notifications=hooks({"name": "broken", "url": bad.url},
                                                     {"name": "fine", "url": ok.url},
                                                     retries=2, timeout=5))
    summary = run_pipeline(cfg, run_id="night-1")
    assert bad.hits == 3  # 1 + retries
    by_name = {n["receiver"]: n for n in summary["notifications"]}
    assert by_name["broken"]["ok"] is False and by_name["broken"]["status"] == 500
    assert by_name["broken"]["attempts"] == 3
    assert by_name["fine"]["ok"] is True and len(ok.bodies) == 1
    assert any("webhook broken not delivered after 3 attempt(s): HTTP 500" in r.getMessage()
               for r in caplog.records)


def test_a_hanging_receiver_does_not_delay_the_run_past_the_timeout(
        make_config: Any, receiver: Callable[[str], Receiver]) -> None:
    hang = receiver("hang")
    cfg: Config = make_config(notifications=hooks({"name": "slow", "url": hang.url},
                                                  timeout=1.0, retries=3))
    start = time.monotonic()
    [delivery] = send(cfg, "run-1", "failed", [Notice("failure", "boom")], {}, "here")
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, elapsed  # timeout_seconds (1 s) in all, not per attempt
    assert delivery.ok is False and "timed out" in delivery.error
    assert hang.hits >= 1

    # In a whole run the summary says so, and the run succeeds.
    cfg = make_config(data=GOOD, notifications=hooks({"name": "slow", "url": hang.url},
                                                     timeout=1.0))
    summary = run_pipeline(cfg, run_id="night-1")
    [n] = summary["notifications"]
    assert n["receiver"] == "slow" and n["ok"] is False


def test_an_unset_url_env_is_a_warning_and_a_reported_failure(
        make_config: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("MLOPS_TEST_HOOK_UNSET", raising=False)
    cfg = make_config(data=GOOD, notifications=hooks({"url_env": "MLOPS_TEST_HOOK_UNSET"}))
    summary = run_pipeline(cfg, run_id="night-1")
    [n] = summary["notifications"]
    assert n["ok"] is False and n["error"] == "$MLOPS_TEST_HOOK_UNSET is not set"
    assert any("MLOPS_TEST_HOOK_UNSET" in r.getMessage() and "not set" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize(("hook", "message"), [
    ({}, r"'notifications.webhooks\[0\]' needs exactly one of url or url_env"),
    ({"url": "http://a", "url_env": "B"}, "needs exactly one of url or url_env"),
    ({"url": "ftp://a"}, r"'notifications.webhooks\[0\].url' must be an http"),
    ({"url_env": "1BAD"}, r"'notifications.webhooks\[0\].url_env' must be an environment"),
    ({"url": "http://a", "events": ["drift", "dinner"]},
     r"'notifications.webhooks\[0\].events' must be a list of failure, drift"),
    ({"url": "http://a", "secret": "x"}, r"unknown config key 'notifications.webhooks\[0\]"
                                         r".secret'"),
])
def test_bad_webhook_config_names_the_key(hook: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"notifications": {"webhooks": [hook]}})

