"""Logging set-up: stderr always, plus an optional rotating file."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any, TextIO

from mlops.errors import ConfigError

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
                  max_bytes: int = 10 * 1024 * 1024, backup_count: int = 5) -> logging.Logger:
    """Configure the ``mlops`` logger: a console handler and, if given, a rotating file.

    Calling it again replaces the handlers it added before (no duplicate lines).

    Args:
        level: A level name such as ``INFO``.
        log_file: Optional file; its folder is created.
        max_bytes: Rotate the file at this size.
        backup_count: Rotated files to keep.

    Returns:
        The configured ``mlops`` logger.

    Raises:
        ConfigError: ``log_file`` cannot be opened for writing (exit code 2).
    """
    logger = logging.getLogger("mlops")
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
        h.setFormatter(logging.Formatter(FORMAT))
        setattr(h, _HANDLER_TAG, True)
        logger.addHandler(h)
    logger.propagate = False
    return logger
