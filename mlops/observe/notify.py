"""Webhook notifications at the end of a run (``notifications.webhooks``).

Each receiver has ``url`` (a literal URL) or ``url_env`` (the name of an environment
variable holding it: webhook URLs are credentials, so in a cluster the chart fills it from
a Secret), and the events it wants (default :data:`DEFAULT_EVENTS`). A run sends each
receiver at most one message, when at least one of its events happened, with a
Slack-compatible body: ``text`` (one line per event), ``attachments`` with structured
``fields`` (Slack, Mattermost), and the same facts as plain data under ``mlops`` (for
Microsoft Teams workflows and Alertmanager-style receivers). A receiver with
``format: cloudevents`` instead gets one CloudEvents 1.0 structured event per event
(``application/cloudevents+json``, ``type`` ``<type_prefix>.model.promoted`` and so on,
see :data:`CLOUDEVENT_TYPES`). With ``secret_env`` every request is signed with Standard
Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) by the
``standardwebhooks`` package.

Receivers are called in parallel; each gets ``notifications.timeout_seconds`` in all,
spread over at most ``1 + notifications.retries`` attempts (a 5xx, 429, timeout or
connection error is retried; a 4xx or a redirect is not). A failing receiver never fails
the run: the outcome of every receiver is returned and goes into the run's summary.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlops.choices import NotifyEvent, RetrainReason
from mlops.config import Config
from mlops.observe import httppost
from mlops.records import RunSummary

log = logging.getLogger(__name__)

#: Events a receiver gets when it names none (``success`` is opt-in: it is every night).
DEFAULT_EVENTS = tuple(e for e in NotifyEvent if e is not NotifyEvent.SUCCESS)
SLACK = "slack"
CLOUDEVENTS = "cloudevents"
#: CloudEvents ``type`` of each event, after the receiver's ``type_prefix``.
CLOUDEVENT_TYPES = {
    NotifyEvent.PROMOTION: "model.promoted", NotifyEvent.REJECTION: "model.rejected",
    NotifyEvent.ROLLBACK: "model.rolled_back",
    NotifyEvent.SERVING_BELOW_THRESHOLD: "model.below_threshold",
    NotifyEvent.DRIFT: "drift.detected", NotifyEvent.FAILURE: "run.failed",
    NotifyEvent.SUCCESS: "run.succeeded", NotifyEvent.VALIDATION_FAILED: "data.validation_failed",
}
DEFAULT_TYPE_PREFIX = "io.mlops"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
_BACKOFF = 0.2
_COLORS = {NotifyEvent.FAILURE: "danger", NotifyEvent.SERVING_BELOW_THRESHOLD: "danger",
           NotifyEvent.REJECTION: "warning", NotifyEvent.DRIFT: "warning",
           NotifyEvent.VALIDATION_FAILED: "danger"}


@dataclass(frozen=True)
class Notice:
    """One thing that happened in a run that a receiver may want to hear about."""

    event: NotifyEvent
    text: str


@dataclass(frozen=True)
class Delivery:
    """The outcome of one receiver: delivered or not, after how many attempts, and why."""

    receiver: str
    ok: bool
    attempts: int
    events: tuple[str, ...]
    status: int | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the run summary."""
        return {**asdict(self), "events": list(self.events)}


@dataclass(frozen=True)
class Receiver:
    """A configured webhook receiver (the URL is resolved when sending)."""

    name: str
    url: str | None
    url_env: str | None
    events: tuple[str, ...]
    format: str = SLACK
    type_prefix: str = DEFAULT_TYPE_PREFIX
    secret_env: str | None = None

    def resolve(self, env: Mapping[str, str]) -> str | None:
        """The URL: the literal one, or the value of ``url_env`` (None when unset)."""
        if self.url:
            return self.url
        return env.get(self.url_env or "") or None


def receivers(config: Config) -> list[Receiver]:
    """The receivers of ``notifications.webhooks`` (validated by the config)."""
    out = []
    for i, hook in enumerate(config.notifications.webhooks):
        name = hook.get("name") or hook.get("url_env") or f"webhook-{i}"
        out.append(Receiver(name=str(name), url=hook.get("url"), url_env=hook.get("url_env"),
                            events=tuple(hook.get("events") or DEFAULT_EVENTS),
                            format=hook.get("format") or SLACK,
                            type_prefix=hook.get("type_prefix") or DEFAULT_TYPE_PREFIX,
                            secret_env=hook.get("secret_env")))
    return out


def missing_urls(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Receivers whose ``url_env`` or ``secret_env`` is not set (warned about when the run
    starts; such a receiver gets nothing: a message that should be signed is never sent
    unsigned)."""
    env = os.environ if env is None else env
    out = [f"{r.name} (${r.url_env})" for r in receivers(config) if r.resolve(env) is None]
    return out + [f"{r.name} (${r.secret_env})" for r in receivers(config)
                  if r.secret_env and not env.get(r.secret_env)]


def notices_for_summary(summary: RunSummary, below: str | None) -> list[Notice]:
    """The notices of a run that ended: drift, promotion or rejection, serving below
    threshold, and success.

    Args:
        summary: The run summary.
        below: How the serving model missed its gating metric's threshold (for example
            ``accuracy 0.61 < 0.7``), or None when it did not.
    """
    out = []
    if RetrainReason.DRIFT in (summary.reasons or []):
        report = summary.drift_report or {}
        drifted = [f["feature"] for f in report.get("features", []) if f.get("drifted")]
        names = f" ({', '.join(drifted[:5])})" if drifted else ""
        out.append(Notice(NotifyEvent.DRIFT,
                          f"drift detected: score {_num(summary.drift)}{names}"))
    if below is not None:
        out.append(Notice(NotifyEvent.SERVING_BELOW_THRESHOLD,
                          f"serving model below threshold on the new data ({below}): "
                          "retrained"))
    if summary.retrained:
        challenger = summary.challenger_version
        acc = _num(summary.challenger_accuracy)
        if summary.promoted:
            out.append(Notice(NotifyEvent.PROMOTION,
                              f"model {challenger} promoted to production (accuracy {acc})"))
        else:
            out.append(Notice(NotifyEvent.REJECTION,
                              f"challenger {challenger} rejected (accuracy {acc} "
                              f"< champion {_num(summary.champion_accuracy)})"))
    out.append(Notice(NotifyEvent.SUCCESS,
                      f"run {summary.run_id} succeeded: model {summary.model_version} "
                      f"serves, accuracy {_num(summary.accuracy)}"))
    return out


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) else "n/a"


def build_cloudevent(r: Receiver, notice: Notice, run_id: str, status: str,
                     facts: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One CloudEvents 1.0 event (structured mode) for one notice: ``type`` is
    ``<type_prefix>.model.promoted`` and so on, ``data`` the run's facts (model and data
    versions, metric, score, serving URI...) and the notice's text."""
    subject = facts.get("model_version")
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/mlops/{where}",
        "type": f"{r.type_prefix}.{CLOUDEVENT_TYPES[notice.event]}",
        "time": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": JSON_CONTENT_TYPE,
        **({"subject": str(subject)} if subject is not None else {}),
        "data": {"run_id": run_id, "status": status, "where": where, "event": notice.event,
                 "text": notice.text, **facts},
    }


def _messages(r: Receiver, run_id: str, status: str, wanted: Sequence[Notice],
              facts: Mapping[str, Any], where: str) -> list[tuple[str, bytes, str]]:
    """``(message id, body, content type)`` of each request a receiver gets: one
    Slack-compatible message, or one CloudEvent per notice."""
    if r.format == CLOUDEVENTS:
        out = []
        for notice in wanted:
            event = build_cloudevent(r, notice, run_id, status, facts, where)
            out.append((event["id"], json.dumps(event, default=str).encode("utf-8"),
                        CLOUDEVENTS_CONTENT_TYPE))
        return out
    body = build_body(run_id, status, wanted, facts, where)
    return [(f"msg_{uuid.uuid4().hex}", json.dumps(body, default=str).encode("utf-8"),
             JSON_CONTENT_TYPE)]


def signer(secret: str) -> Any:
    """A Standard Webhooks signer for a ``whsec_`` key.

    Raises:
        ValueError: The key is not ``whsec_`` followed by non-empty base64 (the message
            does not repeat it).
    """
    from standardwebhooks.webhooks import Webhook

    if not secret.startswith("whsec_"):
        raise ValueError("the key does not start with whsec_")
    try:
        return Webhook(secret)
    except Exception as err:
        raise ValueError("the key after whsec_ is not base64") from err


def bad_secrets(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """One line per receiver whose ``secret_env`` holds a malformed key (never echoed)."""
    env = os.environ if env is None else env
    out = []
    for i, r in enumerate(receivers(config)):
        if r.secret_env and env.get(r.secret_env):
            try:
                signer(env[r.secret_env])
            except ValueError as err:
                out.append(f"notifications.webhooks[{i}].secret_env: ${r.secret_env} is not "
                           f"a Standard Webhooks key: {err}")
    return out


def build_body(run_id: str, status: str, notices: Sequence[Notice], facts: Mapping[str, Any],
               where: str) -> dict[str, Any]:
    """The Slack-compatible JSON body of one message."""
    head = f"mlops {where}: run {run_id} {status}"
    events = [n.event for n in notices]
    color = next((_COLORS[e] for e in events if e in _COLORS), "good")
    fields = [{"title": k, "value": str(v), "short": True} for k, v in facts.items()
              if v is not None]
    return {
        "text": "\n".join([head, *(f"- {n.text}" for n in notices)]),
        "attachments": [{"fallback": head, "color": color, "title": head, "fields": fields}],
        "mlops": {"run_id": run_id, "status": status, "where": where, "events": events,
                  **{k: v for k, v in facts.items()}},
    }


def send(config: Config, run_id: str, status: str, notices: Sequence[Notice],
         facts: Mapping[str, Any], where: str,
         env: Mapping[str, str] | None = None) -> list[Delivery]:
    """Send the message to every receiver that wants one of the notices' events.

    Never raises: every receiver's outcome is returned (and failures logged as warnings),
    with any URL from ``url_env`` redacted. The call returns after at most about
    ``notifications.timeout_seconds`` of wall time, and leaves nothing the process waits
    for at exit (deliveries run in daemon threads, each request under a deadline).
    """
    try:
        return _send(config, run_id, status, notices, facts, where,
                     os.environ if env is None else env)
    except Exception as err:  # a notifier never changes a run's outcome
        log.warning("webhooks not sent: %s", redact(_first_line(err), secret_urls(config, env)))
        return []


def _send(config: Config, run_id: str, status: str, notices: Sequence[Notice],
          facts: Mapping[str, Any], where: str, env: Mapping[str, str]) -> list[Delivery]:
    n = config.notifications
    secrets = secret_urls(config, env)
    jobs: list[tuple[Receiver, list[Notice]]] = []
    for r in receivers(config):
        wanted = [x for x in notices if x.event in r.events]
        if wanted:
            jobs.append((r, wanted))
    if not jobs:
        return []
    budget = float(n.timeout_seconds)
    results: dict[int, Delivery] = {}
    threads = []
    for i, (r, wanted) in enumerate(jobs):
        events = tuple(x.event for x in wanted)

        def work(i: int = i, r: Receiver = r, wanted: list[Notice] = wanted,
                 events: tuple[str, ...] = events) -> None:
            try:
                messages = _messages(r, run_id, status, wanted, facts, where)
                secret = env.get(r.secret_env) if r.secret_env else None
                if r.secret_env and not secret:
                    results[i] = Delivery(r.name, False, 0, events,
                                          error=f"${r.secret_env} is not set: not sent "
                                                "unsigned")
                    return
                results[i] = _deliver(r, r.resolve(env), messages, budget, n.retries,
                                      events, secret)
            except Exception as err:  # never let one receiver's bug escape
                results[i] = Delivery(r.name, False, 0, events, error=_first_line(err))

        t = threading.Thread(target=work, name="mlops-webhook", daemon=True)
        t.start()
        threads.append(t)
    end = time.monotonic() + budget + 1.0
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    out = []
    for i, (r, wanted) in enumerate(jobs):
        events = tuple(x.event for x in wanted)
        d = results.get(i) or Delivery(r.name, False, 0, events,
                                       error="gave up: no answer in time")
        d = dataclasses.replace(d, error=redact(d.error, secrets))
        if not d.ok:
            log.warning("webhook %s not delivered after %d attempt(s): %s", d.receiver,
                        d.attempts, d.error)
        out.append(d)
    return out


def secret_urls(config: Config, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The URLs read from ``url_env`` (credentials), by the variable that holds them."""
    env = os.environ if env is None else env
    out = {}
    for r in receivers(config):
        if r.url_env and env.get(r.url_env):
            out[r.url_env] = env[r.url_env]
    return out


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every secret URL (and its path and host, which are what leak) replaced
    by ``<$NAME>``."""
    for name, url in secrets.items():
        parts = [url.strip(), url]
        try:
            split = urllib.parse.urlsplit(url.strip())
            parts += [split.path, split.netloc]
        except ValueError:
            pass
        for part in sorted({p for p in parts if len(p) >= 4}, key=len, reverse=True):
            text = text.replace(part, f"<${name}>")
    return text


def bad_urls(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """One line per receiver whose URL from ``url_env`` is malformed, naming the variable
    and what is wrong, never the URL."""
    env = os.environ if env is None else env
    out = []
    for i, r in enumerate(receivers(config)):
        if r.url_env and env.get(r.url_env):
            problem = httppost.url_problem(env[r.url_env])
            if problem is not None:
                out.append(f"notifications.webhooks[{i}].url_env: the URL in ${r.url_env} "
                           f"{problem}")
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _deliver(r: Receiver, url: str | None, messages: Sequence[tuple[str, bytes, str]],
             budget: float, retries: int, events: tuple[str, ...],
             secret: str | None = None) -> Delivery:
    """Send each message in turn (retrying each) within ``budget`` seconds in all; the
    delivery is ok when every message got a 2xx."""
    if url is None:
        return Delivery(r.name, False, 0, events, error=f"${r.url_env} is not set")
    problem = httppost.url_problem(url)
    if problem is not None:
        where = f"${r.url_env}" if r.url_env else "url"
        return Delivery(r.name, False, 0, events, error=f"the URL in {where} {problem}")
    sign = None
    if secret is not None:
        try:
            sign = signer(secret)
        except ValueError as err:
            return Delivery(r.name, False, 0, events, error=f"${r.secret_env}: {err}")
    deadline = time.monotonic() + budget
    attempts = 0
    status: int | None = None
    for msg_id, data, content_type in messages:
        ok, status, error, tries = _post(url, msg_id, data, content_type, sign, deadline,
                                         retries)
        attempts += tries
        if not ok:
            return Delivery(r.name, False, attempts, events, status=status, error=error)
    return Delivery(r.name, True, attempts, events, status=status)


def _post(url: str, msg_id: str, data: bytes, content_type: str, sign: Any,
          deadline: float, retries: int) -> tuple[bool, int | None, str, int]:
    """One message, retried: ``(ok, status, error, attempts)``. A signed message keeps
    its ``webhook-id`` over retries (receivers deduplicate on it) and is signed again with
    each attempt's timestamp."""
    status: int | None = None
    error = "timed out"
    attempts = 0
    while attempts <= retries:
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            break
        attempts += 1
        headers = {"Content-Type": content_type}
        if sign is not None:
            now = datetime.datetime.now(datetime.UTC)
            headers.update({"webhook-id": msg_id,
                            "webhook-timestamp": str(int(now.timestamp())),
                            "webhook-signature": sign.sign(msg_id, now, data)})
        try:
            status = httppost.request("POST", url, data, headers, remaining)
        except httppost.DeadlineError:
            status, error = None, "timed out"
        except (OSError, http.client.HTTPException, ValueError) as err:
            status, error = None, _first_line(err)
        else:
            if 200 <= status < 300:
                return True, status, "", attempts
            if 300 <= status < 400:
                return False, status, f"HTTP {status}: redirect not followed", attempts
            error = f"HTTP {status}"
            if status < 500 and status != 429:
                break  # the receiver refuses this message: a retry will not help
        pause = _BACKOFF * 2 ** (attempts - 1)
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    return False, status, error, attempts
