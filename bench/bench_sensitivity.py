#!/usr/bin/env python3
"""Benchmark of the permutation analysis: 8 modes x 5 repeats x 2,000 test images, default model.

The model is the default encoder of nodulelearn.models with a linear head, untrained (timing
does not depend on the weights). Prints one JSON object: wall time of a cold run (XLA
compilation of the renderer included) and of a warm run, the images rendered and predicted,
and the throughput of rendering alone and prediction alone, to show where the time goes.

Usage: python bench/bench_sensitivity.py [--n=2000] [--repeats=5] [--dist=clinical] [--smoke]
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nodulelearn import models  # noqa: E402
from nodulelearn.datasets import load_spec, sample_factors, spec_at_image_size  # noqa: E402
from nodulelearn.sensitivity import permutation_sensitivity  # noqa: E402
from nodulelearn.sensitivity.prediction import BatchedRenderer  # noqa: E402


def _throughput(spec, fn, factors, batch_size):
    renderer = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                               fn=fn, batch_size=batch_size)
    renderer.apply(factors.subset(np.arange(batch_size)))  # compile
    start = time.perf_counter()
    renderer.apply(factors)
    return len(factors) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dist", default="clinical")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run that checks the script works (numbers meaningless)")
    args = parser.parse_args()

    spec = load_spec(args.dist)
    if args.smoke:
        args.n, args.repeats, args.batch_size = 16, 1, 16
        spec = spec_at_image_size(spec, 32)
    encoder = models.build_encoder("compact_cnn", spec.image_size)
    model = models.classifier(encoder, models.linear_head(encoder.output_shape[-1]))
    kwargs = dict(n=args.n, repeats=args.repeats, seed=0, batch_size=args.batch_size)

    cold = permutation_sensitivity(model, spec, **kwargs)
    warm = permutation_sensitivity(model, spec, **kwargs)

    factors = sample_factors(spec, args.n, seed=1)
    render_rate = _throughput(spec, lambda images: tf.reduce_mean(images, [1, 2, 3]), factors,
                              args.batch_size)
    images = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                             fn=lambda x: x, batch_size=args.batch_size).apply(factors)
    # An open batch dimension, as the analysis' Predictor has: the last, smaller batch must not
    # retrace inside the timed loop.
    size = spec.image_size
    predict = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32)])
    predict(images[: args.batch_size])
    start = time.perf_counter()
    for i in range(0, len(images), args.batch_size):
        predict(images[i : i + args.batch_size]).numpy()
    predict_rate = len(images) / (time.perf_counter() - start)

    print(json.dumps({
        "benchmark": "permutation_sensitivity",
        "smoke": args.smoke,
        "distribution": spec.name,
        "image_size": spec.image_size,
        "model": "compact_cnn + linear head (untrained)",
        "modes": len(cold["modes"]),
        "n": args.n,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "images_predicted": warm["images_predicted"],
        "images_if_every_sample_rerendered": args.n * (1 + args.repeats * len(cold["modes"])),
        "seconds_cold": round(cold["seconds"], 2),
        "seconds_warm": round(warm["seconds"], 2),
        "render_images_per_second": round(render_rate, 1),
        "predict_images_per_second": round(predict_rate, 1),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
