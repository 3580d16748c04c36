"""What every versioned store shares: the index and the one commit protocol.

Data versions (:class:`~mlops.store.versioner.DataVersioner`, and the partitioned versions
of :func:`~mlops.store.partitions.register_partitioned`), model versions
(:class:`~mlops.store.registry.ModelRegistry`) and predictions versions
(:class:`~mlops.scoring.PredictionsStore`) are all committed by
:meth:`VersionedStore.commit`: payload, index marker, exclusive commit document.

The index makes "newest first" cheap on object stores: next to each commit document
an empty marker object ``<index>/<created_at>~<id>`` is written. Listing the index
gives every id in creation order from object *names* alone, without reading a
document or trusting modification times. The marker is written before the commit
document; a marker whose document is missing (a crash in between) is skipped by
readers and removed by ``mlops gc``. A marker is only a hint: readers skip a marker
whose time is not its document's ``created_at`` (forged, or a lost race's duplicate), so
"newest first" is the documents' own order (``mlops gc --check`` reports such markers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from mlops.errors import VersionNotFoundError
from mlops.records import VersionRecord
from mlops.store import layout
from mlops.store.filesystem import CorruptObjectError, Store, crash_point
from mlops.store.ids import check_version_id, compact, iso, utc_now

R = TypeVar("R", bound=VersionRecord)

#: The crash points of a commit (:func:`~mlops.store.filesystem.crash_point`): the payload
#: is written; the index marker is written too, the commit document not yet.
AFTER_PAYLOAD = "after-payload"
AFTER_INDEX = "after-index"


def marker_stamp(key: str) -> str:
    """The creation time in a marker's name (``<index>/<stamp>~<id>``)."""
    return key.rsplit("/", 1)[-1].split(layout.INDEX_SEP, 1)[0]


def created_stamp(created_at: str) -> str | None:
    """A document's ``created_at`` as a marker's time, None when it is not a time."""
    try:
        return compact(datetime.fromisoformat(created_at))
    except (TypeError, ValueError):
        return None


class VersionIndex:
    """Creation-ordered ids below ``<store>/<prefix>/``."""

    def __init__(self, store: Store, prefix: str = layout.DATA_INDEX) -> None:
        self.store = store
        self.prefix = prefix

    def marker(self, version_id: str, created: datetime) -> str:
        """The key of the marker of ``version_id``."""
        return layout.index_marker_key(self.prefix, compact(created), version_id)

    def add(self, version_id: str, created: datetime) -> None:
        """Write the marker of ``version_id``."""
        self.store.write_bytes(self.marker(version_id, created), b"")

    def entries(self) -> list[tuple[str, str]]:
        """``(marker key, id)`` pairs, newest first."""
        out = []
        for name in reversed(self.store.keys(self.prefix)):
            if layout.INDEX_SEP in name:
                out.append((f"{self.prefix}/{name}", name.split(layout.INDEX_SEP, 1)[1]))
        return out

    def committed(self, read: Callable[[str], R | None], limit: int | None = None) -> list[R]:
        """The commit documents of indexed ids, newest first by their ``created_at``.

        A marker whose time is not its document's ``created_at`` (a forged marker, or
        the duplicate of a writer that lost a race) is skipped: order comes from the
        documents, never from a name anyone can write (issue 19 item 2). A version
        is listed at its true marker, which sorts where its ``created_at`` does.

        Args:
            read: Reads an id's document; None when not committed (skipped).
            limit: Read at most this many documents (the first page); None for all.
        """
        out: list[R] = []
        seen: set[str] = set()
        for key, vid in self.entries():
            if limit is not None and len(out) >= limit:
                break
            if vid in seen:
                continue
            doc = read(vid)
            if doc is None or marker_stamp(key) != created_stamp(doc.created_at):
                continue
            seen.add(vid)
            out.append(doc)
        return out

    def disagreeing(self, created: Callable[[str], str | None]) -> list[tuple[str, str]]:
        """``(marker key, id)`` of every marker whose time is not its committed
        document's ``created_at`` (``created(id)``: None when not committed, skipped)."""
        out = []
        for key, vid in self.entries():
            stamp = created(vid)
            if stamp is not None and created_stamp(stamp) != marker_stamp(key):
                out.append((key, vid))
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


class VersionedStore(Generic[R]):
    """Immutable versions, each committed by one JSON document, listed by an index.

    Subclasses set :attr:`kind` (``data version``/``model version``, for messages),
    :attr:`record_type` and :attr:`index_prefix`, and implement :meth:`commit_key`.

    Args:
        store: The folder of the versions.
    """

    kind: str
    record_type: type[R]
    index_prefix: str

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = VersionIndex(store, self.index_prefix)

    @staticmethod
    def commit_key(version_id: str) -> str:
        """The key of a version's commit document."""
        raise NotImplementedError

    # --- writing -----------------------------------------------------------------------
    def commit(self, version_id: str, document: Callable[[str], Mapping[str, Any]]
               ) -> dict[str, Any] | None:
        """Commit a version whose payload is written: the commit protocol of every store.

        1. crash point ``after-payload`` (the caller has written the payload: the data
           object, the model artifact, the partitions or the predictions);
        2. the index marker ``<index>/<created>~<id>``; crash point ``after-index``;
        3. the commit document, created exclusively: the version exists from here on.

        A crash before 3 leaves a payload and perhaps a marker that readers skip and
        ``mlops gc`` collects. When another writer created the document first, this
        writer's marker (a duplicate) is deleted and None is returned: the caller reads
        the winner's document (same content: the same version; else a conflict).

        Args:
            version_id: The id (checked by the caller, before the payload is written).
            document: Builds the commit document from its ``created_at`` (ISO 8601 UTC,
                the time in the marker's name).

        Returns:
            The document written, or None when ``version_id`` was committed by another
            writer first.
        """
        crash_point(AFTER_PAYLOAD)
        created = utc_now()
        doc = dict(document(iso(created)))
        self.index.add(version_id, created)
        crash_point(AFTER_INDEX)
        try:
            self.store.write_json(self.commit_key(version_id), doc, exclusive=True)
        except FileExistsError:
            self.store.delete(self.index.marker(version_id, created))
            return None
        return doc

    def commit_manifest(self, manifest: R) -> str:
        """Commit a whole record through :meth:`commit` (its ``created_at`` set there); an
        id already committed (same content: the id is its hash) is returned as it is, also
        when a concurrent writer commits the same content first. The predictions and label
        versions commit this way."""
        if not self.exists(manifest.id):
            self.commit(manifest.id, lambda created_at: {**manifest.to_dict(),
                                                         "created_at": created_at})
        return manifest.id

    # --- reading -----------------------------------------------------------------------
    def get_metadata(self, version_id: str) -> dict[str, Any]:
        """The commit document of a version, as stored.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version.
        """
        return self.get_record(version_id).to_dict()

    def get_record(self, version_id: str) -> R:
        """The commit document of a version, typed.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version.
        """
        check_version_id(version_id, f"{self.kind} id")
        record = self._record_or_none(version_id)
        if record is None:
            raise VersionNotFoundError(f"unknown {self.kind} '{version_id}' in "
                                       f"{self.store.uri}")
        return record

    def exists(self, version_id: str) -> bool:
        """Whether a committed version has this id."""
        check_version_id(version_id, f"{self.kind} id")
        return self.store.exists(self.commit_key(version_id))

    def list_versions(self, limit: int | None = None) -> list[str]:
        """Ids of committed versions, newest first (as in the seed API).

        Args:
            limit: At most this many (the first page); None for all.
        """
        return [r.id for r in self.list_records(limit)]

    def list_records(self, limit: int | None = None) -> list[R]:
        """Commit documents of committed versions, newest first.

        Args:
            limit: Read at most this many documents (the first page); None for all.
        """
        return self.index.committed(self._record_or_none, limit)

    def get_latest_version(self) -> str | None:
        """The id of the newest committed version, or None when there is none."""
        latest = self.list_versions(limit=1)
        return latest[0] if latest else None

    def validate_record(self, record: R) -> None:
        """Checks of a record beyond its types (subclasses; none here).

        Raises:
            TypeError: The record is damaged (the message says how).
        """

    def _record_or_none(self, version_id: str) -> R | None:
        """The typed commit document, None when not committed.

        Raises:
            CorruptObjectError: The document is not valid JSON, not an object, misses a
                key or has one of the wrong type: damage a retry will not fix (exit 2),
                named by version and file (issue 19 item 11).
        """
        key = self.commit_key(version_id)
        try:
            data = self.store.read_json(key)
        except FileNotFoundError:
            return None
        try:
            record = self.record_type.from_dict(data)
            self.validate_record(record)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise CorruptObjectError(f"{self.kind} '{version_id}': {self.store.url(key)} is "
                                     f"damaged ({err})", key) from err
        return record
