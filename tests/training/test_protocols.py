"""Protocol registry and the view adapter between training batches and the losses."""

import keras
import numpy as np
import pytest

from nodulelearn import losses
from nodulelearn.training.protocols import PROTOCOLS, MultiViewLoss


def test_both_protocols_are_registered():
    assert PROTOCOLS.names() == ["end_to_end", "pretrain_probe"]


@pytest.mark.parametrize("name", losses.names())
def test_every_loss_trains_under_a_registered_protocol(name):
    assert losses.info(name).protocol in PROTOCOLS


class _Recorder(keras.losses.Loss):
    def call(self, y_true, y_pred):
        self.seen = (tuple(y_true.shape), tuple(y_pred.shape), np.asarray(y_true))
        return keras.ops.zeros_like(y_true)


def test_views_are_flattened_or_grouped_as_the_loss_consumes():
    labels = np.array([0, 1, 1], np.int32)
    embeddings = np.arange(3 * 2 * 4, dtype=np.float32).reshape(6, 4)  # sample-major views
    flat = _Recorder()
    MultiViewLoss(flat, views=2, consumes="embeddings")(labels, embeddings)
    assert flat.seen[:2] == ((6,), (6, 4))
    np.testing.assert_array_equal(flat.seen[2], [0, 0, 1, 1, 1, 1])
    grouped = _Recorder()
    MultiViewLoss(grouped, views=2, consumes="views")(labels, embeddings)
    assert grouped.seen[:2] == ((3,), (3, 2, 4))
    with pytest.raises(ValueError, match="consume 'embeddings' or 'views'"):
        MultiViewLoss(flat, views=2, consumes="logits")


@pytest.mark.parametrize(
    "name", [n for n in losses.names() if losses.info(n).protocol == "pretrain_probe"])
def test_every_pretraining_loss_gets_a_finite_value_through_the_adapter(name):
    rng = np.random.default_rng(0)
    labels = np.tile(np.array([0, 1], np.int32), 4)
    z = rng.normal(size=(16, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    value = MultiViewLoss(losses.get(name), 2, losses.info(name).consumes)(labels, z)
    assert np.isfinite(float(value))
