#!/usr/bin/env python3
"""Data-generation benchmark; prints JSON.

Measures, in one run on the same machine:
- ``make_dataset`` throughput (images/s): sampling + rendering inside tf.data, batched and
  prefetched, counted after a warm-up (XLA compilation, pipeline start-up);
- the renderer alone (``render`` on one fixed batch, repeated), for reference;
- the training throughput (images/s) of the default encoder (``compact_cnn``, width 16) with a
  linear head, ``train_on_batch`` on in-memory arrays of the same batch size;
- the ratio generation / training (goal: >= 10, so input never stalls training).

CPU time per image is reported too: on a machine shared with other jobs it is steadier than
wall-clock time.

Usage: python bench/bench_data.py [--dist clinical] [--image_size 64] [--batch_size 256] [--smoke]
                                  [--images 8192] [--train_steps 20]
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nodulelearn.datasets import load_spec, make_dataset, render, sample_factors  # noqa: E402
from nodulelearn.datasets.modes import MODE_NAMES  # noqa: E402


class _Clock:
    """Wall-clock and process CPU time of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def bench_make_dataset(spec, images: int, batch_size: int, warmup_batches: int = 4) -> dict:
    dataset = make_dataset(
        spec, images + warmup_batches * batch_size, seed=0, batch_size=batch_size
    )
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    count = 0
    with _Clock() as clock:
        for batch, _ in iterator:
            count += int(batch.shape[0])
    return {
        "images": count,
        "images_per_s": count / clock.wall,
        "cpu_ms_per_image": 1e3 * clock.cpu / count,
    }


def bench_render(spec, batch_size: int, repeats: int = 20) -> dict:
    factors = sample_factors(spec, batch_size, seed=0)
    values = {m: tf.constant(factors.values[m]) for m in MODE_NAMES}
    seeds = tf.constant(factors.noise_seeds)
    geometry = dict(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm)
    render(values, seeds, **geometry).numpy()  # compile
    with _Clock() as clock:
        for _ in range(repeats):
            render(values, seeds, **geometry).numpy()
    count = repeats * batch_size
    return {"images_per_s": count / clock.wall, "cpu_ms_per_image": 1e3 * clock.cpu / count}


def _classifier(image_size: int):
    """The default encoder (``compact_cnn``, width 16) with a linear head."""
    from nodulelearn import models

    encoder = models.build_encoder("compact_cnn", image_size, width=16)
    model = models.classifier(encoder, models.linear_head(encoder.output_shape[-1]))
    return model, "nodulelearn.models compact_cnn (width 16) + linear head"


def bench_training(spec, batch_size: int, steps: int, warmup_steps: int = 3) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    model, description = _classifier(spec.image_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    size = spec.image_size
    images = rng.uniform(0, 1, (batch_size, size, size, 1)).astype(np.float32)
    labels = rng.integers(0, 2, (batch_size, 1)).astype(np.float32)
    for _ in range(warmup_steps):
        model.train_on_batch(images, labels)
    with _Clock() as clock:
        for _ in range(steps):
            model.train_on_batch(images, labels)
    count = steps * batch_size
    return {
        "model": description,
        "images_per_s": count / clock.wall,
        "cpu_ms_per_image": 1e3 * clock.cpu / count,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dist", default="clinical")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--train_steps", type=int, default=20)
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run that checks the script works (numbers meaningless)")
    args = parser.parse_args()
    if args.smoke:
        args.image_size, args.batch_size, args.images, args.train_steps = 32, 16, 32, 2

    spec = dataclasses.replace(load_spec(args.dist), image_size=args.image_size)
    load_at_start = os.getloadavg()
    data = bench_make_dataset(spec, args.images, args.batch_size)
    render_only = bench_render(spec, args.batch_size, repeats=2 if args.smoke else 20)
    training = bench_training(spec, args.batch_size, args.train_steps)
    report = {
        "benchmark": "data generation vs training throughput",
        "smoke": args.smoke,
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "load_average_1min_at_start": round(load_at_start[0], 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "tensorflow": tf.__version__,
        "dist": args.dist,
        "image_size": args.image_size,
        "pixel_spacing_mm": spec.pixel_spacing_mm,
        "batch_size": args.batch_size,
        "make_dataset": data,
        "render_only": render_only,
        "training": training,
        "ratio_generation_to_training": data["images_per_s"] / training["images_per_s"],
        "goal_ratio": 10.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
