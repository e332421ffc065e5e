#!/usr/bin/env python3
"""Quantization-aware fine-tuning (QAT) of the 12x48 reference student for the int8 export.

Post-training int8 (``mbd export --quantization int8``, recipe ``matmul``)
agrees with the float student on 0.93 of masked tokens, short of 0.99
(``benchmarks/export_modes.py``). This script tries the remaining route: tune
the weights so that the *int8 model* reproduces the *original float model*.

* :class:`QuantSim` runs the student the way the int8 ``matmul`` export
  computes it: per-output-channel symmetric int8 kernels (the LayerNorm gamma
  folded into the projections it feeds, as the converter does), per-tensor
  int8 activations at every ``FULLY_CONNECTED``/``BATCH_MATMUL`` input and
  output with ranges calibrated on the export's calibration sequences, the
  attention-score ranges from float row maxima (``GraphOptions.score_margin``),
  the int8 embedding tables, the dynamically quantized input of the logits
  projection; LayerNorm, softmax, GELU and residual sums in float. Rounding
  uses the straight-through estimator. In ``"float"`` mode it reproduces the
  Keras student (checked at start-up).
* :func:`quantization_aware_finetune` trains that simulation to match the
  frozen original's masked-token distribution (KL divergence) on sequences
  from the calibration half of the corpus, recomputing the activation ranges
  every 50 steps, and returns a copy of the Keras model with the tuned weights.

Each variant is then exported with the default int8 recipe and compared, on
the held-out parity sequences of ``export_modes.py``, with the *original*
float student (what a user's float model predicts) and with its own tuned
float weights.

Run (about 10 minutes per QAT variant on 2 cores; needs
``bench/export_modes/student`` from ``export_modes.py``)::

    .venv/bin/python research/int8_qat.py --json bench/export_modes/int8_qat.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

# the reference student (benchmarks/_reference_student.py) is shared with benchmarks/export_modes.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

MASK_ID = 4


def _flat_weights(weights):
    """The :func:`~mobile_bert_distill.export.graph.extract_weights` dict as ``{name: array}``."""
    flat = {"tok": weights["token_embedding"], "pos": weights["position_embedding"],
            "seg": weights["segment_embedding"],
            "emb_ln_g": weights["emb_ln"][0], "emb_ln_b": weights["emb_ln"][1]}
    for i, lw in enumerate(weights["layers"]):
        for n in ("q", "k", "v", "o", "ff1", "ff2"):
            flat[f"l{i}_{n}_k"], flat[f"l{i}_{n}_b"] = lw[n]
        for n in ("att_ln", "ff_ln"):
            flat[f"l{i}_{n}_g"], flat[f"l{i}_{n}_b"] = lw[n][:2]
    m = weights["mlm"]
    flat["mlm_dense_k"], flat["mlm_dense_b"] = m["dense"]
    flat["mlm_ln_g"], flat["mlm_ln_b"] = m["ln"][:2]
    flat["mlm_out_b"] = m["out"][1]
    return {k: np.asarray(v, np.float32) for k, v in flat.items()}


def _fake_quant(x, lo, hi):
    """Per-tensor asymmetric int8 rounding of ``x`` to ``[lo, hi]`` (TFLite's activation grid)."""
    import tensorflow as tf

    return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False)


def _fake_quant_symmetric(w, axis=None):
    """Symmetric int8 (``-127..127``) rounding; per channel along the last axis unless ``axis`` is
    ``"tensor"``. The scale follows ``max|w|`` without a gradient (straight-through)."""
    import tensorflow as tf

    if axis == "tensor":
        m = tf.stop_gradient(tf.reduce_max(tf.abs(w)))
        m = tf.maximum(m, 1e-12)
        return tf.quantization.fake_quant_with_min_max_vars(w, -m, m, num_bits=8, narrow_range=True)
    m = tf.stop_gradient(tf.reduce_max(tf.abs(w), axis=0))
    m = tf.maximum(m, 1e-12)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -m, m, num_bits=8, narrow_range=True)


def _round_rows(x):
    """Symmetric int8 rounding of each row (the dynamic input quantization of a hybrid
    ``FULLY_CONNECTED``), straight-through."""
    import tensorflow as tf

    s = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(x), axis=-1, keepdims=True), 1e-12) / 127.0)
    return x + tf.stop_gradient(tf.round(x / s) * s - x)


class QuantSim:
    """The int8 ``matmul`` export of a masked LM, simulated in float with trainable weights.

    ``mode`` of :meth:`logits`: ``"float"`` (exact float maths), ``"calibrate"``
    (float maths; returns the activation statistics too), ``"int8"`` (every
    quantization point rounded with the ranges from :meth:`calibrate`).
    """

    def __init__(self, weights, config, *, score_margin=10.0, mask_bias=-30.0, trainable=True):
        import tensorflow as tf

        if weights.get("mlm") is None:
            raise ValueError("quantization-aware fine-tuning needs a masked LM")
        if not np.array_equal(weights["mlm"]["out"][0], weights["token_embedding"].T):
            raise ValueError("quantization-aware fine-tuning needs the MLM output tied to the token embedding")
        self.config = dict(config)
        self.num_layers = len(weights["layers"])
        self.hidden = int(config["hidden_dim"])
        self.heads = int(config["num_heads"])
        self.head_dim = self.hidden // self.heads
        self.score_margin = float(score_margin)
        self.mask_bias = float(mask_bias)
        self.eps = float(weights["emb_ln"][2])
        self.mlm_eps = float(weights["mlm"]["ln"][2])
        self.exact_mlm_gelu = "approximate" not in weights["mlm"]["dense_activation"]
        self.vars = {k: tf.Variable(v, trainable=trainable, name=k) for k, v in _flat_weights(weights).items()}
        self.ranges = {}  # key -> tf.Variable [lo, hi]
        self._stats = None
        self._mode = "float"

    # --- quantization points ----------------------------------------------
    def _act(self, key, t):
        import tensorflow as tf

        if self._mode == "calibrate":
            self._stats[key] = tf.stack([tf.reduce_min(t), tf.reduce_max(t)])
            return t
        if self._mode == "int8":
            r = self.ranges[key]
            return _fake_quant(t, r[0], r[1])
        return t

    def _scores(self, key, s, keep):
        """Attention scores ``[B, h, S, S]``: range from row maxima over real queries and keys."""
        import tensorflow as tf

        if self._mode == "calibrate":
            masked = s + (1.0 - keep[:, None, None, :]) * -1e9
            rowmax = tf.reduce_max(masked, axis=-1)  # [B, h, S]
            real = tf.broadcast_to(keep[:, None, :] > 0, tf.shape(rowmax))
            rm = tf.boolean_mask(rowmax, real)
            self._stats[key] = tf.stack([tf.reduce_min(rm) - self.score_margin, tf.reduce_max(rm)])
            return s
        return self._act(key, s)

    def _kernel(self, w):
        return _fake_quant_symmetric(w) if self._mode == "int8" else w

    # --- forward -------------------------------------------------------------
    def _norm(self, x, eps=None):
        import tensorflow as tf

        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        d = x - mean
        return d * tf.math.rsqrt(tf.reduce_mean(d * d, axis=-1, keepdims=True) + (self.eps if eps is None else eps))

    def _dense(self, key, y, kernel, bias):
        """``y @ kernel + bias`` with int8 input, kernel and output."""
        import tensorflow as tf

        y = self._act(key + ".in", y)
        out = tf.tensordot(y, self._kernel(kernel), axes=[[-1], [0]])
        if bias is not None:
            out = out + bias
        return self._act(key + ".out", out)

    def _tables(self):
        """(lookup table, int8 output table E diag(gamma), position+segment-0 table)."""
        v = self.vars
        gamma = v["mlm_ln_g"]
        table = v["tok"] * gamma  # what the tied int8 table stores
        pos = v["pos"] + v["seg"][0]
        if self._mode == "int8":
            table = _fake_quant_symmetric(table, axis="tensor")
            pos = _fake_quant(pos, _stop_min(pos), _stop_max(pos))
        return table / gamma, table, pos

    def logits(self, input_ids, segment_ids, padding_mask, mode="float"):
        """Logits ``[M, vocab]`` at the ``[MASK]`` positions (all real positions if none);
        in ``"calibrate"`` mode returns ``(logits, stats)``."""
        import tensorflow as tf

        self._mode = mode
        self._stats = {} if mode == "calibrate" else None
        v = self.vars
        H, heads, d = self.hidden, self.heads, self.head_dim
        S = input_ids.shape[1]
        keep = tf.cast(padding_mask, tf.float32)
        lookup, out_table, pos = self._tables()
        x = tf.gather(lookup, input_ids) + pos[None, :S]
        x = x + tf.cast(segment_ids, tf.float32)[..., None] * (v["seg"][1] - v["seg"][0])
        y = self._norm(x)
        g, b = v["emb_ln_g"], v["emb_ln_b"]
        bias = ((1.0 - keep) * self.mask_bias)[:, None, None, :]
        scale = 1.0 / math.sqrt(d)
        for i in range(self.num_layers):
            p = f"l{i}_"
            res = y * g + b
            flat = lambda n: tf.reshape(v[p + n + "_k"], [H, -1])  # noqa: E731
            # the converter folds gamma into the projections (they read y) and their biases absorb beta
            q = self._dense(f"{i}.q", y, g[:, None] * flat("q") * scale,
                            (tf.linalg.matvec(flat("q"), b, transpose_a=True)
                             + tf.reshape(v[p + "q_b"], [-1])) * scale)
            k = self._dense(f"{i}.k", y, g[:, None] * flat("k"), None)  # key bias: a per-query shift
            vv = self._dense(f"{i}.v", y, g[:, None] * flat("v"), None)  # value bias: into the output bias
            heads_first = lambda t: tf.transpose(tf.reshape(t, [-1, S, heads, d]), [0, 2, 1, 3])  # noqa: E731
            s = tf.matmul(heads_first(q), heads_first(k), transpose_b=True)
            s = self._scores(f"{i}.s", s, keep)
            prob = self._act(f"{i}.p", tf.nn.softmax(s + bias, axis=-1))
            c = tf.reshape(tf.transpose(tf.matmul(prob, heads_first(vv)), [0, 2, 1, 3]), [-1, S, H])
            ok = tf.reshape(v[p + "o_k"], [H, H])
            v_bias = tf.linalg.matvec(flat("v"), b, transpose_a=True) + tf.reshape(v[p + "v_b"], [-1])
            att = self._dense(f"{i}.o", c, ok, v[p + "o_b"] + tf.linalg.matvec(ok, v_bias, transpose_a=True))
            y2 = self._norm(res + att)
            g2, b2 = v[p + "att_ln_g"], v[p + "att_ln_b"]
            w1 = v[p + "ff1_k"]
            h = self._dense(f"{i}.ff1", y2, g2[:, None] * w1,
                            v[p + "ff1_b"] + tf.linalg.matvec(w1, b2, transpose_a=True))
            h = tf.nn.gelu(h, approximate=True)
            f = self._dense(f"{i}.ff2", h, v[p + "ff2_k"], v[p + "ff2_b"])
            y = self._norm(y2 * g2 + b2 + f)
            g, b = v[p + "ff_ln_g"], v[p + "ff_ln_b"]
        where = tf.equal(input_ids, MASK_ID)
        where = tf.cond(tf.reduce_any(where), lambda: where, lambda: padding_mask > 0)
        y = tf.boolean_mask(y, where)  # [M, H]
        wd = v["mlm_dense_k"]
        hd = self._dense("mlm", y, g[:, None] * wd, v["mlm_dense_b"] + tf.linalg.matvec(wd, b, transpose_a=True))
        hd = self._norm(tf.nn.gelu(hd, approximate=not self.exact_mlm_gelu), self.mlm_eps)
        if self._mode == "int8":
            hd = _round_rows(hd)
        # gamma lives in the table, beta in the bias
        out_bias = v["mlm_out_b"] + tf.linalg.matvec(v["tok"], v["mlm_ln_b"])
        logits = tf.matmul(hd, out_table, transpose_b=True) + out_bias
        if mode == "calibrate":
            return logits, self._stats
        return logits

    def calibrate(self, feeds, batch_size=16):
        """Set every activation range to its min/max over ``feeds`` (all positions, as the
        converter calibrates), the score ranges from row maxima."""
        import tensorflow as tf

        fn = tf.function(lambda a, b_, c: self.logits(a, b_, c, mode="calibrate")[1], reduce_retracing=True)
        lo, hi = {}, {}
        n = len(feeds["input_ids"])
        for start in range(0, n, batch_size):
            stats = fn(*(tf.constant(feeds[k][start:start + batch_size])
                         for k in ("input_ids", "segment_ids", "padding_mask")))
            for key, val in stats.items():
                a, b = (float(x) for x in val.numpy())
                lo[key] = min(lo.get(key, a), a)
                hi[key] = max(hi.get(key, b), b)
        for key in lo:
            value = np.array([min(lo[key], 0.0), max(hi[key], 0.0)], np.float32)
            if key.endswith(".s"):  # scores are not widened to include zero by the score-range rewrite
                value = np.array([lo[key], hi[key]], np.float32)
            if key in self.ranges:
                self.ranges[key].assign(value)
            else:
                self.ranges[key] = tf.Variable(value, trainable=False, name="range_" + key.replace(".", "_"))
        return {k: tuple(float(x) for x in r.numpy()) for k, r in self.ranges.items()}

    def weights_into(self, model):
        """Write the (tuned) weights into the keras-hub ``BertMaskedLM`` ``model``."""
        from mobile_bert_distill.export.graph import split_masked_lm

        v = {k: var.numpy() for k, var in self.vars.items()}
        backbone, head = split_masked_lm(model)
        backbone.token_embedding.embeddings.assign(v["tok"])
        backbone.position_embedding.position_embeddings.assign(v["pos"])
        backbone.segment_embedding.embeddings.assign(v["seg"])
        _assign_ln(backbone.embeddings_layer_norm, v, "emb_ln")
        for i, layer in enumerate(backbone.transformer_layers):
            att = layer._self_attention_layer
            for n, dense in (("q", att._query_dense), ("k", att._key_dense), ("v", att._value_dense),
                             ("o", att._output_dense), ("ff1", layer._feedforward_intermediate_dense),
                             ("ff2", layer._feedforward_output_dense)):
                dense.kernel.assign(v[f"l{i}_{n}_k"])
                dense.bias.assign(v[f"l{i}_{n}_b"])
            _assign_ln(layer._self_attention_layer_norm, v, f"l{i}_att_ln")
            _assign_ln(layer._feedforward_layer_norm, v, f"l{i}_ff_ln")
        head._intermediate_dense.kernel.assign(v["mlm_dense_k"])
        head._intermediate_dense.bias.assign(v["mlm_dense_b"])
        _assign_ln(head._intermediate_layer_norm, v, "mlm_ln")
        head._bias.assign(v["mlm_out_b"])


def _stop_min(t):
    import tensorflow as tf

    return tf.stop_gradient(tf.minimum(tf.reduce_min(t), 0.0))


def _stop_max(t):
    import tensorflow as tf

    return tf.stop_gradient(tf.maximum(tf.reduce_max(t), 0.0))


def _assign_ln(layer, v, name):
    layer.gamma.assign(v[name + "_g"])
    layer.beta.assign(v[name + "_b"])


class _Adam:
    """Adam (Kingma & Ba) on plain ``tf.Variable`` s, inside a ``tf.function``."""

    def __init__(self, variables, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8):
        import tensorflow as tf

        self.variables = variables
        self.lr, self.b1, self.b2, self.eps = learning_rate, beta1, beta2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.t = tf.Variable(0.0, trainable=False)

    def apply(self, grads):
        import tensorflow as tf

        self.t.assign_add(1.0)
        lr = self.lr * tf.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v):
            if g is None:
                continue
            m.assign(self.b1 * m + (1.0 - self.b1) * g)
            v.assign(self.b2 * v + (1.0 - self.b2) * g * g)
            var.assign_sub(lr * m / (tf.sqrt(v) + self.eps))


def clone_masked_lm(model):
    """A new ``BertMaskedLM`` with ``model``'s config and a copy of its weights."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_config(model.backbone.get_config())
    clone = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=model.preprocessor)
    clone.set_weights(model.get_weights())
    return clone


def quantization_aware_finetune(model, train_feeds, calibration_feeds, *, steps=300, batch_size=16,
                                learning_rate=1e-4, recalibrate_every=50, score_margin=10.0, seed=0,
                                progress=None):
    """Tune ``model``'s weights so its int8 export matches the float ``model``.

    ``train_feeds``: masked sequences (dict of ``[N, S]`` int32 arrays, ``[MASK]`` = id 4)
    drawn from the calibration text; ``calibration_feeds``: the sequences the
    export calibrates on (the activation ranges of the simulation are
    recomputed on them every ``recalibrate_every`` steps). The loss is the KL
    divergence from the original float model's masked-token distribution to
    the simulated int8 model's. Returns ``(tuned_model, log)``: a new
    ``BertMaskedLM`` (``model`` is not changed) and a dict with the loss at
    the start and end, steps, and seconds.
    """
    import tensorflow as tf

    from mobile_bert_distill.export.graph import extract_weights

    weights, config = extract_weights(model, "mlm")
    reference = QuantSim(weights, config, score_margin=score_margin, trainable=False)
    sim = QuantSim(weights, config, score_margin=score_margin)
    sim.calibrate(calibration_feeds, batch_size=batch_size)
    train_vars = list(sim.vars.values())
    adam = _Adam(train_vars, learning_rate)

    @tf.function(reduce_retracing=True)
    def step(ids, seg, mask):
        target = tf.nn.softmax(reference.logits(ids, seg, mask, mode="float"), axis=-1)
        with tf.GradientTape() as tape:
            logq = tf.nn.log_softmax(sim.logits(ids, seg, mask, mode="int8"), axis=-1)
            kl = tf.reduce_mean(tf.reduce_sum(target * (tf.math.log(target + 1e-20) - logq), axis=-1))
        adam.apply(tape.gradient(kl, train_vars))
        return kl

    rng = np.random.default_rng(seed)
    n = len(train_feeds["input_ids"])
    t0 = time.time()
    history = []
    for it in range(steps):
        if it and recalibrate_every and it % recalibrate_every == 0:
            sim.calibrate(calibration_feeds, batch_size=batch_size)
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        kl = step(*(tf.constant(train_feeds[k][idx]) for k in ("input_ids", "segment_ids", "padding_mask")))
        history.append(float(kl))
        if progress is not None:
            progress(it + 1, steps, history[-1])
    tuned = clone_masked_lm(model)
    sim.weights_into(tuned)
    k = max(1, min(20, steps // 5))
    log = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
           "kl_start": float(np.mean(history[:k])) if history else None,
           "kl_end": float(np.mean(history[-k:])) if history else None,
           "seconds": round(time.time() - t0, 1)}
    return tuned, log


PARITY_KEYS = ("top1_agreement", "top1_agreement_clear", "top1_agreement_near_ties", "near_tie_fraction",
               "mean_abs_logit_diff", "max_abs_logit_diff", "float_accuracy", "tflite_accuracy",
               "accuracy_drop_points")


def _tflite_logits(flat, feeds, work, name):
    from ai_edge_litert.interpreter import Interpreter

    from mobile_bert_distill import export as E

    path = os.path.join(work, name + ".tflite")
    with open(path, "wb") as f:
        f.write(flat)
    runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
    return np.concatenate([runner(**{k: feeds[k][i : i + 1] for k in E.INPUT_NAMES})["logits"]
                           for i in range(len(feeds["input_ids"]))])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--student", default="bench/export_modes/student")
    ap.add_argument("--corpus", default="bench/export_modes/synthetic.txt")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--parity", type=int, default=300)
    ap.add_argument("--train-sequences", type=int, default=2000)
    ap.add_argument("--variants", default="300:2e-5,300:1e-4",
                    help="comma-separated STEPS:LEARNING_RATE QAT runs (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--work", default=None, help="where the .tflite files go (default: a temporary folder)")
    ap.add_argument("--json", default="bench/export_modes/int8_qat.json")
    args = ap.parse_args(argv)
    from _reference_student import load_reference, missing_inputs

    if missing_inputs("int8_qat", args.student, args.corpus):
        return 2
    try:
        variants = [(int(a), float(b)) for a, b in (v.split(":") for v in args.variants.split(","))]
    except ValueError:
        print(f"int8_qat: error: --variants wants STEPS:LR[,STEPS:LR...], not {args.variants!r}", file=sys.stderr)
        return 2

    from mobile_bert_distill import export as E
    from mobile_bert_distill.export import experimental as X
    from mobile_bert_distill.atomic import atomic_write_json
    from mobile_bert_distill.export.graph import extract_weights

    model, tokenizer, calib_lines, calib, feeds, labels, original = load_reference(
        args.student, args.corpus, seq_len=args.seq_len, calibration=args.calibration, parity=args.parity)
    train, _ = E.corpus_sequences(calib_lines, tokenizer, args.seq_len, args.train_sequences, seed=2)

    import tensorflow as tf

    weights, config = extract_weights(model, "mlm")
    sim = QuantSim(weights, config, trainable=False)
    n = min(32, len(feeds["input_ids"]))
    got = sim.logits(*(tf.constant(feeds[k][:n]) for k in ("input_ids", "segment_ids", "padding_mask"))).numpy()
    sim_error = float(np.abs(got - original["logits"][:n][feeds["input_ids"][:n] == MASK_ID]).max())
    print(f"float simulation vs Keras: max |dlogit| {sim_error:.2e}", flush=True)
    if sim_error > 1e-3:
        print("int8_qat: error: the simulation does not reproduce the Keras student", file=sys.stderr)
        return 1

    work = args.work or tempfile.mkdtemp(prefix="mbd-qat-")
    os.makedirs(work, exist_ok=True)
    recipe = dict(X.recipe_table()["matmul"])
    rows = []
    for steps, lr in [(0, 0.0)] + variants:
        name = "ptq" if steps == 0 else f"qat-{steps}-{lr:g}"
        tuned, log = model, None
        if steps:
            def progress(i, total, kl):
                if i % 50 == 0 or i == total:
                    print(f"  {name}: step {i}/{total} KL {kl:.4f}", flush=True)

            tuned, log = quantization_aware_finetune(model, train, calib, steps=steps, learning_rate=lr,
                                                     batch_size=args.batch_size, progress=progress)
        flat = E.convert(tuned, task="mlm", quantization="int8", seq_len=args.seq_len, calibration_feeds=calib,
                         **recipe)
        logits = {"logits": _tflite_logits(flat, feeds, work, name)}
        row = {"variant": name, "steps": steps, "learning_rate": lr, "size_bytes": len(flat), "qat": log,
               "vs_original_float": {k: E.parity("mlm", original, logits, feeds, labels)[k] for k in PARITY_KEYS}}
        if steps:
            own = E.keras_outputs(tuned, "mlm", feeds)
            row["vs_own_float"] = {k: E.parity("mlm", own, logits, feeds, labels)[k] for k in PARITY_KEYS}
            row["own_float_vs_original"] = {
                k: E.parity("mlm", original, own, feeds, labels)[k] for k in ("top1_agreement", "tflite_accuracy")}
        rows.append(row)
        o = row["vs_original_float"]
        print(f"{name}: agreement with the original float {o['top1_agreement']:.4f} (clear "
              f"{o['top1_agreement_clear']:.4f}, near-ties {o['top1_agreement_near_ties']:.4f}), accuracy "
              f"{100 * o['float_accuracy']:.2f} -> {100 * o['tflite_accuracy']:.2f}"
              + (f"; with its own float {row['vs_own_float']['top1_agreement']:.4f}; KL "
                 f"{log['kl_start']:.4f} -> {log['kl_end']:.4f} in {log['seconds']:.0f} s" if steps else ""),
              flush=True)
    doc = {"student": os.path.abspath(args.student), "corpus": os.path.abspath(args.corpus),
           "seq_len": args.seq_len, "masked_tokens": int((feeds["input_ids"] == MASK_ID).sum()),
           "float_simulation_max_abs_error": sim_error, "load_average": os.getloadavg(), "variants": rows}
    atomic_write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
