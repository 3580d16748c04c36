"""Promotion events other systems trust (issue 21 item 4): ``format: cloudevents`` sends
CloudEvents 1.0 structured events, and ``secret_env`` signs every delivery (any format)
with Standard Webhooks headers. The receiver is a real HTTP server on 127.0.0.1 that
verifies each request with the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mlops.cli import main
from mlops.runner import run_pipeline
from mlops.store.filesystem import open_store
from mlops.store.registry import ModelRegistry

KEY = "whsec_" + base64.b64encode(b"a 24 byte test secret!!!").decode()
GOOD = {"n_samples": 300, "n_features": 4}


@pytest.fixture
def backend() -> str:
    return "local"


class Verifier:
    """Records each request's headers and raw body; answers 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((dict(self.headers.items()), self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def verified(self, key: str = KEY) -> list[tuple[dict[str, str], Any]]:
        """Every request, verified with ``key`` (raises on a bad or missing signature)."""
        return [(h, Webhook(key).verify(body, h)) for h, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def verifier() -> Iterator[Callable[[], Verifier]]:
    made: list[Verifier] = []

    def make() -> Verifier:
        v = Verifier()
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


def test_cloudevents_signed_with_standard_webhooks_on_promotion(
        make_config: Any, verifier: Callable[[], Verifier],
        monkeypatch: pytest.MonkeyPatch) -> None:
    events, slack = verifier(), verifier()
    monkeypatch.setenv("MLOPS_TEST_WHSEC", KEY)
    cfg = make_config(data=GOOD, notifications={"webhooks": [
        {"name": "ce", "url": events.url, "format": "cloudevents",
         "secret_env": "MLOPS_TEST_WHSEC", "events": ["promotion", "success"]},
        {"name": "chat", "url": slack.url, "secret_env": "MLOPS_TEST_WHSEC"}]})
    summary = run_pipeline(cfg, run_id="night-1")
    assert [n["ok"] for n in summary["notifications"]] == [True, True]

    got = events.verified()
    assert [body["type"] for _, body in got] == ["io.mlops.model.promoted",
                                                  "io.mlops.run.succeeded"]
    headers, promoted = got[0]
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert promoted["specversion"] == "1.0" and promoted["source"].startswith("/mlops/")
    assert headers["webhook-id"] == promoted["id"]
    assert promoted["subject"] == "night-1"
    data = promoted["data"]
    assert data["model_version"] == "night-1"
    assert data["data_version"] == summary["data_version"]
    assert data["metric"] == "accuracy" and data["score"] == pytest.approx(summary["score"])
    assert data["serving_uri"] == summary["serving_uri"] and summary["serving_uri"]
    assert got[0][1]["id"] != got[1][1]["id"]

    # The default format is still Slack-compatible, and signed too.
    [(headers, body)] = slack.verified()
    assert headers["Content-Type"] == "application/json"
    assert body["mlops"]["events"] == ["promotion"] and "text" in body

    # A receiver with another key (or a body changed on the way) refuses it.
    other = "whsec_" + base64.b64encode(b"another key entirely....").decode()
    with pytest.raises(WebhookVerificationError):
        events.verified(other)
    h, raw = events.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(KEY).verify(raw.replace(b"night-1", b"night-2"), h)


def test_a_failed_run_and_a_rollback_are_cloudevents_with_the_type_prefix(
        make_config: Any, verifier: Callable[[], Verifier], tmp_path: Path,
        store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ce = verifier()
    hook = {"url": ce.url, "format": "cloudevents", "type_prefix": "com.example.ml"}
    cfg = make_config(data={"source": str(tmp_path / "nope.csv")},
                      notifications={"webhooks": [hook]})
    with pytest.raises(Exception, match=r"nope\.csv"):
        run_pipeline(cfg, run_id="night-1")
    [(headers, raw)] = ce.requests
    failed = json.loads(raw)
    assert failed["type"] == "com.example.ml.run.failed"
    assert failed["data"]["status"] == "failed" and failed["data"]["step"] == "ingest"
    assert "webhook-signature" not in headers  # no secret_env: unsigned

    config = tmp_path / "c.yaml"
    config.write_text(f"storage: {{uri: {store_uri}}}\n"
                      f"notifications: {{webhooks: [{json.dumps(hook)}]}}\n")
    models = ModelRegistry(open_store(store_uri).child("models"))
    models.save({"w": 1}, "m1")
    models.save({"w": 2}, "m2")
    for version in ("m1", "m2"):
        assert main(["promote", version, "--alias", "staging", "--config", str(config)]) == 0
    assert len(ce.requests) == 1  # a promotion by hand is not a run's event
    assert main(["rollback", "--alias", "staging", "--config", str(config)]) == 0
    capsys.readouterr()
    rolled = json.loads(ce.requests[-1][1])
    assert rolled["type"] == "com.example.ml.model.rolled_back"
    assert rolled["data"]["model_version"] == "m1"
    assert rolled["data"]["previous_version"] == "m2"


@pytest.mark.parametrize("value", ["not-a-whsec-key", "whsec_"])
def test_a_malformed_signing_key_is_refused_at_start_without_echoing_it(
        tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLOPS_TEST_WHSEC", value)
    config = tmp_path / "c.yaml"
    config.write_text(f"storage: {{uri: {tmp_path / 's'}}}\n"
                      "notifications: {webhooks: [{url: 'http://127.0.0.1:9/x', "
                      "secret_env: MLOPS_TEST_WHSEC}]}\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLOPS_TEST_WHSEC" in err
    assert value not in err.replace("MLOPS_TEST_WHSEC", "") or value == "whsec_"
    assert not (tmp_path / "s").exists()


def test_an_unset_signing_key_sends_nothing_unsigned(
        make_config: Any, verifier: Callable[[], Verifier],
        monkeypatch: pytest.MonkeyPatch) -> None:
    v = verifier()
    monkeypatch.delenv("MLOPS_TEST_WHSEC_UNSET", raising=False)
    cfg = make_config(data=GOOD, notifications={"webhooks": [
        {"name": "ce", "url": v.url, "secret_env": "MLOPS_TEST_WHSEC_UNSET"}]})
    summary = run_pipeline(cfg, run_id="night-1")
    [n] = summary["notifications"]
    assert n["ok"] is False and "MLOPS_TEST_WHSEC_UNSET is not set" in n["error"]
    assert v.requests == []


def test_bad_cloudevents_config_names_the_key() -> None:
    from mlops.config import Config
    from mlops.errors import ConfigError

    for hook, key in (({"url": "http://a", "format": "xml"}, "format"),
                      ({"url": "http://a", "secret_env": "1X"}, "secret_env"),
                      ({"url": "http://a", "type_prefix": "a b"}, "type_prefix"),
                      ({"url": "http://a b/c"}, "url")):
        with pytest.raises(ConfigError, match=rf"notifications\.webhooks\[0\]\.{key}'"):
            Config.from_dict({"notifications": {"webhooks": [hook]}})


def test_each_event_is_its_own_cloudevent_with_its_type(
        make_config: Any, verifier: Callable[[], Verifier]) -> None:
    from mlops.observe.notify import Notice, send

    v = verifier()
    cfg = make_config(notifications={"webhooks": [
        {"url": v.url, "format": "cloudevents", "events": ["drift", "serving_below_threshold",
                                                           "rejection"]}]})
    [d] = send(cfg, "r1", "succeeded",
               [Notice("drift", "drift detected"), Notice("serving_below_threshold", "low"),
                Notice("rejection", "lost"), Notice("success", "fine")],
               {"model_version": "m1", "data_version": "d1", "serving_uri": None}, "rel/ns")
    assert d.ok and d.attempts == 3
    bodies = [json.loads(raw) for _, raw in v.requests]
    assert [b["type"] for b in bodies] == ["io.mlops.drift.detected",
                                           "io.mlops.model.below_threshold",
                                           "io.mlops.model.rejected"]
    assert {b["source"] for b in bodies} == {"/mlops/rel/ns"}
    assert len({b["id"] for b in bodies}) == 3
    assert bodies[0]["data"]["data_version"] == "d1" and bodies[0]["data"]["text"] == (
        "drift detected")
