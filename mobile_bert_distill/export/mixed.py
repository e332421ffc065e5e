"""Mixed precision under a size budget: which weight matrix gets float16, int8 or int4 (Q-BERT).

Rounding a matrix ``m`` to fewer bits adds ``Δw_m``; to second order the masked-LM loss grows by
``½ · Tr(H_m)/n_m · ‖Δw_m‖²`` (:mod:`~mobile_bert_distill.export.sensitivity`).
:func:`plan_precisions` starts every matrix at float16 and, while the weights are over the
budget, takes the one step (float16 → int8 or int8 → int4 of one matrix) that adds the least loss
per byte saved. Rounding is symmetric and per output channel, as LiteRT stores int8 and int4
weights; matrices are given in LiteRT's ``[out, in]`` layout (:func:`as_out_in`).

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> weights = {"a": rng.standard_normal((8, 8)), "b": rng.standard_normal((8, 8))}
>>> sensitivity = {"a": 10.0, "b": 0.01}   # trace per parameter
>>> plan = plan_precisions(weights, sensitivity, budget_bytes=8 * 8 * 1.5)
>>> plan["a"]["precision"], plan["b"]["precision"]
('int8', 'int4')
"""

from __future__ import annotations

import numpy as np

from mobile_bert_distill.errors import UserError

#: bits per stored weight of each precision, highest first
BITS = {"float16": 16, "int8": 8, "int4": 4}
PRECISIONS = tuple(BITS)


def as_out_in(kernel):
    """A Keras kernel ``[in, ...out]`` (Dense ``[in, out]``, EinsumDense ``[in, heads, head_dim]``)
    as LiteRT's fully-connected weight ``[out, in]``. Embedding tables ``[rows, width]`` are
    already rows by output channel."""
    kernel = np.asarray(kernel)
    return kernel.reshape(kernel.shape[0], -1).T


def rounding_error(matrix, precision):
    """``‖Q(w) − w‖²`` of ``matrix`` (``[out, in]``) stored in ``precision``: float16, or
    symmetric integers with one scale per output row (``max|row| / (2^(b-1) − 1)``)."""
    w = np.asarray(matrix, np.float64)
    if precision == "float16":
        return float(np.sum((w.astype(np.float16).astype(np.float64) - w) ** 2))
    if precision not in BITS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    levels = 2 ** (BITS[precision] - 1) - 1
    scale = np.abs(w).max(axis=1, keepdims=True) / levels
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -levels, levels) * scale
    return float(np.sum((q - w) ** 2))


def weight_bytes(params, precision):
    """Bytes of ``params`` weights stored in ``precision`` (scales not counted)."""
    return params * BITS[precision] / 8


def plan_precisions(weights, sensitivity, budget_bytes):
    """Assign float16, int8 or int4 to each matrix so that their weights fit ``budget_bytes``.

    Args:
        weights: ``{name: [out, in] array}``.
        sensitivity: ``{name: Tr(H_m) / n_m}``, the mean Hessian eigenvalue of each matrix.
        budget_bytes: what the matrices' weights may take in all.

    Returns:
        ``{name: {"precision", "params", "bytes", "sensitivity", "loss_increase"}}`` in the order of
        ``weights``; ``loss_increase`` is ``½ · sensitivity · ‖Q(w) − w‖²`` at the chosen precision.

    Raises:
        UserError: ``budget_bytes`` is not positive, or below what all-int4 weights take.
    """
    if not budget_bytes > 0:
        raise UserError(f"the size budget must be positive, got {budget_bytes / 1e6:g} MB")
    params = {name: int(np.asarray(w).size) for name, w in weights.items()}
    floor = sum(weight_bytes(n, "int4") for n in params.values())
    if budget_bytes < floor:
        raise UserError(f"{budget_bytes / 1e6:.3f} MB cannot hold these weights: all in int4 they take "
                        f"{floor / 1e6:.3f} MB")
    loss = {name: {p: 0.5 * float(sensitivity[name]) * rounding_error(w, p) for p in PRECISIONS}
            for name, w in weights.items()}
    chosen = dict.fromkeys(weights, 0)  # index into PRECISIONS
    total = sum(weight_bytes(n, PRECISIONS[0]) for n in params.values())
    while total > budget_bytes:
        best, best_rate = None, None
        for name, k in chosen.items():
            if k + 1 == len(PRECISIONS):
                continue
            here, there = PRECISIONS[k], PRECISIONS[k + 1]
            saved = weight_bytes(params[name], here) - weight_bytes(params[name], there)
            rate = max(loss[name][there] - loss[name][here], 0.0) / saved
            if best_rate is None or rate < best_rate:
                best, best_rate = name, rate
        here, there = PRECISIONS[chosen[best]], PRECISIONS[chosen[best] + 1]
        total -= weight_bytes(params[best], here) - weight_bytes(params[best], there)
        chosen[best] += 1
    out = {}
    for name, k in chosen.items():
        precision = PRECISIONS[k]
        out[name] = {"precision": precision, "params": params[name],
                     "bytes": weight_bytes(params[name], precision),
                     "sensitivity": float(sensitivity[name]), "loss_increase": loss[name][precision]}
    return out
