"""Late labels: label versions, the join by id with stored predictions, realized scores,
and the training window (docs/labels.md).

A night's batch may come without its target when ``labels.source`` is set: monitor-check
then stores the serving model's predictions with their ids (a predictions version whose
``source.data_version`` names the batch, :func:`mlops.scoring.score_data_version`).
Each night, the label files that arrived since (the id columns and the target, CSV or
Parquet, any column order) are checked, deduplicated by id and committed as one label
version below ``<store>/labels/`` (laid out as data versions are)::

    labels/objects/<ab>/<rest>.parquet     the ids and targets of one arrival
    labels/index/<created>~<id>            empty marker (newest-first listing)
    labels/versions/<id>.json              the manifest: the commit point

Every stored label of the last ``labels.lookback_days`` is then joined (inner, by the id
columns) with each predictions version of those days; the metrics of the task on the
joined rows are that night's **realized** metrics, kept as one object per (predictions,
labels) pair in ``monitoring/realized/`` and shown on that night's history entry
(:meth:`mlops.monitor.ModelMonitor.get_history`). A realized gating metric below its
limit, or degraded past ``monitoring.max_degradation``, asks for a retrain
(:data:`LOW_REALIZED_SCORE`) on the labelled rows of the training window.

The join and the metrics are pure functions of pandas frames (:func:`join`,
:func:`realized_metrics`): both engines store predictions the same way and read them
back here, a night's predictions being one file per partition and its labels a few ids.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import Config
from mlops.errors import BadInputError, DataValidationError
from mlops.gating import METRICS, degraded, gate, meets_threshold
from mlops.monitor import LOW_REALIZED_SCORE
from mlops.records import DataManifest, LabelsManifest, PredictionsManifest
from mlops.scoring import PREDICTION, PROBABILITY, PredictionsStore, predictions_store
from mlops.store import checksums, layout
from mlops.store.filesystem import crash_point
from mlops.store.hashing import content_hash
from mlops.store.ids import iso, utc_now
from mlops.store.partitions import read_table
from mlops.store.sources import list_table_source
from mlops.store.versioned import VersionedStore
from mlops.store.workspace import Workspace
from mlops.training import prediction_metrics

log = logging.getLogger(__name__)

#: Hash of label rows and files.
ALGORITHM = "sha256"
#: Hex digits of the content hash in a label version id (as data versions).
ID_LENGTH = 16


class LabelStore(VersionedStore[LabelsManifest]):
    """The label versions below ``<store>/labels``."""

    kind = "label version"
    record_type = LabelsManifest
    index_prefix = layout.DATA_INDEX

    @staticmethod
    def commit_key(version_id: str) -> str:
        """The manifest key of a label version."""
        return layout.data_manifest_key(version_id)

    def load(self, version_id: str) -> pd.DataFrame:
        """The label rows of a version (the id columns and the target)."""
        return read_table(self.store, self.get_record(version_id).object)


def label_store(ws: Workspace) -> LabelStore:
    """The label versions of the workspace's store."""
    return LabelStore(ws.store.child(layout.LABELS))


# --- what arrived --------------------------------------------------------------------------
@dataclass(frozen=True)
class Arrival:
    """The label files of one night that were not seen before, read and checked.

    Attributes:
        rows: The labels, one row per id (the last row of an id wins), id columns first.
        files: ``{"path", "content_hash", "rows", "token"}`` of each new file, in key
            order (``token``: its size and version token when read).
        duplicate_ids: Rows dropped because their id came again in these files.
        missing_targets: Rows dropped because their target is missing.
    """

    rows: pd.DataFrame
    files: list[dict[str, Any]]
    duplicate_ids: int
    missing_targets: int


def read_arrival(config: Config, labels: LabelStore) -> Arrival:
    """Read the label files of ``labels.source`` that no label version holds yet.

    Nothing is written: every file is checked before the night commits anything.

    Raises:
        BadInputError: A file lacks an id column or the target (names the file and the
            column), or an id is missing.
        DataValidationError: A file cannot be parsed.
    """
    cfg = config.labels
    ids, target = list(cfg.id_columns), config.data.target_column
    records = labels.list_records()
    seen = {str(f.get("content_hash")) for r in records for f in r.files}
    # A file listed with the token it had when versioned (GCS generation, S3 ETag, else
    # size and modification time) is not read again: months of label files stay cheap.
    versioned = {(str(f.get("path")), str(f.get("token"))) for r in records for f in r.files
                 if f.get("token")}
    try:
        source, files = list_table_source(cfg.source, config.storage.options)
    except FileNotFoundError:
        files, source = [], None
    frames, read = [], []
    for f in files:
        assert source is not None
        name = source.url(f.key)
        if (name, f"{f.size}:{f.token}") in versioned:
            continue
        df = read_table(source, f.key)
        digest = content_hash(df, ALGORITHM)
        if digest in seen:
            continue
        for col in [*ids, target]:
            if col not in df.columns:
                key = "labels.id_columns" if col in ids else "data.target_column"
                raise BadInputError(f"label file {name} has no column '{col}' (config key "
                                    f"'{key}'); it has {', '.join(map(str, df.columns))}")
        missing_id = df[ids].isna().any(axis=1)
        if missing_id.any():
            raise BadInputError(f"label file {name}: {int(missing_id.sum())} row(s) without "
                                f"an id (columns {', '.join(ids)})")
        seen.add(digest)
        frames.append(df[[*ids, target]])
        read.append({"path": name, "content_hash": digest, "rows": len(df),
                     "token": f"{f.size}:{f.token}"})
    if not frames:
        return Arrival(pd.DataFrame(columns=[*ids, target]), [], 0, 0)
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = rows[target].isna()
    rows = rows[~missing]
    dup = rows.duplicated(ids, keep="last")
    rows = rows[~dup].reset_index(drop=True)
    return Arrival(rows, read, int(dup.sum()), int(missing.sum()))


def store_arrival(labels: LabelStore, arrival: Arrival, config: Config, run_id: str
                  ) -> LabelsManifest:
    """Write an arrival's rows (the payload, content-addressed) and return the manifest
    that will commit them (:meth:`LabelStore.commit`, last); counts are filled later."""
    digest = content_hash(arrival.rows, ALGORITHM)
    obj = layout.data_object_key(digest)
    if labels.store.exists(obj):
        crc = labels.store.checksum(obj, checksums.ALGORITHM)
    else:
        _, crc = labels.store.write_hashed(
            obj, lambda f: arrival.rows.to_parquet(f, engine="pyarrow", index=False),
            checksums.ALGORITHM)
    return LabelsManifest(
        id=digest[:ID_LENGTH], created_at="", content_hash=digest, hash_algorithm=ALGORITHM,
        rows=len(arrival.rows), object=obj, checksum=checksums.stored(checksums.ALGORITHM, crc),
        id_columns=list(config.labels.id_columns), target=config.data.target_column,
        files=arrival.files, duplicate_ids=arrival.duplicate_ids,
        missing_targets=arrival.missing_targets, run_id=run_id)


# --- stored predictions and labels ---------------------------------------------------------
def _created(record: Any) -> datetime:
    return datetime.fromisoformat(str(record.created_at))


def recent_predictions(preds: PredictionsStore, since: datetime
                       ) -> list[PredictionsManifest]:
    """The predictions versions of unlabelled nights (``source.data_version`` set) created
    at or after ``since``, newest first."""
    out = []
    for record in preds.list_records():
        if _created(record) < since:
            break
        if record.source.get("data_version"):
            out.append(record)
    return out


#: The column of :func:`stored_labels` naming the label version of each row.
LABEL_VERSION = "__label_version"


def stored_labels(labels: LabelStore, id_columns: Sequence[str],
                  since: datetime | None = None) -> pd.DataFrame:
    """Every stored label (of versions created at or after ``since``), one row per id: the
    newest version's label wins; :data:`LABEL_VERSION` names the version of each row."""
    frames = []
    for record in labels.list_records():  # newest first
        if since is not None and _created(record) < since:
            break
        frames.append(labels.load(record.id).assign(**{LABEL_VERSION: record.id}))
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return rows[~rows.duplicated(list(id_columns), keep="first")].reset_index(drop=True)


# --- the join and the realized metrics (pure) ------------------------------------------------
def align_ids(labels: pd.DataFrame, predictions: pd.DataFrame, id_columns: Sequence[str]
              ) -> pd.DataFrame:
    """``labels`` with its id columns cast to the predictions' dtypes (a CSV reads ids as
    numbers where the batch stored strings, or the reverse).

    Raises:
        BadInputError: An id column cannot be cast (names it).
    """
    out = labels
    for col in id_columns:
        want = predictions[col].dtype
        if out[col].dtype != want:
            if out is labels:
                out = labels.copy()
            try:
                out[col] = out[col].astype(str).astype(want) \
                    if pd.api.types.is_numeric_dtype(want) else out[col].astype(str)
            except (TypeError, ValueError) as err:
                raise BadInputError(f"label id column '{col}' cannot be read as the "
                                    f"predictions' {want} ({err})") from err
    return out


def join(predictions: pd.DataFrame, labels: pd.DataFrame, id_columns: Sequence[str]
         ) -> pd.DataFrame:
    """The predictions that have a label: an inner join on the id columns (each id once in
    ``labels``), the target column last."""
    return predictions.merge(align_ids(labels, predictions, id_columns), on=list(id_columns),
                             how="inner", sort=False)


def _as_classes(names: Sequence[str], truth: pd.Series) -> list[Any] | None:
    try:
        return list(pd.Series(list(names), dtype=object).astype(truth.dtype))
    except (TypeError, ValueError):
        return None


def realized_metrics(joined: pd.DataFrame, target: str, task: str
                     ) -> dict[str, float | None]:
    """Every metric of ``task`` for the stored predictions of ``joined`` against their
    labels (``target``): the same table as a model's held-out metrics
    (:func:`mlops.training.prediction_metrics`)."""
    truth = joined[target]
    proba_cols = [c for c in joined.columns if str(c).startswith(PROBABILITY)]
    classes = _as_classes([str(c)[len(PROBABILITY):] for c in proba_cols], truth) \
        if proba_cols else None
    proba = joined[proba_cols].to_numpy(dtype=np.float64) if classes else None
    return prediction_metrics(truth, joined[PREDICTION], task, proba, classes)


# --- one night's labels ------------------------------------------------------------------------
@dataclass(frozen=True)
class Realized:
    """The realized score of one earlier night (what its history entry gains)."""

    run_id: str
    prediction_date: str
    predictions_version: str
    data_version: str
    model_version: str
    metric: str
    realized_score: float | None
    realized_metrics: dict[str, float | None]
    labelled_rows: int
    predicted_rows: int
    label_coverage: float
    label_versions: list[str]
    realized_at: str
    realized_by_run: str
    #: Whether this run computed it first (new labels for that night).
    new: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class LabelsReport:
    """What the night's labels did (kept in the monitor-check result)."""

    label_version: str | None
    files: list[str]
    rows: int
    duplicate_ids: int
    relabelled_ids: int
    unknown_ids: int
    missing_targets: int
    realized: list[Realized] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**{k: v for k, v in asdict(self).items() if k != "realized"},
                "realized": [r.to_dict() for r in self.realized]}


def _task_of(ws: Workspace, model_version: str, joined: pd.DataFrame) -> str:
    try:
        task = ws.registry.get_record(model_version).metadata.get("task")
    except Exception:  # a deleted or damaged model still has predictions to realize
        task = None
    if task in ("classification", "regression"):
        return str(task)
    return "classification" if any(str(c).startswith(PROBABILITY) for c in joined.columns) \
        else "regression"


def _token(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def process_labels(ws: Workspace, run_id: str, arrival: Arrival | None = None,
                   now: datetime | None = None) -> LabelsReport:
    """Version the label files that arrived and realize every night of the lookback.

    Args:
        ws: The workspace (``labels`` configured).
        run_id: This night's run.
        arrival: :func:`read_arrival`'s result when the caller checked the files before its
            own first write; None reads them here.
        now: This night's time (default: now).

    Raises:
        BadInputError: A bad label file (nothing is written).
    """
    config = ws.config
    cfg = config.labels
    ids = list(cfg.id_columns)
    now = now or utc_now()
    since = now - timedelta(days=cfg.lookback_days)
    labels = label_store(ws)
    if arrival is None:
        arrival = read_arrival(config, labels)
    if not arrival.files:  # no new label: no night's realized score can change
        return LabelsReport(None, [], 0, 0, 0, 0, 0)
    preds = predictions_store(ws)
    nights = recent_predictions(preds, since)
    frames = {r.id: preds.load(r.id) for r in nights}
    relabelled = 0
    earlier = stored_labels(labels, ids)
    if len(earlier):
        old = align_ids(earlier[ids], arrival.rows, ids)
        relabelled = len(arrival.rows.merge(old, on=ids, how="inner"))
    # The nights the arrival labels (only their realized scores change).
    touched = [n for n in nights if set(ids) <= set(frames[n.id].columns)
               and len(join(frames[n.id][ids], arrival.rows[ids], ids))]
    known = [frames[n.id][ids] for n in touched]
    hit = len(join(pd.concat(known, ignore_index=True).drop_duplicates(),
                   arrival.rows[ids], ids)) if known else 0
    unknown = len(arrival.rows) - hit
    # Payload first, then the realized records (each written once), the manifest last: a
    # step that dies in between reads the same files again when retried and finds both.
    manifest = store_arrival(labels, arrival, config, run_id)
    fresh = arrival.rows.assign(**{LABEL_VERSION: manifest.id})
    realized = realize(ws, run_id, touched, frames, labels, since, now, fresh)
    crash_point("labels-before-commit")
    version = labels.commit_manifest(LabelsManifest.from_dict({
        **manifest.to_dict(), "relabelled_ids": relabelled, "unknown_ids": unknown}))
    log.info("labels: %d labelled ids from %d new file(s) -> label version %s (%d "
             "duplicate ids dropped, %d relabelled, %d unknown ids, %d without a target)",
             len(arrival.rows), len(arrival.files), version, arrival.duplicate_ids,
             relabelled, unknown, arrival.missing_targets)
    return LabelsReport(version, [f["path"] for f in arrival.files], len(arrival.rows),
                        arrival.duplicate_ids, relabelled, unknown, arrival.missing_targets,
                        realized)


def realize(ws: Workspace, run_id: str, nights: Sequence[PredictionsManifest],
            frames: Mapping[str, pd.DataFrame], labels: LabelStore, since: datetime,
            now: datetime, fresh: pd.DataFrame | None = None) -> list[Realized]:
    """The realized metrics of each night of ``nights`` with stored labels (and ``fresh``:
    tonight's arrival, not committed yet, newer than any), each kept in the history once
    per (predictions, labels) pair; newest night first."""
    config = ws.config
    ids, target = list(config.labels.id_columns), config.data.target_column
    stored = stored_labels(labels, ids, since)
    if fresh is not None:
        stored = pd.concat([fresh, align_ids(stored, fresh, ids)], ignore_index=True) \
            if len(stored) else fresh
        stored = stored[~stored.duplicated(ids, keep="first")].reset_index(drop=True)
    out: list[Realized] = []
    if not len(stored):
        return out
    for night in nights:
        if night.run_id == run_id:
            continue  # tonight's own predictions: their labels come on a later night
        frame = frames[night.id]
        if not set(ids) <= set(frame.columns):
            continue
        joined = join(frame, stored, ids)
        if not len(joined):
            continue
        task = _task_of(ws, night.model_version, joined)
        metric = gate(config, task)[0]
        metrics = realized_metrics(joined.drop(columns=[LABEL_VERSION]), target, task)
        # Named by what it was computed from: the same labels of a night give one record.
        used = sorted(set(joined[LABEL_VERSION]))
        token = _token(night.id, len(joined), *used)
        r = Realized(run_id=night.run_id, prediction_date=night.created_at,
                     predictions_version=night.id,
                     data_version=str(night.source.get("data_version")),
                     model_version=night.model_version, metric=metric,
                     realized_score=metrics.get(metric), realized_metrics=metrics,
                     labelled_rows=len(joined), predicted_rows=len(frame),
                     label_coverage=round(len(joined) / max(len(frame), 1), 6),
                     label_versions=list(used), realized_at=iso(now), realized_by_run=run_id)
        kept = ws.monitor.record_realized(token, {k: v for k, v in r.to_dict().items()
                                                  if k != "new"})
        # New tonight, or by this run's earlier attempt (a retried step decides alike).
        new = kept.get("realized_by_run") == run_id
        out.append(replace(r, new=new, realized_at=str(kept.get("realized_at", r.realized_at)),
                           realized_by_run=str(kept.get("realized_by_run", run_id))))
        log.info("labels: night %s (predictions %s of %s): %d of %d rows labelled, realized "
                 "%s %s", night.run_id, night.id, night.created_at, len(joined), len(frame),
                 metric, "n/a" if r.realized_score is None else f"{r.realized_score:.4f}")
    return out


def realized_drop(config: Config, realized: Iterable[Realized], serving: str | None,
                  baseline: float | None) -> Realized | None:
    """The newly realized night of the serving model whose gating metric misses its limit
    or fell past ``monitoring.max_degradation`` below ``baseline`` (its held-out score at
    training), or None. Nights of a model that no longer serves are history, not a
    reason to retrain."""
    for r in realized:
        if not r.new or serving is None or r.model_version != serving:
            continue
        metric, threshold = gate(config, METRICS[r.metric][0])
        if not meets_threshold(r.realized_score, threshold, metric) or degraded(
                r.realized_score, baseline, metric, config.monitoring.max_degradation):
            return r
    return None


# --- the training window -------------------------------------------------------------------
def window_records(ws: Workspace, data_version: str, *, versions: int | None = None,
                   days: float | None = None, now: datetime | None = None
                   ) -> list[DataManifest]:
    """The data versions of a training window, newest first, the run's own always in it:
    the last ``versions`` versions, or those created in the last ``days`` days."""
    now = now or utc_now()
    since = None if days is None else now - timedelta(days=days)
    out: list[DataManifest] = []
    for record in ws.versioner.list_records(versions):
        if since is not None and _created(record) < since:
            break
        out.append(record)
    if all(r.id != data_version for r in out):
        out.insert(0, ws.versioner.get_record(data_version))
        if versions is not None:
            out = out[:versions]
    return out


def window_of(config: Config, unlabelled: bool) -> tuple[int | None, float | None] | None:
    """``(versions, days)`` of the training window, or None: the batch alone.

    ``training.window`` when set; else, with labels configured and a batch without its
    target (or a retrain asked by late labels), the last ``labels.lookback_days`` days:
    the nights whose labels were joined.
    """
    w = config.training.window
    if w.enabled:
        return w.versions, w.days
    if config.labels.enabled and unlabelled:
        return None, float(config.labels.lookback_days)
    return None


def _frame(ws: Workspace, version: str) -> pd.DataFrame:
    df, _ = ws.versioner.load(version)
    if not isinstance(df, pd.DataFrame):  # a partitioned version read as a Dask frame
        df = df.compute()
    return df


def training_frame(ws: Workspace, data_version: str, *, versions: int | None = None,
                   days: float | None = None, now: datetime | None = None
                   ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The labelled rows of a training window: each version's rows with their target (an
    unlabelled version's rows take it from the stored labels, joined by id; rows without
    one are left out), concatenated and deduplicated by content.

    Returns:
        The rows, and ``{"data_version", "rows", "labelled_rows"}`` of each version used.

    Raises:
        DataValidationError: No version of the window has a labelled row.
    """
    config = ws.config
    target = config.data.target_column
    ids = list(config.labels.id_columns)
    labels: pd.DataFrame | None = None
    frames, used = [], []
    records = window_records(ws, data_version, versions=versions, days=days, now=now)
    for record in reversed(records):  # oldest first: the newest copy of a row is kept last
        df = _frame(ws, record.id)
        rows = len(df)
        if target not in df.columns:
            if not config.labels.enabled:
                continue
            if labels is None:
                labels = stored_labels(label_store(ws), ids).drop(columns=[LABEL_VERSION],
                                                                   errors="ignore")
            if not len(labels) or not set(ids) <= set(df.columns):
                used.append({"data_version": record.id, "rows": rows, "labelled_rows": 0})
                continue
            df = join(df, labels, ids)
        else:
            df = df[df[target].notna()]
        used.append({"data_version": record.id, "rows": rows, "labelled_rows": len(df)})
        if len(df):
            frames.append(df)
    if not frames:
        raise DataValidationError(f"no labelled rows in the training window of data version "
                                  f"{data_version} ({len(records)} version(s))")
    columns = list(frames[-1].columns)
    out = pd.concat([f[columns] for f in frames], ignore_index=True) if len(frames) > 1 \
        else frames[0]
    return out[~out.duplicated(keep="last")].reset_index(drop=True), used


def labelled_versions(used: Sequence[Mapping[str, Any]]) -> list[str]:
    """The data versions a window trained on (those with labelled rows), newest first."""
    return [str(u["data_version"]) for u in reversed(used) if u.get("labelled_rows")]


__all__ = ["LOW_REALIZED_SCORE", "Arrival", "LabelStore", "LabelsReport", "Realized", "join",
           "label_store", "process_labels", "read_arrival", "realize", "realized_drop",
           "realized_metrics", "training_frame", "window_of", "window_records"]
