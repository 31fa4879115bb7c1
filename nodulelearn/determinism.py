"""Process-wide seeding and deterministic TF ops, set by the caller (a binary, a study runner).

Library functions such as ``nodulelearn.training.train`` take a seed for their data but never
change process-wide state; whoever runs them calls :func:`set_determinism` first. A run that
asks for determinism checks, with :func:`require_determinism`, that it was set for its seed, so
a forgotten call fails loudly instead of giving a silently different result.
"""

from __future__ import annotations

#: The seeds NumPy and ``keras.utils.set_random_seed`` accept: 0 <= seed < 2**32. Here, below
#: the data and training floors, so that both check a seed against the same bound.
SEED_RANGE = (0, 2**32 - 1)

_state: dict[str, object] = {"seed": None, "deterministic": False}


class DeterminismError(RuntimeError):
    """A run asked for deterministic training, but the process was not set up for it."""


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
    _state["seed"] = seed
    _state["deterministic"] = bool(deterministic) or bool(_state["deterministic"])


def require_determinism(seed: int) -> None:
    """Raises ``DeterminismError`` unless ``set_determinism(seed)`` (deterministic) ran last."""
    if not _state["deterministic"] or _state["seed"] != seed:
        now = ("not set up for deterministic ops" if not _state["deterministic"]
               else f"seeded with {_state['seed']!r}")
        raise DeterminismError(
            f"The run asks for deterministic training with seed={seed}, but the process is "
            f"{now}. Call nodulelearn.training.set_determinism({seed}) before train() "
            "(bin/train does).")
