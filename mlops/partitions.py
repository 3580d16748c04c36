"""Partitioned data versions: what the Dask engine registers (``data.engine: dask``).

A partitioned version is a manifest of partitions, one per source file, in the
same store and index as the pandas engine's versions (below the versioner's base):

    (keys named in :mod:`mlops.layout`)
    objects/<ab>/<rest>.parquet           a partition, addressed by its content hash
                                          (:func:`mlops.hashing.content_hash` of the
                                          partition's frame: today's definition)
    objects/<ab>/<rest>.stats-k<k>.json   its statistics and quantile sketches (derived
                                          from the content, so content-addressed too)
    fingerprints/<ab>/<rest>.json         source-file fingerprint -> partition hash
    index/<created>~<version-id>          creation-order marker (as pandas versions)
    versions/<version-id>.json            the manifest, ``"kind": "partitioned"``: LAST

* The version id is the first 16 hex digits of the hash of the schema (column
  names and dtypes) and the ordered partition hashes; identical partitions are
  stored once across versions, so a nightly append writes only the new files.
* The fingerprint of a source file is (its URL, size, and GCS generation, S3 ETag
  or modification time). A re-ingest looks each one up and skips reading files
  whose fingerprint it has seen (and whose partition is still stored); a changed
  file has a new fingerprint and is always read and hashed again (as DVC's
  state cache does).
* Each partition is read, validated, hashed, summarized and written by one task on
  a Dask worker: no process ever holds more than a partition. The driver receives
  only the statistics. Partitions of a failed ingest are never referenced (no
  manifest is written); ``mlops gc`` removes them after the grace period.
* A Parquet source file whose frame has the default index is stored as its own bytes
  (read into memory once, parsed from there: :func:`read_source`); other files are
  written with ``to_parquet``. Either way the object reads back to the hashed frame.
* A partition's stats object also keeps what the Dask engine's training and
  categorical drift need (:func:`feature_summary`): its target's summary (the task is
  decided on the merged summaries, :func:`decide_task`), the feature kinds, and rows
  per category and missing values of the categorical and bool features. The manifest
  keeps them merged (``feature_kinds``, ``categories``, ``category_missing``) and the
  source it was read from (``source``), all in ``DataManifest.extra``.
* :func:`load_partitioned` returns a lazy ``dask.dataframe.DataFrame`` with one
  partition per stored partition (``DataVersioner.load`` returns it for these
  versions).
* Each partition's manifest entry (and stats object) records the CRC32C of its
  object's bytes (``checksum``); the task that reads a partition checks it
  (docs/reliability.md).

dask and datasketches are imported lazily (the ``mlops[dask]`` extra).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops import checksums, layout
from mlops.data import (
    AUTO,
    AUTO_MAX_CLASSES,
    NUMERIC,
    check_unique_columns,
    csv_header,
    detect_task,
    drop_excluded,
    feature_kinds,
    read_csv,
    table_warnings,
    validate,
    without_ids,
)
from mlops.engines.sketches import (
    DEFAULT_K,
    Moments,
    SketchMerger,
    category_summary,
    merge_categories,
    merge_counts,
    merge_moments,
    numeric_columns,
    stats_of,
    summarize_columns,
)
from mlops.errors import (
    DataValidationError,
    IntegrityError,
    VersionExistsError,
    VersionNotFoundError,
)
from mlops.hashing import content_hash
from mlops.ids import iso, utc_now
from mlops.records import PARTITIONED, DataManifest
from mlops.storage import CRASH_EXIT_CODE, SourceFile, Store, confined_key, crash_point
from mlops.validation import active, raise_for, summarize_rules, violations

log = logging.getLogger(__name__)

#: Hex digits of the version id (as pandas versions).
ID_LENGTH = 16


def object_key(digest: str) -> str:
    """The key of a partition's Parquet object (the pandas engine's object key)."""
    return layout.data_object_key(digest)


def stats_key(digest: str, k: int) -> str:
    """The key of a partition's statistics and sketches (sketch accuracy ``k``)."""
    return layout.partition_stats_key(digest, k)


def fingerprint_key(source_url: str, f: SourceFile, algorithm: str) -> str:
    """The cache key of a source file's fingerprint."""
    ident = json.dumps([source_url.rstrip("/"), f.key, f.size, f.token, algorithm])
    return layout.fingerprint_key(hashlib.sha256(ident.encode()).hexdigest())


# --- one partition (runs on a worker) ----------------------------------------------------------
#: Test hook: a file path; the first partition task that creates it kills its own worker
#: (``os._exit``), so a test sees the scheduler run that task again elsewhere.
KILL_ONCE_ENV = "MLOPS_TEST_KILL_WORKER_ONCE"


def _kill_once() -> None:
    flag = os.environ.get(KILL_ONCE_ENV)
    if not flag:
        return
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(CRASH_EXIT_CODE)


def read_table(store: Store, key: str, options: dict[str, Any] | None = None
               ) -> pd.DataFrame:
    """Read one CSV or Parquet file of a source store (``options``:
    :func:`mlops.data.read_options`, the CSV options and excluded columns).

    Raises:
        DataValidationError: The file is empty or cannot be parsed (names it).
    """
    try:
        local = store.local_path(key)
        lower = key.lower()
        if lower.endswith((".parquet", ".pq")):
            if local is not None:
                return pd.read_parquet(local, engine="pyarrow")
            with store.open_read(key) as f:
                return pd.read_parquet(f, engine="pyarrow")
        if local is not None:
            check_unique_columns(store.url(key), csv_header(local, options))
            return drop_excluded(read_csv(local, options), store.url(key), options)
        with store.open_read(key) as f:
            check_unique_columns(store.url(key), csv_header(f, options))
            f.seek(0)
            return drop_excluded(read_csv(f, options), store.url(key), options)
    except pd.errors.EmptyDataError as err:
        raise DataValidationError(f"data file {store.url(key)} is empty") from err
    except (OSError, DataValidationError):
        raise
    except Exception as err:
        raise DataValidationError(f"data file {store.url(key)} cannot be parsed: "
                                  f"{str(err).splitlines()[0][:200]}") from err


def read_source(source: Store, key: str, options: dict[str, Any] | None = None
                ) -> tuple[pd.DataFrame, bytes | None]:
    """Read one source file for ingest: its frame, and its bytes when they can be stored as is.

    A Parquet file is read into memory once and parsed from there: when the frame has
    the default index (``RangeIndex(0, n)``, what a re-read of the stored object must
    give), those very bytes are the partition's object, so ingest copies them instead of
    encoding the frame again (the costliest part of a partition's task), and the object
    holds exactly the content that was hashed even if the source changes meanwhile.
    A CSV file, or a Parquet file whose frame has another index, gives ``None`` (the
    partition is written with ``to_parquet``, as before).

    Raises:
        DataValidationError: The file is empty or cannot be parsed (names it).
    """
    if not key.lower().endswith((".parquet", ".pq")):
        return read_table(source, key, options), None
    import pyarrow as pa

    raw = source.read_bytes(key)
    try:
        df = pd.read_parquet(pa.BufferReader(raw), engine="pyarrow")
        check_unique_columns(source.url(key), df.columns)
    except DataValidationError:
        raise
    except Exception as err:
        raise DataValidationError(f"data file {source.url(key)} cannot be parsed: "
                                  f"{str(err).splitlines()[0][:200]}") from err
    plain = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and \
        df.index.step == 1 and df.index.name is None
    if (options or {}).get("exclude"):
        df, plain = drop_excluded(df, source.url(key), options), False  # not the file's bytes
    return df, (raw if plain else None)


def _schema(df: pd.DataFrame) -> list[dict[str, str]]:
    return [{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()]


def summarize_partition(df: pd.DataFrame, algorithm: str, k: int) -> dict[str, Any]:
    """Hash, schema, moments and sketches of one partition (what its stats object holds)."""
    # One pass over each column's values gives both its moments and its sketch.
    moments, sketches = summarize_columns(df, numeric_columns(df), k)
    return {"digest": content_hash(df, algorithm), "rows": len(df), "columns": _schema(df),
            "moments": {c: m.to_dict() for c, m in moments.items()}, "sketch_k": k,
            "sketches": sketches}


def ingest_file(source: Store, f: SourceFile, data: Store, target: str, algorithm: str,
                k: int, fingerprint: str, expected: list[dict[str, str]] | None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, validate, hash, summarize and store one source file as a partition.

    A Dask task: it returns only the partition's summary. The partition is written
    (unless stored already) before its stats object, and the fingerprint last, so a
    fingerprint found later points at a complete partition.

    Raises:
        DataValidationError: The file is invalid or its schema differs from ``expected``.
    """
    crash_point("partition-task")  # tests: the worker dies here, as if OOM-killed
    _kill_once()
    name = source.url(f.key)
    df, raw = read_source(source, f.key, options)
    ids = list((options or {}).get("ids") or [])
    # (The task is decided on the merged summaries.)
    validate(without_ids(df, ids, name), target, name, whole=False)
    schema = _schema(df)
    if expected is not None and schema != expected:
        raise DataValidationError(
            f"data file {name} has columns {[(c['name'], c['dtype']) for c in schema]}, "
            f"expected {[(c['name'], c['dtype']) for c in expected]}")
    summary = summarize_partition(df, algorithm, k)
    summary.update(feature_summary(df, target, name))
    summary["warnings"] = table_warnings(df, target, ids, name)
    digest = summary["digest"]
    obj = object_key(digest)
    if not data.exists(obj) and raw is not None:
        data.write_bytes(obj, raw)  # the source's own Parquet bytes: see read_source
        summary["size_bytes"] = len(raw)
        crc = checksums.of_bytes(raw, checksums.ALGORITHM)
    elif not data.exists(obj):
        summary["size_bytes"], crc = data.write_hashed(
            obj, lambda out: df.to_parquet(out, engine="pyarrow", index=False),
            checksums.ALGORITHM)
    else:
        summary["size_bytes"] = data.size(obj)
        crc = data.checksum(obj, checksums.ALGORITHM)
    # The stats object carries it too, so a re-ingest that skips this file still has it.
    summary["checksum"] = checksums.stored(checksums.ALGORITHM, crc)
    skey = stats_key(digest, k)
    if not data.exists(skey) or "target" not in data.read_json(skey):
        # (A stats object from before the feature summaries is completed once.)
        data.write_json(skey, summary, compact=True)
    # The entry names the file it is about and the checksum of the partition it claims:
    # a reuse checks both against the file and the partition's own stats object.
    data.write_json(fingerprint, {"digest": digest, "source": name, "size": f.size,
                                  "token": f.token, "checksum": summary["checksum"]},
                    compact=True)
    _release_arrow_memory()
    return summary


def rule_summary(source: Store, f: SourceFile, rules: Any,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read one source file and count it against the ``validation`` rules (a Dask task:
    :func:`mlops.validation.summarize_rules`, mergeable counts; nothing raised here, so
    the one line names the rows of the whole batch)."""
    df, _ = read_source(source, f.key, options)
    return summarize_rules(df, rules)


def check_rules(client: Any, source: Store, files: Sequence[SourceFile], rules: Any,
                name: str, options: dict[str, Any] | None = None) -> None:
    """Check the ``validation`` rules on every file of a source before anything is
    written: one task per file counts it (:func:`rule_summary`), and the merged counts
    decide the rules of the whole batch (``min_rows``, ``max_missing``, a ``unique``
    value repeated across files).

    Raises:
        ValidationFailedError: A rule is broken (names the column, rule and rows).
    """
    futures = [client.submit(rule_summary, source, f, rules, options, pure=False)
               for f in files]
    parts = client.gather(futures)
    raise_for(violations(parts, rules), name)


def _release_arrow_memory() -> None:
    """Hand the memory pyarrow's pool keeps cached back to the system.

    Its allocator keeps the partition's freed buffers (tens of MB) for reuse, so a
    worker's RSS would stay a partition or two above what it holds between tasks;
    releasing costs about a millisecond.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def target_summary(y: pd.Series) -> dict[str, Any]:
    """What ``data.task: auto`` needs of a partition's target, mergeable: whether it is
    numeric, whether every value is an integer, and up to ``AUTO_MAX_CLASSES + 1`` of its
    distinct values (a non-integer one first when there is one)."""
    numeric = pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)
    distinct = pd.unique(y.dropna())
    integral = True
    if numeric:
        values = np.asarray(distinct, dtype=np.float64)
        fractional = values[~(np.isfinite(values) & (np.mod(values, 1) == 0))]
        integral = fractional.size == 0
        if not integral:
            distinct = np.concatenate([fractional[:1], distinct])
    kept = [v.item() if hasattr(v, "item") else v for v in distinct[:AUTO_MAX_CLASSES + 1]]
    return {"numeric": bool(numeric), "integral": bool(integral),
            "distinct": [float(v) for v in kept] if numeric else kept}


def feature_summary(df: pd.DataFrame, target: str, name: str) -> dict[str, Any]:
    """The per-partition summaries the Dask engine's training and categorical drift
    need (kept in the partition's stats object): the target's (:func:`target_summary`),
    the feature kinds, and rows per category and missing values of the categorical and
    bool features (:func:`mlops.engines.sketches.category_summary`)."""
    kinds = feature_kinds(df, target, name)
    counts, missing = category_summary(df, [c for c, kind in kinds.items() if kind != NUMERIC])
    return {"target": target_summary(df[target]), "feature_kinds": kinds,
            "categories": counts, "category_missing": missing}


def decide_task(parts: Sequence[Mapping[str, Any]], task: str, target: str,
                name: str) -> str:
    """The task of a partitioned version from its partitions' target summaries: the
    same rule and messages as :func:`mlops.data.detect_task` on the whole target.

    Raises:
        DataValidationError: As :func:`mlops.data.detect_task` (a single class, a
            constant regression target, a continuous target for classification...).
    """
    numeric = all(p["numeric"] for p in parts)
    seen: dict[Any, None] = {}
    for p in parts:
        seen.update(dict.fromkeys(p["distinct"]))
    # A partition with a non-integer target lists one first, so the union has it.
    values = list(seen)
    if numeric:
        series = pd.Series(values, dtype=np.float64)
    elif values and all(isinstance(v, bool) for v in values):
        series = pd.Series(values, dtype=bool)
    else:
        series = pd.Series(values, dtype=object)
    return detect_task(series, task, target, name)


def merge_kinds(parts: Sequence[Mapping[str, Any]], files: Sequence[str]) -> dict[str, str]:
    """The feature kinds of a partitioned version; a feature whose kind differs between
    files is refused.

    Raises:
        DataValidationError: Names the column and the file where its kind changes.
    """
    kinds: dict[str, str] = dict(parts[0]["feature_kinds"]) if parts else {}
    for part, file in zip(parts, files, strict=True):
        for col, kind in part["feature_kinds"].items():
            if kinds.get(col, kind) != kind:
                raise DataValidationError(f"feature column '{col}' is {kind} in {file} but "
                                          f"{kinds[col]} in {files[0]}")
    return kinds


# --- the version -----------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestOutcome:
    """What :func:`register_partitioned` did.

    Attributes:
        version_id: The committed (or existing) version.
        rows: Rows in all partitions.
        partitions: Partitions in the version.
        hashed: Files read and hashed in this call (the rest came from the fingerprint cache).
        manifest: The version's manifest.
    """

    version_id: str
    rows: int
    partitions: int
    hashed: int
    manifest: dict[str, Any]
    #: The task decided on the merged target summaries (see :func:`decide_task`).
    task: str = "classification"
    #: What looks wrong in the files (:func:`mlops.data.table_warnings`), each once.
    warnings: tuple[str, ...] = ()


def version_digest(columns: Sequence[Mapping[str, str]], digests: Sequence[str],
                   algorithm: str) -> str:
    """The content hash of a partitioned version: schema plus ordered partition hashes."""
    doc = {"format": "partitioned-1", "columns": [c["name"] for c in columns],
           "dtypes": [c["dtype"] for c in columns], "partitions": list(digests)}
    return hashlib.new(algorithm, json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _cached(data: Store, files: Sequence[SourceFile], keys: Sequence[str], k: int,
            names: Sequence[str] | None = None) -> dict[int, dict[str, Any]]:
    """Summaries of files whose fingerprint is known and whose partition is stored.

    What an entry claims is checked before it is reused (issue 19 item 8): it must name
    this file (``names[i]``, its size and token) and the checksum that the partition's
    own stats object records. An entry that does not (edited, copied from another
    file's entry, or written before entries kept the checksum) is a miss: the file is
    read and hashed again and the entry rewritten.
    """
    found = data.read_many(list(keys))
    hits: dict[int, str] = {}
    claimed: dict[int, str] = {}
    for i, key in enumerate(keys):
        raw = found.get(key)
        if raw is None:
            continue
        try:
            entry = json.loads(raw)
            digest, checksum = str(entry["digest"]), str(entry["checksum"])
        except (ValueError, KeyError, TypeError):
            continue
        f = files[i]
        if (names is not None and entry.get("source") != names[i]) \
                or entry.get("size") != f.size or entry.get("token") != f.token:
            log.warning("fingerprint cache entry %s does not describe %s; reading the file "
                        "again", data.url(key), names[i] if names else f.key)
            continue
        hits[i], claimed[i] = digest, checksum
    stats = data.read_many([stats_key(d, k) for d in hits.values()])
    out: dict[int, dict[str, Any]] = {}
    for i, digest in hits.items():
        raw = stats.get(stats_key(digest, k))
        if raw is None or not data.exists(object_key(digest)):
            continue
        summary = json.loads(raw)
        if "target" not in summary:
            continue  # summarized before the Dask engine kept feature summaries: read again
        if summary.get("checksum") != claimed[i]:
            log.warning("fingerprint cache entry %s claims partition %s, whose checksum "
                        "differs; reading the file again", data.url(keys[i]), digest[:16])
            continue
        summary.setdefault("size_bytes", data.size(object_key(digest)))
        out[i] = summary
    return out


def register_partitioned(client: Any, source: Store, files: Sequence[SourceFile],
                         data: Store, index: Any, target: str, algorithm: str = "sha256",
                         k: int = DEFAULT_K, *, task: str = AUTO, source_uri: str | None = None,
                         rules: Any = None, options: dict[str, Any] | None = None,
                         before_commit: Callable[[str, int], None] | None = None
                         ) -> IngestOutcome:
    """Register the files of a source as one partitioned version, on a Dask cluster.

    Args:
        client: A ``distributed.Client``.
        source: The source's store (:func:`mlops.storage.list_table_source`).
        files: Its files, in partition order.
        data: The versioner's store.
        index: The versioner's :class:`~mlops.versioned.VersionIndex`.
        target: The target column.
        algorithm: The content hash algorithm.
        k: Sketch accuracy.
        task: ``data.task`` (decided on the merged target summaries).
        source_uri: ``data.source`` as configured; the manifest then records it and the
            files read (``source``: ``{"uri", "files": [{"path", "size_bytes",
            "partition"}]}``), as the pandas engine's lineage.
        options: How files are read (:func:`mlops.data.read_options`) and ``ids``, the
            ``data.id_columns`` (kept, never features).
        rules: The ``validation`` config section, checked on every file before anything
            is written (:func:`check_rules`; None: no rules).
        before_commit: Called with the decided task and the rows before anything is
            committed (a
            config check that needs the task); its error commits nothing.

    Returns:
        The outcome; identical content returns the existing version's id.

    Raises:
        DataValidationError: A file is invalid, the schemas differ, or the target has a
            single class (nothing is committed).
        VersionExistsError: Never for content ids (same id = same content), kept for
            the contract of ``DataVersioner.register``.
    """
    keys = [fingerprint_key(source.uri, f, algorithm) for f in files]
    summaries: dict[int, dict[str, Any]] = _cached(data, files, keys, k,
                                                   [source.url(f.key) for f in files])
    if rules is not None and active(rules):
        # Before any task writes a partition (the rules may have changed since a file
        # was cached, so every file is read for them).
        check_rules(client, source, files, rules, source.uri, options)
    todo = [i for i in range(len(files)) if i not in summaries]
    hashed = len(todo)
    expected: list[dict[str, str]] | None = None
    if summaries:
        expected = summaries[min(summaries)]["columns"]
    elif todo:
        # The first file sets the schema the others are checked against in their tasks.
        first = todo.pop(0)
        summaries[first] = client.submit(ingest_file, source, files[first], data, target,
                                         algorithm, k, keys[first], None, options,
                                         pure=False).result()
        expected = summaries[first]["columns"]
    # The sketches (about 45 KB a column each) are merged as each task completes and
    # dropped, and each finished future is released: neither this process nor the
    # workers keep a partition's sketches after they are merged.
    merger = SketchMerger(k)
    for summary in summaries.values():
        merger.add(summary.pop("sketches"))
    futures = {client.submit(ingest_file, source, files[i], data, target, algorithm, k,
                             keys[i], expected, options, pure=False): i for i in todo}
    from distributed import as_completed

    for fut in as_completed(futures):
        i = futures.pop(fut)
        summaries[i] = fut.result()
        merger.add(summaries[i].pop("sketches"))
        fut.release()
    ordered = [summaries[i] for i in range(len(files))]
    for f, s in zip(files, ordered, strict=True):
        if s["columns"] != ordered[0]["columns"]:
            raise DataValidationError(f"data file {source.url(f.key)} has columns "
                                      f"{[c['name'] for c in s['columns']]}, expected "
                                      f"{[c['name'] for c in ordered[0]['columns']]}")
    moments = merge_moments({c: Moments.from_dict(m) for c, m in s["moments"].items()}
                            for s in ordered)
    rows = sum(int(s["rows"]) for s in ordered)
    _check_whole(moments, rows, target, source.uri)
    decided = decide_task([s["target"] for s in ordered], task, target, source.uri)
    kinds = merge_kinds(ordered, [source.url(f.key) for f in files])
    if before_commit is not None:
        before_commit(decided, rows)
    digests = [str(s["digest"]) for s in ordered]
    columns = ordered[0]["columns"]
    digest = version_digest(columns, digests, algorithm)
    vid = digest[:ID_LENGTH]
    manifest = {
        "id": vid, "kind": PARTITIONED, "content_hash": digest, "hash_algorithm": algorithm,
        "rows": rows, "columns": columns, "stats": stats_of(moments),
        "moments": {c: m.to_dict() for c, m in moments.items()}, "sketch_k": k,
        "sketches": merger.encoded(),
        "partitions": [{"digest": s["digest"], "object": object_key(s["digest"]),
                        "stats_object": stats_key(s["digest"], k), "rows": int(s["rows"]),
                        "size_bytes": int(s.get("size_bytes", 0)), "source": f.key,
                        **_checksum_of(s)}
                       for f, s in zip(files, ordered, strict=True)],
        "size_bytes": sum(int(s.get("size_bytes", 0)) for s in ordered),
        # Kept in DataManifest.extra: feature kinds, and the categorical and bool
        # features' merged rows per category and missing values (mlops.engines.dask).
        "feature_kinds": kinds,
        "categories": merge_categories(s["categories"] for s in ordered),
        "category_missing": merge_counts(s["category_missing"] for s in ordered),
    }
    if source_uri is not None:
        manifest["source"] = {"uri": source_uri, "files": [
            {"path": source.url(f.key), "size_bytes": f.size, "partition": s["digest"]}
            for f, s in zip(files, ordered, strict=True)]}
    committed = _commit(data, index, vid, digest, algorithm, manifest)
    warned = tuple(dict.fromkeys(w for s in ordered for w in s.get("warnings") or []))
    return IngestOutcome(version_id=vid, rows=rows, partitions=len(ordered), hashed=hashed,
                         manifest=committed, task=decided, warnings=warned)


def _check_whole(moments: Mapping[str, Moments], rows: int, target: str, name: str) -> None:
    # A single class or a constant target: decide_task, on the target summaries.
    if rows == 0:
        raise DataValidationError(f"{name} is empty: no rows")


def _commit(data: Store, index: Any, vid: str, digest: str, algorithm: str,
            manifest: dict[str, Any]) -> dict[str, Any]:
    key = layout.data_manifest_key(vid)
    existing = _read_manifest(data, key)
    if existing is not None:
        return _same_or_conflict(vid, existing, digest, algorithm)
    crash_point("after-payload")
    created = utc_now()
    manifest = {**manifest, "created_at": iso(created)}
    index.add(vid, created)
    crash_point("after-index")
    try:
        data.write_json(key, manifest, exclusive=True)
    except FileExistsError:
        data.delete(index.marker(vid, created))
        other = _read_manifest(data, key)
        return _same_or_conflict(vid, other or {}, digest, algorithm)
    return manifest


def _read_manifest(data: Store, key: str) -> dict[str, Any] | None:
    try:
        doc = data.read_json(key)
    except FileNotFoundError:
        return None
    return doc if isinstance(doc, dict) else None


def _same_or_conflict(vid: str, manifest: Mapping[str, Any], digest: str,
                      algorithm: str) -> dict[str, Any]:
    if manifest.get("content_hash") == digest and manifest.get("hash_algorithm") == algorithm:
        return dict(manifest)
    raise VersionExistsError(f"data version '{vid}' already exists with different content; "
                             "versions are never overwritten")


# --- reading -----------------------------------------------------------------------------
def _read_partition(key: str, data: Store) -> pd.DataFrame:
    local = data.local_path(key)
    if local is not None:
        data.check_regular(key)
        return pd.read_parquet(local, engine="pyarrow")
    with data.open_read(key) as f:
        return pd.read_parquet(f, engine="pyarrow")


def _checksum_of(summary: Mapping[str, Any]) -> dict[str, str]:
    """A partition's ``checksum`` entry; none for a stats object written before them."""
    return {"checksum": str(summary["checksum"])} if summary.get("checksum") else {}


def _read_checked_partition(key: str, checksum: str | None, name: str, data: Store,
                            verify: bool = True) -> pd.DataFrame:
    """Read one partition in its Dask task, checking its bytes against ``checksum``.

    Raises:
        IntegrityError: The bytes do not match (``name`` says the version and partition;
            exit code 2), or they are not readable Parquet.
    """
    try:
        if not verify or checksum is None:
            return _read_partition(key, data)  # explicit unverified load, or written before
        import pyarrow

        try:
            recorded = checksums.parse(checksum)
        except IntegrityError as err:
            raise IntegrityError(f"{name}: {err}; refusing to load it") from err
        buf = data.read_verified(key, recorded, name)
    except FileNotFoundError as err:
        # As the pandas engine says of a missing object: exit 2 naming the version (a
        # retry reads the same store; issue 19 item 15).
        raise VersionNotFoundError(f"{name}: object {data.url(key)} is missing (ingest the "
                                   "source again to repair it)") from err
    try:
        return pd.read_parquet(pyarrow.BufferReader(buf), engine="pyarrow")
    except (pyarrow.ArrowException, OSError) as err:
        raise IntegrityError(f"{name}: object {data.url(key)} is not readable Parquet "
                             f"({err})") from err


def meta_frame(columns: Iterable[Mapping[str, str]]) -> pd.DataFrame:
    """An empty frame with a manifest's columns and dtypes (Dask's ``meta``)."""
    return pd.DataFrame({c["name"]: pd.Series(dtype=c["dtype"]) for c in columns})


def load_partitioned(data: Store, manifest: DataManifest, *, verify: bool = True) -> Any:
    """A lazy ``dask.dataframe.DataFrame`` of a partitioned version (one partition each).

    Nothing is read until it is computed; each partition is read by the worker that
    needs it, which checks its bytes against the partition's recorded checksum (unless
    ``verify`` is False, or the partition was written before checksums): a mismatch
    raises :class:`~mlops.errors.IntegrityError` naming the version and the partition.
    """
    import dask
    import dask.dataframe as dd

    # Keys read from the manifest stay below objects/ (a tampered manifest must not
    # point a worker at another file).
    keys = [confined_key(p.get("object"), f"{layout.DATA_OBJECTS}/",
                         f"data version '{manifest.id}' partition")
            for p in manifest.partitions]
    sums = [p.get("checksum") for p in manifest.partitions]
    names = [f"data version '{manifest.id}' partition {i} (source {p.get('source')})"
             for i, p in enumerate(manifest.partitions)]
    # Partitions read as they were stored (as the pandas engine reads a version): Dask's
    # default string conversion would turn an object column of booleans into strings.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(_read_checked_partition, keys, sums, names, data=data,
                           verify=verify, meta=meta_frame(manifest.columns),
                           enforce_metadata=False)


__all__ = ["IngestOutcome", "load_partitioned", "register_partitioned"]
