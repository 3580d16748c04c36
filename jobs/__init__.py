"""Thin container entrypoints: ``python -m jobs.<step>`` equals ``mlops <step>``.

Each takes ``--config`` and ``--run-id``, writes its result to
``runs/<run-id>/<step>.json`` and exits 0, 1 (a retry may help) or 2 (bad input).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlops.cli import main


def run(command: str, argv: Sequence[str] | None = None) -> int:
    """Run ``mlops <command> <argv>`` and return its exit code.

    Args:
        command: The ``mlops`` subcommand, e.g. ``ingest``.
        argv: The remaining arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    return main([command, *(sys.argv[1:] if argv is None else argv)])
