"""What a run tells the outside world: metrics, Kubernetes Events, webhooks, log context.

:class:`RunObserver` is the one set of hooks that ``run_pipeline`` (one process) and the
controller (step Jobs) call at the start of a run, around each step and at its end. It
pushes Prometheus metrics (:mod:`mlops.observe.metrics`), sends webhook notifications
(:mod:`mlops.observe.notify`), writes Kubernetes Events through an event sink that the controller
passes in, and sets the run id and step of the log records (:func:`log_context`).
Nothing here ever fails the run: each channel logs its own failure as a warning.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from mlops.choices import EventReason, NotifyEvent, RetrainReason
from mlops.config import Config
from mlops.errors import ConfigError
from mlops.observe.logconf import log_context
from mlops.observe.metrics import (
    Pusher,
    failure_samples,
    require_prometheus_client,
    run_samples,
    schema_changes,
    step_samples,
)
from mlops.observe.notify import (
    Notice,
    bad_secrets,
    bad_urls,
    missing_urls,
    notices_for_summary,
    redact,
    secret_urls,
    send,
)
from mlops.records import RunSummary
from mlops.validation import PREFIX as VALIDATION_PREFIX

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
#: Kubernetes Event reasons written by the controller, with their type.
EVENT_TYPES = {
    EventReason.RUN_STARTED: NORMAL, EventReason.STEP_SUCCEEDED: NORMAL,
    EventReason.STEP_FAILED: WARNING, EventReason.DRIFT_DETECTED: WARNING,
    EventReason.RETRAIN_STARTED: NORMAL, EventReason.MODEL_PROMOTED: NORMAL,
    EventReason.PROMOTION_REJECTED: WARNING, EventReason.SERVING_BELOW_THRESHOLD: WARNING,
    EventReason.RUN_SUCCEEDED: NORMAL, EventReason.RUN_FAILED: WARNING,
    EventReason.VALIDATION_FAILED: WARNING,
}
#: ``(type, reason, action, note)`` -> writes one Kubernetes Event (may raise).
EventSink = Callable[[str, str, str, str], None]


class RunObserver:
    """Hooks of one run.

    Args:
        config: The config (``observability``, ``notifications``, ``monitoring``).
        run_id: The run id.
        events: Writes a Kubernetes Event (the controller's); None outside Kubernetes.
        where: Where the run happens, for messages (default ``<release>/<namespace>``).
        env: Environment (webhook URLs, namespace; default ``os.environ``).
    """

    def __init__(self, config: Config, run_id: str, *, events: EventSink | None = None,
                 where: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.run_id = run_id
        self.env = os.environ if env is None else env
        self.pusher = Pusher(config, self.env)
        self.events = events if config.observability.kubernetes_events else None
        ns = config.kubernetes.namespace or self.env.get("MLOPS_NAMESPACE") or "local"
        self.where = where or f"{config.kubernetes.release}/{ns}"
        self.durations: dict[str, float] = {}
        self.failed_step: str | None = None
        self.notifications: list[dict[str, Any]] = []
        self.secrets = secret_urls(config, self.env)
        self._stack = ExitStack()

    # --- start and steps ---------------------------------------------------------------
    def check(self) -> None:
        """Fail before the run starts when a channel cannot work (exit 2), warn otherwise.

        Raises:
            ConfigError: A Pushgateway is configured without prometheus-client, or a
                webhook URL from ``url_env`` is malformed (named by its variable, never
                echoed).
        """
        require_prometheus_client(self.config)
        bad = bad_urls(self.config, self.env) + bad_secrets(self.config, self.env)
        if bad:
            raise ConfigError(bad[0])
        for name in missing_urls(self.config, self.env):
            log.warning("webhook %s: its environment variable is not set; it gets nothing",
                        name)

    def run_started(self) -> None:
        """The run begins: log context, webhook URLs from ``url_env`` redacted from every
        log record until the run ends, and the ``RunStarted`` Event."""
        self._stack.enter_context(log_context(run_id=self.run_id))
        if self.secrets:
            self._stack.enter_context(_redacting_logs(self.secrets))
        self.event(EventReason.RUN_STARTED, "Run", f"run {self.run_id} started")

    @contextmanager
    def step(self, step: str) -> Iterator[dict[str, Any]]:
        """Around one step: sets the log context and times it. The caller puts the step's
        result (a mapping) into the yielded dict under ``result``; on an exception the
        step counts as failed (``StepFailed``) and the exception goes on."""
        box: dict[str, Any] = {}
        start = time.monotonic()
        with log_context(run_id=self.run_id, step=step):
            try:
                yield box
            except BaseException as err:
                self.durations[step] = time.monotonic() - start
                self.failed_step = step
                self.event(EventReason.STEP_FAILED, "Step", f"step {step} failed: {_line(err)}")
                raise  # run_failed pushes the failure with the durations
        self.durations[step] = time.monotonic() - start
        self.step_succeeded(step, box.get("result") or {})

    def step_succeeded(self, step: str, result: Mapping[str, Any]) -> None:
        """A step ended well: push the durations, write its Events."""
        self.pusher.push(step_samples(self.durations))
        seconds = self.durations.get(step)
        took = f" in {seconds:.1f}s" if seconds is not None else ""
        self.event(EventReason.STEP_SUCCEEDED, "Step", f"step {step} succeeded{took}")
        if step == "monitor-check":
            reasons = list(result.get("reasons") or [])
            if RetrainReason.DRIFT in reasons:
                self.event(EventReason.DRIFT_DETECTED, "Check",
                           f"drift score {_num(result.get('drift'))} above the threshold"
                           f"{_drifted(result.get('drift_report'))}")
            below = _below(result.get("reasons"), result.get("metric"),
                           result.get("threshold"), result.get("score"))
            if below is not None:
                self.event(EventReason.SERVING_BELOW_THRESHOLD, "Check",
                           f"serving model {result.get('model_version')} {below}")
            if result.get("retrain"):
                self.event(EventReason.RETRAIN_STARTED, "Train",
                           f"retraining: {', '.join(reasons)}")
        elif step == "train":
            if result.get("promoted", True):
                self.event(EventReason.MODEL_PROMOTED, "Promote",
                           f"model {result.get('model_version')} promoted to production "
                           f"(accuracy {_num(result.get('accuracy'))})")
            else:
                self.event(EventReason.PROMOTION_REJECTED, "Promote",
                           f"challenger {result.get('model_version')} accuracy "
                           f"{_num(result.get('accuracy'))} < champion "
                           f"{result.get('champion_version')} "
                           f"{_num(result.get('champion_accuracy'))}: not promoted")

    # --- end -----------------------------------------------------------------------------
    def run_succeeded(self, ws: Any, summary: RunSummary) -> list[dict[str, Any]]:
        """The run ended well: push its metrics, notify, write ``RunSucceeded``.

        Args:
            ws: The workspace (history and data versions for the counters).
            summary: The run summary.

        Returns:
            The webhook outcomes (for the summary's ``notifications``).
        """
        if self.pusher.enabled:
            try:
                samples = self._run_samples(ws, summary)
            except Exception as err:  # the store failing here must not fail the run
                log.warning("metrics of run %s not computed: %s", self.run_id, _line(err))
            else:
                self.pusher.push(samples)
        below = _below(summary.reasons, summary.metric, summary.threshold, summary.score)
        notices = notices_for_summary(summary, below)
        facts = {"model_version": summary.model_version, "accuracy": summary.accuracy,
                 "drift": summary.drift, "retrained": summary.retrained,
                 "report": summary.report_url, "data_version": summary.data_version,
                 "metric": summary.metric, "score": summary.score,
                 "serving_uri": summary.serving_uri}
        self.notifications = [d.to_dict() for d in send(
            self.config, self.run_id, "succeeded", notices, facts, self.where, self.env)]
        self.event(EventReason.RUN_SUCCEEDED, "Run", f"run {self.run_id} succeeded: model "
                   f"{summary.model_version} serves, accuracy {_num(summary.accuracy)}")
        self._stack.close()
        return self.notifications

    def run_failed(self, err: BaseException) -> list[dict[str, Any]]:
        """The run failed: push the failure time, notify, write ``RunFailed``.

        Returns:
            The webhook outcomes.
        """
        step = self.failed_step
        self.pusher.push(failure_samples(step, self.durations))
        where = f" at step {step}" if step else ""
        text = redact(f"run {self.run_id} failed{where}: {_line(err)}", self.secrets)
        notices = [Notice(NotifyEvent.FAILURE, text)]
        # A batch that broke the validation: section (in this process, or read from the
        # ingest Job's one-line error under the controller).
        invalid = _validation_line(err)
        if invalid is not None:
            notices.append(Notice(NotifyEvent.VALIDATION_FAILED, invalid))
        self.notifications = [d.to_dict() for d in send(
            self.config, self.run_id, "failed", notices,
            {"step": step, "error": redact(_line(err), self.secrets)}, self.where, self.env)]
        if invalid is not None:
            self.event(EventReason.VALIDATION_FAILED, "Validate", invalid)
        self.event(EventReason.RUN_FAILED, "Run", text)
        self._stack.close()
        return self.notifications

    def event(self, reason: EventReason, action: str, note: str) -> None:
        """Write one Kubernetes Event (when a sink is set); a failure is logged and turns
        Events off for the rest of the run, never raised."""
        if self.events is None:
            return
        try:
            self.events(EVENT_TYPES[reason], reason, action, redact(note, self.secrets))
        except Exception as err:
            log.warning("Kubernetes Event %s not written (%s); no more Events for run %s",
                        reason, _line(err), self.run_id)
            self.events = None

    def _run_samples(self, ws: Any, summary: RunSummary) -> list[Any]:
        ingested = ws.read_result(self.run_id, "ingest") or {}
        manifests = [{"columns": r.columns}
                     for r in reversed(ws.versioner.list_records())]  # oldest first
        return run_samples(summary, ingested.get("rows"),
                           ws.monitor.get_history(), schema_changes(manifests),
                           self.durations)


class _Redact(logging.Filter):
    """Replaces secret URLs in a record's message (and drops its traceback text when that
    holds one)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact(str(exc), self.secrets) != str(exc):
                record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _redacting_logs(secrets: Mapping[str, str]) -> Iterator[None]:
    """While active, every handler of the root logger redacts ``secrets``."""
    flt = _Redact(secrets)
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _validation_line(err: BaseException) -> str | None:
    """The ``validation failed: ...`` line of an error, or None."""
    for line in str(err).splitlines():
        at = line.find(VALIDATION_PREFIX)
        if at >= 0:
            return line[at:]
    return None


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) else "n/a"


def _drifted(report: Any) -> str:
    if not isinstance(report, Mapping):
        return ""
    names = [f.get("feature") for f in report.get("features", []) if f.get("drifted")]
    return f" ({', '.join(map(str, names[:5]))}{', ...' if len(names) > 5 else ''})" \
        if names else ""


def _below(reasons: Sequence[str] | None, metric: str | None, threshold: Any,
           score: Any) -> str | None:
    """How a monitor-check result or run summary (its ``reasons``, ``metric``,
    ``threshold`` and ``score``) says the serving model missed its gating metric's
    threshold (``accuracy 0.61 below 0.7``), or None when it did not."""
    if not reasons:
        return None
    # Imported here: mlops.training loads scikit-learn, which a controller needs only then.
    from mlops.decisions import low_score_reason
    from mlops.training import higher_is_better

    metric = str(metric or "accuracy")
    if low_score_reason(metric) not in reasons:
        return None
    limit = f"{threshold:g}" if isinstance(threshold, int | float) else "its threshold"
    side = "below" if higher_is_better(metric) else "above"
    return f"{metric} {_num(score)} {side} {limit}"
