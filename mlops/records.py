"""The store's documents as frozen dataclasses: data manifests, model records, alias events.

Each record has a JSON round trip. ``from_dict`` reads what earlier releases wrote:
keys a release did not write yet get their defaults, and keys this release does not
know (written by a later one) are kept in ``extra`` and written back by ``to_dict``,
so reading and re-writing a document never drops a fact.

The seed API (``DataVersioner.load``, ``ModelRegistry.load``, ``get_metadata``) keeps
returning plain dicts (``record.to_dict()``); these records are what the suite uses
internally and what the newer methods (``list_records``, ``get_record``,
``alias_events``) return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from types import UnionType
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from mlops.store import checksums

R = TypeVar("R", bound="Record")
#: Field metadata: leave the key out of ``to_dict`` while the value is None, so documents
#: that never had the fact read and write back exactly as before.
OMIT_IF_NONE = "omit_if_none"

#: ``DataManifest.kind`` of a version made of partitions (the Dask engine).
PARTITIONED = "partitioned"


def manifest_objects(manifest: Mapping[str, Any]) -> list[str]:
    """Every object key (below ``data/``) a stored data manifest references.

    One Parquet object for a pandas-engine version; each partition and its statistics
    object for a partitioned one. A partition shared by several versions is kept
    until the last manifest listing it is gone.
    """
    if manifest.get("kind") == PARTITIONED:
        keys: list[str] = []
        for p in manifest.get("partitions", []):
            keys.append(str(p["object"]))
            if p.get("stats_object"):
                keys.append(str(p["stats_object"]))
        return keys
    obj = manifest.get("object")
    return [str(obj)] if obj else []


@dataclass(frozen=True)
class Record:
    """Base of the records: JSON round trip that keeps unknown keys in ``extra``."""

    #: Keys of the stored document this release does not know (kept, written back).
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the unknown keys read, then every field but ``extra``."""
        out = dict(self.extra)
        for f in fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                if value is None and f.metadata.get(OMIT_IF_NONE):
                    continue  # a fact added by a later release, absent: not written
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """Build from a stored document; unknown keys go to ``extra``.

        Raises:
            TypeError: A required key is missing (the message names it).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a JSON object, got {_json_type(data)}")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        _check_types(cls, known)
        record = cls(**known, extra=extra)
        record.validate()
        return record

    def validate(self) -> None:
        """Checks beyond the keys' types (subclasses; the base has none).

        Raises:
            TypeError: The record is inconsistent (the message says how).
        """


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__)


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON ``value`` fits the field type ``hint`` (top level, and the items of
    lists of objects)."""
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_accepts(h, value) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_accepts(item, v) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    return True


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type[Record]) -> dict[str, Any]:
    """The field types of a record class (resolved once: they are strings here)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _check_types(cls: type[Record], known: Mapping[str, Any]) -> None:
    """Every required key is there and every value has its field's JSON type.

    Raises:
        TypeError: Naming the first key that is missing or of the wrong type.
    """
    hints = _hints(cls)
    for f in fields(cls):
        if f.name == "extra":
            continue
        if f.name not in known:
            if f.default is MISSING and f.default_factory is MISSING:
                raise TypeError(f"key '{f.name}' is missing")
            continue
        if not _accepts(hints[f.name], known[f.name]):
            raise TypeError(f"key '{f.name}' must be {hints[f.name]}, got "
                            f"{_json_type(known[f.name])}")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class VersionRecord(Record):
    """The commit document of a version: its id and creation time come first."""

    id: str
    created_at: str


@dataclass(frozen=True)
class DataManifest(VersionRecord):
    """A data version's manifest (``data/versions/<id>.json``), its commit point.

    A version registered with a ``source`` (the pipeline's ingest) also keeps it under
    the key ``source`` (``{"uri", "files": [{"path", "size_bytes"}]}``), in ``extra``
    so that manifests without one read and write back exactly as before.
    """

    content_hash: str
    hash_algorithm: str
    rows: int
    #: The Parquet object of a single-object version ("" for a partitioned one).
    object: str = ""
    columns: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None
    #: sha256 of the object's bytes: what manifests written before ``object_checksum``
    #: record (still checked by their verified loads; None: written before either).
    object_sha256: str | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: ``partitioned`` for a version made by the Dask engine (see mlops.store.partitions);
    #: "" for one object.
    kind: str = ""
    #: Partitioned: ``{digest, object, stats_object, rows, size_bytes, source}`` in order,
    #: and ``checksum`` (``"crc32c:<hex>"`` of the partition object's bytes) for the
    #: partitions written since checksums exist.
    partitions: list[dict[str, Any]] = field(default_factory=list)
    #: Partitioned: merged per-column moments (mlops.engines.sketches.Moments.to_dict).
    moments: dict[str, Any] = field(default_factory=dict)
    #: Partitioned: merged per-column KLL sketches (base64) and their accuracy k.
    sketches: dict[str, str] = field(default_factory=dict)
    sketch_k: int | None = None
    #: ``"crc32c:<hex>"`` of the object's bytes (mlops.store.checksums), checked by every
    #: verified load; written instead of ``object_sha256`` (None: written before).
    object_checksum: str | None = field(default=None, metadata={OMIT_IF_NONE: True})

    def validate(self) -> None:
        """Each partition of a partitioned version is an object with the keys readers use.

        Raises:
            TypeError: A partition without ``digest`` and ``object`` strings, or with
                ``rows``/``size_bytes`` that are not numbers.
        """
        for i, p in enumerate(self.partitions if self.partitioned else ()):
            if not isinstance(p.get("digest"), str) or not isinstance(p.get("object"), str):
                raise TypeError(f"partition {i} has no 'digest' and 'object' strings")
            for key in ("rows", "size_bytes"):
                if key in p and not _accepts(int | None, p[key]):
                    raise TypeError(f"partition {i}: key '{key}' must be a number")

    def checksum(self) -> tuple[str, str] | None:
        """``(algorithm, hex)`` a verified load checks the object's bytes against:
        ``object_checksum``, else the older ``object_sha256``, else None (a manifest
        from before both: its load recomputes the content hash).

        Raises:
            IntegrityError: ``object_checksum`` names an unknown algorithm.
        """
        if self.object_checksum is not None:
            return checksums.parse(self.object_checksum)
        if self.object_sha256 is not None:
            return "sha256", self.object_sha256
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; a single-object version's document has no partition keys
        (it reads and writes exactly as before partitioned versions existed)."""
        out = super().to_dict()
        if not self.partitioned:
            for name in _PARTITIONED_ONLY:
                out.pop(name, None)
        return out

    @property
    def partitioned(self) -> bool:
        """Whether this version is a manifest of partitions (the Dask engine's)."""
        return self.kind == PARTITIONED

    def objects(self) -> list[str]:
        """Every object key (below ``data/``) the version references; gc and retention
        keep an object while any committed manifest lists it."""
        return manifest_objects(self.to_dict())


#: DataManifest fields that only partitioned versions write.
_PARTITIONED_ONLY = ("kind", "partitions", "moments", "sketches", "sketch_k")


@dataclass(frozen=True)
class ModelRecord(VersionRecord):
    """A model version's record (``models/<id>/metadata.json``), its commit point.

    ``metadata`` is what the caller of ``ModelRegistry.save`` passed (free-form, as
    in the seed); the pipeline's own facts read as :class:`TrainingFacts`.
    """

    artifact: str
    sha256: str
    size_bytes: int | None = None
    model_class: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    #: HMAC-SHA256 of the record without it, when ``registry.signing_key_env`` is set.
    signature: str | None = field(default=None, metadata={OMIT_IF_NONE: True})

    def training(self) -> TrainingFacts:
        """The pipeline's facts in ``metadata`` (a model saved by the train step)."""
        return TrainingFacts.from_dict(self.metadata)


@dataclass(frozen=True)
class TrainingFacts(Record):
    """What the train step keeps in a model's ``metadata``."""

    #: Held-out accuracy (None for a regression).
    accuracy: float | None
    train_rows: int
    test_rows: int
    data_version: str = ""
    model_type: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    run_id: str = ""
    champion_version: str | None = None
    champion_accuracy: float | None = None
    #: Models saved before the promotion rule existed were always promoted.
    promote: bool = True
    promotion_reason: str = ""
    #: ``classification`` or ``regression`` (models saved before tasks: classification).
    task: str = "classification"
    #: The gating metric and its limit when the model was trained ("" before metrics).
    metric: str = ""
    threshold: float | None = None
    #: The challenger's ``metric`` and every metric on the held-out split.
    score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: The champion's, on the same rows (None without a usable champion).
    champion_score: float | None = None
    champion_metrics: dict[str, Any] | None = None
    #: The input schema (mlops.schema.InputSchema.to_dict()); empty before schemas.
    schema: dict[str, Any] = field(default_factory=dict)
    #: Hash of the config that shaped the model and its verdict (mlops.decisions).
    config_fingerprint: str = ""
    #: Data version, source files, and the versions of Python and the libraries.
    lineage: dict[str, Any] = field(default_factory=dict)
    #: A classifier's calibration map, fitted on the held-out split (mlops.performance.cbpe: what
    #: monitor-check's estimated metrics use); absent for regressions and older models.
    calibration: dict[str, Any] | None = field(default=None, metadata={OMIT_IF_NONE: True})


@dataclass(frozen=True)
class AliasEvent(Record):
    """One move of an alias (``models/_aliases/<alias>/events/<name>``).

    ``event`` is the object's name; it is not stored in the object itself.
    """

    alias: str
    action: str
    version: str
    previous: str | None = None
    by: str = ""
    at: str = ""
    reason: str = ""
    event: str = ""

    def stored(self) -> dict[str, Any]:
        """The document written to the store (without the ``event`` name)."""
        out = self.to_dict()
        del out["event"]
        return out


class _Unset:
    """The default of an :func:`optional` field: the document does not have the key."""

    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()


def optional() -> Any:
    """A field a document may lack (added by a later release, or only written sometimes):
    None when the key is absent, and then left out by ``to_dict``, so a document reads and
    writes back exactly (a key present with null stays so). A new fact of a run is one line:
    ``realized_score: float | None = optional()``."""
    return field(default=_UNSET)


@dataclass(frozen=True)
class Document(Record):
    """A record whose :func:`optional` fields remember whether the document had them."""

    #: The optional fields the document does not have (set on each instance).
    _unset: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        unset = frozenset(f.name for f in fields(self) if getattr(self, f.name) is _UNSET)
        for name in unset:
            object.__setattr__(self, name, None)
        object.__setattr__(self, "_unset", unset)

    def has(self, name: str) -> bool:
        """Whether the document has the key ``name`` (a field given or read, or an extra)."""
        return name not in self._unset and (name in self.__dataclass_fields__
                                            or name in self.extra)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the keys the document has, no more."""
        out = super().to_dict()
        for name in self._unset:
            out.pop(name, None)
        return out

    def replace(self: D, **changes: Any) -> D:
        """A copy with ``changes`` (each then present); unknown names go to ``extra``."""
        names = {f.name for f in fields(self)} - {"extra"}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in names}}
        values = {n: _UNSET if n in self._unset else getattr(self, n) for n in names}
        values.update({k: v for k, v in changes.items() if k in names})
        return type(self)(**values, extra=extra)


D = TypeVar("D", bound=Document)


@dataclass(frozen=True)
class RunSummary(Document):
    """A run's summary (``runs/<run-id>/summary.json``, what ``mlops run`` prints); see
    :func:`mlops.runner.summarize` for what each key means. Every key but ``run_id`` is
    optional: summaries of earlier releases have fewer, and some are written only when
    they apply (``predictions_uri``, ``serving_handoff``, ``report``, ``notifications``)."""

    run_id: str
    data_version: str | None = optional()
    #: The model that serves after the run.
    model_version: str | None = optional()
    retrained: bool | None = optional()
    #: The serving model's accuracy (None for a regression).
    accuracy: float | None = optional()
    reasons: list[str] | None = optional()
    drift: float | None = optional()
    drift_report: dict[str, Any] | None = optional()
    drift_error: str | None = optional()
    promoted: bool | None = optional()
    challenger_version: str | None = optional()
    challenger_accuracy: float | None = optional()
    challenger_score: float | None = optional()
    challenger_metrics: dict[str, Any] | None = optional()
    champion_accuracy: float | None = optional()
    task: str | None = optional()
    #: The engine the night ran on (``data.engine``, or what ``auto`` chose).
    engine: str | None = optional()
    metric: str | None = optional()
    #: The serving model's gating metric on the same data as ``accuracy``.
    score: float | None = optional()
    metrics: dict[str, Any] | None = optional()
    threshold: float | None = optional()
    baseline_score: float | None = optional()
    alerts: list[str] | None = optional()
    note: str | None = optional()
    serving_error: str | None = optional()
    schema_change: dict[str, Any] | None = optional()
    serving_uri: str | None = optional()
    predictions_uri: str | None = optional()
    serving_handoff: dict[str, Any] | None = optional()
    scored_rows: int | None = optional()
    skipped_seen_rows: int | None = optional()
    #: CBPE: the serving model's gating metric (and every estimated metric) on the batch
    #: without its labels (mlops.performance.cbpe), and the model the estimate is of.
    estimated_score: float | None = optional()
    estimated_metrics: dict[str, Any] | None = optional()
    estimated_model_version: str | None = optional()
    #: Added by ``finish_run``: the report's key and URL, and each webhook's outcome.
    report: str | None = optional()
    report_url: str | None = optional()
    notifications: list[dict[str, Any]] | None = optional()
    #: Added when the summary is written (every step result has them).
    step: str | None = optional()
    finished_at: str | None = optional()


@dataclass(frozen=True)
class HistoryRecord(Document):
    """One record of the metrics history (``monitoring/metrics/<time>-<id>.json``): a
    night's serving model and its score, a retrain's challenger and champion, or a failed
    run (``status: failed`` with ``step`` and ``error``). Built by
    :meth:`mlops.monitor.ModelMonitor.record_metrics` from the facts each writer gives;
    every key but ``timestamp`` is optional, as in the records of earlier releases."""

    timestamp: str
    accuracy: float | None = optional()
    data_version: str | None = optional()
    model_version: str | None = optional()
    run_id: str | None = optional()
    #: ``succeeded`` or ``failed`` (absent in the first release's records).
    status: str | None = optional()
    #: The failed step and its one-line error (a failed run's record).
    step: str | None = optional()
    error: str | None = optional()
    task: str | None = optional()
    retrained: bool | None = optional()
    drift: float | None = optional()
    drift_error: str | None = optional()
    reasons: list[str] | None = optional()
    promoted: bool | None = optional()
    champion_version: str | None = optional()
    champion_accuracy: float | None = optional()
    challenger_version: str | None = optional()
    challenger_accuracy: float | None = optional()
    challenger_metrics: dict[str, Any] | None = optional()
    metric: str | None = optional()
    score: float | None = optional()
    metrics: dict[str, Any] | None = optional()
    challenger_score: float | None = optional()
    champion_score: float | None = optional()
    serving_score: float | None = optional()
    baseline_score: float | None = optional()
    alerts: list[str] | None = optional()
    note: str | None = optional()
    scored_rows: int | None = optional()
    skipped_seen_rows: int | None = optional()
    #: CBPE: the serving model's metrics on the batch estimated without its labels.
    estimated_score: float | None = optional()
    estimated_metrics: dict[str, Any] | None = optional()
    #: The batch had no target: its predictions version waits for late labels
    #: (docs/labels.md); ``labels``: what the night's label files did.
    unlabelled: bool | None = optional()
    predictions_version: str | None = optional()
    labels: dict[str, Any] | None = optional()
    #: Merged in when read (monitoring/realized/): the night's metrics once its late
    #: labels came, on how many rows, and when its predictions were made.
    realized_score: float | None = optional()
    realized_metrics: dict[str, Any] | None = optional()
    labelled_rows: int | None = optional()
    predicted_rows: int | None = optional()
    label_coverage: float | None = optional()
    prediction_date: str | None = optional()
    realized_at: str | None = optional()
    realized_by_run: str | None = optional()
    label_versions: list[str] | None = optional()
    #: The gating limit (the report draws it when a record has it).
    threshold: float | None = optional()
    #: A step stopped by SIGTERM (a failed run's record).
    terminated: bool | None = optional()


__all__ = ["AliasEvent", "DataManifest", "Document", "HistoryRecord", "ModelRecord", "Record",
           "RunSummary", "TrainingFacts", "VersionRecord", "optional"]


@dataclass(frozen=True)
class PredictionsManifest(VersionRecord):
    """A predictions version's manifest (``predictions/versions/<id>.json``), its commit point.

    The id is the start of ``content_hash``, the hash of the model version, the columns
    and the partitions' content hashes: the same model scoring the same rows gives the
    same version.
    """

    content_hash: str
    hash_algorithm: str
    rows: int
    #: The serving model that scored the batch.
    model_version: str
    #: The scored batch: ``{"uri", "content_hash", "files": [{"path", "content_hash",
    #: "rows"}]}`` (its rows hashed like a data version's, in file order).
    source: dict[str, Any] = field(default_factory=dict)
    #: The run whose score step wrote it.
    run_id: str = ""
    columns: list[dict[str, Any]] = field(default_factory=list)
    #: One per scored file, in order: ``{digest, object, rows, size_bytes, checksum}``.
    partitions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LabelsManifest(VersionRecord):
    """A label version's manifest (``labels/versions/<id>.json``), its commit point: the
    label files that arrived in one night, their rows deduplicated by id (docs/labels.md).

    The id is the start of ``content_hash``, the hash of the stored rows: the same labels
    arriving again give the same version.
    """

    content_hash: str
    hash_algorithm: str
    #: Labelled ids stored (after duplicates were dropped: the last row of an id wins).
    rows: int
    #: The Parquet object of the rows (the id columns and the target).
    object: str
    checksum: str
    id_columns: list[str] = field(default_factory=list)
    target: str = ""
    #: The files read: ``{"path", "content_hash", "rows", "token"}``, in key order
    #: (``token``: size and version token, so an unchanged file is not read again).
    files: list[dict[str, Any]] = field(default_factory=list)
    #: Rows dropped because their id came again in the same arrival.
    duplicate_ids: int = 0
    #: Ids already labelled by an earlier version (the newer label wins).
    relabelled_ids: int = 0
    #: Ids of no stored prediction of the last ``labels.lookback_days`` (kept: a later
    #: window may still use them to train).
    unknown_ids: int = 0
    #: Rows without a target value (dropped).
    missing_targets: int = 0
    #: The run that versioned them.
    run_id: str = ""
