"""Performance estimated without labels: CBPE (confidence-based performance estimation).

A classifier's predicted probabilities, once calibrated, say how often each prediction
is right: a row predicted as class ``k`` with calibrated probability ``p_k`` is
correct with probability ``p_k``. Summed over a batch, the calibrated probabilities
give the *expected* confusion counts, and from them the expected value of every metric
of the task, before any label arrives (NannyML's CBPE; docs/estimated-performance.md):

* ``accuracy``: the mean calibrated probability of the predicted class;
* ``balanced_accuracy`` and ``f1_macro``: per class ``k``, expected true positives
  ``TP_k`` (the calibrated ``p_k`` of the rows predicted ``k``), expected positives
  ``P_k`` (the sum of ``p_k``) and predicted rows ``N_k``: recall ``TP_k / P_k``,
  F1 ``2 TP_k / (P_k + N_k)``, averaged over the classes;
* ``roc_auc``: the AUC of the model's own scores with every row counted as a positive
  of weight ``p_k`` and a negative of weight ``1 - p_k`` (one-vs-rest macro for more
  classes, as the realized metric);
* ``log_loss``: the expected log-loss ``-sum_k p_k log q_k`` (``q``: the model's raw
  probabilities).

Calibration: at training time :func:`calibration_parts` counts, per class, the held-out
rows and positives in :data:`BINS` equal-width bins of the model's raw probability;
:func:`fit_calibration` fits one isotonic map per class (one-vs-rest, weighted by
the bins' rows) and returns it as plain JSON, kept in the model version's record: no
pickle of ours, exports untouched. Applying it (:func:`calibrate`) interpolates each
class's map and renormalizes the rows (uniform when every class maps to 0), as
NannyML and scikit-learn's ``CalibratedClassifierCV`` do for more than two classes.

Both steps come as mergeable parts (:func:`calibration_parts` /
:class:`CalibrationMerger`, :func:`estimate_parts` / :class:`EstimateMerger`): the
pandas engine makes one part, the Dask engine one per partition, merged as they
arrive, equal to one part of the concatenated rows (to rounding).

Known limits: the estimate holds only while ``P(y | x)`` is unchanged (covariate shift
only, no concept shift); it is as good as the calibration on the held-out split (few
held-out rows, or a batch whose scores fall where the held-out split had none, make
it rough). Regressions get no estimate (see docs/estimated-performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Equal-width bins of a class's raw probability that calibration counts rows in.
BINS = 1000
#: Calibration method recorded with the map.
METHOD = "isotonic"
#: The AUC's merged points are rounded to this many decimals beyond this many points.
ROC_MAX_POINTS = 2_000_000
ROC_DECIMALS = 9
#: The metrics CBPE estimates (the classification metrics of :mod:`mlops.gating`).
ESTIMATED = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss")


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _columns(n_classes: int) -> list[int]:
    # A binary model is calibrated on its positive class's column (the other is 1 - it).
    return [1] if n_classes == 2 else list(range(n_classes))


def prepared(model: Any, x: Any) -> tuple[Any, Any]:
    """``(final estimator, x transformed by the steps before it)`` of a scikit-learn
    Pipeline (the model and ``x`` as they are otherwise): a caller that needs both the
    metrics and the estimate transforms the rows once."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and len(steps) > 1:
        return model[-1], model[:-1].transform(x)
    return model, x


def model_proba(model: Any, x: Any) -> tuple[np.ndarray, list[Any]]:
    """The raw predicted probabilities of ``model`` on ``x`` and its classes.

    Raises:
        ValueError: The model has no ``predict_proba`` (no estimate is possible).
    """
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"{type(model).__name__} has no predict_proba")
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    return proba, [_py(c) for c in model.classes_]


# --- calibration ---------------------------------------------------------------------------
def calibration_parts(proba: np.ndarray, truth: np.ndarray | Sequence[Any],
                      classes: Sequence[Any]) -> dict[str, Any]:
    """Mergeable calibration counts of one partition of the held-out split.

    Args:
        proba: The model's raw probabilities, one column per class.
        truth: The true labels.
        classes: The model's classes (column order).

    Returns:
        ``{"n", "classes", "bins": {column: [rows, score sums, positives]}}`` (arrays
        of :data:`BINS`).
    """
    truth = np.asarray(truth)
    bins: dict[int, list[np.ndarray]] = {}
    for col in _columns(len(classes)) if len(truth) else ():
        q = proba[:, col]
        idx = np.clip((q * BINS).astype(np.int64), 0, BINS - 1)
        positive = (truth == classes[col]).astype(np.float64)
        bins[col] = [np.bincount(idx, minlength=BINS).astype(np.float64),
                     np.bincount(idx, weights=q, minlength=BINS),
                     np.bincount(idx, weights=positive, minlength=BINS)]
    return {"n": len(truth), "classes": [_py(c) for c in classes], "bins": bins}


class CalibrationMerger:
    """Merges :func:`calibration_parts` of partitions; :meth:`fit` makes the map."""

    def __init__(self) -> None:
        self.n = 0
        self.classes: list[Any] | None = None
        self.bins: dict[int, list[np.ndarray]] = {}

    def add(self, parts: Mapping[str, Any]) -> None:
        """Merge one partition's counts."""
        if not int(parts["n"]):
            return
        if self.classes is None:
            self.classes = list(parts["classes"])
        self.n += int(parts["n"])
        for col, arrays in parts["bins"].items():
            if col in self.bins:
                self.bins[col] = [a + b for a, b in zip(self.bins[col], arrays, strict=True)]
            else:
                self.bins[col] = [np.asarray(a, dtype=np.float64) for a in arrays]

    def fit(self) -> dict[str, Any] | None:
        """The calibration map (plain JSON), None when no row was added."""
        if not self.n or self.classes is None:
            return None
        from sklearn.isotonic import IsotonicRegression

        maps: dict[str, dict[str, list[float]]] = {}
        for col, (rows, sums, pos) in sorted(self.bins.items()):
            used = rows > 0
            x, y, w = sums[used] / rows[used], pos[used] / rows[used], rows[used]
            if len(x) == 1:  # one distinct score: the map is a constant
                maps[str(col)] = {"x": [float(x[0])], "y": [float(y[0])]}
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(x, y, sample_weight=w)
            maps[str(col)] = {"x": [float(v) for v in iso.X_thresholds_],
                              "y": [float(v) for v in iso.y_thresholds_]}
        return {"method": METHOD, "bins": BINS, "rows": self.n, "classes": self.classes,
                "maps": maps}


def fit_calibration(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The calibration map of the merged ``parts`` (see :class:`CalibrationMerger`)."""
    merger = CalibrationMerger()
    for p in parts:
        merger.add(p)
    return merger.fit()


def check_calibration(calibration: Any, classes: Sequence[Any]) -> str:
    """Why ``calibration`` cannot calibrate a model of ``classes`` ("" when it can)."""
    if not isinstance(calibration, Mapping) or calibration.get("method") != METHOD:
        return "no calibration map recorded with the model (trained before CBPE)"
    if list(calibration.get("classes") or []) != [_py(c) for c in classes]:
        return "the calibration map's classes are not the model's"
    maps = calibration.get("maps")
    if not isinstance(maps, Mapping):
        return "the calibration map is incomplete"
    for c in _columns(len(classes)):
        m = maps.get(str(c))
        x = m.get("x") if isinstance(m, Mapping) else None
        y = m.get("y") if isinstance(m, Mapping) else None
        if not isinstance(x, list) or not isinstance(y, list) or not x or len(x) != len(y) \
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in x + y):
            return f"the calibration map of class {classes[c]!r} is incomplete or damaged"
    return ""


def calibrate(proba: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """The calibrated probabilities of the raw ``proba`` (rows sum to 1)."""
    n_classes = proba.shape[1]
    maps = calibration["maps"]

    def mapped(col: int) -> np.ndarray:
        m = maps[str(col)]
        return np.clip(np.interp(proba[:, col], m["x"], m["y"]), 0.0, 1.0)

    if n_classes == 2:
        p1 = mapped(1)
        return np.column_stack([1.0 - p1, p1])
    out = np.column_stack([mapped(c) for c in range(n_classes)])
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / n_classes)
    return np.divide(out, total, out=uniform, where=total > 0)


# --- the estimate ---------------------------------------------------------------------------
def _score_points(scores: np.ndarray, pos_weight: np.ndarray) -> tuple[np.ndarray, ...]:
    values, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=pos_weight, minlength=len(values))
    neg = np.bincount(inverse, weights=1.0 - pos_weight, minlength=len(values))
    return values, pos, neg


def estimate_parts(proba: np.ndarray, calibration: Mapping[str, Any]) -> dict[str, Any]:
    """Mergeable sums of the estimate on one partition (no labels needed).

    Args:
        proba: The model's raw probabilities (the predicted class is the most probable
            one, as scikit-learn's and LightGBM's ``predict``).
        calibration: The model's map (:func:`fit_calibration`).

    Returns:
        ``{"n", "tp", "predicted", "positives", "log_loss_sum", "roc"}``: per class the
        expected true positives, predicted rows and expected positives; the summed
        expected log-loss; per scored column the AUC's weighted points.
    """
    n, k = proba.shape if proba.ndim == 2 else (0, 0)
    if not n:
        return {"n": 0}
    p = calibrate(proba, calibration)
    predicted = proba.argmax(axis=1)
    rows = np.arange(n)
    eps = np.finfo(np.float64).eps
    raw = np.clip(proba, eps, 1 - eps)
    raw = raw / raw.sum(axis=1, keepdims=True)
    return {
        "n": n,
        "tp": np.bincount(predicted, weights=p[rows, predicted], minlength=k),
        "predicted": np.bincount(predicted, minlength=k).astype(np.float64),
        "positives": p.sum(axis=0),
        "log_loss_sum": float(-(p * np.log(raw)).sum()),
        "roc": {c: _score_points(proba[:, c], p[:, c]) for c in _columns(k)},
    }


def merge_roc_points(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], max_points: int,
                     decimals: int) -> tuple[tuple[np.ndarray, ...], bool]:
    """Two sets of ROC points (distinct scores, positive weight, negative weight per score)
    as one, and whether the scores were rounded to ``decimals`` (beyond ``max_points``
    distinct scores: bounded memory, ties within the rounding then count half). Used by
    the realized metrics' merger (:class:`mlops.training.MetricMerger`) and CBPE's."""
    values = np.concatenate([a[0], b[0]])
    rounded = len(values) > max_points
    if rounded:
        values = np.round(values, decimals)
    merged, inverse = np.unique(values, return_inverse=True)
    pos = np.bincount(inverse, weights=np.concatenate([a[1], b[1]]), minlength=len(merged))
    neg = np.bincount(inverse, weights=np.concatenate([a[2], b[2]]), minlength=len(merged))
    return (merged, pos, neg), rounded


def roc_auc_of_points(points: tuple[np.ndarray, ...]) -> float | None:
    """The AUC of merged ROC points; None with one class present (as ``roc_auc_score``)."""
    _, pos, neg = points
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos <= 0 or n_neg <= 0:
        return None
    below = np.cumsum(neg) - neg  # negative weight at strictly lower scores
    return float(np.dot(pos, below + 0.5 * neg) / (n_pos * n_neg))


class EstimateMerger:
    """Merges :func:`estimate_parts` of partitions as they arrive (bounded memory)."""

    def __init__(self) -> None:
        self.n = 0
        self.tp = self.predicted = self.positives = np.zeros(0)
        self.log_loss_sum = 0.0
        self.roc: dict[int, tuple[np.ndarray, ...]] = {}
        self.rounded = False

    def add(self, parts: Mapping[str, Any]) -> None:
        """Merge one partition's sums."""
        n = int(parts["n"])
        if not n:
            return
        if not self.n:
            self.tp, self.predicted, self.positives = (np.zeros_like(parts["tp"]),) * 3
        self.n += n
        self.tp = self.tp + parts["tp"]
        self.predicted = self.predicted + parts["predicted"]
        self.positives = self.positives + parts["positives"]
        self.log_loss_sum += float(parts["log_loss_sum"])
        for c, points in parts["roc"].items():
            self.roc[c] = points if c not in self.roc else self._merge(self.roc[c], points)

    def _merge(self, a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]
               ) -> tuple[np.ndarray, ...]:
        merged, rounded = merge_roc_points(a, b, ROC_MAX_POINTS, ROC_DECIMALS)
        self.rounded = self.rounded or rounded
        return merged

    def metrics(self) -> dict[str, float | None]:
        """The estimated metrics (the keys of :data:`ESTIMATED`; None when undefined)."""
        out: dict[str, float | None] = dict.fromkeys(ESTIMATED)
        if not self.n:
            return out
        tp, pos, pred = self.tp, self.positives, self.predicted
        out["accuracy"] = float(tp.sum() / self.n)
        present = pos > 0
        if present.any():
            out["balanced_accuracy"] = float(np.mean(tp[present] / pos[present]))
        denom = pos + pred
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        out["f1_macro"] = float(np.mean(f1[denom > 0])) if (denom > 0).any() else None
        aucs = [roc_auc_of_points(points) for _, points in sorted(self.roc.items())]
        if aucs and all(a is not None for a in aucs):
            out["roc_auc"] = float(np.mean([a for a in aucs if a is not None]))
        ll = self.log_loss_sum / self.n
        out["log_loss"] = ll if math.isfinite(ll) else None
        return out


def estimate(proba: np.ndarray, calibration: Mapping[str, Any]) -> dict[str, float | None]:
    """The estimated metrics of one batch of raw probabilities (one part, merged)."""
    merger = EstimateMerger()
    merger.add(estimate_parts(proba, calibration))
    return merger.metrics()


def estimate_model(model: Any, x: Any, calibration: Any) -> tuple[dict[str, float | None], str]:
    """CBPE of ``model`` on the features ``x``: ``(estimated metrics, why not)``.

    The metrics are empty, with the reason, when the model has no probabilities or no
    usable calibration map (a model trained before CBPE, or a regression).
    """
    if not len(x):
        return {}, "no rows to estimate on"
    try:
        proba, classes = model_proba(model, x)
    except ValueError as err:
        return {}, str(err)
    why = check_calibration(calibration, classes)
    if why:
        return {}, why
    return estimate(proba, calibration), ""


__all__ = ["BINS", "ESTIMATED", "METHOD", "CalibrationMerger", "EstimateMerger",
           "calibrate", "calibration_parts", "check_calibration", "estimate",
           "estimate_model", "estimate_parts", "fit_calibration", "model_proba", "prepared"]
