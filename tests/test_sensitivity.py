"""Hessian sensitivity (Q-BERT): Hessian-vector products, Hutchinson traces and power
iteration checked against the explicit Hessian block of a small weight matrix."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _export_fixtures import build_student, learn_vocab, make_sentences  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    from mobile_bert_distill.export.sensitivity import masked_lm_loss, weight_matrices
    from mobile_bert_distill.export.sequences import corpus_sequences
    from mobile_bert_distill.text.wordpiece import WordPiece

    sentences = make_sentences(200, seed=2)
    vocab = learn_vocab(sentences, size=120)
    model = build_student(vocab, num_layers=2, hidden=8, heads=2, intermediate=16, seq_len=16, seed=1)
    feeds, labels = corpus_sequences(sentences, WordPiece(vocab), 16, 8, seed=0, mask_rate=0.3)
    loss = masked_lm_loss(model, feeds, labels, mask_id=vocab.index("[MASK]"))
    matrices = weight_matrices(model)
    return {"model": model, "feeds": feeds, "labels": labels, "loss": loss, "matrices": matrices}


def _explicit_block(loss, variables, index):
    """The Hessian block of ``variables[index]``, one Hessian-vector product per column."""
    import tensorflow as tf

    from mobile_bert_distill.export.sensitivity import hessian_vector_product

    shape = tuple(variables[index].shape)
    n = int(np.prod(shape))
    cols = []
    for j in range(n):
        vs = [tf.zeros(tuple(v.shape)) for v in variables]
        e = np.zeros(n, np.float32)
        e[j] = 1.0
        vs[index] = tf.constant(e.reshape(shape))
        cols.append(np.asarray(hessian_vector_product(loss, variables, vs)[index]).reshape(-1))
    return np.stack(cols, axis=1)


def test_matrix_names_cover_the_forward_pass(setup):
    names = list(setup["matrices"])
    assert names[:3] == ["token_embedding", "position_embedding", "segment_embedding"]
    assert [n for n in names if n.startswith("layer_1.")] == [f"layer_1.{k}" for k in ("q", "k", "v", "o", "ff1", "ff2")]
    assert names[-1] == "mlm.dense"  # the output matrix is the tied token embedding


def test_hessian_vector_product_matches_finite_differences():
    """On a two-matrix network without LayerNorm (whose Keras variance stops a gradient, see the
    module docstring), in float64: ``H v`` equals the central difference of the gradient."""
    import keras
    import tensorflow as tf

    from mobile_bert_distill.export.sensitivity import hessian_vector_product

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((12, 5)))
    y = tf.constant(rng.integers(0, 4, 12))
    variables = [keras.Variable(rng.standard_normal((5, 6)) * 0.5, dtype="float64"),
                 keras.Variable(rng.standard_normal((6, 4)) * 0.5, dtype="float64")]

    def loss():
        logits = tf.matmul(tf.nn.gelu(tf.matmul(x, variables[0])), variables[1])
        return tf.reduce_mean(-tf.gather(tf.nn.log_softmax(logits), y, batch_dims=1))

    vs = [tf.constant(rng.standard_normal(tuple(v.shape))) for v in variables]
    hv = hessian_vector_product(loss, variables, vs)
    originals = [np.asarray(v.numpy()) for v in variables]

    def grads_at(sign, eps=1e-5):
        for var, w, v in zip(variables, originals, vs):
            var.assign(w + sign * eps * np.asarray(v))
        with tf.GradientTape() as tape:
            value = loss()
        return [np.asarray(g) for g in tape.gradient(value, variables)]

    plus, minus = grads_at(1.0), grads_at(-1.0)
    for p, m, h in zip(plus, minus, hv):
        assert np.allclose((p - m) / 2e-5, np.asarray(h), rtol=1e-5, atol=1e-8)


def test_trace_and_top_eigenvalue_match_the_explicit_block(setup):
    from mobile_bert_distill.export.sensitivity import hutchinson_traces, top_eigenvalue

    loss, names = setup["loss"], list(setup["matrices"])
    variables = list(setup["matrices"].values())
    k = names.index("segment_embedding")  # 2 x 8: a 16 x 16 block
    block = _explicit_block(loss, variables, k)
    assert np.allclose(block, block.T, atol=1e-4 * np.abs(block).max())
    eig = np.linalg.eigvalsh((block + block.T) / 2)
    draws = hutchinson_traces(loss, variables, samples=100, seed=3)[k]
    stderr = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - np.trace(block)) < 4 * stderr + 1e-6, (draws.mean(), np.trace(block), stderr)
    want = eig[np.argmax(np.abs(eig))]
    got = top_eigenvalue(loss, variables, k, iterations=40, seed=0)
    assert abs(got - want) < 0.02 * abs(want), (got, want, eig[-3:])


def test_sensitivity_report(setup):
    from mobile_bert_distill.export.sensitivity import hessian_sensitivity

    report = hessian_sensitivity(setup["model"], setup["feeds"], setup["labels"], samples=4, power_iterations=2)
    assert list(report) == list(setup["matrices"])
    for name, row in report.items():
        var = setup["matrices"][name]
        assert row["params"] == int(np.prod(var.shape))
        assert row["trace_per_param"] == pytest.approx(row["trace"] / row["params"])
        assert row["trace_stderr"] >= 0 and "top_eigenvalue" in row
    # the same seed gives the same estimates
    again = hessian_sensitivity(setup["model"], setup["feeds"], setup["labels"], samples=4)
    assert again["layer_0.ff1"]["trace"] == pytest.approx(report["layer_0.ff1"]["trace"], rel=1e-4)
