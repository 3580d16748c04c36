"""One HTTP request with a wall-clock deadline, for the run's outbound channels (webhooks,
the Pushgateway).

``urllib``'s ``timeout`` bounds each socket read, not the request: a server that answers
one byte per second keeps a caller busy for as long as it likes, and a worker thread
reading it keeps the process from exiting. :func:`request` runs the request in a daemon
thread, waits at most ``deadline`` seconds of wall time, then shuts the socket down and
gives up; the process never waits for it at exit. Redirects are never followed (the
status is returned), and a URL is checked before anything is sent.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Mapping

#: Bytes of an answer's body read at most (the status is what matters).
MAX_BODY = 64 * 1024


class DeadlineError(TimeoutError):
    """No complete answer within the deadline."""


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL this module can send to, or None.

    The reason never repeats the URL (it may be a credential).
    """
    if not isinstance(url, str) or not url:
        return "is empty"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "contains whitespace or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL (bad host or port)"
    if parts.scheme not in ("http", "https"):
        return "does not start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    return None


def request(method: str, url: str, body: bytes, headers: Mapping[str, str],
            deadline: float) -> int:
    """Send one request and return the answer's HTTP status (3xx included: redirects are
    not followed).

    Args:
        method: ``POST``, ``PUT``...
        url: An absolute http(s) URL (see :func:`url_problem`).
        body: The request body.
        headers: Request headers.
        deadline: Seconds of wall time for connecting, sending and reading the answer.

    Raises:
        ValueError: A malformed URL (the message does not repeat it).
        DeadlineError: No answer within ``deadline``.
        OSError, http.client.HTTPException: The connection failed.
    """
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(f"the URL {problem}")
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=max(deadline, 0.01) + 0.5)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    box: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            resp.read(MAX_BODY)
            box["status"] = resp.status
        except BaseException as err:  # handed to the caller
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=work, name="mlops-http", daemon=True)
    worker.start()
    if not done.wait(deadline):
        _abort(conn)
        raise DeadlineError(f"no answer within {deadline:g}s")
    conn.close()
    err = box.get("error")
    if isinstance(err, BaseException):
        raise err
    status = box["status"]
    assert isinstance(status, int)
    return status


def _abort(conn: http.client.HTTPConnection) -> None:
    """Unblock a worker reading from ``conn`` (shutdown wakes a blocked recv; close alone
    does not) and release the socket."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        conn.close()
