"""Primary comparisons: the few differences between losses a study exists to settle.

A study declares them with ``[[compare]]`` tables::

    [[compare]]
    a = "supcon"                      # two loss ids of the study
    b = "ce"
    metric = "accuracy"               # accuracy, auc, reliance:<mode>, change:<mode>, shortcut_bias
    train = "margin_size"             # a [train] entry (or one sweep point of it)
    test = "margin_size_decorrelated" # a test set label of it, or "id" / "ood" (its only OOD set)
    delta = 0.03                      # the smallest difference that matters

Each is the paired difference ``a − b`` over the seeds both losses ran (same seed, same test
set), with its 95% t interval. The p-values are Holm-corrected over the primary family only (the
declared comparisons, however many other cells the tables hold), and each gets a verdict:

- ``a > b`` / ``a < b``: the paired t-test holds after Holm (p_holm < 0.05);
- ``equivalent within delta``: otherwise, if the two one-sided tests (TOST) of
  ``|a − b| >= delta`` both reject, Holm-corrected over the family at the same level;
- ``unresolved``: neither (more seeds may settle it: ``seed_plan``).

A comparison with fewer than two paired seeds is unresolved and counts in the family with p = 1.
Every other comparison of the summary is exploratory: intervals, no verdict.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from nodulelearn.study import stats

_KEYS = ("a", "b", "metric", "train", "test", "delta")
PLAIN_METRICS = ("accuracy", "auc", "shortcut_bias")
RELIANCE = "reliance:"
CHANGE = "change:"  # change of a mode's encoding from initialisation (on the training set's
# decorrelated version, so its test set is the ID one)
TEST_ROLES = ("id", "ood")
UNRESOLVED = "unresolved"
EQUIVALENT = "equivalent within delta"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One ``[[compare]]`` table (module docstring)."""

    a: str
    b: str
    metric: str
    train: str
    test: str
    delta: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        return f"{self.a} − {self.b}"


def parse_comparisons(value: Any) -> tuple[Comparison, ...]:
    """The ``compare`` array of tables of a study file, its shape checked (names: validate).

    Raises:
        ValueError: not a list of tables, an unknown or missing key, a wrong type.
    """
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(
            "`compare` must be an array of tables ([[compare]] with a, b, metric, train, test, "
            f"delta). Received: {value!r}"
        )
    found = []
    for k, table in enumerate(value, start=1):
        where = f"[[compare]] #{k}"
        unknown = sorted(set(table) - set(_KEYS))
        missing = [key for key in _KEYS if key not in table]
        if unknown or missing:
            what = (f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown
                    else f"missing key(s) {', '.join(missing)}")
            raise ValueError(f"{where}: {what}. Valid keys: {', '.join(_KEYS)}.")
        for key in ("a", "b", "metric", "train", "test"):
            if not isinstance(table[key], str) or not table[key]:
                raise ValueError(f"{where}: {key} must be a non-empty string. "
                                 f"Received: {table[key]!r}")
        delta = table["delta"]
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (
                math.isfinite(delta) and delta > 0):
            raise ValueError(f"{where}: delta must be a positive, finite number (the smallest "
                             f"difference that matters). Received: {delta!r}")
        if table["a"] == table["b"]:
            raise ValueError(f"{where}: a and b are both {table['a']!r}; compare two losses.")
        found.append(Comparison(**{**table, "delta": float(delta)}))
    return tuple(found)


def metric_names() -> list[str]:
    """Every metric a comparison may name."""
    from nodulelearn.datasets import MODE_NAMES
    from nodulelearn.sensitivity import ANALYSED_MODES

    return [*PLAIN_METRICS, *(f"{RELIANCE}{mode}" for mode in ANALYSED_MODES),
            *(f"{CHANGE}{mode}" for mode in MODE_NAMES)]


def _entries(study) -> dict[str, Any]:
    """Training entries by id, a swept entry's points included (the runs' ``train_dist``)."""
    from nodulelearn.study.sweep import point_entries

    return {p.id: p for e in study.train for p in (point_entries(e) if e.sweep else [e])}


def resolve_test(entry, test: str) -> str:
    """The label a comparison's ``test`` names for ``entry``.

    Raises:
        ValueError: no such test set of the entry (the message lists its labels).
    """
    from nodulelearn.study.plan import eval_dists

    tests = eval_dists(entry)
    labels = [t.label for t in tests]
    if test in labels:
        return test
    ood = [t.label for t in tests if t.role == "ood"]
    if test == "id":
        return labels[0]
    if test == "ood" and len(ood) == 1:
        return ood[0]
    raise ValueError(
        f"test = {test!r} is not a test set of [train.{entry.id}]. Valid: "
        f"{', '.join(labels + ['id'] + (['ood'] if len(ood) == 1 else []))}."
    )


def check_comparisons(study) -> None:
    """Checks every comparison's losses, metric, training entry and test set against the study.

    Raises:
        StudyError: naming the comparison and listing the valid names.
    """
    from nodulelearn.study.spec import StudyError

    entries = _entries(study)
    losses = [e.id for e in study.losses]
    for k, c in enumerate(study.compare, start=1):
        where = f"Study {study.source!r}: [[compare]] #{k} ({c.a} vs {c.b})"
        for name in (c.a, c.b):
            if name not in losses:
                raise StudyError(f"{where}: {name!r} is not a loss of the study. "
                                 f"Valid: {', '.join(losses)}.")
        if c.metric not in metric_names():
            raise StudyError(f"{where}: unknown metric {c.metric!r}. Valid: "
                             f"{', '.join(metric_names())}.")
        if c.train not in entries:
            swept = [e.id for e in study.train if e.sweep]
            hint = (f" ({', '.join(swept)} sweep: name one of its points)" if c.train in swept
                    else "")
            raise StudyError(f"{where}: train = {c.train!r} is not a training distribution of "
                             f"the study{hint}. Valid: {', '.join(entries)}.")
        entry = entries[c.train]
        try:
            label = resolve_test(entry, c.test)
        except ValueError as err:
            raise StudyError(f"{where}: {err}") from None
        if c.metric.startswith(RELIANCE) and study.sensitivity.on == "id" and \
                label != resolve_test(entry, "id"):
            raise StudyError(f"{where}: {c.metric} on {label!r} is not measured: [sensitivity] "
                             "on = \"id\" analyses the training distribution only.")
        if c.metric.startswith(CHANGE) and label != resolve_test(entry, "id"):
            raise StudyError(f"{where}: {c.metric} is measured on the training distribution "
                             f"(made decorrelated), not on {label!r}: set test = \"id\".")
        if c.metric == "shortcut_bias" and _conflict_sign(entry, label) is None:
            raise StudyError(
                f"{where}: shortcut_bias needs a conflict test set (core and shortcut modes "
                f"with alignments +1 and -1) and the pair's core and shortcut ([train.{c.train}] "
                f"core / shortcut); {label!r} is not one."
            )


def _conflict_sign(entry, label: str) -> float | None:
    from nodulelearn.study.plan import eval_dists
    from nodulelearn.study.sweep_outputs import conflict_alignment, pair_modes

    ref = next(t.ref for t in eval_dists(entry) if t.label == label)
    return conflict_alignment(ref, *pair_modes(entry))


def run_value(record: Mapping[str, Any], metric: str, label: str,
              sign: float | None = None) -> float | None:
    """One run's ``metric`` on test set ``label`` from its record (None: not measured)."""
    if metric.startswith(CHANGE):
        modes = (record.get("encoding") or {}).get("modes", [])
        value = next((m.get("change") for m in modes if m.get("mode") == metric[len(CHANGE):]),
                     None)
    elif metric.startswith(RELIANCE):
        modes = (record.get("sensitivity", {}).get(label) or {}).get("modes", [])
        value = next((m.get("reliance") for m in modes if m.get("mode") == metric[len(RELIANCE):]),
                     None)
    else:
        value = (record.get("metrics", {}).get(label) or {}).get(
            "accuracy" if metric == "shortcut_bias" else metric)
        if metric == "shortcut_bias" and value is not None and sign is not None:
            from nodulelearn.study.sweep_outputs import bias_from_accuracy

            value = bias_from_accuracy(float(value), sign)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


@dataclasses.dataclass(frozen=True)
class PrimaryResult:
    """The outcome of one primary comparison.

    Attributes:
        comparison: what was declared.
        test: the test set's label.
        seeds: the paired seeds.
        values_a, values_b: the metric per paired seed.
        difference: mean ``a − b``, 95% interval, paired p and its Holm-adjusted p (over the
            primary family); None with fewer than two paired seeds.
        sd: sd of the paired differences (nan with fewer than two).
        p_tost, p_tost_holm: the TOST p-value (the larger of the two one-sided tests) and its
            Holm adjustment over the family.
        verdict: ``"<a> > <b>"``, ``"<a> < <b>"``, ``"equivalent within delta"`` or
            ``"unresolved"``.
    """

    comparison: Comparison
    test: str
    seeds: tuple[int, ...]
    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    difference: stats.Difference | None
    sd: float
    p_tost: float
    p_tost_holm: float
    verdict: str


def primary_results(study, records: Sequence[Mapping[str, Any]]) -> list[PrimaryResult]:
    """Every primary comparison of ``study`` on the finished runs' records, Holm over the family.

    Args:
        study: the study (expanded or not: a sweep point's runs are found by its id).
        records: the records of the finished runs (``aggregate.collect``).
    """
    entries = _entries(study.unexpanded or study) | {e.id: e for e in study.train}
    partial = []
    for c in study.compare:
        entry = entries[c.train]
        label = resolve_test(entry, c.test)
        sign = _conflict_sign(entry, label) if c.metric == "shortcut_bias" else None
        by_loss: dict[str, dict[int, float]] = {c.a: {}, c.b: {}}
        for record in records:
            if record.get("train_dist") == c.train and record.get("loss") in by_loss:
                value = run_value(record, c.metric, label, sign)
                if value is not None:
                    by_loss[record["loss"]][int(record["seed"])] = value
        seeds = tuple(sorted(set(by_loss[c.a]) & set(by_loss[c.b])))
        va = tuple(by_loss[c.a][s] for s in seeds)
        vb = tuple(by_loss[c.b][s] for s in seeds)
        if len(seeds) >= 2:
            diffs = [x - y for x, y in zip(va, vb, strict=True)]
            diff = stats.paired_difference(c.a, c.b, c.metric, va, vb)
            partial.append((c, label, seeds, va, vb, diff, statistics.stdev(diffs),
                            stats.tost_p(diffs, c.delta)))
        else:
            partial.append((c, label, seeds, va, vb, None, math.nan, 1.0))
    # A comparison without data counts in the family with p = 1: the family is what was declared.
    p_holm = stats.holm([d.p if d is not None else 1.0 for *_, d, _, _ in partial])
    tost_holm = stats.holm([p for *_, p in partial])
    results = []
    for (c, label, seeds, va, vb, diff, sd, p_eq), ph, pt in zip(
            partial, p_holm, tost_holm, strict=True):
        if diff is not None:
            diff = dataclasses.replace(diff, p_holm=ph)
        if diff is not None and diff.holds and diff.diff != 0:
            verdict = f"{c.a} > {c.b}" if diff.diff > 0 else f"{c.a} < {c.b}"
        elif diff is not None and pt < stats.ALPHA:
            verdict = EQUIVALENT
        else:
            verdict = UNRESOLVED
        results.append(PrimaryResult(c, label, seeds, va, vb, diff, sd, p_eq, pt, verdict))
    return results


def _count(n: int) -> str:
    return f"{n} comparison" + ("" if n == 1 else "s")


def _num(value: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{digits}f}".replace("-", "−")


def _p(value: float) -> str:
    return "–" if not math.isfinite(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def primary_section(study, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """summary.md's first section: the primary comparisons and their verdicts (empty: none)."""
    from nodulelearn.markdown import markdown_text as md

    if not study.compare:
        return []
    results = primary_results(study, records)
    lines = [
        "## Primary comparisons",
        "",
        f"The {_count(len(results))} this study declares (`[[compare]]`): the paired "
        "difference `a − b` over seeds with its 95% t interval, the paired t-test and the two "
        "one-sided tests of equivalence within ±delta (TOST), each Holm-corrected over the "
        f"declared family only ({_count(len(results))}). Verdict: `a > b` or `a < b` when the difference holds (Holm p < "
        f"{stats.ALPHA:.2f}), `{EQUIVALENT}` when the TOST holds, else `{UNRESOLVED}`. Every "
        "other comparison below is exploratory.",
        "",
        "| a − b | metric | trained on | test set | seeds | difference [95% interval] | sd | "
        "delta | p (Holm) | TOST p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, d = r.comparison, r.difference
        cells = [md(c.label()), md(c.metric), md(c.train), md(r.test), str(len(r.seeds))]
        if d is None:
            cells += ["– (needs 2 seeds)", "–"]
        else:
            cells += [f"{_num(d.diff)} [{_num(d.lo)}, {_num(d.hi)}]", _num(r.sd)]
        cells += [_num(c.delta), _p(d.p_holm if d else math.nan), _p(r.p_tost_holm),
                  f"**{md(r.verdict)}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
