"""Every cross-reference in the docstrings and docs names something that exists.

Moves and renames leave references behind (``:func:`connect``` for ``load_target``,
``mlops.pipeline.summarize`` after it moved to the runner). This test resolves each one
to a real object, so they stay true:

- in the docstrings (and ``#:`` attribute comments) of ``mlops/``, ``jobs/`` and ``src/``:
  every Sphinx role (``:func:``, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``,
  ``:attr:``, ``:exc:``), qualified (``mlops.x.y``, ``~mlops.x.y``) or not (then it is
  looked up in the enclosing class, the module and the builtins, as Sphinx does), and every
  ``mlops.x.y`` written as a literal;
- in ``README.md`` and ``docs/*.md``: every ``mlops.x.y`` inside backticks, and every
  ``mlops/...`` path to a Python module or package.

It imports each module once and reads the sources with :mod:`ast`: a second or so.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlops", "jobs", "src")
ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|exc|obj):`([^`<]+?)`")
# A dotted name below mlops (not part of a longer dotted name such as io.mlops.x).
DOTTED = re.compile(r"(?<![\w.\-/])mlops(?:\.[A-Za-z_]\w*)+")
# Inside backticks in Markdown: `mlops.x.y`, `mlops.x.y(...)`, ``:func:`mlops.x` ``.
CODE_SPAN = re.compile(r"`+([^`]+)`+")
# A module (mlops/x.py) or package (mlops/x/) path; not a label key such as mlops/step.
MODULE_PATH = re.compile(r"(?<![\w.\-/])mlops/(?:\w+/)*(?:\w+\.py\b|(?<=/))")
# Dotted names that are not Python: Helm template names, file names.
_FILE_SUFFIX = re.compile(r"\.(tar|gz|tgz|ya?ml|json|txt|md|toml|ini|log|html|png|csv)$")


def _helm_templates() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "helm").rglob("*.tpl"):
        names.update(re.findall(r'define\s+"(mlops\.[\w.]+)"', path.read_text()))
    return names


def _is_python_name(name: str, helm: set[str]) -> bool:
    return name not in helm and not _FILE_SUFFIX.search(name)


def resolve(name: str) -> Any:
    """The object a fully qualified name (``mlops.x.y.z``) names.

    Raises:
        LookupError: Naming the first part that does not exist.
    """
    parts = name.split(".")
    obj: Any = None
    for i in range(len(parts), 0, -1):  # the longest importable module prefix
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name is None or not ".".join(parts[:i]).startswith(err.name):
                raise  # the module exists but one of its imports does not: a real error
            continue
        rest = parts[i:]
        break
    else:
        raise LookupError(f"no module {parts[0]}")
    for j, part in enumerate(rest):
        obj = _member(obj, part)
        if obj is _MISSING:
            raise LookupError(f"{'.'.join(parts[:len(parts) - len(rest) + j])} has no "
                              f"{part!r}")
    return obj


_MISSING = object()


def _member(obj: Any, name: str) -> Any:
    """An attribute, or a dataclass field / annotated attribute of a class (which exist on
    instances only)."""
    value = getattr(obj, name, _MISSING)
    if value is not _MISSING:
        return value
    if isinstance(obj, type):
        if dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}:
            return None
        for klass in obj.__mro__:
            if name in getattr(klass, "__annotations__", {}):
                return None
    return _MISSING


@dataclasses.dataclass(frozen=True)
class Ref:
    """One reference and where it was written."""

    where: str
    text: str
    module: str | None = None  # the module whose docstring holds it (unqualified roles)
    scope: tuple[str, ...] = ()  # the enclosing classes, outermost first


def _docstrings(tree: ast.Module) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """(docstring, line, enclosing class names) of the module and each class/function."""
    def walk(node: ast.AST, scope: tuple[str, ...]) -> Iterator[tuple[str, int, tuple[str, ...]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = (*scope, child.name) if isinstance(child, ast.ClassDef) else scope
                doc = ast.get_docstring(child, clean=False)
                if doc:
                    yield doc, child.lineno, inner
                yield from walk(child, inner)
    doc = ast.get_docstring(tree, clean=False)
    if doc:
        yield doc, 1, ()
    yield from walk(tree, ())


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_refs() -> list[Ref]:
    """Every reference in the docstrings and ``#:`` comments of the packages."""
    helm = _helm_templates()
    refs: list[Ref] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            module = _module_name(path)
            rel = path.relative_to(ROOT)
            chunks = [(doc, line, scope) for doc, line, scope in _docstrings(ast.parse(text))]
            chunks += [(m.group(1), text.count("\n", 0, m.start()) + 1, ())
                       for m in re.finditer(r"^\s*#:(.*)$", text, re.M)]
            for doc, line, scope in chunks:
                refs += docstring_refs(doc, f"{rel}:{line}", module, scope, helm)
    return refs


def docstring_refs(doc: str, where: str, module: str, scope: tuple[str, ...] = (),
                   helm: frozenset[str] | set[str] = frozenset()) -> list[Ref]:
    """The references of one docstring: its roles, then the dotted names outside them."""
    refs = []
    for m in ROLE.finditer(doc):
        target = re.sub(r"\s+", "", m.group(2)).lstrip("~.").rstrip("()")
        refs.append(Ref(where, target, module, scope))
    for m in DOTTED.finditer(ROLE.sub("", doc)):
        if _is_python_name(m.group(0), helm):
            refs.append(Ref(where, m.group(0)))
    return refs


def markdown_refs() -> list[Ref]:
    """Every ``mlops.x.y`` in backticks and ``mlops/...`` module path in the docs."""
    helm = _helm_templates()
    refs: list[Ref] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            for span in CODE_SPAN.finditer(line):
                for m in DOTTED.finditer(span.group(1)):
                    if _is_python_name(m.group(0), helm):
                        refs.append(Ref(where, m.group(0)))
            for m in MODULE_PATH.finditer(line):
                refs.append(Ref(where, m.group(0)))
    return refs


def problem(ref: Ref) -> str | None:
    """Why ``ref`` does not resolve (None when it does)."""
    if "/" in ref.text:  # a module path in the docs
        path = ROOT / ref.text
        if path.exists() or path.with_suffix(".py").exists():
            return None
        return f"{ref.where}: {ref.text} does not exist"
    try:
        if ref.module is None or ref.text.split(".")[0] in PACKAGES:
            resolve(ref.text)
        else:
            _resolve_in(ref)
    except LookupError as err:
        return f"{ref.where}: {ref.text}: {err}"
    return None


def _resolve_in(ref: Ref) -> Any:
    """An unqualified role target, looked up as Sphinx does: the enclosing classes
    (innermost first), the module, the builtins."""
    assert ref.module is not None
    module = importlib.import_module(ref.module)
    first, *rest = ref.text.split(".")
    candidates = []
    for i in range(len(ref.scope), 0, -1):
        candidates.append(resolve(".".join([ref.module, *ref.scope[:i]])))
    candidates += [module, builtins]
    for owner in candidates:
        obj = _member(owner, first)
        if obj is not _MISSING:
            for part in rest:
                obj = _member(obj, part) if obj is not None else None
                if obj is _MISSING:
                    raise LookupError(f"{first} has no {part!r}")
            return obj
    try:  # a name outside the module, written in full (sklearn.pipeline.Pipeline)
        return resolve(ref.text)
    except (LookupError, ModuleNotFoundError):
        raise LookupError(f"{first!r} is not defined in {ref.module}") from None


def test_every_reference_in_docstrings_resolves() -> None:
    refs = source_refs()
    assert len(refs) > 200  # the scan sees the references (not an empty pass)
    problems = [p for p in map(problem, refs) if p]
    assert not problems, "stale references:\n" + "\n".join(problems)


def test_every_reference_in_the_docs_resolves() -> None:
    refs = markdown_refs()
    assert len(refs) > 20
    problems = [p for p in map(problem, refs) if p]
    assert not problems, "stale references:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, stale", [
    (":func:`connect`", True),                      # k8s.py before: it was load_target
    (":func:`load_target`", False),
    ("``mlops.pipeline.summarize``", True),         # moved to the runner
    ("``mlops.runner.summarize``", False),
    (":class:`~mlops.config.Config`", False),
    (":meth:`KubeClient.create_job`", False),
    (":mod:`mlops.no_such_module`", True),
    (":attr:`mlops.config.Config.storage`", False),  # a dataclass field
    ("see :mod:`mlops.kube.client` and ``mlops.runner.finish_run``", None),  # two, both fine
    (":func:`mlops.runner.\n    finish_run`", False),  # wrapped over two lines
])
def test_a_stale_reference_is_reported(text: str, stale: bool | None) -> None:
    refs = docstring_refs(text, "x", "mlops.kube.client")
    assert len(refs) == (2 if stale is None else 1)
    assert [problem(r) is not None for r in refs] == [bool(stale)] * len(refs)
