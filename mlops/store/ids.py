"""Safe ids and UTC timestamps, shared by every module that names things in the store."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mlops.errors import InvalidVersionIdError

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_version_id(version_id: str, what: str = "version id") -> str:
    """Return ``version_id`` if it is a safe name.

    Safe: 1-128 characters of letters, digits, ``.``, ``_`` and ``-``, starting with
    a letter or digit, and no ``..``.

    Raises:
        InvalidVersionIdError: The id is unsafe (the message quotes it).
    """
    if not isinstance(version_id, str) or not _SAFE_ID.match(version_id) or ".." in version_id:
        raise InvalidVersionIdError(
            f"unsafe {what} {version_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators")
    return version_id


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-11-28T13:00:00.123456+00:00``."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def compact(ts: datetime) -> str:
    """A sortable compact UTC timestamp for object names: ``20261128T130000.123456Z``."""
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
