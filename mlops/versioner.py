"""DataVersioner: content-addressed DataFrame versions in the store.

Layout below the versioner's base (named in :mod:`mlops.layout`):

    objects/<ab>/<rest-of-hash>.parquet   the data, addressed by its content hash
    index/<created>~<version-id>          empty marker, gives creation order cheaply
    versions/<version-id>.json            the manifest: written LAST, the commit point
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

from mlops import layout
from mlops.errors import VersionExistsError, VersionNotFoundError
from mlops.hashing import check_algorithm
from mlops.ids import check_version_id, iso, utc_now
from mlops.records import DataManifest
from mlops.storage import Store, as_store, crash_point
from mlops.versioned import VersionedStore

if TYPE_CHECKING:  # pandas and pyarrow load on the first register or load: reading
    import pandas as pd  # manifests (mlops versions, show) must not pay for them
    import pyarrow.fs

#: Hex digits of the content hash used as the default version id.
DEFAULT_ID_LENGTH = 16
#: Whether shallow copies are independent (pandas >= 3 always copies on write).


def _copy_on_write() -> bool:
    """Whether shallow copies are independent (pandas >= 3 always copies on write)."""
    import pandas as pd

    return int(pd.__version__.split(".", 1)[0]) >= 3


@cache
def _local_fs() -> pyarrow.fs.LocalFileSystem:
    """pyarrow's own local filesystem, for native reads of a local store's objects."""
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


def _dictionary_columns(df: pd.DataFrame) -> list[str]:
    """Columns worth Parquet dictionary encoding: all but floating point ones.

    pyarrow tries a dictionary for every column and falls back to plain encoding
    once the dictionary page outgrows 1 MiB; for float features (nearly all values
    distinct) that attempt was more than half of the write time at 5M rows, and the
    file came out larger. The stored values are identical either way.
    """
    return [str(c) for c, t in df.dtypes.items() if getattr(t, "kind", "O") not in "fc"]


class DataVersioner(VersionedStore[DataManifest]):
    """Registers DataFrames as immutable, content-addressed versions.

    Args:
        base_dir: A path, URI or :class:`~mlops.storage.Store` (e.g. ``<store>/data``).
        hash_algorithm: ``sha256`` (default), ``sha512`` or ``blake2b``.
        storage_options: fsspec options when ``base_dir`` is a URI.
        keep_last_load: Keep the last registered or loaded version in memory, so loading
            it (ingest, then monitor-check, then train, in one ``mlops run``) skips the
            Parquet read.
            Only with pandas' copy-on-write (pandas >= 3): each load returns its own
            frame, and changing it never changes the kept one.

    Raises:
        ConfigError: Unsupported hash algorithm.
    """

    kind = "data version"
    record_type = DataManifest
    index_prefix = layout.DATA_INDEX

    def __init__(self, base_dir: str | os.PathLike[str] | Store = "data/versions",
                 hash_algorithm: str = "sha256",
                 storage_options: dict[str, Any] | None = None, *,
                 keep_last_load: bool = False) -> None:
        self.hash_algorithm = check_algorithm(hash_algorithm)
        super().__init__(as_store(base_dir, storage_options))
        self._keep_last_load = keep_last_load
        self._last_load: tuple[str, pd.DataFrame] | None = None

    @property
    def keep_last_load(self) -> bool:
        """Whether the last registered or loaded frame is kept (needs copy-on-write)."""
        return self._keep_last_load and _copy_on_write()

    # --- writing -----------------------------------------------------------------------
    def register(self, df: pd.DataFrame, version_id: str | None = None, *,
                 source: Mapping[str, Any] | None = None) -> str:
        """Store ``df`` as a version; identical content returns the existing id.

        Args:
            df: The data.
            version_id: A safe name; by default the first 16 hex digits of the content hash.
            source: Where the data came from (``{"uri", "files": [{"path", "size_bytes"}]}``),
                kept in the manifest; the first registration of a content keeps its own.

        Returns:
            The version id.

        Raises:
            InvalidVersionIdError: ``version_id`` is not a safe name (nothing is written).
            VersionExistsError: ``version_id`` is taken by different content.
        """
        if version_id is not None:
            check_version_id(version_id, "data version id")
        from mlops.data import column_stats
        from mlops.hashing import content_hash

        digest = content_hash(df, self.hash_algorithm)
        vid = version_id or digest[:DEFAULT_ID_LENGTH]
        existing = self._record_or_none(vid)
        if existing is not None:
            return self._same_or_conflict(vid, existing, digest)

        obj_key = self.object_key(digest)
        # The statistics pass runs on the other core while pyarrow (GIL released) encodes
        # and writes the Parquet object; both only read ``df``.
        with ThreadPoolExecutor(max_workers=1) as pool:
            stats = pool.submit(column_stats, df)
            reused = self.store.exists(obj_key)
            if reused:
                size = self.store.size(obj_key)
            else:
                size = self.store.write_via_path(
                    obj_key, lambda f: df.to_parquet(f, engine="pyarrow",
                                                     use_dictionary=_dictionary_columns(df)))
            column_stats_result = stats.result()
        crash_point("after-payload")
        created = utc_now()
        manifest = DataManifest(
            id=vid, created_at=iso(created), content_hash=digest,
            hash_algorithm=self.hash_algorithm, object=obj_key, rows=len(df),
            columns=[{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()],
            stats=column_stats_result, size_bytes=size,
            extra={"source": dict(source)} if source else {})
        self.index.add(vid, created)
        crash_point("after-index")
        try:
            self.store.write_json(self.manifest_key(vid), manifest.to_dict(), exclusive=True)
        except FileExistsError:
            # Another writer committed the same id first: our marker is a duplicate.
            self.store.delete(self.index.marker(vid, created))
            return self._same_or_conflict(vid, self.get_record(vid), digest)
        if reused and not self.store.exists(obj_key):
            # The object was an orphan that `mlops gc` removed while we committed.
            self.store.write_with(obj_key, lambda f: df.to_parquet(f, engine="pyarrow"))
        if self.keep_last_load:
            # Same content hash = same columns, dtypes, index and values as a load would
            # give: the next step of an in-process run need not read it back.
            self._last_load = (obj_key, df.copy(deep=False))
        return vid

    def _same_or_conflict(self, vid: str, manifest: DataManifest, digest: str) -> str:
        if manifest.content_hash == digest and manifest.hash_algorithm == self.hash_algorithm:
            return vid
        raise VersionExistsError(f"data version '{vid}' already exists with different "
                                 "content; versions are never overwritten")

    # --- reading -----------------------------------------------------------------------
    def load(self, version_id: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The DataFrame and metadata of a version.

        A partitioned version (made by the Dask engine, ``"kind": "partitioned"``)
        loads as a lazy ``dask.dataframe.DataFrame`` with one partition per stored
        partition (needs the ``mlops[dask]`` extra); nothing is read until computed.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version.
        """
        manifest = self.get_record(version_id)
        if manifest.partitioned:
            from mlops.partitions import load_partitioned

            return load_partitioned(self.store, manifest), manifest.to_dict()
        key = manifest.object
        if self._last_load is not None and self._last_load[0] == key:
            # Same object (content-addressed, immutable): a lazy copy of the kept frame.
            return self._last_load[1].copy(deep=False), manifest.to_dict()
        import pandas as pd

        local = self.store.local_path(key)
        try:
            if local is not None:
                # With a filesystem, pyarrow opens the path natively; without one pandas
                # reads through a Python file object, which measured ~10-25% slower.
                df = pd.read_parquet(local, engine="pyarrow", filesystem=_local_fs())
            else:
                with self.store.open_read(key) as f:
                    df = pd.read_parquet(f, engine="pyarrow")
        except FileNotFoundError as err:
            raise VersionNotFoundError(f"data version '{version_id}' is missing its object "
                                       f"{self.store.url(key)}") from err
        if self.keep_last_load:
            self._last_load = (key, df.copy(deep=False))
        return df, manifest.to_dict()

    # --- keys --------------------------------------------------------------------------
    @staticmethod
    def object_key(digest: str) -> str:
        """The key of the Parquet object of a content hash."""
        return layout.data_object_key(digest)

    @staticmethod
    def manifest_key(version_id: str) -> str:
        """The key of a version's manifest."""
        return layout.data_manifest_key(version_id)

    commit_key = manifest_key
