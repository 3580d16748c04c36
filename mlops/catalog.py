"""What the data versioner and the model registry share: safe ids, timestamps, the index.

The index makes "newest first" cheap on object stores: next to each manifest an
empty marker object ``index/<created_at>~<id>`` is written. Listing the index
gives every id in creation order from object *names* alone, without reading a
manifest or trusting modification times. The marker is written before the
manifest; a marker whose manifest is missing (a crash in between) is skipped
by readers and removed by ``mlops gc``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlops.errors import InvalidVersionIdError
from mlops.storage import Store

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEP = "~"


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


class VersionIndex:
    """Creation-ordered ids below ``<store>/index/``."""

    def __init__(self, store: Store, prefix: str = "index") -> None:
        self.store = store
        self.prefix = prefix

    def marker(self, version_id: str, created: datetime) -> str:
        """The key of the marker of ``version_id``."""
        return f"{self.prefix}/{compact(created)}{_SEP}{version_id}"

    def add(self, version_id: str, created: datetime) -> None:
        """Write the marker of ``version_id``."""
        self.store.write_bytes(self.marker(version_id, created), b"")

    def entries(self) -> list[tuple[str, str]]:
        """``(marker key, id)`` pairs, newest first."""
        out = []
        for name in reversed(self.store.list(self.prefix)):
            if _SEP in name:
                out.append((f"{self.prefix}/{name}", name.split(_SEP, 1)[1]))
        return out

    def committed(self, read: Callable[[str], dict[str, Any] | None],
                  limit: int | None = None) -> list[dict[str, Any]]:
        """The commit documents of indexed ids, newest first.

        Args:
            read: Reads an id's manifest or metadata; None when not committed (skipped).
            limit: Read at most this many documents (the first page); None for all.
        """
        out: list[dict[str, Any]] = []
        for vid in self.ids():
            if limit is not None and len(out) >= limit:
                break
            doc = read(vid)
            if doc is not None:
                out.append(doc)
        return out

    def ids(self) -> list[str]:
        """Every indexed id, newest first (duplicates removed)."""
        seen: set[str] = set()
        ordered = []
        for _, vid in self.entries():
            if vid not in seen:
                seen.add(vid)
                ordered.append(vid)
        return ordered
