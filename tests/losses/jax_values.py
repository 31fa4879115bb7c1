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
    for key in sorted({k.rsplit("/", 1)[0] for k in inputs.files}):
        loss = losses.get(key.split("/")[0])
        y_true = inputs[f"{key}/y_true"]
        value, grad = jax.value_and_grad(lambda p, loss=loss, y=y_true: loss(y, p))(
            inputs[f"{key}/y_pred"]
        )
        out[f"{key}/value"], out[f"{key}/grad"] = np.asarray(value), np.asarray(grad)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
