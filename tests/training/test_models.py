"""Encoders, heads and the exported classifier."""

import numpy as np
import pytest

from nodulelearn import models
from nodulelearn.registry import UnknownNameError
from nodulelearn.training import TrainConfig


@pytest.mark.parametrize("name", models.names())
def test_every_encoder_maps_images_to_embeddings(name):
    encoder = models.build_encoder(name, 32, width=4)
    images = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    embeddings = np.asarray(encoder(images))
    assert embeddings.ndim == 2 and embeddings.shape[0] == 3
    assert embeddings.shape[1] == encoder.output_shape[-1]
    assert np.all(np.isfinite(embeddings))


def test_width_and_depth_set_the_embedding_size():
    assert models.build_encoder("compact_cnn", 32, width=8, depth=3).output_shape == (None, 32)
    assert models.build_encoder("small_resnet", 32, width=4, depth=2).output_shape == (None, 8)


def test_compact_cnn_is_the_default_and_both_models_are_registered():
    assert {"compact_cnn", "small_resnet"} <= set(models.names())
    assert TrainConfig().model == "compact_cnn"


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="compact_cnn.*small_resnet"):
        models.build_encoder("vgg", 32)


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid hyperparameters: width"):
        models.build_encoder("compact_cnn", 32, widht=8)
    with pytest.raises(ValueError, match="positive integer"):
        models.build_encoder("compact_cnn", 32, width=0)


def test_projection_head_is_unit_norm_and_classifier_a_probability():
    encoder = models.build_encoder("compact_cnn", 32, width=4)
    dim = encoder.output_shape[-1]
    head = models.projection_head(dim, hidden_dim=16, output_dim=8)
    z = np.asarray(head(np.random.default_rng(1).normal(size=(5, dim)).astype(np.float32)))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    model = models.classifier(encoder, models.linear_head(dim))
    p = np.asarray(model(np.random.default_rng(2).random((4, 32, 32, 1), dtype=np.float32)))
    assert p.shape == (4, 1) and np.all((p > 0) & (p < 1))
    assert model.input_shape == (None, 32, 32, 1)
