"""Run with KERAS_BACKEND=jax: evaluates every registered loss and its gradient on given inputs.

Usage: python jax_values.py INPUTS.npz OUT.npz  (keys ``<name>/<regime>/y_true|y_pred``).
"""

import json
import sys

import jax
import keras
import numpy as np

from nodulelearn import losses


def main(inputs_path, out_path):
    inputs = np.load(inputs_path)
    out = {"backend": np.array(json.dumps(keras.backend.backend()))}
    steps = {}  # one compiled step per loss, reused across input regimes
    for key in sorted({k.rsplit("/", 1)[0] for k in inputs.files}):
        name = key.split("/")[0]
        if name not in steps:
            loss = losses.get(name)
            steps[name] = jax.jit(jax.value_and_grad(lambda p, y, loss=loss: loss(y, p)))
        value, grad = steps[name](inputs[f"{key}/y_pred"], inputs[f"{key}/y_true"])
        out[f"{key}/value"], out[f"{key}/grad"] = np.asarray(value), np.asarray(grad)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
