"""Logging set-up: stderr always, plus an optional rotating file."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_TAG = "_mlops_handler"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be replaced, e.g. by tests)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "INFO", log_file: str | os.PathLike[str] | None = None,
                  max_bytes: int = 10 * 1024 * 1024, backup_count: int = 5, *,
                  root: bool = False) -> logging.Logger:
    """Configure the ``mlops`` logger: a console handler and, if given, a rotating file.

    Calling it again replaces the handlers it added before (no duplicate lines).

    Args:
        level: A level name such as ``INFO``.
        log_file: Optional file; its folder is created.
        max_bytes: Rotate the file at this size.
        backup_count: Rotated files to keep.
        root: Configure the root logger instead (the application's logging, as the seed's
            ``_setup_logging`` does): every logger's lines, the user's own included, reach
            the console and the file; the ``mlops`` logger then passes its lines up to it.

    Returns:
        The configured logger (``mlops``, or the root logger).
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
        if folder:
            os.makedirs(folder, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        setattr(h, _HANDLER_TAG, True)
        logger.addHandler(h)
    if not root:
        logger.propagate = False
    return logger
