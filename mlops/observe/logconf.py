"""Logging set-up: stderr always, plus an optional rotating file; text or JSON lines.

``logging.format: json`` writes one JSON object per line (``time``, ``level``,
``logger``, ``run_id``, ``step``, ``message``, plus ``exception`` when there is one)
for cluster log collectors. The run id and step come from :func:`log_context`,
which the run and the step commands set.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from mlops.errors import ConfigError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
_HANDLER_TAG = "_mlops_handler"
_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "mlops_log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """While active, log records carry these fields (``run_id``, ``step``).

    A field given as None is removed for the duration.
    """
    current = dict(_CONTEXT.get() or {})
    for key, value in fields.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    token = _CONTEXT.set(current)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, run_id, step,
    message, and exception (the formatted traceback) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        ctx = _CONTEXT.get() or {}
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "run_id": ctx.get("run_id"),
            "step": ctx.get("step"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be replaced, e.g. by tests)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "INFO", log_file: str | os.PathLike[str] | None = None,
                  max_bytes: int = 10 * 1024 * 1024, backup_count: int = 5,
                  fmt: str = "text", *, root: bool = False) -> logging.Logger:
    """Configure the ``mlops`` logger: a console handler and, if given, a rotating file.

    Calling it again replaces the handlers it added before (no duplicate lines).

    Args:
        level: A level name such as ``INFO``.
        log_file: Optional file; its folder is created.
        max_bytes: Rotate the file at this size.
        backup_count: Rotated files to keep.
        fmt: ``text`` or ``json`` (one JSON object per line, see :class:`JsonFormatter`).
        root: Configure the root logger instead (the application's logging, as the seed's
            ``_setup_logging`` does): every logger's lines, the user's own included, reach
            the console and the file; the ``mlops`` logger then passes its lines up to it.

    Returns:
        The configured logger (``mlops``, or the root logger).

    Raises:
        ConfigError: ``log_file`` cannot be opened for writing (exit code 2).
    """
    if root:
        package = logging.getLogger("mlops")
        for h in list(package.handlers):
            if getattr(h, _HANDLER_TAG, False):
                package.removeHandler(h)
                h.close()
        package.setLevel(logging.NOTSET)
        package.propagate = True
    logger = logging.getLogger() if root else logging.getLogger("mlops")
    logger.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_TAG, False):
            logger.removeHandler(h)
            h.close()
    handlers: list[logging.Handler] = [_StderrHandler()]
    if log_file:
        folder = os.path.dirname(os.fspath(log_file))
        try:
            if folder:
                os.makedirs(folder, exist_ok=True)
            handlers.append(logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"))
        except OSError as err:
            # A path that cannot be written stays unwritable on a retry: bad configuration.
            raise ConfigError(f"config key 'logging.file': cannot open {log_file} for "
                              f"writing: {err.strerror or err}") from err
    for h in handlers:
        h.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
        setattr(h, _HANDLER_TAG, True)
        logger.addHandler(h)
    if not root:
        logger.propagate = False
    return logger
