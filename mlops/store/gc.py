"""The deletion engine: one planner and one executor for everything that leaves the store.

Writers commit in one order: payload (data object / model artifact) first, then
the index marker, then the manifest / ``metadata.json`` with exclusive create,
the commit point. Deleting goes the other way: :func:`apply_gc` (the executor)
deletes commit points first, then markers, then payloads, so a version
disappears for every reader before its parts do, and a crash part-way leaves
only orphans that the next gc collects.

:func:`plan_gc` (the planner) lists the store once and reads every committed
manifest and model record once (:func:`snapshot`), then asks its *candidate
sources* what to delete. A source is a function ``(GcContext) -> Iterable[Deletion]``:

* :func:`find_orphans` (on by default): what crashed writers left behind, below
  the workspace root:

  * ``data/objects/..`` referenced by no committed manifest;
  * ``data/index/<ts>~<id>`` and ``models/_index/<ts>~<id>`` whose manifest is
    missing, or whose time differs from the manifest's ``created_at`` (the
    marker of a writer that lost a race for the same id);
  * files in ``models/<id>/`` when there is no ``metadata.json``, or which the
    ``metadata.json`` does not name as its artifact;
  * ``.tmp-*`` files anywhere (a local write that crashed before its rename).

  These are crash leftovers (``Deletion.grace``): only those older than the
  grace period are collected, so an in-flight write is never taken for a crash.
  Markers are aged by the time in their name, other objects by their
  last-modified time; an object whose age is unknown is kept.
* retention (:meth:`mlops.store.retention.RetentionPlan.source`), or any policy: it
  retires committed versions by proposing their commit point
  (:func:`Deletion.version`). The planner then adds the retired versions' parts
  (markers, payloads; a data object only when no remaining version shares it),
  without a grace period, since they were committed. Any other proposed key
  that a committed, non-retired version references is refused
  (``GcPlan.refused``).
* A source may also only report: what it appends to ``GcContext.warnings``
  ends up in ``GcPlan.warnings`` (the place for a consistency check).

Nothing that a committed, non-retired version references is ever deleted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.errors import BadInputError
from mlops.records import DataManifest, manifest_objects
from mlops.store import layout
from mlops.store.ids import compact
from mlops.store.versioner import address_problem

if TYPE_CHECKING:
    from mlops.store.filesystem import Store

log = logging.getLogger(__name__)

#: Default seconds a crash leftover must have existed before gc removes it.
DEFAULT_GRACE_SECONDS = 3600.0

# Deletion kinds.
DATA_VERSION = "data-version"
MODEL_VERSION = "model-version"
INDEX_MARKER = "index-marker"
DATA_OBJECT = "data-object"
MODEL_ARTIFACT = "model-artifact"
TEMP_FILE = "temp-file"
#: What a retired version is, for people (``Deletion.version`` takes these).
DATA = "data"
MODEL = "model"
#: The kinds that retire a version (their key is its commit point).
VERSION_KINDS = (DATA_VERSION, MODEL_VERSION)
#: Deletion order: commit points first, then markers, then payloads.
_PHASE = {DATA_VERSION: 0, MODEL_VERSION: 0, INDEX_MARKER: 1}

TMP_PREFIX = ".tmp-"
_DATA_MANIFESTS = f"{layout.under(layout.DATA, layout.DATA_VERSIONS)}/"
_DATA_INDEX = f"{layout.under(layout.DATA, layout.DATA_INDEX)}/"
_DATA_OBJECTS = f"{layout.under(layout.DATA, layout.DATA_OBJECTS)}/"
_MODELS = f"{layout.MODELS}/"
_MODELS_INDEX = f"{layout.under(layout.MODELS, layout.MODEL_INDEX)}/"


def check_grace(grace_seconds: float) -> float:
    """Return ``grace_seconds`` if it is a valid grace period.

    Raises:
        BadInputError: It is negative or not a number (nan would compare False with
            every age and disable the grace period); nothing is planned or deleted.
    """
    if not grace_seconds >= 0:
        raise BadInputError(f"grace period must be >= 0 seconds, got {grace_seconds}")
    return grace_seconds


def data_commit_key(version_id: str) -> str:
    """The commit point of a data version (its manifest), below the root."""
    return layout.under(layout.DATA, layout.data_manifest_key(version_id))


def model_commit_key(version_id: str) -> str:
    """The commit point of a model version (its ``metadata.json``), below the root."""
    return layout.under(layout.MODELS, layout.model_metadata_key(version_id))


def _data_id(key: str) -> str | None:
    rest = key[len(_DATA_MANIFESTS):]
    if key.startswith(_DATA_MANIFESTS) and rest.endswith(".json") and "/" not in rest:
        return rest[:-len(".json")]
    return None


def _model_id(key: str) -> str | None:
    parts = key.split("/")
    if len(parts) == 3 and key.startswith(_MODELS) and parts[2] == layout.MODEL_METADATA:
        return parts[1]
    return None


@dataclass(frozen=True)
class Deletion:
    """One planned deletion.

    Attributes:
        key: The object's key below the store root.
        kind: ``data-object``, ``index-marker``, ``model-artifact``, ``temp-file``,
            or for retired versions ``data-version`` / ``model-version`` (the key is
            then the version's commit point).
        reason: Why it goes, for people.
        age_seconds: Its age when planned, when known.
        grace: A crash leftover: collected only once older than the grace period.
        part_of: For a part of a retired version, the commit point of that version.
    """

    key: str
    kind: str
    reason: str
    age_seconds: float | None = None
    grace: bool = False
    part_of: str | None = None

    @classmethod
    def version(cls, kind: str, version_id: str, reason: str) -> Deletion:
        """Retire a committed version: ``kind`` is ``data`` or ``model``.

        Raises:
            ValueError: Another kind.
        """
        if kind == DATA:
            return cls(data_commit_key(version_id), DATA_VERSION, reason)
        if kind == MODEL:
            return cls(model_commit_key(version_id), MODEL_VERSION, reason)
        raise ValueError(f"a version is 'data' or 'model', not {kind!r}")

    @property
    def version_kind(self) -> str | None:
        """``data`` or ``model`` for a retired version, else None."""
        return {DATA_VERSION: DATA, MODEL_VERSION: MODEL}.get(self.kind)

    @property
    def version_id(self) -> str | None:
        """The id of the retired version, else None."""
        if self.kind == DATA_VERSION:
            return _data_id(self.key)
        if self.kind == MODEL_VERSION:
            return _model_id(self.key)
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"key": self.key, "kind": self.kind, "reason": self.reason,
                "age_seconds": None if self.age_seconds is None
                else round(self.age_seconds, 3)}

    def version_dict(self) -> dict[str, Any]:
        """A retired version as JSON: ``{"kind": "data"|"model", "version_id", "reason"}``."""
        return {"kind": self.version_kind, "version_id": self.version_id,
                "reason": self.reason}


@dataclass
class GcContext:
    """What candidate sources see: one snapshot of the store.

    Attributes:
        store: The workspace root store.
        now: The planning time (epoch seconds).
        grace_seconds: The grace period of crash leftovers.
        objects: Every object key below the root with its last-modified time.
        data_manifests: Committed data manifests by version id.
        model_records: Committed model metadata records by version id.
        unreadable: Manifest/metadata keys that exist but could not be parsed.
        warnings: What made gc more conservative, or what a reporting source found.
    """

    store: Store
    now: float
    grace_seconds: float
    objects: dict[str, float | None]
    data_manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def age(self, key: str) -> float | None:
        """Seconds since ``key`` was last modified, or None when unknown."""
        mtime = self.objects.get(key)
        return None if mtime is None else max(0.0, self.now - mtime)

    def too_young(self, deletion: Deletion) -> bool:
        """Whether the grace period keeps ``deletion`` (the one grace check)."""
        return deletion.grace and (deletion.age_seconds is None
                                   or deletion.age_seconds < self.grace_seconds)


#: A pluggable source of planned deletions (orphans, retention, ...).
CandidateSource = Callable[[GcContext], Iterable[Deletion]]


@dataclass(frozen=True)
class GcPlan:
    """What gc will delete (or deleted), and what it kept and why.

    Attributes:
        store: URI of the store.
        grace_seconds: The grace period used.
        deletions: Planned deletions, in deletion order.
        young: Crash leftovers kept because they are younger than the grace period.
        refused: Keys a candidate source proposed that committed versions reference.
        warnings: Things that made gc more conservative (e.g. an unreadable manifest),
            and what reporting sources found.
        deleted: Keys actually deleted (empty for a dry run).
        dry_run: Whether this plan was only listed.
    """

    store: str
    grace_seconds: float
    deletions: tuple[Deletion, ...]
    young: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    dry_run: bool = True

    @property
    def keys(self) -> list[str]:
        """The keys of the planned deletions, in order."""
        return [d.key for d in self.deletions]

    @property
    def versions(self) -> tuple[Deletion, ...]:
        """The retired versions (their commit points)."""
        return tuple(d for d in self.deletions if d.kind in VERSION_KINDS)

    def orphans(self) -> GcPlan:
        """This plan restricted to crash leftovers (no retired versions or their parts)."""
        kept = tuple(d for d in self.deletions
                     if d.kind not in VERSION_KINDS and d.part_of is None)
        keys = {d.key for d in kept}
        return replace(self, deletions=kept, deleted=tuple(k for k in self.deleted
                                                           if k in keys))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``orphans`` part of ``mlops gc --json``)."""
        return {"store": self.store, "grace_seconds": self.grace_seconds,
                "dry_run": self.dry_run,
                "deletions": [d.to_dict() for d in self.deletions],
                "young": list(self.young), "refused": list(self.refused),
                "warnings": list(self.warnings), "deleted": list(self.deleted)}


def _marker_age(ts: str, now: float) -> float | None:
    """Age of a marker from the UTC time in its name (object stores may not keep mtimes)."""
    try:
        when = datetime.strptime(ts, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    if when.timestamp() > now:
        return None  # a time in the future is no age (a forged marker): use its mtime
    return now - when.timestamp()


def _created_compact(doc: dict[str, Any]) -> str | None:
    try:
        return compact(datetime.fromisoformat(str(doc["created_at"])))
    except (KeyError, ValueError):
        return None


def snapshot(store: Store, grace_seconds: float, now: float | None = None) -> GcContext:
    """List the store once and read every committed manifest and metadata record.

    Args:
        store: The workspace root store.
        grace_seconds: The grace period of crash leftovers.
        now: The planning time (default: now).

    Returns:
        The context candidate sources work on.
    """
    objects = store.walk_modified("")
    ctx = GcContext(store, time.time() if now is None else now, grace_seconds, objects)
    data_keys = {k: vid for k in objects if (vid := _data_id(k)) is not None}
    model_keys = {k: vid for k in objects if (vid := _model_id(k)) is not None}
    for key, data in store.read_many([*data_keys, *model_keys]).items():
        if data is None:
            continue  # deleted since the listing
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or (key in data_keys and _damaged_manifest(doc)):
            ctx.unreadable.append(key)
        elif key in data_keys:
            ctx.data_manifests[data_keys[key]] = doc
        else:
            ctx.model_records[model_keys[key]] = doc
    ctx.warnings.extend(f"unreadable manifest {k}: data objects are kept"
                        for k in ctx.unreadable)
    return ctx


def _damaged_manifest(doc: dict[str, Any]) -> bool:
    """Whether a data manifest is refused by the readers (wrong types, or objects that
    are not at its content hashes' addresses): gc then keeps every data object, since
    what the manifest references cannot be trusted (issue 19 items 1 and 11)."""
    try:
        return address_problem(DataManifest.from_dict(doc)) is not None
    except (TypeError, ValueError, KeyError, AttributeError):
        return True


def find_orphans(ctx: GcContext) -> list[Deletion]:
    """The crash-leftovers source: every object no committed version references.

    Returns:
        Deletions marked ``grace`` (the planner keeps the young ones).
    """
    used_objects = {layout.under(layout.DATA, key)
                    for m in ctx.data_manifests.values() for key in manifest_objects(m)}
    out: list[Deletion] = []
    for key in sorted(ctx.objects):
        name = key.rsplit("/", 1)[-1]
        if name.startswith(TMP_PREFIX):
            out.append(Deletion(key, TEMP_FILE, "temporary file of an unfinished write",
                                ctx.age(key), grace=True))
        elif key.startswith(_DATA_OBJECTS):
            if key not in used_objects and not ctx.unreadable:
                out.append(Deletion(key, DATA_OBJECT, "data object referenced by no manifest",
                                    ctx.age(key), grace=True))
        elif key.startswith((_DATA_INDEX, _MODELS_INDEX)):
            committed = ctx.data_manifests if key.startswith(_DATA_INDEX) \
                else ctx.model_records
            out.extend(_marker_orphan(ctx, key, name, committed))
        elif key.startswith(_MODELS) and key.count("/") == 2 \
                and name not in (layout.MODEL_METADATA, layout.MODEL_REFERENCE,
                                 layout.MODEL_TRAINING_ROWS):
            out.extend(_model_file_orphan(ctx, key))
    return out


def _marker_orphan(ctx: GcContext, key: str, name: str,
                   committed: dict[str, dict[str, Any]]) -> list[Deletion]:
    if layout.INDEX_SEP not in name:
        return []
    ts, vid = name.split(layout.INDEX_SEP, 1)
    age = _marker_age(ts, ctx.now)
    if age is None:
        age = ctx.age(key)
    doc = committed.get(vid)
    if doc is None:
        if data_commit_key(vid) in ctx.unreadable or model_commit_key(vid) in ctx.unreadable:
            return []  # committed but corrupt: `gc --check` reports it; keep its marker
        return [Deletion(key, INDEX_MARKER, f"index marker of '{vid}' without a manifest",
                         age, grace=True)]
    created = _created_compact(doc)
    if created is not None and created != ts:
        return [Deletion(key, INDEX_MARKER,
                         f"duplicate index marker of '{vid}' (a writer that lost the race)",
                         age, grace=True)]
    return []


def _model_file_orphan(ctx: GcContext, key: str) -> list[Deletion]:
    vid = key.split("/")[1]
    record = ctx.model_records.get(vid)
    if record is None and model_commit_key(vid) in ctx.unreadable:
        return []
    if record is None:
        why = f"model file of '{vid}' without {layout.MODEL_METADATA}"
    elif layout.under(layout.MODELS, str(record.get("artifact"))) != key:
        why = f"model file not named by the {layout.MODEL_METADATA} of '{vid}'"
    else:
        return []
    return [Deletion(key, MODEL_ARTIFACT, why, ctx.age(key), grace=True)]


def plan_gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS,
            sources: Sequence[CandidateSource] = (), now: float | None = None, *,
            orphans: bool = True) -> GcPlan:
    """Plan a garbage collection of the workspace store (nothing is deleted).

    Args:
        store: The workspace root store (holding ``data/`` and ``models/``).
        grace_seconds: Keep crash leftovers younger than this (protects in-flight writes).
        sources: Candidate sources (e.g. retention); see the module docstring.
        now: The planning time (default: now; for tests).
        orphans: Also collect crash leftovers (:func:`find_orphans`).

    Returns:
        The plan.

    Raises:
        BadInputError: ``grace_seconds`` is negative.
    """
    ctx = snapshot(store, check_grace(grace_seconds), now)
    proposed = [d for source in (*sources, *([find_orphans] if orphans else ()))
                for d in source(ctx)]
    retired = {d.key: d for d in proposed if d.version_id is not None and d.key in ctx.objects}
    protected = _protected(ctx, retired)
    chosen = {d.key: d for d in _parts_of(ctx, retired) if d.key not in protected}
    refused: list[str] = []
    young: list[str] = []
    for d in proposed:
        if d.key in chosen or d.key not in ctx.objects:
            continue
        if d.key in protected:
            refused.append(d.key)
        elif ctx.too_young(d):
            young.append(d.key)
        else:
            chosen[d.key] = d
    ordered = sorted(chosen.values(), key=lambda d: (_PHASE.get(d.kind, 2), d.key))
    return GcPlan(store.uri, grace_seconds, tuple(ordered), tuple(sorted(young)),
                  tuple(refused), tuple(ctx.warnings))


def _protected(ctx: GcContext, retired: dict[str, Deletion]) -> set[str]:
    """Every key a committed, non-retired version references."""
    keys: set[str] = set(ctx.unreadable)
    for vid, m in ctx.data_manifests.items():
        if data_commit_key(vid) in retired:
            continue
        keys.add(data_commit_key(vid))
        # Every object the manifest lists: a partition shared with a retired version
        # stays while any committed version still lists it.
        keys.update(layout.under(layout.DATA, key) for key in manifest_objects(m))
        if ts := _created_compact(m):
            keys.add(layout.under(layout.DATA,
                                  layout.index_marker_key(layout.DATA_INDEX, ts, vid)))
    for vid, r in ctx.model_records.items():
        if model_commit_key(vid) in retired:
            continue
        keys.add(model_commit_key(vid))
        keys.add(layout.under(layout.MODELS, layout.model_reference_key(vid)))
        keys.add(layout.under(layout.MODELS, layout.model_training_rows_key(vid)))
        keys.add(layout.under(layout.MODELS, str(r.get("artifact"))))
        if ts := _created_compact(r):
            keys.add(layout.under(layout.MODELS,
                                  layout.index_marker_key(layout.MODEL_INDEX, ts, vid)))
    return keys


def _parts_of(ctx: GcContext, retired: dict[str, Deletion]) -> list[Deletion]:
    """The retired versions and what belonged to them (no grace period: committed)."""
    out: list[Deletion] = []
    for commit, d in retired.items():
        vid = str(d.version_id)
        out.append(d)
        if d.kind == DATA_VERSION:
            for key in manifest_objects(ctx.data_manifests.get(vid, {})):
                obj = layout.under(layout.DATA, key)
                if obj in ctx.objects:
                    out.append(Deletion(obj, DATA_OBJECT, f"data object of retired version "
                                        f"'{vid}'", ctx.age(obj), part_of=commit))
            index, files = _DATA_INDEX, []
        else:
            index = _MODELS_INDEX
            files = [k for k in ctx.objects if k.startswith(f"{_MODELS}{vid}/") and k != commit]
        out.extend(Deletion(k, TEMP_FILE if k.rsplit("/", 1)[-1].startswith(TMP_PREFIX)
                            else MODEL_ARTIFACT, f"model file of retired version '{vid}'",
                            ctx.age(k), part_of=commit) for k in files)
        out.extend(Deletion(k, INDEX_MARKER, f"index marker of retired version '{vid}'",
                            ctx.age(k), part_of=commit)
                   for k in ctx.objects
                   if k.startswith(index) and k.endswith(f"{layout.INDEX_SEP}{vid}"))
    return out


def apply_gc(store: Store, plan: GcPlan,
             still_wanted: Callable[[Deletion], bool] | None = None) -> GcPlan:
    """The executor: delete what ``plan`` lists, in its order (commit points first).

    Args:
        store: The store the plan was made on.
        plan: From :func:`plan_gc`.
        still_wanted: Asked for each retired version before and after its commit point
            is deleted (e.g. "no alias points to it"); False keeps the version and its
            parts (the commit point is written back when the answer changed in between).

    Returns:
        The plan with ``deleted`` filled in and ``dry_run`` False.

    Raises:
        StorageError: A deletion failed after the retries (what was deleted
            before stays deleted; running gc again finishes the job).
    """
    deleted: list[str] = []
    kept: set[str] = set()
    for d in plan.deletions:
        if d.part_of is not None and d.part_of in kept:
            continue  # the version was kept: so are its parts
        if d.kind in VERSION_KINDS and still_wanted is not None:
            if not _retire(store, d, still_wanted):
                kept.add(d.key)
                continue
        else:
            store.delete(d.key)
        deleted.append(d.key)
        log.info("gc deleted %s (%s)", store.url(d.key), d.reason)
    return replace(plan, deleted=tuple(deleted), dry_run=False)


def _retire(store: Store, d: Deletion, still_wanted: Callable[[Deletion], bool]) -> bool:
    """Delete a version's commit point unless ``still_wanted`` says otherwise, asked
    before and after the delete: a promotion that raced the delete gets the commit point
    written back (issue 19 item 7). Returns whether the version is gone."""
    if not still_wanted(d):
        return False
    try:
        saved = store.read_bytes(d.key)
    except FileNotFoundError:
        return False
    store.delete(d.key)
    if still_wanted(d):
        return True
    store.write_bytes(d.key, saved)
    log.warning("gc kept %s: it was promoted while gc deleted it", store.url(d.key))
    return False


def run_gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False,
           sources: Sequence[CandidateSource] = ()) -> GcPlan:
    """Plan, and unless ``dry_run`` apply, a garbage collection.

    Args:
        store: The workspace root store.
        grace_seconds: Keep crash leftovers younger than this.
        dry_run: Only plan.
        sources: Extra candidate sources (e.g. retention).

    Returns:
        The plan (with ``deleted`` filled in unless ``dry_run``).

    Raises:
        BadInputError: ``grace_seconds`` is negative (nothing is deleted).
    """
    plan = plan_gc(store, grace_seconds, sources)
    return plan if dry_run else apply_gc(store, plan)
