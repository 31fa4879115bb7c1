"""Means, spreads and the intervals used to say whether two losses differ.

With two or more seeds a cell's interval is mean ± sd over seeds (what the tables print). With
one seed there is no spread over seeds; the interval is then the 95% sampling interval of the
metric on the test set (normal approximation; classes taken as balanced for sensitivity,
specificity and AUC). It covers test-set noise only, not the (usually larger) seed-to-seed
variation, so single-seed comparisons are weaker: the summary says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

Z95 = 1.959964
_TOUCH = 1e-9


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A metric over seeds.

    Attributes:
        mean: mean over seeds.
        sd: sample standard deviation over seeds (``nan`` with one seed).
        k: number of seeds.
        lo, hi: the comparison interval (see the module docstring).
    """

    mean: float
    sd: float
    k: int
    lo: float
    hi: float

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share a point (then the difference is not supported).

        False when either interval is unknown (``nan``): see ``has_interval``.
        """
        # The tolerance keeps touching intervals (0.999 + 0.001 vs 1.000) from parting on
        # floating-point rounding.
        return self.lo <= other.hi + _TOUCH and other.lo <= self.hi + _TOUCH

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def text(self, digits: int = 3) -> str:
        """``mean ± sd`` (one seed: the mean alone)."""
        if self.k >= 2:
            return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"
        return f"{self.mean:.{digits}f}"


def _sampling_half_width(metric: str, value: float, n: float | None) -> float:
    """95% half-width of a test-set estimate of ``metric`` from ``n`` samples (nan if unknown)."""
    if not n or not math.isfinite(value):
        return math.nan
    if metric in ("accuracy", "balanced_accuracy"):
        count = n
    elif metric in ("sensitivity", "specificity"):
        count = n / 2  # one class
    elif metric == "auc":  # Hanley & McNeil (1982) with n/2 samples per class
        half = n / 2
        q1 = value / (2 - value)
        q2 = 2 * value * value / (1 + value)
        var = (value * (1 - value) + (half - 1) * (q1 - value**2) + (half - 1) * (q2 - value**2))
        return Z95 * math.sqrt(max(var, 0.0) / (half * half))
    else:
        return math.nan
    return Z95 * math.sqrt(max(value * (1 - value), 0.0) / count)


def estimate(
    values: Sequence[float],
    *,
    metric: str = "",
    n: float | None = None,
    interval: tuple[float | None, float | None] | None = None,
) -> Estimate:
    """Mean, sd and comparison interval of one metric over seeds.

    Args:
        values: the metric of each seed (non-finite values are dropped).
        metric: the metric's name, for the single-seed sampling interval.
        n: test-set size, for the single-seed sampling interval.
        interval: with one seed, use this ``(lo, hi)`` instead (e.g. the sensitivity analysis' own
            interval over permutations and bootstrap resamples).

    Returns:
        The ``Estimate`` (all ``nan`` if no finite value).
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    k = len(finite)
    if k == 0:
        return Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    mean = sum(finite) / k
    if k >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (k - 1))
        return Estimate(mean, sd, k, mean - sd, mean + sd)
    if interval is not None:
        lo, hi = (math.nan if v is None else float(v) for v in interval)
        return Estimate(mean, math.nan, 1, lo, hi)
    width = _sampling_half_width(metric, mean, n)
    return Estimate(mean, math.nan, 1, mean - width, mean + width)
