"""The ``mlops`` command line: the only module that prints.

Exit codes: 0 success, 1 a failure that a retry may fix, 2 bad input or
configuration. A failure prints one line on stderr (``--debug`` adds the
traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from mlops import __version__
from mlops.choices import SERVING_FORMATS, NotifyEvent
from mlops.config import Config, load_config
from mlops.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RETRY, BadInputError, MLOpsError
from mlops.observe.logconf import log_context, setup_logging
from mlops.records import HistoryRecord

log = logging.getLogger("mlops.cli")

Handler = Callable[[argparse.Namespace], int]


# --- output ------------------------------------------------------------------------------
#: Where the command's own output goes while library chatter is kept off stdout (--json).
_OUT: TextIO | None = None


def _echo(*values: Any, end: str = "\n", flush: bool = False) -> None:
    """Print the command's output (the only writer of stdout; see :func:`_json_stdout`)."""
    print(*values, end=end, file=_OUT if _OUT is not None else sys.stdout, flush=flush)


@contextlib.contextmanager
def _json_stdout() -> Iterator[None]:
    """While a ``--json`` command runs, stdout carries nothing but its one JSON document:
    what libraries print there (LightGBM's ``[LightGBM] [Info]`` lines, from Python or
    from native code on file descriptor 1; Dask's messages) goes to stderr, and the
    command's output is written to stdout when it ends."""
    global _OUT
    buffer = io.StringIO()
    real = sys.stdout
    real.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptors (an embedded interpreter): Python level only
        saved = -1
    _OUT, sys.stdout = buffer, sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout, _OUT = real, None
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)
        real.write(buffer.getvalue())
        real.flush()


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
        _echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        _echo(f"{key + ':':<{width + 1}} {_fmt(value)}")


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool,
                empty: str) -> None:
    """Print rows as an aligned table, or JSON."""
    if as_json:
        _echo(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    if not rows:
        _echo(empty)
        return
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    _echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        _echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# --- commands ----------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    setup_logging("DEBUG" if args.debug else cfg.logging.level, cfg.logging.file,
                  fmt=cfg.logging.format)
    return cfg


def _workspace(args: argparse.Namespace) -> Any:
    from mlops.store.workspace import Workspace

    return Workspace.open(_config(args))


def cmd_run(args: argparse.Namespace) -> int:
    """Run the whole pipeline in this process."""
    from mlops.runner import run_pipeline

    summary = run_pipeline(_config(args), run_id=args.run_id)
    if not args.json and summary.get("drift_report"):
        summary = {**summary, "drift_report": drift_line(summary["drift_report"])}
    if not args.json and summary.get("notifications"):
        summary = {**summary, "notifications": [notification_line(n)
                                                for n in summary["notifications"]]}
    print_mapping(summary, args.json)
    return EXIT_OK


def drift_line(report: dict[str, Any]) -> str:
    """One line for a drift report: method, drifted features, verdict."""
    feats = report.get("features", [])
    drifted = [f["feature"] for f in feats if f.get("drifted")]
    names = f" ({', '.join(drifted[:5])}{', ...' if len(drifted) > 5 else ''})" if drifted \
        else ""
    verdict = "data set drifted" if report.get("dataset_drifted") else "no data set drift"
    return f"{report.get('method')}: {len(drifted)}/{len(feats)} features drifted{names}; " \
        f"{verdict}"


def notification_line(n: dict[str, Any]) -> str:
    """One webhook outcome: ``name ok`` or ``name FAILED after N attempt(s): why``."""
    if n.get("ok"):
        return f"{n.get('receiver')} ok"
    return f"{n.get('receiver')} FAILED after {n.get('attempts')} attempt(s): {n.get('error')}"


def cmd_step(args: argparse.Namespace) -> int:
    """Run one step. SIGTERM (a deadline, eviction or delete) stops it at once: the run's
    history records the step as failed (``terminated``) and the exit code is 143."""
    from mlops.kube.controller import EXIT_TERMINATED, Terminated, sigterm_raises
    from mlops.runner import run_step

    cfg = _config(args)
    with log_context(run_id=args.run_id, step=args.command):  # JSON logs of a step Job
        try:
            with sigterm_raises():
                result = run_step(args.command, cfg, args.run_id)
        except Terminated:
            _record_terminated_step(cfg, args.run_id, args.command)
            print(f"mlops: error: step {args.command} of run {args.run_id} terminated by "
                  "SIGTERM; recorded in the run history (mlops history); its result was not "
                  "written, so running the step again with the same --run-id redoes it",
                  file=sys.stderr)
            return EXIT_TERMINATED
    print_mapping(result.to_dict(), args.json)
    return EXIT_OK


def _record_terminated_step(cfg: Config, run_id: str, step: str) -> None:
    from mlops.kube.controller import EXIT_TERMINATED
    from mlops.runner import record_failure
    from mlops.store.workspace import Workspace

    try:
        ws = Workspace.open(cfg)
    except (MLOpsError, OSError) as err:  # never hide the termination behind this
        log.warning("cannot record the termination of step %s: %s", step, err)
        return
    record_failure(ws, run_id, step, f"terminated by SIGTERM (exit {EXIT_TERMINATED})",
                   terminated=True, exit_code=EXIT_TERMINATED)


def cmd_score(args: argparse.Namespace) -> int:
    """Run the score step alone."""
    from mlops.pipeline import SCORE, score
    from mlops.store.workspace import new_run_id

    cfg = _config(args)
    run_id = args.run_id or new_run_id()
    with log_context(run_id=run_id, step=SCORE):
        # Without --run-id there is no run: the result is printed, not kept under runs/.
        result = score(cfg, run_id, record=args.run_id is not None)
    print_mapping(result.to_dict(), args.json)
    return EXIT_OK


def cmd_controller(args: argparse.Namespace) -> int:
    """Run one run as step Jobs on Kubernetes (see docs/kubernetes.md)."""
    from mlops.kube.controller import EXIT_TERMINATED, Terminated, run_controller

    cfg = _config(args)
    if args.dry_run:
        import yaml

        from mlops.kube.controller import plan_run, resolve_run_id

        objects = plan_run(cfg, resolve_run_id(args.run_id), namespace=args.namespace)
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return EXIT_OK
    try:
        summary = run_controller(cfg, run_id=args.run_id, namespace=args.namespace,
                                 kubeconfig=args.kubeconfig, context=args.context)
    except Terminated:
        print("mlops: error: controller terminated by SIGTERM; the run is recorded as "
              "'terminated' in runs/<run-id>/controller.json; start it again with the same "
              "--run-id to resume", file=sys.stderr)
        return EXIT_TERMINATED
    print_mapping(summary, args.json)
    return EXIT_OK


def cmd_versions(args: argparse.Namespace) -> int:
    """List data, model, predictions or label versions."""
    ws = _workspace(args)
    if args.kind == "labels":
        from mlops.performance.labels import label_store

        rows = [{**r.to_dict(), "files": len(r.files)}
                for r in label_store(ws).list_records(limit=args.limit)]
        print_table(rows, ["id", "created_at", "rows", "files", "duplicate_ids",
                           "relabelled_ids", "unknown_ids", "run_id"],
                    args.json, "no label versions yet")
    elif args.kind == "predictions":
        from mlops.scoring import predictions_store

        rows = [{**r.to_dict(), "source": r.source.get("uri"),
                 "source_hash": r.source.get("content_hash")}
                for r in predictions_store(ws).list_records(limit=args.limit)]
        print_table(rows, ["id", "created_at", "rows", "model_version", "run_id", "source"],
                    args.json, "no predictions versions yet")
    elif args.kind == "data":
        from mlops.check import data_version_rows

        # A corrupt manifest or a missing object is listed with its status, not fatal.
        rows = data_version_rows(ws, limit=args.limit)
        print_table(rows, ["id", "created_at", "rows", "size_bytes", "hash_algorithm",
                           "status"], args.json, "no data versions yet")
    else:
        from mlops.check import model_version_rows

        # A corrupt record is listed with its status, not fatal (as for data).
        rows = model_version_rows(ws, limit=args.limit)
        aliases = ws.registry.aliases()
        for r in rows:
            meta = r.get("metadata") or {}
            r.setdefault("accuracy", meta.get("accuracy"))
            r.setdefault("data_version", meta.get("data_version"))
            r.setdefault("model_type", meta.get("model_type"))
            r["aliases"] = sorted(a for a, v in aliases.items() if v == r["id"])
        print_table(rows, ["id", "aliases", "created_at", "model_type", "accuracy",
                           "data_version", "status"], args.json, "no model versions yet")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Show the metadata of one data or model version."""
    ws = _workspace(args)
    if args.kind == "data":
        record = ws.versioner.get_metadata(args.version)
    else:
        record = ws.registry.get_metadata(args.version)
    if args.json:
        print_mapping(record, True)
        return EXIT_OK
    for line in readable_lines(record):
        _echo(line)
    return EXIT_OK


def readable_lines(data: Any, indent: str = "") -> list[str]:
    """Nested mappings and lists as indented ``key: value`` text (``mlops show``).

    A list of scalars stays on one line; a list of mappings (schema columns, source
    files) gets one line per item.
    """
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines += readable_lines(value, indent + "  ")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")
            for item in value:
                first = [k for k in ("name", "path") if k in item]
                keys = first + [k for k in item if k not in first]
                lines.append(f"{indent}  - " + ", ".join(f"{k}={_fmt(item[k])}" for k in keys))
        else:
            lines.append(f"{indent}{key}: {_fmt(value)}")
    return lines


def cmd_history(args: argparse.Namespace) -> int:
    """Show the metrics history, oldest first."""
    ws = _workspace(args)
    rows = [without_accuracy(r) for r in ws.monitor.get_history(limit=args.limit)]
    if not args.json:
        rows = [history_row(r) for r in rows]
    print_table(rows, ["timestamp", "run_id", "status", "metric", "serving", "estimated",
                       "challenger", "promoted", "realized", "labelled", "reasons", "alerts",
                       "drift",
                       "model_version", "error"],
                args.json, "no metrics recorded yet")
    return EXIT_OK


#: Keys of a history record that only a classification has.
_ACCURACY_KEYS = ("accuracy", "challenger_accuracy", "champion_accuracy")


def without_accuracy(record: dict[str, Any]) -> dict[str, Any]:
    """A regression's history record without the (always null) accuracy keys: the history
    of a regression never speaks of accuracy."""
    if record.get("task") != "regression":
        return record
    return {k: v for k, v in record.items() if k not in _ACCURACY_KEYS}


def history_row(record: dict[str, Any]) -> dict[str, Any]:
    """One history record as a table row: the serving model's score on the new data and
    the challenger's held-out score (records from before metrics show their accuracy)."""
    try:
        r = HistoryRecord.from_dict(record)
    except TypeError as err:
        raise BadInputError(f"history record {record.get('timestamp')!r} is damaged: "
                            f"{err}") from err
    failed = r.status == "failed"
    retrained = bool(r.retrained)
    serving = r.serving_score if r.has("serving_score") else \
        None if retrained else r.accuracy
    return {**record, "status": r.status if r.has("status") else "succeeded",
            # A failed run scored nothing; a record of the first release is an accuracy.
            "metric": None if failed else r.metric if r.has("metric") else (
                "accuracy" if r.accuracy is not None else None),
            "serving": None if failed else serving,
            # CBPE's estimate of the scoring model's metric, without labels
            # (mlops.performance.cbpe).
            "estimated": None if failed else r.estimated_score,
            "challenger": (r.challenger_score if r.has("challenger_score") else r.accuracy)
            if retrained else None,
            "promoted": r.promoted if retrained else None,
            "error": f"{r.step}: {r.error}" if failed else None,
            # The night's score once its late labels came, on how many rows (labels.md).
            "realized": r.realized_score,
            "labelled": r.labelled_rows,
            # A drift that could not be measured is not a drift of 0.
            **({"drift": "not measured"} if r.drift_error else {})}


def cmd_promote(args: argparse.Namespace) -> int:
    """Point an alias (default ``production``) at a model version (its serving exports
    written first, as the pipeline's promotion does). The version is verified first as a
    load would (record, signature with ``registry.signing_key_env``, artifact sha256): an
    unsigned or tampered version is refused (exit 2) and the alias does not move."""
    ws = _workspace(args)
    if ws.registry.exists(args.version):  # an unknown one: set_alias names it
        ws.registry.verify(args.version)
    if args.alias == "production":
        from mlops.serving import export_for_serving

        export_for_serving(ws.store, ws.registry, args.version)
    event = ws.registry.set_alias(args.version, args.alias, reason=args.reason)
    print_mapping(event, args.json)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write a model version's serving export (kserve or mlflow) into a new folder."""
    from pathlib import Path

    from mlops import serving

    output = Path(args.output)
    serving.check_output_dir(output)  # before anything is read or written
    ws = _workspace(args)
    version = ws.registry.get_alias(args.version) if args.version == "production" \
        else args.version
    if version is None:
        raise BadInputError("mlops export production: no model serves yet (the production "
                            "alias is unset); name a model version instead")
    model, _ = ws.registry.load(version)
    export = serving.build_export(model, ws.registry.get_record(version), args.format)
    files = serving.write_to_dir(export, output)
    print_mapping({"model_version": version, "format": args.format, "output": str(output),
                   "files": ", ".join(str(f.relative_to(output)) for f in files)}, args.json)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    """Move an alias back to its value before the latest promotion (webhook receivers that
    want ``rollback`` hear about it; a failed delivery never changes the exit code)."""
    from mlops.observe.notify import Notice, bad_urls, send

    ws = _workspace(args)
    event = ws.registry.rollback(args.alias, reason=args.reason)
    print_mapping(event, args.json)
    if ws.config.notifications.webhooks and not bad_urls(ws.config):
        ns = ws.config.kubernetes.namespace or os.environ.get("MLOPS_NAMESPACE") or "local"
        text = (f"alias {event['alias']} rolled back from {event['previous']} to "
                f"{event['version']} by {event['by']}"
                + (f": {event['reason']}" if event.get("reason") else ""))
        send(ws.config, str(event.get("event") or "rollback"), "rolled back",
             [Notice(NotifyEvent.ROLLBACK, text)],
             {"model_version": event["version"], "previous_version": event["previous"],
              "alias": event["alias"], "reason": event.get("reason") or None},
             f"{ws.config.kubernetes.release}/{ns}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report and its PNG plots to a folder (and serve it with --serve)."""
    from mlops.observe.report import serve_report, write_report
    from mlops.store.faults import PERMANENT_ERRNOS

    if not 0 <= args.port <= 65535:  # before anything is written
        raise BadInputError(f"report --port must be between 0 and 65535, got {args.port}")
    ws = _workspace(args)
    try:
        files = write_report(ws, args.output)
    except OSError as err:
        # Read-only, no permission, not a folder, or a place where no folder can be made
        # (/proc/x: ENOENT although the parent exists): a retry will not help.
        if err.errno in PERMANENT_ERRNOS or err.errno in (errno.ENOENT, errno.ENOTDIR,
                                                           errno.EEXIST):
            raise BadInputError(f"report --output {args.output}: cannot write "
                                f"{err.filename or args.output}: {err.strerror}") from err
        raise
    if args.json:
        _echo(json.dumps({"files": [str(p) for p in files]}, indent=2))
        return EXIT_OK
    for path in files:
        _echo(path)
    if args.serve:
        server = serve_report(files[0].parent, args.bind, args.port)
        _echo(f"serving http://{args.bind}:{server.server_port}/{files[0].name} (Ctrl-C "
              "stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """One screen: is it healthy? Exit 0 healthy, 3 unhealthy."""
    from mlops.observe.status import EXIT_UNHEALTHY, check_health, render

    if not (math.isfinite(args.max_age_hours) and args.max_age_hours > 0):
        raise BadInputError(f"--max-age-hours must be a finite number > 0, got "
                            f"{args.max_age_hours:g}")
    health = check_health(_config(args), max_age_hours=args.max_age_hours)
    if args.json:
        _echo(json.dumps(health.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _echo(render(health))
    return EXIT_OK if health.healthy else EXIT_UNHEALTHY


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
    if args.json:
        _echo(json.dumps({"store": ws.store.uri, "reachable": True, "writable": True}))
        return EXIT_OK
    _echo(f"store {ws.store.uri} is reachable and writable")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective config as YAML, or the reference of every key."""
    import yaml

    from mlops.config import reference_markdown

    if args.docs:
        _echo(reference_markdown(), end="")
        return EXIT_OK
    if args.json:
        _echo(json.dumps(load_config(args.config).to_dict(), indent=2, default=str))
        return EXIT_OK
    _echo(yaml.safe_dump(load_config(args.config).to_dict(), sort_keys=False), end="")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    """Retention (``retention.keep_*``) and crash leftovers: one plan, one executor."""
    from mlops.store.gc import apply_gc, check_grace, plan_gc
    from mlops.store.retention import plan_retention, still_retired

    check_grace(args.grace_seconds)  # also refuses nan, which disables the grace period
    if args.check:
        return _gc_check(args)
    ws = _workspace(args)
    retention = plan_retention(ws)
    everything = plan_gc(ws.store, args.grace_seconds, sources=[retention.source])
    if not args.dry_run:
        everything = apply_gc(ws.store, everything, still_retired(ws))
    plan = everything.orphans()
    if args.json:
        _echo(json.dumps({"retention": retention.to_dict(), "orphans": plan.to_dict(),
                          "dry_run": args.dry_run}, indent=2, sort_keys=True))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for r in (*retention.data, *retention.models):
        _echo(f"{verb} {r.version_kind} version {r.version_id}  ({r.reason})")
    for d in plan.deletions:
        _echo(f"{verb} {d.key}  ({d.reason})")
    for w in plan.warnings:
        _echo(f"warning: {w}")
    _echo(f"{verb} {len(retention.data)} data and {len(retention.models)} model version(s) "
          f"by retention, {len(plan.deletions)} orphaned object(s); kept {len(plan.young)} "
          f"younger than {plan.grace_seconds:g}s; store {plan.store}")
    return EXIT_OK


def _gc_check(args: argparse.Namespace) -> int:
    """``mlops gc --check``: list every inconsistency; exit 2 when there is one."""
    from mlops.check import check_store

    problems = check_store(_workspace(args))
    if args.json:
        _echo(json.dumps({"problems": [p.to_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            _echo(f"{p.key}: {p.problem}")
        _echo(f"{len(problems)} problem(s)" if problems else "store is consistent")
    return EXIT_BAD_INPUT if problems else EXIT_OK


# --- parser ------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML config file (default: the embedded default: synthetic data, "
                        "store ./mlops-data; MLOPS_STORAGE_URI overrides storage.uri)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # Also accepted after the subcommand; SUPPRESS keeps a --debug given before it.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and a traceback on failure")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from mlops.store.gc import DEFAULT_GRACE_SECONDS  # a light module: no store is opened
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Keep a classifier or regressor fresh: ingest -> monitor-check -> train "
                    "(when needed).",
        epilog="Exit codes: 0 success, 1 failure a retry may fix, 2 bad input or config, "
               "3 unhealthy (mlops status).")
    parser.add_argument("--version", action="version", version=f"mlops {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback on failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the whole pipeline once in this process",
                       description="Run ingest, monitor-check, (when needed) train and (when "
                                   "scoring.source is set) score in one process and print "
                                   "the run summary.")
    _common(p)
    p.add_argument("--run-id", help="run id (default: a fresh UTC timestamp id)")
    p.set_defaults(handler=cmd_run)

    step_help = {
        "ingest": "load, validate and register the source as a data version",
        "monitor-check": "evaluate the current model on the run's data (and estimate its "
                         "metrics without labels, CBPE) and decide on a retrain",
        "train": "train on the run's data version and save the model",
    }
    for step, text in step_help.items():
        p = sub.add_parser(step, help=text, description=f"One pipeline step: {text}. Its "
                           "result is written to runs/<run-id>/" + step + ".json.")
        _common(p)
        p.add_argument("--run-id", required=True, help="the run this step belongs to")
        p.set_defaults(handler=cmd_step)

    p = sub.add_parser(
        "controller", help="run ingest -> monitor-check -> train as Kubernetes Jobs",
        description="Run one run as step Jobs on Kubernetes: create (or adopt) each step's "
                    "Job, wait with the watch API, launch train only when monitor-check says "
                    "retrain, then the score Job when scoring.source is set, write "
                    "runs/<run-id>/summary.json and print the summary. A step "
                    "whose result exists is skipped, so running it again with the same run id "
                    "resumes the run. With dask.cluster: ephemeral (or operator) it first "
                    "starts the run's Dask scheduler and workers (or DaskCluster), waits for "
                    "the workers asked for and removes them at the end (not when its own pod "
                    "is disrupted: the retried controller adopts them). --dry-run prints "
                    "every object of the run instead. Credentials: "
                    "--kubeconfig, else $KUBECONFIG, else the pod's service account (in "
                    "cluster), else ~/.kube/config.",
        epilog="Exit codes: 0 success; 1 retry may help (step failed with exit 1, step "
               "timeout, API 5xx or unreachable, the run's Dask scheduler not ready or too few "
               "workers in dask.workers_timeout); 2 bad "
               "input (bad kubeconfig, missing "
               "namespace, RBAC 403, invalid Job 422, step pod exited 2, step result missing); "
               "143 terminated by SIGTERM. See docs/kubernetes.md.")
    _common(p)
    p.add_argument("--run-id", help="run id (default: $MLOPS_RUN_ID, else $MLOPS_JOB_NAME, the "
                                    "controller's own Job, else a fresh UTC timestamp id)")
    p.add_argument("--namespace", "-n", help="namespace of the step Jobs (default: "
                   "kubernetes.namespace, else $MLOPS_NAMESPACE, else the service account's "
                   "or kubeconfig context's namespace, else 'default')")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file, e.g. of a kind "
                   "cluster (default: $KUBECONFIG, else in-cluster service account when "
                   "$KUBERNETES_SERVICE_HOST is set, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: its current-context)")
    p.add_argument("--dry-run", action="store_true",
                   help="print, as a YAML stream, every object the controller would create "
                        "for the run (the Dask cluster's objects, then the step Jobs) and "
                        "exit, without contacting an API server")
    p.set_defaults(handler=cmd_controller)

    p = sub.add_parser(
        "score", help="score scoring.source with the serving model (a predictions version)",
        description="Score the files of scoring.source with the serving (production) model and "
                    "commit a content-addressed predictions version (Parquet: the "
                    "scoring.id_columns, prediction, probability_<class> per class) below "
                    "scoring.output (default <storage.uri>/predictions). The result is written "
                    "to runs/<run-id>/score.json when --run-id names the run (without it the "
                    "predictions version records a fresh id and runs/ is left alone). mlops "
                    "run and the controller run this step "
                    "after train when scoring.source is set.",
        epilog="Exit codes: 0 success; 1 retry may help; 2 bad input (no serving model, a "
               "missing id or feature column, a missing source): nothing is written.")
    _common(p)
    p.add_argument("--run-id", help="the run this step belongs to (default: none; the "
                                    "predictions version records a fresh UTC timestamp id)")
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser("versions",
                       help="list stored data, model, predictions or label versions, newest "
                       "first")
    p.add_argument("kind", choices=["data", "models", "predictions", "labels"],
                   help="what to list (labels: late labels, docs/labels.md)")
    _common(p)
    p.add_argument("--limit", type=int, default=None, help="show at most N versions")
    p.set_defaults(handler=cmd_versions)

    p = sub.add_parser("show", help="show one data or model version's metadata")
    p.add_argument("kind", choices=["data", "model"], help="what to show")
    p.add_argument("version", help="the version id")
    _common(p)
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("history", help="show the metrics history, oldest first",
                       description="The metrics history, oldest first: per run the serving "
                                   "model's score, its CBPE estimate without labels "
                                   "(estimated: classifiers with a calibration map; assumes "
                                   "no concept shift, docs/estimated-performance.md), the "
                                   "challenger's held-out score, reasons and alerts.")
    _common(p)
    p.add_argument("--limit", type=int, default=None, help="show the last N records")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("config", help="print the effective config (or --docs: every key)",
                       description="Print the validated config with defaults and environment "
                                   "overrides applied, as YAML.")
    _common(p)
    p.add_argument("--docs", action="store_true",
                   help="print the reference of every config key as Markdown")
    p.set_defaults(handler=cmd_config)

    p = sub.add_parser("promote", help="point an alias (default production) at a model version",
                       description="Move an alias to VERSION. The move is appended to the "
                                   "alias history (who, when, from which version, why).")
    p.add_argument("version", help="the model version to serve")
    _common(p)
    p.add_argument("--alias", default="production", help="the alias to move (default: "
                   "production, the model the pipeline serves)")
    p.add_argument("--reason", default="", help="why, kept in the alias history")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser(
        "export", help="write a model version in a format model servers load",
        description="Write VERSION (or the model production serves) into the new folder "
                    "--output: kserve (model.joblib, the whole Pipeline, for KServe's "
                    "sklearn server; LightGBM models also lightgbm/model.bst) or mlflow (an "
                    "MLflow model directory for mlflow.pyfunc and MLServer). The pickle holds "
                    "only scikit-learn/LightGBM objects: it loads without mlops. Each "
                    "promotion writes both under the store's serving/<version>/<format>/.")
    p.add_argument("version", help="a model version, or production")
    _common(p)
    p.add_argument("--format", required=True, choices=SERVING_FORMATS,
                   help="the layout to write")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="the folder to create (must not exist, or be empty)")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("rollback", help="move an alias back to its previous version",
                       description="Undo the latest promotion of the alias: it points again at "
                                   "the version it had before. Repeating it walks further back.")
    _common(p)
    p.add_argument("--alias", default="production", help="the alias to move back (default: "
                   "production)")
    p.add_argument("--reason", default="", help="why, kept in the alias history")
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("report", help="write an HTML report with accuracy and drift plots",
                       description="Write report.html (plots embedded, self-contained) and "
                                   "the PNG plots side by side in DIR: accuracy per run, drift "
                                   "per feature over time, the latest drift report, the "
                                   "registry with its aliases. Needs mlops[report].")
    _common(p)
    p.add_argument("--output", "-o", metavar="DIR", default="mlops-report",
                   help="folder to write to (default: ./mlops-report)")
    p.add_argument("--serve", action="store_true",
                   help="then serve the folder over HTTP until Ctrl-C and print the URL")
    p.add_argument("--port", type=int, default=8000,
                   help="port of --serve (default: 8000; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address of --serve (default: 127.0.0.1, this machine only)")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser(
        "status", help="is it healthy? last run, serving model, drift, failures",
        description="One screen from the store (read-only, quick): the last run and its "
                    "outcome, the serving model against its threshold (accuracy against "
                    "monitoring.accuracy_min_threshold, or the gating monitoring.metric "
                    "against its limit), its CBPE estimate on the last batch (from its "
                    "calibrated probabilities without labels; classifiers only; assumes no "
                    "concept shift: docs/estimated-performance.md), the last drift, nights "
                    "since the last retrain, failed runs in the last week and the newest "
                    "report.",
        epilog="Exit codes: 0 healthy; 3 unhealthy (the latest finished run failed, no "
               "successful run within --max-age-hours, or the serving model is below its "
               "threshold); 1 the store cannot be read (retry may help); 2 bad config.")
    _common(p)
    p.add_argument("--max-age-hours", type=float, default=36.0, metavar="H",
                   help="unhealthy when no run succeeded in the last H hours (default: 36, "
                        "a nightly schedule plus margin)")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("storage-check", help="check that the store is reachable and writable",
                       description="Write, read back and delete a probe object (used by the "
                                   "Helm chart's test hook).")
    _common(p)
    p.set_defaults(handler=cmd_storage_check)

    p = sub.add_parser("gc", help="apply retention and remove what no version references",
                       description="First apply retention: delete data and model versions "
                                   "beyond retention.keep_data_versions / keep_models, never "
                                   "one an alias, the serving model or the drift reference "
                                   "needs. Then remove what a crashed writer left behind: data "
                                   "objects no manifest references, index markers without a "
                                   "manifest, model files without metadata.json, .tmp-* files; "
                                   "never anything a committed version references.")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--check", action="store_true",
                   help="delete nothing: check every manifest, data object, model record, "
                        "artifact, alias and the serving model's reference, list each problem "
                        "and exit 2 when there is one")
    p.add_argument("--grace-seconds", type=float, default=DEFAULT_GRACE_SECONDS, metavar="N",
                   help="keep orphans younger than N seconds: they may be in-flight writes "
                        f"(default: {DEFAULT_GRACE_SECONDS:g})")
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
    quiet = _json_stdout() if getattr(args, "json", False) and not getattr(args, "serve", False) \
        else contextlib.nullcontext()
    try:
        with quiet:
            code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        # The reader stopped early (`mlops versions data | head`): not a failure. Point
        # stdout at devnull so the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
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
