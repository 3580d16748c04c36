"""Measure drift defaults: false retrains on resamples of one population, misses on shifts.

Usage::

    python -m benchmarks.drift_defaults            # full: 20 splits per table (~5 min)
    python -m benchmarks.drift_defaults --quick    # 4 splits: a smoke check

For each bundled real table (scikit-learn's offline ``breast_cancer``, ``wine``,
``diabetes`` and ``digits``; the same tables standardized, as a user who scales features
upstream sends them; and the data version shipped in ``tests/data/store-0.1.0``) and each
split (a fixed seed per split):

* the reference is built exactly as the train step builds it (the training split of one
  random half, through :meth:`mlops.monitor.ModelMonitor.reference_document`),
* the **null** batch is the other half: the same population, so any drift verdict is a
  false retrain,
* each **shift** is that other half changed the way real tables change: one feature
  scaled by 2.5 (a currency or unit change, the issue's income case), one feature moved
  by one standard deviation, a quarter of the features moved by half a standard
  deviation, and a sub-population (rows above the median of one feature).

Every method and threshold goes through the real code path
(:meth:`mlops.monitor.ModelMonitor.drift_report`), and the table counts false retrains
(share of null batches flagged) and misses (share of shifted batches not flagged). The
result is written to ``benchmarks/results/drift_defaults.{md,json}``; the defaults in
``mlops/config.py`` and the table in ``docs/decisions.md`` come from it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets

from mlops.drift import DriftSettings
from mlops.monitor import ModelMonitor
from mlops.store.filesystem import open_store

RESULTS_DIR = Path(__file__).parent / "results"
SHIPPED = Path(__file__).parent.parent / "tests" / "data" / "store-0.1.0"
#: The train step's reference is the training split of the night's data (1 - test_size).
TEST_SIZE = 0.2


def tables() -> Iterator[tuple[str, pd.DataFrame]]:
    """The bundled real tables (features only), raw and standardized."""
    loaders: dict[str, Callable[..., Any]] = {
        "breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes, "digits": datasets.load_digits}
    for name, load in loaders.items():
        frame = load(as_frame=True).frame.drop(columns=["target"])
        frame = frame.loc[:, frame.std() > 0]  # digits: pixels that are always 0
        yield name, frame
        if name != "diabetes":  # diabetes ships standardized already
            yield f"{name} (standardized)", (frame - frame.mean()) / frame.std()
    from mlops.store.versioner import DataVersioner

    versioner = DataVersioner(open_store(str(SHIPPED / "data")))
    for vid in versioner.list_versions():
        df, _ = versioner.load(vid)
        features = df.drop(columns=[c for c in df.columns if c == "target"])
        yield f"tests/data {vid}", features.select_dtypes("number")


@dataclass(frozen=True)
class Setting:
    """One method and threshold (a row of the table)."""

    label: str
    settings: DriftSettings


def settings_grid() -> list[Setting]:
    """The methods and thresholds measured (``drift_share`` 0.01: any one feature of up to
    100 drifting flags the batch)."""
    out = [Setting(f"mean_l1 drift_threshold={t:g}", DriftSettings("mean_l1", drift_threshold=t))
           for t in (0.05, 0.1, 0.2)]
    for share in (0.5, 0.25, 0.1, 0.01):
        out += [Setting(f"psi psi_threshold={t:g} drift_share={share:g}",
                        DriftSettings("psi", psi_threshold=t, drift_share=share))
                for t in (0.2, 0.5)]
        out += [Setting(f"ks ks_p_value={p:g} drift_share={share:g}",
                        DriftSettings("ks", ks_p_value=p, drift_share=share))
                for p in (0.05, 0.01, 0.001, 0.0001)]
        out += [Setting(f"wasserstein wasserstein_threshold={t:g} drift_share={share:g}",
                        DriftSettings("wasserstein", wasserstein_threshold=t,
                                      drift_share=share))
                for t in (0.1, 0.2, 0.3)]
    return out


def shifts(frame: pd.DataFrame, rng: np.random.Generator
           ) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """Real-looking shifts of a batch, each changing a random choice of features."""
    cols = list(frame.columns)
    std = frame.std()
    one = cols[int(rng.integers(len(cols)))]
    quarter = list(rng.choice(cols, size=max(1, len(cols) // 4), replace=False))
    split_on = cols[int(rng.integers(len(cols)))]
    median = float(frame[split_on].median())

    def scale(b: pd.DataFrame) -> pd.DataFrame:
        # x 2.5 around the column's minimum, so centred columns move too (a unit change
        # of a positive quantity: income in another currency).
        low = float(frame[one].min())
        return b.assign(**{one: low + (b[one] - low) * 2.5})

    def move(b: pd.DataFrame) -> pd.DataFrame:
        return b.assign(**{one: b[one] + std[one]})

    def move_quarter(b: pd.DataFrame) -> pd.DataFrame:
        return b.assign(**{c: b[c] + 0.5 * std[c] for c in quarter})

    def subpopulation(b: pd.DataFrame) -> pd.DataFrame:
        part = b[b[split_on] > median]
        return part if len(part) >= 10 else b.nlargest(len(b) // 2, split_on)

    return {"one feature x2.5": scale, "one feature +1 std": move,
            "25% of features +0.5 std": move_quarter, "sub-population": subpopulation}


def measure(splits: int, only: list[str] | None = None) -> dict[str, Any]:
    """Count false retrains and misses per setting over every table and split (``only``:
    these tables, for a smoke check)."""
    grid = settings_grid()
    false = {s.label: 0 for s in grid}
    missed = {s.label: 0 for s in grid}
    per_table: dict[str, dict[str, list[int]]] = {}
    nulls = shifted = 0
    table_names = []
    for name, frame in tables():
        if only is not None and name not in only:
            continue
        table_names.append(f"{name} ({len(frame)} rows x {frame.shape[1]} features)")
        per_table[name] = {s.label: [0, 0] for s in grid}
        for i in range(splits):
            rng = np.random.default_rng(1000 + i)
            order = rng.permutation(len(frame))
            half = len(frame) // 2
            night1, night2 = frame.iloc[order[:half]], frame.iloc[order[half:]]
            train = night1.iloc[: int(len(night1) * (1 - TEST_SIZE))]
            batches = {"null": night2}
            batches.update({k: f(night2) for k, f in shifts(frame, rng).items()})
            for s in grid:
                monitor = ModelMonitor(open_store("memory://drift-defaults"),
                                       drift_threshold=s.settings.drift_threshold,
                                       drift=s.settings)
                reference = monitor.reference_document(
                    {str(c): float(v) for c, v in train.mean().items()},
                    reference_frame=train)
                for kind, batch in batches.items():
                    report = monitor.drift_report(batch, reference=reference)
                    assert report is not None
                    if kind == "null" and report.dataset_drifted:
                        false[s.label] += 1
                        per_table[name][s.label][0] += 1
                    elif kind != "null" and not report.dataset_drifted:
                        missed[s.label] += 1
                        per_table[name][s.label][1] += 1
            nulls += 1
            shifted += len(batches) - 1
    rows = [{"setting": s.label, "false_retrains": false[s.label] / nulls,
             "misses": missed[s.label] / shifted,
             "per_table": {t: {"false": v[s.label][0] / splits,
                               "misses": v[s.label][1] / (splits * 4)}
                           for t, v in per_table.items()}}
            for s in grid]
    return {"splits_per_table": splits, "null_batches": nulls, "shifted_batches": shifted,
            "tables": table_names, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    """The table of :func:`measure` as Markdown."""
    lines = [f"{result['null_batches']} same-population batches, {result['shifted_batches']} "
             f"shifted batches ({result['splits_per_table']} splits per table) over: "
             + "; ".join(result["tables"]) + ".", "",
             "| method and threshold | false retrains | misses |", "|---|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['setting']} | {r['false_retrains']:.1%} | {r['misses']:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure and write ``benchmarks/results/drift_defaults.{md,json}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 splits per table")
    parser.add_argument("--splits", type=int, default=20, help="splits per table")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="result folder")
    args = parser.parse_args()
    result = measure(4 if args.quick else args.splits)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_defaults.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "drift_defaults.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
