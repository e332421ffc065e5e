"""Experimental, for the studies in research/; not part of the public API.

The code only the int8 studies use (``research/*.py``), and their one entry
into the product:

* GPTQ rounding (:func:`gptq_round`, :func:`gptq_folded`), SmoothQuant scales
  (:func:`smooth_scale`, :func:`smoothing_plan`) and query/key balancing
  (:func:`rescale_layer`): what the ``smooth_alpha``, ``balance_qk`` and
  ``gptq`` fields of :class:`~mobile_bert_distill.export.graph.GraphOptions`
  run (``ExportBert`` imports this module only when one is set; every recipe
  leaves them off, see ``research/README.md``);
* :func:`attention_matmul_names` and :func:`layer_sensitivity` (per-op int8
  error through TFLite's quantization debugger);
* the product internals the studies build on, re-exported here:
  :func:`recipe_table`, :func:`friendly_saved_model`, :func:`quiet_tf`,
  :data:`INPUT_NAMES`, :func:`convert`.

Names here may change or go without notice.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from mobile_bert_distill.export.conversion import convert, friendly_saved_model, quiet_tf
from mobile_bert_distill.export.recipes import INPUT_NAMES, recipe_table

__all__ = ["INPUT_NAMES", "attention_matmul_names", "convert", "friendly_saved_model", "gptq_folded",
           "gptq_round", "layer_sensitivity", "quiet_tf", "recipe_table", "rescale_layer", "smooth_scale",
           "smoothing_plan"]


def gptq_round(kernel, hessian, *, damp=0.01):
    """Round ``kernel`` ``[in, out]`` to the symmetric per-output-channel int8 grid
    (scale ``max|w|/127`` per output channel, the converter's own) with GPTQ.

    ``hessian`` is ``X^T X`` ``[in, in]`` of the layer's inputs. Inputs are
    rounded in decreasing order of ``diag(H)`` (GPTQ's act-order), except that
    each output channel's largest weight goes first: it sits exactly on
    ``+-127`` and never moves, so ``max|w|`` and hence the converter's scale
    stay those of the original kernel. Each later rounding error is spread on
    the inputs not yet rounded through the Cholesky factor of ``H^-1``
    (``damp * mean(diag H)`` is added to the diagonal). Returns float32
    weights that are integers times their channel's scale.
    """
    w_all = np.asarray(kernel, np.float64).T.copy()  # [out, in]
    n_in = w_all.shape[1]
    scale = np.abs(w_all).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    h = np.array(hessian, np.float64)
    if h.shape != (n_in, n_in):
        raise ValueError(f"hessian must be [{n_in}, {n_in}], got {h.shape}")
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += damp * np.mean(np.diag(h)) * np.eye(n_in)
    act = np.argsort(-np.diag(h), kind="stable")
    top = np.abs(w_all).argmax(axis=1)
    out = np.empty_like(w_all)
    for m in np.unique(top):
        rows = np.flatnonzero(top == m)
        order = np.concatenate([[m], act[act != m]])
        upper = np.linalg.cholesky(np.linalg.inv(h[np.ix_(order, order)])).T  # H^-1 = U^T U
        w = w_all[np.ix_(rows, order)]
        s = scale[rows]
        q = np.empty_like(w)
        for j in range(n_in):
            q[:, j] = np.clip(np.round(w[:, j] / s), -127, 127)
            err = (w[:, j] - q[:, j] * s) / upper[j, j]
            w[:, j + 1:] -= err[:, None] * upper[j, j + 1:][None, :]
        out[np.ix_(rows, order)] = q * s[:, None]
    return out.T.astype(np.float32)


def gptq_folded(kernel, hessian, gamma):
    """GPTQ of a kernel whose input ``x = y * gamma`` the converter folds:
    it quantizes ``diag(gamma) W`` fed by ``y``; returns ``diag(1/gamma) GPTQ(diag(gamma) W)``."""
    g = np.asarray(gamma, np.float64)
    if np.all(g == 1) or np.min(np.abs(g)) < 1e-6:
        return gptq_round(kernel, hessian)
    return (gptq_round(np.asarray(kernel, np.float64) * g[:, None], hessian / np.outer(g, g))
            / g[:, None]).astype(np.float32)


def smooth_scale(act_max, kernel_rows_max, alpha):
    """SmoothQuant's ``s_j = max|x_j|^alpha / max|W_j|^(1-alpha)`` (1 where undefined)."""
    a, w = np.asarray(act_max, np.float64), np.asarray(kernel_rows_max, np.float64)
    ok = (a > 0) & (w > 0)
    s = np.ones_like(a)
    s[ok] = a[ok] ** alpha / w[ok] ** (1.0 - alpha)
    return np.clip(s, 1e-5, 1e5)


def smoothing_plan(weights, stats, q_scale, *, alpha, hidden, task):
    """SmoothQuant scales (``GraphOptions.smooth_alpha``) for
    :class:`~mobile_bert_distill.export.graph.ExportBert`: ``in[i]`` for layer ``i``'s
    query/key/value input (``in[L]``: the MLM dense input, ``None`` unless task ``mlm``),
    ``mid[i]`` for its first feed-forward input."""
    s_in, s_mid = [], []
    for i, lw in enumerate(weights["layers"]):
        rows = np.concatenate([lw[n][0].reshape(hidden, -1) * (q_scale if n == "q" else 1.0)
                               for n in ("q", "k", "v")], axis=1)
        s_in.append(smooth_scale(stats[f"{i}.x"]["max"], np.abs(rows).max(1), alpha))
        s_mid.append(smooth_scale(stats[f"{i}.x2"]["max"], np.abs(lw["ff1"][0]).max(1), alpha))
    if task == "mlm":
        s_in.append(smooth_scale(stats["mlm.x"]["max"], np.abs(weights["mlm"]["dense"][0]).max(1), alpha))
    else:
        s_in.append(None)  # the last LayerNorm is the output
    return {"in": [a.astype(np.float32) if a is not None else None for a in s_in],
            "mid": [a.astype(np.float32) for a in s_mid]}

def rescale_layer(i, qk, qb, lw, stats, plan, *, options, hidden, folded_gamma):
    """Apply smoothing / query-key balancing / GPTQ (``options``) to layer ``i``'s kernels
    (already bias-folded, query scaled) for :class:`~mobile_bert_distill.export.graph.ExportBert`;
    ``folded_gamma`` is the pair of LayerNorm gammas the converter folds into its projections
    (GPTQ without smoothing). Returns ``(qk, qb, lw)``."""
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    shape3 = qk.shape
    q, bq = f64(qk).reshape(hidden, hidden), f64(qb).reshape(-1)
    k, v = f64(lw["k"][0]).reshape(hidden, hidden), f64(lw["v"][0]).reshape(hidden, hidden)
    o, f1, f2 = f64(lw["o"][0]).reshape(hidden, hidden), f64(lw["ff1"][0]), f64(lw["ff2"][0])
    h_x, h_c = stats[f"{i}.x"]["hessian"], stats[f"{i}.c"]["hessian"]
    h_x2, h_h = stats[f"{i}.x2"]["hessian"], stats[f"{i}.h"]["hessian"]
    if plan is not None:
        s_in, s_mid = f64(plan["in"][i]), f64(plan["mid"][i])
        q, k, v, f1 = q * s_in[:, None], k * s_in[:, None], v * s_in[:, None], f1 * s_mid[:, None]
        # attention-output input: the context is linear in V's columns
        s_c = smooth_scale(stats[f"{i}.c"]["max"], np.abs(o).max(1), options.smooth_alpha)
        v, o = v / s_c[None, :], o * s_c[:, None]
        h_x, h_x2 = h_x / np.outer(s_in, s_in), h_x2 / np.outer(s_mid, s_mid)
        h_c = h_c / np.outer(s_c, s_c)
    if options.balance_qk:
        qm, km = stats[f"{i}.q"]["max"], stats[f"{i}.k"]["max"]
        t = np.where((qm > 0) & (km > 0), np.sqrt(km / np.maximum(qm, 1e-30)), 1.0)
        q, bq, k = q * t[None, :], bq * t, k / t[None, :]
    if options.gptq:
        g_x, g_x2 = (np.ones(hidden), np.ones(hidden)) if plan is not None else map(f64, folded_gamma)
        q, k, v = (gptq_folded(w, h_x, g_x) for w in (q, k, v))
        o, f1, f2 = gptq_round(o, h_c), gptq_folded(f1, h_x2, g_x2), gptq_round(f2, h_h)
    as32 = lambda a, like: np.asarray(a, np.float32).reshape(np.shape(like))  # noqa: E731
    lw = dict(lw, k=(as32(k, lw["k"][0]), lw["k"][1]), v=(as32(v, lw["v"][0]), lw["v"][1]),
              o=(as32(o, lw["o"][0]), lw["o"][1]), ff1=(as32(f1, lw["ff1"][0]), lw["ff1"][1]),
              ff2=(as32(f2, lw["ff2"][0]), lw["ff2"][1]))
    return q.reshape(shape3).astype(np.float32), as32(bq, qb), lw


def attention_matmul_names(model, *, task="mlm", seq_len=128, graph_options=None):
    """Tensor names of the attention ``BATCH_MATMUL`` outputs in the rebuilt
    graph, as ``(scores, context)`` lists (usable as ``float_nodes``)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    flat = convert(model, task=task, quantization="float32", seq_len=seq_len, graph="friendly",
                   graph_options=graph_options)
    m = fu.read_model_from_bytearray(bytearray(flat))
    names = [fu.opcode_to_name(m, i) for i in range(len(m.operatorCodes))]
    g = m.subgraphs[0]
    scores, context = [], []
    for op in g.operators:
        if names[op.opcodeIndex] == "BATCH_MATMUL":
            lhs = g.tensors[int(op.inputs[0])].name or b""
            (context if b"Softmax" in lhs else scores).append(g.tensors[int(op.outputs[0])].name.decode())
    return scores, context


def layer_sensitivity(model, *, task="mlm", seq_len=128, calibration_feeds, recipe="xnnpack",
                      num_samples=16):
    """Per-op quantization error of an int8 recipe (Q-BERT-style sensitivity).

    Runs TFLite's quantization debugger: every quantized op's output is
    compared with the float op fed the same (dequantized) inputs. Returns a
    list of ``{"tensor", "op", "rmse_over_scale"}`` sorted worst first;
    ``rmse/scale`` is the error in units of the op's own quantization step
    (about 0.29 is pure rounding, larger means the op is sensitive). The
    ``tensor`` names can be passed as ``float_nodes`` to keep those ops float.
    """
    import csv
    import io

    tf = quiet_tf()
    chosen = recipe_table()[recipe]
    feeds = calibration_feeds
    n = len(feeds["input_ids"])

    def representative():
        for i in range(n):
            yield {k: feeds[k][i : i + 1] for k in INPUT_NAMES}

    order = []  # the debugger feeds inputs positionally, in the model file's order

    def debug_data():
        for i in range(min(num_samples, n)):
            yield [feeds[k][i : i + 1] for k in order]

    with tempfile.TemporaryDirectory(prefix="mbd-sens-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        friendly_saved_model(model, task, seq_len, 1, saved, chosen["graph_options"], feeds)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(chosen["float_ops"]) or None)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=debug_data, debug_options=options)
        for d in debugger._quant_interpreter.get_input_details():
            order.append(next(k for k in INPUT_NAMES if k in d["name"]))
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r.get("scale") or 0)
        mse = float(r.get("mean_squared_error") or 0)
        if scale > 0:
            rows.append({"tensor": r["tensor_name"], "op": r["op_name"],
                         "rmse_over_scale": float(np.sqrt(mse) / scale)})
    return sorted(rows, key=lambda r: -r["rmse_over_scale"])
