#!/usr/bin/env python3
"""Training throughput benchmark; prints JSON.

Measures, in one run:
- images/s of the real training loop (``fit_phase``: the epoch stream with its gather and view
  augmentation in tf.data, Keras ``fit``, the run's callbacks and per-epoch backups) against a
  bare ``train_on_batch`` loop of the same model on in-memory arrays (goal: ratio >= 0.9);
- the same ratio with the view augmentation off, which separates the augmentation's CPU work
  (real work, absent from the bare loop) from the loop's own overhead;
- the model's training FLOP/s (FLOPs counted analytically from the layers: 2 * MACs forward,
  x3 for forward + both backward products) against this machine's dense float32 matmul FLOP/s
  (goal: >= 40%);
- the renderer's throughput on its first call, XLA compilation included (a one-time cost per
  run: the training set is rendered once).

Usage: python bench/bench_training.py [--width 16] [--batch_size 128] [--steps 64] [--epochs 4] [--smoke]
"""

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nodulelearn import losses, models  # noqa: E402
from nodulelearn.datasets import spec_at_image_size  # noqa: E402
from nodulelearn.run_dir import RunDirectory  # noqa: E402
from nodulelearn.training.augment import build_augment  # noqa: E402
from nodulelearn.training.config import TrainConfig, resolve_config  # noqa: E402
from nodulelearn.training.data import render_split  # noqa: E402
from nodulelearn.training.fitting import RunContext, fit_phase, trainable  # noqa: E402


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Measured dense float32 matmul FLOP/s (n x n times n x n)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    step = tf.function(lambda a, b: tf.matmul(a, b))
    step(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        out = step(a, b)
    out.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the Conv2D and Dense layers for one image (nested models included)."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            total += 2 * h * w * c_out * k_h * k_w * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64, help="batches per epoch (as bin/train)")
    parser.add_argument("--epochs", type=int, default=4, help="the first one is warm-up")
    parser.add_argument("--train_dist", default="clinical")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run that checks the script works (numbers meaningless)")
    args = parser.parse_args()
    matmul_size = 2048
    if args.smoke:
        args.width, args.batch_size, args.steps, args.epochs, matmul_size = 4, 8, 2, 2, 64
    keras.utils.set_random_seed(0)
    n = args.steps * args.batch_size
    config = resolve_config(TrainConfig(
        loss="ce", n_train=n, batch_size=args.batch_size, epochs=args.epochs,
        model_params={"width": args.width}, test_dists=(args.train_dist,),
        image_size=32 if args.smoke else None))
    spec = spec_at_image_size(args.train_dist, config.image_size)

    start = time.perf_counter()
    images, labels = render_split(spec, n, 1)
    render_seconds = time.perf_counter() - start

    def build():
        encoder = models.build_encoder(config.model, config.image_size, **config.model_params)
        return trainable([encoder, models.linear_head(encoder.output_shape[-1])], "bench")

    # Bare loop: same model, loss and optimizer, in-memory arrays, train_on_batch.
    bare = build()
    bare.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get("ce"))
    x = tf.constant(images)
    y = tf.constant(labels)
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    for xb, yb in batches[:2]:
        bare.train_on_batch(xb, yb)
    machine = []

    class BareEpoch(keras.callbacks.Callback):
        """After each real epoch, one bare epoch and one matmul measurement: interleaving the
        three gives them the same share of whatever else runs on the machine."""

        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            for xb, yb in batches:
                bare.train_on_batch(xb, yb)
            self.times.append(time.perf_counter() - start)
            machine.append(matmul_flops(matmul_size))

    def real_loop(augment):
        """fit_phase with its stream, callbacks and backups; per-epoch (real, bare) seconds."""
        timer, bare_timer = EpochTimer(), BareEpoch()
        with tempfile.TemporaryDirectory() as tmp:
            ctx = RunContext(
                config=config, loss=losses.get("ce"), consumes="logits",
                strategy=tf.distribute.get_strategy(), run=RunDirectory(tmp),
                train_images=images, train_labels=labels, val_images=images[:0],
                val_labels=labels[:0], data_seed=1, augment=augment,
                callbacks=[timer, bare_timer], verbose=0)
            fit_phase(ctx, "train", build(), ctx.loss, images, labels, epochs=args.epochs,
                      augment=augment)
        # Epoch 0 traces the functions.
        return np.array(timer.times[1:]), np.array(bare_timer.times[1:])

    fit_times, bare_times = real_loop(build_augment(config.augment))
    plain_times, plain_bare_times = real_loop(None)
    fit_ips = n / np.median(fit_times)
    bare_ips = n / np.median(bare_times)
    machine_flops = float(np.median(machine[1:]))

    flops_per_image = forward_flops(bare)
    train_flops = 3 * flops_per_image * fit_ips
    print(json.dumps({
        "smoke": args.smoke,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "tf": tf.__version__, "keras": keras.__version__},
        "config": {"model": config.model, "width": args.width, "image_size": config.image_size,
                   "batch_size": args.batch_size, "steps_per_epoch": args.steps,
                   "timed_epochs": args.epochs - 1, "augment": list(config.augment),
                   "statistic": "median over the timed epochs, interleaved"},
        "render_images_per_s_first_call": n / render_seconds,
        "fit_images_per_s": fit_ips,
        "bare_train_on_batch_images_per_s": bare_ips,
        "fit_over_bare": fit_ips / bare_ips,
        "fit_over_bare_per_epoch": (bare_times / fit_times).round(3).tolist(),
        "without_augmentation": {
            "fit_images_per_s": n / np.median(plain_times),
            "fit_over_bare": float(np.median(plain_bare_times) / np.median(plain_times)),
        },
        "forward_flops_per_image": flops_per_image,
        "train_flops_per_s": train_flops,
        "matmul_flops_per_s": machine_flops,
        "train_flops_over_matmul": train_flops / machine_flops,
    }, indent=2))


if __name__ == "__main__":
    main()
