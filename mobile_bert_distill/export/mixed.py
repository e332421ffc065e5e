"""Mixed precision under a size budget: which weight matrix gets float16, int8 or int4 (Q-BERT).

Rounding a matrix ``m`` to fewer bits adds ``Δw_m``; to second order the masked-LM loss grows by
``½ · Tr(H_m)/n_m · ‖Δw_m‖²`` (:mod:`~mobile_bert_distill.export.sensitivity`).
:func:`plan_precisions` starts every matrix at float16 and, while the weights are over the
budget, takes the one step (float16 → int8 or int8 → int4 of one matrix) that adds the least loss
per byte saved; the bytes the last step saved beyond the budget then buy back the steps that
remove the most loss per byte. Rounding is symmetric and per output channel, as LiteRT stores int8 and int4
weights; matrices are given in LiteRT's ``[out, in]`` layout (:func:`as_out_in`). The MLM head,
tied to the token table, has a cheaper last step than int4: ``tied``, reading the int8 table the
lookup stores anyway (one scale for the whole table), which costs no bytes of its own.

:func:`convert_mixed` applies a plan to the kit's float32 export with ai-edge-quantizer (the one
route to int4 weights: TF 2.21's converter writes none): dynamic-range int8 or int4 per channel,
or float16, per FULLY_CONNECTED weight, and int8 embedding tables; what ``mbd export
--quantization mixed --target-size-mb X`` runs.

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> weights = {"a": rng.standard_normal((8, 64)), "b": rng.standard_normal((8, 64))}
>>> sensitivity = {"a": 10.0, "b": 0.01}   # trace per parameter
>>> plan = plan_precisions(weights, sensitivity, budget_bytes=(512 + 8 * 12) + (256 + 8 * 12))  # int8 a, int4 b
>>> plan["a"]["precision"], plan["b"]["precision"]
('int8', 'int4')
"""

from __future__ import annotations

import os

import numpy as np

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.recipes import MIXED

#: bits per stored weight of each precision, highest first
BITS = {"float16": 16, "int8": 8, "int4": 4}
PRECISIONS = tuple(BITS)
#: the MLM head's own precision when it reads the int8 input table itself (one symmetric per-tensor
#: int8 copy serves the lookup and the logits, as in the kit's int8 export): no bytes of its own
TIED = "tied"
#: the steps a tied head may take: it stays as precise as a separate copy until it shares the table
TIED_PRECISIONS = ("float16", "int8", TIED)
#: bytes of one output channel's quantization parameters: a float32 scale and an int64 zero point
QPARAM_BYTES = 12


def as_out_in(kernel, input_axes=1):
    """A Keras kernel whose first ``input_axes`` axes are inputs (Dense ``[in, out]`` and the
    attention's ``[in, heads, head_dim]``: 1; its output projection ``[heads, head_dim, out]``: 2)
    as LiteRT's fully-connected weight ``[out, in]``. Embedding tables ``[rows, width]`` are
    already rows by output channel."""
    kernel = np.asarray(kernel)
    return kernel.reshape(int(np.prod(kernel.shape[:input_axes])), -1).T


def rounding_error(matrix, precision, column_scale=None):
    """``‖(Q(w) − w)·diag(column_scale)‖²`` of ``matrix`` (``[out, in]``) stored in ``precision``:
    float16, symmetric integers with one scale per output row (``max|row| / (2^(b-1) − 1)``), or
    ``tied``: int8 with one scale for the whole matrix (``max|w| / 127``).
    ``column_scale`` maps an error of the stored weight back to the model's own (the export
    folds a LayerNorm's gamma into the input columns of the next projection)."""
    w = np.asarray(matrix, np.float64)
    if precision == "float16":
        err = w.astype(np.float16).astype(np.float64) - w
    elif precision in BITS or precision == TIED:
        levels = 2 ** (BITS.get(precision, 8) - 1) - 1
        scale = np.abs(w).max(axis=None if precision == TIED else 1, keepdims=True) / levels
        scale[scale == 0] = 1.0
        err = np.clip(np.round(w / scale), -levels, levels) * scale - w
    else:
        raise ValueError(f"precision must be one of {PRECISIONS + (TIED,)}, not {precision!r}")
    if column_scale is not None:
        err = err * np.asarray(column_scale, np.float64)[None, :]
    return float(np.sum(err ** 2))


def weight_bytes(params, precision, rows=0):
    """Bytes of ``params`` weights stored in ``precision``, with the scale (float32) and zero point
    (int64) LiteRT stores per output row of an int8 or int4 matrix of ``rows`` rows. A tied head
    stores nothing of its own."""
    if precision == TIED:
        return 0.0
    return params * BITS[precision] / 8 + (QPARAM_BYTES * rows if precision != "float16" else 0)


def plan_precisions(weights, sensitivity, budget_bytes, column_scales=None, tied=()):
    """Assign float16, int8 or int4 (or ``tied``) to each matrix so that their weights fit ``budget_bytes``.

    Args:
        weights: ``{name: [out, in] array}``.
        sensitivity: ``{name: Tr(H_m) / n_m}``, the mean Hessian eigenvalue of each matrix.
        budget_bytes: what the matrices' weights may take in all.
        column_scales: ``{name: [in] array}`` for :func:`rounding_error` (default: none).
        tied: names of matrices that may instead read an int8 table stored anyway (the MLM head
            tied to the token table): they step float16 → int8 → ``tied`` (:data:`TIED_PRECISIONS`).
            A step that would save no bytes is skipped (a row's scale and zero point outweigh
            what a few input columns save).

    Returns:
        ``{name: {"precision", "params", "rows", "bytes", "sensitivity", "loss_increase"}}`` in the
        order of ``weights``; ``bytes`` as :func:`weight_bytes` counts them; ``loss_increase`` is
        ``½ · sensitivity · ‖Q(w) − w‖²`` at the chosen precision.

    Raises:
        UserError: ``budget_bytes`` is not positive, or below what all-int4 weights take (tied
            ones taking none).
    """
    if not budget_bytes > 0:
        raise UserError(f"the size budget must be positive, got {budget_bytes / 1e6:g} MB")
    params = {name: int(np.asarray(w).size) for name, w in weights.items()}
    rows = {name: int(np.asarray(w).shape[0]) for name, w in weights.items()}

    def size(name, precision):
        return weight_bytes(params[name], precision, rows[name])

    steps = {}  # each matrix's precisions, each one smaller than the one before
    for name in weights:
        for p in TIED_PRECISIONS if name in tied else PRECISIONS:
            if name not in steps or size(name, p) < size(name, steps[name][-1]):
                steps[name] = steps.get(name, ()) + (p,)

    floor = sum(size(name, ladder[-1]) for name, ladder in steps.items())
    if budget_bytes < floor:
        raise UserError(f"{budget_bytes / 1e6:.3f} MB cannot hold these weights: all in int4 "
                        f"{'(tied ones reading their table) ' if set(tied) & set(weights) else ''}they take "
                        f"{floor / 1e6:.3f} MB")
    column_scales = column_scales or {}
    loss = {name: {p: 0.5 * float(sensitivity[name]) * rounding_error(w, p, column_scales.get(name))
                   for p in steps[name]}
            for name, w in weights.items()}

    def greedy(chosen):  # ``chosen``: each matrix's index into its steps, moved down then back up
        total = sum(size(name, steps[name][k]) for name, k in chosen.items())
        while total > budget_bytes:
            best, best_rate = None, None
            for name, k in chosen.items():
                if k + 1 == len(steps[name]):
                    continue
                here, there = steps[name][k], steps[name][k + 1]
                rate = max(loss[name][there] - loss[name][here], 0.0) / (size(name, here) - size(name, there))
                if best_rate is None or rate < best_rate:
                    best, best_rate = name, rate
            total -= size(best, steps[best][chosen[best]]) - size(best, steps[best][chosen[best] + 1])
            chosen[best] += 1
        # the last step may have saved more than needed: what is left buys steps back, the most loss
        # removed per byte first (zero too: a trace of 0 is an estimate)
        while True:
            best, best_rate = None, None
            for name, k in chosen.items():
                if k == 0:
                    continue
                here, up = steps[name][k], steps[name][k - 1]
                cost = size(name, up) - size(name, here)
                rate = (loss[name][here] - loss[name][up]) / cost
                if total + cost <= budget_bytes and rate >= 0 and (best_rate is None or rate > best_rate):
                    best, best_rate = name, rate
            if best is None:
                return chosen
            total += size(best, steps[best][chosen[best] - 1]) - size(best, steps[best][chosen[best]])
            chosen[best] -= 1

    # a tied head's last step saves its whole copy at once, more than the greedy steps weigh:
    # plan from float16 and from the head tied, and keep the plan that loses less
    starts = [dict.fromkeys(weights, 0)]
    if any(name in tied for name in weights):
        starts.append({name: len(steps[name]) - 1 if name in tied else 0 for name in weights})
    plans = [greedy(start) for start in starts]
    chosen = min(plans, key=lambda c: sum(loss[name][steps[name][k]] for name, k in c.items()))
    out = {}
    for name, k in chosen.items():
        precision = steps[name][k]
        out[name] = {"precision": precision, "params": params[name],
                     "rows": rows[name], "bytes": size(name, precision),
                     "sensitivity": float(sensitivity[name]), "loss_increase": loss[name][precision]}
    return out


def check_mixed(quantization, task, target_size_mb, calibration):
    """The rules of mixed precision, in one place: masked LMs only (its sensitivity is the
    masked-LM loss's), a positive target size (which no other mode takes) and calibration text."""
    if quantization != MIXED:
        if target_size_mb is not None:
            raise UserError(f"a target size applies to mixed precision only, not to {quantization}")
        return
    if task != "mlm":
        raise UserError(f"mixed precision is for masked LMs (task mlm), not task {task}: it ranks the weight "
                        "matrices by the Hessian of the masked-LM loss")
    if target_size_mb is None:
        raise UserError("mixed precision needs a target size in MB", option="target_size_mb",
                        purpose="with the size the file must fit")
    if not target_size_mb > 0:
        raise UserError(f"the target size must be positive, got {target_size_mb:g} MB")
    if calibration is None:
        raise UserError("mixed precision needs calibration text (a text file): its sensitivities and int8 "
                        "tables come from real sentences")


def fully_connected_weights(flat):
    """``[(scope, weight)]`` of the FULLY_CONNECTED ops of a float32 LiteRT file, in graph order:
    the op's scope as ai-edge-quantizer matches it (its output tensor names, each followed by
    ``;``) and its constant ``[out, in]`` float32 weight."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(flat))
    names = [fu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        if names[op.opcodeIndex] != "FULLY_CONNECTED":
            continue
        tensor = graph.tensors[op.inputs[1]]
        weight = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32).reshape(tensor.shape)
        scope = "".join(graph.tensors[o].name.decode() + ";" for o in op.outputs)
        out.append((scope, weight))
    return out


def match_matrices(fully_connected, matrices):
    """Which matrix of ``matrices`` (``{name: [out, in] array}``) each FULLY_CONNECTED weight stores,
    and how: the export scales input columns (a LayerNorm's gamma folded in, the attention scale
    in the query), so a weight matches the same-shaped matrix whose columns it equals up to one
    factor each. Returns ``[(name, column_scale)]``: ``column_scale[j]`` turns column ``j`` of the
    stored weight back into the matrix's (:func:`rounding_error`)."""
    out = []
    for scope, weight in fully_connected:
        w_norms = np.linalg.norm(weight, axis=0)
        found = None
        for name, m in matrices.items():
            if m.shape != weight.shape:
                continue
            m_norms = np.linalg.norm(m, axis=0)
            cos = np.abs(np.sum(weight * m, axis=0)) / np.maximum(w_norms * m_norms, 1e-30)
            if np.all(cos > 0.9999):
                found = (name, m_norms / np.maximum(w_norms, 1e-30))
                break
        if found is None:
            raise ValueError(f"the FULLY_CONNECTED weight {list(weight.shape)} of {scope} is no weight matrix of "
                             "the model")
        out.append(found)
    return out


def _import_quantizer():
    try:
        import ai_edge_quantizer
    except ImportError:
        raise UserError("mixed precision writes int4 weights with ai-edge-quantizer, which is not installed: "
                        "pip install ai-edge-quantizer==0.10.0") from None
    return ai_edge_quantizer


def quantize_with_plan(float_flat, scopes, precisions, calibration_feeds):
    """The file ai-edge-quantizer writes from ``float_flat``: FULLY_CONNECTED ``scopes[i]`` stores
    its weight in ``precisions[i]`` (float16; int8 or int4 per channel, dynamic-range), the GATHER
    embedding tables in int8 (static, calibrated on ``calibration_feeds``)."""
    import contextlib
    import io
    import re
    import tempfile
    import warnings

    aeq = _import_quantizer()
    G, OP = aeq.qtyping.QuantGranularity, aeq.qtyping.TFLOperationName
    with tempfile.TemporaryDirectory(prefix="mbd-mixed-") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stderr(io.StringIO()):  # its progress bars and debugging warnings
        warnings.simplefilter("ignore")
        src = os.path.join(tmp, "float32.tflite")
        with open(src, "wb") as f:
            f.write(float_flat)
        q = aeq.quantizer.Quantizer(src)
        for precision in PRECISIONS:
            chosen = [s for s, p in zip(scopes, precisions) if p == precision]
            if not chosen:
                continue
            regex = "^(" + "|".join(re.escape(s) for s in chosen) + ")$"
            if precision == "float16":
                q.add_weight_only_config(regex=regex, operation_name=OP.FULLY_CONNECTED, num_bits=16,
                                         algorithm_key="float_casting")
            else:
                q.add_dynamic_config(regex=regex, operation_name=OP.FULLY_CONNECTED, num_bits=BITS[precision],
                                     granularity=G.CHANNELWISE)
        q.add_static_config(regex=".*", operation_name=OP.GATHER, activation_num_bits=8, weight_num_bits=8)
        samples = [{k: v[i : i + 1] for k, v in calibration_feeds.items()}
                   for i in range(len(calibration_feeds["input_ids"]))]
        calibrated = q.calibrate({"serving_default": samples}, num_threads=1)
        out = os.path.join(tmp, "mixed.tflite")
        q.quantize(calibrated, enable_progress_report=False).export_model(out, overwrite=True)
        with open(out, "rb") as f:
            return f.read()


def convert_mixed(model, float_flat, *, calibration_feeds, calibration_labels, target_bytes, samples=16,
                  sensitivity_sequences=32, calibration_sequences=32, seed=0):
    """Mixed-precision bytes of the masked LM ``model`` that fit ``target_bytes``, and their report.

    ``float_flat`` is the model's float32 export (the kit's graph). Each weight matrix's
    Hutchinson trace (``samples`` draws, on the first ``sensitivity_sequences`` calibration
    sequences) ranks it; :func:`plan_precisions` assigns float16/int8/int4 to the
    FULLY_CONNECTED weights, or ``tied`` to the MLM head (it then reads the token table:
    :func:`~mobile_bert_distill.export.flatbuffer.share_tied_embedding`); the embedding tables
    are int8. The first plan's budget is
    ``target_bytes`` less an estimate of everything else in the file (tables, biases, scales,
    the graph); while the written file is over ``target_bytes``, the plan is made again with the
    rest as measured in that file (four tries).

    Raises:
        UserError: ``target_bytes`` is below the file with every weight matrix in int4 and the head
            tied, or no plan
            fits in four tries (:func:`check_mixed` refuses a target that is not positive).
    """
    from mobile_bert_distill.export.flatbuffer import share_tied_embedding
    from mobile_bert_distill.export.sensitivity import hessian_sensitivity, weight_matrices

    variables = weight_matrices(model)
    tables = ("token_embedding", "position_embedding", "segment_embedding")
    matrices = {name: (np.asarray(v.numpy()) if name in tables else
                       as_out_in(v.numpy(), input_axes=2 if name.endswith(".o") else 1))
                for name, v in variables.items()}
    fully_connected = fully_connected_weights(float_flat)
    matched = match_matrices(fully_connected, matrices)
    names = [name for name, _ in matched]
    stored = {}  # the stored weight of each matrix (the first op's, when ops share one) and its column scale
    for (_, weight), (name, column_scale) in zip(fully_connected, matched):
        stored.setdefault(name, (weight, column_scale))
    planned = {name: w for name, (w, _) in stored.items()}
    column_scales = {name: c for name, (_, c) in stored.items()}
    # the float file stores each matrix once (a tied table serves GATHER and the logits); the
    # quantizer writes the looked-up tables in int8 and the planned weights apart from them (the
    # position table is a float constant of the rows the sequence uses, in both files)
    looked_up = ("token_embedding", "segment_embedding")
    stored_params = sum(matrices[n].size for n in dict.fromkeys([*planned, *looked_up]))
    overhead = len(float_flat) - 4 * stored_params + sum(matrices[t].size for t in looked_up)
    tied = [name for name in planned if name in tables]  # the MLM head may read the int8 token table itself
    int4 = sum(weight_bytes(m.size, "int4", m.shape[0]) for name, m in planned.items() if name not in tied)

    def check_floor():
        if target_bytes - overhead < int4:
            raise UserError(f"{target_bytes / 1e6:.3f} MB is below the smallest mixed-precision file of this "
                            f"model, about {(overhead + int4) / 1e6:.3f} MB (every weight matrix in int4, "
                            "the MLM head reading the token table)")

    check_floor()
    head = {k: v[:sensitivity_sequences] for k, v in calibration_feeds.items()}
    sens = hessian_sensitivity(model, head, np.asarray(calibration_labels)[:sensitivity_sequences],
                               samples=samples, seed=seed)
    trace = {name: max(sens[name]["trace_per_param"], 0.0) for name in planned}
    calib = {k: v[:calibration_sequences] for k, v in calibration_feeds.items()}
    tries = []
    for _ in range(4):
        check_floor()
        plan = plan_precisions(planned, trace, target_bytes - overhead, column_scales, tied=tied)
        precisions = [plan[n]["precision"] for n in names]
        flat = quantize_with_plan(float_flat, [s for s, _ in fully_connected],
                                  ["int8" if p == TIED else p for p in precisions], calib)
        if TIED in precisions:
            flat, changes = share_tied_embedding(flat)
            rows = sum(planned[n].shape[0] for n in tied if plan[n]["precision"] == TIED)
            if changes["shared_embedding_rows"] != rows:
                raise ValueError(f"the MLM head planned to read the token table ({rows} rows) did not match it")
        tries.append(len(flat))
        if len(flat) <= target_bytes:
            break
        overhead = len(flat) - sum(row["bytes"] for row in plan.values())  # measured: scales, graph, tables
    else:
        raise UserError(f"no mixed-precision plan fits {target_bytes / 1e6:.3f} MB: the last try wrote "
                        f"{tries[-1] / 1e6:.3f} MB")
    report = {
        "target_size_mb": target_bytes / 1e6, "tries_mb": [round(t / 1e6, 4) for t in tries],
        "quantizer": "ai-edge-quantizer (dynamic-range int8/int4 per channel, float16 casting)",
        "embedding_tables": f"int8 (static, per tensor); a matrix marked {TIED} is the token table, read by the "
                            "MLM head too",
        "sensitivity": {"estimate": "Hutchinson trace of the masked-LM loss's Hessian, per matrix", "samples": samples,
                        "sequences": int(len(head["input_ids"]))},
        "matrices": [{"name": name, "ops": names.count(name), **plan[name],
                      "trace": sens[name]["trace"], "trace_stderr": sens[name]["trace_stderr"]}
                     for name in planned],
    }
    return flat, report
