"""Label and field selectors, parsed and matched like the real API server does."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tests.fakes.kube.model import FIELDS, JSON, LABEL_NAME, LABEL_VALUE, bad_request_error


class _Requirement(NamedTuple):
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...]


def _split_selector(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[_Requirement]:
    """Parse a label selector (``a=b,c!=d,e in (f,g),h notin (i),j,!k``)."""
    reqs: list[_Requirement] = []
    for term in _split_selector(text):
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\(([^)]*)\)", term)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            key, op = m.group(1), m.group(2)
            if not values:
                raise bad_request_error(
                    f"unable to parse requirement: for '{op}' operator, values set can't be empty"
                )
        elif "!=" in term:
            key, _, value = term.partition("!=")
            op, values = "!=", (value.strip(),)
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            op, values = "=", (value.strip(),)
        elif term.startswith("!"):
            key, op, values = term[1:], "!", ()
        else:
            key, op, values = term, "exists", ()
        key = key.strip()
        if not LABEL_NAME.match(key.rsplit("/", 1)[-1]) or any(
            not LABEL_VALUE.match(v) for v in values
        ):
            raise bad_request_error(
                f"unable to parse requirement: invalid label selector: {term!r}")
        reqs.append(_Requirement(key, op, values))
    return reqs


def _labels_match(labels: Mapping[str, str], reqs: Sequence[_Requirement]) -> bool:
    for r in reqs:
        present = r.key in labels
        value = labels.get(r.key)
        if r.op == "=" and value != r.values[0]:
            return False
        if r.op == "!=" and present and value == r.values[0]:
            return False
        if r.op == "in" and value not in r.values:
            return False
        if r.op == "notin" and present and value in r.values:
            return False
        if r.op == "exists" and not present:
            return False
        if r.op == "!" and present:
            return False
    return True


def _parse_field_selector(resource: str, text: str) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    for term in _split_selector(text):
        if "!=" in term:
            field, _, value = term.partition("!=")
            equal = False
        elif "=" in term:
            field, _, value = term.replace("==", "=", 1).partition("=")
            equal = True
        else:
            raise bad_request_error(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in FIELDS[resource]:
            raise bad_request_error(
                f'"{field}" is not a known field selector: only "'
                + '", "'.join(sorted(FIELDS[resource]))
                + '"'
            )
        out.append((field, equal, value.strip()))
    return out


def _field_value(obj: JSON, field: str) -> str:
    if field == "status.successful":
        return str(obj.get("status", {}).get("succeeded", 0))
    cur: Any = obj
    for part in field.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


class Selector:
    """A list/watch request's label and field selectors."""
    def __init__(self, resource: str, labels: str | None, fields: str | None) -> None:
        self.labels = parse_label_selector(labels or "")
        self.fields = _parse_field_selector(resource, fields or "")

    def matches(self, obj: JSON | None) -> bool:
        """Whether ``obj`` (None: absent) matches both selectors."""
        if obj is None:
            return False
        if not _labels_match(obj.get("metadata", {}).get("labels") or {}, self.labels):
            return False
        return all((_field_value(obj, f) == v) == eq for f, eq, v in self.fields)


