#!/usr/bin/env python3
"""Forward+backward time of supcon, triplet_semihard and npairs vs. the matmul they must compute.

Prints JSON: for each loss and for a [1024, 128] x [128, 1024] matmul, the median seconds of one
forward+backward step (value and gradient w.r.t. the embeddings) inside ``tf.function``, with and
without XLA (``jit_compile``), and each loss's ratio to the matmul (goal: <= 3).

Shapes: B=512 samples, V=2 views, D=128. supcon and npairs take the views [B, V, D];
triplet_semihard takes the B·V = 1024 view embeddings [1024, D] with their labels (as when a
two-view batch is fed to an embedding loss), so every loss handles the 1024 x 1024 products.

For reference, the JSON also holds the time of the row-wise argsort of a [1024, 1024] matrix,
which semi-hard mining cannot avoid.

Usage: python bench/bench_losses.py [--repeats 20] [--classes 2] [--smoke]
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nodulelearn import losses  # noqa: E402

BATCH, VIEWS, DIM = 512, 2, 128


def median_seconds(step, args, repeats, warmup=3):
    for _ in range(warmup):
        _block(step(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(step(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _block(outputs):
    for tensor in tf.nest.flatten(outputs):
        tensor.numpy()  # waits for the computation


def loss_step(loss, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def matmul_step(jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            value = tf.reduce_sum(tf.matmul(a, b))
        return value, tape.gradient(value, [a, b])

    return step


def argsort_step(jit_compile):
    """The row-wise sort that semi-hard mining needs (forward only), for reference."""
    return tf.function(lambda d: tf.argsort(d, axis=1), jit_compile=jit_compile)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run that checks the script works (numbers meaningless)")
    args = parser.parse_args()
    batch, dim = (BATCH, DIM) if not args.smoke else (16, 8)
    if args.smoke:
        args.repeats = 1
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, batch).astype(np.int32)
    views = rng.standard_normal((batch, VIEWS, dim)).astype(np.float32)
    views /= np.linalg.norm(views, axis=-1, keepdims=True)
    inputs = {
        "supcon": (labels, views),
        "npairs": (labels, views),
        "triplet_semihard": (np.tile(labels, VIEWS), views.transpose(1, 0, 2).reshape(-1, dim)),
    }
    a = tf.constant(rng.standard_normal((batch * VIEWS, dim)).astype(np.float32))
    b = tf.constant(rng.standard_normal((dim, batch * VIEWS)).astype(np.float32))

    report = {
        "smoke": args.smoke,
        "shapes": {"batch": batch, "views": VIEWS, "dim": dim, "classes": args.classes},
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "tensorflow": tf.__version__,
        "gpu": bool(tf.config.list_physical_devices("GPU")),
        "seconds": {},
        "ratio_to_matmul": {},
    }
    for jit in (False, True):
        mode = "xla" if jit else "graph"
        seconds = {"matmul": median_seconds(matmul_step(jit), (a, b), args.repeats)}
        for name, (y_true, y_pred) in inputs.items():
            step = loss_step(losses.get(name), jit)
            seconds[name] = median_seconds(
                step, (tf.constant(y_true), tf.constant(y_pred)), args.repeats
            )
        distances = tf.abs(tf.matmul(a, a, transpose_b=True))
        seconds["argsort_1024x1024"] = median_seconds(argsort_step(jit), (distances,), args.repeats)
        report["seconds"][mode] = seconds
        report["ratio_to_matmul"][mode] = {
            name: round(value / seconds["matmul"], 2)
            for name, value in seconds.items()
            if name != "matmul"
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
