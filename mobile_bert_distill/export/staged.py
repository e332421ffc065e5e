"""The staged early-exit export: one ``.tflite`` with a signature per stage, for FastBERT-style early exit.

A classifier folder that ``mbd finetune --early-exit`` wrote (a classifier preset
plus its exits, :mod:`mobile_bert_distill.downstream.early_exit`) exports as one
LiteRT model with ``L + 1`` signatures:

* ``embed``: ``input_ids``, ``segment_ids`` (int32 ``[B, S]``) → ``hidden`` (``[B, S, H]``, see below);
* ``stage_k`` (``k = 1 .. L``): ``hidden``, ``padding_mask`` → ``hidden`` (layer ``k``'s output) and
  ``probabilities`` (its exit, float32 ``[B, K]``); ``stage_L`` outputs the main
  classifier's ``probabilities`` only.

The classifier and every exit are converted once, as one graph (the quantization-friendly
graph of the full classifier export, :class:`~mobile_bert_distill.export.graph.ExportBert`,
with the exits reading the stream after each layer and the stream itself as outputs), with the
same recipe, calibration and flatbuffer passes as the full-depth export; then
:func:`split_stages` cuts that one converted graph into the stages, which share its weights.
The exits only read the stream, so every layer gets the int8 weights and activation ranges of
the full-depth export, and the staged model at speed 0 computes exactly what the full-depth
one does, bit for bit (converted stage by stage, calibrated apart, the two disagreed on up to
1 % of the labels). ``hidden`` is the export graph's stream between layers (a normalised
LayerNorm output, without its gamma and beta: each stage applies them), to be passed on as it
is: float32, or int8 with the recipes that quantize the LayerNorms (``xnnpack``, ``strict``).
The runtime loop is :class:`~mobile_bert_distill.litert.early_exit.StagedRunner`.

Layout, measured: one file runs each stage as fast as a file holding that stage alone
(XNNPACK delegates every subgraph), so per-stage files would gain nothing.

Example::

    from mobile_bert_distill.export import export_student
    export_student("clf_ee/", "clf_ee.tflite", task="classifier", quantization="int8",
                   calibration_corpus="corpus.txt", seq_len=None)
"""

from __future__ import annotations

import copy
import os
import tempfile
import time

import numpy as np

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert.early_exit import EMBED_SIGNATURE, stage_signature


def hidden_output(k):
    """The combined graph's output name of the stream after layer ``k`` (0: the embeddings)."""
    return f"hidden_{k}"


def exit_output(k):
    """The combined graph's output name of exit ``k``'s probabilities (``k = 1 .. L - 1``)."""
    return f"exit_{k}"


class StagedModule:
    """A ``tf.Module`` whose one signature runs a classifier and its exits: inputs ``input_ids``,
    ``segment_ids``, ``padding_mask``; outputs the main ``probabilities``, every exit's
    (:func:`exit_output`) and the stream after every layer but the last (:func:`hidden_output`).

    Args:
        built: the classifier's :class:`~mobile_bert_distill.export.graph.ExportBert` (task classifier).
        heads: its :class:`~mobile_bert_distill.downstream.early_exit.ExitHeads`.
    """

    def __init__(self, built, heads):
        import tensorflow as tf

        self.built, self.num_layers = built, len(built.stream_betas)
        B, S, H = built.batch_size, built.seq_len, built.config["hidden_dim"]
        module = tf.Module()
        module.encoder = built.module
        # the stream passed between stages is the one the full-depth int8 model has between layers:
        # normalised, without its LayerNorm's gamma and beta; the next layer multiplies it by that
        # gamma, which the converter folds into the projections reading it, as in the full-depth graph
        self.gammas = [None if g is None or np.min(np.abs(g)) < 1e-6 else np.asarray(g, np.float32)
                       for g in built.stream_gammas]
        # exit k reads that stream too: [CLS] and the masked mean of gamma * x + beta are gamma and
        # beta applied to those of x, so gamma goes into the rows of its first kernels and beta into
        # its bias. No [S, H] ops of its own, and measured: an exit computing gamma * x + beta itself
        # shares the residual's MUL with the next layer, whose attention output then got another range
        # than in the full-depth model
        self.exits = []
        for e in range(heads.num_exits):
            gamma = self.gammas[e + 1]
            beta = np.asarray(built.stream_betas[e], np.float64)
            w1 = np.asarray(heads.w1[e], np.float64)
            cls_k, mean_k = w1[:H], w1[H:]
            b1 = np.asarray(heads.b1[e], np.float64) + beta @ cls_k + beta @ mean_k
            if gamma is not None:
                cls_k, mean_k = cls_k * gamma[:, None], mean_k * gamma[:, None]
            names = ("cls_k", "mean_k", "b1", "out_k", "b2")
            values = (cls_k, mean_k, b1, heads.w2[e], heads.b2[e])
            self.exits.append([tf.Variable(np.asarray(v, np.float32), trainable=False, name=f"exit{e + 1}_{n}")
                               for n, v in zip(names, values)])
        module.exits = self.exits
        spec = [tf.TensorSpec([B, S], tf.int32, name=n) for n in ("input_ids", "segment_ids", "padding_mask")]
        module.serve = tf.function(self._forward, input_signature=spec, autograph=False)
        self.module = module

    def _forward(self, input_ids, segment_ids, padding_mask):
        import tensorflow as tf

        from mobile_bert_distill.downstream.early_exit import exit_inputs

        built = self.built
        x = built.embed(input_ids, segment_ids, with_gamma=self.gammas[0] is None)
        bias = built.mask_bias(padding_mask)
        out = {hidden_output(0): x}
        for k in range(1, self.num_layers + 1):
            if self.gammas[k - 1] is not None:
                x = x * self.gammas[k - 1]
            gamma = self.gammas[k] if k < self.num_layers else None  # of the stream this layer passes on
            x = built.encoder_layer(k - 1, x, bias, with_gamma=gamma is None)
            if k == self.num_layers:
                out["probabilities"] = built.classifier_probabilities(x + built.stream_betas[k - 1])
                break
            cls_k, mean_k, b1, out_k, b2 = self.exits[k - 1]
            cls, mean = exit_inputs(built, x, padding_mask)
            h = tf.math.tanh(tf.matmul(cls, cls_k) + tf.matmul(mean, mean_k) + b1)
            out[exit_output(k)] = tf.nn.softmax(tf.matmul(h, out_k) + b2, axis=-1)
            out[hidden_output(k)] = x
        return out

    def save(self, directory):
        import tensorflow as tf

        tf.saved_model.save(self.module, directory, signatures={"serving_default": self.module.serve})

    def exit_probabilities(self, feeds):
        """The float model's probabilities of every exit ``[N, L, K]`` on ``feeds`` (int32 ``[N, S]``,
        ``N`` a multiple of the batch; the last exit is the main classifier)."""
        B = self.built.batch_size
        keys = [exit_output(k) for k in range(1, self.num_layers)] + ["probabilities"]
        parts = []
        for i in range(0, len(feeds["input_ids"]), B):
            out = self.module.serve(**{n: np.asarray(v[i : i + B], np.int32) for n, v in feeds.items()})
            parts.append(np.stack([out[key].numpy() for key in keys], axis=1))
        return np.concatenate(parts)


def convert_graph(saved_dir, *, quantization, calibration, chosen, score_ranges=None, per_channel=True):
    """The SavedModel at ``saved_dir`` to TFLite bytes, with the recipe ``chosen``
    (:func:`~mobile_bert_distill.export.recipes.recipe_table`'s entry; ``calibration``: its input
    batches) and the flatbuffer passes of the full-depth export."""
    import tensorflow as tf

    from mobile_bert_distill.export import flatbuffer as q
    from mobile_bert_distill.export.conversion import run_converter

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir)

    def representative():
        yield from calibration

    flat = run_converter(converter, quantization, representative, float_ops=tuple(chosen["float_ops"]),
                         per_channel=per_channel)
    if quantization != "int8":
        if quantization == "float16":
            flat, _ = q.split_float16_dequantize(flat)
        return flat
    if chosen["xnnpack_fixups"]:
        flat, _ = q.fix_int8_for_xnnpack(flat)
    if score_ranges is not None:
        flat, _ = q.set_attention_score_ranges(flat, score_ranges)
    return flat


def split_stages(model_bytes, num_layers):
    """Cut the one-signature model of a :class:`StagedModule` into the ``embed`` and ``stage_k``
    signatures, one subgraph each, sharing the weights; returns the bytes.

    Each stage holds the ops that compute its outputs from its inputs: the ``embed`` ops from the
    ids, layer ``k`` and its exit (and the few ops that turn ``padding_mask`` into the attention
    bias, which every stage computes again) from ``hidden`` and ``padding_mask``. ``hidden`` is the
    stream as the graph passes it from layer to layer: float32, or int8 with the recipes that
    quantize the LayerNorms. A stage that would need any other tensor of the graph raises
    ``ValueError``.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from mobile_bert_distill.export.flatbuffer import pack_model

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    graph, sig = model.subgraphs[0], model.signatureDefs[0]
    index = {t.name.decode() if isinstance(t.name, bytes) else t.name: int(t.tensorIndex)
             for t in list(sig.inputs) + list(sig.outputs)}
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    order = {id(op): i for i, op in enumerate(graph.operators)}
    op_names = [fu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    for k in range(num_layers):
        # where the stream is int8 (the recipes that quantize LayerNorms), the graph's float output is a
        # DEQUANTIZE of it and the next layer reads the int8 tensor: that one is `hidden` then
        op = producer.get(index[hidden_output(k)])
        if op is not None and op_names[op.opcodeIndex] == "DEQUANTIZE":
            index[hidden_output(k)] = int(op.inputs[0])

    def cut(key, inputs, outputs):
        sources = {index[n] for n in inputs.values()}
        ops, seen, stack = {}, set(), [index[n] for n in outputs.values()]
        while stack:
            t = stack.pop()
            if t in seen or t in sources:
                continue
            seen.add(t)
            op = producer.get(t)
            if op is None:
                if model.buffers[graph.tensors[t].buffer].data is None:
                    raise ValueError(f"stage {key} needs graph input or tensor {t}, which its inputs "
                                     f"{sorted(inputs)} do not give")
                continue
            ops[id(op)] = op
            stack.extend(int(i) for i in op.inputs if int(i) >= 0)
        ops = sorted(ops.values(), key=lambda op: order[id(op)])
        used = sorted(sources | {int(i) for op in ops for i in list(op.inputs) + list(op.outputs) if int(i) >= 0}
                      | {index[n] for n in outputs.values()})
        new = {old: i for i, old in enumerate(used)}
        sub = schema.SubGraphT()
        sub.tensors = [copy.deepcopy(graph.tensors[t]) for t in used]
        sub.operators = []
        for op in ops:
            op = copy.deepcopy(op)
            op.inputs = np.array([new[int(i)] if int(i) >= 0 else -1 for i in op.inputs], np.int32)
            op.outputs = np.array([new[int(i)] for i in op.outputs], np.int32)
            sub.operators.append(op)
        sub.name = key
        signature = schema.SignatureDefT()
        signature.signatureKey = key
        signature.subgraphIndex = len(subgraphs)
        for names, ends in ((inputs, "inputs"), (outputs, "outputs")):
            maps = []
            for name, source in names.items():
                t = schema.TensorMapT()
                t.name, t.tensorIndex = name, new[index[source]]
                sub.tensors[t.tensorIndex].name = name
                maps.append(t)
            setattr(signature, ends, maps)
            setattr(sub, ends, np.array([m.tensorIndex for m in maps], np.int32))
        subgraphs.append(sub)
        signatures.append(signature)

    subgraphs, signatures = [], []
    cut(EMBED_SIGNATURE, {"input_ids": "input_ids", "segment_ids": "segment_ids"}, {"hidden": hidden_output(0)})
    for k in range(1, num_layers + 1):
        inputs = {"hidden": hidden_output(k - 1), "padding_mask": "padding_mask"}
        outputs = ({"hidden": hidden_output(k), "probabilities": exit_output(k)} if k < num_layers
                   else {"probabilities": "probabilities"})
        cut(stage_signature(k), inputs, outputs)
    model.subgraphs, model.signatureDefs = subgraphs, signatures
    return pack_model(model)


def export_staged(model, out_path, *, heads, task="classifier", quantization="int8", seq_len=128, batch_size=1,
                  calibration_sequences=None, parity_sequences=None, parity_labels=None, num_calibration=128,
                  num_parity=64, recipe=None, max_size_mb=None, min_agreement=None, seed=0, extra_report=None):
    """Export a text classifier ``model`` with its exits ``heads`` as a staged ``.tflite``; returns the report
    (the caller writes it).

    The other arguments are those of :func:`~mobile_bert_distill.export.conversion.export_keras_model`
    for task ``classifier`` (the graph is always the rebuilt one; the stock-graph recipe
    ``naive`` cannot be staged). The classifier and its exits calibrate as one graph, which
    :func:`split_stages` then cuts. Parity runs every stage (speed 0: the full model)
    against the float Keras classifier (``min_agreement`` gates its label agreement), and
    each exit against its float self; the file is written atomically, loaded and run.
    """
    from mobile_bert_distill.atomic import atomic_file
    from mobile_bert_distill.export import flatbuffer as q
    from mobile_bert_distill.export.conversion import quiet_tf
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions
    from mobile_bert_distill.export.recipes import INT8_RECIPES, QUANTIZATIONS, recipe_table
    from mobile_bert_distill.export.sequences import as_feeds, check_feeds, random_sequences
    from mobile_bert_distill.export.validation import check_agreement, count_params, keras_outputs, parity
    from mobile_bert_distill.litert.early_exit import StagedRunner
    from mobile_bert_distill.litert.tools import load_interpreter

    if task != "classifier":
        raise UserError(f"a staged early-exit export is a classifier, not task {task!r}")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    chosen = {"graph_options": GraphOptions(), "float_ops": (), "xnnpack_fixups": False}
    if quantization == "int8":
        recipe = recipe or "matmul"
        if recipe not in INT8_RECIPES:
            raise UserError(f"recipe must be one of {', '.join(INT8_RECIPES)}, not {recipe!r}")
        chosen = recipe_table()[recipe]
        if chosen["graph"] != "friendly":
            raise UserError(f"the int8 recipe {recipe!r} converts the stock Keras graph, which has no stages; "
                            "a staged early-exit export needs a rebuilt-graph recipe")
    else:
        recipe = None
    heads.check_matches(model, "the early exits")
    backbone = model.backbone
    if seq_len < 2 or seq_len > backbone.max_sequence_length:
        raise UserError(f"the sequence length must be in [2, {backbone.max_sequence_length}], got {seq_len}")
    vocab_size = int(backbone.vocabulary_size)
    calib = (random_sequences(num_calibration, seq_len, vocab_size, seed=seed, mask_rate=0.0)
             if calibration_sequences is None else as_feeds(calibration_sequences))
    checks = (random_sequences(num_parity, seq_len, vocab_size, seed=seed + 1, mask_rate=0.0)
              if parity_sequences is None else as_feeds(parity_sequences))
    if parity_sequences is None:
        parity_labels = None
    for feeds in (calib, checks):
        check_feeds(feeds, seq_len, vocab_size)
    n = len(calib["input_ids"]) - len(calib["input_ids"]) % batch_size
    calib = {k: v[:n] for k, v in calib.items()}
    if n == 0:
        raise UserError(f"need at least {batch_size} calibration sequences (one batch)")

    quiet_tf()
    t0 = time.perf_counter()
    options = chosen["graph_options"]
    built = ExportBert.from_keras(model, task="classifier", seq_len=seq_len, batch_size=batch_size, options=options,
                                  calibration_feeds=calib if options.needs_calibration else None)
    staged = StagedModule(built, heads)
    keys = [EMBED_SIGNATURE] + [stage_signature(k) for k in range(1, staged.num_layers + 1)]
    B = batch_size
    calibration = [{k: v[i : i + B] for k, v in calib.items()} for i in range(0, n, B)]
    with tempfile.TemporaryDirectory(prefix="mbd-staged-") as tmp:
        staged.save(os.path.join(tmp, "saved_model"))
        whole = convert_graph(os.path.join(tmp, "saved_model"), quantization=quantization, calibration=calibration,
                              chosen=chosen, score_ranges=built.score_ranges)
    flat = split_stages(whole, staged.num_layers)
    if quantization == "int8" and chosen["xnnpack_fixups"]:
        flat, _ = q.strip_tensor_names(flat)
    flat, _ = q.compact(flat)
    convert_s = time.perf_counter() - t0
    size = len(flat)
    if max_size_mb is not None and size > max_size_mb * 1e6:
        raise UserError(f"the {quantization} model would be {size / 1e6:.2f} MB, over the limit of {max_size_mb} MB; "
                        "nothing written", option="max_size_mb", purpose="with a larger limit to accept it")

    interp, runtime = load_interpreter(model_content=flat, num_threads=1)
    runner = StagedRunner(interp)
    exits = runner.exit_probabilities(checks)                                   # [N, L, K]
    par = parity("classifier", keras_outputs(model, "classifier", checks), {"probabilities": exits[:, -1]},
                 checks, parity_labels)
    par["source"] = "given" if parity_sequences is not None else "random_ids"
    par["exit_label_agreement"] = _exit_agreement(staged, checks, exits)
    check_agreement(par, min_agreement, quantization)
    ops = _inspect(whole)
    report = {
        "model_file": os.path.basename(str(out_path)), "task": "classifier", "quantization": quantization,
        "recipe": recipe, "graph": "friendly", "graph_options": options.to_dict(),
        "xnnpack_fixups": bool(chosen["xnnpack_fixups"]) if quantization == "int8" else None,
        "float_ops": list(chosen["float_ops"]), "seq_len": int(seq_len), "batch_size": int(batch_size),
        "size_bytes": size, "size_mb": size / 1e6, "params": count_params(model) + heads.num_params(),
        "vocabulary_size": vocab_size,
        "calibration": ({"source": "random_ids" if calibration_sequences is None else "given",
                         "sequences": n, "graph": "the classifier with its exits, as one graph"}
                        if quantization == "int8" else None),
        "num_classes": int(model.num_classes), "convert_seconds": round(convert_s, 2), "runtime": runtime,
        "early_exit": {"num_layers": staged.num_layers, "signatures": keys,
                       "exit_params": heads.num_params(), "exits": heads.info.get("training"),
                       "rule": "stop at the first stage whose exit's H(p)/log K < speed"},
        **ops, "parity": par,
    }
    if extra_report:
        report.update(extra_report)
    with atomic_file(str(out_path)) as tmp:
        with open(tmp, "wb") as f:
            f.write(flat)
        check, _ = load_interpreter(tmp, num_threads=1)  # the written file must load and run
        StagedRunner(check).run({k: v[:1] for k, v in checks.items()})
    return report


def _exit_agreement(staged, feeds, exits):
    """Label agreement of each exit of the converted model with the float model on ``feeds``."""
    B = staged.built.batch_size
    n = len(feeds["input_ids"])
    pad = (-n) % B
    padded = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in feeds.items()}
    ref = staged.exit_probabilities(padded)[:n]
    return [float(a) for a in (ref.argmax(-1) == exits.argmax(-1)).mean(0)]


def _inspect(whole):
    """The report's op histogram and XNNPACK view of the classifier with its exits as one graph
    (the stages hold these ops, and each computes the attention bias of ``padding_mask`` again)."""
    from mobile_bert_distill.export.validation import inspect_tflite

    info = inspect_tflite(whole)
    return {"graph_ops": info["graph_ops"], "xnnpack": info["xnnpack"]}
