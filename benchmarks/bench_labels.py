"""B15: the late labels' join (:func:`mlops.performance.labels.join`) on 1M stored
predictions vs a bare ``pandas.merge`` of the same frames.

The predictions are what a night stores (a string id, the prediction, one probability per
class); the labels arrive as a CSV would give them (the ids of 60% of the rows, shuffled,
read as strings) with their target. Both sides do the same inner join on the id; the
library also checks and aligns the id columns' dtypes (a CSV reads numeric ids where the
batch stored strings, or the reverse). B15m (no target) adds every realized metric of the
task on the joined rows (what a night's realized score costs), against the same merge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.performance.labels import join, realized_metrics

ID = "customer_id"


def frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(predictions, labels)``: ``rows`` stored predictions and the labels of 60% of them."""
    rng = np.random.default_rng(seed)
    ids = pd.Series([f"c-{i}" for i in range(rows)], dtype=object)
    p1 = rng.random(rows)
    truth = (rng.random(rows) < p1).astype(np.int64)
    preds = pd.DataFrame({ID: ids, "prediction": (p1 >= 0.5).astype(np.int64),
                          "probability_0": 1 - p1, "probability_1": p1})
    picked = rng.permutation(rows)[: int(rows * 0.6)]
    labels = pd.DataFrame({ID: ids.to_numpy()[picked], "target": truth[picked]})
    return preds, labels


def ours(preds: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The library's join."""
    return join(preds, labels, [ID])


def ours_with_metrics(preds: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float | None]:
    """The join and every realized metric of a classification."""
    return realized_metrics(join(preds, labels, [ID]), "target", "classification")


def bare(preds: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """A bare inner merge on the id."""
    return preds.merge(labels, on=ID, how="inner")
