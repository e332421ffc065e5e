"""Export modes and int8 recipes: what ``mbd export --quantization/--int8-recipe`` name.

:data:`QUANTIZATIONS` are the modes, :data:`INT8_RECIPES` the named int8
recipes and :func:`recipe_table` what each one converts (graph, graph
options, ops kept float, flatbuffer passes). :data:`INPUT_NAMES` and
:data:`OUTPUT_NAMES` are the exported signature's tensor names.
"""

from __future__ import annotations

import dataclasses

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
#: float16/int8/int4 per weight matrix under a size budget (masked LMs; :mod:`~mobile_bert_distill.export.mixed`)
MIXED = "mixed"
MLM_QUANTIZATIONS = QUANTIZATIONS + (MIXED,)
DEFAULT_QUANTIZATION = "int8"  # what `mbd export` writes unless told otherwise
INPUT_NAMES = ("input_ids", "segment_ids", "padding_mask")
OUTPUT_NAMES = {"mlm": ("logits",), "encoder": ("pooled_output", "sequence_output"),
                "classifier": ("probabilities",)}
#: Minimum masked-token top-1 agreement with the float model, per mode (CLI default).
DEFAULT_MIN_AGREEMENT = {"float32": 0.999, "float16": 0.99, "dynamic": 0.95, "int8": 0.99, MIXED: 0.9}
#: The shortest static sequence length an export takes.
MIN_SEQ_LEN = 8


def min_agreement_for(quantization, value=None, *, real_text=True):
    """The parity floor an export enforces (``None``: reported, not enforced).

    ``value`` when given (0 or less: none); else the default of ``quantization``
    when parity runs on real text (a calibration corpus or a labelled CSV), else
    none: agreement on random ids says little.
    """
    if value is not None:
        return value if value > 0 else None
    return DEFAULT_MIN_AGREEMENT[quantization] if real_text else None


def recipe_table():
    """``{recipe name: settings}`` of the int8 recipes (a fresh dict on every call): ``graph``,
    ``graph_options``, ``float_ops`` and the flatbuffer passes ``xnnpack_fixups``,
    ``share_embedding``, ``float_logits`` (see :func:`~mobile_bert_distill.export.conversion.convert`)."""
    from mobile_bert_distill.export.graph import GraphOptions

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


#: Named int8 recipes (see :func:`~mobile_bert_distill.export.conversion.export_keras_model`'s ``recipe``).
INT8_RECIPES = ("matmul", "fc", "xnnpack", "strict", "naive")
