"""Retention: which old data and model versions to delete (a candidate source of gc).

``retention.keep_data_versions`` and ``retention.keep_models`` keep the newest N
versions of each kind (0 or null keeps all). Whatever N says, these are never
deleted (they are *protected*):

* a model version any alias points to (``production`` and others), and the model
  that serves now (:meth:`~mlops.store.workspace.Workspace.current_model_version`, which is
  the newest one on a store without aliases);
* the model and the data version the drift reference was built from;
* the data versions the protected models were trained on.

:func:`plan_retention` is pure planning (reads only); ``mlops gc --dry-run`` prints
its plan. Deleting is the deletion engine's (:mod:`mlops.store.gc`): the plan is a
candidate source (:meth:`RetentionPlan.source`) that retires versions by their
commit points, and gc's planner and executor remove each version's manifest (or
the model's metadata) first, so the version disappears in one step for every
reader, then its index marker, then the payload (a data object only when no
remaining version references the same content). A crash part-way leaves at most
an orphan marker or payload, which ``mlops gc`` cleans. :func:`apply_retention`
checks protection again before deleting, so a plan made before someone promoted
an old model does not delete it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.errors import MLOpsError
from mlops.store.gc import DATA, MODEL, Deletion, GcContext, apply_gc, plan_gc

if TYPE_CHECKING:
    from mlops.store.workspace import Workspace

@dataclass(frozen=True)
class RetentionPlan:
    """What retention would delete, and what it keeps on purpose.

    Attributes:
        data: Data versions to retire (:meth:`Deletion.version`), newest first.
        models: Model versions to retire, newest first.
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
        return {"data": [d.version_dict() for d in self.data],
                "models": [d.version_dict() for d in self.models],
                "protected": dict(self.protected)}

    def source(self, ctx: GcContext) -> tuple[Deletion, ...]:
        """The plan as a candidate source of :func:`mlops.store.gc.plan_gc`."""
        return (*self.models, *self.data)


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
                data.append(Deletion.version(DATA, vid, f"older than the newest {keep_data} data "
                                     "versions (retention.keep_data_versions)"))
    if keep_mod is not None:
        for vid in ws.registry.list_versions()[keep_mod:]:
            if f"{MODEL}:{vid}" not in protected:
                models.append(Deletion.version(MODEL, vid, f"older than the newest {keep_mod} "
                                       "model versions (retention.keep_models)"))
    return RetentionPlan(data=tuple(data), models=tuple(models), protected=protected)


def still_retired(ws: Workspace) -> Callable[[Deletion], bool]:
    """The executor's check (:func:`mlops.store.gc.apply_gc`): a version is deleted only while
    nothing protects it. Aliases are read again before and after each commit point goes,
    so a promotion racing gc never ends with an alias naming a deleted model (issue 19
    item 7; ``ModelRegistry.set_alias`` checks the other side)."""
    def check(d: Deletion) -> bool:
        return f"{d.version_kind}:{d.version_id}" not in protected_versions(ws)
    return check


def apply_retention(ws: Workspace, plan: RetentionPlan) -> RetentionResult:
    """Delete the planned versions through the deletion engine (commit points first).

    Versions protected by now (an alias moved to one since the plan was made) and
    versions already gone are skipped. Crash leftovers are not touched (``mlops gc``).

    Args:
        ws: The workspace the plan was made for.
        plan: From :func:`plan_retention`.

    Returns:
        What was deleted and skipped.
    """
    protected = protected_versions(ws)
    skipped: list[tuple[Deletion, str]] = []
    todo: list[Deletion] = []
    for d in (*plan.models, *plan.data):
        why = protected.get(f"{d.version_kind}:{d.version_id}")
        if why:
            skipped.append((d, f"protected: {why}"))
        else:
            todo.append(d)
    done = apply_gc(ws.store, plan_gc(ws.store, sources=[lambda _: todo], orphans=False),
                    still_retired(ws))
    retired = set(done.deleted)
    skipped += [(d, "protected or already gone by the time it was deleted") for d in todo
                if d.key not in retired]
    return RetentionResult(deleted=tuple(d for d in todo if d.key in retired),
                           skipped=tuple(skipped), deleted_keys=done.deleted)
