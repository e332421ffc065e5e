import keras
import numpy as np
import pytest
import tensorflow as tf

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.distill import projections
from mobile_bert_distill.distill.projections import (SharedProjections, as_matrix, chain_matmul, resolve_layer_map,
                                             transformer_weight_pairs)


def _backbones(t_layers=2, s_layers=2):
    import keras_hub

    t = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=t_layers, num_heads=2, hidden_dim=16,
                                      intermediate_dim=32, max_sequence_length=16)
    s = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=s_layers, num_heads=2, hidden_dim=8,
                                      intermediate_dim=16, max_sequence_length=16)
    return t, s


def test_pairs_cover_every_transformer_weight_and_share_shapes():
    t, s = _backbones()
    pairs = transformer_weight_pairs(t, s)
    assert len(pairs) == sum(len(layer.trainable_weights) for layer in s.transformer_layers)
    proj = SharedProjections("down", pairs)
    # shapes: d×d (q,k,v,out), d×I, I×d, vectors of d, of I: shared by both layers
    assert proj.num_shapes == 5
    assert len(proj.pair_losses()) == len(pairs)


def test_down_loss_is_zero_when_student_is_the_projected_teacher():
    t, s = _backbones()
    pairs = transformer_weight_pairs(t, s)
    proj = SharedProjections("down", pairs)
    for t_var, s_var, _ in pairs:
        u, v = proj.pair_projection(t_var, s_var)
        target = keras.ops.matmul(keras.ops.matmul(u, as_matrix(t_var, t_var.path)), v)
        s_var.assign(keras.ops.reshape(target, s_var.shape))
    assert float(proj.loss()) < 1e-10
    # and it is not zero for a random student
    t2, s2 = _backbones()
    assert float(SharedProjections("down", transformer_weight_pairs(t2, s2)).loss()) > 1e-4


def test_up_loss_is_zero_when_teacher_is_the_projected_student():
    t, s = _backbones()
    pairs = transformer_weight_pairs(t, s)
    proj = SharedProjections("up", pairs)
    for t_var, s_var, _ in pairs:
        u, v = proj.pair_projection(t_var, s_var)
        target = keras.ops.matmul(keras.ops.matmul(v, as_matrix(s_var, s_var.path)), u)
        t_var.assign(keras.ops.reshape(target, t_var.shape))
    assert float(proj.loss()) < 1e-10


@pytest.mark.parametrize("shapes, inner_first", [
    (((8, 16), (16, 32), (32, 128)), False),   # (ab)c: 8·16·32 + 8·32·128 < 16·32·128 + 8·16·128
    (((384, 48), (48, 192), (192, 1536)), True),  # the demo's feed-forward kernel, Up: V (θ_s U)
    (((192, 1536), (1536, 384), (384, 48)), True),  # Down on 1536 × 384 against 192 × 48: U (θ_t V)
])
def test_chain_matmul_takes_the_cheaper_order_and_gives_the_product(shapes, inner_first, monkeypatch):
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=s).astype("float32") for s in shapes)
    calls = []
    matmul = projections.ops.matmul
    monkeypatch.setattr(projections.ops, "matmul", lambda x, y: calls.append(tuple(x.shape)) or matmul(x, y))
    got = np.asarray(chain_matmul(a, b, c))
    assert calls[0] == (shapes[1] if inner_first else shapes[0])
    want = a.astype("float64") @ b @ c
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("direction", ["down", "up"])
def test_pair_losses_are_the_formula(direction):
    """Each pair's loss is the mean of (U θ_t V − θ_s)² or (θ_t − V θ_s U)², whatever order computes it."""
    t, s = _backbones()
    pairs = transformer_weight_pairs(t, s)
    rng = np.random.default_rng(1)
    for t_var, s_var, _ in pairs:
        for var in (t_var, s_var):
            var.assign(rng.normal(size=var.shape).astype("float32"))
    proj = SharedProjections(direction, pairs)
    got = [float(x) for x in proj.pair_losses()]
    want = []
    for t_var, s_var, _ in pairs:
        u, v = (np.asarray(w, "float64") for w in proj.pair_projection(t_var, s_var))
        theta_t = np.asarray(as_matrix(t_var, t_var.path), "float64")
        theta_s = np.asarray(as_matrix(s_var, s_var.path), "float64")
        diff = u @ theta_t @ v - theta_s if direction == "down" else theta_t - v @ theta_s @ u
        want.append(np.mean(diff ** 2))
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_gradients_reach_u_v_student_and_teacher(direction):
    t, s = _backbones()
    pairs = transformer_weight_pairs(t, s)
    rng = np.random.default_rng(0)
    for t_var, s_var, _ in pairs:  # biases and betas start at zero on both sides: no error there yet
        for var in (t_var, s_var):
            var.assign(rng.normal(size=var.shape).astype("float32"))
    proj = SharedProjections(direction, pairs)
    watched = [p[0] for p in pairs] + [p[1] for p in pairs] + proj.trainable_weights
    with tf.GradientTape() as tape:
        loss = proj.loss()
    grads = tape.gradient(loss, watched)
    n = len(pairs)
    for group, gs in (("teacher", grads[:n]), ("student", grads[n:2 * n]), ("U/V", grads[2 * n:])):
        assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in gs), group


def test_loss_is_width_normalised():
    """Freshly initialised 48-d and 192-d students give L_p of the same order."""
    import keras_hub

    keras.utils.set_random_seed(0)
    t = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=1, num_heads=4, hidden_dim=256,
                                      intermediate_dim=1024, max_sequence_length=16)
    values = []
    for width in (48, 192):
        s = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=1, num_heads=4, hidden_dim=width,
                                          intermediate_dim=4 * width, max_sequence_length=16)
        values.append(float(SharedProjections("down", transformer_weight_pairs(t, s)).loss()))
    assert 0.33 < values[0] / values[1] < 3.0


def test_layer_map_rules():
    assert resolve_layer_map(3, 3) == {0: 0, 1: 1, 2: 2}
    with pytest.raises(UserError, match="layer_map"):
        resolve_layer_map(6, 3)
    assert resolve_layer_map(6, 3, {0: 1, 1: 3, 2: 5}) == {0: 1, 1: 3, 2: 5}
    with pytest.raises(UserError, match="layer_map"):
        resolve_layer_map(6, 3, {0: 1, 1: 3})
    with pytest.raises(UserError, match="layer_map"):
        resolve_layer_map(6, 3, {0: 1, 1: 3, 2: 9})
    t, s = _backbones(t_layers=3, s_layers=2)
    with pytest.raises(UserError):
        transformer_weight_pairs(t, s)
    assert len(transformer_weight_pairs(t, s, {0: 0, 1: 2})) == 32
