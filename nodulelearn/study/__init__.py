"""The study: losses x training distributions x seeds, each run trained, evaluated and probed.

``load_study`` reads a study (preset name or TOML path), ``validate_study`` checks it against the
package's losses, dataset presets and TrainConfig, ``run_study`` runs (a shard of) it on an
executor (``executors``: ``local`` worker processes, ``ray``, ``slurm``), resuming finished runs, and ``aggregate_study`` merges whatever has finished into results.csv,
sensitivity.csv, summary.md, heatmap.png and ood.png.
"""

from nodulelearn.study import executors
from nodulelearn.study.aggregate import Aggregate, aggregate_study, collect, read_study_file
from nodulelearn.study.plan import EvalDist, Run, parse_shard, plan_runs, shard_runs
from nodulelearn.study.runner import (
    RunOutcome,
    check_out_dir,
    execute_run,
    run_dir,
    run_states,
    run_study,
)
from nodulelearn.study.spec import (
    LossEntry,
    SensitivityBudget,
    StudyError,
    StudySpec,
    TrainEntry,
    load_study,
    preset_names,
    study_from_dict,
)
from nodulelearn.study.validate import validate_study

__all__ = [
    "executors",
    "Aggregate", "aggregate_study", "collect", "read_study_file",
    "EvalDist", "Run", "parse_shard", "plan_runs", "shard_runs",
    "RunOutcome", "check_out_dir", "execute_run", "run_dir", "run_states", "run_study",
    "LossEntry", "SensitivityBudget", "StudyError", "StudySpec", "TrainEntry",
    "load_study", "preset_names", "study_from_dict",
    "validate_study",
]  # fmt: skip
