"""What predicts the mode a model uses: the untrained network's decodability advantage of one
mode of a redundant pair over the other, set beside the reliance share and the shortcut bias of
the trained models (after Hermann & Lampinen 2020, "What shapes feature representations?").

A **redundant pair** is a training distribution with exactly two predictive modes (alignment not
0, not pinned). ``mode_a`` is the pair's shortcut and ``mode_b`` its core where the entry names
them (``core`` / ``shortcut``, or a sweep's inferred pair: ``sweep_outputs.pair_modes``);
otherwise ``mode_a`` is the later of the two in the mode order (``datasets.MODE_NAMES`` lists the
nodule's own modes first), so that in the presets it is the candidate shortcut (size, noise).

``initial_advantage.csv``: one row per finished run trained on a redundant pair:

* ``baseline_a``, ``baseline_b``: each mode's ``baseline_normalized`` (the untrained reference:
  mean over the K re-initialisations of the normalised encoding on the decorrelated training
  distribution, from the run's encoding record);
* ``baseline_advantage`` = ``baseline_a − baseline_b``; ``baseline_advantage_sd`` =
  ``sqrt(sd_a² + sd_b²)`` from the two modes' ``baseline_normalized_sd`` (the records keep the
  spread of each mode over the inits, not the scores per init, so the pairing within an init is
  ignored: exact when the two modes' scores vary independently between inits);
* ``availability`` (of ``mode_a``) and ``availability_b``: the curve AUC (``availability.curve_auc``)
  of the same loss, mean over seeds, trained in the study on the pair's distribution with the
  other mode's alignment set to 0 (that mode alone predicts, in the pair's geometry); empty where
  the study has no such run;
* ``reliance_a``, ``reliance_b`` (ID test set) and ``reliance_share_a`` =
  ``reliance_a / (reliance_a + reliance_b)``, empty when the two hold less than
  ``MIN_PAIR_RELIANCE`` of the model's reliance together (the share would be noise);
* ``shortcut_bias``: on the entry's conflict set, where the study has one and names the pair
  (``sweep_outputs``): P(follows ``mode_a``) − P(follows ``mode_b``).

For a sweep, summary.md gives per swept entry and loss the Spearman rank correlation between the
advantage of each point (the untrained reference of that point's distribution) and the shortcut
bias, over points and seeds, with a percentile bootstrap interval over points (a point's seeds
drawn together): the advantage *predicts* the mode used where the interval excludes 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nodulelearn.atomic_files import write_csv_atomic
from nodulelearn.markdown import markdown_code, markdown_text
from nodulelearn.study import stats
from nodulelearn.study.spec import StudySpec, TrainEntry

OUTPUTS = ("initial_advantage.csv",)
COLUMNS = (
    "run", "loss", "seed", "train", "train_base", "point", "mode_a", "mode_b", "baseline_a",
    "baseline_b", "baseline_advantage", "baseline_advantage_sd", "baseline_inits",
    "availability", "availability_b", "reliance_a", "reliance_b", "reliance_share_a",
    "shortcut_bias", "bias_test",
)  # fmt: skip
#: Below this summed reliance of the pair, ``reliance_share_a`` is left empty.
MIN_PAIR_RELIANCE = 0.01
RESAMPLES = 2000
LEVEL = stats.LEVEL
#: Fewest points a rank correlation over a sweep is computed on.
MIN_POINTS = 3


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _cell(value: float) -> float | str:
    return value if math.isfinite(value) else ""


def _predictive(spec) -> list[str]:
    from nodulelearn.datasets import MODE_NAMES

    return [m for m in MODE_NAMES if m in spec.modes and spec.modes[m].fixed is None
            and spec.modes[m].alignment != 0]


def pair_of(entry: TrainEntry) -> tuple[str, str, bool] | None:
    """``(mode_a, mode_b, named)`` of a redundant pair (module docstring), else ``None``.

    ``named``: the entry names (or its sweep implies) the pair as shortcut and core, so its
    shortcut bias is defined.
    """
    from nodulelearn.datasets import load_spec
    from nodulelearn.study.sweep_outputs import pair_modes

    predictive = _predictive(load_spec(entry.dist))
    if len(predictive) != 2:
        return None
    core, shortcut = pair_modes(entry)
    if {core, shortcut} == set(predictive):
        return shortcut, core, True
    return predictive[1], predictive[0], False


def _geometry(spec) -> dict:
    data = spec.to_dict()
    data.pop("name", None)
    data.pop("description", None)
    return data


def _alone_entries(entry: TrainEntry, mode: str, other: str,
                   entries: Sequence[TrainEntry]) -> list[str]:
    """Ids of the entries whose distribution is ``entry``'s with ``other``'s alignment 0."""
    from nodulelearn.datasets import load_spec, set_spec_field

    target = _geometry(set_spec_field(load_spec(entry.dist), f"modes.{other}.alignment", 0.0))
    found = []
    for candidate in entries:
        spec = load_spec(candidate.dist)
        if _predictive(spec) == [mode] and _geometry(spec) == target:
            found.append(candidate.id)
    return found


def _curve_aucs(records: Sequence[Mapping[str, Any]], out_dir: Path,
                wanted: set[str]) -> dict[tuple[str, str], float]:
    """(loss, train entry) -> mean curve AUC over seeds, for the runs on ``wanted`` entries."""
    from nodulelearn import run_dir as run_layout
    from nodulelearn.study.availability import curve_auc, val_curve
    from nodulelearn.study.runner import run_dir

    values: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if record["train_dist"] in wanted:
            curve = val_curve(run_dir(out_dir, record["run_id"]) / "train" / run_layout.HISTORY)
            if curve:
                values.setdefault((record["loss"], record["train_dist"]), []).append(
                    curve_auc(curve))
    return {key: float(np.mean(v)) for key, v in values.items()}


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _encoding(record: Mapping[str, Any], mode: str) -> tuple[float, float]:
    modes = (record.get("encoding") or {}).get("modes", [])
    found = next((m for m in modes if m.get("mode") == mode), {})
    return _float(found.get("baseline_normalized")), _float(found.get("baseline_normalized_sd"))


def _reliance(record: Mapping[str, Any], mode: str) -> float:
    id_test = next((t["label"] for t in record["tests"] if t["role"] == "id"), None)
    modes = (record.get("sensitivity", {}).get(id_test) or {}).get("modes", [])
    return _float(next((m.get("reliance") for m in modes if m.get("mode") == mode), None))


def _bias(record: Mapping[str, Any], entry: TrainEntry, a: str, b: str) -> tuple[float, str]:
    from nodulelearn.study.plan import eval_dists
    from nodulelearn.study.sweep_outputs import bias_from_accuracy, conflict_alignment

    for test in eval_dists(entry):
        sign = conflict_alignment(test.ref, b, a)
        accuracy = _float((record["metrics"].get(test.label) or {}).get("accuracy"))
        if sign is not None and math.isfinite(accuracy):
            return bias_from_accuracy(accuracy, sign), test.label
    return math.nan, ""


def initial_advantage_rows(study: StudySpec, records: Sequence[Mapping[str, Any]],
                           out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of initial_advantage.csv (module docstring) of an expanded study."""
    from nodulelearn.study.sweep import format_value

    entries = {e.id: e for e in study.train}
    pairs = {e.id: pair_of(e) for e in study.train}
    alone: dict[str, dict[str, list[str]]] = {}
    for entry_id, pair in pairs.items():
        if pair is not None:
            a, b, _ = pair
            alone[entry_id] = {a: _alone_entries(entries[entry_id], a, b, study.train),
                               b: _alone_entries(entries[entry_id], b, a, study.train)}
    wanted = {i for found in alone.values() for ids in found.values() for i in ids}
    aucs = _curve_aucs(records, Path(out_dir), wanted) if wanted else {}
    rows = []
    for record in records:
        entry, pair = entries.get(record["train_dist"]), pairs.get(record["train_dist"])
        if entry is None or pair is None:
            continue
        a, b, named = pair
        (base_a, sd_a), (base_b, sd_b) = _encoding(record, a), _encoding(record, b)
        rel_a, rel_b = _reliance(record, a), _reliance(record, b)
        total = rel_a + rel_b
        bias, bias_test = _bias(record, entry, a, b) if named else (math.nan, "")
        availability = {mode: _mean([aucs.get((record["loss"], i), math.nan)
                                     for i in alone[entry.id][mode]]) for mode in (a, b)}
        rows.append({
            "run": record["run_id"], "loss": record["loss"], "seed": record["seed"],
            "train": entry.id, "train_base": entry.base or entry.id,
            "point": ",".join(f"{p}={format_value(v)}" for p, v in entry.point),
            "mode_a": a, "mode_b": b, "baseline_a": _cell(base_a), "baseline_b": _cell(base_b),
            "baseline_advantage": _cell(base_a - base_b),
            "baseline_advantage_sd": _cell(math.hypot(sd_a, sd_b)),
            "baseline_inits": (record.get("encoding") or {}).get("baseline_inits", ""),
            "availability": _cell(availability[a]), "availability_b": _cell(availability[b]),
            "reliance_a": _cell(rel_a), "reliance_b": _cell(rel_b),
            "reliance_share_a": _cell(rel_a / total) if total >= MIN_PAIR_RELIANCE else "",
            "shortcut_bias": _cell(bias), "bias_test": bias_test,
        })  # fmt: skip
    return rows


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (``scipy.stats.rankdata``'s "average")."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties: average ranks); ``nan`` for fewer than 3 pairs or a
    constant variable."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])


@dataclasses.dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of x and y over the runs, with its bootstrap interval over points.

    Attributes:
        rho: over every run (``nan``: undefined, e.g. x constant over the points).
        lo, hi: the percentile interval (``LEVEL``) of rho over resampled points.
        points, runs: how many points and runs it is computed on.
        varies: whether x takes more than one value over the points.
    """

    rho: float
    lo: float
    hi: float
    points: int
    runs: int
    varies: bool

    @property
    def predicts(self) -> bool:
        """The interval excludes 0."""
        return math.isfinite(self.lo) and (self.lo > 0 or self.hi < 0)


def rank_correlation(rows: Sequence[Mapping[str, Any]], *, x: str = "baseline_advantage",
                     y: str = "shortcut_bias", group: str = "point",
                     resamples: int = RESAMPLES, seed: int = 0) -> RankCorrelation:
    """Spearman's rho between each point's x (mean over its rows) and y of each row, with a
    percentile bootstrap interval: ``resamples`` draws of the points with replacement, each
    point's rows (seeds) kept together. Rows without a finite x or y are left out. A draw whose
    rho is undefined (x constant over the drawn points) is dropped; with fewer than half the
    draws left, or fewer than ``MIN_POINTS`` points, the interval is ``nan``.
    """
    by_point: dict[Any, list[float]] = {}
    xs: dict[Any, list[float]] = {}
    for row in rows:
        xv, yv = _float(row.get(x)), _float(row.get(y))
        if math.isfinite(xv) and math.isfinite(yv):
            by_point.setdefault(row[group], []).append(yv)
            xs.setdefault(row[group], []).append(xv)
    points = list(by_point)
    px = {p: float(np.mean(xs[p])) for p in points}
    runs = sum(len(v) for v in by_point.values())
    varies = len({px[p] for p in points}) > 1

    def rho_of(chosen) -> float:
        return spearman([px[p] for p in chosen for _ in by_point[p]],
                        [v for p in chosen for v in by_point[p]])

    rho = rho_of(points)
    lo = hi = math.nan
    if len(points) >= MIN_POINTS and math.isfinite(rho):
        rng = np.random.default_rng([seed, 0x1A17])
        draws = [rho_of([points[i] for i in rng.integers(0, len(points), len(points))])
                 for _ in range(resamples)]
        finite = [d for d in draws if math.isfinite(d)]
        if 2 * len(finite) >= resamples:
            tail = 100 * (1 - LEVEL) / 2
            lo, hi = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
    return RankCorrelation(rho, lo, hi, len(points), runs, varies)


def _num(value: float, digits: int = 2) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.{digits}f}".replace("-", "−")


def correlation_sentence(loss: str, a: str, b: str, found: RankCorrelation) -> str:
    """One sentence: whether the initial advantage of ``a`` over ``b`` predicts the mode used."""
    what = f"the initial decodability advantage of {a} over {b}"
    over = f"{found.points} points, {found.runs} runs"
    if found.points < MIN_POINTS:
        return (f"{markdown_code(loss)}: {what} does not resolve which mode is used: "
                f"{found.points} point(s) have both an initial advantage and a shortcut bias "
                f"(a rank correlation needs at least {MIN_POINTS}).")
    if not found.varies:
        return (f"{markdown_code(loss)}: {what} does not resolve which mode is used: it does not "
                f"vary over the {found.points} point(s) (the decorrelated distribution, and with "
                "it the untrained reference, is the same at every point).")
    if not math.isfinite(found.lo):
        return (f"{markdown_code(loss)}: {what} does not resolve which mode is used: too few "
                f"points for an interval (Spearman ρ = {_num(found.rho)}, {over}).")
    interval = f"Spearman ρ = {_num(found.rho)} [{_num(found.lo)}, {_num(found.hi)}], {over}"
    if found.predicts:
        way = (f"the larger it is, the more the model follows {a}" if found.lo > 0 else
               f"inversely: the larger it is, the more the model follows {b}")
        return f"{markdown_code(loss)}: {what} predicts the mode used, {way} ({interval})."
    return (f"{markdown_code(loss)}: {what} does not resolve which mode is used: the interval "
            f"includes 0 ({interval}).")


def initial_advantage_markdown(study: StudySpec, rows: Sequence[Mapping[str, Any]]) -> str:
    """summary.md's section (module docstring); ``""`` without rows."""
    if not rows:
        return ""
    losses = [e.id for e in study.losses]
    lines = ["\n## What predicts the mode used: the initial decodability advantage\n",
             "`baseline_advantage` = untrained encoding of mode a − of mode b (mean over the "
             "re-initialisations, decorrelated training distribution); reliance share of a = "
             "`reliance_a / (reliance_a + reliance_b)` on the ID test set "
             "(initial_advantage.csv; docs/sensitivity.md).\n"]
    swept = [r for r in rows if r["point"]]
    for base in dict.fromkeys(r["train_base"] for r in swept):
        mine = [r for r in swept if r["train_base"] == base]
        a, b = mine[0]["mode_a"], mine[0]["mode_b"]
        by_loss = {loss: [r for r in mine if r["loss"] == loss] for loss in losses}
        sentences = [correlation_sentence(loss, a, b, rank_correlation(own))
                     for loss, own in by_loss.items() if any(r["shortcut_bias"] != "" for r in own)]
        if not sentences:
            continue
        lines.append(f"Over the sweep of {markdown_code(base)}: Spearman's rank correlation of "
                     f"each point's initial advantage ({a} − {b}) with the shortcut bias "
                     f"(P(follows {a}) − P(follows {b})), over points and seeds; 95% percentile "
                     f"bootstrap interval over points ({RESAMPLES} draws, a point's seeds kept "
                     "together); it predicts where the interval excludes 0:\n")
        lines += [f"- {sentence}" for sentence in sentences] + [""]
    single = [r for r in rows if not r["point"]]
    if single:
        lines += ["| training distribution | a − b | loss | runs | baseline advantage | "
                  "reliance share of a |", "|---|---|---|---|---|---|"]
        for train in dict.fromkeys(r["train"] for r in single):
            for loss in losses:
                own = [r for r in single if r["train"] == train and r["loss"] == loss]
                if not own:
                    continue
                cells = [stats.estimate([_float(r[k]) for r in own], interval=(math.nan,
                                                                               math.nan))
                         for k in ("baseline_advantage", "reliance_share_a")]
                text = [c.text(2) if c.k else "–" for c in cells]
                lines.append(f"| {markdown_text(train)} | {own[0]['mode_a']} − "
                             f"{own[0]['mode_b']} | {markdown_text(loss)} | {len(own)} | "
                             f"{' | '.join(text)} |")
        lines += ["", "One training distribution per pair gives one initial advantage: one point "
                  "per pair cannot give a correlation. A sweep over the pair (e.g. "
                  "`sweep_paper`) can.", ""]
    return "\n".join(lines)


def write_initial_advantage(rows: Sequence[Mapping[str, Any]], out_dir: str | Path
                            ) -> list[Path]:
    """Writes initial_advantage.csv (``COLUMNS``); nothing for a study without a redundant pair
    among its finished runs."""
    if not rows:
        return []
    return [write_csv_atomic(Path(out_dir) / OUTPUTS[0], rows, list(COLUMNS))]
