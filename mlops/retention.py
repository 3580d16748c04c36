"""Retention: which old data and model versions to delete, and deleting them safely.

``retention.keep_data_versions`` and ``retention.keep_models`` keep the newest N
versions of each kind (0 or null keeps all). Whatever N says, these are never
deleted (they are *protected*):

* a model version any alias points to (``production`` and others), and the model
  that serves now (:meth:`~mlops.workspace.Workspace.current_model_version`, which is
  the newest one on a store without aliases);
* the model and the data version the drift reference was built from;
* the data versions the protected models were trained on.

:func:`plan_retention` is pure planning (reads only); ``mlops gc --dry-run`` prints
its plan. :func:`apply_retention` deletes, per version: the manifest (or the model's
metadata) first, so the version disappears in one step for every reader; then its
index marker; then the payload (a data object only when no remaining version
references the same content). A crash part-way leaves at most an orphan marker or
payload, which ``mlops gc`` cleans. Protection is checked again when applying, so a
plan made before someone promoted an old model does not delete it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops import layout
from mlops.errors import MLOpsError

if TYPE_CHECKING:
    from mlops.workspace import Workspace

DATA = "data"
MODEL = "model"


@dataclass(frozen=True)
class Deletion:
    """One version to delete.

    Attributes:
        kind: ``data`` or ``model``.
        version_id: The version.
        reason: Why it goes (names the config key).
    """

    kind: str
    version_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"kind": self.kind, "version_id": self.version_id, "reason": self.reason}


@dataclass(frozen=True)
class RetentionPlan:
    """What retention would delete, and what it keeps on purpose.

    Attributes:
        data: Data versions to delete, newest first.
        models: Model versions to delete, newest first.
        protected: ``"<kind>:<id>" -> why`` of versions kept whatever the limits say.
    """

    data: tuple[Deletion, ...] = ()
    models: tuple[Deletion, ...] = ()
    protected: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when nothing would be deleted."""
        return not self.data and not self.models

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``mlops gc --dry-run --json``)."""
        return {"data": [d.to_dict() for d in self.data],
                "models": [d.to_dict() for d in self.models],
                "protected": dict(self.protected)}


@dataclass(frozen=True)
class RetentionResult:
    """What :func:`apply_retention` did.

    Attributes:
        deleted: The deletions carried out.
        skipped: Deletions not carried out, with why (protected by now, already gone).
        deleted_keys: Store keys removed, relative to the store root.
    """

    deleted: tuple[Deletion, ...]
    skipped: tuple[tuple[Deletion, str], ...]
    deleted_keys: tuple[str, ...]


def _keep(value: int | None) -> int | None:
    return value if value else None  # 0 or None: keep all


def protected_versions(ws: Workspace) -> dict[str, str]:
    """``"<kind>:<id>" -> why`` of every version retention must keep."""
    out: dict[str, str] = {}
    models: dict[str, str] = {}
    for alias, version in ws.registry.aliases().items():
        if version:
            models.setdefault(version, f"alias '{alias}' points to it")
    serving = ws.current_model_version()
    if serving:
        models.setdefault(serving, "it is the model that serves")
    reference = ws.monitor.get_reference() or {}
    if reference.get("model_version"):
        models.setdefault(str(reference["model_version"]), "the drift reference came from it")
    if reference.get("data_version"):
        out[f"{DATA}:{reference['data_version']}"] = "the drift reference was built from it"
    for vid, why in models.items():
        out[f"{MODEL}:{vid}"] = why
        try:
            trained_on = ws.registry.get_metadata(vid).get("metadata", {}).get("data_version")
        except MLOpsError:  # a missing record protects nothing more
            trained_on = None
        if trained_on:
            out.setdefault(f"{DATA}:{trained_on}", f"protected model {vid} was trained on it")
    return out


def plan_retention(ws: Workspace, keep_data_versions: int | None = None,
                   keep_models: int | None = None) -> RetentionPlan:
    """The versions that retention would delete (reads only).

    Args:
        ws: The workspace.
        keep_data_versions: Newest data versions to keep (default
            ``retention.keep_data_versions``; 0 or None keeps all).
        keep_models: Newest model versions to keep (default ``retention.keep_models``).

    Returns:
        The plan.
    """
    cfg = ws.config.retention
    keep_data = _keep(cfg.keep_data_versions if keep_data_versions is None
                      else keep_data_versions)
    keep_mod = _keep(cfg.keep_models if keep_models is None else keep_models)
    protected = protected_versions(ws)
    data: list[Deletion] = []
    models: list[Deletion] = []
    if keep_data is not None:
        for vid in ws.versioner.list_versions()[keep_data:]:
            if f"{DATA}:{vid}" not in protected:
                data.append(Deletion(DATA, vid, f"older than the newest {keep_data} data "
                                     "versions (retention.keep_data_versions)"))
    if keep_mod is not None:
        for vid in ws.registry.list_versions()[keep_mod:]:
            if f"{MODEL}:{vid}" not in protected:
                models.append(Deletion(MODEL, vid, f"older than the newest {keep_mod} "
                                       "model versions (retention.keep_models)"))
    return RetentionPlan(data=tuple(data), models=tuple(models), protected=protected)


def apply_retention(ws: Workspace, plan: RetentionPlan) -> RetentionResult:
    """Delete the planned versions: manifest first, then index marker, then payload.

    Versions protected by now (an alias moved to one since the plan was made) and
    versions already gone are skipped.

    Args:
        ws: The workspace the plan was made for.
        plan: From :func:`plan_retention`.

    Returns:
        What was deleted and skipped.
    """
    protected = protected_versions(ws)
    deleted: list[Deletion] = []
    skipped: list[tuple[Deletion, str]] = []
    keys: list[str] = []
    for d in (*plan.models, *plan.data):
        why = protected.get(f"{d.kind}:{d.version_id}")
        if why:
            skipped.append((d, f"protected: {why}"))
            continue
        removed = _delete_model(ws, d.version_id) if d.kind == MODEL \
            else _delete_data(ws, d.version_id)
        if removed is None:
            skipped.append((d, "already gone"))
            continue
        deleted.append(d)
        keys.extend(removed)
    return RetentionResult(deleted=tuple(deleted), skipped=tuple(skipped),
                           deleted_keys=tuple(keys))


def _delete_data(ws: Workspace, vid: str) -> list[str] | None:
    versioner = ws.versioner
    if not versioner.exists(vid):
        return None
    obj = versioner.get_metadata(vid)["object"]
    manifest = versioner.manifest_key(vid)
    versioner.store.delete(manifest)  # the commit point: the version is gone for readers
    removed = [layout.under(layout.DATA, manifest)]
    for marker, marker_id in versioner.index.entries():
        if marker_id == vid:
            versioner.store.delete(marker)
            removed.append(layout.under(layout.DATA, marker))
    if not any(m.object == obj for m in versioner.list_records()):
        versioner.store.delete(obj)
        removed.append(layout.under(layout.DATA, obj))
    return removed


def _delete_model(ws: Workspace, vid: str) -> list[str] | None:
    registry = ws.registry
    if not registry.exists(vid):
        return None
    meta_key = registry.metadata_key(vid)
    registry.store.delete(meta_key)  # the commit point
    removed = [layout.under(layout.MODELS, meta_key)]
    for marker, marker_id in registry.index.entries():
        if marker_id == vid:
            registry.store.delete(marker)
            removed.append(layout.under(layout.MODELS, marker))
    for key in registry.store.walk(vid):
        registry.store.delete(key)
        removed.append(layout.under(layout.MODELS, key))
    return removed
