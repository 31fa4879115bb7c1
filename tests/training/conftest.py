"""Shared checks of the training fault tests."""

import json

import keras
import numpy as np
import pytest


def _assert_same_run(a, b):
    """Run directory ``b`` (resumed after a fault) ends like ``a`` (uninterrupted): the same
    weights bit for bit, the same metrics.json, complete, no temporary or backup left."""
    weights_a = keras.saving.load_model(a / "model.keras").get_weights()
    weights_b = keras.saving.load_model(b / "model.keras").get_weights()
    for x, y in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    assert json.loads((b / "status.json").read_text())["state"] == "complete"
    assert not list(b.glob(".*")) and not (b / "backup").exists()  # no temporary left


@pytest.fixture
def assert_same_run():
    """``assert_same_run(uninterrupted_dir, resumed_dir)``."""
    return _assert_same_run
