"""The run report: accuracy and drift over time, the latest drift report, the registry.

:func:`collect` reads what the store already holds (the metrics history, each run's
monitor-check result, the registry and its aliases) into a :class:`ReportData`;
:func:`render_plots` draws PNGs with matplotlib's Agg renderer (``Figure`` objects,
no pyplot global state); :func:`render_html` builds one self-contained page with
the PNGs embedded as base64. ``mlops report`` writes the page and the PNGs to a
folder; with ``reporting.enabled`` each pipeline run writes ``runs/<run-id>/report.html``.

matplotlib is the optional ``mlops[report]`` extra: it is imported only here, only
when plotting.
"""

from __future__ import annotations

import base64
import functools
import html
import http.server
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.choices import Alert
from mlops.errors import BadInputError, ConfigError
from mlops.gating import higher_is_better
from mlops.records import HistoryRecord
from mlops.store import layout
from mlops.store.ids import iso, utc_now

if TYPE_CHECKING:
    from mlops.store.workspace import Workspace

ACCURACY_PNG = "accuracy.png"
#: The drift plot names at most this many features (the most drifted); the rest are a band.
NAMED_FEATURES = 8
DRIFT_PNG = "drift.png"
#: The realized (late labels) and estimated scores per night (docs/labels.md).
REALIZED_PNG = "realized.png"
REPORT_HTML = "report.html"


@dataclass(frozen=True)
class ReportData:
    """What the report shows, read from the store.

    Attributes:
        store_uri: The store.
        history: Metrics records, oldest first.
        drift: ``(run_id, drift_report dict)`` of each run with a report, oldest first.
        models: Registry records, newest first, each with an ``aliases`` list.
        aliases: Alias name -> version.
        alias_history: Events of the ``production`` alias, oldest first.
        accuracy_threshold: ``monitoring.accuracy_min_threshold``.
        generated_at: When the data was read (ISO 8601).
        drift_errors: ``(run_id, why)`` of each run whose drift could not be measured
            (its serving model's reference missing or malformed), oldest first.
        max_degradation: ``monitoring.max_degradation`` (None: no limit).
    """

    store_uri: str
    history: list[HistoryRecord]
    drift: list[tuple[str, dict[str, Any]]]
    models: list[dict[str, Any]]
    aliases: dict[str, str | None]
    alias_history: list[dict[str, Any]]
    accuracy_threshold: float
    generated_at: str
    drift_errors: list[tuple[str, str]] = field(default_factory=list)
    max_degradation: float | None = None


def require_matplotlib() -> None:
    """Check that the ``report`` extra is installed.

    Raises:
        ConfigError: matplotlib is missing.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ConfigError("reports need matplotlib: install mlops[report] (or set "
                          "reporting.enabled to false)") from err


def collect(ws: Workspace) -> ReportData:
    """Read the report's data from the store.

    Raises:
        BadInputError: The store has no runs and no metrics yet (nothing to report), or a
            history record has a key of the wrong type (named).
    """
    history = [_typed(r) for r in ws.monitor.get_history()]
    runs = ws.list_runs()
    if not history and not runs:
        raise BadInputError(f"nothing to report: the store {ws.store.uri} has no runs yet "
                            "(run `mlops run` first)")
    drift = []
    drift_errors = []
    for run_id in runs:
        checked = ws.read_result(run_id, "monitor-check")
        if checked and checked.get("drift_report"):
            drift.append((run_id, checked["drift_report"]))
        if checked and checked.get("drift_error"):
            drift_errors.append((run_id, str(checked["drift_error"])))
    aliases = ws.registry.aliases()
    by_version: dict[str, list[str]] = {}
    for name, version in aliases.items():
        if version:
            by_version.setdefault(version, []).append(name)
    models = [{**m.to_dict(), "aliases": sorted(by_version.get(m.id, []))}
              for m in ws.registry.list_records()]
    return ReportData(store_uri=ws.store.uri, history=history, drift=drift, models=models,
                      aliases=aliases, alias_history=ws.registry.alias_history(),
                      accuracy_threshold=ws.config.monitoring.accuracy_min_threshold,
                      generated_at=iso(utc_now()), drift_errors=drift_errors,
                      max_degradation=ws.config.monitoring.max_degradation)


# --- plots -------------------------------------------------------------------------------
def _run_ticks(ax: Any, labels: Sequence[str]) -> None:
    n = len(labels)
    step = max(1, math.ceil(n / 15))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=35, ha="right", fontsize=8)
    ax.set_xlim(-0.5, n - 0.5)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _typed(record: Mapping[str, Any]) -> HistoryRecord:
    try:
        return HistoryRecord.from_dict(record)
    except TypeError as err:
        raise BadInputError(f"history record {record.get('timestamp')!r} is damaged: "
                            f"{err}") from err


def record_score(record: HistoryRecord) -> float | None:
    """The serving model's gating score of a history record (its ``accuracy`` in records
    written before metrics existed), None for a failed run."""
    if record.status == "failed":
        return None
    if record.has("serving_score"):
        value = record.serving_score
    else:
        value = record.score if record.has("score") and not record.retrained \
            else record.accuracy
    return None if value is None else float(value)


def record_metric(record: HistoryRecord) -> str | None:
    """The gating metric a history record's scores are in (None for a failed run)."""
    if record.status == "failed":
        return None
    return str(record.metric or "accuracy")


def history_metrics(data: ReportData) -> list[str]:
    """The gating metrics of the history, the latest first (one plot each)."""
    seen: list[str] = []
    for r in reversed(data.history):
        m = record_metric(r)
        if m is not None and m not in seen:
            seen.append(m)
    return seen or ["accuracy"]


def score_png(metric: str, latest: str) -> str:
    """The plot's file name: ``accuracy.png`` for the latest metric (whatever it is), else
    ``score-<metric>.png``."""
    return ACCURACY_PNG if metric == latest else f"score-{metric}.png"


def score_records(data: ReportData, metric: str) -> list[HistoryRecord]:
    """The history records drawn on ``metric``'s plot: those scored with it, and failed
    runs on the latest metric's plot."""
    latest = history_metrics(data)[0]
    return [r for r in data.history if record_metric(r) == metric
            or (metric == latest and record_metric(r) is None)]


def plot_accuracy(data: ReportData, metric: str | None = None) -> bytes:
    """One gating metric per run (default: the latest one): the serving model's score,
    each challenger's held-out score (promoted or not), the metric's limit (its threshold,
    else the ``max_degradation`` limit below the serving model's held-out score at
    training), failed runs (PNG). Runs scored with another metric (before a switch of
    ``monitoring.metric``) are not drawn on its axis: they have their own plot."""
    require_matplotlib()
    from matplotlib.figure import Figure

    latest = history_metrics(data)[0]
    metric = metric or latest
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot()
    recs = score_records(data, metric)
    others = len(data.history) - len(recs)
    labels = [str(r.run_id or r.timestamp[:19]) for r in recs]
    xs = list(range(len(recs)))
    serving = [record_score(r) for r in recs]
    ax.plot(xs, [math.nan if v is None else v for v in serving], color="tab:blue", marker="o",
            markersize=3, linewidth=1.5, label=f"serving model's {metric}")
    threshold = next((r.threshold for r in reversed(recs) if r.has("threshold")),
                     data.accuracy_threshold if metric == "accuracy" else None)
    if threshold is not None:
        ax.axhline(float(threshold), color="tab:red", linestyle="--", linewidth=1,
                   label=f"threshold ({float(threshold):g})")
    baseline = next((r.baseline_score for r in reversed(recs)
                     if r.baseline_score is not None), None)
    if baseline is not None and data.max_degradation is not None:
        drop = data.max_degradation * max(abs(float(baseline)), 0.05)
        limit = float(baseline) + (-drop if higher_is_better(metric) else drop)
        ax.axhline(limit, color="tab:brown", linestyle=":", linewidth=1,
                   label=f"degradation limit ({limit:.4g}: max_degradation "
                         f"{data.max_degradation:g} from held-out {float(baseline):.4g})")
    values = [v for v in serving if v is not None]
    for promoted, marker, color, text in ((True, "^", "tab:green", "challenger, promoted"),
                                          (False, "X", "tab:orange",
                                           "challenger, not promoted")):
        points = [(x, float(c)) for x, r in zip(xs, recs, strict=True)
                  if r.retrained and bool(r.promoted if r.has("promoted") else True) is promoted
                  and (c := _challenger_score(r)) is not None]
        if points:
            values += [p[1] for p in points]
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, s=70,
                       color=color, zorder=3, label=f"{text} (held-out split)")
    failed = [x for x, r in zip(xs, recs, strict=True) if r.status == "failed"]
    if failed:
        ax.scatter(failed, [0.0] * len(failed), transform=ax.get_xaxis_transform(),
                   marker="v", s=70, color="black", zorder=3, clip_on=False,
                   label="failed run")
    below = [(x, v) for x, v, r in zip(xs, serving, recs, strict=True)
             if v is not None and Alert.SERVING_BELOW_THRESHOLD in (r.alerts or [])]
    if below:
        ax.scatter([b[0] for b in below], [b[1] for b in below], marker="o", s=90,
                   facecolors="none", edgecolors="tab:red", zorder=4,
                   label="serving below threshold")
    if metric == "accuracy" and values:
        ax.set_ylim(max(0.0, min([*values, float(threshold or 1.0)]) - 0.05), 1.01)
    _run_ticks(ax, labels)
    ax.set_xlabel("run (oldest to newest)")
    ax.set_ylabel(metric)
    note = f"; {others} runs scored with another metric are in their own plot" if others \
        else ""
    ax.set_title(f"{metric} per run ({len(recs)} runs{note})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    return _png(fig)


def label_records(data: ReportData) -> list[HistoryRecord]:
    """The nights with a realized score (from late labels), an estimated one, or stored
    predictions still waiting for their labels, oldest first."""
    return [r for r in data.history if r.status != "failed" and (
        r.realized_score is not None or r.estimated_score is not None or r.unlabelled)]


#: Columns of the realized-vs-estimated table.
LABEL_COLUMNS = ["run", "predicted at", "metric", "estimated", "realized", "labelled rows",
                 "predicted rows", "label coverage"]


def _label_row(r: HistoryRecord) -> tuple[Any, ...]:
    coverage = r.label_coverage
    return (r.run_id, r.prediction_date or r.timestamp,
            r.metric if r.has("metric") else "accuracy", r.estimated_score, r.realized_score,
            r.labelled_rows or 0,
            r.predicted_rows if r.has("predicted_rows") else r.scored_rows,
            "0%" if coverage is None else f"{100 * float(coverage):.1f}%")


def plot_realized(data: ReportData) -> bytes:
    """Per night: the realized score once its labels came and the estimated score (when
    the run estimated one), with the share of its rows labelled (PNG)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    recs = label_records(data)
    metric = next((str(r.metric) for r in reversed(recs) if r.metric), "accuracy")
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot()
    xs = list(range(len(recs)))
    for key, color, marker, text in (("realized_score", "tab:green", "o", "realized (labels)"),
                                     ("estimated_score", "tab:purple", "s", "estimated")):
        values = [getattr(r, key) for r in recs]
        ys = [math.nan if v is None else float(v) for v in values]
        if any(not math.isnan(y) for y in ys):
            ax.plot(xs, ys, color=color, marker=marker, markersize=4, linewidth=1.2,
                    label=f"{text} {metric}")
    cover = ax.twinx()
    cover.bar(xs, [float(r.label_coverage or 0.0) for r in recs], color="tab:gray",
              alpha=0.25, label="label coverage")
    cover.set_ylim(0, 1)
    cover.set_ylabel("share of the night's rows labelled")
    _run_ticks(ax, [str(r.run_id or "?") for r in recs])
    ax.set_xlabel("night (oldest to newest)")
    ax.set_ylabel(metric)
    ax.set_title(f"realized vs estimated {metric} per night ({len(recs)} nights)")
    ax.grid(True, alpha=0.3)
    lines, names = ax.get_legend_handles_labels()
    bars, bar_names = cover.get_legend_handles_labels()
    ax.legend(lines + bars, names + bar_names, loc="best", fontsize=8, framealpha=0.9)
    return _png(fig)


def plot_drift(data: ReportData) -> bytes:
    """The data set's drift score and each feature's statistic over the runs (PNG)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    labels = [run_id for run_id, _ in data.drift]
    xs = list(range(len(data.drift)))
    scores = [_num(rep.get("score")) for _, rep in data.drift]
    thresholds = [float(rep.get("threshold", 0.0)) for _, rep in data.drift]
    drifted = [(x, s) for x, s, (_, rep) in zip(xs, scores, data.drift, strict=True)
               if rep.get("dataset_drifted")]
    methods = sorted({str(rep.get("method")) for _, rep in data.drift})
    top.plot(xs, scores, color="tab:purple", marker="o", markersize=3, label="drift score")
    top.step(xs, thresholds, where="mid", color="tab:red", linestyle="--", linewidth=1,
             label="threshold")
    if drifted:
        top.scatter([d[0] for d in drifted], [d[1] for d in drifted], marker="D", s=40,
                    color="tab:red", zorder=3, label="data set drifted")
    top.set_ylabel("score")
    top.set_title(f"Drift per run, method {', '.join(methods) or '-'} (score = relative L1 "
                  "for mean_l1, share of drifted features otherwise)", fontsize=10)
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=8, framealpha=0.9)

    series: dict[str, list[float]] = {}
    stat_names: set[str] = set()
    for i, (_, rep) in enumerate(data.drift):
        for f in rep.get("features", []):
            stat_names.add(str(f["method"]))
            series.setdefault(str(f["feature"]), [math.nan] * len(xs))[i] = _num(f["statistic"])
    named, rest = _most_drifted(data.drift, series)
    for name in named:
        bottom.plot(xs, series[name], marker=".", linewidth=1.2, label=name)
    if rest:
        # The other features as one band (min to max) and their median: readable at 60.
        stacked = np.array([series[name] for name in rest], dtype=np.float64)
        finite = np.where(np.isfinite(stacked), stacked, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN run
            low, mid, high = (np.nanmin(finite, axis=0), np.nanmedian(finite, axis=0),
                              np.nanmax(finite, axis=0))
        bottom.fill_between(xs, low, high, color="grey", alpha=0.2)
        bottom.plot(xs, mid, color="grey", linestyle=":", linewidth=1.2,
                    label=f"{len(rest)} other features (median, band min-max)")
    feature_thresholds = {float(f["threshold"]) for _, rep in data.drift
                          for f in rep.get("features", [])}
    if len(feature_thresholds) == 1:
        bottom.axhline(feature_thresholds.pop(), color="tab:red", linestyle="--", linewidth=1,
                       label="feature threshold")
    what = ", ".join(sorted(stat_names)) or "-"
    note = " (ks: p-value, drift below the threshold)" if "ks" in stat_names else ""
    bottom.set_ylabel(f"per-feature statistic ({what})")
    bottom.set_title(f"Per-feature drift statistic{note}; " + (
        f"the {len(named)} most drifted features named" if named
        else "no feature drifted"), fontsize=10)
    bottom.grid(True, alpha=0.3)
    if series:
        bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                      title="feature", title_fontsize=8)
    _run_ticks(bottom, labels)
    bottom.set_xlabel("run (oldest to newest)")
    return _png(fig)


def _most_drifted(drift: Sequence[tuple[str, dict[str, Any]]],
                  series: Mapping[str, list[float]]) -> tuple[list[str], list[str]]:
    """The features that drifted in at least one run, at most :data:`NAMED_FEATURES` of
    them (drifted in most runs first, then the latest report's order), and the rest: a
    feature that never drifted is never named as one of the most drifted."""
    counts = {name: 0 for name in series}
    for _, rep in drift:
        for f in rep.get("features", []):
            if f.get("drifted"):
                counts[str(f["feature"])] = counts.get(str(f["feature"]), 0) + 1
    order = [n for n in sorted(series, key=lambda n: -counts.get(n, 0)) if counts[n] > 0]
    named = order[:NAMED_FEATURES]
    return named, [n for n in series if n not in named]


def _num(v: Any) -> float:
    return math.inf if v is None else float(v)


def render_plots(data: ReportData) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of the plots (drift only when a run has a report)."""
    plots = {}
    if data.history:
        metrics = history_metrics(data)
        for metric in metrics:
            plots[score_png(metric, metrics[0])] = plot_accuracy(data, metric)
    if data.drift:
        plots[DRIFT_PNG] = plot_drift(data)
    if label_records(data):
        plots[REALIZED_PNG] = plot_realized(data)
    return plots


# --- HTML --------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list | tuple):
        return html.escape(", ".join(map(str, v))) or "-"
    return html.escape(str(v))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], css: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


#: Columns of the per-run table (report and ``mlops history``).
HISTORY_COLUMNS = ["run", "status", "metric", "serving score", "estimated score",
                   "challenger score", "promoted", "reasons", "alerts", "error"]


def _challenger_score(r: HistoryRecord) -> float | None:
    """A retrain's challenger score (its ``accuracy`` in records from before metrics)."""
    return r.challenger_score if r.has("challenger_score") else r.accuracy


def _history_row(r: HistoryRecord) -> tuple[Any, ...]:
    failed = r.status == "failed"
    error = f"{r.step}: {r.error}" if failed else None
    return (r.run_id or r.timestamp, r.status if r.has("status") else "succeeded",
            r.metric if r.has("metric") else "accuracy", record_score(r),
            r.estimated_score,  # CBPE, without labels (mlops.performance.cbpe)
            _challenger_score(r) if r.retrained else None,
            r.promoted if r.retrained else None, r.reasons, r.alerts, error)


def render_html(data: ReportData, plots: dict[str, bytes]) -> str:
    """One self-contained HTML page (plots embedded as base64 PNG)."""
    parts = [f"<h1>mlops run report</h1><p>Store <code>{html.escape(data.store_uri)}</code>, "
             f"generated {html.escape(data.generated_at)}; {len(data.history)} metrics "
             f"records, {len(data.models)} model versions.</p>"]
    metrics = history_metrics(data)
    titles = [(score_png(m, metrics[0]), f"{m} per run") for m in metrics]
    for name, title in (*titles, (DRIFT_PNG, "Drift over time")):
        if name in plots:
            b64 = base64.b64encode(plots[name]).decode("ascii")
            parts.append(f"<h2>{title}</h2><img alt=\"{title}\" "
                         f"src=\"data:image/png;base64,{b64}\">")
    labelled = label_records(data)
    if labelled:
        parts.append("<h2>Realized vs estimated score</h2><p>Each night's score once its "
                     "late labels came (joined by id with its stored predictions), next to "
                     "the score estimated without labels, and the share of its rows "
                     "labelled so far.</p>")
        if REALIZED_PNG in plots:
            b64 = base64.b64encode(plots[REALIZED_PNG]).decode("ascii")
            parts.append("<img alt=\"Realized vs estimated score\" "
                         f"src=\"data:image/png;base64,{b64}\">")
        parts.append(_table([_label_row(r) for r in reversed(labelled)], LABEL_COLUMNS,
                            "realized"))
    if data.history:
        parts.append("<h2>Runs</h2>")
        parts.append(_table([_history_row(r) for r in reversed(data.history)],
                            HISTORY_COLUMNS, "runs"))
    parts.append("<h2>Latest drift report</h2>")
    if data.drift:
        run_id, rep = data.drift[-1]
        parts.append(f"<p>Run <code>{html.escape(run_id)}</code>, method "
                     f"<b>{_cell(rep.get('method'))}</b>: score {_cell(_num(rep.get('score')))}"
                     f" (threshold {_cell(rep.get('threshold'))}), share of drifted features "
                     f"{_cell(rep.get('share_drifted'))}, data set drifted: "
                     f"<b>{_cell(bool(rep.get('dataset_drifted')))}</b>. "
                     f"{_cell(rep.get('note')) if rep.get('note') else ''}</p>")
        parts.append(_table([(f["feature"], f["method"], _num(f["statistic"]),
                              float(f["threshold"]), bool(f["drifted"]))
                             for f in rep.get("features", [])],
                            ["feature", "statistic", "value", "threshold", "drifted"],
                            "drift"))
    else:
        parts.append("<p>No drift report yet (the first run has no reference).</p>")
    if data.drift_errors:
        parts.append("<h2>Drift not measured</h2>")
        parts.append(_table(data.drift_errors, ["run", "why drift could not be measured"],
                            "drift-errors"))
    parts.append("<h2>Model registry</h2>")
    parts.append(_table([(m["id"], m.get("aliases") or None, m.get("created_at"),
                          m.get("metadata", {}).get("model_type"),
                          m.get("metadata", {}).get("metric", "accuracy"),
                          m.get("metadata", {}).get("score",
                                                    m.get("metadata", {}).get("accuracy")),
                          m.get("metadata", {}).get("data_version"))
                         for m in data.models],
                        ["version", "aliases", "created", "model type", "metric",
                         "held-out score",
                         "data version"], "registry"))
    if data.alias_history:
        parts.append("<h2>History of the production alias</h2>")
        parts.append(_table([(e.get("at"), e.get("action"), e.get("previous"), e.get("version"),
                              e.get("by"), e.get("reason")) for e in data.alias_history],
                            ["when", "action", "from", "to", "by", "reason"], "aliases"))
    style = ("body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}")
    # An empty icon: a served page would otherwise ask for /favicon.ico and log a 404.
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>mlops run report</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


# --- entry points ------------------------------------------------------------------------
def write_report(ws: Workspace, output_dir: str | Path) -> list[Path]:
    """Write ``report.html`` and the PNG plots to a local folder.

    Args:
        ws: The workspace to report on.
        output_dir: The folder (created if missing).

    Returns:
        The files written, the HTML page first.

    Raises:
        BadInputError: The store has nothing to report (nothing is written).
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    data = collect(ws)
    plots = render_plots(data)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / REPORT_HTML
    page.write_text(render_html(data, plots), encoding="utf-8")
    written = [page]
    for name, png in plots.items():
        (out / name).write_bytes(png)
        written.append(out / name)
    return written


def write_report_to_store(ws: Workspace, run_id: str) -> str:
    """Write the self-contained page to ``runs/<run-id>/report.html`` in the store.

    Returns:
        The key written.

    Raises:
        BadInputError: The store has nothing to report.
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    data = collect(ws)
    key = layout.run_key(run_id, REPORT_HTML)
    ws.store.write_bytes(key, render_html(data, render_plots(data)).encode("utf-8"))
    return key


def serve_report(folder: str | Path, host: str = "127.0.0.1",
                 port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for a report folder (not started: call ``serve_forever``).

    Args:
        folder: The folder written by :func:`write_report`.
        host: The address to bind (default: this machine only).
        port: The port (0 picks a free one; see ``server_address``).

    Raises:
        BadInputError: The port is taken or the address cannot be bound.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise BadInputError(f"cannot serve the report on {host}:{port}: {err.strerror}") \
            from err


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
