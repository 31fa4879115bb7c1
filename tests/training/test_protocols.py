"""Protocol registry and the view adapter between training batches and the losses."""

import keras
import numpy as np
import pytest

from nodulelearn import losses
from nodulelearn.training.protocols import (
    PROTOCOLS,
    MultiViewLoss,
    Protocol,
    losses_of,
    protocol_for,
    register_protocol,
)


def test_both_protocols_are_registered():
    assert PROTOCOLS.names() == ["end_to_end", "pretrain_probe"]
    assert PROTOCOLS.get("end_to_end").phases == ("train",)
    assert PROTOCOLS.get("pretrain_probe").phases == ("pretrain", "probe")


@pytest.mark.parametrize("name", losses.names())
def test_every_loss_trains_under_exactly_one_protocol(name):
    accepting = [p for p in PROTOCOLS if PROTOCOLS.get(p).accepts(losses.info(name))]
    assert accepting == [protocol_for(name).name]


def test_the_protocol_follows_from_what_the_loss_consumes():
    assert protocol_for("ce").name == protocol_for("focal").name == "end_to_end"
    assert {protocol_for(n).name for n in ("supcon", "npairs", "triplet_hard")} == {
        "pretrain_probe"}
    # Among the built-ins (test modules register plug-in losses of their own).
    assert set(losses_of("end_to_end")) & set(losses.BUILT_INS) == {"ce", "focal"}
    assert set(losses_of("pretrain_probe")) & set(losses.BUILT_INS) == set(losses.BUILT_INS) - {
        "ce", "focal"}
    assert PROTOCOLS.get("pretrain_probe").class_balanced
    assert not PROTOCOLS.get("end_to_end").class_balanced


class _TwoViews(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.mean(y_pred, axis=(1, 2))


def test_a_loss_needing_other_views_than_the_protocol_makes_fails_up_front():
    assert losses.info("npairs").views == PROTOCOLS.get("pretrain_probe").views == 2
    losses.register("_three_views", consumes="views", views=3)(_TwoViews)
    try:
        with pytest.raises(ValueError, match="needs exactly 3 views.*'pretrain_probe' makes 2"):
            protocol_for("_three_views")
    finally:
        losses.unregister("_three_views")


def test_a_registered_protocol_hint_must_match():
    losses.register("_hinted", consumes="embeddings", protocol="end_to_end")(_TwoViews)
    try:
        with pytest.raises(ValueError, match="registered with protocol='end_to_end'.*"
                                             "'pretrain_probe' trains"):
            protocol_for("_hinted")
    finally:
        losses.unregister("_hinted")


def test_two_protocols_may_not_train_the_same_kind_of_loss():
    clash = Protocol(name="other", run=lambda ctx: None, consumes=("logits",), views=1,
                     class_balanced=False, epochs={"train": "epochs"}, defaults={})
    with pytest.raises(ValueError, match="'end_to_end' and 'other' would both train.*logits"):
        register_protocol(clash)
    assert "other" not in PROTOCOLS


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
    "name", losses_of("pretrain_probe"))
def test_every_pretraining_loss_gets_a_finite_value_through_the_adapter(name):
    rng = np.random.default_rng(0)
    labels = np.tile(np.array([0, 1], np.int32), 4)
    z = rng.normal(size=(16, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    value = MultiViewLoss(losses.get(name), 2, losses.info(name).consumes)(labels, z)
    assert np.isfinite(float(value))
