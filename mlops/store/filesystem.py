"""The store: one root URI reached through fsspec.

This is the only module that imports fsspec. Upper layers get a :class:`Store`
and address objects by relative, '/'-separated keys; they never see raw URLs
or fsspec exceptions. Errors are translated here, in :func:`translate`:

* ``FileNotFoundError`` of a key passes through (callers name the version);
* a missing bucket, a permission or credential error, a permanent OS error (read-only
  or full file system, bad path) or a 4xx other than 408/409/425/429 ->
  ``StorageConfigError`` (exit 2);
* anything transient (5xx, 429, reset, timeout) is retried with backoff, then
  ``StorageError`` (exit 1).

:func:`~mlops.store.faults.classify` decides by exception type, errno, HTTP status or the
backend's error code (botocore's ``Error.Code``, gcsfs' ``HttpError.code``), never by
message text.

Writes are atomic: locally a temp file in the same folder is renamed (or
hard-linked, for exclusive create) into place; on object stores a single PUT
or one multipart upload makes the object visible only when complete.
Exclusive create is ``mode="create"`` on object stores: S3 ``If-None-Match: *``,
GCS ``ifGenerationMatch=0``.

Retries are bounded and never multiplied: on S3 botocore's own retries are
turned off by default (``config_kwargs.retries.max_attempts = 1``; s3fs itself
retries only connection errors, within about a second), so :meth:`Store._call`
is the one retry loop (RETRY_ATTEMPTS);
gcsfs retries every request itself (6 attempts, exponential backoff, about 30
seconds in all) and cannot be configured per filesystem, so on GCS
:meth:`Store._call` makes a single attempt.

Test hook: when the environment variable ``MLOPS_TEST_CRASH_AT`` names a point
passed to :func:`crash_point` (``after-payload``, ``after-index`` of a commit...), the
process exits there at once with status 99, as if killed. Only the crash tests set it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any, TypeVar

import fsspec
from fsspec.core import url_to_fs

from mlops.errors import IntegrityError, MLOpsError, StorageConfigError, StorageError
from mlops.store import checksums
from mlops.store.faults import classify

# gcsfs probes each bucket over gRPC for hierarchical namespaces unless this is
# off; against emulators and plain buckets every call then stalls ~60 s. It must
# be set before gcsfs is imported (url_to_fs imports it lazily, below).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCAL_PROTOCOLS = ("file", "local")
#: Bounded retries of transient errors: attempts and the first backoff in seconds.
RETRY_ATTEMPTS = 4
RETRY_BACKOFF = 0.2

OBJECT_PROTOCOLS = ("gcs", "gs", "s3", "s3a")
#: URI schemes a store may use (others, such as ftp://, are refused before any I/O).
STORE_PROTOCOLS = ("file", "local", "memory", *OBJECT_PROTOCOLS)
#: Environment variable of the crash test hook (see :func:`crash_point`).
CRASH_ENV = "MLOPS_TEST_CRASH_AT"
CRASH_EXIT_CODE = 99

_memory_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Test hook: exit the process at once when ``MLOPS_TEST_CRASH_AT`` is ``name``.

    Every versioned store's commit calls it between its steps (``after-payload``,
    ``after-index``: :meth:`mlops.store.versioned.VersionedStore.commit`), the pipeline
    between the steps of a promotion. ``os._exit`` skips every cleanup, like a SIGKILL.
    Unset in production: a no-op.

    Args:
        name: The point reached.
    """
    if os.environ.get(CRASH_ENV) == name:
        os._exit(CRASH_EXIT_CODE)


def confined_key(key: object, prefix: str, what: str) -> str:
    """``key`` (read from a manifest or metadata record) if it names an object below
    ``prefix``, else an IntegrityError: a tampered record must not point elsewhere.

    Args:
        key: The value read from the record.
        prefix: The folder it must stay in, e.g. ``objects/`` or ``<version>/``.
        what: What it is, for the message (e.g. ``"data version 'abc' object"``).

    Raises:
        IntegrityError: Not a string, absolute, with ``.``/``..``/empty segments or a
            backslash, or outside ``prefix`` (exit code 2, names ``what`` and the key).
    """
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key \
            or any(part in ("", ".", "..") for part in key.split("/")) \
            or not key.startswith(prefix) or key == prefix:
        raise IntegrityError(f"{what} points at {key!r}, outside {prefix!r}; the record was "
                             "tampered with or corrupted, refusing to read it")
    return key


class CorruptObjectError(IntegrityError):
    """An object exists but cannot be parsed (exit code 2: a retry reads the same bytes).

    Attributes:
        key: The key of the object, relative to the store that read it.
    """

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def hashlib_file(f: IO[bytes], h: Any, chunk: int = 1 << 22) -> None:
    """Feed the rest of ``f`` into the hash object ``h`` in chunks."""
    while block := f.read(chunk):
        h.update(block)


#: Objects larger than this have their CRC32C read and hashed by two threads.
PARALLEL_HASH_BYTES = 16 << 20


def _read_range(fd: int, buf: Any, start: int, end: int, algorithm: str) -> tuple[
        checksums.Hasher, int]:
    """Read bytes ``start:end`` of ``fd`` into the same range of the pyarrow buffer
    ``buf``, hashing each chunk right after it is read; the hasher and the bytes read
    (fewer than asked when the file ends sooner). ``os.preadv`` and the hashers release
    the GIL, so two ranges proceed on two cores."""
    h = checksums.new(algorithm)
    view, at = memoryview(buf), start
    try:
        while at < end:
            n = os.preadv(fd, [view[at:min(at + checksums.CHUNK, end)]], at)
            if not n:
                break
            h.update(buf.slice(at, n))
            at += n
    finally:
        view.release()
    return h, at - start


class _HashingWriter:
    """A write-only file proxy that hashes what passes through it."""

    def __init__(self, f: IO[bytes], h: Any) -> None:
        self._f, self._h = f, h

    def write(self, data: Any) -> int:
        self._h.update(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class _WriterFailed(Exception):
    """The caller's writer raised (its error is the cause): not a storage error to retry."""


class Store:
    """A folder-like view of one root URI.

    Keys are relative '/'-separated paths below the root. Create one with
    :func:`open_store`.

    Attributes:
        uri: The root URI as given.
        protocol: The fsspec protocol (``file``, ``memory``, ``gcs``, ``s3``, ...).
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, uri: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.uri = uri
        proto = fs.protocol
        self.protocol = proto if isinstance(proto, str) else proto[0]
        self.is_local = self.protocol in LOCAL_PROTOCOLS
        self.is_object_store = self.protocol in OBJECT_PROTOCOLS
        # gcsfs retries each request itself (see the module docstring).
        self.attempts = 1 if self.protocol in ("gcs", "gs") else RETRY_ATTEMPTS

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # --- paths -------------------------------------------------------------------------
    def path(self, key: str = "") -> str:
        """The full filesystem path of ``key``.

        Raises:
            IntegrityError: ``key`` has a ``..`` segment (it would leave the store).
        """
        key = key.strip("/")
        if ".." in key.split("/"):
            raise IntegrityError(f"key {key!r} leaves the store {self.uri}; refusing it")
        return f"{self.root}/{key}" if key else self.root

    def url(self, key: str = "") -> str:
        """A URI for ``key``, for messages."""
        base = self.uri.rstrip("/")
        key = key.strip("/")
        return f"{base}/{key}" if key else base

    def local_path(self, key: str) -> str | None:
        """The OS path of ``key`` on a local store (for native reads by path), else None."""
        return self.path(key) if self.is_local else None

    def child(self, key: str) -> Store:
        """A store rooted at ``key`` below this one (same filesystem)."""
        return Store(self.fs, self.path(key), self.url(key))

    # --- reads -------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        return self._call("check", key, lambda: bool(self.fs.isfile(self.path(key))))

    def check_regular(self, key: str) -> None:
        """On a local store, refuse an object that is not a regular file once symlinks are
        followed: a FIFO would block a read forever and ``/dev/zero`` never end
        (issue 19 item 13). Object stores hold only objects.

        Raises:
            FileNotFoundError: No object at ``key``.
            CorruptObjectError: A FIFO, device, socket or folder (exit code 2).
        """
        if not self.is_local:
            return
        mode = os.stat(self.path(key)).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptObjectError(f"{self.url(key)} is not a regular file (a FIFO, device "
                                     "or folder, or a symlink to one); refusing to read it",
                                     key)

    def read_bytes(self, key: str) -> bytes:
        """The bytes of ``key``.

        Raises:
            FileNotFoundError: No object at ``key``.
            CorruptObjectError: On a local store, not a regular file.
        """
        self.check_regular(key)
        return self._call("read", key, lambda: bytes(self.fs.cat_file(self.path(key))))

    def read_json(self, key: str) -> Any:
        """The JSON document at ``key``.

        Raises:
            FileNotFoundError: No object at ``key``.
            CorruptObjectError: The object is not valid JSON (named; exit code 2).
        """
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as err:
            # The bytes were read whole: a retry reads the same ones (exit 2, not 1).
            raise CorruptObjectError(f"{self.url(key)} is not valid JSON (corrupt object)",
                                     key) from err

    def read_many(self, keys: list[str]) -> dict[str, bytes | None]:
        """The bytes of many objects, fetched concurrently where the backend can.

        Returns:
            ``{key: bytes}``; None for a key that does not exist (or vanished).
        """
        if not keys:
            return {}
        paths = {self.path(k): k for k in keys}

        def op() -> dict[str, bytes | None]:
            got = self.fs.cat(list(paths), on_error="return")
            if not isinstance(got, dict):  # a single path comes back as bytes
                got = {next(iter(paths)): got}
            out: dict[str, bytes | None] = {}
            for path, key in paths.items():
                value = got.get(path)
                if isinstance(value, FileNotFoundError) or value is None:
                    out[key] = None
                elif isinstance(value, BaseException):
                    raise value
                else:
                    out[key] = bytes(value)
            return out
        return self._call("read", keys[0], op)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        """Open ``key`` for streaming reads (a local one only when it is a regular file)."""
        self.check_regular(key)
        f = self._call("open", key, lambda: self.fs.open(self.path(key), "rb"))
        try:
            yield f
        finally:
            f.close()

    def keys(self, prefix: str = "") -> list[str]:
        """Names (not paths) of the objects directly below ``prefix``; [] when absent."""
        def op() -> list[str]:
            try:
                entries = self.fs.ls(self.path(prefix), detail=True)
            except FileNotFoundError:
                return []
            return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                          if e.get("type") != "directory")
        return self._call("list", prefix, op)

    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the sub-folders directly below ``prefix``; [] when absent."""
        def op() -> list[str]:
            try:
                entries = self.fs.ls(self.path(prefix), detail=True)
            except FileNotFoundError:
                return []
            return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                          if e.get("type") == "directory")
        self._invalidate()
        return self._call("list", prefix, op)

    def walk(self, prefix: str = "") -> list[str]:
        """Keys (relative to the root) of every object below ``prefix``."""
        def op() -> list[str]:
            try:
                found = self.fs.find(self.path(prefix))
            except FileNotFoundError:
                return []
            base = self.root + "/"
            return sorted(p[len(base):] if p.startswith(base) else p for p in found)
        self._invalidate()
        return self._call("list", prefix, op)

    def walk_modified(self, prefix: str = "") -> dict[str, float | None]:
        """Every object below ``prefix`` with its last-modified time (epoch seconds).

        One recursive listing (paginated by the filesystem); the time is None
        when the backend does not report one.
        """
        return {key: modified_time(info) for key, info in self._find(prefix).items()}

    def walk_sizes(self, prefix: str = "") -> dict[str, int]:
        """Every object below ``prefix`` with its size in bytes (one recursive listing,
        cheaper than a :meth:`size` call per object)."""
        return {key: int(info.get("size") or 0) for key, info in self._find(prefix).items()}

    def _find(self, prefix: str) -> dict[str, dict[str, Any]]:
        def op() -> dict[str, dict[str, Any]]:
            try:
                found = self.fs.find(self.path(prefix), detail=True)
            except FileNotFoundError:
                return {}
            base = self.root + "/"
            return {(p[len(base):] if p.startswith(base) else p): info
                    for p, info in found.items() if info.get("type") != "directory"}
        self._invalidate()
        return self._call("list", prefix, op)

    def size(self, key: str) -> int:
        """Size in bytes of ``key``."""
        return int(self._call("stat", key, lambda: self.fs.size(self.path(key))))

    # --- writes ------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``data`` to ``key`` atomically.

        Args:
            key: Where to write.
            data: The whole object.
            exclusive: Refuse to replace an existing object (create only).

        Raises:
            FileExistsError: ``exclusive`` and ``key`` already exists.
        """
        if self.is_local:
            self._local_write(key, lambda f: f.write(data), exclusive)
        elif self.protocol == "memory":
            with _memory_lock:
                if exclusive and self.fs.exists(self.path(key)):
                    raise FileExistsError(errno.EEXIST, "object exists", self.url(key))
                self.fs.pipe_file(self.path(key), data)
        else:
            kwargs: dict[str, Any] = {"mode": "create"} if exclusive else {}
            self._call("write", key, lambda: self.fs.pipe_file(self.path(key), data, **kwargs),
                       same_bytes=data if exclusive else None)
        self._invalidate()

    def write_json(self, key: str, obj: Any, *, exclusive: bool = False,
                   compact: bool = False) -> None:
        """Write ``obj`` as JSON to ``key`` atomically (see :meth:`write_bytes`).

        Args:
            key: Where to write.
            obj: JSON-serializable data.
            exclusive: Refuse to replace an existing object.
            compact: No indentation (for large documents such as the drift reference).
        """
        data = json.dumps(obj, indent=None if compact else 2, sort_keys=True, default=str,
                          separators=(",", ":") if compact else None).encode()
        self.write_bytes(key, data, exclusive=exclusive)

    def write_with(self, key: str, writer: Callable[[IO[bytes]], object], *,
                   exclusive: bool = False) -> None:
        """Stream an object into ``key`` with ``writer(file)``; visible only when complete.

        Locally this writes a temp file in the target folder and renames it; on
        object stores the upload completes atomically when the file is closed.
        """
        if self.is_local:
            self._local_write(key, writer, exclusive)
        elif self.protocol == "memory":
            buf = io.BytesIO()
            writer(buf)
            self.write_bytes(key, buf.getvalue(), exclusive=exclusive)
        else:
            # "xb": the upload is committed with If-None-Match / ifGenerationMatch=0.
            mode = "xb" if exclusive else "wb"

            def op() -> None:
                f = self.fs.open(self.path(key), mode)
                try:
                    writer(f)
                except BaseException as err:
                    # Abort the upload: closing would commit a partial object. Mark the
                    # file closed too, so that its finalizer does not commit it either.
                    with contextlib.suppress(Exception):
                        f.discard()
                    f.closed = True
                    raise _WriterFailed() from err
                f.close()
            try:
                self._call("write", key, op)
            except _WriterFailed as failed:
                cause = failed.__cause__
                assert cause is not None
                raise cause from None  # the writer's own error, not retried
        self._invalidate()

    def write_via_path(self, key: str, writer: Callable[[str | IO[bytes]], object], *,
                       exclusive: bool = False) -> int:
        """Like :meth:`write_with`, but a local store hands ``writer`` a temp file *path*.

        Native writers (pyarrow's Parquet writer) write a path through their own
        buffered C++ file, skipping the per-call Python file wrapper that a file
        object costs; other stores stream to a file object as :meth:`write_with`.

        Returns:
            The size in bytes of the written object.
        """
        if not self.is_local:
            self.write_with(key, writer, exclusive=exclusive)
            return self.size(key)
        size = self._local_write_path(key, writer, exclusive)
        self._invalidate()
        return size

    def write_hashed(self, key: str, writer: Callable[[str | IO[bytes]], object],
                     algorithm: str = "sha256") -> tuple[int, str]:
        """Like :meth:`write_via_path`, and also return the checksum of the bytes written.

        Locally the temp file is hashed before it is renamed into place (it is still in
        the page cache); on object stores the stream is hashed as it is uploaded, so the
        object is never read back.

        Args:
            key: Where to write.
            writer: Writes the object to the path or file object it is given.
            algorithm: ``sha256`` or ``crc32c`` (:mod:`mlops.store.checksums`).

        Returns:
            ``(size in bytes, hex digest)``.
        """
        h = checksums.new(algorithm)
        if self.is_local:
            def hashed(tmp: str | IO[bytes]) -> None:
                writer(tmp)
                assert isinstance(tmp, str)
                with open(tmp, "rb") as f:
                    hashlib_file(f, h)
            size = self._local_write_path(key, hashed, False)
            self._invalidate()
            return size, h.hexdigest()
        self.write_with(key, lambda f: writer(_HashingWriter(f, h)))  # type: ignore[arg-type]
        return self.size(key), h.hexdigest()

    def sha256(self, key: str) -> str:
        """The sha256 hex digest of the object at ``key`` (streamed).

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        return self.checksum(key, "sha256")

    def checksum(self, key: str, algorithm: str) -> str:
        """The hex checksum (``sha256`` or ``crc32c``) of the object at ``key`` (streamed).

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        h = checksums.new(algorithm)
        with self.open_read(key) as f:
            hashlib_file(f, h)
        return h.hexdigest()

    def read_hashed(self, key: str, algorithm: str) -> tuple[Any, str]:
        """The bytes of ``key`` as one ``pyarrow.Buffer``, and their checksum, in one pass.

        Locally the object is read in :data:`~mlops.store.checksums.CHUNK` pieces straight into
        the buffer (no Python copy), each hashed while it is still in the CPU cache, so
        the check costs little more than the read; a CRC32C of an object of more than
        :data:`PARALLEL_HASH_BYTES` is read and hashed as two halves by two threads (the
        CRCs combine). Other stores hash the downloaded bytes.

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        import pyarrow

        local = self.local_path(key)
        if local is None:
            buf = pyarrow.py_buffer(self.read_bytes(key))
            h = checksums.new(algorithm)
            for start in range(0, buf.size, checksums.CHUNK):
                h.update(buf.slice(start, min(checksums.CHUNK, buf.size - start)))
            return buf, h.hexdigest()

        self.check_regular(key)

        def read() -> tuple[Any, str]:
            fd = os.open(local, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                buf = pyarrow.allocate_buffer(size)
                halves = [(0, size // 2), (size // 2, size)]
                if algorithm == "crc32c" and size > PARALLEL_HASH_BYTES:
                    with ThreadPoolExecutor(max_workers=2) as pool:
                        (h1, n1), (h2, n2) = pool.map(
                            lambda r: _read_range(fd, buf, r[0], r[1], algorithm), halves)
                    if n1 + n2 == size:
                        crc = checksums.crc32c_combine(int(h1.hexdigest(), 16),
                                                       int(h2.hexdigest(), 16), n2)
                        return buf, f"{crc:08x}"
                # A short read (the file shrank) reads again in one pass, up to its end.
                h, n = _read_range(fd, buf, 0, size, algorithm)
                return buf.slice(0, n), h.hexdigest()
            finally:
                os.close(fd)
        return self._call("read", key, read)

    def read_verified(self, key: str, recorded: tuple[str, str], what: str) -> Any:
        """The bytes of ``key`` (a ``pyarrow.Buffer``) after checking them against the
        ``(algorithm, hex)`` checksum recorded for them (:meth:`read_hashed`).

        Args:
            key: The object.
            recorded: Its recorded checksum.
            what: Who owns it, for the message (``data version 'v'``...).

        Raises:
            FileNotFoundError: No object at ``key``.
            IntegrityError: The bytes do not match (flipped, truncated or swapped; the
                message starts with ``what``; exit code 2).
        """
        algorithm, expected = recorded
        buf, found = self.read_hashed(key, algorithm)
        if found != expected:
            raise IntegrityError(f"{what}: object {self.url(key)} failed its integrity check "
                                 f"({algorithm} {found[:16]} of its {buf.size} bytes is not "
                                 f"the recorded {expected[:16]}); refusing to load it")
        return buf

    def delete(self, key: str) -> None:
        """Delete ``key``; a missing object is not an error."""
        def op() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(key))
        self._call("delete", key, op)
        self._invalidate()

    # --- internals ---------------------------------------------------------------------
    def _local_write(self, key: str, writer: Callable[[IO[bytes]], object],
                     exclusive: bool) -> int:
        def to_path(tmp: str | IO[bytes]) -> None:
            assert isinstance(tmp, str)
            with open(tmp, "wb") as f:
                writer(f)
        return self._local_write_path(key, to_path, exclusive)

    def _local_write_path(self, key: str, writer: Callable[[str | IO[bytes]], object],
                          exclusive: bool) -> int:
        """Write a temp file in the target folder by path, fsync, then rename or link it."""
        final = self.path(key)
        folder = os.path.dirname(final)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise translate(err, self, key) from err
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            writer(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, final)  # fails with EEXIST: atomic create-only
            else:
                os.replace(tmp, final)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "object exists", self.url(key)) from None
        except OSError as err:
            raise translate(err, self, key) from err
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return size

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return bytes(self.fs.cat_file(self.path(key))) == data
        except Exception:
            return False

    def check_bucket(self) -> None:
        """Fail early and clearly when the bucket of an object store is unusable.

        Lists the bucket's top level once (needs only list permission, which
        every role that can read the store has).

        Raises:
            StorageConfigError: The bucket does not exist, or access is denied.
            StorageError: The endpoint could not be reached (after the retries).
        """
        bucket = self.root.split("/", 1)[0]

        def op() -> None:
            self.fs.ls(bucket, detail=False)
        try:
            self._call("check bucket", "", op)
        except FileNotFoundError as err:
            raise StorageConfigError(f"bucket '{bucket}' of {self.uri} does not exist "
                                     "(create it, or fix storage.uri)") from err
        except StorageConfigError as err:
            raise StorageConfigError(f"bucket '{bucket}' of {self.uri}: {err}") from err

    def _invalidate(self) -> None:
        # Object-store filesystems cache listings; another process may have written.
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()

    def _call(self, what: str, key: str, fn: Callable[[], T],
              same_bytes: bytes | None = None) -> T:
        """Run ``fn`` with bounded retries of transient errors.

        Args:
            what: The operation, for log lines.
            key: The key it touches, for messages.
            fn: The operation.
            same_bytes: For an exclusive write: when a retry finds the object
                already there with exactly these bytes, the earlier attempt did
                succeed (its response was lost), so this is a success.
        """
        delay = RETRY_BACKOFF
        attempts = self.attempts
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except FileExistsError:
                if attempt > 1 and same_bytes is not None and self._holds(key, same_bytes):
                    return None  # type: ignore[return-value]
                raise
            except (FileNotFoundError, IsADirectoryError, _WriterFailed):
                raise
            except Exception as err:
                translated = translate(err, self, key)
                if not isinstance(translated, StorageError) or attempt == attempts:
                    raise translated from err
                log.warning("%s %s failed (%s), retry %d/%d in %.1fs", what, self.url(key),
                            err, attempt, attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover



def translate(err: BaseException, store: Store, key: str) -> Exception:
    """Map a filesystem exception to StorageError (retryable) or StorageConfigError."""
    if isinstance(err, MLOpsError):  # already ours (e.g. a key refused by Store.path)
        return err
    where = store.url(key)
    kind = classify(err)
    if kind == "permission":
        return StorageConfigError(f"permission denied or bad credentials for {where}: "
                                  f"{_short(err)}")
    if kind == "bucket":
        return StorageConfigError(f"bucket of {store.uri} does not exist")
    if kind == "permanent":
        if isinstance(err, TypeError):
            return StorageConfigError(f"bad storage.options for {store.uri}: {_short(err)}")
        if isinstance(err, OSError) and err.strerror:
            return StorageConfigError(f"storage refused {where}: {err.strerror}")
        return StorageConfigError(f"storage refused {where}: {_short(err)}")
    return StorageError(f"storage error at {where}: {_short(err)}")


def modified_time(info: dict[str, Any]) -> float | None:
    """Last-modified epoch seconds from an fsspec info dict of any backend."""
    for name in ("mtime", "LastModified", "updated", "created", "timeCreated"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return None


def object_store_defaults(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with this project's defaults for gcsfs/s3fs.

    * no listings cache (another process may have written since; a stale
      listing would hide a new version);
    * S3: botocore's own retries off and bounded timeouts, so that
      :meth:`Store._call` is the single, bounded retry loop. Given options win.

    Args:
        protocol: The URI scheme.
        options: The configured ``storage.options``.

    Returns:
        A new dict.
    """
    out = dict(options)
    if protocol not in OBJECT_PROTOCOLS:
        return out
    out.setdefault("use_listings_cache", False)
    if protocol.startswith("s3"):
        config_kwargs = dict(out.get("config_kwargs") or {})
        config_kwargs.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        config_kwargs.setdefault("connect_timeout", 5)
        config_kwargs.setdefault("read_timeout", 60)
        out["config_kwargs"] = config_kwargs
    return out


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def open_store(uri: str | os.PathLike[str], options: dict[str, Any] | None = None) -> Store:
    """Open the store at ``uri``.

    Args:
        uri: A plain path, ``file://``, ``memory://``, ``gs://`` or ``s3://`` URI.
        options: fsspec storage options (e.g. ``endpoint_url``).

    Returns:
        The store; a local folder is created if missing.

    Raises:
        StorageConfigError: Unknown protocol or a backend package that is not installed.
    """
    text = os.fspath(uri)
    if not text:
        raise StorageConfigError("storage.uri is empty")
    scheme = text.split("://", 1)[0].lower() if "://" in text else "file"
    if scheme not in STORE_PROTOCOLS:
        raise StorageConfigError(f"cannot open store {text}: unsupported scheme '{scheme}://' "
                                 f"(use a path, {', '.join(p + '://' for p in STORE_PROTOCOLS)})")
    try:
        fs, root = url_to_fs(text, **object_store_defaults(scheme, options or {}))
    except (ImportError, ValueError) as err:
        extra = {"gs": "mlops[gcs]", "gcs": "mlops[gcs]", "s3": "mlops[s3]"}.get(scheme)
        hint = f" (install {extra})" if extra else ""
        raise StorageConfigError(f"cannot open store {text}: {err}{hint}") from err
    except TypeError as err:
        raise StorageConfigError(f"bad storage.options for {text}: {err}") from err
    store = Store(fs, root, text)
    if store.is_local:
        try:
            os.makedirs(store.root, exist_ok=True)
        except OSError as err:
            raise StorageConfigError(f"cannot create store folder {text}: "
                                     f"{err.strerror}") from err
    elif store.is_object_store:
        if not root.strip("/"):
            raise StorageConfigError(f"storage.uri {text} names no bucket")
        store.check_bucket()
    return store


def as_store(base: str | os.PathLike[str] | Store,
             options: dict[str, Any] | None = None) -> Store:
    """``base`` itself when it is a Store, else :func:`open_store` of it."""
    return base if isinstance(base, Store) else open_store(base, options)


def source_store(uri: str, options: dict[str, Any] | None) -> Store:
    """A store rooted at a data source's path (a glob stays in the root, unexpanded)."""
    target_uri = uri if "://" in uri else os.path.abspath(uri)
    scheme = target_uri.split("://", 1)[0].lower()
    try:
        fs, target = url_to_fs(target_uri, **object_store_defaults(scheme, options or {}))
    except (ImportError, ValueError) as err:
        raise StorageConfigError(f"cannot open data source {uri}: {err}") from err
    return Store(fs, target, target_uri)
