"""The input schema a model was trained on, and how a new batch differs from it.

Each saved model records its :class:`InputSchema`: the target, the task and, per
feature, its name, dtype, kind (``numeric``, ``bool``, ``categorical``) and the
categories seen in training. monitor-check compares each batch with the serving
model's schema before scoring it (:func:`compare`):

* the same columns in another order are not a change (the batch is reordered);
* an added column, a missing column, a column whose kind changed (numbers that
  became strings...) or a target whose task changed is a schema change, named in
  the result. A dtype change within a kind (``int64`` -> ``float64``, as a missing
  value causes) is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops.data import CATEGORICAL, feature_kinds
from mlops.drift import category_counts

#: At most this many categories per feature are recorded (the most frequent ones).
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class ColumnSchema:
    """One feature column of a schema.

    Attributes:
        name: Column name.
        dtype: The pandas dtype in training (e.g. ``float64``, ``object``).
        kind: ``numeric``, ``bool`` or ``categorical``.
        categories: Categorical features: the categories seen in training (the
            :data:`MAX_CATEGORIES` most frequent, sorted); empty otherwise.
        categories_truncated: More categories were seen than are recorded.
    """

    name: str
    dtype: str
    kind: str
    categories: tuple[str, ...] = ()
    categories_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "kind": self.kind}
        if self.kind == CATEGORICAL:
            d["categories"] = list(self.categories)
            d["categories_truncated"] = self.categories_truncated
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), kind=str(data["kind"]),
                   categories=tuple(str(c) for c in data.get("categories", ())),
                   categories_truncated=bool(data.get("categories_truncated", False)))


@dataclass(frozen=True)
class InputSchema:
    """What a model was trained on.

    Attributes:
        target: The target column.
        task: ``classification`` or ``regression``.
        features: The feature columns in training order.
    """

    target: str
    task: str
    features: tuple[ColumnSchema, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        """Feature names in training order."""
        return [c.name for c in self.features]

    @property
    def kinds(self) -> dict[str, str]:
        """Feature name -> kind."""
        return {c.name: c.kind for c in self.features}

    @classmethod
    def from_frame(cls, df: pd.DataFrame, target: str, task: str,
                   kinds: Mapping[str, str] | None = None) -> InputSchema:
        """The schema of a training frame (``df`` with or without its target column)."""
        kinds = dict(kinds) if kinds is not None else feature_kinds(df, target)
        cols = []
        for name, kind in kinds.items():
            s = df[name]
            cats: tuple[str, ...] = ()
            truncated = False
            if kind == CATEGORICAL:
                counts = category_counts(s)
                truncated = len(counts) > MAX_CATEGORIES
                cats = tuple(sorted(counts.index[:MAX_CATEGORIES]))
            cols.append(ColumnSchema(name, str(s.dtype), kind, cats, truncated))
        return cls(target=target, task=task, features=tuple(cols))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"target": self.target, "task": self.task,
                "features": [c.to_dict() for c in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(target=str(data["target"]), task=str(data["task"]),
                   features=tuple(ColumnSchema.from_dict(c) for c in data.get("features", ())))


@dataclass(frozen=True)
class SchemaChange:
    """How a batch differs from a model's schema (empty when it does not).

    Attributes:
        added: Columns in the batch the model was not trained on.
        missing: Columns the model needs that the batch lacks.
        retyped: ``(column, kind in training, kind now)`` for columns whose kind changed.
        task: ``(task in training, task now)`` when the target's task changed, else None.
    """

    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()
    task: tuple[str, str] | None = None

    @property
    def changed(self) -> bool:
        """Whether anything differs."""
        return bool(self.added or self.missing or self.retyped or self.task)

    @property
    def columns(self) -> list[str]:
        """Every column named by the change."""
        return [*self.added, *self.missing, *(r[0] for r in self.retyped)]

    def describe(self) -> str:
        """One line naming what changed (empty when nothing did)."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(f"'{c}'" for c in self.added))
        if self.missing:
            parts.append("missing " + ", ".join(f"'{c}'" for c in self.missing))
        if self.retyped:
            parts.append("retyped " + ", ".join(f"'{c}' ({a} -> {b})"
                                                for c, a, b in self.retyped))
        if self.task:
            parts.append(f"target task {self.task[0]} -> {self.task[1]}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"added": list(self.added), "missing": list(self.missing),
                "retyped": [{"column": c, "was": a, "now": b} for c, a, b in self.retyped],
                "task": None if self.task is None else list(self.task)}


def compare(schema: InputSchema, df: pd.DataFrame, task: str | None = None) -> SchemaChange:
    """How ``df`` (a batch, with or without the target) differs from ``schema``.

    Column order is ignored; a dtype change within a kind is not a change.

    Args:
        schema: The serving model's schema.
        df: The batch.
        task: The batch's task as ingest decided it (None: not compared).

    Returns:
        The change (``changed`` is False when the batch fits the schema).
    """
    now = feature_kinds(df, schema.target)
    was = schema.kinds
    added = tuple(c for c in now if c not in was)
    missing = tuple(c for c in was if c not in now)
    retyped = tuple((c, k, now[c]) for c, k in was.items() if c in now and now[c] != k)
    changed_task = (schema.task, task) if task is not None and task != schema.task else None
    return SchemaChange(added=added, missing=missing, retyped=retyped, task=changed_task)


__all__ = ["MAX_CATEGORIES", "ColumnSchema", "InputSchema", "SchemaChange", "compare"]
