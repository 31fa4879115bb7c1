"""Process-wide seeding and deterministic TF ops, set by the caller (a binary, a study runner).

Library functions such as ``nodulelearn.training.train`` take a seed for their data but never
change process-wide state; whoever runs them calls :func:`set_determinism` first.
"""

from __future__ import annotations


def set_determinism(seed: int, deterministic: bool = True) -> None:
    """Seeds Python's ``random``, NumPy and TensorFlow (``keras.utils.set_random_seed``);
    ``deterministic`` also makes every TF op deterministic (slower; same seed -> same weights).

    Op determinism cannot be switched off again in the same process.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
