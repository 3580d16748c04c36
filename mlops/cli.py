"""The ``mlops`` command line: the only module that prints.

Exit codes: 0 success, 1 a failure that a retry may fix, 2 bad input or
configuration. A failure prints one line on stderr (``--debug`` adds the
traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from mlops import __version__
from mlops.config import Config, load_config
from mlops.errors import EXIT_OK, EXIT_RETRY, MLOpsError
from mlops.logconf import setup_logging

log = logging.getLogger("mlops.cli")

Handler = Callable[[argparse.Namespace], int]


# --- output ------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def print_mapping(data: dict[str, Any], as_json: bool) -> None:
    """Print ``key: value`` lines, or JSON."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        print(f"{key + ':':<{width + 1}} {_fmt(value)}")


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool,
                empty: str) -> None:
    """Print rows as an aligned table, or JSON."""
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    if not rows:
        print(empty)
        return
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# --- commands ----------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    setup_logging("DEBUG" if args.debug else cfg.logging.level, cfg.logging.file)
    return cfg


def _workspace(args: argparse.Namespace) -> Any:
    from mlops.pipeline import Workspace

    return Workspace.open(_config(args))


def cmd_run(args: argparse.Namespace) -> int:
    """Run the whole pipeline in this process."""
    from mlops.pipeline import run_pipeline

    summary = run_pipeline(_config(args), run_id=args.run_id)
    print_mapping(summary, args.json)
    return EXIT_OK


def cmd_step(args: argparse.Namespace) -> int:
    """Run one step."""
    from mlops.pipeline import run_step

    cfg = _config(args)
    result = run_step(args.command, cfg, args.run_id)
    print_mapping(result.to_dict(), args.json)
    return EXIT_OK


def cmd_versions(args: argparse.Namespace) -> int:
    """List data or model versions."""
    ws = _workspace(args)
    if args.kind == "data":
        rows = ws.versioner.list_versions(limit=args.limit)
        print_table(rows, ["id", "created_at", "rows", "size_bytes", "hash_algorithm"],
                    args.json, "no data versions yet")
    else:
        rows = ws.registry.list_versions(limit=args.limit)
        for r in rows:
            meta = r.get("metadata", {})
            r.setdefault("accuracy", meta.get("accuracy"))
            r.setdefault("data_version", meta.get("data_version"))
            r.setdefault("model_type", meta.get("model_type"))
        print_table(rows, ["id", "created_at", "model_type", "accuracy", "data_version"],
                    args.json, "no model versions yet")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    """Show the metrics history, oldest first."""
    ws = _workspace(args)
    rows = ws.monitor.get_history(limit=args.limit)
    print_table(rows, ["timestamp", "run_id", "accuracy", "retrained", "drift",
                       "model_version", "data_version"], args.json, "no metrics recorded yet")
    return EXIT_OK


def cmd_storage_check(args: argparse.Namespace) -> int:
    """Write, read back and delete a probe object in the store."""
    import uuid

    ws = _workspace(args)
    key = f"_probe/{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    ws.store.write_bytes(key, payload)
    try:
        if ws.store.read_bytes(key) != payload:
            raise MLOpsError(f"probe object {ws.store.url(key)} read back different bytes")
    finally:
        ws.store.delete(key)
    print(f"store {ws.store.uri} is reachable and writable")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove objects that no committed version references (crash leftovers)."""
    from mlops.gc import run_gc

    ws = _workspace(args)
    plan = run_gc(ws.store, grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for d in plan.deletions:
        print(f"{verb} {d.key}  ({d.reason})")
    for w in plan.warnings:
        print(f"warning: {w}")
    print(f"{verb} {len(plan.deletions)} object(s); kept {len(plan.young)} younger than "
          f"{plan.grace_seconds:g}s kept; store {plan.store}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML config file (default: the embedded default: synthetic data, "
                        "store ./mlops-data; MLOPS_STORAGE_URI overrides storage.uri)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Keep a classifier fresh: ingest -> monitor-check -> train (when needed).",
        epilog="Exit codes: 0 success, 1 failure a retry may fix, 2 bad input or config.")
    parser.add_argument("--version", action="version", version=f"mlops {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback on failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the whole pipeline once in this process",
                       description="Run ingest, monitor-check and (when needed) train in one "
                                   "process and print the run summary.")
    _common(p)
    p.add_argument("--run-id", help="run id (default: a fresh UTC timestamp id)")
    p.set_defaults(handler=cmd_run)

    step_help = {
        "ingest": "load, validate and register the source as a data version",
        "monitor-check": "evaluate the current model on the run's data and decide on a retrain",
        "train": "train on the run's data version and save the model",
    }
    for step, text in step_help.items():
        p = sub.add_parser(step, help=text, description=f"One pipeline step: {text}. Its "
                           "result is written to runs/<run-id>/" + step + ".json.")
        _common(p)
        p.add_argument("--run-id", required=True, help="the run this step belongs to")
        p.set_defaults(handler=cmd_step)

    p = sub.add_parser("versions", help="list stored data or model versions, newest first")
    p.add_argument("kind", choices=["data", "models"], help="what to list")
    _common(p)
    p.add_argument("--limit", type=int, default=None, help="show at most N versions")
    p.set_defaults(handler=cmd_versions)

    p = sub.add_parser("history", help="show the metrics history, oldest first")
    _common(p)
    p.add_argument("--limit", type=int, default=None, help="show the last N records")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("storage-check", help="check that the store is reachable and writable",
                       description="Write, read back and delete a probe object (used by the "
                                   "Helm chart's test hook).")
    _common(p, json_flag=False)
    p.set_defaults(handler=cmd_storage_check)

    p = sub.add_parser("gc", help="remove objects no committed version references",
                       description="Find and remove what a crashed writer left behind: data "
                                   "objects no manifest references, index markers without a "
                                   "manifest, model files without metadata.json, .tmp-* files. "
                                   "Never touches a committed version.")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--grace-seconds", type=float, default=3600.0, metavar="N",
                   help="keep orphans younger than N seconds: they may be in-flight writes "
                        "(default: 3600)")
    p.set_defaults(handler=cmd_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlops`` console script.

    Returns:
        The exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MLOpsError as err:
        return _fail(args, err, err.exit_code)
    except KeyboardInterrupt:
        print("mlops: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an unexpected failure: report it in one line, maybe retry
        return _fail(args, err, EXIT_RETRY)


def _fail(args: argparse.Namespace, err: BaseException, code: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exception(err)
    text = str(err).strip().splitlines()
    message = text[0] if text else type(err).__name__
    if not isinstance(err, MLOpsError):
        message = f"{type(err).__name__}: {message}"
    print(f"mlops: error: {message}", file=sys.stderr)
    return code
