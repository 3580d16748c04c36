"""Garbage collection: find and remove what no committed version references.

Writers commit in one order: payload (data object / model artifact) first, then
the index marker, then the manifest / ``metadata.json`` with exclusive create,
the commit point. A crash in between leaves only unreferenced objects, which
readers never see. :func:`plan_gc` finds them from one recursive listing of the
store plus one (concurrent) read of every manifest; :func:`apply_gc` deletes
them, commit points first, payloads last, so that a version disappears before
its parts do.

What is an orphan (below the workspace root):

* ``data/objects/..`` referenced by no committed manifest;
* ``data/index/<ts>~<id>`` and ``models/_index/<ts>~<id>`` whose manifest is
  missing, or whose time differs from the manifest's ``created_at`` (the
  marker of a writer that lost a race for the same id);
* files in ``models/<id>/`` when there is no ``metadata.json``, or which the
  ``metadata.json`` does not name as its artifact;
* ``.tmp-*`` files anywhere (a local write that crashed before its rename).

Only orphans older than the grace period are collected, so that an in-flight
write is never taken for a crash. Markers are aged by the time in their
name, other objects by their last-modified time; an object whose age is
unknown is kept. Nothing that a committed version references is ever deleted.

Extension point: other policies (e.g. retention, ``retention.keep_*``) plug in
as *candidate sources*: functions ``(GcContext) -> Iterable[Deletion]`` passed
to :func:`plan_gc`. A source may retire committed versions by proposing their
manifest key (``data/versions/<id>.json``) or ``models/<id>/metadata.json``;
their payloads and markers then become orphans in the same plan (and are
collected without a grace period, since they were committed). Any other
proposed key that a committed, non-retired version references is refused and
reported in ``GcPlan.refused``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlops import layout
from mlops.errors import BadInputError
from mlops.ids import compact
from mlops.layout import MODEL_METADATA as METADATA
from mlops.storage import Store

log = logging.getLogger(__name__)

#: Default seconds an unreferenced object must have existed before gc removes it.
DEFAULT_GRACE_SECONDS = 3600.0

DATA = layout.DATA
MODELS = layout.MODELS
DATA_MANIFESTS = f"{layout.under(DATA, layout.DATA_VERSIONS)}/"
DATA_INDEX = f"{layout.under(DATA, layout.DATA_INDEX)}/"
DATA_OBJECTS = f"{layout.under(DATA, layout.DATA_OBJECTS)}/"
MODELS_INDEX = f"{layout.under(MODELS, layout.MODEL_INDEX)}/"
TMP_PREFIX = ".tmp-"

#: Deletion order: commit points first, then markers, then payloads.
_PHASE = {"data-version": 0, "model-version": 0, "index-marker": 1,
          "data-object": 2, "model-artifact": 2, "temp-file": 2}


@dataclass(frozen=True)
class Deletion:
    """One planned deletion.

    Attributes:
        key: The object's key below the store root.
        kind: ``data-object``, ``index-marker``, ``model-artifact``, ``temp-file``,
            or for retired versions ``data-version`` / ``model-version``.
        reason: Why it goes, for people.
        age_seconds: Its age when planned, when known.
    """

    key: str
    kind: str
    reason: str
    age_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"key": self.key, "kind": self.kind, "reason": self.reason,
                "age_seconds": None if self.age_seconds is None
                else round(self.age_seconds, 3)}


@dataclass
class GcContext:
    """What candidate sources see: one snapshot of the store.

    Attributes:
        store: The workspace root store.
        now: The planning time (epoch seconds).
        grace_seconds: The grace period of orphans.
        objects: Every object key below the root with its last-modified time.
        data_manifests: Committed data manifests by version id.
        model_records: Committed model metadata records by version id.
        unreadable: Manifest/metadata keys that exist but could not be parsed.
    """

    store: Store
    now: float
    grace_seconds: float
    objects: dict[str, float | None]
    data_manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def age(self, key: str) -> float | None:
        """Seconds since ``key`` was last modified, or None when unknown."""
        mtime = self.objects.get(key)
        return None if mtime is None else max(0.0, self.now - mtime)


#: A pluggable source of planned deletions (e.g. retention).
CandidateSource = Callable[[GcContext], Iterable[Deletion]]


@dataclass(frozen=True)
class GcPlan:
    """What gc will delete (or deleted), and what it kept and why.

    Attributes:
        store: URI of the store.
        grace_seconds: The grace period used.
        deletions: Planned deletions, in deletion order.
        young: Orphans kept because they are younger than the grace period.
        refused: Keys a candidate source proposed that committed versions reference.
        warnings: Things that made gc more conservative (e.g. an unreadable manifest).
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``mlops gc --json`` output)."""
        return {"store": self.store, "grace_seconds": self.grace_seconds,
                "dry_run": self.dry_run,
                "deletions": [d.to_dict() for d in self.deletions],
                "young": list(self.young), "refused": list(self.refused),
                "warnings": list(self.warnings), "deleted": list(self.deleted)}


def _marker_parts(name: str) -> tuple[str, str] | None:
    if layout.INDEX_SEP not in name:
        return None
    ts, vid = name.split(layout.INDEX_SEP, 1)
    return ts, vid


def _marker_age(ts: str, now: float) -> float | None:
    """Age of a marker from the UTC time in its name (object stores may not keep mtimes)."""
    try:
        when = datetime.strptime(ts, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, now - when.timestamp())


def _created_compact(doc: dict[str, Any]) -> str | None:
    try:
        return compact(datetime.fromisoformat(str(doc["created_at"])))
    except (KeyError, ValueError):
        return None


def snapshot(store: Store, grace_seconds: float, now: float | None = None) -> GcContext:
    """List the store once and read every committed manifest and metadata record.

    Args:
        store: The workspace root store.
        grace_seconds: The grace period of orphans.
        now: The planning time (default: now).

    Returns:
        The context candidate sources and the orphan finder work on.
    """
    objects = store.walk_modified("")
    ctx = GcContext(store, time.time() if now is None else now, grace_seconds, objects)
    manifest_keys = [k for k in objects
                     if k.startswith(DATA_MANIFESTS) and k.endswith(".json")
                     and "/" not in k[len(DATA_MANIFESTS):]]
    record_keys = [k for k in objects if k.startswith(f"{MODELS}/")
                   and k.count("/") == 2 and k.endswith(f"/{METADATA}")]
    for key, data in store.read_many(manifest_keys + record_keys).items():
        if data is None:
            continue  # deleted since the listing
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            ctx.unreadable.append(key)
            continue
        if key.startswith(DATA_MANIFESTS):
            ctx.data_manifests[key[len(DATA_MANIFESTS):-len(".json")]] = doc
        else:
            ctx.model_records[key.split("/")[1]] = doc
    return ctx


def find_orphans(ctx: GcContext, retired_data: Set[str] = frozenset(),
                 retired_models: Set[str] = frozenset()) -> list[Deletion]:
    """Every unreferenced object of the snapshot, whatever its age.

    Args:
        ctx: The snapshot.
        retired_data: Data version ids being deleted in the same plan.
        retired_models: Model version ids being deleted in the same plan.

    Returns:
        Candidate deletions (the caller applies the grace period).
    """
    data = {v: m for v, m in ctx.data_manifests.items() if v not in retired_data}
    models = {v: r for v, r in ctx.model_records.items() if v not in retired_models}
    used_objects = {f"{DATA}/{m.get('object')}" for m in data.values()}
    out: list[Deletion] = []
    for key in sorted(ctx.objects):
        name = key.rsplit("/", 1)[-1]
        if name.startswith(TMP_PREFIX):
            out.append(Deletion(key, "temp-file", "temporary file of an unfinished write",
                                ctx.age(key)))
        elif key.startswith(DATA_OBJECTS):
            if key not in used_objects and not ctx.unreadable:
                out.append(Deletion(key, "data-object", "data object referenced by no manifest",
                                    ctx.age(key)))
        elif key.startswith(DATA_INDEX) or key.startswith(MODELS_INDEX):
            out.extend(_marker_orphan(ctx, key, name,
                                      data if key.startswith(DATA_INDEX) else models))
        elif key.startswith(f"{MODELS}/") and key.count("/") == 2:
            vid = key.split("/")[1]
            if name == METADATA:
                continue
            record = models.get(vid)
            if record is None and layout.under(MODELS, layout.model_metadata_key(vid)) \
                    in ctx.unreadable:
                continue
            if record is None:
                out.append(Deletion(key, "model-artifact",
                                    f"model file of '{vid}' without {METADATA}", ctx.age(key)))
            elif f"{MODELS}/{record.get('artifact')}" != key:
                out.append(Deletion(key, "model-artifact",
                                    f"model file not named by the {METADATA} of '{vid}'",
                                    ctx.age(key)))
    return out


def _marker_orphan(ctx: GcContext, key: str, name: str,
                   committed: dict[str, dict[str, Any]]) -> list[Deletion]:
    parts = _marker_parts(name)
    if parts is None:
        return []
    ts, vid = parts
    age = _marker_age(ts, ctx.now)
    doc = committed.get(vid)
    if doc is None:
        return [Deletion(key, "index-marker", f"index marker of '{vid}' without a manifest",
                         age)]
    created = _created_compact(doc)
    if created is not None and created != ts:
        return [Deletion(key, "index-marker",
                         f"duplicate index marker of '{vid}' (a writer that lost the race)",
                         age)]
    return []


def plan_gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS,
            sources: Sequence[CandidateSource] = (), now: float | None = None) -> GcPlan:
    """Plan a garbage collection of the workspace store (nothing is deleted).

    Args:
        store: The workspace root store (holding ``data/`` and ``models/``).
        grace_seconds: Keep orphans younger than this (protects in-flight writes).
        sources: Extra candidate sources (e.g. retention); see the module docstring.
        now: The planning time (default: now; for tests).

    Returns:
        The plan.
    """
    ctx = snapshot(store, grace_seconds, now)
    proposed: list[Deletion] = []
    for source in sources:
        proposed.extend(source(ctx))
    retired_data = {d.key[len(DATA_MANIFESTS):-len(".json")] for d in proposed
                    if d.key.startswith(DATA_MANIFESTS)}
    retired_models = {d.key.split("/")[1] for d in proposed
                      if d.key.startswith(f"{MODELS}/") and d.key.endswith(f"/{METADATA}")}
    protected = _protected(ctx, retired_data, retired_models)
    warnings = [f"unreadable manifest {k}: data objects are kept" for k in ctx.unreadable]

    chosen: dict[str, Deletion] = {}
    refused: list[str] = []
    for d in proposed:
        if d.key in protected:
            refused.append(d.key)
        elif d.key in ctx.objects:
            chosen.setdefault(d.key, d)
    young: list[str] = []
    retired_parts = _parts_of(ctx, retired_data, retired_models)
    for d in find_orphans(ctx, retired_data, retired_models):
        if d.key in protected or d.key in chosen:
            continue
        if d.key not in retired_parts and (d.age_seconds is None
                                           or d.age_seconds < grace_seconds):
            young.append(d.key)
            continue
        chosen[d.key] = d
    ordered = sorted(chosen.values(), key=lambda d: (_PHASE.get(d.kind, 2), d.key))
    return GcPlan(store.uri, grace_seconds, tuple(ordered), tuple(sorted(young)),
                  tuple(refused), tuple(warnings))


def _protected(ctx: GcContext, retired_data: Set[str], retired_models: Set[str]) -> set[str]:
    """Every key a committed, non-retired version references."""
    keys: set[str] = set()
    for vid, m in ctx.data_manifests.items():
        if vid in retired_data:
            continue
        keys.add(layout.under(DATA, layout.data_manifest_key(vid)))
        keys.add(layout.under(DATA, str(m.get("object"))))
        ts = _created_compact(m)
        if ts:
            keys.add(layout.under(DATA, layout.index_marker_key(layout.DATA_INDEX, ts, vid)))
    for vid, r in ctx.model_records.items():
        if vid in retired_models:
            continue
        keys.add(layout.under(MODELS, layout.model_metadata_key(vid)))
        keys.add(layout.under(MODELS, str(r.get("artifact"))))
        ts = _created_compact(r)
        if ts:
            keys.add(layout.under(MODELS, layout.index_marker_key(layout.MODEL_INDEX, ts, vid)))
    keys.update(ctx.unreadable)
    return keys


def _parts_of(ctx: GcContext, retired_data: Set[str], retired_models: Set[str]) -> set[str]:
    """Keys that belonged to retired versions (collected without a grace period)."""
    keys: set[str] = set()
    for vid in retired_data:
        m = ctx.data_manifests.get(vid, {})
        keys.add(layout.under(DATA, str(m.get("object"))))
        keys.update(k for k in ctx.objects
                    if k.startswith(DATA_INDEX) and k.endswith(f"{layout.INDEX_SEP}{vid}"))
    for vid in retired_models:
        keys.update(k for k in ctx.objects if k.startswith(f"{MODELS}/{vid}/"))
        keys.update(k for k in ctx.objects
                    if k.startswith(MODELS_INDEX) and k.endswith(f"{layout.INDEX_SEP}{vid}"))
    return keys


def apply_gc(store: Store, plan: GcPlan) -> GcPlan:
    """Delete what ``plan`` lists, in its order (commit points first).

    Args:
        store: The store the plan was made on.
        plan: From :func:`plan_gc`.

    Returns:
        The plan with ``deleted`` filled in and ``dry_run`` False.

    Raises:
        StorageError: A deletion failed after the retries (what was deleted
            before stays deleted; running gc again finishes the job).
    """
    deleted: list[str] = []
    for d in plan.deletions:
        store.delete(d.key)
        deleted.append(d.key)
        log.info("gc deleted %s (%s)", store.url(d.key), d.reason)
    return GcPlan(plan.store, plan.grace_seconds, plan.deletions, plan.young, plan.refused,
                  plan.warnings, tuple(deleted), dry_run=False)


def run_gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False,
           sources: Sequence[CandidateSource] = ()) -> GcPlan:
    """Plan, and unless ``dry_run`` apply, a garbage collection.

    Args:
        store: The workspace root store.
        grace_seconds: Keep orphans younger than this.
        dry_run: Only plan.
        sources: Extra candidate sources (e.g. retention).

    Returns:
        The plan (with ``deleted`` filled in unless ``dry_run``).

    Raises:
        BadInputError: ``grace_seconds`` is negative (nothing is deleted).
    """
    if grace_seconds < 0:
        raise BadInputError(f"grace period must be >= 0 seconds, got {grace_seconds}")
    plan = plan_gc(store, grace_seconds, sources)
    return plan if dry_run else apply_gc(store, plan)
