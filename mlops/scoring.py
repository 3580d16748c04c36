"""Batch scoring: the serving model's predictions for ``scoring.source``, as versions.

The score step reads the source file by file (one file = one partition, as the Dask
engine's ingest does), scores each with the serving model (the ``production`` alias,
loaded through :meth:`mlops.store.registry.ModelRegistry.load`) and writes each partition's
predictions as a content-addressed Parquet object; a manifest then commits the
predictions version (see :class:`mlops.records.PredictionsManifest`)::

    <scoring.output or <store>/predictions>/
        objects/<ab>/<rest>.parquet      the id columns, prediction, probability_<class>
        index/<created>~<id>             empty marker (newest-first listing)
        versions/<id>.json               the manifest: the commit point

The per-partition work (:func:`score_file`) is written once: the pandas engine runs it
in this process over the files in order, the Dask engine runs it as one task per file
on the workers (:func:`mlops.engines.dask.dask_map`), so no process holds more than
one file's rows, the memory bound of ingest.

Bad input is found before the first write: no serving model, a missing id column or a
missing feature column (checked on every file's header) raise :class:`BadInputError`
(exit 2) naming it. The target column may be absent (the normal case).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import BadInputError, DataValidationError
from mlops.records import PredictionsManifest
from mlops.store import checksums, layout
from mlops.store.filesystem import Store, as_store
from mlops.store.hashing import content_hash
from mlops.store.partitions import read_table
from mlops.store.sources import SourceFile, list_table_source
from mlops.store.versioned import VersionedStore
from mlops.store.workspace import Workspace

log = logging.getLogger(__name__)

#: The prediction column, and the prefix of the per-class probability columns.
PREDICTION = "prediction"
PROBABILITY = "probability_"
#: Hash of the scored rows and of the predictions.
ALGORITHM = "sha256"
#: Hex digits of the content hash in a predictions version id (as data versions).
ID_LENGTH = 16


class PredictionsStore(VersionedStore[PredictionsManifest]):
    """The predictions versions below ``scoring.output`` (default ``<store>/predictions``)."""

    kind = "predictions version"
    record_type = PredictionsManifest
    index_prefix = layout.DATA_INDEX

    @staticmethod
    def commit_key(version_id: str) -> str:
        """The manifest key of a predictions version."""
        return layout.predictions_manifest_key(version_id)

    def load(self, version_id: str) -> pd.DataFrame:
        """The rows of a predictions version (its partitions in order)."""
        record = self.get_record(version_id)
        frames = [read_table(self.store, p["object"]) for p in record.partitions]
        if not frames:
            return pd.DataFrame({c["name"]: pd.Series(dtype=c["dtype"])
                                 for c in record.columns})
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def predictions_store(ws: Workspace) -> PredictionsStore:
    """The predictions versions of the workspace's config (``scoring.output``)."""
    output = ws.config.scoring.output
    store = as_store(output, ws.config.storage.options) if output \
        else ws.store.child(layout.PREDICTIONS)
    return PredictionsStore(store)


@dataclass(frozen=True)
class Spec:
    """What a partition's task needs besides its rows (plain data, shipped to workers)."""

    features: list[str]
    id_columns: list[str]
    #: The classifier's classes, in ``predict_proba`` order; None for a regressor.
    classes: list[Any] | None
    #: The config key of ``id_columns`` (named when one is missing).
    id_key: str = "scoring.id_columns"


def spec_of(model: Any, metadata: Mapping[str, Any], id_columns: Sequence[str],
            version: str, id_key: str = "scoring.id_columns") -> Spec:
    """The scoring spec of a loaded model: its features (from its record) and classes."""
    meta = metadata.get("metadata") or {}
    features = list(meta.get("features") or getattr(model, "feature_names_in_", []))
    if not features:
        raise BadInputError(f"model version '{version}' records no feature columns; "
                            "it cannot score a batch")
    classes = getattr(model, "classes_", None)
    if classes is None or not hasattr(model, "predict_proba"):
        return Spec(features, list(id_columns), None, id_key)
    return Spec(features, list(id_columns),
                [c.item() if isinstance(c, np.generic) else c for c in classes], id_key)


def check_columns(columns: Sequence[str], spec: Spec, name: str) -> None:
    """Raise :class:`BadInputError` naming the first id or feature column missing from
    ``columns`` (the columns of file ``name``)."""
    have = set(map(str, columns))
    for col in spec.id_columns:
        if col == PREDICTION or col.startswith(PROBABILITY):
            raise BadInputError(f"config key '{spec.id_key}': column '{col}' would clash "
                                f"with the {PREDICTION}/{PROBABILITY}<class> columns")
        if col not in have:
            raise BadInputError(f"config key '{spec.id_key}': column '{col}' is not in "
                                f"{name}")
    for col in spec.features:
        if col not in have:
            raise BadInputError(f"feature column '{col}' of the serving model is not in "
                                f"{name}")


def score_frame(df: pd.DataFrame, model: Any, spec: Spec, name: str) -> pd.DataFrame:
    """The predictions of one partition: its id columns, ``prediction`` and, for a
    classifier, ``probability_<class>`` per class (the core both engines run)."""
    check_columns(list(df.columns), spec, name)
    x = df[spec.features]
    out = df[spec.id_columns].reset_index(drop=True)
    if not len(x):
        out[PREDICTION] = pd.Series(dtype="float64")
        for c in spec.classes or []:
            out[f"{PROBABILITY}{c}"] = pd.Series(dtype="float64")
        return out
    if spec.classes is not None:
        proba = np.asarray(model.predict_proba(x))
        # The class of the highest probability: what predict returns, computed once.
        out[PREDICTION] = np.asarray(spec.classes)[proba.argmax(axis=1)]
        for i, c in enumerate(spec.classes):
            out[f"{PROBABILITY}{c}"] = proba[:, i]
    else:
        out[PREDICTION] = np.asarray(model.predict(x))
    return out


def file_columns(source: Store, key: str) -> list[str]:
    """The column names of one CSV/Parquet file, from its header or Parquet footer."""
    if key.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        with source.open_read(key) as f:
            names = pq.read_schema(f).names
        return [n for n in names if not n.startswith("__index_level_")]
    with source.open_read(key) as f:
        try:
            return [str(c) for c in pd.read_csv(f, nrows=0).columns]
        except pd.errors.EmptyDataError as err:
            raise DataValidationError(f"data file {source.url(key)} is empty") from err


def check_file(source: Store, key: str, spec: Spec) -> None:
    """The before-any-write check of one file (a partition's first task)."""
    check_columns(file_columns(source, key), spec, source.url(key))


def score_file(source: Store, key: str, out: Store, model: Any, spec: Spec) -> dict[str, Any]:
    """Score one file and store its predictions (one partition's task).

    Returns:
        ``{digest, object, rows, size_bytes, checksum, input_hash, path, columns}``.
    """
    name = source.url(key)
    df = read_table(source, key)
    input_hash = content_hash(df, ALGORITHM)
    preds = score_frame(df, model, spec, name)
    del df
    digest = content_hash(preds, ALGORITHM)
    obj = layout.predictions_object_key(digest)
    if out.exists(obj):
        size, crc = out.size(obj), out.checksum(obj, checksums.ALGORITHM)
    else:
        size, crc = out.write_hashed(
            obj, lambda f: preds.to_parquet(f, engine="pyarrow", index=False),
            checksums.ALGORITHM)
    return {"digest": digest, "object": obj, "rows": len(preds), "size_bytes": size,
            "checksum": checksums.stored(checksums.ALGORITHM, crc),
            "input_hash": input_hash, "path": name,
            "columns": [{"name": str(c), "dtype": str(t)} for c, t in preds.dtypes.items()]}


#: Runs ``fn(source, key, *args)`` for every file key, in order, and returns the results:
#: in this process (pandas engine) or as one task per file on a Dask cluster.
MapFiles = Callable[..., list[Any]]


def local_map(fn: Callable[..., Any], source: Store, keys: Sequence[str], *args: Any
              ) -> list[Any]:
    """The pandas engine's :data:`MapFiles`: the files one after the other."""
    return [fn(source, key, *args) for key in keys]


@dataclass(frozen=True)
class Scored:
    """What the score step committed."""

    version: str
    uri: str
    rows: int
    model_version: str
    input_hash: str
    partitions: int


def score_source(ws: Workspace, run_id: str, map_files: MapFiles = local_map) -> Scored:
    """Score ``scoring.source`` with the serving model and commit a predictions version.

    Raises:
        BadInputError: No ``scoring.source``, no serving model, a missing id or feature
            column (nothing is written).
        DataValidationError: Nothing matches the source, or a file cannot be parsed.
    """
    cfg = ws.config.scoring
    if not cfg.source:
        raise BadInputError("config key 'scoring.source' is empty: nothing to score")
    version = ws.current_model_version()
    if version is None:
        raise BadInputError(f"no serving model to score {cfg.source} with: the store "
                            f"{ws.store.url()} has no model version yet")
    model, metadata = ws.registry.load(version)
    spec = spec_of(model, metadata, cfg.id_columns, version)
    try:
        source, files = list_table_source(cfg.source, ws.config.storage.options)
    except FileNotFoundError as err:
        raise DataValidationError(f"scoring source {cfg.source} not found: no CSV or "
                                  "Parquet file matches") from err
    keys = [f.key for f in files]
    map_files(check_file, source, keys, spec)  # every header, before the first write
    preds = predictions_store(ws)
    parts = map_files(score_file, source, keys, preds.store, model, spec)
    return _commit(preds, parts, files, cfg.source, version, run_id)


def score_data_version(ws: Workspace, run_id: str, data_version: str, model: Any,
                       metadata: Mapping[str, Any], model_version: str,
                       id_columns: Sequence[str], map_files: MapFiles = local_map) -> Scored:
    """Score a stored data version (an unlabelled night, docs/labels.md) with ``model`` and
    commit its predictions with their ids: the score step's per-file task, run on each of
    the version's objects (one, or one per partition), so both engines share it.

    The manifest's ``source`` names the data version (``source.data_version``), which is
    how the late labels find the predictions of a night.

    Raises:
        BadInputError: An id or feature column is missing (nothing is written).
    """
    spec = spec_of(model, metadata, id_columns, model_version, "labels.id_columns")
    record = ws.versioner.get_record(data_version)
    data = ws.versioner.store
    if record.partitioned:
        keys = [str(p["object"]) for p in record.partitions]
        sizes = [int(p.get("size_bytes") or 0) for p in record.partitions]
    else:
        keys, sizes = [record.object], [int(record.size_bytes or 0)]
    map_files(check_file, data, keys, spec)  # every object's columns, before the first write
    preds = predictions_store(ws)
    parts = map_files(score_file, data, keys, preds.store, model, spec)
    files = [SourceFile(k, n, "") for k, n in zip(keys, sizes, strict=True)]
    return _commit(preds, parts, files, f"data version {data_version}", model_version, run_id,
                   data_version)


def _commit(preds: PredictionsStore, parts: Sequence[Mapping[str, Any]],
            files: Sequence[SourceFile], uri: str, version: str, run_id: str,
            data_version: str | None = None) -> Scored:
    columns = parts[0]["columns"] if parts else []
    for p in parts[1:]:
        if p["columns"] != columns:
            raise DataValidationError(f"scoring file {p['path']} gives columns "
                                      f"{p['columns']}, expected {columns}")
    input_hash = _digest([p["input_hash"] for p in parts])
    digest = _digest([version, json.dumps(columns, sort_keys=True),
                      *(p["digest"] for p in parts)])
    vid = digest[:ID_LENGTH]
    manifest = PredictionsManifest(
        id=vid, created_at="", content_hash=digest, hash_algorithm=ALGORITHM,
        rows=sum(int(p["rows"]) for p in parts), model_version=version,
        source={"uri": uri, "content_hash": input_hash,
                "files": [{"path": p["path"], "content_hash": p["input_hash"],
                           "rows": p["rows"], "size_bytes": f.size}
                          for p, f in zip(parts, files, strict=True)],
                **({"data_version": data_version} if data_version else {})},
        run_id=run_id, columns=columns,
        partitions=[{k: p[k] for k in ("digest", "object", "rows", "size_bytes", "checksum")}
                    for p in parts])
    vid = preds.commit_manifest(manifest)
    uri_out = preds.store.url(preds.commit_key(vid))
    log.info("score: %d rows of %s with model %s -> predictions version %s", manifest.rows,
             uri, version, vid)
    return Scored(vid, uri_out, manifest.rows, version, input_hash, len(parts))


def _digest(items: Sequence[str]) -> str:
    h = hashlib.new(ALGORITHM)
    for item in items:
        h.update(item.encode())
        h.update(b"\0")
    return h.hexdigest()
