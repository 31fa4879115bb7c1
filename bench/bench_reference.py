#!/usr/bin/env python3
"""Benchmark of the untrained reference's cost to a study: encoding time with and without it.

A study reads the encoding of each run's encoder on the decorrelated training distribution; the
untrained reference (K re-initialisations, same read-out, sample and folds) depends only on the
architecture, the distribution and the read-out settings, so a study computes it once per
training distribution and encoder config and every other run reads it from the cache. This
script times ``probe_encoding`` for ``--runs`` encoders of one architecture (fresh inits stand in
for trained encoders: the time does not depend on the weights) on one distribution and one
encoding sample, as a study's runs of one training distribution would:

- ``today``: without the reference (``baseline_inits=0``, the embedding only);
- ``reference``: with ``--inits`` re-initialisations, cached on disk after the first run;
- ``layers`` (unless ``--no_layers``): the same plus the layer-wise encoding (every pooling
  layer and the embedding).

With ``--old_tree=PATH`` (a checkout of an earlier commit, e.g. ``git worktree add --detach
/tmp/old 4eac382``) the script also times ``today`` with that checkout's code, in a subprocess
right before its own variants, and reports every variant's ratio to it: the cost of the
reference against the encoding time before the read-out was made faster.

Prints one JSON object: per-run seconds of each variant (wall clock, and ``cpu_``: the process'
CPU time, steadier on a loaded machine), their totals and the ratios to ``today``, and the ratio
extrapolated to ``--study_runs`` runs per reference (first run plus the mean of the cached
runs); with ``--old_tree``, ``old_today`` and the same ratios to it.

Usage: python bench/bench_reference.py [--runs=4] [--inits=5] [--image_size=64]
       [--dist=margin_noise] [--study_runs=3,6,18] [--no_layers] [--old_tree=PATH] [--smoke]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_runs(encoders, spec, out, **options):
    """Wall-clock and CPU seconds (this process, every thread) of ``probe_encoding`` per encoder."""
    times = []
    for i, encoder in enumerate(encoders):
        from nodulelearn.sensitivity import probe_encoding

        wall, cpu = time.perf_counter(), time.process_time()
        probe_encoding(encoder, spec, os.path.join(out, str(i)), seed=0, **options)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def _embedding_only() -> dict:
    """``probe_encoding``'s options for the encoding of the embedding alone, without the
    reference: none for a checkout that predates them (``--old_tree``)."""
    import inspect

    from nodulelearn.sensitivity import probe_encoding

    accepted = inspect.signature(probe_encoding).parameters
    return {k: v for k, v in (("baseline_inits", 0), ("encoding_layers", ())) if k in accepted}


def _summary(times, today):
    """Per-run seconds, total, first run, mean of the later (cached) runs and the ratio of the
    total to ``today``'s: wall-clock, and with ``cpu_`` the process' CPU time (steadier than the
    wall clock on a loaded machine)."""
    found = {}
    for prefix, column in (("", 0), ("cpu_", 1)):
        seconds, base = [t[column] for t in times], [t[column] for t in today]
        rest = seconds[1:] or seconds
        found.update({f"{prefix}seconds": [round(s, 2) for s in seconds],
                      f"{prefix}total": round(sum(seconds), 2),
                      f"{prefix}first": round(seconds[0], 2),
                      f"{prefix}cached_mean": round(sum(rest) / len(rest), 2),
                      f"{prefix}ratio_to_today": round(sum(seconds) / sum(base), 3)})
    return found


def _extrapolated(summary, today, study_runs, prefix=""):
    """(first run + (m - 1) x cached run) / (m x today's mean run), for m in ``study_runs``."""
    today_mean = today[f"{prefix}total"] / len(today[f"{prefix}seconds"])
    return {str(m): round((summary[f"{prefix}first"] + (m - 1) * summary[f"{prefix}cached_mean"])
                          / (m * today_mean), 3) for m in study_runs}


def _old_today(tree, args):
    """``today``'s per-run (wall, CPU) seconds timed with the code of the checkout ``tree`` (this
    script in a subprocess whose ``nodulelearn`` is ``tree``'s)."""
    command = [sys.executable, os.path.abspath(__file__), "--today_only", f"--runs={args.runs}",
               f"--image_size={args.image_size}", f"--dist={args.dist}"]
    command += [] if args.n is None else [f"--n={args.n}"]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    if not report["code"].startswith(os.path.abspath(tree)):
        raise RuntimeError(f"Expected the code of {tree}; the subprocess ran {report['code']}")
    return list(zip(report["today"]["seconds"], report["today"]["cpu_seconds"], strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--inits", type=int, default=5)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--dist", default="margin_noise")
    parser.add_argument("--n", type=int, default=None, help="encoding samples (default: the "
                        "analysis' rule, 2560 for compact_cnn)")
    parser.add_argument("--study_runs", default="3,6,18")
    parser.add_argument("--no_layers", action="store_true")
    parser.add_argument("--old_tree", default=None,
                        help="a checkout of an earlier commit: also time today's variant with "
                             "its code, and report the ratios to it")
    parser.add_argument("--today_only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true",
                        help="32 pixels, 32 samples (a smoke study's), 2 runs, 2 inits "
                             "(the fewest: the interval needs two): for tests")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.inits, args.image_size, args.n = 2, 2, 32, 32
    study_runs = [int(x) for x in args.study_runs.split(",")]
    old_today = _old_today(args.old_tree, args) if args.old_tree else None

    import keras

    import nodulelearn
    from nodulelearn.datasets import spec_at_image_size
    from nodulelearn.models.encoders import compact_cnn
    from nodulelearn.sensitivity import encoding_distribution

    spec = encoding_distribution(spec_at_image_size(args.dist, args.image_size))
    encoders = []
    for i in range(args.runs):  # seeded fresh inits: the same with --old_tree's code
        keras.utils.set_random_seed(100 + i)
        encoders.append(compact_cnn(args.image_size))
    result = {"dist": spec.name, "image_size": args.image_size, "runs": args.runs,
              "inits": args.inits, "n": args.n, "smoke": args.smoke,
              "code": os.path.dirname(os.path.dirname(os.path.abspath(nodulelearn.__file__))),
              "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    variants = {} if args.today_only else \
        {"reference": ()} if args.no_layers else {"reference": (), "layers": None}
    with tempfile.TemporaryDirectory() as out:
        plain = _embedding_only()
        _time_runs(encoders[:1], spec, os.path.join(out, "warm"), n=args.n,
                   **plain)  # imports and first traces, in no variant
        today = _time_runs(encoders, spec, os.path.join(out, "today"), n=args.n, **plain)
        result["today"] = _summary(today, today)
        for name, layers in variants.items():
            cache = os.path.join(out, f"cache_{name}")
            seconds = _time_runs(encoders, spec, os.path.join(out, name), n=args.n,
                                 baseline_inits=args.inits, encoding_layers=layers,
                                 baseline_cache_dir=cache)
            result[name] = _summary(seconds, today)
    result["extrapolated_ratio"] = {
        variant: _extrapolated(result[variant], result["today"], study_runs)
        for variant in variants}
    result["extrapolated_cpu_ratio"] = {
        variant: _extrapolated(result[variant], result["today"], study_runs, "cpu_")
        for variant in variants}
    if old_today is not None:
        result["old_tree"] = os.path.abspath(args.old_tree)
        result["old_today"] = old = _summary(old_today, old_today)
        result["ratio_to_old_today"] = {
            variant: {"runs": round(result[variant]["total"] / old["total"], 3),
                      **_extrapolated(result[variant], old, study_runs),
                      "cpu_runs": round(result[variant]["cpu_total"] / old["cpu_total"], 3),
                      "cpu": _extrapolated(result[variant], old, study_runs, "cpu_")}
            for variant in ["today", *variants]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
