"""ModelRegistry: immutable, integrity-checked model versions in the store.

Layout below the registry's base:

    <version-id>/model-<sha256[:16]>.joblib   the artifact (its name carries its hash,
                                              so two writers never overwrite each other)
    <version-id>/metadata.json                written LAST with exclusive create: the commit point
    _index/<created>~<version-id>             empty marker, gives creation order cheaply
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import joblib

from mlops.catalog import VersionIndex, check_version_id, iso, utc_now
from mlops.errors import IntegrityError, VersionExistsError, VersionNotFoundError
from mlops.storage import Store, as_store, crash_point

METADATA = "metadata.json"


class ModelRegistry:
    """Saves and loads model versions.

    Args:
        base_dir: A path, URI or :class:`~mlops.storage.Store` (e.g. ``<store>/models``).
        storage_options: fsspec options when ``base_dir`` is a URI.
    """

    def __init__(self, base_dir: str | os.PathLike[str] | Store = "models",
                 storage_options: dict[str, Any] | None = None) -> None:
        self.store = as_store(base_dir, storage_options)
        self.index = VersionIndex(self.store, prefix="_index")

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
        joblib.dump(model, buf)
        payload = buf.getvalue()
        sha = hashlib.sha256(payload).hexdigest()
        artifact = f"{version_id}/model-{sha[:16]}.joblib"
        self.store.write_bytes(artifact, payload)
        crash_point("after-payload")
        created = utc_now()
        record = {
            "id": version_id,
            "created_at": iso(created),
            "artifact": artifact,
            "sha256": sha,
            "size_bytes": len(payload),
            "model_class": type(model).__name__,
            "metadata": dict(metadata or {}),
        }
        self.index.add(version_id, created)
        crash_point("after-index")
        try:
            self.store.write_json(self.metadata_key(version_id), record, exclusive=True)
        except FileExistsError as err:
            self.store.delete(self.index.marker(version_id, created))
            raise VersionExistsError(f"model version '{version_id}' already exists; "
                                     "versions are never overwritten") from err
        return version_id

    def load(self, version_id: str) -> tuple[Any, dict[str, Any]]:
        """The model and its metadata record, after verifying the artifact's sha256.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version, or its artifact is missing.
            IntegrityError: The artifact does not match its recorded sha256 (it is not
                unpickled).
        """
        record = self.get_metadata(version_id)
        try:
            payload = self.store.read_bytes(record["artifact"])
        except FileNotFoundError as err:
            raise VersionNotFoundError(f"model version '{version_id}' is missing its "
                                       f"artifact {record['artifact']}") from err
        found = hashlib.sha256(payload).hexdigest()
        if found != record["sha256"]:
            raise IntegrityError(
                f"model artifact of version '{version_id}' failed its integrity check: "
                f"sha256 {found[:12]}... does not match the recorded "
                f"{record['sha256'][:12]}...; refusing to load it")
        return joblib.load(io.BytesIO(payload)), record

    def get_metadata(self, version_id: str) -> dict[str, Any]:
        """The metadata record of a version.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version.
        """
        check_version_id(version_id, "model version id")
        record = self._record_or_none(version_id)
        if record is None:
            raise VersionNotFoundError(f"unknown model version '{version_id}' in "
                                       f"{self.store.uri}")
        return record

    def exists(self, version_id: str) -> bool:
        """Whether a committed version has this id."""
        check_version_id(version_id, "model version id")
        return self.store.exists(self.metadata_key(version_id))

    def list_versions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Metadata records of committed versions, newest first.

        Args:
            limit: Read at most this many records; None for all.
        """
        out: list[dict[str, Any]] = []
        for vid in self.index.ids():
            if limit is not None and len(out) >= limit:
                break
            record = self._record_or_none(vid)
            if record is not None:
                out.append(record)
        return out

    def get_latest_version(self) -> str | None:
        """The id of the newest committed version, or None."""
        latest = self.list_versions(limit=1)
        return latest[0]["id"] if latest else None

    @staticmethod
    def metadata_key(version_id: str) -> str:
        """The key of a version's metadata record."""
        return f"{version_id}/{METADATA}"

    def _record_or_none(self, vid: str) -> dict[str, Any] | None:
        try:
            data = self.store.read_json(self.metadata_key(vid))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None
