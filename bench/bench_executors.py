#!/usr/bin/env python3
"""Executor benchmark: one tiny study (smoke budget) launched on each executor; prints JSON.

For each executor, a fresh output folder and the same study (ce and supcon x one training
distribution and its OOD set x seeds; with ``--smoke`` ce, one seed and no OOD set; 32-pixel
images, one epoch, deterministic): the launch's wall time, the sum of its runs' stage times
(training, sensitivity, encoding, as each worker measured them), and the overhead, wall time -
stage time / workers (process starts, TensorFlow imports, a Ray cluster's start).
``same_records`` says whether every executor gave the records of the first
(``largest_relative_difference``: how far each is from it; TensorFlow's sums depend on its
thread count, so runs with other threads per run differ in float32 rounding).
The machine's load average is reported before and after: on a shared machine, wall times are
only comparable within one report.

Executors: ``inprocess`` (the runs in this process), ``local:N`` (N worker processes), ``ray``
(a private local cluster), ``slurm`` (a job array on the cluster this machine submits to).

Usage: python bench/bench_executors.py [--seeds 2] [--executors inprocess,local:1,local:2,ray]
                                       [--smoke]
"""

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from nodulelearn.study import load_study, run_study, validate_study  # noqa: E402
from nodulelearn.study.encoding_stage import REFERENCE_DIR  # noqa: E402

TRAIN = """name = "bench_train"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
alignment = 1.0
[modes.size]
alignment = 1.0
"""
OOD = TRAIN.replace("bench_train", "bench_ood").replace(
    "[modes.size]\nalignment = 1.0", "[modes.size]\nalignment = 0.0")
STUDY = """name = "bench_executors"
seeds = {seeds}
[budget]
smoke = true
deterministic = true
batch_size = 32
n_test = 64
[sensitivity]
n = 32
repeats = 1
[losses.ce]
{supcon}[train.bench]
dist = "bench_train.toml"
ood = {ood}
"""


def _executor(spec: str) -> tuple[str, dict, int]:
    """``(executor name, options, workers)`` of ``inprocess``, ``local:N``, ``ray``, ``slurm``."""
    if spec == "inprocess":
        return "local", {"runs_per_process": None}, 1
    if spec.startswith("local:"):
        workers = int(spec.split(":", 1)[1])
        return "local", {"workers": workers}, workers
    if spec == "ray":
        return "ray", {}, os.cpu_count() or 1
    if spec == "slurm":
        return "slurm", {"cpus_per_task": 1, "mem": "2G", "time_min": 30, "poll_s": 1.0}, 1
    raise SystemExit(f"Unknown executor {spec!r}: expected inprocess, local:N, ray or slurm.")


def _without_times(value):
    """``value`` without the wall times its analyses measured (``seconds``, ``*_seconds``)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if not k.endswith("seconds")}
    return [_without_times(v) for v in value] if isinstance(value, list) else value


def _largest_difference(a, b) -> float:
    """The largest relative difference between two records' numbers (inf: not the same shape)."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max((_largest_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((_largest_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return 0.0 if a == b else float("inf")


def _records(out: Path) -> dict:
    found = {}
    for path in sorted(out.glob("runs/*/record.json")):
        record = json.loads(path.read_text())
        found[record["run_id"]] = (record.pop("seconds"), record)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--executors", default="inprocess,local:1,local:2,ray")
    parser.add_argument("--smoke", action="store_true",
                        help="one run (ce, one seed, no OOD set), in this process and in one "
                             "worker (which reuses the first's untrained reference): for tests")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.executors = 1, "inprocess,local:1"
    logging.basicConfig(level=logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    (base / "bench_train.toml").write_text(TRAIN)
    (base / "bench_ood.toml").write_text(OOD)
    supcon = "" if args.smoke else "[losses.supcon]\ntemperature = 0.2\n"
    ood = "[]" if args.smoke else '["bench_ood.toml"]'  # smoke: no OOD set to test and refit
    (base / "study.toml").write_text(STUDY.format(seeds=list(range(args.seeds)), supcon=supcon,
                                                  ood=ood))
    study = validate_study(load_study(str(base / "study.toml")))
    load_before = os.getloadavg()
    wall, stage, overhead, difference, reference, first = {}, {}, {}, {}, None, None
    for spec in args.executors.split(","):
        name, options, workers = _executor(spec)
        out = base / spec.replace(":", "-")
        if args.smoke and first is not None and (first / REFERENCE_DIR).is_dir():
            # Smoke: the untrained reference (a cache shared by a study's runs) computed once,
            # not once per executor as in the full benchmark.
            shutil.copytree(first / REFERENCE_DIR, out / REFERENCE_DIR)
        first = first or out
        start = time.perf_counter()
        outcomes = run_study(study, out, executor=name, executor_options=options)
        wall[spec] = time.perf_counter() - start
        if any(o.status != "ran" for o in outcomes):
            raise SystemExit(f"{spec}: runs failed: {outcomes}")
        records = _records(out)
        stage[spec] = sum(sum(s.values()) for s, _ in records.values())
        overhead[spec] = wall[spec] - stage[spec] / min(workers, len(records))
        results = {k: _without_times(r) for k, (_, r) in records.items()}
        for record in results.values():  # where the study's files lie differs per launch
            record.pop("fingerprint", None)
        reference = reference or results
        difference[spec] = _largest_difference(results, reference)
    print(json.dumps({
        "runs": len(reference), "wall_s": wall, "stage_s": stage, "overhead_s": overhead,
        "same_records": all(d == 0.0 for d in difference.values()),
        "largest_relative_difference": difference, "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": datetime.date.today().isoformat(), "smoke": args.smoke,
    }, indent=2))  # fmt: skip
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
