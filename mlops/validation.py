"""The ``validation:`` section: rules a batch must meet at ingest, before anything is stored.

The rules of one column (``min``, ``max``, ``allowed``, ``unique``) and the presence of
every column a rule names are checked by pandera (``pandera.pandas``: a
``DataFrameSchema`` validated lazily, so every failure is counted, not only the first);
the shares of missing values (``max_missing``) and ``min_rows`` are counted here, because
they are shares of the whole batch.

Both engines use the same two functions:

* :func:`summarize_rules` on one frame (the whole batch on pandas; on Dask one source
  file, in a task of its own before any partition is written: pandera's Dask integration
  is this same pandas validation mapped over the partitions) returns mergeable counts;
* :func:`violations` merges them and names what breaks. On Dask a value of a ``unique``
  column found in two partitions is caught from the partitions' value hashes.

:func:`check` raises :class:`ValidationFailedError` with one line: the first violation
(the column, the rule and how many rows break it) and how many more there are.

pandera is imported only when the section has rules.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import ValidationConfig
from mlops.errors import ValidationFailedError

#: The first words of every validation failure's message (the controller reads a step's
#: one-line error from its pod log and tells a validation failure by them).
PREFIX = "validation failed:"


@dataclass(frozen=True)
class Violation:
    """One rule broken: ``column`` (None for ``min_rows``), ``rule`` (``min=18``...), and
    ``rows``: how many rows break it, of ``total``."""

    column: str | None
    rule: str
    rows: int
    total: int

    def describe(self) -> str:
        """``column 'age' breaks min=18 in 12 of 569 rows``."""
        if self.column is None:
            return f"{self.rule}: the batch has {self.total} rows"
        if self.rule == "present":
            return f"column '{self.column}' named by validation.columns is missing"
        return f"column '{self.column}' breaks {self.rule} in {self.rows} of {self.total} rows"


def active(settings: ValidationConfig) -> bool:
    """Whether the section has any rule."""
    return bool(settings.min_rows or settings.max_missing is not None or settings.columns)


def _rule_name(check: str, rules: Mapping[str, Any]) -> str:
    if check.startswith("greater_than_or_equal_to"):
        return f"min={rules['min']}"
    if check.startswith("less_than_or_equal_to"):
        return f"max={rules['max']}"
    if check.startswith("isin"):
        return "allowed"
    if check == "field_uniqueness":
        return "unique"
    return check


def _schema(settings: ValidationConfig) -> Any:
    import pandera.pandas as pa

    columns = {}
    for name, rules in settings.columns.items():
        checks = []
        if "min" in rules:
            checks.append(pa.Check.ge(rules["min"]))
        if "max" in rules:
            checks.append(pa.Check.le(rules["max"]))
        if "allowed" in rules:
            checks.append(pa.Check.isin(list(rules["allowed"])))
        columns[str(name)] = pa.Column(checks=checks, nullable=True,
                                       unique=bool(rules.get("unique", False)), coerce=False,
                                       required=True)
    return pa.DataFrameSchema(columns, strict=False)


def _value_hashes(values: pd.Series) -> np.ndarray:
    present = values.dropna()
    return pd.util.hash_pandas_object(present, index=False).to_numpy(dtype=np.uint64)


def summarize_rules(df: pd.DataFrame, settings: ValidationConfig) -> dict[str, Any]:
    """Mergeable counts of ``df`` against the rules (plain data; see :func:`violations`).

    Returns:
        ``{"rows", "failures": {column: {rule: rows}}, "absent": [columns], "missing":
        {column: rows}, "unique": {column: sorted value hashes}}``.
    """
    failures: dict[str, dict[str, int]] = {}
    absent: list[str] = []
    if settings.columns:
        from pandera.errors import SchemaErrors

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandera's own deprecation chatter
                # inplace: no copy of the batch (coerce is off: nothing is changed)
                _schema(settings).validate(df, lazy=True, inplace=True)
        except SchemaErrors as err:
            cases = err.failure_cases
            for (column, check), group in cases.groupby(["column", "check"], dropna=False,
                                                       sort=False):
                if check == "column_in_dataframe":
                    absent.extend(str(v) for v in group["failure_case"])
                    continue
                rules = settings.columns.get(str(column), {})
                rows = int(group["index"].nunique()) if "index" in group else len(group)
                name = _rule_name(str(check), rules)
                failures.setdefault(str(column), {})[name] = rows
    missing = {str(c): int(n) for c, n in df.isna().sum().items()}
    unique = {str(c): np.sort(_value_hashes(df[c])) for c, r in settings.columns.items()
              if r.get("unique") and c in df.columns}
    return {"rows": len(df), "failures": failures, "absent": sorted(set(absent)),
            "missing": missing, "unique": unique}


def violations(parts: Iterable[Mapping[str, Any]], settings: ValidationConfig
               ) -> list[Violation]:
    """Every rule broken by the merged partition summaries, in a stable order: columns
    missing, ``min_rows``, then per column (in the section's order) its rules."""
    parts = list(parts)
    total = sum(int(p["rows"]) for p in parts)
    out: list[Violation] = []
    absent = sorted({c for p in parts for c in p["absent"]})
    out.extend(Violation(c, "present", total, total) for c in absent)
    if settings.min_rows and total < settings.min_rows:
        out.append(Violation(None, f"validation.min_rows={settings.min_rows}", total, total))
    failures: dict[str, dict[str, int]] = {}
    for p in parts:
        for column, rules in p["failures"].items():
            for rule, rows in rules.items():
                failures.setdefault(column, {})[rule] = \
                    failures.get(column, {}).get(rule, 0) + int(rows)
    if len(parts) > 1:  # a value repeated across partitions: from the value hashes
        for column in {c for p in parts for c in p["unique"]}:
            values = np.concatenate([p["unique"][column] for p in parts if column in p["unique"]])
            ordered = np.sort(values)
            same = ordered[1:] == ordered[:-1]
            twice = np.zeros(len(ordered), dtype=bool)
            twice[1:] |= same
            twice[:-1] |= same
            repeated = int(twice.sum())  # rows whose value another row has too
            failures.setdefault(column, {}).pop("unique", None)
            if repeated:
                failures[column]["unique"] = repeated
    missing: dict[str, int] = {}
    for p in parts:
        for column, n in p["missing"].items():
            missing[column] = missing.get(column, 0) + int(n)
    order = [str(c) for c in settings.columns] + sorted(
        c for c in set(failures) | set(missing) if c not in settings.columns)
    for column in order:
        if column in absent:
            continue
        rules = settings.columns.get(column, {})
        for rule, rows in failures.get(column, {}).items():
            if rows:
                out.append(Violation(column, rule, rows, total))
        limit = rules.get("max_missing", settings.max_missing)
        n = missing.get(column, 0)
        if limit is not None and total and n / total > limit:
            out.append(Violation(column, f"max_missing={limit:g} ({n / total:.1%} missing)",
                                 n, total))
    return out


def check(df: pd.DataFrame, settings: ValidationConfig, source: str) -> None:
    """Validate a whole batch (the pandas engine).

    Raises:
        ValidationFailedError: A rule is broken (exit 2; one line naming the column, the
            rule and the rows that break it).
    """
    if active(settings):
        raise_for(violations([summarize_rules(df, settings)], settings), source)


def raise_for(found: Sequence[Violation], source: str) -> None:
    """Raise :class:`ValidationFailedError` for ``found`` (nothing when it is empty)."""
    if not found:
        return
    more = f" (and {len(found) - 1} more: " + ", ".join(
        f"{v.column or 'batch'} {v.rule.split(' ')[0]}" for v in found[1:4]) + \
        (", ..." if len(found) > 4 else "") + ")" if len(found) > 1 else ""
    raise ValidationFailedError(f"{PREFIX} {found[0].describe()} in {source}{more}; nothing "
                                "was stored")


__all__ = ["PREFIX", "Violation", "active", "check", "raise_for", "summarize_rules",
           "violations"]
