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

Prints one JSON object: per-run seconds of each variant, their totals and the ratios to
``today``, and the ratio extrapolated to ``--study_runs`` runs per reference (first run plus the
mean of the cached runs).

Usage: python bench/bench_reference.py [--runs=4] [--inits=5] [--image_size=64]
       [--dist=margin_noise] [--study_runs=3,6,18] [--no_layers] [--smoke]
"""

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_runs(encoders, spec, out, **options):
    seconds = []
    for i, encoder in enumerate(encoders):
        from nodulelearn.sensitivity import probe_encoding

        start = time.perf_counter()
        probe_encoding(encoder, spec, os.path.join(out, str(i)), seed=0, **options)
        seconds.append(time.perf_counter() - start)
    return seconds


def _summary(seconds, today):
    rest = seconds[1:] or seconds
    return {"seconds": [round(s, 2) for s in seconds], "total": round(sum(seconds), 2),
            "first": round(seconds[0], 2), "cached_mean": round(sum(rest) / len(rest), 2),
            "ratio_to_today": round(sum(seconds) / sum(today), 3)}


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
    parser.add_argument("--smoke", action="store_true",
                        help="32 pixels, 32 samples (a smoke study's), 2 runs, 2 inits "
                             "(the fewest: the interval needs two): for tests")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.inits, args.image_size, args.n = 2, 2, 32, 32

    from nodulelearn.datasets import spec_at_image_size
    from nodulelearn.models.encoders import compact_cnn
    from nodulelearn.sensitivity import encoding_distribution
    from nodulelearn.sensitivity.untrained import reinitialized

    spec = encoding_distribution(spec_at_image_size(args.dist, args.image_size))
    base = compact_cnn(args.image_size)
    encoders = [reinitialized(base, 100 + i) for i in range(args.runs)]
    result = {"dist": spec.name, "image_size": args.image_size, "runs": args.runs,
              "inits": args.inits, "n": args.n, "smoke": args.smoke,
              "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as out:
        _time_runs(encoders[:1], spec, os.path.join(out, "warm"), n=args.n, baseline_inits=0,
                   encoding_layers=())  # imports and first traces, in no variant
        today = _time_runs(encoders, spec, os.path.join(out, "today"), n=args.n,
                           baseline_inits=0, encoding_layers=())
        result["today"] = _summary(today, today)
        variants = {"reference": ()} if args.no_layers else {"reference": (), "layers": None}
        for name, layers in variants.items():
            cache = os.path.join(out, f"cache_{name}")
            seconds = _time_runs(encoders, spec, os.path.join(out, name), n=args.n,
                                 baseline_inits=args.inits, encoding_layers=layers,
                                 baseline_cache_dir=cache)
            result[name] = _summary(seconds, today)
    today_mean = result["today"]["total"] / args.runs
    result["extrapolated_ratio"] = {
        variant: {str(r): round((result[variant]["first"] + (r - 1) *
                                 result[variant]["cached_mean"]) / (r * today_mean), 3)
                  for r in (int(x) for x in args.study_runs.split(","))}
        for variant in variants}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
