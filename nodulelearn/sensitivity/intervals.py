"""Point estimates and 95% intervals of permutation effects, over repeats and bootstrap resamples.

A permutation effect has two sources of uncertainty: which permutation was drawn (the repeats)
and which test samples were drawn (the finite test set). Each bootstrap draw ``b`` therefore
takes one repeat (cycling through them, so all repeats weigh equally) and one resample with
replacement of the test samples, and computes the effect on it; the interval is the 2.5th and
97.5th percentile of the draws. The same draws (repeat and resample) are used for every mode,
which makes the per-draw ``reliance`` shares across modes meaningful.

Single proportions and AUCs of one test set (a model's accuracy, the retrained head's) get
closed-form intervals that stay honest at the edges: Wilson's score interval for a proportion
(not Wald's, which has zero width at accuracy 1.0) and DeLong's variance for an AUC (DeLong,
DeLong & Clarke-Pearson 1988, computed with midranks as in Sun & Xu 2014).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from nodulelearn.binary_metrics import roc_auc
from nodulelearn.sensitivity import metrics

EFFECTS = ("delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p")
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class BootstrapPlan:
    """Which repeat and which resampled samples each bootstrap draw uses.

    Attributes:
        repeat: int ``[draws]``, the permutation repeat of each draw.
        indices: int ``[draws, n]``, the resampled test-sample indices of each draw.
    """

    repeat: np.ndarray
    indices: np.ndarray


def bootstrap_plan(n: int, repeats: int, draws: int, seed: int) -> BootstrapPlan:
    """A deterministic plan of ``draws`` bootstrap draws over ``n`` samples and ``repeats``."""
    rng = np.random.default_rng([seed, 0xB007])
    return BootstrapPlan(
        repeat=np.arange(draws) % repeats,
        indices=rng.integers(0, n, size=(draws, n)),
    )


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float | None, float | None]:
    """Central ``level`` percentile interval of ``draws``, ignoring NaN; ``None`` if all NaN."""
    draws = np.asarray(draws, dtype=np.float64)
    if not np.isfinite(draws).any():
        return None, None
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside ``0 .. n``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"Expected 0 <= successes <= n and n >= 1. Received: "
                         f"successes={successes}, n={n}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval holds p exactly; rounding put 10/10's upper end at 0.9999999999999999.
    return float(max(0.0, min(p, centre - half))), float(min(1.0, max(p, centre + half)))


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong's estimate of its variance.

    Args:
        labels: 0/1 ``[n]``.
        scores: float ``[n]``, higher means more malignant.

    Returns:
        ``(auc, variance)``; ``(nan, nan)`` when a class is absent.
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos, neg = scores[labels == 1], scores[labels == 0]
    m, k = pos.size, neg.size
    if m == 0 or k == 0:
        return float("nan"), float("nan")
    ranks_all = _midranks(np.concatenate([pos, neg]))
    ranks_pos, ranks_neg = _midranks(pos), _midranks(neg)
    auc = (ranks_all[:m].sum() - m * (m + 1) / 2) / (m * k)
    v10 = (ranks_all[:m] - ranks_pos) / k  # per malignant: fraction of benign scored below
    v01 = 1.0 - (ranks_all[m:] - ranks_neg) / m  # per benign: fraction of malignant above
    s10 = v10.var(ddof=1) if m > 1 else 0.0
    s01 = v01.var(ddof=1) if k > 1 else 0.0
    return float(auc), float(s10 / m + s01 / k)


def delong_interval(labels, scores, level: float = LEVEL) -> tuple[float | None, float | None]:
    """Normal-approximation interval of the AUC with DeLong's variance, clipped to [0, 1];
    ``(None, None)`` when a class is absent."""
    auc, variance = delong_auc(labels, scores)
    if not np.isfinite(auc):
        return None, None
    half = float(stats.norm.ppf(0.5 + level / 2)) * np.sqrt(max(variance, 0.0))
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


class EffectEstimator:
    """Effects of replacing baseline predictions by permuted ones, with bootstrap draws.

    Args:
        labels: int ``[n]`` test labels.
        base_probs: float ``[n]`` baseline P(malignant).
        plan: the bootstrap plan shared by every mode.
    """

    def __init__(self, labels: np.ndarray, base_probs: np.ndarray, plan: BootstrapPlan):
        self.labels = np.asarray(labels)
        self.base_probs = np.asarray(base_probs, dtype=np.float64)
        self.plan = plan
        self._labels_b = self.labels[plan.indices]
        self._base_b = self.base_probs[plan.indices]
        self._base_acc = metrics.accuracy(self.labels, self.base_probs)
        self._base_auc = roc_auc(self.labels, self.base_probs)
        self._base_acc_b = metrics.accuracy(self._labels_b, self._base_b)
        self._base_auc_b = roc_auc(self._labels_b, self._base_b)

    def _effects(self, labels, base, perm, base_acc, base_auc) -> dict[str, np.ndarray]:
        """Effects per row of ``perm`` (``[r, n]``) against ``base`` (``[n]`` or ``[r, n]``)."""
        flips = metrics.predicted_labels(perm) != metrics.predicted_labels(base)
        return {
            # Positive deltas mean the model got worse when the mode was scrambled.
            "delta_accuracy": base_acc - metrics.accuracy(labels, perm),
            "delta_auc": base_auc - roc_auc(labels, perm),
            "flip_rate": flips.mean(axis=-1),
            "mean_abs_delta_p": np.abs(perm - base).mean(axis=-1),
        }

    def estimate(self, perm_probs: np.ndarray) -> tuple[dict[str, float | None], dict]:
        """Point estimates and bootstrap draws of every effect.

        Args:
            perm_probs: float ``[repeats, n]``, P(malignant) after each repeat's permutation.

        Returns:
            ``(point, draws)``: ``point[effect]`` is the mean over repeats on the full test set
            (``None`` if undefined, e.g. AUC with one class); ``draws[effect]`` is ``[draws]``.
        """
        perm_probs = np.asarray(perm_probs, dtype=np.float64)
        full = self._effects(
            self.labels, self.base_probs, perm_probs, self._base_acc, self._base_auc
        )
        point = {}
        for name, values in full.items():
            point[name] = None if np.isnan(values).all() else float(np.nanmean(values))
        perm_b = perm_probs[self.plan.repeat[:, None], self.plan.indices]
        draws = self._effects(
            self._labels_b, self._base_b, perm_b, self._base_acc_b, self._base_auc_b
        )
        return point, draws


VERDICTS = ("enhanced", "suppressed", "unchanged")


def change_interval(trained: float, trained_sd: float, baseline, *, comparisons: int = 1,
                    level: float = LEVEL) -> dict:
    """Change of a trained score from the untrained reference, with a prediction interval.

    The trained network is one draw of an initialisation, trained; the question is whether its
    score lies outside what initialisations alone produce. Under "training changed nothing" the
    trained score is one more draw from the distribution of the ``K`` baseline scores, so
    ``trained - mean(baseline)`` has variance ``sd^2 (1 + 1/K)`` (``sd``: the spread between
    initialisations, which also carries each init's read-out noise on the sample). The interval
    adds the test-sample bootstrap variance of the trained score (``trained_sd^2``, conservative)
    and uses Student's t with ``K - 1`` degrees of freedom at ``1 - (1 - level) / comparisons``
    (Bonferroni: the verdicts of ``comparisons`` modes are jointly wrong at most ``1 - level``):

        change +- t_{K-1}(1 - alpha / (2 m)) * sqrt(sd^2 (1 + 1/K) + trained_sd^2)

    Args:
        trained: the trained encoder's score.
        trained_sd: standard deviation of its bootstrap draws (test-sample uncertainty).
        baseline: the ``K >= 2`` scores of the re-initialised encoders.
        comparisons: ``m``, the number of verdicts made together (e.g. varying modes).
        level: the joint coverage.

    Returns:
        ``baseline``, ``baseline_sd``, ``change``, ``change_ci_low``, ``change_ci_high`` and
        ``verdict``: ``"enhanced"`` (interval above 0), ``"suppressed"`` (below 0) or
        ``"unchanged"``.

    Raises:
        ValueError: fewer than 2 baseline scores, or ``comparisons < 1``.
    """
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if baseline.size < 2 or comparisons < 1:
        raise ValueError(f"Expected at least 2 baseline scores and comparisons >= 1. Received: "
                         f"{baseline.size} scores, comparisons={comparisons}")
    k = baseline.size
    mean, sd = float(baseline.mean()), float(baseline.std(ddof=1))
    quantile = float(stats.t.ppf(1 - (1 - level) / (2 * comparisons), df=k - 1))
    half = quantile * float(np.sqrt(sd * sd * (1 + 1 / k) + float(trained_sd) ** 2))
    change = float(trained) - mean
    low, high = change - half, change + half
    verdict = "enhanced" if low > 0 else "suppressed" if high < 0 else "unchanged"
    return {"baseline": mean, "baseline_sd": sd, "change": change, "change_ci_low": low,
            "change_ci_high": high, "verdict": verdict}
