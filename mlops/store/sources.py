"""Data sources: the CSV/Parquet files a path, URI or glob names (listing and reading)."""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

from mlops.store.filesystem import Store, modified_time, source_store, translate


def read_table_files(uri: str, options: dict[str, Any] | None = None) -> list[tuple[str, bytes]]:
    """Read every CSV/Parquet file that ``uri`` (a path, URI or glob) names.

    Returns:
        ``(name, bytes)`` pairs in name order.

    Raises:
        FileNotFoundError: Nothing matches ``uri``.
    """
    store_like = source_store(uri, options)
    fs, target = store_like.fs, store_like.root
    try:
        if any(c in uri for c in "*?["):
            paths = sorted(fs.glob(target))
        elif fs.isdir(target):
            paths = sorted(p for p in fs.find(target)
                           if p.lower().endswith((".csv", ".parquet", ".pq")))
        else:
            paths = [target] if fs.isfile(target) else []
        if not paths:
            raise FileNotFoundError(errno.ENOENT, "no CSV or Parquet file matches", uri)
        return [(p, bytes(fs.cat_file(p))) for p in paths]
    except FileNotFoundError:
        raise
    except Exception as err:
        raise translate(err, store_like, "") from err


#: Suffixes of the table files a data source may hold.
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file of a partitioned data source, with what identifies its version.

    Attributes:
        key: Its key below the source's store (see :func:`list_table_source`).
        size: Bytes.
        token: What changes when the file changes: the GCS generation, the S3 ETag, or
            else the modification time (as DVC keys its hash cache).
    """

    key: str
    size: int
    token: str


def _change_token(info: dict[str, Any]) -> str:
    for name in ("generation", "ETag", "etag", "md5Hash"):
        value = info.get(name)
        if value:
            return f"{name}:{str(value).strip(chr(34))}"
    mtime = modified_time(info)
    return f"mtime:{mtime!r}"


def list_table_source(uri: str, options: dict[str, Any] | None = None
                      ) -> tuple[Store, list[SourceFile]]:
    """The CSV/Parquet files that ``uri`` (a file, directory, prefix or glob) names.

    Listing only: no file is read. The store is rooted at the folder above the files,
    so workers of a cluster can read each file by its key.

    Returns:
        ``(store, files)``, files in key order.

    Raises:
        FileNotFoundError: Nothing matches ``uri``.
        StorageConfigError: Unknown protocol or missing backend package.
        StorageError: The listing failed (retryable).
    """
    probe = source_store(uri, options)
    fs, target, target_uri = probe.fs, probe.root, probe.uri
    try:
        if any(c in target for c in "*?["):
            cut = min(target.index(c) for c in "*?[" if c in target)
            root = target[:cut].rsplit("/", 1)[0]
            infos = {p: i for p, i in fs.glob(target, detail=True).items()
                     if i.get("type") != "directory"}
        elif fs.isdir(target):
            root = target
            infos = fs.find(target, detail=True)
        else:
            root = target.rsplit("/", 1)[0]
            infos = {target: fs.info(target)} if fs.isfile(target) else {}
    except FileNotFoundError:
        infos = {}
    except Exception as err:
        raise translate(err, probe, "") from err
    root = root.rstrip("/")
    files = [SourceFile(key=p[len(root):].lstrip("/"), size=int(i.get("size") or 0),
                        token=_change_token(i))
             for p, i in sorted(infos.items())
             if p.lower().endswith(TABLE_SUFFIXES) and p.startswith(root)]
    if not files:
        raise FileNotFoundError(errno.ENOENT, "no CSV or Parquet file matches", uri)
    scheme = target_uri.split("://", 1)[0].lower()
    base_uri = target_uri if root == target.rstrip("/") else \
        f"{scheme}://{root}" if "://" in target_uri else root
    return Store(fs, root, base_uri), files
