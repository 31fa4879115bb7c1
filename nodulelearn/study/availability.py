"""Availability of a mode: how well a model learns it when it is the only mode predicting the label.

A study of ``kind = "availability"`` trains each loss on distributions in which exactly one mode
predicts the label (the ``<mode>_only`` presets: that mode has alignment 1, every other mode
varies independently of the label). Its aggregation writes:

``availability.csv``: one row per (loss, training distribution), means over seeds:

* ``accuracy``: in-distribution test accuracy at the end of training (``accuracy_sd`` over seeds);
* ``curve_auc``: the area under the validation-accuracy curve over the epochs of the phase that
  trains the classifier, normalised to [0, 1]: the mean of the validation accuracy over those
  epochs (each epoch a step of width 1/E). A mode learned at once scores near its final accuracy,
  one learned late scores lower, which ranks modes that all end near 1 (Hermann et al. 2023 use
  the same idea). For losses trained in one phase it is training itself; for losses whose
  protocol pretrains an encoder and then fits a linear probe, it is the probe on the frozen
  encoder (the pretraining phase has no classifier), so their curve_auc says how quickly a
  linear probe reads the mode off the features;
* ``mode`` (the distribution's one predictive mode), ``train_dist`` (its ``[train.<id>]`` key: a
  mode may appear twice, e.g. at its default look and at a calibrated one), ``seeds`` (how many),
  ``epochs`` (of that phase).

``availability.png``: accuracy and curve_auc per training distribution (sorted by mean
curve_auc), one bar per loss.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nodulelearn import run_dir as run_layout
from nodulelearn.atomic_files import save_figure_atomic, write_csv_atomic
from nodulelearn.study import stats
from nodulelearn.study.spec import StudyError, StudySpec

log = logging.getLogger(__name__)

COLUMNS = ("loss", "mode", "train_dist", "accuracy", "accuracy_sd", "curve_auc", "curve_auc_sd",
           "seeds", "epochs")


def predictive_mode(ref: str) -> str:
    """The one mode of a distribution whose value depends on the label.

    Raises:
        StudyError: none or several modes have a nonzero alignment.
    """
    from nodulelearn.datasets import load_spec

    modes = [m for m, s in load_spec(ref).modes.items() if s.fixed is None and s.alignment != 0]
    if len(modes) != 1:
        raise StudyError(
            f"An availability study trains on distributions where exactly one mode predicts the "
            f"label (e.g. the <mode>_only presets); {ref!r} has {len(modes)}: "
            f"{', '.join(modes) or 'none'}."
        )
    return modes[0]


def curve_auc(val_accuracy: Sequence[float]) -> float:
    """Mean of the validation accuracy over epochs: the area under the curve, in [0, 1].

    Raises:
        ValueError: an empty curve or a value outside [0, 1].
    """
    values = [float(v) for v in val_accuracy]
    if not values:
        raise ValueError("curve_auc needs at least one epoch of validation accuracy.")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"Validation accuracies must lie in [0, 1]. Received: {values}")
    return sum(values) / len(values)


def val_curve(history_csv: str | Path) -> list[float]:
    """Validation accuracy per epoch of the last phase with one, from training's history.csv.

    Returns:
        The curve, or ``[]`` if the file is missing or has no ``val_accuracy``.
    """
    path = Path(history_csv)
    if not path.is_file():
        return []
    from nodulelearn.training.callbacks import history_value  # "NA" and "" are both missing

    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if history_value(r.get("val_accuracy")) is not None]
    if not rows:
        return []
    last_phase = rows[-1].get("phase")
    return [history_value(r["val_accuracy"]) for r in rows if r.get("phase") == last_phase]


def availability_rows(
    study: StudySpec, records: Sequence[Mapping[str, Any]], out_dir: str | Path
) -> list[dict[str, Any]]:
    """The rows of availability.csv (module docstring) from the finished runs' records."""
    from nodulelearn.study.runner import run_dir

    dists = {e.id: e.dist for e in study.train}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        mode = predictive_mode(dists[record["train_dist"]])
        id_test = next(t["label"] for t in record["tests"] if t["role"] == "id")
        curve = val_curve(run_dir(out_dir, record["run_id"]) / "train" / run_layout.HISTORY)
        if not curve:
            log.warning("Run %s has no validation-accuracy curve in its %s; its curve_auc is "
                        "left out.", record["run_id"], run_layout.HISTORY)
        cell = cells.setdefault((record["loss"], record["train_dist"]), {
            "mode": mode, "accuracy": [], "curve_auc": [], "epochs": 0})
        cell["accuracy"].append(record["metrics"][id_test]["accuracy"])
        if curve:
            cell["curve_auc"].append(curve_auc(curve))
            cell["epochs"] = len(curve)
    rows = []
    for (loss, train_dist), cell in cells.items():
        acc, auc = stats.estimate(cell["accuracy"]), stats.estimate(cell["curve_auc"])
        rows.append({
            "loss": loss, "mode": cell["mode"], "train_dist": train_dist,
            "accuracy": acc.mean, "accuracy_sd": "" if acc.k < 2 else acc.sd,
            "curve_auc": "" if auc.k == 0 else auc.mean,
            "curve_auc_sd": "" if auc.k < 2 else auc.sd,
            "seeds": acc.k, "epochs": cell["epochs"],
        })  # fmt: skip
    return rows


def availability_figure(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """availability.png: accuracy and curve_auc per mode (by mean curve_auc), a bar per loss."""
    if not rows:
        return None
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    def value(row, key):
        v = row[key]
        return math.nan if v in ("", None) else float(v)

    losses = list(dict.fromkeys(r["loss"] for r in rows))
    modes = list(dict.fromkeys(r["train_dist"] for r in rows))
    score = {m: [value(r, "curve_auc") for r in rows if r["train_dist"] == m] for m in modes}
    modes.sort(key=lambda m: -sum(v for v in score[m] if math.isfinite(v)) / max(
        1, sum(math.isfinite(v) for v in score[m])))
    fig = Figure(figsize=(2.0 + 0.9 * len(modes) * 2, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / len(losses)
    for ax, key, label in ((axes[0], "accuracy", "ID accuracy (alone)"),
                           (axes[1], "curve_auc", "val-accuracy curve AUC")):
        for k, loss in enumerate(losses):
            by_mode = {r["train_dist"]: r for r in rows if r["loss"] == loss}
            xs = [i - 0.4 + width * (k + 0.5) for i, m in enumerate(modes) if m in by_mode]
            ys = [value(by_mode[m], key) for m in modes if m in by_mode]
            sds = [value(by_mode[m], f"{key}_sd") for m in modes if m in by_mode]
            ax.bar(xs, ys, width, yerr=[0.0 if not math.isfinite(s) else s for s in sds],
                   capsize=2, label=loss)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        names = {r["train_dist"]: r["mode"] for r in rows}
        ax.set_xticks(range(len(modes)), [m if names[m] == m else f"{m}\n({names[m]})"
                                          for m in modes], rotation=40, ha="right", fontsize=7)
        ax.set_ylim(0.0, 1.05)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure_atomic(path, fig)


#: The files write_availability_outputs may write.
OUTPUTS = ("availability.csv", "availability.png")


def write_availability_outputs(
    study: StudySpec, records: Sequence[Mapping[str, Any]], out_dir: str | Path
) -> list[Path]:
    """Writes availability.csv and availability.png for a ``kind = "availability"`` study.

    Returns:
        The paths written; nothing for other studies.
    """
    if study.kind != "availability":
        return []
    rows = availability_rows(study, records, out_dir)
    table, png = (Path(out_dir) / name for name in OUTPUTS)
    written = [write_csv_atomic(table, rows, list(COLUMNS))]
    figure = availability_figure(rows, png)
    if figure is not None:
        written.append(figure)
    return written


def check_availability_study(study: StudySpec) -> None:
    """An availability study's training distributions each have exactly one predictive mode.

    Raises:
        StudyError: naming the entry and its predictive modes.
    """
    if study.kind != "availability":
        return
    for entry in study.train:
        try:
            predictive_mode(entry.dist)
        except StudyError as err:
            raise StudyError(f"Study {study.source!r}, [train.{entry.id}]: {err}") from None


#: Below this ID accuracy of a mode alone, a study whose training distribution holds that mode
#: says so: no loss can prefer a mode the network cannot learn at that budget.
LOW_AVAILABILITY = 0.9


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A measured availability: ``mode`` alone, in the geometry of training distribution ``dist``.

    Attributes:
        dist: the name of the training distribution (preset name) whose geometry it was measured
            in (the mode alone: every other mode of ``dist`` at alignment 0).
        mode: the mode.
        loss: the loss trained.
        budget: the TrainConfig fields that set the budget (n_train, epochs, batch_size, model).
        accuracy: the ID test accuracy reached.
        command: how it was measured (machine and date included).
    """

    dist: str
    mode: str
    loss: str
    budget: Mapping[str, Any]
    accuracy: float
    command: str


BUDGET_KEYS = ("n_train", "epochs", "batch_size", "model")
QUICK_BUDGET = {"n_train": 1024, "epochs": 6, "batch_size": 64, "model": "compact_cnn"}
PAPER_BUDGET = {**QUICK_BUDGET, "n_train": 1536}
_CAL = ("bin/train --loss=ce --train_dist={dist} --test_dists={dist} --n_train={n_train} "
        "--n_val=256 --n_test=512 --epochs=6 --batch_size=64 (2-core CPU, {date})")


#: The calibration of the redundant pairs at the budgets of quick and paper, ce, one seed, on the
#: 2-core CPU: (pair, mode, budget, ID accuracy, the mode alone = the pair's OOD set that
#: decorrelates the other mode, date). margin_noise_decorrelated is margin_size_decorrelated
#: under another name (the same spec): measured once at paper's budget.
_CALIBRATION = (
    ("margin_size", "margin", QUICK_BUDGET, 0.998, "margin_size_decorrelated", "2026-12-01"),
    ("margin_size", "size", QUICK_BUDGET, 1.0, "size_margin_decorrelated", "2026-12-01"),
    ("margin_noise", "margin", QUICK_BUDGET, 0.998, "margin_noise_decorrelated", "2026-12-01"),
    ("margin_noise", "noise", QUICK_BUDGET, 0.9902, "noise_margin_decorrelated", "2026-12-01"),
    ("margin_size", "margin", PAPER_BUDGET, 1.0, "margin_size_decorrelated", "2026-12-02"),
    ("margin_size", "size", PAPER_BUDGET, 1.0, "size_margin_decorrelated", "2026-12-02"),
    ("margin_noise", "margin", PAPER_BUDGET, 1.0, "margin_size_decorrelated", "2026-12-02"),
    ("margin_noise", "noise", PAPER_BUDGET, 0.9922, "noise_margin_decorrelated", "2026-12-02"),
)

#: What is known of the availability of modes (see ``low_availability_notes``).
MEASURED: tuple[Measurement, ...] = (
    *(Measurement(dist, mode, "ce", budget, accuracy,
                  _CAL.format(dist=alone, n_train=budget["n_train"], date=date))
      for dist, mode, budget, accuracy, alone, date in _CALIBRATION),
    # bin/run_study --study=availability at commit 8d0b83a (one seed): the <mode>_only presets
    # below 0.9 alone with ce (the others: position 0.936, vessels 0.996, size 0.982, texture
    # 0.932, noise 0.961, calcification 0.943).
    Measurement("margin_only", "margin", "ce", QUICK_BUDGET, 0.551,
                "bin/run_study --study=availability (2-core CPU, 2026-12-01)"),
    Measurement("contrast_only", "contrast", "ce", QUICK_BUDGET, 0.717,
                "bin/run_study --study=availability (2-core CPU, 2026-12-01)"),
)


def low_availability_notes(
    study: StudySpec, measured: Sequence[Measurement] | None = None
) -> list[str]:
    """One sentence per predictive mode of a training distribution that was measured to reach
    less than ``LOW_AVAILABILITY`` ID accuracy alone at the study's budget.

    Modes never measured at this budget get no sentence (nothing is known).

    Args:
        study: the study (expanded, for sweeps: a point keeps its base distribution's name).
        measured: the measurements (default: ``MEASURED``).
    """
    from nodulelearn.datasets import load_spec

    measured = MEASURED if measured is None else measured
    budget = {k: study.budget.get(k) for k in BUDGET_KEYS}
    notes = []
    for entry in study.train:
        ref = entry.dist
        try:
            spec = load_spec(ref)
        except (OSError, ValueError):
            continue
        name = spec.name
        for m in measured:
            if m.dist != name or {k: m.budget.get(k) for k in BUDGET_KEYS} != budget:
                continue
            if m.accuracy < LOW_AVAILABILITY and spec.modes[m.mode].alignment != 0:
                notes.append(
                    f"In `{entry.id}` ({name}), the mode {m.mode} alone reaches only "
                    f"{m.accuracy:.3f} ID accuracy with {m.loss} at this budget (measured: "
                    f"{m.command}): below {LOW_AVAILABILITY}, so a model can hardly learn it and "
                    "no loss can be shown to prefer it. Raise the budget or the mode's visibility."
                )
    return notes


def availability_notes_markdown(study: StudySpec) -> str:
    """The ``low_availability_notes`` as a summary.md section (``""`` when there are none)."""
    notes = low_availability_notes(study)
    if not notes:
        return ""
    return "\n## Availability warning\n\n" + "".join(f"- {note}\n" for note in notes)
