"""Export a keras-hub BERT (the distilled student, or any BertMaskedLM/BertBackbone) to LiteRT.

Two entry points:

* :func:`export_keras_model` takes an in-memory ``BertMaskedLM`` / ``BertBackbone``;
* :func:`export_student` takes the student preset directory that ``mbd distill``
  writes, calibrates/validates on text, and is what ``mbd export`` runs.

Both write the ``.tflite`` atomically, load it back in the LiteRT interpreter,
run it once, and return (and write beside it as ``<name>.report.json``) a
report: op histogram, QUANTIZE/DEQUANTIZE and float-op counts, size, params
and a parity block against the float Keras model.

The graph is not the Keras graph: :mod:`mobile_bert_distill.bert_graph`
re-expresses the same weights with quantization-friendly ops (``graph="keras"``
keeps the stock Keras graph, for comparison). Quantization modes:

``float32``  no quantization.
``float16``  float16 weights (dequantized at load time).
``dynamic``  int8 weights, float activations (dynamic-range).
``int8``     full-integer post-training quantization calibrated on real
             sequences; ``float_ops`` may keep chosen op types in float.

Example::

    import keras_hub
    from mobile_bert_distill.export import export_keras_model
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64)
    report = export_keras_model(backbone, "enc.tflite", task="encoder",
                                quantization="dynamic", seq_len=32)
    print(report["size_bytes"], report["graph_ops"]["ops"])
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time

import numpy as np

from mobile_bert_distill import text
from mobile_bert_distill.atomic import atomic_file, atomic_write_json, locked_output, staged_files
from mobile_bert_distill.bert_graph import TASKS
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text import KIT_SPECIAL_IDS, pack_rows

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
DEFAULT_QUANTIZATION = "int8"  # what `mbd export` writes unless told otherwise
INPUT_NAMES = ("input_ids", "segment_ids", "padding_mask")
OUTPUT_NAMES = {"mlm": ("logits",), "encoder": ("pooled_output", "sequence_output"),
                "classifier": ("probabilities",)}
#: Minimum masked-token top-1 agreement with the float model, per mode (CLI default).
DEFAULT_MIN_AGREEMENT = {"float32": 0.999, "float16": 0.99, "dynamic": 0.95, "int8": 0.99}

log = logging.getLogger(__name__)


def _recipes():
    from mobile_bert_distill.bert_graph import GraphOptions

    friendly_int8 = GraphOptions(attention="heads", gelu="tanh", layer_norm_epsilon=False)
    # GELU stays float in "matmul": one builtin op (XNNPACK has a float GELU)
    # instead of the seven of the tanh formula, which int8 GELU needs; the
    # position table is stored in int8 (the all-int8 recipes would get one
    # more delegate partition from its float segment term). The attention
    # scores get int8 ranges from their float row maxima (score_margin, see
    # GraphOptions): the calibrated ranges, widened by the scores of padded
    # keys, had steps of 0.2-0.4; measured top-1 agreement on the 12x48
    # reference student 0.899 -> 0.923-0.933 (margins 6-10), same file size
    # and graph. GPTQ, SmoothQuant and query/key balancing (GraphOptions) did
    # not measurably help there and stay off (bench/export_modes/smoothing_run*.json).
    matmul_int8 = dataclasses.replace(friendly_int8, gelu="builtin", position_segment_table=True,
                                      score_margin=10.0)
    return {
        # Every FULLY_CONNECTED and BATCH_MATMUL in int8; LayerNorm, residual
        # adds, GELU and softmax stay float (XNNPACK runs them fast in float,
        # and int8 residual streams/LayerNorms cost agreement). One partition.
        "matmul": {"graph": "friendly", "graph_options": matmul_int8,
                   "float_ops": ("SOFTMAX", "RSQRT", "ADD", "MEAN", "SUB", "MUL", "TANH", "GELU"),
                   "xnnpack_fixups": True, "share_embedding": True, "float_logits": True},
        # "matmul" with the two attention BATCH_MATMULs (scores, context) in
        # float too: on the 12x48 reference student they are the most
        # sensitive int8 ops (measured top-1 agreement 0.90 -> 0.95 with both
        # float; either one alone: 0.92 / 0.88, i.e. within the noise).
        "fc": {"graph": "friendly", "graph_options": matmul_int8,
               "float_ops": ("SOFTMAX", "RSQRT", "ADD", "MEAN", "SUB", "MUL", "TANH", "GELU",
                             "BATCH_MATMUL"),
               "xnnpack_fixups": True, "share_embedding": True, "float_logits": True},
        # int8 everywhere except SOFTMAX and RSQRT, which XNNPACK has no int8
        # kernel for: kept float inside the delegate (one partition).
        # The logits projection writes float output (int8 GEMM, no 8-bit
        # requantization of the logits).
        "xnnpack": {"graph": "friendly", "graph_options": friendly_int8,
                    "float_ops": ("SOFTMAX", "RSQRT"), "xnnpack_fixups": True, "share_embedding": True,
                    "float_logits": True},
        # every op int8; SOFTMAX/RSQRT/GELU run on the built-in kernels.
        "strict": {"graph": "friendly", "graph_options": friendly_int8,
                   "float_ops": (), "xnnpack_fixups": True, "share_embedding": True, "float_logits": False},
        # the stock Keras graph, converted as is.
        "naive": {"graph": "keras", "graph_options": None,
                  "float_ops": (), "xnnpack_fixups": False, "share_embedding": False, "float_logits": False},
    }


#: Named int8 recipes (see :func:`export_keras_model`'s ``recipe``).
INT8_RECIPES = ("matmul", "fc", "xnnpack", "strict", "naive")


# --------------------------------------------------------------------------
# sequences
# --------------------------------------------------------------------------
def random_sequences(n, seq_len, vocab_size, *, batch=None, seed=0, num_special=5, mask_rate=0.15):
    """``n`` valid random sequences: ``[CLS] ids.. [SEP] [PAD]..`` with varied lengths.

    Token ids are drawn from ``[num_special, vocab_size)`` (never out of range),
    and a ``mask_rate`` share of them is replaced by ``[MASK]``; special ids are the kit
    vocabularies' (``text.KIT_SPECIAL_IDS``).
    Returns a dict of int32 arrays ``[n, seq_len]``.
    """
    ids = KIT_SPECIAL_IDS
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n):
        length = int(rng.integers(min(8, seq_len), seq_len + 1))
        body = rng.integers(num_special, vocab_size, size=length - 2)
        bodies.append(np.where(rng.random(length - 2) < mask_rate, ids["[MASK]"], body))
    return pack_rows(bodies, seq_len, ids["[CLS]"], ids["[SEP]"])


def _as_feeds(sequences):
    """Accept a dict of ``[N, S]`` arrays or a list of dicts of ``[S]``/``[1, S]`` arrays."""
    if isinstance(sequences, dict):
        return {k: np.asarray(sequences[k], np.int32) for k in INPUT_NAMES}
    rows = list(sequences)
    if not rows:
        raise ValueError("no sequences given")
    return {
        k: np.concatenate([np.asarray(r[k], np.int32).reshape(-1, np.shape(r[k])[-1]) for r in rows])
        for k in INPUT_NAMES
    }


def _check_feeds(feeds, seq_len, vocab_size):
    for k in INPUT_NAMES:
        if feeds[k].ndim != 2 or feeds[k].shape[1] != seq_len:
            raise ValueError(f"{k} must have shape [N, {seq_len}], got {feeds[k].shape}")
    ids = feeds["input_ids"]
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"input_ids outside [0, {vocab_size}): min {ids.min()}, max {ids.max()}")


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity("error")
    return tf


def _keras_saved_model(model, task, seq_len, batch_size, directory):
    """Stock Keras graph: ``ExportArchive`` (the one Keras 3 path that converts)."""
    import keras
    import tensorflow as tf

    from mobile_bert_distill.bert_graph import split_masked_lm

    backbone, _ = split_masked_lm(model)
    spec = [tf.TensorSpec([batch_size, seq_len], tf.int32, name=n) for n in INPUT_NAMES]
    archive = keras.export.ExportArchive()
    archive.track(model)
    if task == "mlm":
        positions = tf.tile(tf.range(seq_len, dtype=tf.int32)[None], [batch_size, 1])

        def fn(input_ids, segment_ids, padding_mask):
            logits = model(
                {"token_ids": input_ids, "segment_ids": segment_ids,
                 "padding_mask": padding_mask, "mask_positions": positions},
                training=False,
            )
            return {"logits": logits}
    elif task == "classifier":
        from mobile_bert_distill.bert_graph import classifier_activation

        needs_softmax = classifier_activation(model) == "linear"

        def fn(input_ids, segment_ids, padding_mask):
            out = model({"token_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
                        training=False)
            return {"probabilities": tf.nn.softmax(out, axis=-1) if needs_softmax else out}
    else:

        def fn(input_ids, segment_ids, padding_mask):
            out = backbone(
                {"token_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
                training=False,
            )
            return {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"]}

    archive.add_endpoint("serving_default", fn, input_signature=spec)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        archive.write_out(directory)


def _friendly_saved_model(model, task, seq_len, batch_size, directory, options, calibration_feeds=None):
    import tensorflow as tf

    from mobile_bert_distill.bert_graph import ExportBert

    needs = options is not None and options.needs_calibration
    built = ExportBert.from_keras(model, task=task, seq_len=seq_len, batch_size=batch_size, options=options,
                                  calibration_feeds=calibration_feeds if needs else None)
    tf.saved_model.save(built.module, directory, signatures={"serving_default": built.module.serve})
    return built


def convert(model, *, task="mlm", quantization="float32", seq_len=128, batch_size=1,
            calibration_feeds=None, graph="friendly", graph_options=None, float_ops=(),
            float_nodes=(), xnnpack_fixups=True, share_embedding=True, float_logits=False,
            per_channel=True):
    """Convert ``model`` to TFLite flatbuffer bytes (no file is written).

    ``calibration_feeds`` (dict of ``[N, S]`` int32 arrays) is required for
    ``int8``, and for graph options that need calibration (smoothing, GPTQ;
    see :class:`~mobile_bert_distill.bert_graph.GraphOptions`). ``float_ops`` (op type names, e.g. ``("SOFTMAX",)``) and
    ``float_nodes`` (tensor names) stay float in an int8 model (selective
    quantization through TFLite's quantization debugger). ``xnnpack_fixups``
    applies :func:`~mobile_bert_distill.quantization.fix_int8_for_xnnpack`
    to int8 models, ``share_embedding``
    :func:`~mobile_bert_distill.quantization.share_tied_embedding`,
    ``float_logits``
    :func:`~mobile_bert_distill.quantization.float_output_projection`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if graph not in ("friendly", "keras"):
        raise ValueError(f"graph must be 'friendly' or 'keras', not {graph!r}")
    tf = _quiet_tf()
    with tempfile.TemporaryDirectory(prefix="mbd-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        built = None
        if graph == "keras":
            _keras_saved_model(model, task, seq_len, batch_size, saved)
        else:
            built = _friendly_saved_model(model, task, seq_len, batch_size, saved, graph_options,
                                          calibration_feeds)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantization == "int8":
            if calibration_feeds is None:
                raise ValueError("int8 needs calibration_feeds")
            feeds = calibration_feeds
            n = len(feeds["input_ids"])

            def representative():
                for start in range(0, n - batch_size + 1, batch_size):
                    yield {k: feeds[k][start : start + batch_size] for k in INPUT_NAMES}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            if not per_channel:
                converter._experimental_disable_per_channel = True
            if not float_ops and not float_nodes:
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if float_ops or float_nodes:
                debug_options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_ops=list(float_ops) or None,
                    denylisted_nodes=list(float_nodes) or None,
                )
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=representative, debug_options=debug_options
                )
                flat = bytes(debugger.get_nondebug_quantized_model())
            else:
                flat = bytes(converter.convert())
            from mobile_bert_distill import quantization as q

            if xnnpack_fixups:
                flat, _ = q.fix_int8_for_xnnpack(flat)
            if built is not None and getattr(built, "score_ranges", None) is not None:
                flat, _ = q.set_attention_score_ranges(flat, built.score_ranges)
            if share_embedding and task == "mlm":
                flat, _ = q.share_tied_embedding(flat)
            if float_logits and task == "mlm":
                flat, _ = q.float_output_projection(flat)
            if xnnpack_fixups:
                flat, _ = q.strip_tensor_names(flat)
        if quantization != "int8":
            flat = bytes(converter.convert())
        if graph == "friendly":  # the stock-graph baseline stays as the converter wrote it
            from mobile_bert_distill import quantization as q

            if quantization == "float16":
                flat, _ = q.split_float16_dequantize(flat)
            flat, _ = q.compact(flat)
        return flat


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

    tf = _quiet_tf()
    chosen = _recipes()[recipe]
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
        _friendly_saved_model(model, task, seq_len, 1, saved, chosen["graph_options"], feeds)
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


# --------------------------------------------------------------------------
# inspection and parity
# --------------------------------------------------------------------------
def count_params(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def inspect_tflite(path_or_bytes):
    """Graph op histogram (no delegate) and the executed-node view with XNNPACK."""
    from mobile_bert_distill.tflite_tools import (
        delegated_nodes, load_interpreter, op_histogram, signature_io)

    kw = {"path": path_or_bytes} if isinstance(path_or_bytes, str) else {"model_content": path_or_bytes}
    plain, _ = load_interpreter(**kw, xnnpack=False)
    delegated, runtime = load_interpreter(**kw, xnnpack=True)
    graph = op_histogram(plain)
    partitions, outside = delegated_nodes(delegated)
    return {
        "runtime": runtime,
        "signature": signature_io(plain),
        "graph_ops": graph,
        "xnnpack": {
            "delegate_partitions": len(partitions),
            "nodes_in_delegate": int(sum(len(p) for p in partitions)),
            "ops_outside_delegate": outside,
        },
    }


def keras_outputs(model, task, feeds, *, batch=32):
    """Float reference outputs of the Keras model on ``feeds`` (all positions)."""
    from mobile_bert_distill.bert_graph import split_masked_lm

    backbone, _ = split_masked_lm(model)
    n, s = feeds["input_ids"].shape
    out = {}
    for start in range(0, n, batch):
        x = {"token_ids": feeds["input_ids"][start : start + batch],
             "segment_ids": feeds["segment_ids"][start : start + batch],
             "padding_mask": feeds["padding_mask"][start : start + batch]}
        if task == "mlm":
            m = len(x["token_ids"])
            x["mask_positions"] = np.tile(np.arange(s, dtype=np.int32), (m, 1))
            res = {"logits": model(x, training=False)}
        elif task == "classifier":
            res = {"probabilities": classifier_probabilities(model, x)}
        else:
            res = backbone(x, training=False)
        for k, v in res.items():
            out.setdefault(k, []).append(np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}


def classifier_probabilities(model, x):
    """Float probabilities ``[N, K]`` of a keras-hub ``BertTextClassifier`` on preprocessed ``x``
    (``token_ids``/``segment_ids``/``padding_mask``): softmax of its logits (or its own softmax)."""
    from mobile_bert_distill.bert_graph import classifier_activation

    out = model(x, training=False)
    out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float32)
    if classifier_activation(model) == "softmax":
        return out
    z = out.astype(np.float64) - out.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _cosine(a, b):
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12
    return num / den


#: Float top-2 logit gap under which a masked token counts as a near-tie in the parity block.
NEAR_TIE_GAP = 0.5


def parity(task, reference, candidate, feeds, labels=None):
    """Compare TFLite outputs with the float reference.

    For ``mlm``: positions where ``input_ids == [MASK]`` (id 4) are scored:
    top-1 agreement, each model's accuracy against ``labels`` (the original
    ids; ``None`` leaves accuracy out), max/mean |Δlogit| and logit cosine;
    agreement is also split into tokens whose float top-2 logit gap is at
    least :data:`NEAR_TIE_GAP` ("clear") and near-ties, with their share.
    For ``encoder``: cosine of sequence outputs over non-padding tokens and
    of pooled outputs, and max/mean |Δ|.
    For ``classifier``: label (arg-max) agreement, max/mean |Δprobability|,
    the largest deviation of a probability row's sum from 1, and with
    ``labels`` (class indices ``[N]``) each model's accuracy.
    """
    res = {"sequences": int(len(feeds["input_ids"]))}
    if task == "classifier":
        ref, cand = reference["probabilities"], candidate["probabilities"]
        ref_top, cand_top = ref.argmax(-1), cand.argmax(-1)
        diff = np.abs(ref.astype(np.float64) - cand)
        res.update(
            examples=int(len(ref)),
            label_agreement=float((ref_top == cand_top).mean()),
            label_flips=int((ref_top != cand_top).sum()),
            max_abs_prob_diff=float(diff.max()),
            mean_abs_prob_diff=float(diff.mean()),
            max_prob_sum_error=float(np.abs(cand.astype(np.float64).sum(-1) - 1.0).max()),
        )
        if labels is not None:
            truth = np.asarray(labels).reshape(-1)
            res["float_accuracy"] = float((ref_top == truth).mean())
            res["tflite_accuracy"] = float((cand_top == truth).mean())
            res["accuracy_drop_points"] = 100.0 * (res["float_accuracy"] - res["tflite_accuracy"])
        return res
    if task == "mlm":
        where = feeds["input_ids"] == KIT_SPECIAL_IDS["[MASK]"]  # the masks of random_sequences
        if not where.any():
            where = feeds["padding_mask"].astype(bool)
        ref = reference["logits"][where]
        cand = candidate["logits"][where]
        ref_top = ref.argmax(-1)
        cand_top = cand.argmax(-1)
        diff = np.abs(ref - cand)
        # near-ties: the float model's own top-2 logit gap is below NEAR_TIE_GAP, so any
        # rounding may swap them; reported apart so a user sees where disagreement lives
        top2 = np.sort(ref, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) >= NEAR_TIE_GAP
        same = ref_top == cand_top
        res.update(
            masked_tokens=int(where.sum()),
            top1_agreement=float(same.mean()),
            near_tie_gap=NEAR_TIE_GAP,
            near_tie_fraction=float(1.0 - clear.mean()),
            top1_agreement_clear=float(same[clear].mean()) if clear.any() else None,
            top1_agreement_near_ties=float(same[~clear].mean()) if (~clear).any() else None,
            max_abs_logit_diff=float(diff.max()),
            mean_abs_logit_diff=float(diff.mean()),
            logit_cosine_mean=float(_cosine(ref, cand).mean()),
        )
        if labels is not None:
            truth = labels[where]
            res["float_accuracy"] = float((ref_top == truth).mean())
            res["tflite_accuracy"] = float((cand_top == truth).mean())
            res["accuracy_drop_points"] = 100.0 * (res["float_accuracy"] - res["tflite_accuracy"])
    else:
        keep = feeds["padding_mask"].astype(bool)
        ref, cand = reference["sequence_output"][keep], candidate["sequence_output"][keep]
        cos = _cosine(ref, cand)
        pooled = _cosine(reference["pooled_output"], candidate["pooled_output"])
        res.update(
            tokens=int(keep.sum()),
            sequence_output_cosine_mean=float(cos.mean()),
            sequence_output_cosine_min=float(cos.min()),
            pooled_output_cosine_mean=float(pooled.mean()),
            max_abs_diff=float(np.abs(ref - cand).max()),
            mean_abs_diff=float(np.abs(ref - cand).mean()),
        )
    return res


def agreement_of(parity_block):
    """The single number ``--min-agreement`` is checked against."""
    if "label_agreement" in parity_block:
        return parity_block["label_agreement"]
    if "top1_agreement" in parity_block:
        return parity_block["top1_agreement"]
    return parity_block["sequence_output_cosine_mean"]


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def export_keras_model(model, out_path, *, task="mlm", quantization="float32", seq_len=128,
                       batch_size=1, calibration_sequences=None, parity_sequences=None,
                       parity_labels=None, num_calibration=128, num_parity=64, recipe=None,
                       graph=None, graph_options=None, float_ops=None, float_nodes=(),
                       xnnpack_fixups=None, share_embedding=None, float_logits=None, per_channel=True,
                       max_size_mb=None,
                       min_agreement=None, write_report=True, seed=0, extra_report=None):
    """Export an in-memory keras-hub ``BertMaskedLM``/``BertBackbone`` to ``out_path``.

    Args:
        model: ``BertMaskedLM`` (task ``mlm`` or ``encoder``) or ``BertBackbone``
            (task ``encoder``).
        task: ``"mlm"`` (output ``logits`` ``[B, S, V]``), ``"encoder"``
            (``sequence_output`` ``[B, S, H]``, ``pooled_output`` ``[B, H]``) or
            ``"classifier"`` (a ``BertTextClassifier``: ``probabilities``
            ``[B, K]``, the softmax of its logits; ``parity_labels`` are then
            class indices ``[N]``).
        quantization: ``float32``, ``float16``, ``dynamic`` or ``int8``.
        seq_len, batch_size: the static input shape ``[batch_size, seq_len]``.
        calibration_sequences: list of dicts (or one dict of ``[N, S]``
            arrays) of int32 ``input_ids``/``segment_ids``/``padding_mask``
            used to calibrate int8; ``None`` draws ``num_calibration`` valid
            random sequences (ids in the vocabulary, never −128..127 noise).
        parity_sequences, parity_labels: held-out sequences (with ``[MASK]``
            tokens for mlm) and the original ids at those positions; ``None``
            uses random valid sequences (agreement only, no accuracy).
        recipe: int8 recipe, one of :data:`INT8_RECIPES` (default
            ``"matmul"``); the arguments below override its parts.
        graph: ``"friendly"`` (re-expressed graph) or ``"keras"`` (stock).
        graph_options: :class:`~mobile_bert_distill.bert_graph.GraphOptions`.
        float_ops, float_nodes: ops/tensors kept float in an int8 model.
        xnnpack_fixups, share_embedding, float_logits: the int8 flatbuffer
            passes of :mod:`mobile_bert_distill.quantization`.
        max_size_mb, min_agreement: raise :class:`UserError` (nothing written)
            when the file is larger, or parity lower.

    Returns:
        The report dict (also written as ``<out>.report.json`` unless
        ``write_report=False``).
    """
    from mobile_bert_distill.bert_graph import split_masked_lm
    from mobile_bert_distill.tflite_tools import load_interpreter, run_batches

    from mobile_bert_distill.bert_graph import GraphOptions

    if quantization not in QUANTIZATIONS:
        raise UserError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if quantization == "int8":
        recipe = recipe or "matmul"
        if recipe not in INT8_RECIPES:
            raise UserError(f"recipe must be one of {', '.join(INT8_RECIPES)}, not {recipe!r}")
        chosen = dict(_recipes()[recipe])
    else:
        recipe = None
        chosen = {"graph": "friendly", "graph_options": GraphOptions(), "float_ops": (),
                  "xnnpack_fixups": False, "share_embedding": False, "float_logits": False}
    for key, value in (("graph", graph), ("graph_options", graph_options), ("float_ops", float_ops),
                       ("xnnpack_fixups", xnnpack_fixups), ("share_embedding", share_embedding),
                       ("float_logits", float_logits)):
        if value is not None:
            chosen[key] = value
    graph, graph_options, float_ops = chosen["graph"], chosen["graph_options"], tuple(chosen["float_ops"])
    if task == "classifier":
        _check_classifier_model(model, share_embedding=share_embedding, float_logits=float_logits)
    backbone, head = split_masked_lm(model)
    if task == "mlm" and head is None:
        raise UserError("task 'mlm' needs a BertMaskedLM; a BertBackbone can only export task 'encoder'")
    if seq_len < 2 or seq_len > backbone.max_sequence_length:
        raise UserError(f"the sequence length must be in [2, {backbone.max_sequence_length}], got {seq_len}")
    if batch_size < 1:
        raise UserError(f"the batch size must be >= 1, got {batch_size}")
    vocab_size = int(backbone.vocabulary_size)
    random_kw = {"mask_rate": 0.0} if task == "classifier" else {}  # a classifier never sees [MASK]
    if calibration_sequences is None:
        calib = random_sequences(num_calibration, seq_len, vocab_size, seed=seed, **random_kw)
        calib_source = "random_ids"
    else:
        calib = _as_feeds(calibration_sequences)
        calib_source = "given"
    _check_feeds(calib, seq_len, vocab_size)
    if parity_sequences is None:
        checks = random_sequences(num_parity, seq_len, vocab_size, seed=seed + 1, **random_kw)
        parity_source = "random_ids"
        parity_labels = None
    else:
        checks = _as_feeds(parity_sequences)
        parity_source = "given"
    _check_feeds(checks, seq_len, vocab_size)

    t0 = time.perf_counter()
    flat = convert(model, task=task, quantization=quantization, seq_len=seq_len,
                   batch_size=batch_size,
                   calibration_feeds=calib if quantization == "int8" or (
                       graph_options is not None and graph_options.needs_calibration) else None,
                   graph=graph, graph_options=graph_options, float_ops=float_ops,
                   float_nodes=float_nodes, xnnpack_fixups=chosen["xnnpack_fixups"],
                   share_embedding=chosen["share_embedding"], float_logits=chosen["float_logits"],
                   per_channel=per_channel)
    convert_s = time.perf_counter() - t0
    size = len(flat)
    if max_size_mb is not None and size > max_size_mb * 1e6:
        raise UserError(
            f"the {quantization} model would be {size / 1e6:.2f} MB, over the limit of {max_size_mb} MB; "
            "nothing written", option="max_size_mb", purpose="with a larger limit to accept it"
        )
    info = inspect_tflite(flat)
    interp, runtime = load_interpreter(model_content=flat, num_threads=1)
    candidate = run_batches(interp, checks)
    reference = keras_outputs(model, task, checks)
    par = parity(task, reference, candidate, checks, parity_labels)
    par["source"] = parity_source
    if min_agreement is not None and agreement_of(par) < min_agreement:
        raise UserError(
            f"parity {agreement_of(par):.4f} below the minimum agreement {min_agreement} "
            f"({quantization}, {par['sequences']} sequences); nothing written", option="min_agreement",
            purpose="with a lower value to accept it"
        )
    report = {
        "model_file": os.path.basename(str(out_path)),
        "task": task,
        "quantization": quantization,
        "recipe": recipe,
        "graph": graph,
        "graph_options": graph_options.to_dict() if graph_options is not None and graph == "friendly" else None,
        "xnnpack_fixups": bool(chosen["xnnpack_fixups"]) if quantization == "int8" else None,
        "share_embedding": bool(chosen["share_embedding"]) if quantization == "int8" else None,
        "float_logits": bool(chosen["float_logits"]) if quantization == "int8" else None,
        "per_channel_weights": bool(per_channel) if quantization == "int8" else None,
        "float_ops": list(float_ops),
        "float_nodes": list(float_nodes),
        "seq_len": int(seq_len),
        "batch_size": int(batch_size),
        "size_bytes": size,
        "size_mb": size / 1e6,
        "params": count_params(model),
        "vocabulary_size": vocab_size,
        "calibration": {"source": calib_source, "sequences": int(len(calib["input_ids"]))}
        if quantization == "int8" else None,
        **({"num_classes": int(model.num_classes)} if task == "classifier" else {}),
        "convert_seconds": round(convert_s, 2),
        **info,
        "parity": par,
    }
    if quantization == "int8" and float_ops:
        report["float_islands"] = {
            "ops": list(float_ops),
            "why": "SOFTMAX/RSQRT: XNNPACK has no int8 kernel; as int8 they run on the built-in kernels "
                   "and split the graph into ~40 delegate partitions (2x slower here). ADD/MEAN/SUB/MUL/"
                   "TANH/GELU (matmul recipe): int8 residual streams and LayerNorms cost top-1 agreement "
                   "and are not faster. Each float island sits between DEQUANTIZE and QUANTIZE inside "
                   "the XNNPACK partition.",
            "quantize_dequantize_pairs": int(info["graph_ops"]["quantize_ops"]),
        }
    if extra_report:
        report.update(extra_report)
    out_path = str(out_path)
    with atomic_file(out_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flat)
        # the written file must load and run before we call it done
        check, _ = load_interpreter(tmp, num_threads=1)
        run_batches(check, {k: v[:1] for k, v in checks.items()})
    if write_report:
        atomic_write_json(report_path(out_path), report)
    return report


def _check_classifier_model(model, *, share_embedding=None, float_logits=None):
    import keras_hub

    from mobile_bert_distill.bert_graph import classifier_activation

    if not isinstance(model, keras_hub.models.BertTextClassifier):
        raise UserError(f"task 'classifier' needs a keras-hub BertTextClassifier, not a {type(model).__name__}")
    try:
        classifier_activation(model)
    except ValueError as e:
        raise UserError(str(e)) from None
    for name, value in (("share_embedding", share_embedding), ("float_logits", float_logits)):
        if value:
            raise UserError(f"{name} is an MLM-only int8 pass (the tied embedding / logits projection); "
                            "it does not apply to task 'classifier'")


def report_path(model_path):
    root, _ = os.path.splitext(str(model_path))
    return root + ".report.json"


# --------------------------------------------------------------------------
# student presets and corpora
# --------------------------------------------------------------------------
def check_student_dir(student_dir):
    """Raise :class:`UserError` unless ``student_dir`` looks like a keras-hub preset."""
    student_dir = str(student_dir)
    if not os.path.isdir(student_dir):
        raise UserError(f"student directory not found: {student_dir}")
    for required in ("config.json", "metadata.json"):
        if not os.path.isfile(os.path.join(student_dir, required)):
            raise UserError(f"{student_dir} is not a keras-hub preset (no {required}); "
                            "pass the student/ folder that `mbd distill` writes")
    return find_preset_vocab(student_dir)


def load_student(student_dir):
    """Load the ``BertMaskedLM`` preset ``mbd distill`` writes; return ``(model, vocab_path)``."""
    student_dir = str(student_dir)
    vocab_path = check_student_dir(student_dir)
    return _load_preset("BertMaskedLM", student_dir, "student"), vocab_path


def _load_preset(class_name, preset_dir, what):
    """``keras_hub.models.<class_name>.from_preset``; a broken preset is a ``UserError``."""
    _quiet_tf()
    import keras_hub

    try:
        return getattr(keras_hub.models, class_name).from_preset(preset_dir)
    except Exception as e:  # keras-hub raises many types for a broken preset
        raise UserError(f"cannot load the {what} preset {preset_dir}: {str(e).splitlines()[0]}") from e


def find_preset_vocab(preset_dir):
    for rel in ("assets/tokenizer/vocabulary.txt", "vocabulary.txt", "vocab.txt"):
        path = os.path.join(preset_dir, rel)
        if os.path.isfile(path):
            return path
    raise UserError(f"{preset_dir} has no tokenizer vocabulary (assets/tokenizer/vocabulary.txt)")


def read_corpus(path, max_lines=200_000):
    """The first ``max_lines`` non-empty lines of a calibration text file.

    The training corpus's rules (:func:`mobile_bert_distill.text.read_corpus`): a missing,
    empty or not-UTF-8 file (a binary one too) is a :class:`UserError`, never calibrated on.
    """
    return text.read_corpus([path])[:max_lines]


def corpus_sequences(lines, tokenizer, seq_len, n, *, seed=0, mask_rate=0.15, min_len=12):
    """``n`` packed, masked sequences from text, tokenized exactly like training.

    Each sequence is ``[CLS] tokens [SEP]`` of a random length in
    ``[min_len, seq_len]`` (consecutive lines packed until full, so padding
    patterns vary like real inputs); ``mask_rate`` of its tokens (at least
    one) become ``[MASK]``. Returns ``(feeds, labels)``: int32 ``[n, S]``
    arrays, ``labels`` holding the original ids.
    """
    rng = np.random.default_rng(seed)
    cls_id, sep_id, mask_id = (tokenizer.special_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    encoded = [ids for ids in (tokenizer.encode(line) for line in lines) if ids]
    if not encoded:
        raise UserError("the corpus produced no tokens")
    bodies, masked = [], []
    cursor = int(rng.integers(len(encoded)))
    for _ in range(n):
        target = int(rng.integers(min(min_len, seq_len), seq_len + 1)) - 2
        body = []
        while len(body) < target:
            body.extend(encoded[cursor % len(encoded)])
            cursor += 1
        body = body[:max(target, 1)]
        k = max(1, int(round(mask_rate * len(body))))
        bodies.append(body)
        masked.append(1 + rng.choice(len(body), size=min(k, len(body)), replace=False))
    feeds = pack_rows(bodies, seq_len, cls_id, sep_id)
    labels = feeds["input_ids"].copy()
    for i, where in enumerate(masked):
        feeds["input_ids"][i, where] = mask_id
    return feeds, labels


def split_corpus(lines, heldout_fraction=0.1):
    """Deterministic split: every 10th line held out for parity, the rest calibrates."""
    step = max(2, int(round(1 / heldout_fraction)))
    heldout = [line for i, line in enumerate(lines) if i % step == 0]
    calib = [line for i, line in enumerate(lines) if i % step != 0] or heldout
    return calib, heldout


def export_student(student_dir, out_path, *, task="mlm", quantization="int8", seq_len=128,
                   batch_size=1, calibration_corpus=None, num_calibration=200, num_parity=200,
                   max_size_mb=None, min_agreement=None, android_assets=None, overwrite=False, seed=0, **kw):
    """Export the student preset at ``student_dir``; what ``mbd export`` runs.

    Calibration (int8) and parity sequences come from ``calibration_corpus``
    (a text file, one sentence or paragraph per line): every 10th line is
    held out for parity, the rest calibrates. Without a corpus, int8 refuses
    (random ids are not a calibration set) and parity uses random valid ids.
    ``android_assets`` (a directory) additionally receives ``model.tflite``,
    ``vocab.txt`` and ``model_info.json``. ``task="classifier"`` hands over
    to the classifier export (``student_dir`` is then the classifier
    folder ``mbd finetune`` writes).

    The outputs (``out_path``, its report unless ``write_report=False``, and the
    Android asset files) appear together when everything succeeded, or not at all.
    An existing one is refused (:class:`~mobile_bert_distill.errors.OutputExists`)
    unless ``overwrite``; other files in ``android_assets`` are left alone.
    """
    from mobile_bert_distill.android import ASSET_FILES, CLASSIFIER_ASSET_FILES

    if quantization not in QUANTIZATIONS:
        raise UserError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    write_report = kw.pop("write_report", True)
    out_path = str(out_path)
    outputs = [out_path] + ([report_path(out_path)] if write_report else [])
    if android_assets is not None:
        if task == "encoder":
            raise UserError("Android assets need the task mlm (the demo fills masks) or classifier")
        names = CLASSIFIER_ASSET_FILES if task == "classifier" else ASSET_FILES
        outputs += [os.path.join(android_assets, name) for name in names]
    common = dict(quantization=quantization, seq_len=seq_len, batch_size=batch_size,
                  calibration_corpus=calibration_corpus, num_calibration=num_calibration, num_parity=num_parity,
                  max_size_mb=max_size_mb, min_agreement=min_agreement, seed=seed, **kw)
    with locked_output(out_path, overwrite, "export output"), staged_files(outputs, overwrite, "export output") as stage:
        assets = os.path.dirname(stage[outputs[-1]]) if android_assets is not None else None
        if task == "classifier":
            report = _export_classifier(student_dir, stage[out_path], android_assets=assets, **common)
        else:
            report = _export_student_model(student_dir, stage[out_path], task=task, android_assets=assets, **common)
        if android_assets is not None:
            report["android_assets"]["folder"] = os.path.abspath(android_assets)
        if write_report:
            atomic_write_json(stage[report_path(out_path)], report)
    return report


def _export_student_model(student_dir, out_path, *, task, quantization, seq_len, batch_size, calibration_corpus,
                          num_calibration, num_parity, max_size_mb, min_agreement, android_assets, seed, **kw):
    """The mlm/encoder half of :func:`export_student`: write the model (and assets); return the report."""
    check_student_dir(student_dir)
    from mobile_bert_distill.teacher import is_teacher_checkpoint

    if task == "mlm" and is_teacher_checkpoint(student_dir):  # its MLM heads are not a BertMaskedLM
        raise UserError(f"{student_dir} is a teacher checkpoint (the teacher/ folder of a distillation), not a "
                        "student preset: export the student/ folder beside it")
    if task == "mlm" and preset_task_class(student_dir) == CLASSIFIER_CLASS:
        raise UserError(f"{student_dir} is a fine-tuned classifier (BertTextClassifier), which has no MLM head: "
                        "export it as a classifier (or as an encoder)")
    if quantization == "int8" and calibration_corpus is None:
        raise UserError("int8 needs a calibration corpus (a text file): it calibrates on real sentences")
    from mobile_bert_distill.wordpiece import WordPiece

    lines = read_corpus(calibration_corpus) if calibration_corpus is not None else None
    model, vocab_path = load_student(student_dir)
    tokenizer = WordPiece(vocab_path)
    vocab_size = int(model.backbone.vocabulary_size)
    if len(tokenizer) != vocab_size:
        raise UserError(f"vocabulary has {len(tokenizer)} tokens but the model has {vocab_size} embedding rows")
    calib = parity_feeds = labels = None
    if lines is not None:
        calib_lines, heldout = split_corpus(lines)
        calib, _ = corpus_sequences(calib_lines, tokenizer, seq_len, num_calibration, seed=seed)
        parity_feeds, labels = corpus_sequences(heldout, tokenizer, seq_len, num_parity, seed=seed + 1)
    report = export_keras_model(
        model, out_path, task=task, quantization=quantization, seq_len=seq_len,
        batch_size=batch_size, calibration_sequences=calib, parity_sequences=parity_feeds,
        parity_labels=labels, num_parity=num_parity, max_size_mb=max_size_mb,
        min_agreement=min_agreement, seed=seed, write_report=False,
        extra_report={"student_dir": os.path.abspath(str(student_dir)),
                      "calibration_corpus": os.path.abspath(calibration_corpus) if calibration_corpus else None},
        **kw,
    )
    if android_assets is not None:
        from mobile_bert_distill.android import write_android_assets

        report["android_assets"] = write_android_assets(android_assets, out_path, vocab_path, report)
    return report


# --------------------------------------------------------------------------
# fine-tuned classifiers (`mbd finetune` output)
# --------------------------------------------------------------------------
CLASSIFIER_CLASS = "BertTextClassifier"
LABELS_FILE = "labels.json"  # the class names beside a classifier preset (`mbd finetune` writes it)


def preset_task_class(preset_dir):
    """The keras-hub task class a preset was saved from (``task.json``), or ``None``."""
    path = os.path.join(str(preset_dir), "task.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("class_name")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"{path} is not a keras-hub task config: {e}") from None


def read_classifier_labels(preset_dir):
    """``(classes, labels_json)`` of a classifier preset; a :class:`UserError` unless it is one."""
    preset_dir = str(preset_dir)
    check_student_dir(preset_dir)
    task_class = preset_task_class(preset_dir)
    if task_class not in (None, CLASSIFIER_CLASS):
        raise UserError(f"{preset_dir} is a {task_class} preset, not a classifier: a classifier export needs "
                        "the folder `mbd finetune` writes (a BertTextClassifier preset with labels.json)")
    path = os.path.join(preset_dir, LABELS_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{preset_dir} has no {LABELS_FILE}: a classifier export needs the folder "
                        "`mbd finetune` writes (a BertTextClassifier preset with labels.json)")
    if task_class is None:
        raise UserError(f"{preset_dir} has no task.json: not a BertTextClassifier preset")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        classes = meta["classes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a labels file with a 'classes' list ({type(e).__name__})") from None
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) and c.strip() and "\n" not in c for c in classes)
            or len(set(classes)) != len(classes)):
        raise UserError(f"{path}: 'classes' must list at least 2 distinct, non-empty, one-line class names")
    return list(classes), meta


def load_classifier_preset(preset_dir):
    """Load a fine-tuned classifier; return ``(model, vocab_path, classes, labels_json)``."""
    preset_dir = str(preset_dir)
    classes, meta = read_classifier_labels(preset_dir)
    vocab_path = find_preset_vocab(preset_dir)
    model = _load_preset("BertTextClassifier", preset_dir, "classifier")
    if int(model.num_classes) != len(classes):
        raise UserError(f"{os.path.join(preset_dir, LABELS_FILE)} lists {len(classes)} classes but the "
                        f"classifier has {model.num_classes} outputs")
    _check_classifier_model(model)
    return model, vocab_path, classes, meta


def text_sequences(lines, tokenizer, seq_len, n=None, *, seed=0):
    """One text per sequence, ``[CLS] tokens [SEP] [PAD]..`` (truncated to ``seq_len``), as a
    classifier sees its input. ``n=None`` encodes every line in order; otherwise ``n``
    sequences are drawn from a seeded shuffle of the lines (cycling when ``n`` exceeds them).
    Returns ``(feeds, kept, truncated)``: int32 ``[N, S]`` arrays, the index of
    each row's line, and how many rows were cut to fit ``seq_len``.
    """
    cls_id, sep_id = tokenizer.special_id("[CLS]"), tokenizer.special_id("[SEP]")
    encoded = [(i, ids) for i, ids in enumerate(tokenizer.encode(line) for line in lines) if ids]
    if not encoded:
        raise UserError("the text produced no tokens")
    if n is not None:
        order = np.random.default_rng(seed).permutation(len(encoded))
        encoded = [encoded[order[k % len(order)]] for k in range(n)]
    truncated = sum(len(body) > seq_len - 2 for _, body in encoded)
    feeds = pack_rows([body[: seq_len - 2] for _, body in encoded], seq_len, cls_id, sep_id)
    return feeds, [i for i, _ in encoded], int(truncated)


def _export_classifier(classifier_dir, out_path, *, quantization, seq_len, batch_size, calibration_corpus,
                       num_calibration, num_parity, max_size_mb, min_agreement, android_assets, seed,
                       parity_csv=None, text_column=None, label_column=None, **kw):
    """The classifier half of :func:`export_student`: write the model (and assets); return the report.

    Exports the classifier preset ``mbd finetune`` writes (``BertTextClassifier`` + ``labels.json``).

    The model outputs ``probabilities`` ``[batch, num_classes]`` (float32,
    softmax), in the order of ``labels.json``'s ``classes``. ``seq_len``
    defaults to the preset preprocessor's sequence length. Calibration (int8)
    uses one corpus line per sequence (9 lines in 10), tokenized with the
    classifier's own tokenizer. Parity against the float Keras classifier uses
    the rows of ``parity_csv`` when given (all of them, with accuracy of both
    models; columns default to those ``mbd finetune`` recorded in
    ``labels.json``), else the held-out corpus lines (every 10th, at most
    ``num_parity``), else ``num_parity`` random valid ids.
    ``android_assets`` also receives ``labels.txt``.
    """
    from mobile_bert_distill.wordpiece import WordPiece

    classes, meta = read_classifier_labels(classifier_dir)
    if quantization == "int8" and calibration_corpus is None:
        raise UserError("int8 needs a calibration corpus (a text file): it calibrates on real sentences")
    lines = read_corpus(calibration_corpus) if calibration_corpus is not None else None
    csv_rows = None
    if parity_csv is not None:
        from mobile_bert_distill.finetune import encode_labels, read_labelled_csv

        text_column = text_column or meta.get("text_column") or "text"
        label_column = label_column or meta.get("label_column") or "label"
        texts, raw_labels = read_labelled_csv(parity_csv, text_column, label_column, log=None)
        csv_rows = (texts, encode_labels(raw_labels, classes, parity_csv))
    elif text_column is not None or label_column is not None:
        raise UserError("text and label columns need a parity CSV")
    model, vocab_path, classes, meta = load_classifier_preset(classifier_dir)
    tok_cfg = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    lowercase = bool(getattr(tok_cfg, "lowercase", True))
    accents = bool(getattr(tok_cfg, "strip_accents", lowercase))
    if seq_len is None:
        seq_len = int(getattr(model.preprocessor, "sequence_length", None) or 128)
    tokenizer = WordPiece(vocab_path, lowercase=lowercase, strip_accents=accents)
    vocab_size = int(model.backbone.vocabulary_size)
    if len(tokenizer) != vocab_size:
        raise UserError(f"vocabulary has {len(tokenizer)} tokens but the model has {vocab_size} embedding rows")
    calib = parity_feeds = parity_labels = None
    parity_data = {"source": "random_ids"}
    if lines is not None:
        calib_lines, heldout = split_corpus(lines)
        calib, _, _ = text_sequences(calib_lines, tokenizer, seq_len, num_calibration, seed=seed)
        if csv_rows is None:
            parity_feeds, _, cut = text_sequences(heldout[:num_parity], tokenizer, seq_len)
            parity_data = {"source": "held-out corpus lines", "path": os.path.abspath(calibration_corpus),
                           "truncated": cut}
    if csv_rows is not None:
        texts, y = csv_rows
        parity_feeds, kept, cut = text_sequences(texts, tokenizer, seq_len)
        parity_labels = y[kept]
        parity_data = {"source": "labelled csv", "path": os.path.abspath(parity_csv),
                       "text_column": text_column, "label_column": label_column, "truncated": cut}
    metrics_path = os.path.join(str(classifier_dir), "metrics.json")
    finetune_metrics = None
    if os.path.isfile(metrics_path):
        with contextlib.suppress(OSError, ValueError):
            with open(metrics_path, encoding="utf-8") as f:
                finetune_metrics = json.load(f)
    report = export_keras_model(
        model, out_path, task="classifier", quantization=quantization, seq_len=seq_len,
        batch_size=batch_size, calibration_sequences=calib, parity_sequences=parity_feeds,
        parity_labels=parity_labels, num_calibration=num_calibration, num_parity=num_parity,
        max_size_mb=max_size_mb, min_agreement=min_agreement, seed=seed, write_report=False,
        extra_report={"student_dir": os.path.abspath(str(classifier_dir)),
                      "labels": classes, "lowercase": lowercase, "strip_accents": accents,
                      "calibration_corpus": os.path.abspath(calibration_corpus) if calibration_corpus else None,
                      "parity_data": parity_data, "finetune_metrics": finetune_metrics},
        **kw,
    )
    if android_assets is not None:
        from mobile_bert_distill.android import write_android_assets

        report["android_assets"] = write_android_assets(android_assets, out_path, vocab_path, report,
                                                        labels=classes)
    return report
