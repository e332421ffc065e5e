"""Hessian sensitivity of each weight matrix of a masked LM (Q-BERT, Shen et al. 2020).

The masked-LM loss ``L`` on calibration text, as a function of the weights, has a Hessian
``H``; the block ``H_m`` of one weight matrix ``m`` says how fast ``L`` grows when ``m`` is
perturbed, e.g. by rounding it to fewer bits: to second order ``ΔL ≈ ½ Δwᵀ H_m Δw``. Two
summaries per matrix, both from Hessian-vector products (double back-propagation, never
``H`` itself):

* the Hutchinson trace ``Tr(H_m) = E[vᵀ H v]`` over Rademacher ``v`` (one product serves every
  matrix at once: the cross-block terms vanish in expectation), and ``Tr(H_m) / n_m``, its
  mean eigenvalue, which turns a rounding error into a loss change:
  ``ΔL ≈ ½ · Tr(H_m)/n_m · ‖Δw_m‖²`` (HAWQ-V2's estimate);
* the top eigenvalue ``λ_max(H_m)`` by power iteration on ``H_m v`` (Q-BERT's criterion; one
  product per matrix and iteration).

Matrices are named as the export report names them: ``token_embedding``,
``position_embedding``, ``segment_embedding``, ``embedding_projection`` (ALBERT),
``layer_{i}.{q,k,v,o,ff1,ff2}`` (``i`` the distinct layer: shared ALBERT layers once),
``mlm.dense`` and ``mlm.out`` (an untied output matrix). Runs on the TensorFlow backend.

The Hessian is the one TensorFlow differentiates: Keras's LayerNorm takes its variance from
``tf.nn.moments``, which stops the gradient through the mean inside the variance. First
derivatives stay exact (the centred values sum to zero); second derivatives through a LayerNorm
do not (on a tiny student, ``H v`` is off the finite-difference one by 1-13 % in norm, most in the
MLM head). That is within what a ranking of matrices by sensitivity needs.

Example::

    from mobile_bert_distill.export.sensitivity import hessian_sensitivity
    report = hessian_sensitivity(masked_lm, feeds, labels, samples=16, power_iterations=8)
    report["layer_0.ff1"]["trace_per_param"]
"""

from __future__ import annotations

import numpy as np

from mobile_bert_distill.architectures import embedding_projection, encoder_layers
from mobile_bert_distill.export.graph import split_masked_lm

LAYER_MATRICES = ("q", "k", "v", "o", "ff1", "ff2")


def weight_matrices(masked_lm):
    """``{name: keras Variable}`` of every weight matrix (kernels and embedding tables) the
    masked-LM loss depends on, in forward order; a variable shared by several layers once."""
    backbone, head = split_masked_lm(masked_lm)
    if head is None:
        raise ValueError("Hessian sensitivity needs a masked LM (its loss), not a bare backbone")
    out = {"token_embedding": backbone.token_embedding.embeddings,
           "position_embedding": backbone.position_embedding.position_embeddings,
           "segment_embedding": backbone.segment_embedding.embeddings}
    projection = embedding_projection(backbone)
    if projection is not None:
        out["embedding_projection"] = projection.kernel
    seen = {}
    for layer in encoder_layers(backbone):
        if id(layer) in seen:
            continue
        i = seen[id(layer)] = len(seen)
        att = layer._self_attention_layer
        kernels = (att._query_dense.kernel, att._key_dense.kernel, att._value_dense.kernel,
                   att._output_dense.kernel, layer._feedforward_intermediate_dense.kernel,
                   layer._feedforward_output_dense.kernel)
        out.update({f"layer_{i}.{key}": k for key, k in zip(LAYER_MATRICES, kernels)})
    out["mlm.dense"] = head._intermediate_dense.kernel
    if head.token_embedding is None:
        out["mlm.out"] = head._kernel
    return out


def masked_lm_loss(masked_lm, feeds, labels, mask_id):
    """A function of no arguments: the mean cross-entropy of ``masked_lm`` at the ``[MASK]``
    positions of ``feeds`` (``labels`` holds the original ids), on fixed inputs."""
    import tensorflow as tf

    ids = np.asarray(feeds["input_ids"])
    masked = ids == mask_id
    if not masked.any():
        raise ValueError("the calibration sequences have no [MASK] position")
    width = int(masked.sum(axis=1).max())
    positions = np.zeros((len(ids), width), np.int32)
    weights = np.zeros((len(ids), width), np.float32)
    targets = np.zeros((len(ids), width), np.int32)
    for r, row in enumerate(masked):
        where = np.flatnonzero(row)
        positions[r, : len(where)], weights[r, : len(where)] = where, 1.0
        targets[r, : len(where)] = np.asarray(labels)[r, where]
    inputs = {"token_ids": tf.constant(ids, tf.int32),
              "segment_ids": tf.constant(np.asarray(feeds["segment_ids"]), tf.int32),
              "padding_mask": tf.constant(np.asarray(feeds["padding_mask"]).astype(bool)),
              "mask_positions": tf.constant(positions)}
    targets, weights = tf.constant(targets), tf.constant(weights)

    def loss():
        logits = masked_lm(inputs, training=False)
        ce = -tf.gather(tf.nn.log_softmax(logits), targets, batch_dims=2)  # [N, P]
        w = tf.cast(weights, ce.dtype)
        return tf.reduce_sum(ce * w) / tf.reduce_sum(w)

    return loss


def hessian_vector_product(loss, variables, vectors):
    """``H v`` of ``loss()`` with respect to ``variables`` (double back-propagation)."""
    import tensorflow as tf

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss()
        grads = inner.gradient(value, variables)  # an embedding table's is IndexedSlices
        dot = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g) * v) for g, v in zip(grads, vectors)])
    return [tf.convert_to_tensor(h) for h in outer.gradient(dot, variables)]


def hutchinson_traces(loss, variables, *, samples=16, seed=0):
    """Per variable: the Hutchinson estimates of ``Tr(H_m)`` (``[samples]`` array each)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    draws = [[] for _ in variables]
    for _ in range(samples):
        vs = [tf.constant(rng.choice(np.array([-1.0, 1.0], np.float32), size=tuple(v.shape))) for v in variables]
        hv = hessian_vector_product(loss, variables, vs)
        for k, (v, h) in enumerate(zip(vs, hv)):
            draws[k].append(float(tf.reduce_sum(v * h)))
    return [np.asarray(d) for d in draws]


def top_eigenvalue(loss, variables, index, *, iterations=8, seed=0):
    """``λ_max`` of the block ``H_m`` of ``variables[index]`` by power iteration (its largest
    eigenvalue in magnitude, signed)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    v = rng.standard_normal(tuple(variables[index].shape)).astype(np.float32)
    v /= np.linalg.norm(v)
    zeros = [tf.zeros(tuple(w.shape), tf.float32) for w in variables]
    eigen = 0.0
    for _ in range(iterations):
        vs = list(zeros)
        vs[index] = tf.constant(v)
        hv = np.asarray(hessian_vector_product(loss, variables, vs)[index])
        eigen = float(np.sum(v * hv))
        norm = float(np.linalg.norm(hv))
        if norm == 0.0:
            return 0.0
        v = hv / norm
    return eigen


def hessian_sensitivity(masked_lm, feeds, labels, *, samples=16, power_iterations=0, seed=0):
    """Sensitivity of each weight matrix of ``masked_lm`` on calibration ``feeds``/``labels``
    (masked sequences, e.g. from :func:`~mobile_bert_distill.export.sequences.corpus_sequences`).

    Args:
        masked_lm: a keras-hub BERT or ALBERT masked LM.
        feeds: ``input_ids`` (with ``[MASK]`` ids), ``segment_ids``, ``padding_mask``: ``[N, S]``.
        labels: ``[N, S]`` original ids.
        samples: Rademacher draws of the Hutchinson trace.
        power_iterations: power-iteration steps per matrix for ``top_eigenvalue`` (0: skip).
        seed: the draws' seed.

    Returns:
        ``{name: {"params", "trace", "trace_stderr", "trace_per_param"[, "top_eigenvalue"]}}``.
    """
    mask_id = masked_lm.preprocessor.tokenizer.mask_token_id
    loss = masked_lm_loss(masked_lm, feeds, labels, mask_id)
    matrices = weight_matrices(masked_lm)
    names, variables = list(matrices), list(matrices.values())
    draws = hutchinson_traces(loss, variables, samples=samples, seed=seed)
    out = {}
    for k, (name, var) in enumerate(zip(names, variables)):
        n = int(np.prod(var.shape))
        trace = float(draws[k].mean())
        out[name] = {"params": n, "trace": trace,
                     "trace_stderr": float(draws[k].std(ddof=1) / np.sqrt(samples)) if samples > 1 else None,
                     "trace_per_param": trace / n}
        if power_iterations:
            out[name]["top_eigenvalue"] = top_eigenvalue(loss, variables, k, iterations=power_iterations,
                                                         seed=seed + k)
    return out
