#!/usr/bin/env python3
"""Benchmark of the encoding read-outs: ``decodability`` of every mode from a 128-wide embedding.

The embedding is a random linear map of the sampled factors plus noise (timing does not depend on
what it encodes). Prints one JSON object: the wall time of ``decodability`` with the BLAS thread
pool as nodulelearn runs it (one thread per fit) and with the library default (one thread per
core), each once on the machine as it is and once while one busy process per core keeps every
core busy (as a second study shard or TensorFlow does), and their ratios.

Usage: python bench/bench_encoding.py [--n=2048] [--dist=margin_noise_decorrelated] [--smoke]
"""

import argparse
import json
import multiprocessing
import os
import platform
import time
from unittest import mock

import numpy as np

from nodulelearn.datasets import MODE_NAMES, load_spec, sample_factors
from nodulelearn.sensitivity import encoding


def _busy(stop):
    while not stop.is_set():
        np.linalg.svd(np.random.default_rng(0).normal(size=(300, 300)))


def _decode(embeddings, factors, modes, *, default_threads: bool, bootstrap: int):
    if not default_threads:
        return encoding.decodability(embeddings, factors, seed=0, modes=modes,
                                     bootstrap=bootstrap)
    import threadpoolctl

    class _Unlimited:  # the library's own thread count instead of one
        def __init__(self, *_args, **_kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    with mock.patch.object(threadpoolctl, "threadpool_limits", _Unlimited):
        return encoding.decodability(embeddings, factors, seed=0, modes=modes,
                                     bootstrap=bootstrap)


def _time(embeddings, factors, modes, default_threads, bootstrap):
    start = time.perf_counter()
    _decode(embeddings, factors, modes, default_threads=default_threads, bootstrap=bootstrap)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--dist", default="margin_noise_decorrelated")
    parser.add_argument("--smoke", action="store_true",
                        help="128 samples, one mode, 10 bootstrap resamples (tests)")
    args = parser.parse_args()
    n = 128 if args.smoke else args.n
    modes = ("size",) if args.smoke else None  # None: every mode
    bootstrap = 10 if args.smoke else 20  # 10: the fewest decodability accepts
    factors = sample_factors(load_spec(args.dist), n, seed=0)
    base = np.concatenate([np.asarray(factors.values[m], np.float64).reshape(n, -1)
                           for m in MODE_NAMES], axis=1)
    rng = np.random.default_rng(0)
    embeddings = base @ rng.normal(size=(base.shape[1], 128)) + rng.normal(size=(n, 128))
    _time(embeddings, factors, modes, False, bootstrap)  # imports and first fits
    seconds = {"one_thread": _time(embeddings, factors, modes, False, bootstrap),
               "default_threads": _time(embeddings, factors, modes, True, bootstrap)}
    stop = multiprocessing.Event()
    busy = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(os.cpu_count() or 1)]
    for p in busy:
        p.start()
    try:
        seconds["one_thread_busy_cores"] = _time(embeddings, factors, modes, False, bootstrap)
        seconds["default_threads_busy_cores"] = _time(embeddings, factors, modes, True, bootstrap)
    finally:
        stop.set()
        for p in busy:
            p.join()
    print(json.dumps({
        "n": n, "embedding_dim": 128, "seconds": seconds,
        "default_over_one_thread": seconds["default_threads"] / seconds["one_thread"],
        "default_over_one_thread_busy_cores":
            seconds["default_threads_busy_cores"] / seconds["one_thread_busy_cores"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "smoke": args.smoke,
    }, indent=2))


if __name__ == "__main__":
    main()
