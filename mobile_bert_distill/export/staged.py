"""The staged early-exit export: one ``.tflite`` with a signature per stage, for FastBERT-style early exit.

A classifier folder that ``mbd finetune --early-exit`` wrote (a classifier preset
plus its exits, :mod:`mobile_bert_distill.downstream.early_exit`) exports as one
LiteRT model with ``L + 1`` signatures:

* ``embed``: ``input_ids``, ``segment_ids`` (int32 ``[B, S]``) → ``hidden`` (float32 ``[B, S, H]``);
* ``stage_k`` (``k = 1 .. L``): ``hidden``, ``padding_mask`` → ``hidden`` (layer ``k``'s output) and
  ``probabilities`` (its exit, float32 ``[B, K]``); ``stage_L`` outputs the main
  classifier's ``probabilities`` only.

Each stage is the same quantization-friendly graph as the full classifier export
(:class:`~mobile_bert_distill.export.graph.ExportBert`, called stage by stage), converted
on its own with the same recipe and flatbuffer passes, int8-calibrated on its own
inputs (the float ``hidden`` the float stages before it compute on the calibration
text); then the stages are merged into one flatbuffer (each subgraph keeps its
weights). ``hidden`` is the export graph's stream between layers (a normalised LayerNorm
output, without its gamma and beta: each stage applies them), float32, to be passed on
as it is. The runtime loop is :class:`~mobile_bert_distill.litert.early_exit.StagedRunner`.

Layout, measured: the merged file runs each stage as fast as a file holding that stage
alone (XNNPACK delegates every subgraph), so per-stage files would gain nothing.

Example::

    from mobile_bert_distill.export import export_student
    export_student("clf_ee/", "clf_ee.tflite", task="classifier", quantization="int8",
                   calibration_corpus="corpus.txt", seq_len=None)
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert.early_exit import EMBED_SIGNATURE, stage_signature


class StagedModule:
    """A ``tf.Module`` with the ``embed`` and ``stage_k`` functions of a classifier and its exits.

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
        self.exits = []
        for e in range(heads.num_exits):
            w1 = heads.w1[e]
            names = ("cls_k", "mean_k", "b1", "out_k", "b2")
            values = (w1[:H], w1[H:], heads.b1[e], heads.w2[e], heads.b2[e])
            self.exits.append([tf.Variable(v, trainable=False, name=f"exit{e + 1}_{n}") for n, v in zip(names, values)])
        module.exits = self.exits
        # `hidden` leaves a stage divided by the LayerNorm gamma it carries and the next stage multiplies
        # it back: there, as in the full-depth graph, the converter folds that gamma into the projections
        # that read it, so both models get the same int8 weights and activation ranges
        self.gammas = [None if g is None or np.min(np.abs(g)) < 1e-6 else np.asarray(g, np.float32)
                       for g in built.stream_gammas]
        ids = [tf.TensorSpec([B, S], tf.int32, name=n) for n in ("input_ids", "segment_ids")]
        stage = [tf.TensorSpec([B, S, H], tf.float32, name="hidden"),
                 tf.TensorSpec([B, S], tf.int32, name="padding_mask")]
        self.signatures = {EMBED_SIGNATURE: tf.function(self._embed, input_signature=ids, autograph=False)}
        for k in range(1, self.num_layers + 1):
            self.signatures[stage_signature(k)] = tf.function(
                lambda hidden, padding_mask, k=k: self._stage(k, hidden, padding_mask),
                input_signature=stage, autograph=False)
        self.module = module

    def _leave(self, x, layer):
        """The stream entering layer ``layer`` (from 0) as a stage passes it on: without its gamma."""
        gamma = self.gammas[layer]
        return x if gamma is None else x * (1.0 / gamma)

    def _embed(self, input_ids, segment_ids):
        return {"hidden": self._leave(self.built.embed(input_ids, segment_ids), 0)}

    def _stage(self, k, hidden, padding_mask):
        import tensorflow as tf

        from mobile_bert_distill.downstream.early_exit import exit_inputs

        built = self.built
        if self.gammas[k - 1] is not None:
            hidden = hidden * self.gammas[k - 1]
        x = built.encoder_layer(k - 1, hidden, built.mask_bias(padding_mask))
        full = x + built.stream_betas[k - 1]
        if k == self.num_layers:
            return {"probabilities": built.classifier_probabilities(full)}
        cls_k, mean_k, b1, out_k, b2 = self.exits[k - 1]
        cls, mean = exit_inputs(built, full, padding_mask)
        h = tf.math.tanh(tf.matmul(cls, cls_k) + tf.matmul(mean, mean_k) + b1)
        return {"hidden": self._leave(x, k), "probabilities": tf.nn.softmax(tf.matmul(h, out_k) + b2, axis=-1)}

    def save(self, directory):
        import tensorflow as tf

        tf.saved_model.save(self.module, directory, signatures=self.signatures)

    def stage_inputs(self, feeds):
        """The float inputs of every signature on ``feeds`` (int32 ``[N, S]``, ``N`` a multiple of the
        batch), one list of batches per signature, and the float outputs of every stage."""
        B = self.built.batch_size
        batches = [{k: np.asarray(feeds[k][i : i + B], np.int32) for k in feeds}
                   for i in range(0, len(feeds["input_ids"]), B)]
        inputs = {EMBED_SIGNATURE: [{"input_ids": b["input_ids"], "segment_ids": b["segment_ids"]} for b in batches]}
        hidden = [self.signatures[EMBED_SIGNATURE](**x)["hidden"].numpy() for x in inputs[EMBED_SIGNATURE]]
        outputs = {}
        for k in range(1, self.num_layers + 1):
            key = stage_signature(k)
            inputs[key] = [{"hidden": h, "padding_mask": b["padding_mask"]} for h, b in zip(hidden, batches)]
            outs = [{n: v.numpy() for n, v in self.signatures[key](**x).items()} for x in inputs[key]]
            outputs[key] = outs
            hidden = [o["hidden"] for o in outs] if k < self.num_layers else None
        return inputs, outputs


def convert_signature(saved_dir, key, *, quantization, calibration, chosen, score_range=None, per_channel=True):
    """One signature of the SavedModel at ``saved_dir`` to TFLite bytes, with the recipe ``chosen``
    (:func:`~mobile_bert_distill.export.recipes.recipe_table`'s entry; ``calibration``: its input batches)."""
    import tensorflow as tf

    from mobile_bert_distill.export import flatbuffer as q
    from mobile_bert_distill.export.conversion import run_converter

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=[key])

    def representative():
        yield from calibration

    flat = run_converter(converter, quantization, representative, float_ops=tuple(chosen["float_ops"]),
                         per_channel=per_channel)
    if quantization != "int8":
        if quantization == "float16":
            flat, _ = q.split_float16_dequantize(flat)
        return q.compact(flat)[0]
    if chosen["xnnpack_fixups"]:
        flat, _ = q.fix_int8_for_xnnpack(flat)
    if score_range is not None:
        flat, _ = q.set_attention_score_ranges(flat, [score_range])
    if chosen["xnnpack_fixups"]:
        flat, _ = q.strip_tensor_names(flat)
    return q.compact(flat)[0]


def merge_signatures(pieces):
    """Merge single-signature TFLite models ``[bytes, ...]`` into one model holding every subgraph
    and signature (in the given order: the first piece's subgraph is the primary one)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from mobile_bert_distill.export.flatbuffer import compact, pack_model

    base = fu.read_model_from_bytearray(bytearray(pieces[0]))

    def code_key(c):
        return (c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version)

    codes = {code_key(c): i for i, c in enumerate(base.operatorCodes)}
    for piece in pieces[1:]:
        m = fu.read_model_from_bytearray(bytearray(piece))
        first = len(base.buffers)
        base.buffers.extend(m.buffers[1:])  # buffer 0 is every model's empty sentinel
        opcode = []
        for c in m.operatorCodes:
            if code_key(c) not in codes:
                codes[code_key(c)] = len(base.operatorCodes)
                base.operatorCodes.append(c)
            opcode.append(codes[code_key(c)])
        for graph in m.subgraphs:
            for t in graph.tensors:
                t.buffer = first + int(t.buffer) - 1 if int(t.buffer) else 0
            for op in graph.operators:
                op.opcodeIndex = opcode[int(op.opcodeIndex)]
        for sig in m.signatureDefs or []:
            sig.subgraphIndex = int(sig.subgraphIndex) + len(base.subgraphs)
            base.signatureDefs.append(sig)
        base.subgraphs.extend(m.subgraphs)
    return compact(pack_model(base))[0]  # drops the other pieces' metadata buffers


def export_staged(model, out_path, *, heads, task="classifier", quantization="int8", seq_len=128, batch_size=1,
                  calibration_sequences=None, parity_sequences=None, parity_labels=None, num_calibration=128,
                  num_parity=64, recipe=None, max_size_mb=None, min_agreement=None, seed=0, extra_report=None):
    """Export a text classifier ``model`` with its exits ``heads`` as a staged ``.tflite``; returns the report
    (the caller writes it).

    The other arguments are those of :func:`~mobile_bert_distill.export.conversion.export_keras_model`
    for task ``classifier`` (the graph is always the rebuilt one; the stock-graph recipe
    ``naive`` cannot be staged). Calibration feeds run through the float stages, so each
    stage calibrates on its real inputs. Parity runs every stage (speed 0: the full model)
    against the float Keras classifier (``min_agreement`` gates its label agreement), and
    each exit against its float self; the file is written atomically, loaded and run.
    """
    from mobile_bert_distill.atomic import atomic_file
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
    inputs, _ = staged.stage_inputs(calib)
    keys = [EMBED_SIGNATURE] + [stage_signature(k) for k in range(1, staged.num_layers + 1)]
    pieces = []
    with tempfile.TemporaryDirectory(prefix="mbd-staged-") as tmp:
        staged.save(os.path.join(tmp, "saved_model"))
        for i, key in enumerate(keys):
            score = built.score_ranges[i - 1] if (built.score_ranges is not None and i > 0) else None
            pieces.append(convert_signature(os.path.join(tmp, "saved_model"), key, quantization=quantization,
                                            calibration=inputs[key], chosen=chosen, score_range=score))
    flat = merge_signatures(pieces)
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
    ops = _inspect_pieces(pieces)
    report = {
        "model_file": os.path.basename(str(out_path)), "task": "classifier", "quantization": quantization,
        "recipe": recipe, "graph": "friendly", "graph_options": options.to_dict(),
        "xnnpack_fixups": bool(chosen["xnnpack_fixups"]) if quantization == "int8" else None,
        "float_ops": list(chosen["float_ops"]), "seq_len": int(seq_len), "batch_size": int(batch_size),
        "size_bytes": size, "size_mb": size / 1e6, "params": count_params(model) + heads.num_params(),
        "vocabulary_size": vocab_size,
        "calibration": ({"source": "random_ids" if calibration_sequences is None else "given",
                         "sequences": n, "per_stage": "each stage on the float outputs of the stages before it"}
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
    """Label agreement of each exit of the converted model with the float stages on ``feeds``."""
    B = staged.built.batch_size
    n = len(feeds["input_ids"])
    pad = (-n) % B
    padded = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in feeds.items()}
    _, outputs = staged.stage_inputs(padded)
    agree = []
    for k in range(1, staged.num_layers + 1):
        ref = np.concatenate([o["probabilities"] for o in outputs[stage_signature(k)]])[:n]
        agree.append(float((ref.argmax(-1) == exits[:, k - 1].argmax(-1)).mean()))
    return agree


def _inspect_pieces(pieces):
    """The report's op histogram and XNNPACK view, summed over the stages (each inspected alone)."""
    from mobile_bert_distill.export.validation import inspect_tflite

    total = {"graph_ops": {"ops": {}, "num_nodes": 0, "quantize_ops": 0, "dequantize_ops": 0, "float_ops": {}},
             "xnnpack": {"delegate_partitions": 0, "nodes_in_delegate": 0, "ops_outside_delegate": {},
                         "partitions_per_signature": []}}
    for piece in pieces:
        info = inspect_tflite(piece)
        g, x = info["graph_ops"], info["xnnpack"]
        for key in ("num_nodes", "quantize_ops", "dequantize_ops"):
            total["graph_ops"][key] += g[key]
        for key in ("delegate_partitions", "nodes_in_delegate"):
            total["xnnpack"][key] += x[key]
        total["xnnpack"]["partitions_per_signature"].append(x["delegate_partitions"])
        for into, hist in ((total["graph_ops"]["ops"], g["ops"]), (total["graph_ops"]["float_ops"], g["float_ops"]),
                           (total["xnnpack"]["ops_outside_delegate"], x["ops_outside_delegate"])):
            for op, count in hist.items():
                into[op] = into.get(op, 0) + count
    return total
