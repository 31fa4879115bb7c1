"""The statistics behind the study's tables: intervals of a metric, paired differences between
losses, and the correction for making many comparisons at once.

Intervals of one cell (one loss, one training distribution, one test set):
- several seeds: mean ± sd over seeds is what a cell prints; its 95% interval is the t interval
  of the mean over seeds;
- one seed: the test-set sampling interval of the single run: Wilson's score interval for a
  proportion (accuracy; sensitivity and specificity with the classes taken as balanced), which
  keeps a width at accuracy 1.0 where Wald's has none; for the AUC the Hanley & McNeil (1982)
  variance, the closed form from the AUC and the class sizes (DeLong's needs the predictions,
  which a run's metrics.json does not keep). A run that records its own interval
  (``<metric>_ci_low`` / ``_ci_high``) is given that one instead.

Differences between two losses (same training distribution and test set):
- several seeds: every loss is run with the same seeds on the same test sets, so the
  differences are paired by seed: mean difference, 95% t interval, paired t-test;
- one seed: the difference of two proportions measured on the same test set, with Newcombe's
  (1998) hybrid score interval and a pooled two-proportion z-test (AUC: the two Hanley-McNeil
  variances added). Both treat the two runs as independent samples, which overstates the noise of
  a difference on one shared test set: they err on the side of "does not hold". They cover
  test-set noise only, not seed-to-seed variation.
The p-values of a table's comparisons are Holm-corrected (Holm 1979), so that "holds" (adjusted
p < 0.05) keeps the chance of any false claim in the table below 5%.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

LEVEL = 0.95
ALPHA = 1 - LEVEL
Z95 = statistics.NormalDist().inv_cdf(0.5 + LEVEL / 2)
PROPORTIONS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity")
# Metrics measured on one class only: their count is taken as half the test set.
ONE_CLASS = ("sensitivity", "specificity")


def wilson_interval(successes: float, n: float) -> tuple[float, float]:
    """Wilson's 95% score interval of a proportion (``nodulelearn.sensitivity.intervals``)."""
    from nodulelearn.sensitivity.intervals import wilson_interval as wilson

    return wilson(int(round(successes)), int(round(n)), level=LEVEL)


def hanley_mcneil_se(auc: float, n_pos: float, n_neg: float) -> float:
    """Standard error of an AUC from the AUC and the class sizes (Hanley & McNeil 1982, eq. 2)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    ) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _count(metric: str, n: float) -> float:
    return n / 2 if metric in ONE_CLASS else n


def sampling_interval(metric: str, value: float, n: float | None) -> tuple[float, float]:
    """95% test-set interval of one run's ``metric`` measured on ``n`` samples (nan if unknown)."""
    if not n or value is None or not math.isfinite(value):
        return math.nan, math.nan
    if metric in PROPORTIONS:
        count = _count(metric, n)
        return wilson_interval(value * count, count)
    if metric == "auc":
        half = Z95 * hanley_mcneil_se(value, n / 2, n / 2)
        return max(0.0, value - half), min(1.0, value + half)
    return math.nan, math.nan


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A metric over seeds.

    Attributes:
        mean: mean over seeds.
        sd: sample standard deviation over seeds (``nan`` with one seed).
        k: number of seeds.
        lo, hi: its 95% interval (see the module docstring).
    """

    mean: float
    sd: float
    k: int
    lo: float
    hi: float

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share a point (False when either is unknown).

        Used only to flag a ranking of modes as uncertain; differences between losses are
        tested (``paired_difference``, ``single_difference``), not read off overlapping bars.
        """
        return self.lo <= other.hi + 1e-9 and other.lo <= self.hi + 1e-9

    def text(self, digits: int = 3) -> str:
        """``mean ± sd``; with one seed the value and its interval, ``0.900 [0.825, 0.945]``."""
        if self.k >= 2:
            return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"
        if self.k == 1 and self.has_interval:
            return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        return f"{self.mean:.{digits}f}"


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% t interval of the mean of ``values`` (at least two)."""
    k = len(values)
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = float(_scipy_stats().t.ppf(0.5 + LEVEL / 2, k - 1)) * sd / math.sqrt(k)
    return mean - half, mean + half


def estimate(
    values: Sequence[float | None],
    *,
    metric: str = "",
    n: float | None = None,
    interval: tuple[float | None, float | None] | None = None,
) -> Estimate:
    """Mean, sd and 95% interval of one metric over seeds.

    Args:
        values: the metric of each seed (non-finite values are dropped).
        metric: the metric's name, for the single-seed sampling interval.
        n: test-set size, for the single-seed sampling interval.
        interval: with one seed, use this ``(lo, hi)`` instead (e.g. the sensitivity analysis' own
            interval, or one the run recorded).

    Returns:
        The ``Estimate`` (all ``nan`` if no finite value).
    """
    finite = _finite(values)
    k = len(finite)
    if k == 0:
        return Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    mean = sum(finite) / k
    if k >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (k - 1))
        return Estimate(mean, sd, k, *t_interval(finite))
    if interval is not None:
        lo, hi = (math.nan if v is None else float(v) for v in interval)
        return Estimate(mean, math.nan, 1, lo, hi)
    return Estimate(mean, math.nan, 1, *sampling_interval(metric, mean, n))


@dataclasses.dataclass(frozen=True)
class Difference:
    """``a − b`` of one metric between two losses, with its 95% interval and p-value.

    Attributes:
        a, b: the two losses.
        metric: the metric compared.
        diff: the (mean paired) difference.
        lo, hi: its 95% interval.
        p: two-sided p-value of "no difference" (before correction).
        k: number of paired seeds (1: a single-seed comparison).
        test: the test used (``"paired t"``, ``"two-proportion z"``, ``"AUC z"``).
        p_holm: the Holm-adjusted p-value within its table (set by ``holm_adjust``).
    """

    a: str
    b: str
    metric: str
    diff: float
    lo: float
    hi: float
    p: float
    k: int
    test: str
    p_holm: float = math.nan

    @property
    def holds(self) -> bool:
        """Whether the difference is supported: Holm-adjusted p below 0.05."""
        return math.isfinite(self.p_holm) and self.p_holm < ALPHA

    def text(self, digits: int = 3) -> str:
        """``ce − supcon: −0.012 [−0.020, −0.004]`` (minus signs as in print)."""

        def num(v: float) -> str:
            return f"{v:.{digits}f}".replace("-", "−")

        return f"{self.a} − {self.b}: {num(self.diff)} [{num(self.lo)}, {num(self.hi)}]"


def _differences(values_a: Sequence[float], values_b: Sequence[float], what: str) -> list[float]:
    """``a[i] - b[i]`` of two paired sequences of the same length >= 2, else ValueError."""
    if len(values_a) != len(values_b) or len(values_a) < 2:
        raise ValueError(
            f"Expected two sequences of the same length >= 2 ({what}). "
            f"Received: lengths {len(values_a)} and {len(values_b)}"
        )
    return [float(x) - float(y) for x, y in zip(values_a, values_b, strict=True)]


def paired_difference(
    a: str, b: str, metric: str, values_a: Sequence[float], values_b: Sequence[float]
) -> Difference:
    """Paired difference over seeds (``values_a[i]`` and ``values_b[i]`` share seed ``i``).

    Mean of the per-seed differences, its 95% t interval, and the paired t-test
    (``scipy.stats.ttest_rel``). Identical differences on every seed (sd 0: the t-test is
    undefined) give a zero-width interval and the p-value of the exact sign-flip permutation
    test, 2 / 2**k for k seeds (0.25 with 3 seeds: a constant difference over three seeds is not
    evidence by itself), or p = 1 when they are all 0.

    Raises:
        ValueError: fewer than two pairs, or sequences of different lengths.
    """
    diffs = _differences(values_a, values_b, "one value per shared seed")
    k = len(diffs)
    mean = sum(diffs) / k
    if all(math.isclose(d, diffs[0], rel_tol=0, abs_tol=1e-12) for d in diffs):
        p = 1.0 if abs(mean) < 1e-12 else min(1.0, 2.0 / 2**k)
        return Difference(a, b, metric, mean, mean, mean, p, k, "paired t")
    p = float(_scipy_stats().ttest_rel(values_a, values_b).pvalue)
    return Difference(a, b, metric, mean, *t_interval(diffs), p, k, "paired t")


def sign_test_difference(
    a: str, b: str, metric: str, values_a: Sequence[float], values_b: Sequence[float]
) -> Difference:
    """Paired difference over many pairs (e.g. every point x seed of a sweep): the mean of the
    differences, its 95% t interval, and the exact two-sided sign test (``scipy.stats.binomtest``
    on how many differences are positive among the nonzero ones; p = 1 when all are 0).

    The sign test assumes nothing of the differences' distribution, which matters for a metric
    that sits at its bound (a shortcut bias of -1 on most points).

    Raises:
        ValueError: fewer than two pairs, or sequences of different lengths.
    """
    diffs = _differences(values_a, values_b, "one value per pair")
    above = sum(d > 1e-12 for d in diffs)
    below = sum(d < -1e-12 for d in diffs)
    p = float(_scipy_stats().binomtest(above, above + below).pvalue) if above + below else 1.0
    lo, hi = t_interval(diffs)
    return Difference(a, b, metric, sum(diffs) / len(diffs), lo, hi, p, len(diffs), "sign")


def newcombe_interval(p1: float, n1: float, p2: float, n2: float) -> tuple[float, float]:
    """Newcombe's (1998, method 10) 95% interval of ``p1 − p2`` from two Wilson intervals."""
    l1, u1 = wilson_interval(p1 * n1, n1)
    l2, u2 = wilson_interval(p2 * n2, n2)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper


def two_proportion_p(p1: float, n1: float, p2: float, n2: float) -> float:
    """Two-sided p-value of the pooled two-proportion z-test of ``p1 = p2``."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return 1.0 if math.isclose(p1, p2) else 0.0
    z = (p1 - p2) / math.sqrt(var)
    return float(2 * _scipy_stats().norm.sf(abs(z)))


def single_difference(
    a: str, b: str, metric: str, value_a: float, value_b: float, n: float
) -> Difference:
    """``a − b`` of one seed's runs, both measured on ``n`` test samples (see module docstring).

    Raises:
        ValueError: a metric without a single-seed comparison (not a proportion or the AUC).
    """
    d = value_a - value_b
    if metric in PROPORTIONS:
        count = _count(metric, n)
        lo, hi = newcombe_interval(value_a, count, value_b, count)
        p = two_proportion_p(value_a, count, value_b, count)
        return Difference(a, b, metric, d, lo, hi, p, 1, "two-proportion z")
    if metric == "auc":
        se = math.hypot(
            hanley_mcneil_se(value_a, n / 2, n / 2), hanley_mcneil_se(value_b, n / 2, n / 2)
        )
        if se == 0:
            p = 1.0 if math.isclose(value_a, value_b) else 0.0
        else:
            p = float(2 * _scipy_stats().norm.sf(abs(d) / se))
        return Difference(a, b, metric, d, d - Z95 * se, d + Z95 * se, p, 1, "AUC z")
    raise ValueError(
        f"No single-seed comparison for metric {metric!r}. Expected one of: "
        f"{', '.join(PROPORTIONS + ('auc',))}"
    )


def tost_p(diffs: Sequence[float], delta: float) -> float:
    """p-value of the two one-sided t-tests (TOST) of ``|mean difference| >= delta``: the larger
    of the two; below 0.05, the differences are equivalent within ``delta``.

    Identical differences (sd 0) get the exact one-sided sign-flip p, 1 / 2**k for k pairs,
    when they lie inside ``(-delta, delta)``, else 1 (as ``paired_difference`` does).

    Raises:
        ValueError: fewer than two differences, or ``delta`` not positive.
    """
    if len(diffs) < 2 or not delta > 0:
        raise ValueError(f"Expected at least 2 differences and delta > 0. Received: "
                         f"{len(diffs)} differences, delta={delta!r}")
    k = len(diffs)
    mean = sum(diffs) / k
    sd = statistics.stdev(diffs)
    if sd <= 1e-12:
        return 1.0 / 2**k if abs(mean) < delta else 1.0
    se = sd / math.sqrt(k)
    t = _scipy_stats().t
    return float(max(t.sf((mean + delta) / se, k - 1), t.cdf((mean - delta) / se, k - 1)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as ``pvalues``; nan stays nan)."""
    order = sorted(
        (i for i, p in enumerate(pvalues) if math.isfinite(p)), key=lambda i: pvalues[i]
    )
    m = len(order)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def holm_adjust(differences: Sequence[Difference]) -> list[Difference]:
    """The differences with ``p_holm`` set, Holm-corrected across all of them (one table)."""
    adjusted = holm([d.p for d in differences])
    return [dataclasses.replace(d, p_holm=p) for d, p in zip(differences, adjusted, strict=True)]


def _scipy_stats():
    """scipy.stats, imported on first use (it costs ~0.7 s; `run_study --help` needs none of it)."""
    from scipy import stats

    return stats
