"""How many seeds a study's primary comparisons need, planned from the seeds already run.

For each primary comparison (primary.py) the finished seeds of a pilot give the sd of the paired
differences ``a − b``. From it:

- **precision**: the fewest seeds whose 95% t interval has a half-width of at most ``delta / 2``
  with probability ``assurance`` (default 95%). The sd a study will observe is itself random
  (``s² ~ σ² χ²(k−1) / (k−1)``), so planning on the mean half-width would miss the target in
  about half of the studies; the count solves ``t(0.975, k−1) · σ · sqrt(χ²(assurance, k−1) /
  (k−1)) / sqrt(k) <= delta / 2`` (Kupper & Hafner 1989);
- **power**: the fewest seeds for which the paired t-test detects a true difference of ``delta``
  with probability ``power`` (default 80%) at the Holm-adjusted level: Holm's first step tests at
  ``0.05 / m`` for ``m`` primary comparisons, and a plan cannot know which comparison comes
  first, so it plans every one at that level (noncentral t).

``plan_seeds(study, out_dir)`` reads the finished runs and also gives the wall time the extra seeds
imply, from the runs' measured times. The planned sd is the pilot's: with 3 pilot seeds it is
rough (its own 95% interval spans 0.5x to 6x), so re-plan once more seeds have run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from nodulelearn.study import stats

ASSURANCE = 0.95
POWER = 0.80
MAX_SEEDS = 10_000


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and low < value < high):
        raise ValueError(f"Invalid value for argument `{name}`. Expected a number in "
                         f"({low}, {high}). Received: {name}={value!r}")


def half_width_seeds(sd: float, delta: float, *, assurance: float = ASSURANCE,
                     level: float = stats.LEVEL, max_seeds: int = MAX_SEEDS) -> int:
    """Seeds for a ``level`` t interval of the mean paired difference no wider than ``delta / 2``
    either side, with probability ``assurance`` (module docstring).

    Args:
        sd: sd of the paired differences (from a pilot); 0 gives 2, the fewest with an interval.
        delta: the smallest difference that matters.

    Raises:
        ValueError: a non-finite or negative sd, a delta not positive, or more than ``max_seeds``
            needed.
    """
    _check("sd", sd, -1e-300)
    _check("delta", delta, 0.0)
    _check("assurance", assurance, 0.0, 1.0)
    from scipy.stats import chi2, t
    for k in range(2, max_seeds + 1):
        df = k - 1
        s = sd * math.sqrt(chi2.ppf(assurance, df) / df)
        if t.ppf(0.5 + level / 2, df) * s / math.sqrt(k) <= delta / 2:
            return k
    raise ValueError(f"More than {max_seeds} seeds needed for a half-width of {delta / 2:g} at "
                     f"sd {sd:g}: choose a larger delta.")


def power_seeds(sd: float, delta: float, *, alpha: float, power: float = POWER,
                max_seeds: int = MAX_SEEDS) -> int:
    """Seeds for the two-sided paired t-test at level ``alpha`` to detect a true mean difference
    of ``delta`` with probability ``power`` (noncentral t)."""
    _check("sd", sd, -1e-300)
    _check("delta", delta, 0.0)
    _check("alpha", alpha, 0.0, 1.0)
    _check("power", power, 0.0, 1.0)
    if sd <= 0:
        return 2
    from scipy.stats import nct, t

    for k in range(2, max_seeds + 1):
        df = k - 1
        crit = t.ppf(1 - alpha / 2, df)
        nc = delta * math.sqrt(k) / sd
        if nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc) >= power:
            return k
    raise ValueError(f"More than {max_seeds} seeds needed for power {power:g} at delta "
                     f"{delta:g}, sd {sd:g}: choose a larger delta.")


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """The plan of one primary comparison.

    Attributes:
        comparison: its label (``a − b``), metric, training entry and test set, in words.
        delta: its delta.
        pilot_seeds: paired seeds finished.
        sd: sd of their paired differences (nan with fewer than two).
        half_width_seeds: seeds for a 95% half-width <= delta / 2 (module docstring).
        power_seeds: seeds for 80% power at delta, at the level ``alpha``.
        alpha: the Holm-adjusted level planned for (0.05 / number of primary comparisons).
    """

    comparison: str
    delta: float
    pilot_seeds: int
    sd: float
    half_width_seeds: int | None
    power_seeds: int | None
    alpha: float


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """The plans of a study's primary comparisons and what the largest one costs.

    Attributes:
        plans: one per primary comparison.
        seeds: the seeds the study has now.
        needed: the largest count of any plan (precision and power).
        runs_per_seed: runs a seed adds (losses x training distributions).
        seconds_per_run: mean measured wall time of a finished run (nan: none recorded).
        extra_seconds: ``(needed − seeds) x runs_per_seed x seconds_per_run``, one process.
    """

    plans: list[SeedPlan]
    seeds: int
    needed: int
    runs_per_seed: int
    seconds_per_run: float
    extra_seconds: float


def plan_seeds(study, out_dir: str | Path, *, assurance: float = ASSURANCE,
               power: float = POWER) -> StudyPlan:
    """Plans the seeds of every primary comparison of a study from its finished runs.

    Args:
        study: the study (e.g. ``aggregate.read_study_file(out_dir)``), with ``[[compare]]``.
        out_dir: its output directory.

    Raises:
        StudyError: the study declares no primary comparison, or some runs are stale.
    """
    from nodulelearn.study.aggregate import collect
    from nodulelearn.study.plan import plan_runs
    from nodulelearn.study.primary import primary_results
    from nodulelearn.study.spec import StudyError

    if not study.compare:
        raise StudyError(f"Study {study.name!r} declares no primary comparison ([[compare]] "
                         "tables): there is nothing to plan seeds for.")
    agg = collect(study, out_dir)
    if agg.stale:
        raise StudyError(f"{len(agg.stale)} run(s) in {str(out_dir)!r} were made with other "
                         "settings than the study asks for; plan from a consistent study.")
    alpha = stats.ALPHA / len(study.compare)
    plans = []
    for r in primary_results(study, agg.records):
        c = r.comparison
        ok = len(r.seeds) >= 2 and math.isfinite(r.sd)
        plans.append(SeedPlan(
            comparison=f"{c.a} − {c.b}, {c.metric}, trained on {c.train}, tested on {r.test}",
            delta=c.delta, pilot_seeds=len(r.seeds), sd=r.sd,
            half_width_seeds=half_width_seeds(r.sd, c.delta, assurance=assurance) if ok else None,
            power_seeds=power_seeds(r.sd, c.delta, alpha=alpha, power=power) if ok else None,
            alpha=alpha,
        ))  # fmt: skip
    counts = [n for p in plans for n in (p.half_width_seeds, p.power_seeds) if n is not None]
    needed = max(counts, default=len(study.seeds))
    runs_per_seed = len(plan_runs(study)) // len(study.seeds)
    times = [sum(r.get("seconds", {}).values()) for r in agg.records if r.get("seconds")]
    per_run = sum(times) / len(times) if times else math.nan
    extra = max(0, needed - len(study.seeds)) * runs_per_seed * per_run
    return StudyPlan(plans, len(study.seeds), needed, runs_per_seed, per_run, extra)


def with_seeds(study, count: int, *, recorded=None):
    """The study with ``count`` seeds: its own first, then the smallest unused integers; or, for
    ``count`` below its number of seeds (a pilot), its first ``count`` seeds.

    What ``--seeds=N`` runs: a run's identity does not depend on the study's other seeds, so
    the finished runs of the old seeds stay finished and only the new seeds' runs are to run.

    Args:
        study: the study.
        count: the number of seeds.
        recorded: the seeds of the study recorded in its output folder (``None``: every seed of
            ``study`` is recorded). Fewer seeds than the study has are allowed when they keep
            every recorded seed: finished seeds are never dropped.

    Raises:
        ValueError: ``count`` is not an integer, drops a recorded seed, or is more than the
            valid seeds ``0..validate.max_seed()`` (checked before any list is built: a huge
            count would otherwise hang).
    """
    from nodulelearn.study.validate import max_seed

    largest = max_seed()
    kept = set(study.seeds if recorded is None else recorded)
    foreign = sorted(kept - set(study.seeds))
    if foreign:  # the output folder ran seeds this study file does not name
        raise ValueError(
            f"Invalid value for `seeds`: the output folder holds seeds {foreign} that the study "
            f"{study.name!r} does not list (its seeds: {list(study.seeds)}); extend the study "
            "recorded there instead (--seeds=N without --study), or use another --out."
        )
    fewest = max([i + 1 for i, seed in enumerate(study.seeds) if seed in kept], default=1)
    if (isinstance(count, bool) or not isinstance(count, int) or count < fewest
            or count > largest + 1):
        recorded_seeds = [seed for seed in study.seeds if seed in kept]
        why = "" if not recorded_seeds else (
            f" (the study's seeds {recorded_seeds} are kept"
            f"{'' if recorded is None else ': its output folder holds them'})")
        raise ValueError(
            f"Invalid value for `seeds`. Expected an integer >= {fewest}{why} and <= "
            f"{largest + 1} (seeds run from 0 to {largest}). Received: seeds={count!r}"
        )
    seeds, taken, candidate = list(study.seeds[:count]), set(study.seeds), 0
    while len(seeds) < count:
        if candidate not in taken:
            seeds.append(candidate)
        candidate += 1
    extended = dataclasses.replace(study, seeds=tuple(seeds))
    if study.unexpanded is not None:
        extended = dataclasses.replace(
            extended, unexpanded=with_seeds(study.unexpanded, count, recorded=recorded))
    return extended


def plan_text(plan: StudyPlan) -> str:
    """The plan as the lines ``--plan_seeds`` prints."""
    lines = [
        f"Primary comparisons: {len(plan.plans)}; planned at the Holm-adjusted level "
        f"{plan.plans[0].alpha:.4g} (0.05 / {len(plan.plans)}) for 80% power, and for a 95% "
        f"half-width <= delta/2 with {ASSURANCE:.0%} assurance.",
        "comparison\tdelta\tpilot seeds\tsd\tseeds (half-width)\tseeds (power)",
    ]
    for p in plan.plans:
        lines.append("\t".join([
            p.comparison, f"{p.delta:g}", str(p.pilot_seeds),
            "–" if not math.isfinite(p.sd) else f"{p.sd:.4f}",
            str(p.half_width_seeds or "– (needs 2 pilot seeds)"),
            str(p.power_seeds or "– (needs 2 pilot seeds)"),
        ]))  # fmt: skip
    extra = plan.needed - plan.seeds
    if extra <= 0:
        lines.append(f"The study's {plan.seeds} seeds suffice for every comparison.")
    else:
        cost = ("unknown (no run recorded its time)" if not math.isfinite(plan.extra_seconds)
                else f"about {_hours(plan.extra_seconds)} in one process "
                     f"({plan.seconds_per_run:.0f} s per run measured)")
        lines.append(f"Needed: {plan.needed} seeds ({extra} more: {extra * plan.runs_per_seed} "
                     f"runs), {cost}.")
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def achieved_half_width(diffs: Sequence[float], level: float = stats.LEVEL) -> float:
    """The half-width of the t interval of the mean of ``diffs`` (what the plan promises)."""
    k = len(diffs)
    mean = sum(diffs) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1))
    from scipy.stats import t

    return t.ppf(0.5 + level / 2, k - 1) * sd / math.sqrt(k)
