"""DataVersioner: content-addressed DataFrame versions in the store.

Layout below the versioner's base (named in :mod:`mlops.store.layout`):

    objects/<ab>/<rest-of-hash>.parquet   the data, addressed by its content hash
    index/<created>~<version-id>          empty marker, gives creation order cheaply
    versions/<version-id>.json            the manifest: written LAST, the commit point
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from mlops.errors import (
    DataValidationError,
    IntegrityError,
    StorageError,
    VersionExistsError,
    VersionNotFoundError,
)
from mlops.records import DataManifest
from mlops.store import checksums, layout
from mlops.store.filesystem import Store, as_store, confined_key
from mlops.store.hashing import check_algorithm
from mlops.store.ids import check_version_id
from mlops.store.versioned import VersionedStore

log = logging.getLogger(__name__)

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


#: ``infer_dtype`` answers of object columns that Parquet stores as one type.
_STORABLE_MIXES = ("mixed-integer-float",)


def _check_storable(df: pd.DataFrame) -> None:
    """Refuse, naming the column, an object column of mixed Python types (pyarrow would
    fail half-way with ``ArrowInvalid``, naming neither the column nor the types)."""
    import pandas as pd

    for i, col in enumerate(df.columns):
        values = df.iloc[:, i]
        if not pd.api.types.is_object_dtype(values.dtype):
            continue
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred.startswith("mixed") and inferred not in _STORABLE_MIXES:
            types = sorted({type(v).__name__ for v in values.dropna().head(10_000)})
            raise DataValidationError(f"column '{col}' mixes value types ({', '.join(types)}) "
                                      "and cannot be stored: make it all strings or all "
                                      "numbers")


def address_problem(manifest: DataManifest) -> str | None:
    """Why ``manifest`` names an object that is not the address of its own content hash
    (None when every object is where its hash puts it).

    A manifest pointing at another version's object would make a repair overwrite that
    version's data, and gc delete the real object as an orphan (issue 19 item 1): such
    a manifest is refused by every reader and reported by ``mlops gc --check``.
    """
    if manifest.partitioned:
        for i, p in enumerate(manifest.partitions):
            if p["object"] != layout.data_object_key(p["digest"]):
                return (f"partition {i}: object {p['object']} is not the address of its "
                        f"digest {p['digest'][:16]}... (a forged or swapped manifest)")
        return None
    if manifest.object and manifest.object != layout.data_object_key(manifest.content_hash):
        return (f"object {manifest.object} is not the address of its content hash "
                f"{manifest.content_hash[:16]}... (a forged or swapped manifest)")
    return None


class DataVersioner(VersionedStore[DataManifest]):
    """Registers DataFrames as immutable, content-addressed versions.

    Args:
        base_dir: A path, URI or :class:`~mlops.store.filesystem.Store` (e.g. ``<store>/data``).
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
            DataValidationError: An object column mixes Python types that Parquet cannot
                store in one column (numbers and strings...); names the column (nothing
                is written).
        """
        if version_id is not None:
            check_version_id(version_id, "data version id")
        _check_storable(df)
        from mlops.data import column_stats
        from mlops.store.hashing import content_hash

        digest = content_hash(df, self.hash_algorithm)
        vid = version_id or digest[:DEFAULT_ID_LENGTH]
        existing = self._record_or_none(vid)
        if existing is not None:
            self._same_or_conflict(vid, existing, digest)
            self._repair_object(existing, df)
            return vid

        obj_key = self.object_key(digest)
        # The statistics pass runs on the other core while pyarrow (GIL released) encodes
        # and writes the Parquet object; both only read ``df``.
        with ThreadPoolExecutor(max_workers=1) as pool:
            stats = pool.submit(column_stats, df)
            reused = self.store.exists(obj_key)
            if reused:
                size = self.store.size(obj_key)
                checksum = checksums.stored(checksums.ALGORITHM, self.store.checksum(
                    obj_key, checksums.ALGORITHM))
            else:
                size, checksum = self._write_object(obj_key, df)
            column_stats_result = stats.result()

        def manifest_at(created_at: str) -> dict[str, Any]:
            return DataManifest(
                id=vid, created_at=created_at, content_hash=digest,
                hash_algorithm=self.hash_algorithm, object=obj_key, rows=len(df),
                columns=[{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()],
                stats=column_stats_result, size_bytes=size, object_checksum=checksum,
                extra={"source": dict(source)} if source else {}).to_dict()

        committed = self.commit(vid, manifest_at)
        if committed is None:  # another writer committed the same id first
            return self._same_or_conflict(vid, self.get_record(vid), digest)
        if reused and not self.store.exists(obj_key):
            # The object was an orphan that `mlops gc` removed while we committed.
            self._repair_object(DataManifest.from_dict(committed), df)
        if self.keep_last_load:
            # Same content hash = same columns, dtypes, index and values as a load would
            # give: the next step of an in-process run need not read it back.
            self._last_load = (obj_key, df.copy(deep=False))
        return vid

    def _write_object(self, obj_key: str, df: pd.DataFrame) -> tuple[int, str]:
        """Write ``df`` as Parquet at ``obj_key``; return its size and stored checksum."""
        size, digest = self.store.write_hashed(
            obj_key, lambda f: df.to_parquet(f, engine="pyarrow",
                                             use_dictionary=_dictionary_columns(df)),
            checksums.ALGORITHM)
        return size, checksums.stored(checksums.ALGORITHM, digest)

    def _repair_object(self, manifest: DataManifest, df: pd.DataFrame) -> None:
        """Rewrite the object of a committed version when it is missing or damaged.

        Registering the same content again is the repair of a deleted or truncated data
        object (``mlops versions`` and ``mlops gc --check`` report it). The manifest is
        rewritten only when the new object's checksum differs (same id, same content).
        """
        vid = manifest.id
        # Only ever the address of the manifest's own content hash: the readers refuse a
        # manifest naming another object (address_problem), and this holds regardless.
        key = self.object_key(manifest.content_hash)
        if manifest.object != key:
            raise IntegrityError(f"data version '{vid}': {address_problem(manifest)}; "
                                 "refusing to repair it")
        try:
            recorded = manifest.checksum()
        except IntegrityError:
            recorded = None  # a later release's algorithm: checked by its size only
        try:
            intact = self.store.size(key) == manifest.size_bytes and (
                recorded is None or self.store.checksum(key, recorded[0]) == recorded[1])
        except FileNotFoundError:
            intact = False
        if intact:
            return
        log.warning("data version %s: object %s is missing or damaged; rewriting it from the "
                    "same content", vid, self.store.url(key))
        size, checksum = self._write_object(key, df)
        if size != manifest.size_bytes or checksum != manifest.object_checksum:
            self.store.write_json(self.manifest_key(vid), replace(
                manifest, size_bytes=size, object_sha256=None,
                object_checksum=checksum).to_dict())

    def _same_or_conflict(self, vid: str, manifest: DataManifest, digest: str) -> str:
        if manifest.content_hash == digest and manifest.hash_algorithm == self.hash_algorithm:
            return vid
        raise VersionExistsError(f"data version '{vid}' already exists with different "
                                 "content; versions are never overwritten")

    # --- reading -----------------------------------------------------------------------
    def load(self, version_id: str, *, verify: bool = True) -> tuple[pd.DataFrame,
                                                                      dict[str, Any]]:
        """The DataFrame and metadata of a version, checked against its manifest.

        Args:
            version_id: The version.
            verify: Check the object's bytes against the checksum in the manifest
                (CRC32C, hashed chunk by chunk as the object is read; the sha256 of
                manifests written before it); manifests written before either are
                checked by recomputing the content hash. ``False`` skips the check (an
                explicit, unverified load).

        A partitioned version (made by the Dask engine, ``"kind": "partitioned"``)
        loads as a lazy ``dask.dataframe.DataFrame`` with one partition per stored
        partition (needs the ``mlops[dask]`` extra); nothing is read until computed.

        Raises:
            InvalidVersionIdError: Unsafe id.
            VersionNotFoundError: No such version, or its object is missing.
            IntegrityError: The object does not match the manifest, the manifest points
                outside ``objects/``, or the object is not readable Parquet (names the
                version; exit code 2).
        """
        manifest = self.get_record(version_id)
        if manifest.partitioned:
            from mlops.store.partitions import load_partitioned

            return load_partitioned(self.store, manifest, verify=verify), manifest.to_dict()
        key = confined_key(manifest.object, f"{layout.DATA_OBJECTS}/",
                           f"data version '{version_id}' object")
        if self._last_load is not None and self._last_load[0] == key:
            # Same object (content-addressed, immutable): a lazy copy of the kept frame.
            return self._last_load[1].copy(deep=False), manifest.to_dict()
        import pyarrow

        try:
            df = self._read(key, manifest, verify)
        except FileNotFoundError as err:
            raise VersionNotFoundError(f"data version '{version_id}' is missing its object "
                                       f"{self.store.url(key)}") from err
        except (pyarrow.ArrowException, OSError) as err:
            if isinstance(err, FileNotFoundError | StorageError):
                raise
            raise IntegrityError(f"data version '{version_id}': object {self.store.url(key)} "
                                 f"is not readable Parquet ({err}); register the same data "
                                 "again to repair it") from err
        if self.keep_last_load:
            self._last_load = (key, df.copy(deep=False))
        return df, manifest.to_dict()

    def _read(self, key: str, manifest: DataManifest, verify: bool) -> pd.DataFrame:
        import pandas as pd
        import pyarrow

        try:
            recorded = manifest.checksum() if verify else None
        except IntegrityError as err:  # e.g. an algorithm of a later release
            raise IntegrityError(f"data version '{manifest.id}': {err}; refusing to load it "
                                 "(verify=False reads it unchecked)") from err
        if recorded is not None:
            # One read that hashes each chunk as it arrives, then Parquet decodes the
            # checked buffer in place (docs/reliability.md, bench row B12).
            buf = self.store.read_verified(key, recorded, f"data version '{manifest.id}'")
            return pd.read_parquet(pyarrow.BufferReader(buf), engine="pyarrow")
        df = self._read_unverified(key)
        if verify:
            self._check_content(df, manifest)
        return df

    def _check_content(self, df: pd.DataFrame, manifest: DataManifest) -> None:
        """A manifest without an object checksum: compare the recomputed content hash."""
        from mlops.store.hashing import content_hash

        if content_hash(df, manifest.hash_algorithm) == manifest.content_hash:
            return
        if [c.get("dtype") for c in manifest.columns] != [str(t) for t in df.dtypes]:
            # Some dtypes (object columns) do not survive Parquet: the hash cannot match.
            log.warning("data version %s: written before object checksums and its dtypes "
                        "do not round-trip; loaded unverified", manifest.id)
            return
        raise IntegrityError(f"data version '{manifest.id}': content of {manifest.object} does "
                             "not match its content hash; refusing to load it")

    def _read_unverified(self, key: str) -> pd.DataFrame:
        import pandas as pd

        local = self.store.local_path(key)
        if local is not None:
            self.store.check_regular(key)  # never a FIFO or a device (issue 19 item 13)
            # With a filesystem, pyarrow opens the path natively; without one pandas
            # reads through a Python file object, which measured ~10-25% slower.
            return pd.read_parquet(local, engine="pyarrow", filesystem=_local_fs())
        with self.store.open_read(key) as f:
            return pd.read_parquet(f, engine="pyarrow")

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

    def validate_record(self, record: DataManifest) -> None:
        """Refuse a manifest whose objects are not at its content hashes' addresses.

        Raises:
            TypeError: :func:`address_problem` found one.
        """
        problem = address_problem(record)
        if problem:
            raise TypeError(problem)
