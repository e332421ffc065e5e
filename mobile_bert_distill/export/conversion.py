"""Conversion: a Keras BERT or ALBERT-style model to TFLite bytes, and the checked, reported ``.tflite`` file.

:func:`convert` builds a SavedModel (the quantization-friendly graph of
:mod:`~mobile_bert_distill.export.graph`, or the stock Keras graph) and runs
the TFLite converter plus the flatbuffer passes of
:mod:`~mobile_bert_distill.export.flatbuffer`. :func:`export_keras_model`
resolves a recipe, converts, checks size and parity, writes the file
atomically and returns its report (written to :func:`report_path`).
TensorFlow and Keras are imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

from mobile_bert_distill.atomic import atomic_file, atomic_write_json
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.graph import TASKS
from mobile_bert_distill.export.validation import check_agreement, count_params, inspect_tflite, keras_outputs, parity
from mobile_bert_distill.export.mixed import check_mixed
from mobile_bert_distill.export.recipes import INPUT_NAMES, INT8_RECIPES, MIXED, MLM_QUANTIZATIONS, QUANTIZATIONS, recipe_table
from mobile_bert_distill.export.sequences import as_feeds, check_feeds, model_special_ids, random_sequences


def quiet_tf():
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

    from mobile_bert_distill.export.graph import split_masked_lm

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
        from mobile_bert_distill.export.graph import classifier_activation

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


def friendly_saved_model(model, task, seq_len, batch_size, directory, options, calibration_feeds=None):
    import tensorflow as tf

    from mobile_bert_distill.export.graph import ExportBert

    needs = options is not None and options.needs_calibration
    built = ExportBert.from_keras(model, task=task, seq_len=seq_len, batch_size=batch_size, options=options,
                                  calibration_feeds=calibration_feeds if needs else None)
    tf.saved_model.save(built.module, directory, signatures={"serving_default": built.module.serve})
    return built


def run_converter(converter, quantization, representative=None, *, float_ops=(), float_nodes=(),
                  per_channel=True):
    """Set a ``TFLiteConverter`` up for ``quantization`` and convert; the settings of each mode in
    one place. ``int8`` calibrates on ``representative`` (a generator function of input dicts);
    ``float_ops`` (op type names) and ``float_nodes`` (tensor names) stay float in it (selective
    quantization through TFLite's quantization debugger), otherwise every op is int8 where TFLite
    has an int8 kernel. Returns the flatbuffer bytes, before the kit's passes."""
    import tensorflow as tf

    if quantization in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization != "int8":
        return bytes(converter.convert())
    converter.representative_dataset = representative
    if not per_channel:
        converter._experimental_disable_per_channel = True
    if float_ops or float_nodes:
        debug_options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(float_ops) or None, denylisted_nodes=list(float_nodes) or None)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=debug_options)
        return bytes(debugger.get_nondebug_quantized_model())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def convert(model, *, task="mlm", quantization="float32", seq_len=128, batch_size=1,
            calibration_feeds=None, graph="friendly", graph_options=None, float_ops=(),
            float_nodes=(), xnnpack_fixups=True, share_embedding=True, float_logits=False,
            per_channel=True):
    """Convert ``model`` to TFLite flatbuffer bytes (no file is written).

    ``calibration_feeds`` (dict of ``[N, S]`` int32 arrays) is required for
    ``int8``, and for graph options that need calibration (smoothing, GPTQ;
    see :class:`~mobile_bert_distill.export.graph.GraphOptions`). ``float_ops`` (op type names, e.g. ``("SOFTMAX",)``) and
    ``float_nodes`` (tensor names) stay float in an int8 model (selective
    quantization through TFLite's quantization debugger). ``xnnpack_fixups``
    applies :func:`~mobile_bert_distill.export.flatbuffer.fix_int8_for_xnnpack`
    to int8 models, ``share_embedding``
    :func:`~mobile_bert_distill.export.flatbuffer.share_tied_embedding`,
    ``float_logits``
    :func:`~mobile_bert_distill.export.flatbuffer.float_output_projection`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if graph not in ("friendly", "keras"):
        raise ValueError(f"graph must be 'friendly' or 'keras', not {graph!r}")
    tf = quiet_tf()
    with tempfile.TemporaryDirectory(prefix="mbd-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        built = None
        if graph == "keras":
            _keras_saved_model(model, task, seq_len, batch_size, saved)
        else:
            built = friendly_saved_model(model, task, seq_len, batch_size, saved, graph_options,
                                          calibration_feeds)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        representative = None
        if quantization == "int8":
            if calibration_feeds is None:
                raise ValueError("int8 needs calibration_feeds")
            feeds = calibration_feeds
            n = len(feeds["input_ids"])

            def representative():
                for start in range(0, n - batch_size + 1, batch_size):
                    yield {k: feeds[k][start : start + batch_size] for k in INPUT_NAMES}

        flat = run_converter(converter, quantization, representative, float_ops=float_ops,
                             float_nodes=float_nodes, per_channel=per_channel)
        if quantization == "int8":
            from mobile_bert_distill.export import flatbuffer as q

            if xnnpack_fixups:
                flat, _ = q.fix_int8_for_xnnpack(flat)
            if built is not None and built.score_ranges is not None:
                flat, _ = q.set_attention_score_ranges(flat, built.score_ranges)
            if share_embedding and task == "mlm":
                flat, _ = q.share_tied_embedding(flat)
            if float_logits and task == "mlm":
                flat, _ = q.float_output_projection(flat)
            if xnnpack_fixups:
                flat, _ = q.strip_tensor_names(flat)
        if graph == "friendly":  # the stock-graph baseline stays as the converter wrote it
            from mobile_bert_distill.export import flatbuffer as q

            if quantization == "float16":
                flat, _ = q.split_float16_dequantize(flat)
            flat, _ = q.compact(flat)
        return flat


def export_keras_model(model, out_path, *, task="mlm", quantization="float32", seq_len=128,
                       batch_size=1, calibration_sequences=None, parity_sequences=None,
                       parity_labels=None, num_calibration=128, num_parity=64, recipe=None,
                       graph=None, graph_options=None, float_ops=None, float_nodes=(),
                       xnnpack_fixups=None, share_embedding=None, float_logits=None, per_channel=True,
                       max_size_mb=None, target_size_mb=None, calibration_labels=None,
                       min_agreement=None, write_report=True, seed=0, extra_report=None):
    """Export an in-memory keras-hub BERT or ALBERT-style model to ``out_path``.

    Args:
        model: a masked LM (task ``mlm`` or ``encoder``), backbone (task
            ``encoder``) or text classifier of either family (the classes in
            :mod:`~mobile_bert_distill.architectures`).
        task: ``"mlm"`` (output ``logits`` ``[B, S, V]``), ``"encoder"``
            (``sequence_output`` ``[B, S, H]``, ``pooled_output`` ``[B, H]``) or
            ``"classifier"`` (a text classifier: ``probabilities``
            ``[B, K]``, the softmax of its logits; ``parity_labels`` are then
            class indices ``[N]``).
        quantization: ``float32``, ``float16``, ``dynamic``, ``int8`` or (task ``mlm``) ``mixed``:
            float16/int8/int4 per weight matrix so that the file fits ``target_size_mb``, chosen by
            the Hessian sensitivity of the masked-LM loss on ``calibration_sequences`` and
            ``calibration_labels`` (:mod:`~mobile_bert_distill.export.mixed`).
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
        graph_options: :class:`~mobile_bert_distill.export.graph.GraphOptions`.
        float_ops, float_nodes: ops/tensors kept float in an int8 model.
        xnnpack_fixups, share_embedding, float_logits: the int8 flatbuffer
            passes of :mod:`mobile_bert_distill.export.flatbuffer`.
        max_size_mb, min_agreement: raise :class:`UserError` (nothing written)
            when the file is larger, or parity lower.

    Returns:
        The report dict (also written as ``<out>.report.json`` unless
        ``write_report=False``).
    """
    from mobile_bert_distill.architectures import MODEL_KINDS
    from mobile_bert_distill.export.graph import GraphOptions, split_masked_lm
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    if quantization not in MLM_QUANTIZATIONS:
        raise UserError(f"quantization must be one of {', '.join(MLM_QUANTIZATIONS)}, not {quantization!r}")
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    check_mixed(quantization, task, target_size_mb, calibration_sequences)
    if quantization == MIXED and calibration_labels is None:
        raise ValueError("mixed precision needs the calibration sequences' labels (their original ids)")
    if quantization == "int8":
        recipe = recipe or "matmul"
        if recipe not in INT8_RECIPES:
            raise UserError(f"recipe must be one of {', '.join(INT8_RECIPES)}, not {recipe!r}")
        chosen = dict(recipe_table()[recipe])
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
        from mobile_bert_distill.export.classifier import check_classifier_model  # it imports this module

        check_classifier_model(model, share_embedding=share_embedding, float_logits=float_logits)
    backbone, head = split_masked_lm(model)
    if task == "mlm" and head is None:
        raise UserError(f"task 'mlm' needs a {' or '.join(MODEL_KINDS['masked_lm'])}, not a "
                        f"{type(model).__name__} (no MLM head)")
    if seq_len < 2 or seq_len > backbone.max_sequence_length:
        raise UserError(f"the sequence length must be in [2, {backbone.max_sequence_length}], got {seq_len}")
    if batch_size < 1:
        raise UserError(f"the batch size must be >= 1, got {batch_size}")
    vocab_size = int(backbone.vocabulary_size)
    special = model_special_ids(model)
    random_kw = {"special_ids": special}
    if task == "classifier":
        random_kw["mask_rate"] = 0.0  # a classifier never sees [MASK]
    if calibration_sequences is None:
        calib = random_sequences(num_calibration, seq_len, vocab_size, seed=seed, **random_kw)
        calib_source = "random_ids"
    else:
        calib = as_feeds(calibration_sequences)
        calib_source = "given"
    check_feeds(calib, seq_len, vocab_size)
    if parity_sequences is None:
        checks = random_sequences(num_parity, seq_len, vocab_size, seed=seed + 1, **random_kw)
        parity_source = "random_ids"
        parity_labels = None
    else:
        checks = as_feeds(parity_sequences)
        parity_source = "given"
    check_feeds(checks, seq_len, vocab_size)

    t0 = time.perf_counter()
    mixed_report = None
    if quantization == MIXED:
        from mobile_bert_distill.export.mixed import convert_mixed

        float_flat = convert(model, task=task, quantization="float32", seq_len=seq_len, batch_size=batch_size,
                             graph=graph, graph_options=graph_options)
        flat, mixed_report = convert_mixed(model, float_flat, calibration_feeds=calib,
                                           calibration_labels=calibration_labels,
                                           target_bytes=target_size_mb * 1e6, seed=seed)
    else:
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
    par = parity(task, reference, candidate, checks, parity_labels, mask_id=special["[MASK]"])
    par["source"] = parity_source
    check_agreement(par, min_agreement, quantization)
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
        if quantization in ("int8", MIXED) else None,
        **({"mixed_precision": mixed_report} if mixed_report is not None else {}),
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


def report_path(model_path):
    """``<model>.report.json``: where the report of ``model_path`` is written."""
    root, _ = os.path.splitext(str(model_path))
    return root + ".report.json"
