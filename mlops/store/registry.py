"""ModelRegistry: immutable, integrity-checked model versions in the store.

Layout below the registry's base (named in :mod:`mlops.store.layout`):

    <version-id>/model-<sha256[:16]>.joblib   the artifact (its name carries its hash,
                                              so two writers never overwrite each other)
    <version-id>/metadata.json                written LAST with exclusive create: the commit point
    _index/<created>~<version-id>             empty marker, gives creation order cheaply
    _aliases/<alias>/events/<time>-<uuid>.json   one object per alias move, never overwritten
    _aliases/<alias>/current.json             pointer to the alias's latest event, written
                                              after the event (a cheap read of the value)

Alias history is append-only: ``promote`` pushes a version, ``rollback`` pops the
latest promotion, so rolling back twice after promoting A, B, C serves A. The
pointer is a cache of the history: if a writer dies between the event and the
pointer, :meth:`ModelRegistry.get_alias` sees a pointer older than the newest
event and re-derives the value from the history.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import io
import json
import os
import uuid
from dataclasses import replace
from typing import Any

from mlops.errors import (
    BadInputError,
    IntegrityError,
    VersionExistsError,
    VersionNotFoundError,
)
from mlops.records import AliasEvent, ModelRecord
from mlops.store import layout
from mlops.store.filesystem import CorruptObjectError, Store, as_store, confined_key
from mlops.store.ids import check_version_id, compact, iso, utc_now
from mlops.store.versioned import VersionedStore

METADATA = layout.MODEL_METADATA
ALIASES = layout.ALIASES
#: The metadata record's field holding its HMAC when a signing key is configured.
SIGNATURE = "signature"
#: The alias the pipeline loads and the promotion rule moves.
PRODUCTION = "production"
PROMOTE = "promote"
ROLLBACK = "rollback"


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign_record(record: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of a metadata record (all but its signature), hex.

    The record names the artifact and its sha256, so the signature covers the model's
    bytes too.
    """
    return hmac.new(key, _canonical(record), hashlib.sha256).hexdigest()


def check_signature(record: dict[str, Any], key: bytes, version_id: str) -> None:
    """Refuse a record that is unsigned or whose signature does not match ``key``.

    Raises:
        IntegrityError: Unsigned or mis-signed (exit code 2; the model is not unpickled).
    """
    found = record.get(SIGNATURE)
    if not isinstance(found, str):
        raise IntegrityError(f"model version '{version_id}' is not signed and a signing key is "
                             "configured (registry.signing_key_env); refusing to load it")
    if not hmac.compare_digest(found, sign_record(record, key)):
        raise IntegrityError(f"model version '{version_id}' has a signature that does not "
                             "match the signing key; refusing to load it")


def load_metadata(record: ModelRecord) -> dict[str, Any]:
    """What :meth:`ModelRegistry.load` returns beside the model: the caller's metadata at
    the top level, the record's registry fields beside it (the caller's keys win)."""
    return {**record.to_dict(), **record.metadata}


def current_user() -> str:
    """The OS user name for alias events ("unknown" in a container without one)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ModelRegistry(VersionedStore[ModelRecord]):
    """Saves and loads model versions.

    Args:
        base_dir: A path, URI or :class:`~mlops.store.filesystem.Store` (e.g. ``<store>/models``).
        storage_options: fsspec options when ``base_dir`` is a URI.
        signing_key: Optional HMAC key (``registry.signing_key_env``): saves sign the
            metadata record (which names the artifact's sha256), loads refuse a record
            without a valid signature. See docs/reliability.md for what it protects.
    """

    kind = "model version"
    record_type = ModelRecord
    index_prefix = layout.MODEL_INDEX

    def __init__(self, base_dir: str | os.PathLike[str] | Store = "models",
                 storage_options: dict[str, Any] | None = None, *,
                 signing_key: bytes | None = None) -> None:
        super().__init__(as_store(base_dir, storage_options))
        self.signing_key = signing_key or None

    def save(self, model: Any, version_id: str, metadata: dict[str, Any] | None = None) -> str:
        """Save ``model`` as ``version_id``.

        Args:
            model: Any picklable model.
            version_id: A safe, unused name.
            metadata: JSON-serializable facts to keep with it (accuracy, data version...).

        Returns:
            The version id.

        Raises:
            InvalidVersionIdError: Unsafe id (nothing is written).
            VersionExistsError: The id is taken; versions are never overwritten.
        """
        check_version_id(version_id, "model version id")
        if self.store.exists(self.metadata_key(version_id)):
            raise VersionExistsError(f"model version '{version_id}' already exists; "
                                     "versions are never overwritten")
        buf = io.BytesIO()
        import joblib  # loads numpy: only saving and loading models need it

        joblib.dump(model, buf)
        payload = buf.getvalue()
        sha = hashlib.sha256(payload).hexdigest()
        artifact = layout.model_artifact_key(version_id, sha)
        self.store.write_bytes(artifact, payload)

        def record_at(created_at: str) -> dict[str, Any]:
            record = ModelRecord(id=version_id, created_at=created_at, artifact=artifact,
                                 sha256=sha, size_bytes=len(payload),
                                 model_class=type(model).__name__,
                                 metadata=dict(metadata or {}))
            if self.signing_key is not None:
                record = replace(record, signature=sign_record(record.to_dict(),
                                                               self.signing_key))
            return record.to_dict()

        if self.commit(version_id, record_at) is None:
            raise VersionExistsError(f"model version '{version_id}' already exists; "
                                     "versions are never overwritten")
        return version_id

    def load(self, version_id: str) -> tuple[Any, dict[str, Any]]:
        """The model and its metadata, after verifying the artifact's sha256.

        The metadata is what the caller passed to :meth:`save` (``save(m, "v1",
        {"accuracy": 0.91})`` loads ``meta["accuracy"] == 0.91``), with the registry's
        fields of the record beside it (``id``, ``created_at``, ``artifact``, ``sha256``,
        ``size_bytes``, ``model_class``, and ``metadata``: the caller's dict again); a key
        the caller saved wins over a registry field of the same name. The typed record
        is :meth:`get_record`.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version, or its artifact is missing.
            IntegrityError: The artifact does not match its recorded sha256, its path
                leaves the version's folder, or (with a signing key) the record is unsigned
                or mis-signed; it is not unpickled.
        """
        record, payload = self._verified(version_id)
        import joblib

        return joblib.load(io.BytesIO(payload)), load_metadata(record)

    def verify(self, version_id: str) -> ModelRecord:
        """Every check :meth:`load` makes (record, signature, artifact and its sha256),
        without unpickling the artifact: what ``mlops status`` asks of the serving model.

        Returns:
            The version's record.

        Raises:
            See :meth:`load`.
        """
        return self._verified(version_id)[0]

    def _verified(self, version_id: str) -> tuple[ModelRecord, bytes]:
        record = self.get_record(version_id)
        artifact = confined_key(record.artifact, f"{version_id}/",
                                f"model version '{version_id}' artifact")
        if "/" in artifact[len(version_id) + 1:] or not artifact.endswith(".joblib"):
            raise IntegrityError(f"model version '{version_id}' artifact {artifact!r} is not a "
                                 "model file of its own folder; refusing to load it")
        if self.signing_key is not None:
            check_signature(record.to_dict(), self.signing_key, version_id)
        try:
            payload = self.store.read_bytes(artifact)
        except FileNotFoundError as err:
            raise VersionNotFoundError(f"model version '{version_id}' is missing its "
                                       f"artifact {artifact}") from err
        found = hashlib.sha256(payload).hexdigest()
        if found != record.sha256:
            raise IntegrityError(
                f"model artifact of version '{version_id}' failed its integrity check: "
                f"sha256 {found[:12]}... does not match the recorded "
                f"{record.sha256[:12]}...; refusing to load it")
        return record, payload

    # --- drift references ---------------------------------------------------------------
    @staticmethod
    def reference_key(version_id: str) -> str:
        """The key of the drift reference kept with a model version (written before the
        version may be promoted, so an alias move always carries its reference)."""
        return layout.model_reference_key(version_id)

    def save_reference(self, version_id: str, doc: dict[str, Any]) -> bool:
        """Keep ``doc`` as the drift reference of ``version_id`` (create only).

        Returns:
            False when the version already had one (a resumed step): it is kept as is.
        """
        check_version_id(version_id, "model version id")
        try:
            self.store.write_json(self.reference_key(version_id), doc, exclusive=True,
                                  compact=True)
        except FileExistsError:
            return False
        return True

    def get_reference(self, version_id: str) -> Any:
        """The drift reference kept with ``version_id`` (as parsed, checked by the caller),
        or None when it has none.

        Raises:
            CorruptObjectError: It exists but is not valid JSON (exit code 2).
        """
        check_version_id(version_id, "model version id")
        try:
            return self.store.read_json(self.reference_key(version_id))
        except FileNotFoundError:
            return None

    def save_training_rows(self, version_id: str, hashes: Any) -> bool:
        """Keep the sorted, unique uint64 hashes of the rows ``version_id`` was trained on
        (create only; see :func:`mlops.store.hashing.row_hashes`).

        Returns:
            False when the version already had them (a resumed step): kept as is.
        """
        import numpy as np

        check_version_id(version_id, "model version id")
        buf = io.BytesIO()
        np.save(buf, np.asarray(hashes, dtype="<u8"), allow_pickle=False)
        try:
            self.store.write_bytes(layout.model_training_rows_key(version_id), buf.getvalue(),
                                   exclusive=True)
        except FileExistsError:
            return False
        return True

    def has_training_rows(self, version_id: str) -> bool:
        """Whether ``version_id`` keeps the hashes of its training rows."""
        check_version_id(version_id, "model version id")
        return self.store.exists(layout.model_training_rows_key(version_id))

    def get_training_rows(self, version_id: str) -> Any:
        """The sorted uint64 hashes of the rows ``version_id`` was trained on, or None
        when it has none (a model saved before they were kept, or by the library API).

        Raises:
            CorruptObjectError: The object is not a uint64 NumPy array (exit code 2).
        """
        import numpy as np

        check_version_id(version_id, "model version id")
        key = layout.model_training_rows_key(version_id)
        try:
            raw = self.store.read_bytes(key)
        except FileNotFoundError:
            return None
        try:
            found = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise CorruptObjectError(f"training rows of model version '{version_id}' "
                                     f"({key}) are not a NumPy array: {err}", key) from err
        if found.dtype != np.dtype("<u8") or found.ndim != 1:
            raise CorruptObjectError(f"training rows of model version '{version_id}' "
                                     f"({key}) hold {found.dtype} values, expected uint64", key)
        return found

    # --- aliases -----------------------------------------------------------------------
    def get_alias(self, alias: str = PRODUCTION) -> str | None:
        """The version ``alias`` points to, or None when it was never set.

        Raises:
            InvalidVersionIdError: Unsafe alias name.
        """
        check_version_id(alias, "alias")
        try:
            pointer = self.store.read_json(self._pointer_key(alias))
        except (FileNotFoundError, IntegrityError):
            pointer = None  # a cache of the history: missing or corrupt, derive it again
        events = self.store.keys(self._events_prefix(alias))
        if isinstance(pointer, dict) and events and pointer.get("event") == events[-1]:
            return str(pointer["version"]) if pointer.get("version") else None
        if not events:
            return None
        # The pointer is missing or stale (a writer stopped between event and pointer).
        stack = self._stack(self.alias_events(alias))
        return stack[-1] or None if stack else None

    def alias_history(self, alias: str = PRODUCTION) -> list[dict[str, Any]]:
        """Every move of ``alias``, oldest first.

        Returns:
            Events ``{alias, action, version, previous, by, at, reason, event}``.
        """
        return [e.to_dict() for e in self.alias_events(alias)]

    def alias_events(self, alias: str = PRODUCTION) -> list[AliasEvent]:
        """Every move of ``alias``, oldest first, typed (see :meth:`alias_history`)."""
        check_version_id(alias, "alias")
        prefix = self._events_prefix(alias)
        return [self._event(f"{prefix}/{name}", name)
                for name in self.store.keys(prefix) if name.endswith(".json")]

    def _event(self, key: str, name: str) -> AliasEvent:
        """One alias event, typed.

        Raises:
            CorruptObjectError: Not JSON, not an object, or a key missing or of the wrong
                type (exit code 2, names the file; issue 19 item 11).
        """
        doc = self.store.read_json(key)
        try:
            if not isinstance(doc, dict):
                raise TypeError("expected a JSON object")
            event = AliasEvent.from_dict({**doc, "event": name})
            if event.version:
                check_version_id(event.version, "model version id")
        except (TypeError, ValueError, BadInputError) as err:
            raise CorruptObjectError(f"alias event {self.store.url(key)} is damaged ({err})",
                                     key) from err
        return event

    def aliases(self) -> dict[str, str | None]:
        """Every alias and the version it points to."""
        return {name: self.get_alias(name) for name in self.store.list_dirs(ALIASES)}

    def set_alias(self, version_id: str, alias: str = PRODUCTION, *, reason: str = "",
                  by: str | None = None) -> dict[str, Any]:
        """Point ``alias`` at ``version_id`` (a ``promote`` event).

        Args:
            version_id: A committed model version.
            alias: The alias to move.
            reason: Why, kept in the history.
            by: Who (default: the OS user).

        Returns:
            The event written.

        Raises:
            InvalidVersionIdError: Unsafe version id or alias.
            VersionNotFoundError: No such version (nothing is written).
        """
        check_version_id(alias, "alias")
        if not self.exists(version_id):
            raise VersionNotFoundError(f"cannot promote unknown model version '{version_id}' "
                                       f"to '{alias}' in {self.store.uri}")
        previous = self.get_alias(alias)
        event = self._append(alias, PROMOTE, version_id, previous, reason, by)
        if not self.exists(version_id):
            # `mlops gc` retired it between the check above and the move (issue 19 item 7):
            # move the alias back and fail, so promote and gc never both win.
            self._append(alias, ROLLBACK, previous or "", version_id,
                         f"model version '{version_id}' was deleted while it was promoted",
                         by)
            raise VersionNotFoundError(f"model version '{version_id}' was deleted (mlops gc) "
                                       f"while it was promoted to '{alias}'; the alias is back "
                                       f"at {previous!r}")
        return event

    def rollback(self, alias: str = PRODUCTION, *, reason: str = "",
                 by: str | None = None) -> dict[str, Any]:
        """Move ``alias`` back to the value before its latest promotion (a ``rollback`` event).

        Returns:
            The event written.

        Raises:
            BadInputError: The alias has no earlier value (nothing is written).
            VersionNotFoundError: The earlier version no longer exists (nothing is written).
        """
        check_version_id(alias, "alias")
        stack = self._stack(self.alias_events(alias))
        if len(stack) < 2:
            raise BadInputError(f"cannot roll back alias '{alias}': its history has no "
                                "earlier version" + (f" than '{stack[-1]}'" if stack else ""))
        target = stack[-2]
        if not self.exists(target):
            raise VersionNotFoundError(f"cannot roll back alias '{alias}' to model version "
                                       f"'{target}': it no longer exists in {self.store.uri}")
        return self._append(alias, ROLLBACK, target, stack[-1], reason, by)

    def _append(self, alias: str, action: str, version: str, previous: str | None,
                reason: str, by: str | None) -> dict[str, Any]:
        now = utc_now()
        name = layout.timestamped_name(compact(now), uuid.uuid4().hex[:12])
        event = AliasEvent(alias=alias, action=action, version=version, previous=previous,
                           by=by or current_user(), at=iso(now), reason=reason, event=name)
        self.store.write_json(f"{self._events_prefix(alias)}/{name}", event.stored(),
                              exclusive=True)
        self.store.write_json(self._pointer_key(alias),
                              {"alias": alias, "version": version, "event": name, "at": iso(now)})
        return event.to_dict()

    @staticmethod
    def _stack(events: list[AliasEvent]) -> list[str]:
        stack: list[str] = []
        for e in events:
            if e.action == ROLLBACK:
                if stack:
                    stack.pop()
                if not stack or stack[-1] != e.version:
                    stack.append(str(e.version))
            else:
                stack.append(str(e.version))
        return stack

    @staticmethod
    def _events_prefix(alias: str) -> str:
        return layout.alias_events_prefix(alias)

    @staticmethod
    def _pointer_key(alias: str) -> str:
        return layout.alias_pointer_key(alias)

    @staticmethod
    def metadata_key(version_id: str) -> str:
        """The key of a version's metadata record."""
        return layout.model_metadata_key(version_id)

    commit_key = metadata_key
