"""Every case of tests/fixtures/loss_reference.npz: values and gradients against the references.

The references are TensorFlow Addons 0.23.0 (TF 2.15.1) and the SupContrast implementation; the
file and its conventions are described in tests/fixtures/LOSS_REFERENCE.md. Tolerances: 1e-5
relative for float64 inputs, 1e-4 for float32. Gradients are compared entry-wise with an
absolute floor of the same relative tolerance times the gradient's largest entry: many entries
are sums of terms that cancel to ~0, and their rounding error scales with the terms, not with
the (tiny) result. Where the reference itself is NaN or inf, nodulelearn's documented finite
value is asserted instead (see ``test_reference_nonfinite_cases``).
"""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn import losses

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "loss_reference.npz"
DATA = np.load(FIXTURE)
CASES = sorted({key.rsplit("/", 1)[0] for key in DATA.files if not key.startswith("_meta/")})
RTOL = {"float64": 1e-5, "float32": 1e-4}


def field(case, name):
    return DATA[f"{case}/{name}"]


def params(case):
    return json.loads(str(field(case, "params")))


def evaluate(case, dtype=None):
    """Runs nodulelearn on a case's inputs (cast to ``dtype``) -> (loss, {grad field: grad})."""
    p = params(case)
    family = case.split("/")[0]
    dtype = dtype or p["dtype"]
    cast = lambda name: tf.constant(field(case, name), dtype=dtype)  # noqa: E731
    if family == "npairs":
        inputs = {"views": tf.stack([cast("anchors"), cast("positives")], axis=1)}
    elif family == "contrastive":
        inputs = {"distances": cast("distances")}
    elif family == "sigmoid_focal":
        inputs = {"y_pred": cast("y_pred")}
    elif family == "supcon":
        inputs = {"features": cast("features")}
    else:
        inputs = {"embeddings": cast("embeddings")}
    (x,) = inputs.values()
    with tf.GradientTape() as tape:
        tape.watch(x)
        if family == "contrastive":
            per_pair = losses.contrastive_pair_loss(field(case, "y_true"), x, p["margin"])
            value = tf.reduce_mean(per_pair)
        else:
            name, hparams, y_true = loss_call(case, p)
            value = losses.get(name, dtype=dtype, **hparams)(y_true, x)
    grad = tape.gradient(value, x).numpy()
    if family == "npairs":
        return value.numpy(), {"grad_anchors": grad[:, 0], "grad_positives": grad[:, 1]}
    return value.numpy(), {"grad": grad}


def loss_call(case, p):
    """Registry name, hyperparameters and y_true reproducing a case's reference call."""
    family, config, _ = case.split("/")
    if family == "supcon":
        hparams = {k: p[k] for k in ("temperature", "base_temperature", "contrast_mode")}
        if p["supervised"]:
            return "supcon", hparams, field(case, "labels")
        return "simclr", hparams, np.zeros(field(case, "features").shape[0], np.int32)
    if family == "sigmoid_focal":
        hparams = {k: p[k] for k in ("alpha", "gamma", "from_logits")}
        return "focal", hparams, field(case, "y_true")
    name = {"contrastive_inbatch": "contrastive", "lifted_struct": "lifted"}.get(family, family)
    hparams = {k: p[k] for k in ("margin", "distance_metric", "soft") if k in p}
    if family == "triplet_hard" and p["soft"]:
        hparams.pop("margin")  # unused when soft; the reference passed 1.0
    return name, hparams, field(case, "labels")


def assert_close(actual, expected, rtol, what):
    expected = np.asarray(expected, np.float64)
    floor = rtol * max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=floor, err_msg=what)


def summed_over_duplicates(grad, embeddings):
    """Each row of ``grad`` replaced by the sum over the rows whose embeddings are identical."""
    _, group = np.unique(np.asarray(embeddings), axis=0, return_inverse=True)
    group = group.reshape(-1)
    sums = np.zeros((group.max() + 1, *grad.shape[1:]), np.float64)
    np.add.at(sums, group, np.asarray(grad, np.float64))
    return sums[group]


def reference_is_finite(case):
    grads = [field(case, key) for key in params(case)["grad_keys"]]
    return bool(np.isfinite(field(case, "loss")) and all(np.isfinite(g).all() for g in grads))


FINITE = [case for case in CASES if reference_is_finite(case)]
NONFINITE = [case for case in CASES if not reference_is_finite(case)]
FLOAT64 = [case for case in CASES if params(case)["dtype"] == "float64"]


def test_fixture_holds_all_cases():
    assert len(CASES) == 156
    supcon_large = [c for c in CASES if c.startswith("supcon/") and c.endswith("/f_large")]
    assert len(supcon_large) == 12
    assert NONFINITE == sorted(
        [
            "lifted_struct/margin1.0/d_all_same",
            "lifted_struct/margin1.0/f_large",
            "triplet_hard/soft/f_large",
            *supcon_large,
        ]
    )


@pytest.mark.parametrize("case", FINITE)
def test_reference_value_and_gradients(case):
    p = params(case)
    rtol = RTOL[p["dtype"]]
    value, grads = evaluate(case)
    assert value.dtype == np.dtype(p["dtype"])
    assert_close(value, field(case, "loss"), rtol, f"{case}: loss")
    for key, grad in grads.items():
        assert grad.shape == field(case, key).shape
        expected = field(case, key)
        if case.split("/")[0] == "triplet_semihard":
            # Among identical embeddings the semi-hard negative is a tie, broken by rounding
            # (which differs between CPUs): the gradient may move between the tied rows, their
            # sum may not.
            grad, expected = (summed_over_duplicates(g, field(case, "embeddings"))
                              for g in (grad, expected))
        assert_close(grad, expected, rtol, f"{case}: {key}")
    if case.split("/")[0] == "contrastive":
        y = field(case, "y_true")
        per_pair = losses.contrastive_pair_loss(
            y, tf.constant(field(case, "distances")), p["margin"]
        )
        assert_close(per_pair.numpy(), field(case, "loss_per_pair"), rtol, "loss_per_pair")
    if case.split("/")[0] == "sigmoid_focal":
        per_sample = losses.sigmoid_focal_loss(
            field(case, "y_true"),
            tf.constant(field(case, "y_pred")),
            p["alpha"],
            p["gamma"],
            p["from_logits"],
        )
        assert_close(per_sample.numpy(), field(case, "loss_per_sample"), rtol, "loss_per_sample")


# Independent float64 evaluations of the formulas (LOSS_REFERENCE.md), written for clarity, not
# speed, to give the value the reference would have returned without overflow.
def _l2_np(x):
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))


def _logsumexp_np(values):
    top = np.max(values)
    return top + np.log(np.sum(np.exp(values - top)))


def lifted_np(labels, x, margin=1.0):
    dist = _l2_np(x.astype(np.float64))
    same = labels[:, None] == labels[None, :]
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if same[i, j] and (~same[i]).any():
                lse = _logsumexp_np(
                    np.concatenate([margin - dist[i, ~same[i]], margin - dist[j, ~same[j]]])
                )
                terms.append(max(dist[i, j] + lse, 0.0) ** 2)
    return sum(terms) / (2 * len(terms)) if terms else 0.0


def triplet_hard_soft_np(labels, x):
    dist = _l2_np(x.astype(np.float64))
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None, :]
    hp = np.array([dist[a, same[a]].max() if same[a].any() else 0.0 for a in range(len(x))])
    hn = np.array(
        [dist[a, other[a]].min() if other[a].any() else dist[a].max() for a in range(len(x))]
    )
    return np.mean(np.logaddexp(0.0, hp - hn))


def supcon_np(labels, f, temperature, base_temperature, mode):
    b, v, _ = f.shape
    contrast = f.transpose(1, 0, 2).reshape(b * v, -1).astype(np.float64)
    labels = np.tile(np.arange(b) if labels is None else labels, v)
    n_anchor = b * v if mode == "all" else b
    values = []
    for a in range(n_anchor):
        logits = contrast @ contrast[a] / temperature
        others = np.arange(b * v) != a
        lse = _logsumexp_np(logits[others])
        pos = others & (labels == labels[a])
        values.append(
            -(temperature / base_temperature) * np.mean(logits[pos] - lse) if pos.any() else 0.0
        )
    return np.mean(values)


def formula_np(case, x):
    p = params(case)
    family = case.split("/")[0]
    if family == "lifted_struct":
        return lifted_np(field(case, "labels"), x, p["margin"])
    if family == "triplet_hard":
        return triplet_hard_soft_np(field(case, "labels"), x)
    labels = field(case, "labels") if p["supervised"] else None
    return supcon_np(labels, x, p["temperature"], p["base_temperature"], p["contrast_mode"])


@pytest.mark.parametrize("case", NONFINITE)
def test_reference_nonfinite_cases(case):
    """Reference NaN/inf -> nodulelearn's finite value: the formula's own value (stable
    log-sum-exp / softplus), or 0 with zero gradient for lifted without any negative."""
    p = params(case)
    value, grads = evaluate(case)
    (grad,) = grads.values()
    assert np.isfinite(value) and np.isfinite(grad).all()
    x = field(case, "features" if case.startswith("supcon/") else "embeddings")
    if case == "lifted_struct/margin1.0/d_all_same":
        assert value == 0.0 and not grad.any()
        return
    expected = formula_np(case, x)
    assert_close(value, expected, RTOL[p["dtype"]], f"{case}: loss vs float64 formula")
    # Gradient: directional central difference of the float64 formula.
    direction = np.random.default_rng(0).standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    step = 1e-4 * np.abs(x).max()
    x64 = x.astype(np.float64)
    numeric = (
        formula_np(case, x64 + step * direction) - formula_np(case, x64 - step * direction)
    ) / (2 * step)
    np.testing.assert_allclose(
        np.sum(grad * direction), numeric, rtol=1e-3, atol=1e-3 * np.abs(grad).max()
    )


@pytest.mark.parametrize("case", FLOAT64)
def test_float32_evaluation_is_finite_and_close(case):
    """float32 runs of the float64 cases stay finite and match the reference's own float32 run
    (``loss_float32``) within 1e-4; where that run is NaN, they match the float64 value."""
    value, grads = evaluate(case, "float32")
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads.values())
    expected = field(case, "loss_float32")
    if not np.isfinite(expected):
        expected = field(case, "loss")
    if not np.isfinite(expected):
        expected = formula_np(case, field(case, "features"))
    if case == "sigmoid_focal/from_logits_False/f_large":
        # Probabilities that are exactly 1.0 in float32 make CE = -log(1 - (1 - 1e-7) + 1e-7),
        # which float32 cannot resolve (the reference's float32 and float64 runs differ by
        # 0.8%); only finiteness and closeness to the float64 value within 1% are meaningful.
        np.testing.assert_allclose(value, field(case, "loss"), rtol=1e-2)
        return
    # Absolute floor 1e-7: float32 rounds each logit of O(10..1000) by ~1e-5 relative, so a loss
    # that is a tiny difference of them (8e-8 in supcon/unsup_all_T0.1_base0.1/a_random) is only
    # resolved in absolute terms.
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-7, err_msg=f"{case}: float32")


def test_summing_over_duplicates_keeps_single_rows_and_pools_tied_ones():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    grad = np.array([[0.5, 0.0], [0.1, 0.2], [-0.25, 1.0]])
    pooled = summed_over_duplicates(grad, embeddings)
    np.testing.assert_allclose(pooled, [[0.25, 1.0], [0.1, 0.2], [0.25, 1.0]])
    swapped = summed_over_duplicates(grad[[2, 1, 0]], embeddings)  # the tie broken the other way
    np.testing.assert_allclose(swapped, pooled)
