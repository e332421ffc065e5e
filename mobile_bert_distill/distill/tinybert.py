"""The layer-wise terms of the ``tinybert`` mode (Jiao et al. 2019), as sums over positions.

Per paired layer (``projection.layer_map``, one to one at equal depth; a layer shared across depth is
paired at each depth it runs), with the teacher reading the student's own segmentation (student pieces
through the student's embeddings and the up-projection):

- ``L_emb  = Σ_valid ‖W_e·e_s − e_t‖² / (#valid · d_t)``: embedding outputs (an ALBERT-style
  student's after its projection to the hidden width);
- ``L_hidn = mean over pairs of Σ_valid ‖W_h·h_s − h_t‖² / (#valid · d_t)``: layer outputs, ``W_h`` and
  ``W_e`` learned (student width -> teacher width, training only);
- ``L_attn = mean over pairs of Σ (A_s − Ā_t)² / (#valid query-key pairs · heads_s)``: attention
  probabilities, ``Ā_t`` the teacher's heads averaged in consecutive groups of ``heads_t / heads_s``
  (so the student's head count must divide the teacher's).

The functions return sums; the distiller divides by the global counts.

Example:
>>> import numpy as np
>>> a = np.full((1, 4, 2, 2), 0.5, "float32")       # 4 teacher heads
>>> tuple(average_heads(a, 2).shape)                   # onto 2 student heads
(1, 2, 2, 2)
>>> float(squared_error_sum(np.ones((1, 2, 3)), np.zeros((1, 2, 3)), np.array([[1, 0]])))
3.0
"""

from keras import ops

from mobile_bert_distill.architectures import embedding_projection, encoder_layers


def check_heads(student_heads, teacher_heads):
    """The one head-pairing rule; returns the group size ``teacher_heads / student_heads``."""
    if teacher_heads % student_heads:
        raise ValueError(f"the student's {student_heads} attention heads do not divide the teacher's "
                         f"{teacher_heads}: tinybert averages groups of teacher heads onto each student head")
    return teacher_heads // student_heads


def average_heads(teacher_scores, student_heads):
    """``[B, h_t, S, S]`` attention probabilities averaged onto ``student_heads`` heads, in order."""
    b, h_t, s, k = ops.shape(teacher_scores)
    group = check_heads(student_heads, h_t)
    return ops.mean(ops.reshape(teacher_scores, (b, student_heads, group, s, k)), axis=2)


def squared_error_sum(student, teacher, mask):
    """``Σ_valid ‖student − teacher‖²`` over ``[B, S, D]`` states, ``mask`` ``[B, S]``."""
    err = ops.sum(ops.square(ops.cast(student, "float32") - ops.cast(teacher, "float32")), axis=-1)
    return ops.sum(err * ops.cast(mask, "float32"))


def attention_error_sum(student_scores, teacher_scores, mask):
    """``Σ (A_s − Ā_t)²`` over heads and valid (query, key) pairs; scores ``[B, h_s, S, S]``."""
    m = ops.cast(mask, "float32")
    pairs = ops.expand_dims(ops.expand_dims(m, 1), -1) * ops.expand_dims(ops.expand_dims(m, 1), 2)
    diff = ops.cast(student_scores, "float32") - ops.stop_gradient(ops.cast(teacher_scores, "float32"))
    return ops.sum(ops.square(diff) * pairs)


def bert_layer_outputs(backbone, embeddings, padding_mask, training=False):
    """``[(hidden, attention probabilities)]`` at each depth of a keras-hub BERT or ALBERT backbone.

    One entry per depth, in call order: a layer shared across depth gives one entry per call.
    """
    out, x = [], embeddings
    for layer in encoder_layers(backbone):
        x, scores = layer(x, padding_mask=padding_mask, training=training, return_attention_scores=True)
        out.append((x, scores))
    return out


def bert_embeddings(backbone, token_ids, training=False):
    """What a keras-hub BERT or ALBERT backbone feeds its first layer (one segment), as its own graph
    computes it: ALBERT's is after its ``E → H`` projection, so it is ``hidden_dim`` wide either way."""
    tokens = backbone.token_embedding(token_ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens),
                                 backbone.segment_embedding(ops.zeros_like(token_ids))))
    x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)
    projection = embedding_projection(backbone)
    return x if projection is None else projection(x)
