import keras
import numpy as np
import pytest
import tensorflow as tf

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.distill.projections import (SharedProjections, as_matrix, resolve_layer_map,
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
        u, v = proj.projections[proj._key(t_var, s_var)]
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
        u, v = proj.projections[proj._key(t_var, s_var)]
        target = keras.ops.matmul(keras.ops.matmul(v, as_matrix(s_var, s_var.path)), u)
        t_var.assign(keras.ops.reshape(target, t_var.shape))
    assert float(proj.loss()) < 1e-10


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
