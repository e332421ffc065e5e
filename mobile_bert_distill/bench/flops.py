"""FLOPs of a BERT (or ALBERT-style encoder) two ways: analytic (from the architecture) and counted
(from a .tflite).

Analytic rows, at sequence length ``S`` (one sequence), hidden ``H``,
feed-forward ``I``, ``L`` layers (the depth run: a shared layer counts at
every depth), ``h`` heads, vocabulary ``V``, embedding width ``E`` (``H``
for BERT); matmul FLOPs are 2 x MACs:

====================  ===============================  =====================================
row                   matmul FLOPs                     other FLOPs (estimate)
====================  ===============================  =====================================
embeddings            0 (lookups)                      2SE sums + LayerNorm
embedding projection  2 S E H (ALBERT-style only)      SH bias
attention projections L * 2 * 4 S H^2                  L * 4SH biases
attention scores      L * 2 * 2 S^2 H (QK^T, AV)       L * 6 h S^2 (mask add, softmax)
feed-forward          L * 2 * 2 S H I                  L * (S(I+H) biases + 8 S I GELU)
norms + residuals     0                                L * 2 (LayerNorm + SH)
pooler (encoder)      2 H^2                            2H
MLM head (mlm)        2 S H E + 2 S E V                SE + 8SE + LayerNorm + SV
====================  ===============================  =====================================

LayerNorm is ``7SH + 2S`` (mean, subtract, square, mean, +eps and rsqrt per
row, normalise, scale, shift). The per-op costs are the ones
:mod:`mobile_bert_distill.litert.on_device_bench` uses when it counts a graph, so both
columns speak the same units. The matmul totals must agree within 1% (they
are exact for the kit's exports); the "other" column depends on how the
converter decomposed each block and is shown, not enforced.

Example:
>>> from mobile_bert_distill.bench.params import student_config
>>> rows = analytic_flops(student_config(48), 128, task="encoder")
>>> rows["matmul"]                     # 2 x 61.3 M MACs (+ the pooler)
122688000
"""

from __future__ import annotations


from mobile_bert_distill.litert.on_device_bench import ELEMENTWISE_COST
from mobile_bert_distill.bench.params import BertConfig

GELU_COST = ELEMENTWISE_COST["GELU"]
SOFTMAX_COST = ELEMENTWISE_COST["SOFTMAX"]
#: The encoder's counted and analytic matmul FLOPs must agree within this.
AGREEMENT = 0.01


def _layer_norm(s, h):
    return 7 * s * h + 2 * s


def analytic_flops(cfg: BertConfig, seq_len: int, task: str = "encoder"):
    """Rows ``{"name", "matmul", "other"}`` and totals for one sequence of ``seq_len``."""
    s, h, i, L, heads, v = (seq_len, cfg.hidden_dim, cfg.intermediate_dim, cfg.num_layers,
                            cfg.num_heads, cfg.vocab_size)
    e = cfg.embedding_dim or h
    rows = [{"name": "embeddings", "matmul": 0, "other": 2 * s * e + _layer_norm(s, e)}]
    if cfg.embedding_dim is not None:
        rows.append({"name": "embedding projection", "matmul": 2 * s * e * h, "other": s * h})
    rows += [
        {"name": "attention projections", "matmul": L * 2 * 4 * s * h * h, "other": L * 4 * s * h},
        {"name": "attention scores", "matmul": L * 2 * 2 * s * s * h,
         "other": L * (1 + SOFTMAX_COST) * heads * s * s},
        {"name": "feed-forward", "matmul": L * 2 * 2 * s * h * i,
         "other": L * (s * (i + h) + GELU_COST * s * i)},
        {"name": "norms + residuals", "matmul": 0, "other": L * 2 * (_layer_norm(s, h) + s * h)},
    ]
    if task == "encoder":
        rows.append({"name": "pooler", "matmul": 2 * h * h, "other": 2 * h})
    elif task == "mlm":
        rows.append({"name": "MLM head", "matmul": 2 * s * h * e + 2 * s * e * v,
                     "other": s * e + GELU_COST * s * e + _layer_norm(s, e) + s * v})
    else:
        raise ValueError(f"task must be 'encoder' or 'mlm', not {task!r}")
    for r in rows:
        r["total"] = r["matmul"] + r["other"]
    return {
        "seq_len": seq_len,
        "task": task,
        "rows": rows,
        "matmul": sum(r["matmul"] for r in rows),
        "other": sum(r["other"] for r in rows),
        "total": sum(r["total"] for r in rows),
    }


def compare(analytic, counted):
    """Relative differences ``(counted - analytic) / analytic`` of the matmul and total FLOPs."""
    def rel(a, c):
        return (c - a) / a if a else None

    matmul = rel(analytic["matmul"], counted["matmul"])
    return {
        "matmul_rel_diff": matmul,
        "total_rel_diff": rel(analytic["total"], counted["total"]),
        "other_rel_diff": rel(analytic["other"], counted["other"]),
        "matmul_agrees": matmul is not None and abs(matmul) <= AGREEMENT,
    }


def infer_architecture(graph):
    """Guess a :class:`BertConfig` from a BERT .tflite :class:`~mobile_bert_distill.litert.on_device_bench.Graph`.

    Vocabulary and hidden width from the token-embedding table, the
    feed-forward width and layer count from the ``FULLY_CONNECTED`` ops that
    map ``I > H`` features back to ``H``, heads from the softmax sizes.
    An ALBERT-style graph (an ``E``-wide table and a ``FULLY_CONNECTED`` from
    ``E`` to ``H != E``) also gives ``embedding_dim``, and ``distinct_layers``
    when fewer weight tensors than layers feed those ops (an ALBERT-style model
    with ``E == H`` reads as a BERT). Returns ``None`` when the graph does not
    look like a BERT encoder.
    """
    emb = graph.token_embedding()
    seq = graph.static_seq_len()
    if not emb or not seq:
        return None
    vocab, width = emb
    producers = graph.producers()
    kernels = []  # (weight tensor, [out, in]) of every FULLY_CONNECTED
    for op in graph.ops:
        if op["type"] == "FULLY_CONNECTED" and len(op["inputs"]) > 1:
            w = graph.tensors[op["inputs"][1]]["shape"]
            if len(w) == 2:
                kernels.append((op["inputs"][1], tuple(w)))

    def down_projections(hidden, skip=None):  # {I: weight tensors mapping I > hidden features to hidden}
        down = {}
        for t, (out, inp) in kernels:
            if out == hidden and inp > hidden and inp != skip:
                down.setdefault(inp, []).append(t)
        return down

    hidden, embedding_dim, down = width, None, {}
    for out, inp in sorted({w for _, w in kernels}):  # an E -> H embedding projection
        if inp == width and out != width:
            down = down_projections(out, skip=width)
            if down:
                hidden, embedding_dim = out, width
                break
    down = down or down_projections(width)
    if not down:
        return None
    inter, uses = max(down.items(), key=lambda kv: len(kv[1]))
    layers = len(uses)

    def source(t):  # a float16 weight reaches its op through a DEQUANTIZE
        op = graph.ops[producers[t]] if t in producers else None
        return op["inputs"][0] if op is not None and op["type"] == "DEQUANTIZE" else t

    distinct = len({source(t) for t in uses})
    softmax = sum(
        graph._numel(op["outputs"][0]) for op in graph.ops if op["type"] == "SOFTMAX"
    )
    heads = max(1, round(softmax / (layers * seq * seq))) if softmax else 1
    if hidden % heads:
        heads = 1
    positions = 512
    for op in graph.ops:  # the largest other 2-D table gathered is the position table
        if op["type"] == "GATHER":
            table = graph.tensors[op["inputs"][0]]["shape"]
            if len(table) == 2 and table[1] == width and table[0] != vocab and table[0] > 2:
                positions = table[0]
    try:
        return BertConfig(vocab_size=vocab, hidden_dim=hidden, num_layers=layers, num_heads=heads,
                          intermediate_dim=inter, max_positions=positions, embedding_dim=embedding_dim,
                          distinct_layers=distinct if distinct < layers else None)
    except Exception:
        return None
