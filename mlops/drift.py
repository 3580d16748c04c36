"""Per-feature drift statistics and the drift report (pure functions, no I/O).

Methods (``monitoring.drift_method``):

* ``mean_l1`` (default): the relative L1 distance of feature means (see
  :func:`mlops.monitor.relative_l1`). The per-feature statistic is each feature's
  relative change ``|current - reference| / |reference|`` (``|current|`` when the
  reference mean is 0); the dataset drifts when the whole score exceeds
  ``drift_threshold``. It sees a moved mean, not a change of spread or shape.
* ``psi``: population stability index over quantile bins of the reference;
  a feature drifts at ``psi >= psi_threshold`` (default 0.2).
* ``ks``: two-sample Kolmogorov-Smirnov test (SciPy); a feature drifts at
  ``p < ks_p_value`` (default 0.05).
* ``wasserstein``: Wasserstein-1 distance (SciPy) divided by the reference
  standard deviation; a feature drifts at ``>= wasserstein_threshold`` (default 0.1).
* ``auto``: Evidently's defaults: ``ks`` when the reference has at most
  :data:`AUTO_KS_MAX_ROWS` rows, else normalized ``wasserstein``.

Categorical and bool features (see :func:`mlops.data.feature_kind`) are compared on
their category shares: ``psi`` is PSI over the categories, ``ks`` a chi-square
goodness-of-fit test (its p-value against ``ks_p_value``), ``wasserstein`` and ``auto``
the Jensen-Shannon distance (against ``wasserstein_threshold``); categories never seen
in training count in their own bin (``unseen``). Every feature's report carries its
missing-value rate next to the reference's; ``mean_l1`` uses the numeric features.

For the per-feature methods the dataset drifts when the share of drifted features
is at least ``drift_share`` (default 0.5), and the report's ``score`` (the ``drift``
float of step results and summaries) is that share.

Every statistic is one row of :data:`STAT_TESTS` (name, method, feature kind, the
``monitoring.*`` key of its threshold, the direction it drifts in), with an exact-values
implementation and a sketch implementation (registered by
:mod:`mlops.engines.sketches`), as Evidently's stat-test registry keeps one per engine.
Both engines' reports run one loop (:func:`feature_report`), and a feature's result is
made in one place (:meth:`StatTest.judge`).

The reference (:func:`build_reference`) keeps only what the methods need: per
feature the mean, the standard deviation, quantile bin edges with the reference's
bin shares, and a bounded, deterministic sample (at most ``sample_size`` rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.choices import BOOL, CATEGORICAL, DRIFT_METHODS, NUMERIC
from mlops.errors import ConfigError, DataValidationError

if TYPE_CHECKING:  # numpy, pandas and scipy load with the first drift computation:
    import numpy as np  # the settings and reports stay cheap for read-only commands
    import pandas as pd

MEAN_L1 = "mean_l1"
PSI = "psi"
KS = "ks"
WASSERSTEIN = "wasserstein"
AUTO = "auto"
METHODS = DRIFT_METHODS
#: ``auto`` uses KS up to this many reference rows, normalized Wasserstein above.
AUTO_KS_MAX_ROWS = 1000
#: Rows of the reference sample kept per feature (deterministic sampling).
DEFAULT_SAMPLE_SIZE = 5000
#: PSI bin edges and reference shares come from at most this many (deterministically
#: sampled) rows: a bin share's standard error there is under 0.001, and a quantile pass
#: over millions of training rows would cost seconds on every retrain.
BIN_SAMPLE_SIZE = 200_000
#: Shares below this are clipped before taking logarithms in PSI (as Evidently does).
PSI_EPSILON = 1e-4
_SAMPLE_SEED = 0
#: Categorical features: the reference keeps the shares of at most this many (most
#: frequent) categories; the rest are pooled as :data:`OTHER`.
MAX_REFERENCE_CATEGORIES = 200
#: The pooled share of categories seen in training beyond the kept ones.
OTHER = "__other__"
#: The pooled share of categories never seen in training.
UNSEEN = "__unseen__"
#: Statistics of categorical features: chi-square p-value (for ``ks``), Jensen-Shannon
#: distance (for ``wasserstein``), PSI over categories (for ``psi``).
CHI2 = "chi2"
JENSEN_SHANNON = "jensen_shannon"
PSI_CATEGORIES = "psi"


@dataclass(frozen=True)
class DriftSettings:
    """Thresholds of the drift methods (the ``monitoring.*`` config keys).

    Raises:
        ConfigError: Unknown method or a threshold out of range, naming the key.
    """

    method: str = MEAN_L1
    drift_threshold: float = 0.1
    drift_share: float = 0.5
    psi_threshold: float = 0.2
    psi_bins: int = 10
    ks_p_value: float = 0.05
    wasserstein_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"config key 'monitoring.drift_method': unknown drift method "
                              f"'{self.method}' (use one of {', '.join(METHODS)})")
        checks = [
            ("drift_threshold", self.drift_threshold >= 0, ">= 0"),
            ("drift_share", 0 < self.drift_share <= 1, "in (0, 1]"),
            ("psi_threshold", self.psi_threshold > 0, "> 0"),
            ("psi_bins", 2 <= self.psi_bins <= 1000, "between 2 and 1000"),
            ("ks_p_value", 0 < self.ks_p_value < 1, "between 0 and 1, exclusive"),
            ("wasserstein_threshold", self.wasserstein_threshold > 0, "> 0"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"config key 'monitoring.{key}' must be {rule}, "
                                  f"got {getattr(self, key)!r}")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift statistic.

    Attributes:
        feature: Column name.
        method: The statistic (``mean_l1``, ``psi``, ``ks``, ``wasserstein``).
        statistic: The value compared with the threshold (for ``ks`` the p-value).
        threshold: The threshold it was compared with.
        drifted: Whether this feature drifted.
    """

    feature: str
    method: str
    statistic: float
    threshold: float
    drifted: bool
    kind: str = "numeric"
    missing_rate: float | None = None
    reference_missing_rate: float | None = None
    unseen: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"feature": self.feature, "method": self.method,
                "statistic": _json_float(self.statistic), "threshold": self.threshold,
                "drifted": self.drifted, "kind": self.kind, "missing_rate": self.missing_rate,
                "reference_missing_rate": self.reference_missing_rate, "unseen": self.unseen}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDrift:
        """Inverse of :meth:`to_dict`."""
        stat = data["statistic"]
        miss, ref_miss = data.get("missing_rate"), data.get("reference_missing_rate")
        return cls(feature=str(data["feature"]), method=str(data["method"]),
                   statistic=math.inf if stat is None else float(stat),
                   threshold=float(data["threshold"]), drifted=bool(data["drifted"]),
                   kind=str(data.get("kind", NUMERIC)),
                   missing_rate=None if miss is None else float(miss),
                   reference_missing_rate=None if ref_miss is None else float(ref_miss),
                   unseen=int(data.get("unseen", 0)))


@dataclass(frozen=True)
class DriftReport:
    """The drift of one batch against the reference.

    Attributes:
        method: The configured method (``auto`` stays ``auto``; each feature names
            the statistic used).
        features: Per-feature statistics, in column order.
        share_drifted: Share of shared features that drifted (0 without features).
        score: The ``drift`` float: the relative L1 score for ``mean_l1``, else
            ``share_drifted``.
        threshold: What ``score`` is compared with (``drift_threshold`` or ``drift_share``).
        dataset_drifted: Whether the batch as a whole drifted.
        reference_rows: Rows the reference was built from (None when unknown).
        note: Why the report is not what was configured (e.g. an old reference), or "".
    """

    method: str
    features: tuple[FeatureDrift, ...] = field(default_factory=tuple)
    share_drifted: float = 0.0
    score: float = 0.0
    threshold: float = 0.0
    dataset_drifted: bool = False
    reference_rows: int | None = None
    note: str = ""

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"method": self.method, "features": [f.to_dict() for f in self.features],
                "share_drifted": self.share_drifted, "score": _json_float(self.score),
                "threshold": self.threshold, "dataset_drifted": self.dataset_drifted,
                "reference_rows": self.reference_rows, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """Inverse of :meth:`to_dict`."""
        score = data.get("score", 0.0)
        rows = data.get("reference_rows")
        return cls(method=str(data["method"]),
                   features=tuple(FeatureDrift.from_dict(f) for f in data.get("features", [])),
                   share_drifted=float(data.get("share_drifted", 0.0)),
                   score=math.inf if score is None else float(score),
                   threshold=float(data.get("threshold", 0.0)),
                   dataset_drifted=bool(data.get("dataset_drifted", False)),
                   reference_rows=None if rows is None else int(rows),
                   note=str(data.get("note", "")))


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no infinity


# --- the reference -----------------------------------------------------------------------
def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior bin edges at the reference's quantiles (duplicates removed).

    The outer bins are open (``-inf``, ``+inf``), so values outside the reference's
    range land in the first or last bin.
    """
    import numpy as np

    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(qs)]


def bin_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, e1), [e1, e2), ..., [ek, inf)``."""
    import numpy as np

    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def sample_rows(n: int, size: int) -> np.ndarray:
    """Deterministic row positions of a sample of at most ``size`` of ``n`` rows (sorted)."""
    import numpy as np

    if n <= size:
        return np.arange(n)
    rng = np.random.default_rng(_SAMPLE_SEED)
    return np.sort(rng.choice(n, size=size, replace=False))


def _kind(series: pd.Series, name: str) -> str | None:
    from mlops.data import feature_kind

    try:
        kind = feature_kind(series, name)
    except DataValidationError:
        return None
    return CATEGORICAL if kind == BOOL else kind


def category_counts(series: pd.Series) -> pd.Series:
    """Rows per category of a categorical (or bool) feature, most frequent first, missing
    values left out; the index holds the categories as strings.

    Counting runs on the column as it is (Arrow strings stay Arrow strings), and only the
    distinct values become Python strings: a copy of a million-row column as Python
    objects would cost more than the count.
    """
    import pandas as pd

    counts = series.value_counts(dropna=True, sort=True)
    counts = counts[counts > 0]  # a category dtype lists unused categories
    counts.index = pd.Index([str(v) for v in counts.index], dtype=object)
    return counts.groupby(level=0, sort=False).sum().sort_values(ascending=False, kind="stable")


def build_reference(frame: pd.DataFrame, bins: int = 10,
                    sample_size: int = DEFAULT_SAMPLE_SIZE) -> dict[str, Any]:
    """What the drift methods need of the training features, as plain data.

    Args:
        frame: The training features (the target excluded); any supported kinds,
            missing values allowed.
        bins: Quantile bins for PSI.
        sample_size: At most this many rows are kept per numeric feature.

    Numeric features: bin edges and shares come from at most :data:`BIN_SAMPLE_SIZE`
    rows, mean and std from every non-missing row. Categorical and bool features: the
    share of each category (the :data:`MAX_REFERENCE_CATEGORIES` most frequent ones,
    the rest pooled). Every feature: its missing-value rate.

    Returns:
        ``{"rows", "bins", "sample_size", "features": {name: {kind, missing_rate, ...}}}``
        with ``mean, std, edges, shares, sample`` for numeric features and
        ``categories`` (category -> share of non-missing rows) for categorical ones.
    """
    import numpy as np

    positions = sample_rows(len(frame), sample_size)
    bin_positions = sample_rows(len(frame), BIN_SAMPLE_SIZE)
    features: dict[str, Any] = {}
    for col in frame.columns:
        series = frame[col]
        kind = _kind(series, str(col))
        if kind is None:
            continue
        n_missing = int(series.isna().sum())
        missing_rate = n_missing / len(series) if len(series) else 0.0
        if kind == CATEGORICAL:
            counts = category_counts(series)
            total = float(counts.sum()) or 1.0
            kept = counts.iloc[:MAX_REFERENCE_CATEGORIES]
            cats = {str(k): float(v) / total for k, v in kept.items()}
            if len(counts) > len(kept):
                cats[OTHER] = float(counts.iloc[MAX_REFERENCE_CATEGORIES:].sum()) / total
            features[str(col)] = {"kind": CATEGORICAL, "missing_rate": missing_rate,
                                  "categories": cats}
            continue
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        binned = values if len(bin_positions) == len(values) else values[bin_positions]
        sampled = values[positions]
        if n_missing:
            values, binned, sampled = (v[~np.isnan(v)] for v in (values, binned, sampled))
        if values.size == 0:
            continue
        edges = quantile_edges(binned, bins)
        features[str(col)] = {
            "kind": NUMERIC,
            "missing_rate": missing_rate,
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "edges": edges,
            "shares": [float(s) for s in bin_shares(binned, edges)],
            "sample": [float(v) for v in sampled],
        }
    return {"rows": len(frame), "bins": bins, "sample_size": sample_size,
            "features": features}


# --- statistics --------------------------------------------------------------------------
def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))``, shares clipped at 1e-4."""
    import numpy as np

    r = np.clip(np.asarray(reference_shares, dtype=np.float64), PSI_EPSILON, None)
    c = np.clip(np.asarray(current_shares, dtype=np.float64), PSI_EPSILON, None)
    return float(np.sum((c - r) * np.log(c / r)))


def category_shares(reference: Mapping[str, float], current: pd.Series,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Reference shares, current shares and current counts over the reference's categories,
    plus the pooled bins :data:`OTHER` and :data:`UNSEEN`; and the count of current rows
    whose category was never seen in training.

    A category pooled as ``__other__`` in the reference counts there; one never seen
    counts as ``__unseen__`` (reference share 0).
    """
    return shares_of_counts(reference, category_counts(current))


def shares_of_counts(reference: Mapping[str, float], counts: Mapping[str, int] | pd.Series,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`category_shares` of a batch given as its rows per category (strings, as
    :func:`category_counts` gives them; the Dask engine merges them over partitions)."""
    import numpy as np

    cats = [c for c in reference if c != OTHER]
    known = set(cats)
    ref = np.array([float(reference[c]) for c in cats] + [float(reference.get(OTHER, 0.0)), 0.0])
    cur = np.array([float(counts.get(c, 0)) for c in cats] + [0.0, 0.0])
    extra = sum(int(v) for k, v in counts.items() if k not in known)
    # Without a pooled bin in the reference every other category is unseen.
    if OTHER in reference:
        cur[-2] = float(extra)
        unseen = 0
    else:
        cur[-1] = float(extra)
        unseen = extra
    total = cur.sum()
    return ref, cur / total if total else cur, cur, unseen


def chi2_p_value(reference_shares: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of the chi-square goodness-of-fit test of ``current_counts`` against the
    reference shares (clipped at :data:`PSI_EPSILON` so unseen categories count)."""
    import numpy as np
    from scipy import stats

    n = float(current_counts.sum())
    if n == 0:
        return 1.0
    expected = np.clip(reference_shares, PSI_EPSILON, None)
    expected = expected / expected.sum() * n
    return float(stats.chisquare(current_counts, expected).pvalue)


def js_distance(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two share vectors."""
    from scipy.spatial.distance import jensenshannon

    if not current_shares.sum() or not reference_shares.sum():
        return 0.0
    return float(jensenshannon(reference_shares, current_shares, base=2))


def ks_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``)."""
    from scipy import stats

    return float(stats.ks_2samp(reference, current).pvalue)


def normalized_wasserstein(reference: np.ndarray, current: np.ndarray, std: float) -> float:
    """Wasserstein-1 distance divided by the reference's standard deviation.

    A constant reference (std 0) is compared on the raw distance.
    """
    from scipy import stats

    dist = float(stats.wasserstein_distance(reference, current))
    return dist / std if std > 0 else dist


def relative_change(reference: float, current: float) -> float:
    """``|current - reference| / |reference|`` (``|current - reference|`` at a 0 reference)."""
    den = abs(reference)
    num = abs(current - reference)
    return num / den if den > 0 else num


def relative_l1(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """``sum|current - reference| / sum|reference|`` over shared keys.

    When every shared reference mean is 0 the denominator is replaced by 1; no shared
    key gives 0.
    """
    shared = [k for k in reference if k in current]
    if not shared:
        return 0.0
    num = sum(abs(float(current[k]) - float(reference[k])) for k in shared)
    den = sum(abs(float(reference[k])) for k in shared)
    score = num / den if den > 0 else num
    return score if math.isfinite(score) else math.inf


def resolve_method(method: str, reference_rows: int | None) -> str:
    """The statistic ``method`` uses for a reference of ``reference_rows`` rows."""
    if method != AUTO:
        return method
    return KS if reference_rows is not None and reference_rows <= AUTO_KS_MAX_ROWS \
        else WASSERSTEIN


# --- the statistics table --------------------------------------------------------------------
#: How a statistic is compared with its threshold: drifted at ``value >= threshold``
#: (distances, PSI), ``value > threshold`` (``mean_l1``'s relative change) or
#: ``value < threshold`` (p-values).
AT_LEAST = ">="
ABOVE = ">"
BELOW = "<"


@dataclass(frozen=True)
class StatTest:
    """One drift statistic: what it is called, which method and feature kind it serves,
    which ``monitoring.*`` key holds its threshold and which way it drifts, and its
    exact-values implementation. Its sketch implementation (the Dask engine's, from
    merged KLL sketches) is registered by :mod:`mlops.engines.sketches`
    (:func:`add_sketch_impl`), as Evidently registers a stat test's engine
    implementations; the input of ``mean_l1`` (means) and of the categorical statistics
    (rows per category) merges exactly, so their exact implementation serves both.

    Implementations: numeric ``exact(reference_feature, values) -> value``;
    categorical ``exact(reference_shares, current_shares, current_counts) -> value``;
    ``mean_l1`` ``exact(reference_mean, current_mean) -> value``.
    """

    name: str
    method: str
    kind: str
    threshold_key: str
    direction: str
    exact: Callable[..., float]
    #: Its input merges exactly over partitions (feature means, rows per category): the
    #: exact implementation is the sketch one too.
    merges_exactly: bool = False

    @property
    def sketch(self) -> Callable[..., float]:
        """The implementation from sketches (see the class docstring).

        Raises:
            LookupError: None is registered (:mod:`mlops.engines.sketches` not imported).
        """
        if self.merges_exactly:
            return self.exact
        try:
            return _SKETCH_IMPLS[self.name]
        except KeyError:
            raise LookupError(f"drift statistic '{self.name}' has no sketch "
                              "implementation registered") from None

    def threshold(self, settings: DriftSettings) -> float:
        """Its threshold: ``monitoring.<threshold_key>``."""
        return float(getattr(settings, self.threshold_key))

    def drifted(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is drift against ``threshold`` (see :data:`AT_LEAST`)."""
        if self.direction == BELOW:
            return value < threshold
        return value > threshold if self.direction == ABOVE else value >= threshold

    def judge(self, feature: str, value: float, settings: DriftSettings,
              **facts: Any) -> FeatureDrift:
        """The feature's :class:`FeatureDrift`: the one place one is made from a value."""
        threshold = self.threshold(settings)
        return FeatureDrift(feature, self.name, value, threshold,
                            self.drifted(value, threshold), kind=self.kind, **facts)


def _exact_psi(ref: Mapping[str, Any], values: np.ndarray) -> float:
    import numpy as np

    return psi(np.asarray(ref["shares"]), bin_shares(values, list(ref["edges"])))


def _exact_ks(ref: Mapping[str, Any], values: np.ndarray) -> float:
    import numpy as np

    return ks_p_value(np.asarray(ref["sample"], dtype=np.float64), values)


def _exact_wasserstein(ref: Mapping[str, Any], values: np.ndarray) -> float:
    import numpy as np

    return normalized_wasserstein(np.asarray(ref["sample"], dtype=np.float64), values,
                                  float(ref["std"]))


def _categories_psi(ref: np.ndarray, cur: np.ndarray, counts: np.ndarray) -> float:
    return psi(ref, cur)


def _categories_chi2(ref: np.ndarray, cur: np.ndarray, counts: np.ndarray) -> float:
    return chi2_p_value(ref, counts)


def _categories_js(ref: np.ndarray, cur: np.ndarray, counts: np.ndarray) -> float:
    return js_distance(ref, cur)


#: Every drift statistic, once: ``(name, method, kind, threshold key, direction, exact,
#: merges exactly)``.
STAT_TESTS: tuple[StatTest, ...] = (
    StatTest(MEAN_L1, MEAN_L1, NUMERIC, "drift_threshold", ABOVE, relative_change, True),
    StatTest(PSI, PSI, NUMERIC, "psi_threshold", AT_LEAST, _exact_psi),
    StatTest(KS, KS, NUMERIC, "ks_p_value", BELOW, _exact_ks),
    StatTest(WASSERSTEIN, WASSERSTEIN, NUMERIC, "wasserstein_threshold", AT_LEAST,
             _exact_wasserstein),
    StatTest(PSI_CATEGORIES, PSI, CATEGORICAL, "psi_threshold", AT_LEAST, _categories_psi,
             True),
    StatTest(CHI2, KS, CATEGORICAL, "ks_p_value", BELOW, _categories_chi2, True),
    StatTest(JENSEN_SHANNON, WASSERSTEIN, CATEGORICAL, "wasserstein_threshold", AT_LEAST,
             _categories_js, True),
)
_BY_METHOD = {(t.method, t.kind): t for t in STAT_TESTS}
#: Sketch implementations of the numeric statistics, by name (:func:`add_sketch_impl`).
_SKETCH_IMPLS: dict[str, Callable[..., float]] = {}


def add_sketch_impl(name: str, impl: Callable[..., float]) -> None:
    """Register the sketch implementation of the numeric statistic ``name``
    (``impl(reference_feature, sketch, context) -> value``)."""
    if (name, NUMERIC) not in {(t.name, t.kind) for t in STAT_TESTS}:
        raise ValueError(f"no numeric drift statistic '{name}' in STAT_TESTS")
    _SKETCH_IMPLS[name] = impl


def stat_test(method: str, kind: str = NUMERIC) -> StatTest:
    """The statistic of a resolved ``method`` (not ``auto``) for a feature ``kind``."""
    return _BY_METHOD[(method, CATEGORICAL if kind == BOOL else kind)]


# --- reports -------------------------------------------------------------------------------
def mean_l1_report(reference_means: Mapping[str, float], current_means: Mapping[str, float],
                   settings: DriftSettings, note: str = "") -> DriftReport:
    """The ``mean_l1`` report (the dataset score is :func:`relative_l1`).

    Args:
        reference_means: The reference's feature means.
        current_means: The new batch's feature means.
        settings: The thresholds (``drift_threshold`` applies to each feature and the score).
        note: Why this report was made instead of the configured one, if it was.

    Returns:
        The report.
    """
    test = stat_test(MEAN_L1)
    feats = [test.judge(k, test.exact(float(reference_means[k]), float(current_means[k])),
                        settings)
             for k in reference_means if k in current_means]
    score = relative_l1(reference_means, current_means)
    share = sum(f.drifted for f in feats) / len(feats) if feats else 0.0
    threshold = test.threshold(settings)
    return DriftReport(method=MEAN_L1, features=tuple(feats), share_drifted=share, score=score,
                       threshold=threshold, dataset_drifted=test.drifted(score, threshold),
                       note=note)


#: A batch's numeric feature as a report reads it: ``(name, reference feature, its
#: statistic) -> (value, missing rate)``, or None when the batch has no such feature.
NumericValue = Callable[[str, Mapping[str, Any], StatTest], "tuple[float, float | None] | None"]
#: A batch's categorical feature: ``name -> (rows per category, missing rate)`` or None.
CategoryCounts = Callable[[str], "tuple[Mapping[str, int] | pd.Series, float] | None"]


def feature_report(reference: Mapping[str, Any], settings: DriftSettings,
                   numeric: NumericValue, categories: CategoryCounts) -> DriftReport:
    """The per-feature report (``psi``, ``ks``, ``wasserstein`` or ``auto``) of a batch,
    whichever engine measures it: the one loop over the reference's features.

    Args:
        reference: A drift reference (:func:`build_reference` or
            :func:`mlops.engines.sketches.reference_from_sketches` output).
        settings: Method and thresholds.
        numeric: Measures a numeric feature with its statistic (the exact
            implementation on values, or the sketch one).
        categories: The batch's rows per category of a categorical feature.

    Returns:
        The report; features missing on either side are left out.
    """
    rows = reference.get("rows")
    method = resolve_method(settings.method, rows)
    feats = []
    for name, ref in reference.get("features", {}).items():
        kind = ref.get("kind", NUMERIC)
        test = stat_test(method, kind)
        facts: dict[str, Any] = {"reference_missing_rate": ref.get("missing_rate")}
        if kind == CATEGORICAL:
            got = categories(name)
            if got is None:
                continue
            counts, missing = got
            ref_shares, cur_shares, cur_counts, unseen = shares_of_counts(
                ref.get("categories", {}), counts)
            value = test.exact(ref_shares, cur_shares, cur_counts)
            facts.update(missing_rate=missing, unseen=unseen)
        else:
            measured = numeric(name, ref, test)
            if measured is None:
                continue
            value, facts["missing_rate"] = measured
        feats.append(test.judge(name, value, settings, **facts))
    return per_feature_report(feats, settings, rows)


def distribution_report(reference: Mapping[str, Any], current: pd.DataFrame,
                        settings: DriftSettings) -> DriftReport:
    """The per-feature report of a batch's values (the exact implementations).

    Args:
        reference: The output of :func:`build_reference`.
        current: The new batch's features (extra columns are ignored).
        settings: Method and thresholds.

    Returns:
        The report; features missing from either side are left out.
    """
    import numpy as np

    def missing_rate(name: str) -> float:
        series = current[name]
        return float(series.isna().mean()) if len(series) else 0.0

    def numeric(name: str, ref: Mapping[str, Any], test: StatTest
                ) -> tuple[float, float | None] | None:
        if name not in current.columns:
            return None
        series = current[name]
        if _kind(series, name) != NUMERIC:
            return None  # re-typed: a schema change, reported by monitor-check
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return None
        return test.exact(ref, values), missing_rate(name)

    def categories(name: str) -> tuple[pd.Series, float] | None:
        if name not in current.columns:
            return None
        return category_counts(current[name]), missing_rate(name)

    return feature_report(reference, settings, numeric, categories)


def per_feature_report(feats: list[FeatureDrift], settings: DriftSettings,
                       reference_rows: int | None) -> DriftReport:
    """The report of per-feature statistics: the score is the share of drifted features.

    Args:
        feats: One statistic per shared feature.
        settings: Method and ``drift_share``.
        reference_rows: Rows the reference was built from (None when unknown).
    """
    share = sum(f.drifted for f in feats) / len(feats) if feats else 0.0
    return DriftReport(method=settings.method, features=tuple(feats), share_drifted=share,
                       score=share, threshold=settings.drift_share,
                       dataset_drifted=bool(feats) and share >= settings.drift_share,
                       reference_rows=None if reference_rows is None else int(reference_rows))
