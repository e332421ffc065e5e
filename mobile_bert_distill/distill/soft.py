"""The soft terms of the ``+soft`` modes (DistilBERT; Hinton et al. 2015), as sums over positions.

``L_kd  = Σ_masked w · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) / Σ w``: the student matches the
teacher's distribution over the **student** vocabulary (the teacher's student-vocabulary head, fed the
student's own segmentation), so the two are aligned position by position across vocabularies.

``L_cos = Σ_valid (1 − cos(h_s, W·h_t)) / #valid``: student hidden states against the teacher's,
mapped to the student width by a learned ``W`` (training only).

Both functions return the *sum* over positions; the distiller divides by the global count.

Example:
>>> import numpy as np
>>> z = np.array([[[1.0, 2.0, 0.5]]], "float32")
>>> float(kd_sum(z, z, np.ones((1, 1), "float32"), temperature=2.0))  # same logits: no divergence
0.0
>>> h = np.ones((1, 2, 3), "float32")
>>> float(cosine_sum(h, 2 * h, np.array([[1, 0]])))  # parallel vectors: no loss
0.0
"""

from keras import ops


def kd_sum(student_logits, teacher_logits, weights, temperature):
    """``Σ w · T² · KL(p_t ‖ p_s)`` at temperature ``T``; logits ``[B, P, V]``, weights ``[B, P]``.

    The teacher's side is a fixed target (no gradient flows into it).
    """
    t = float(temperature)
    log_p_s = ops.log_softmax(ops.cast(student_logits, "float32") / t, axis=-1)
    log_p_t = ops.log_softmax(ops.stop_gradient(ops.cast(teacher_logits, "float32")) / t, axis=-1)
    kl = ops.sum(ops.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    return ops.sum(kl * ops.cast(weights, "float32")) * (t * t)


def cosine_sum(student_hidden, teacher_hidden, mask):
    """``Σ (1 − cos(h_s, h_t))`` over the positions where ``mask`` is set; hidden states ``[B, S, D]``."""
    s = ops.cast(student_hidden, "float32")
    t = ops.cast(teacher_hidden, "float32")
    dot = ops.sum(s * t, axis=-1)
    norms = ops.sqrt(ops.sum(s * s, axis=-1) * ops.sum(t * t, axis=-1))
    cos = dot / ops.maximum(norms, 1e-12)
    return ops.sum((1.0 - cos) * ops.cast(mask, "float32"))
