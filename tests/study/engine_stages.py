"""Stand-in stages that pickle, for the executor tests (imported by name in worker processes of
Ray, Slurm and the local executor: the test puts this folder on PYTHONPATH).

Deterministic: every number is a hash of the run's settings, so one study gives the same records
whatever ran it. Each training start leaves ``<out>/started/<run id>.<pid>.<parent pid>`` (which
process ran it, under which raylet); ``pause_s`` keeps it running so that a test can kill it, and
``crash_once`` kills the worker process the first time that run starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

MODES = ("margin", "size", "texture", "calcification", "contrast", "position", "noise", "vessels")


def _unit(*parts) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class EngineStages:
    """``train_fn``, ``sensitivity_fn`` (``__call__``) and ``encoding_fn`` in one object."""

    def __init__(self, pause_s: float = 0.0, crash_once: str | None = None):
        self.pause_s = pause_s
        self.crash_once = crash_once

    def train(self, fields, train_dir: Path, overwrite: bool) -> dict:
        run_id = train_dir.parent.name
        out = train_dir.parents[2]
        started = out / "started"
        started.mkdir(exist_ok=True)
        first = not any(started.glob(f"{run_id}.*"))
        (started / f"{run_id}.{os.getpid()}.{os.getppid()}").write_text(
            os.environ.get("TF_NUM_INTRAOP_THREADS", ""))
        if self.crash_once == run_id and first:
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in the middle of this run
        time.sleep(self.pause_s)
        train_dir.mkdir(parents=True, exist_ok=True)
        metrics = {}
        for ref in fields["test_dists"]:
            acc = 0.5 + 0.5 * _unit(fields["loss"], fields["seed"], Path(ref).name)
            metrics[Path(ref).stem] = {
                "accuracy": acc, "sensitivity": acc, "specificity": acc,
                "balanced_accuracy": acc, "auc": min(1.0, acc + 0.05), "n": 64,
            }  # fmt: skip
        (train_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    def __call__(self, train_dir, dist_ref, *, n, repeats, seed, batch_size) -> dict:
        run_id = Path(train_dir).parent.name
        modes = [{"mode": m, "varies": True, "delta_accuracy": _unit(run_id, dist_ref, m) / 4,
                  "mean_abs_delta_p": 0.1, "reliance": _unit(run_id, Path(dist_ref).name, m),
                  "reliance_ci_low": 0.0, "reliance_ci_high": 1.0} for m in (*MODES, "nuisance")]
        return {"baseline": {"accuracy": 0.9, "auc": 0.95}, "modes": modes, "n": n,
                "repeats": repeats, "seed": seed}  # fmt: skip

    def encoding(self, train_dir, train_ref, *, seed, n, out_dir) -> dict:
        run_id = Path(train_dir).parent.name
        modes = [{"mode": m, "varies": True, "metric": "accuracy", "score": _unit(run_id, m),
                  "normalized": _unit(run_id, m), "normalized_ci_low": 0.0,
                  "normalized_ci_high": 1.0} for m in MODES]  # fmt: skip
        return {"distribution": f"{Path(train_ref).stem}_independent", "n": n or 1000,
                "seed": seed, "modes": modes}

    def recoverability(self, train_dir, refs, *, seed, n_test, n_fit, out_dir) -> list[dict]:
        run_id = Path(train_dir).parent.name
        return [{"distribution": Path(ref).stem, "original_accuracy": 0.6,
                 "original_accuracy_ci_low": 0.5, "original_accuracy_ci_high": 0.7,
                 "retrained_accuracy": 0.7 + 0.3 * _unit(run_id, Path(ref).name),
                 "retrained_accuracy_ci_low": 0.6, "retrained_accuracy_ci_high": 1.0,
                 "n_fit": n_fit or 512, "n_test": n_test} for ref in refs]  # fmt: skip

    def fns(self) -> dict:
        """``run_study``'s stand-in keyword arguments."""
        return {"train_fn": self.train, "sensitivity_fn": self, "encoding_fn": self}


def records_without_times(out: Path) -> dict[str, dict]:
    """``{run id: record.json}`` of a study folder, without the stages' wall times."""
    found = {}
    for path in sorted(Path(out, "runs").glob("*/record.json")):
        record = json.loads(path.read_text())
        record.pop("seconds")
        found[record["run_id"]] = record
    return found


def starts(out: Path) -> dict[str, list[tuple[int, int, str]]]:
    """``{run id: [(pid, parent pid, TF_NUM_INTRAOP_THREADS)]}``: every start of every run."""
    found: dict[str, list] = {}
    for path in sorted(Path(out, "started").glob("*")):
        run_id, pid, ppid = path.name.rsplit(".", 2)
        found.setdefault(run_id, []).append((int(pid), int(ppid), path.read_text()))
    return found
