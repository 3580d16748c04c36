"""Run a function in a child process that must die at a crash point of the store
(``MLOPS_TEST_CRASH_AT``: ``os._exit`` there, like a SIGKILL); tests/test_crash.py and
tests/test_commit_protocol.py use it."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

from mlops.store.filesystem import CRASH_ENV, CRASH_EXIT_CODE
from tests.conftest import skip_or_fail

#: Seconds a child may take to reach its crash point (it is killed after).
CRASH_TIMEOUT = 120


def _crash_child(point: str, fn: Callable[..., None], *args: Any) -> None:
    os.environ[CRASH_ENV] = point
    fn(*args)


def crash(fn: Callable[..., None], *args: Any, point: str, start: str = "fork") -> None:
    """Run ``fn(*args)`` in a child with MLOPS_TEST_CRASH_AT=``point``; it must die there
    (exit status 99), not finish. ``start="spawn"`` for a child that starts a Dask
    cluster: a forked child inherits the parent's Dask state (its event loop thread is
    not copied) once an earlier test ran a cluster in this process, and hangs."""
    if start not in multiprocessing.get_all_start_methods():
        skip_or_fail(f"the crash tests need the {start} start method")
    proc = multiprocessing.get_context(start).Process(target=_crash_child,
                                                      args=(point, fn, *args))
    proc.start()
    proc.join(CRASH_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join()
    code = proc.exitcode
    proc.close()
    assert code == CRASH_EXIT_CODE, f"{fn.__name__} at {point} exited {code}, not at the point"
