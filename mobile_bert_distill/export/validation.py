"""Inspection and parity: what a ``.tflite`` holds, and how close it is to the float Keras model.

:func:`inspect_tflite` (op histogram, XNNPACK partitions), :func:`keras_outputs`
(the float reference), :func:`parity` (the report's parity block) and
:func:`agreement_of` (the number ``--min-agreement`` checks).
"""

from __future__ import annotations

import numpy as np

from mobile_bert_distill.text import KIT_SPECIAL_IDS


def count_params(model):
    """The number of weights (trainable or not) of a Keras model."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def inspect_tflite(path_or_bytes):
    """Graph op histogram (no delegate) and the executed-node view with XNNPACK."""
    from mobile_bert_distill.litert.tools import (
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
    from mobile_bert_distill.export.graph import split_masked_lm

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
    """Float probabilities ``[N, K]`` of a keras-hub text classifier on preprocessed ``x``
    (``token_ids``/``segment_ids``/``padding_mask``): softmax of its logits (or its own softmax)."""
    from mobile_bert_distill.export.graph import classifier_activation

    out = model(x, training=False)
    out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float32)
    if classifier_activation(model) == "softmax":
        return out
    z = out.astype(np.float64) - out.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def cosine(a, b):
    """Row-wise cosine of two arrays over their last axis (rows flattened)."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12
    return num / den


#: Float top-2 logit gap under which a masked token counts as a near-tie in the parity block.
NEAR_TIE_GAP = 0.5


def parity(task, reference, candidate, feeds, labels=None, mask_id=KIT_SPECIAL_IDS["[MASK]"]):
    """Compare TFLite outputs with the float reference.

    For ``mlm``: positions where ``input_ids == mask_id`` (the model's ``[MASK]``) are scored:
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
        where = feeds["input_ids"] == mask_id
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
            logit_cosine_mean=float(cosine(ref, cand).mean()),
        )
        if labels is not None:
            truth = labels[where]
            res["float_accuracy"] = float((ref_top == truth).mean())
            res["tflite_accuracy"] = float((cand_top == truth).mean())
            res["accuracy_drop_points"] = 100.0 * (res["float_accuracy"] - res["tflite_accuracy"])
    else:
        keep = feeds["padding_mask"].astype(bool)
        ref, cand = reference["sequence_output"][keep], candidate["sequence_output"][keep]
        cos = cosine(ref, cand)
        pooled = cosine(reference["pooled_output"], candidate["pooled_output"])
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
    """The single number the minimum agreement is checked against."""
    if "label_agreement" in parity_block:
        return parity_block["label_agreement"]
    if "top1_agreement" in parity_block:
        return parity_block["top1_agreement"]
    return parity_block["sequence_output_cosine_mean"]


def check_agreement(parity_block, min_agreement, quantization):
    """Refuse (:class:`UserError`, nothing is written yet) when the export agrees with its float model less
    than ``min_agreement`` (``None``: no floor)."""
    from mobile_bert_distill.errors import UserError

    if min_agreement is None or agreement_of(parity_block) >= min_agreement:
        return
    hint = ("; quantization dynamic (int8 weights, float activations) usually agrees more"
            if quantization == "int8" else "")
    raise UserError(f"parity {agreement_of(parity_block):.4f} below the minimum agreement {min_agreement} "
                    f"({quantization}, {parity_block['sequences']} sequences); nothing written{hint}",
                    option="min_agreement", purpose="with a lower value to accept it")
