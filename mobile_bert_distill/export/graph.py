"""An export-friendly re-expression of a keras-hub BERT or ALBERT-style encoder, with the same weights.

keras-hub's ``BertBackbone`` (or ``AlbertBackbone``) converts to TFLite, but
the graph it lowers to is hostile to integer quantization:
``LayerNormalization`` becomes a ``MEAN``/``SQUARED_DIFFERENCE``/``RSQRT``/``NEG``
chain whose ``NEG`` stays float, the attention mask is a ``-1e9`` additive
bias that wrecks the int8 range of the attention scores, and the query
scaling is a separate ``MUL``.

:class:`ExportBert` rebuilds the same function from plain TensorFlow ops with
the weights copied out of the Keras model:

* the ``1/sqrt(head_dim)`` scaling is folded into the query kernel and bias;
* LayerNorm is ``d = x - mean(x); d * rsqrt(mean(d*d) + eps) * gamma + beta``;
* GELU is the builtin ``GELU`` op (one int8 lookup table) instead of a chain
  of ``MUL``/``ADD``/``TANH``;
* the padding mask is a bias of ``mask_bias`` (default ``-30``, which is
  ``exp(-30) ~ 1e-13`` after the softmax, so float results match Keras),
  computed once and shared by every layer;
* attention can be written per head (``attention="per_head"``) so that
  every matmul is a rank-3 ``BATCH_MATMUL`` with no transposes;
* an ALBERT-style model's ``E``-wide embeddings go through its ``E -> H``
  projection, and a layer it shares across depths is stored once: every
  depth reads the same variables (see :class:`ExportBert`).

Float outputs match the Keras model to ~1e-5 (checked by the tests).

Example::

    import keras_hub
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64)
    module = ExportBert.from_keras(backbone, task="encoder", seq_len=16)
    outputs = module.serve(input_ids, segment_ids, padding_mask)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mobile_bert_distill.architectures import (
    CLASSIFIER_CLASSES, MASKED_LM_CLASSES, MODEL_KINDS, embedding_projection, encoder_layers, model_kind)

TASKS = ("mlm", "encoder", "classifier")


@dataclasses.dataclass(frozen=True)
class GraphOptions:
    """How the exported graph expresses each block (same maths, different ops).

    gelu: ``"builtin"`` (one ``GELU`` op) or ``"tanh"`` (the explicit formula).
    attention: ``"heads"`` (reshape/transpose to ``[B, heads, S, d]``, rank-4
        ``BATCH_MATMUL``) or ``"per_head"`` (one rank-3 matmul per head,
        heads concatenated before the output projection).
    mask_bias: the additive bias of masked keys before the softmax.
    fuse_qkv: compute query/key/value with one ``FULLY_CONNECTED`` of width
        ``3 * hidden`` and split, instead of three.
    layer_norm_epsilon: add LayerNorm's epsilon before the ``RSQRT``. BERT's
        ``1e-12`` is below float32 resolution of any realistic variance; in an
        int8 graph its quantized constant has a scale of ~4e-9, which the
        XNNPACK delegate rejects, so int8 recipes leave it out.
    tie_embedding: store the token embedding once for the input lookup and
        the MLM output projection. The converter folds the MLM LayerNorm's
        gamma into the output weights (``E diag(gamma)``), which breaks the
        tie and stores a second 4928-row matrix; instead both uses read
        ``E' = E diag(gamma)``, the lookup multiplies by ``1/gamma`` and beta
        moves into the output bias. Skipped when some ``|gamma| < 1e-3``.
    position_segment_table: look up ``position + segment`` embeddings in one
        precomputed ``[segments * S, hidden]`` table (one ``GATHER`` indexed
        by ``segment_id * S + position``) instead of adding a float
        ``[S, hidden]`` constant and a segment lookup: in an int8 model the
        table is stored in int8 (a quarter of the float constant's bytes).
        With BERT's two segments the table holds ``position + segment 0``
        (``[S, hidden]``) and segment 1 adds a float difference vector.
    smooth_alpha: SmoothQuant-style per-channel rescaling (Xiao et al. 2022)
        with migration strength ``alpha`` (``None``: off). Needs calibration
        feeds (see :class:`ExportBert`). A LayerNorm that feeds projections
        writes ``x / s`` (``gamma / s``) and those kernels' rows are multiplied
        by ``s``, with ``s_j = max|x_j|^alpha / max|W_j|^(1-alpha)``; the
        residual branch gets ``x`` back through one ``MUL`` by ``s`` (two per
        layer). The attention-output projection's input is smoothed for free
        through the value kernel's columns (the context is linear in them).
        Exact in real arithmetic.
    balance_qk: rescale each query column by ``t_c`` and the matching key
        column by ``1/t_c`` (``t_c = sqrt(max|k_c| / max|q_c|)``, from
        calibration) so both operands of the attention-score matmul have the
        same per-channel range. Exact in real arithmetic, no extra op.
    gptq: round the projection kernels to the per-output-channel int8 grid
        with GPTQ (Frantar et al. 2022): column by column, each rounding
        error is compensated on the columns not yet rounded through the
        inverse Hessian ``(X^T X)^-1`` of the layer's calibration inputs.
        Each channel's largest weight is rounded first and lands exactly on
        ``+-127``, so the converter's own per-channel scales (``max|w|/127``)
        reproduce the grid and store these integers. Changes the float
        function (it *is* the int8 weights): for int8 exports only. Without
        smoothing, kernels fed by a LayerNorm are rounded in the space the
        converter quantizes them in (it folds the LayerNorm's gamma into their
        rows): ``diag(1/gamma) GPTQ(diag(gamma) W)``.
        (``smooth_alpha``, ``balance_qk`` and ``gptq`` are off in every recipe;
        their code is in :mod:`~mobile_bert_distill.export.experimental`.)
    score_margin: int8 exports only (applied after conversion, see
        :func:`~mobile_bert_distill.export.flatbuffer.set_attention_score_ranges`):
        each attention-score matmul's output range becomes ``[min row max -
        score_margin, max row max]`` of its float scores on calibration
        (query rows of real tokens; row max over unmasked keys) instead of
        the calibrated min/max, which the scores of padded keys widen. A
        score more than ``score_margin`` below its row's maximum has softmax
        weight below ``exp(-score_margin)``, so saturating it costs ~nothing
        while every score gets a finer int8 step. ``None``: off.

    Always applied (exact in real arithmetic, so not options): the key bias is
    dropped, since ``q . (k + b_k) = q . k + q . b_k`` shifts every score of a
    query by the same amount and the softmax ignores it; the value bias moves
    into the output projection's bias, since each attention row sums to one:
    ``P (V + 1 b_v) W_o + b_o = P V W_o + (b_v W_o + b_o)``.
    """

    gelu: str = "builtin"
    attention: str = "heads"
    mask_bias: float = -30.0
    fuse_qkv: bool = False
    layer_norm_epsilon: bool = True
    tie_embedding: bool = True
    position_segment_table: bool = False
    smooth_alpha: float | None = None
    balance_qk: bool = False
    gptq: bool = False
    score_margin: float | None = None

    def __post_init__(self):
        if self.gelu not in ("builtin", "tanh"):
            raise ValueError(f"gelu must be 'builtin' or 'tanh', not {self.gelu!r}")
        if self.attention not in ("heads", "per_head"):
            raise ValueError(f"attention must be 'heads' or 'per_head', not {self.attention!r}")
        if self.smooth_alpha is not None and not 0.0 <= self.smooth_alpha <= 1.0:
            raise ValueError(f"smooth_alpha must be in [0, 1] or None, not {self.smooth_alpha!r}")

    @property
    def needs_calibration(self):
        """Whether building the graph needs calibration activations."""
        return self.smooth_alpha is not None or self.balance_qk or self.gptq or self.score_margin is not None

    def to_dict(self):
        return dataclasses.asdict(self)


def _np(variable):
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, dtype=np.float32)


def split_masked_lm(model):
    """Return ``(backbone, mlm_head_or_None)`` for a BERT or ALBERT-style masked LM or backbone
    (or text classifier, whose head is not an MLM head: ``None``)."""
    kind = model_kind(model)
    if kind is None:
        known = ", ".join(n for names in MODEL_KINDS.values() for n in names)
        raise TypeError(f"expected a keras_hub {known}; got {type(model).__name__}")
    if kind == "backbone":
        return model, None
    return model.backbone, model.masked_lm_head if kind == "masked_lm" else None


def classifier_activation(model):
    """``"linear"`` or ``"softmax"``: the activation of a text classifier's output
    layer (both export as ``softmax(W pooled + b)``); anything else raises ``ValueError``."""
    name = getattr(model.output_dense.activation, "__name__", str(model.output_dense.activation))
    if name not in ("linear", "softmax"):
        raise ValueError(f"the classifier's output activation is {name!r}; only logits (no activation) "
                         "or softmax can be exported as probabilities")
    return name


def extract_weights(model, task):
    """Copy every weight the forward pass needs out of a keras-hub BERT or ALBERT as numpy arrays.

    ``weights["layers"]`` has one entry per depth (a shared layer once per depth it
    runs at); ``config["layer_sources"]`` numbers the distinct layer each depth runs
    and ``config["embedding_dim"]`` is the embedding width (an ALBERT-style model also
    has ``weights["embedding_projection"]``, its ``E -> H`` kernel and bias).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    backbone, head = split_masked_lm(model)
    if task == "mlm" and head is None:
        raise ValueError(f"task 'mlm' needs a {' or '.join(MASKED_LM_CLASSES)} (a backbone has no MLM head)")
    if task == "classifier" and not hasattr(model, "output_dense"):
        raise ValueError(f"task 'classifier' needs a keras-hub {' or '.join(CLASSIFIER_CLASSES)}")
    w = {
        "token_embedding": _np(backbone.token_embedding.embeddings),
        "position_embedding": _np(backbone.position_embedding.position_embeddings),
        "segment_embedding": _np(backbone.segment_embedding.embeddings),
        "emb_ln": _ln(backbone.embeddings_layer_norm),
        "pooled": (_np(backbone.pooled_dense.kernel), _np(backbone.pooled_dense.bias)),
        "layers": [],
    }
    projection = embedding_projection(backbone)
    if projection is not None:
        w["embedding_projection"] = (_np(projection.kernel), _np(projection.bias))
    layers = encoder_layers(backbone)
    for layer in layers:
        att = layer._self_attention_layer
        w["layers"].append(
            {
                "q": (_np(att._query_dense.kernel), _np(att._query_dense.bias)),
                "k": (_np(att._key_dense.kernel), _np(att._key_dense.bias)),
                "v": (_np(att._value_dense.kernel), _np(att._value_dense.bias)),
                "o": (_np(att._output_dense.kernel), _np(att._output_dense.bias)),
                "att_ln": _ln(layer._self_attention_layer_norm),
                "ff1": (
                    _np(layer._feedforward_intermediate_dense.kernel),
                    _np(layer._feedforward_intermediate_dense.bias),
                ),
                "ff2": (
                    _np(layer._feedforward_output_dense.kernel),
                    _np(layer._feedforward_output_dense.bias),
                ),
                "ff_ln": _ln(layer._feedforward_layer_norm),
            }
        )
    if task == "classifier":
        w["classifier"] = {"out": (_np(model.output_dense.kernel), _np(model.output_dense.bias)),
                           "activation": classifier_activation(model)}
    if task == "mlm":
        if head.token_embedding is not None:
            out_kernel = _np(head.token_embedding.embeddings).T
        else:
            out_kernel = _np(head._kernel)
        w["mlm"] = {
            "dense": (_np(head._intermediate_dense.kernel), _np(head._intermediate_dense.bias)),
            "dense_activation": str(getattr(head, "intermediate_activation", "gelu")),
            "ln": _ln(head._intermediate_layer_norm),
            "out": (out_kernel, _np(head._bias)),
        }
    distinct = list({id(layer): None for layer in layers})
    cfg = {
        "vocabulary_size": int(backbone.vocabulary_size),
        "num_layers": len(layers),  # the depth run
        "num_heads": int(backbone.num_heads),
        "hidden_dim": int(backbone.hidden_dim),
        "intermediate_dim": int(backbone.intermediate_dim),
        "max_sequence_length": int(backbone.max_sequence_length),
        "num_segments": int(backbone.num_segments),
        "embedding_dim": int(w["token_embedding"].shape[1]),
        "layer_sources": [distinct.index(id(layer)) for layer in layers],
    }
    return w, cfg


def _fold_attention_biases(lw, hidden, beta_in):
    """Rewrite one layer's weights for a residual stream that omits LayerNorm betas.

    The graph carries ``r = LN(x) - beta`` (no ``ADD`` of beta after any
    LayerNorm): ``beta_in`` is the beta of the LayerNorm that feeds the
    layer. The query, value and intermediate projections absorb ``beta W``
    into their biases; the residual sums get the missing beta back through
    the output projection's bias (``beta_in``) and the second feed-forward
    bias (the attention LayerNorm's beta). The key bias is dropped and the
    value bias moves into the output bias (see :class:`GraphOptions`).
    Exact in real arithmetic.
    """
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    beta = f64(beta_in)
    qk, qb = lw["q"]
    vk, vb = lw["v"]
    ok, ob = lw["o"]
    q_bias = f64(qb).reshape(-1) + beta @ f64(qk).reshape(hidden, -1)
    v_bias = f64(vb).reshape(-1) + beta @ f64(vk).reshape(hidden, -1)  # [heads * d]
    o_bias = f64(ob) + v_bias @ f64(ok).reshape(hidden, -1) + beta
    ff_beta = f64(lw["att_ln"][1])
    ff1_bias = f64(lw["ff1"][1]) + ff_beta @ f64(lw["ff1"][0])
    ff2_bias = f64(lw["ff2"][1]) + ff_beta
    as32 = lambda a, like: a.reshape(np.shape(like)).astype(np.float32)  # noqa: E731
    return dict(lw, q=(qk, as32(q_bias, qb)), k=(lw["k"][0], None), v=(vk, None),
                o=(ok, as32(o_bias, ob)), ff1=(lw["ff1"][0], as32(ff1_bias, lw["ff1"][1])),
                ff2=(lw["ff2"][0], as32(ff2_bias, lw["ff2"][1])))


def _ln(layer):
    return (_np(layer.gamma), _np(layer.beta), float(layer.epsilon))


def calibration_stats(weights, config, feeds, *, task, seq_len):
    """Statistics of the projection inputs of the float export graph on ``feeds``.

    Returns ``{key: {"max": per-channel max|x|, "hessian": X^T X, "tokens": n}}``
    (the max over every position, as the int8 calibration sees them; the
    Hessian over non-padding tokens) for ``"{i}.x"`` (query/key/value input of
    layer ``i``), ``"{i}.q"``/``"{i}.k"`` (query/key outputs, max only),
    ``"{i}.c"`` (attention context), ``"{i}.x2"`` (first feed-forward input),
    ``"{i}.h"`` (second feed-forward input) and ``"mlm.x"`` (MLM dense input).
    """
    import tensorflow as tf

    n = len(feeds["input_ids"])
    batch = max(b for b in range(1, 17) if n % b == 0)
    probe = ExportBert(weights, config, task=task, seq_len=seq_len, batch_size=batch, options=GraphOptions())
    probe._taps = {}
    for r in range(0, n, batch):
        probe._keep = np.asarray(feeds["padding_mask"][r : r + batch]).astype(bool).reshape(-1)
        probe._forward(*(tf.constant(np.asarray(feeds[k][r : r + batch], np.int32))
                         for k in ("input_ids", "segment_ids", "padding_mask")))
    return probe._taps


class ExportBert:
    """Builds a ``tf.Module`` whose ``serve`` signature is the export graph.

    Use :meth:`from_keras`; :attr:`module` is what gets saved and converted.

    An ALBERT-style model (``weights["embedding_projection"]``) computes its
    embeddings ``E`` wide and projects them, ``x P + b``, to the hidden width;
    the projection's bias absorbs the embedding LayerNorm's beta (``b + beta P``),
    so the stream entering layer 0 is exact. When ``config["layer_sources"]``
    repeats a layer, the per-layer weights are keyed by content: depths that
    run the same layer read the same variables, which the converter stores
    once (layer 0's folded biases differ from the other depths' and stay apart;
    LayerNorms apply gamma before the ``RSQRT``, see ``_layer_norm``).
    ``smooth_alpha`` and ``gptq`` refuse an ALBERT-style model, ``balance_qk``
    one with shared layers (``ValueError``).
    """

    def __init__(self, weights, config, *, task, seq_len, batch_size=1, options=None,
                 calibration_feeds=None, stats=None):
        import tensorflow as tf

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.task = task
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.config = dict(config)
        self.options = options or GraphOptions()
        if self.seq_len > config["max_sequence_length"]:
            raise ValueError(
                f"seq_len {seq_len} exceeds the model's max_sequence_length "
                f"{config['max_sequence_length']}"
            )
        heads = config["num_heads"]
        hidden = config["hidden_dim"]
        self.head_dim = hidden // heads
        scale = 1.0 / math.sqrt(self.head_dim)
        sources = config["layer_sources"]
        shared = len(set(sources)) < len(sources)
        if "embedding_projection" in weights:
            # the studies' rescalings read layer 0's input as a LayerNorm output (here it is the projection's)
            # and rescale each depth on its own (a shared layer would split into one copy per depth)
            for name, on in (("smooth_alpha", self.options.smooth_alpha is not None), ("gptq", self.options.gptq),
                             ("balance_qk", self.options.balance_qk and shared)):
                if on:
                    raise ValueError(f"{name} does not support an ALBERT-style model"
                                     + (" with shared layers" if name == "balance_qk" else ""))
        self._taps = None
        # shared layers: a gamma folded into the next projections would give depth 0 (fed by the
        # embedding projection) other query/key/value kernels than the depths the shared layer feeds
        self._unfolded_ln = self.options.smooth_alpha is not None or shared
        if self.options.needs_calibration and stats is None:
            if calibration_feeds is None:
                raise ValueError("smooth_alpha, balance_qk and gptq need calibration_feeds")
            stats = calibration_stats(weights, config, calibration_feeds, task=task, seq_len=self.seq_len)
        self.stats = stats
        self.score_ranges = None  # with score_margin: the attention scores' int8 ranges, set after conversion
        if self.options.score_margin is not None:
            m = float(self.options.score_margin)
            self.score_ranges = [(stats[f"{i}.s"]["rowmax_min"] - m, stats[f"{i}.s"]["rowmax_max"])
                                 for i in range(len(weights["layers"]))]
        # the gamma the converter folds into each projection fed by a LayerNorm (GPTQ without smoothing)
        gammas = [weights["emb_ln"][0]] + [lw["ff_ln"][0] for lw in weights["layers"]]
        self._folded_gamma = [(gammas[i], lw["att_ln"][0]) for i, lw in enumerate(weights["layers"])]
        self._folded_gamma.append(gammas[-1])  # the MLM dense input
        # smoothing, query/key balancing and GPTQ (off in every recipe) live in the studies' module
        rescale = self.options.smooth_alpha is not None or self.options.balance_qk or self.options.gptq
        if rescale:
            from mobile_bert_distill.export import experimental
        plan = None
        if self.options.smooth_alpha is not None:
            plan = experimental.smoothing_plan(weights, stats, scale, alpha=self.options.smooth_alpha,
                                               hidden=hidden, task=task)
        if plan is not None:  # each LayerNorm that feeds projections writes x / s
            def div_gamma(ln, s):
                return ln if s is None else ((ln[0] / s).astype(np.float32),) + tuple(ln[1:])

            weights = dict(weights, emb_ln=div_gamma(weights["emb_ln"], plan["in"][0]),
                           layers=[dict(lw, att_ln=div_gamma(lw["att_ln"], plan["mid"][i]),
                                        ff_ln=div_gamma(lw["ff_ln"], plan["in"][i + 1]))
                                   for i, lw in enumerate(weights["layers"])])

        module = tf.Module()
        by_content = {}  # shared layers: one variable per distinct per-layer value

        def var(name, value, share=False):
            value = np.asarray(value, dtype=np.float32)
            key = (value.shape, value.tobytes())
            v = by_content.get(key) if share and shared else None
            if v is None:
                v = tf.Variable(value, trainable=False, name=name)
                if share and shared:
                    by_content[key] = v
            setattr(module, name, v)
            return v

        def lvar(name, value):
            return var(name, value, share=True)

        emb = weights["token_embedding"]
        self._inv_gamma = None
        if task == "mlm" and self.options.tie_embedding:
            gamma, beta, _ = weights["mlm"]["ln"]
            out_k, out_b = weights["mlm"]["out"]
            tied = np.allclose(out_k, emb.T, atol=0, rtol=0)
            if tied and np.min(np.abs(gamma)) >= 1e-3:
                g64 = gamma.astype(np.float64)
                emb = (emb.astype(np.float64) * g64).astype(np.float32)       # E' = E diag(gamma)
                self._inv_gamma = (1.0 / g64).astype(np.float32)
                self._tied_bias = (beta.astype(np.float64) @ weights["token_embedding"].T.astype(np.float64)
                                   + out_b).astype(np.float32)
        var("token_embedding", emb)
        if self.options.position_segment_table:
            pos = weights["position_embedding"][: self.seq_len].astype(np.float64)
            seg = weights["segment_embedding"].astype(np.float64)
            if len(seg) == 2:  # positions + segment 0 in the table, segment 1 as a difference
                var("position_segment_embedding", (pos + seg[0]).astype(np.float32))
                var("segment_delta", (seg[1] - seg[0]).astype(np.float32))
            else:
                table = (seg[:, None, :] + pos[None, :, :]).reshape(-1, pos.shape[-1])
                var("position_segment_embedding", table.astype(np.float32))
        else:
            var("position_embedding", weights["position_embedding"][: self.seq_len])
            var("segment_embedding", weights["segment_embedding"])
        self._emb_ln = self._ln_vars(var, "emb_ln", weights["emb_ln"])
        self._layers = []
        # the beta each layer's output stream omits (a staged export adds it back before an exit), and
        # the LayerNorm gamma in the stream entering each layer, which the converter folds into the
        # projections reading it (None where it cannot: unfolded LayerNorms, ALBERT's E -> H projection)
        self.stream_betas = [np.asarray(lw["ff_ln"][1], np.float32) for lw in weights["layers"]]
        self.stream_gammas = [None] * len(weights["layers"])
        if not self._unfolded_ln:
            first = None if "embedding_projection" in weights else weights["emb_ln"][0]
            self.stream_gammas = [first] + [lw["ff_ln"][0] for lw in weights["layers"][:-1]]
        beta_in = weights["emb_ln"][1]
        self._projection = None
        if "embedding_projection" in weights:  # ALBERT-style: x P + b reads LN(x) - beta, so b' = b + beta P
            p_k, p_b = weights["embedding_projection"]
            p_b = p_b.astype(np.float64) + beta_in.astype(np.float64) @ p_k.astype(np.float64)
            self._projection = (var("emb_proj_k", p_k), var("emb_proj_b", p_b.astype(np.float32)))
            beta_in = np.zeros(hidden, np.float32)
        for i, lw in enumerate(weights["layers"]):
            lw, beta_in = _fold_attention_biases(lw, hidden, beta_in), lw["ff_ln"][1]
            qk, qb = lw["q"]
            qk, qb = qk * scale, qb * scale  # fold 1/sqrt(d) into the query projection
            layer = {}
            flat = lambda k: k.reshape(hidden, hidden)  # noqa: E731  [H, heads, d] -> [H, H]
            if rescale:
                qk, qb, lw = experimental.rescale_layer(i, qk, qb, lw, stats, plan, options=self.options,
                                                        hidden=hidden, folded_gamma=self._folded_gamma[i])
            if plan is not None:
                layer["res_in"] = var(f"l{i}_res_in", plan["in"][i])
                layer["res_mid"] = var(f"l{i}_res_mid", plan["mid"][i])
            if self.options.attention == "per_head":
                for name, (k, b) in (("q", (qk, qb)), ("k", lw["k"]), ("v", lw["v"])):
                    layer[name] = [
                        (lvar(f"l{i}_{name}{h}_k", k[:, h, :]),
                         None if b is None else lvar(f"l{i}_{name}{h}_b", b[h]))
                        for h in range(heads)
                    ]
            elif self.options.fuse_qkv:
                kernel = np.concatenate([flat(qk), flat(lw["k"][0]), flat(lw["v"][0])], axis=1)
                bias = np.concatenate([qb.reshape(-1), np.zeros(2 * hidden, np.float32)])
                layer["qkv"] = (lvar(f"l{i}_qkv_k", kernel), lvar(f"l{i}_qkv_b", bias))
            else:
                for name, (k, b) in (("q", (qk, qb)), ("k", lw["k"]), ("v", lw["v"])):
                    layer[name] = (lvar(f"l{i}_{name}_k", flat(k)),
                                   None if b is None else lvar(f"l{i}_{name}_b", b.reshape(-1)))
            ok, ob = lw["o"]
            layer["o"] = (lvar(f"l{i}_o_k", ok.reshape(hidden, hidden)), lvar(f"l{i}_o_b", ob))
            layer["att_ln"] = self._ln_vars(lvar, f"l{i}_att_ln", lw["att_ln"])
            layer["ff1"] = (lvar(f"l{i}_ff1_k", lw["ff1"][0]), lvar(f"l{i}_ff1_b", lw["ff1"][1]))
            layer["ff2"] = (lvar(f"l{i}_ff2_k", lw["ff2"][0]), lvar(f"l{i}_ff2_b", lw["ff2"][1]))
            layer["ff_ln"] = self._ln_vars(lvar, f"l{i}_ff_ln", lw["ff_ln"])
            self._layers.append(layer)
        if task in ("encoder", "classifier"):
            self._final_beta = var("final_ln_beta", beta_in)  # the stream omits it (see above)
            self._pooled = (var("pooled_k", weights["pooled"][0]), var("pooled_b", weights["pooled"][1]))
            if task == "classifier":
                out_k, out_b = weights["classifier"]["out"]
                self._cls_out = (var("cls_out_k", out_k), var("cls_out_b", out_b))
        else:
            m = weights["mlm"]
            dense_b = (m["dense"][1].astype(np.float64)
                       + beta_in.astype(np.float64) @ m["dense"][0].astype(np.float64))  # reads LN(x) - beta
            dense_k = m["dense"][0]
            if plan is not None and plan["in"][-1] is not None:
                dense_k = dense_k * plan["in"][-1][:, None]
            if self.options.gptq:
                h = stats["mlm.x"]["hessian"]
                if plan is not None and plan["in"][-1] is not None:
                    h = h / np.outer(plan["in"][-1], plan["in"][-1])
                g = np.ones(len(h)) if plan is not None else np.asarray(self._folded_gamma[-1], np.float64)
                dense_k = experimental.gptq_folded(dense_k, h, g)
            self._mlm_dense = (var("mlm_dense_k", dense_k), var("mlm_dense_b", dense_b.astype(np.float32)))
            self._mlm_exact_gelu = "approximate" not in m["dense_activation"]
            self._mlm_ln = self._ln_vars(var, "mlm_ln", m["ln"])
            if self._inv_gamma is not None:
                var("inv_gamma", self._inv_gamma)
                self._mlm_out_b = var("mlm_out_b", self._tied_bias)
            else:
                self._mlm_out = (var("mlm_out_k", m["out"][0]), var("mlm_out_b", m["out"][1]))

        spec = [
            tf.TensorSpec([self.batch_size, self.seq_len], tf.int32, name=n)
            for n in ("input_ids", "segment_ids", "padding_mask")
        ]
        # autograph off: the forward is straight-line Python (a loop over layers)
        module.serve = tf.function(self._forward, input_signature=spec, autograph=False)
        self.module = module

    @classmethod
    def from_keras(cls, model, *, task, seq_len, batch_size=1, options=None, calibration_feeds=None):
        weights, config = extract_weights(model, task)
        return cls(weights, config, task=task, seq_len=seq_len, batch_size=batch_size, options=options,
                   calibration_feeds=calibration_feeds)

    def _tap(self, key, t, hessian=True):
        """Record statistics of ``t`` while :func:`calibration_stats` runs (else nothing)."""
        if self._taps is None:
            return
        a = np.asarray(t.numpy(), np.float64).reshape(-1, t.shape[-1])
        st = self._taps.setdefault(key, {"max": np.zeros(a.shape[1]), "hessian": 0.0, "tokens": 0})
        st["max"] = np.maximum(st["max"], np.abs(a).max(0))
        if hessian:
            real = a[self._keep]  # non-padding tokens, [B * S]
            st["hessian"] = st["hessian"] + real.T @ real
            st["tokens"] += len(real)

    def _tap_scores(self, key, s):
        """Record the range of attention-score row maxima over real query rows."""
        rowmax = np.moveaxis(s.numpy().max(-1), 1, -1).reshape(-1, s.shape[1])[self._keep]  # [tokens, heads]
        st = self._taps.setdefault(key, {"rowmax_min": np.inf, "rowmax_max": -np.inf})
        st["rowmax_min"] = min(st["rowmax_min"], float(rowmax.min()))
        st["rowmax_max"] = max(st["rowmax_max"], float(rowmax.max()))

    @staticmethod
    def _ln_vars(var, name, ln):
        gamma, beta, eps = ln
        return var(name + "_g", gamma), var(name + "_b", beta), eps

    # --- building blocks -------------------------------------------------
    @staticmethod
    def _dense(x, kb):
        import tensorflow as tf

        k, b = kb
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, [-1, k.shape[0]]), k)
        if b is not None:
            y = y + b
        return tf.reshape(y, tf.concat([shape[:-1], [k.shape[1]]], axis=0))

    def _layer_norm(self, x, ln, split=False, with_gamma=True):
        """``LN(x)``; with ``split``, ``LN(x) - beta`` (see ``_fold_attention_biases``), and without
        ``with_gamma`` as well, ``(LN(x) - beta) / gamma``: the normalised ``x`` alone."""
        import tensorflow as tf

        gamma, beta, eps = ln
        if not with_gamma:
            gamma = None
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        d = x - mean
        var = tf.reduce_mean(d * d, axis=-1, keepdims=True)
        if self.options.layer_norm_epsilon:
            var = var + eps
        if split and self._unfolded_ln and gamma is not None:
            # gamma before the rsqrt: the converter folds a constant MUL that feeds
            # FULLY_CONNECTEDs into their weights, which would undo smoothing (the
            # projections would read the normalized x again) and GPTQ's grid, and
            # give a shared layer's depths different kernels
            return (d * gamma) * tf.math.rsqrt(var)
        y = d * tf.math.rsqrt(var)
        if split:
            return y if gamma is None else y * gamma
        return y if gamma is None else y * gamma + beta

    def _gelu(self, x, exact=False):
        import tensorflow as tf

        if self.options.gelu == "builtin":
            return tf.nn.gelu(x, approximate=not exact)
        if exact:
            return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + tf.math.tanh(c * (x + 0.044715 * x * x * x)))

    def _attention(self, x, layer, bias):
        import tensorflow as tf

        B, S = self.batch_size, self.seq_len
        heads, d = self.config["num_heads"], self.head_dim
        hidden = self.config["hidden_dim"]
        if self.options.attention == "per_head":
            ctx = []
            for h in range(heads):
                q = self._dense(x, layer["q"][h])
                k = self._dense(x, layer["k"][h])
                v = self._dense(x, layer["v"][h])
                s = tf.matmul(q, k, transpose_b=True) + bias  # [B, S, S]
                p = tf.nn.softmax(s, axis=-1)
                ctx.append(tf.matmul(p, v))
            c = tf.concat(ctx, axis=-1)
        else:
            if self.options.fuse_qkv:
                q, k, v = tf.split(self._dense(x, layer["qkv"]), 3, axis=-1)
            else:
                q, k, v = (self._dense(x, layer[n]) for n in ("q", "k", "v"))

            def heads_first(t):
                return tf.transpose(tf.reshape(t, [B, S, heads, d]), [0, 2, 1, 3])

            self._tap(f"{self._tap_layer}.x", x)
            self._tap(f"{self._tap_layer}.q", q, hessian=False)
            self._tap(f"{self._tap_layer}.k", k, hessian=False)
            q, k, v = heads_first(q), heads_first(k), heads_first(v)
            s = tf.matmul(q, k, transpose_b=True) + bias  # [B, h, S, S]
            if self._taps is not None:
                self._tap_scores(f"{self._tap_layer}.s", s)
            p = tf.nn.softmax(s, axis=-1)
            c = tf.reshape(tf.transpose(tf.matmul(p, v), [0, 2, 1, 3]), [B, S, hidden])
            self._tap(f"{self._tap_layer}.c", c)
        return self._dense(c, layer["o"])

    # --- stages of the forward pass (a staged early-exit export calls them one by one) ---
    def embed(self, input_ids, segment_ids, with_gamma=True):
        """The embeddings stream ``[B, S, H]`` entering layer 0 (it omits its LayerNorm's beta,
        like every stream between layers; see ``_fold_attention_biases``). Without ``with_gamma``
        it omits the gamma too (``stream_gammas[0]``, which must not be None): the stream as the
        int8 model quantizes it, which a staged export passes on."""
        import tensorflow as tf

        m = self.module
        x = tf.gather(m.token_embedding, input_ids)
        if self._inv_gamma is not None:
            x = x * m.inv_gamma  # the table holds E diag(gamma); see GraphOptions.tie_embedding
        if self.options.position_segment_table:
            positions = tf.range(self.seq_len, dtype=segment_ids.dtype)[None, :]
            if hasattr(m, "segment_delta"):
                # "+ 0 * segment_ids" keeps the index an input-dependent tensor, so the
                # converter keeps the (int8) table and its GATHER instead of folding
                # them into a float constant
                x = x + tf.gather(m.position_segment_embedding, positions + 0 * segment_ids)
                # reshape the int32 ids, then cast: a float RESHAPE here would be quantized
                # with a range calibrated on segment 0 alone (scale ~1e-8), and segment 1
                # would vanish from an int8 model
                seg = tf.cast(tf.reshape(segment_ids, [self.batch_size, self.seq_len, 1]), tf.float32)
                x = x + seg * m.segment_delta
            else:
                x = x + tf.gather(m.position_segment_embedding, segment_ids * self.seq_len + positions)
        else:
            x = x + m.position_embedding + tf.gather(m.segment_embedding, segment_ids)
        x = self._layer_norm(x, self._emb_ln, split=True, with_gamma=with_gamma)  # every x below omits its beta
        if self._projection is not None:
            x = self._dense(x, self._projection)  # ALBERT-style E -> H: exact (its bias took the beta)
        return x

    def mask_bias(self, padding_mask):
        """The additive attention bias of the padded keys, shared by every layer."""
        import tensorflow as tf

        # the mask bias is built in its final shape from reshaped int32 ids (CAST, SUB, MUL
        # and the score ADD only): no float RESHAPE/STRIDED_SLICE that an int8 model would
        # quantize with a range calibrated on whatever padding the calibration had
        shape = [self.batch_size, 1, self.seq_len] if self.options.attention == "per_head" \
            else [self.batch_size, 1, 1, self.seq_len]
        keep = tf.cast(tf.reshape(padding_mask, shape), tf.float32)
        return (1.0 - keep) * self.options.mask_bias  # [B, 1, S] or [B, 1, 1, S]

    def encoder_layer(self, i, x, bias, with_gamma=True):
        """Layer ``i`` (from 0) on the stream ``x``; returns the next stream, which omits its
        LayerNorm's beta (``stream_betas[i]``), and without ``with_gamma`` its gamma too
        (``stream_gammas[i + 1]``, which must not be None)."""
        layer = self._layers[i]
        self._tap_layer = i
        # with smoothing, x is the LayerNorm output divided by res_in: the residual multiplies it back
        res = x * layer["res_in"] if "res_in" in layer else x
        x = self._layer_norm(res + self._attention(x, layer, bias), layer["att_ln"], split=True)
        self._tap(f"{i}.x2", x)
        res = x * layer["res_mid"] if "res_mid" in layer else x
        h = self._gelu(self._dense(x, layer["ff1"]))
        self._tap(f"{i}.h", h)
        return self._layer_norm(res + self._dense(h, layer["ff2"]), layer["ff_ln"], split=True, with_gamma=with_gamma)

    def first_token(self, x):
        """The ``[CLS]`` vectors ``[B, H]`` of a stream ``[B, S, H]`` (SLICE + RESHAPE rather than
        ``x[:, 0]``, a STRIDED_SLICE that XNNPACK leaves outside)."""
        import tensorflow as tf

        hidden = self.config["hidden_dim"]
        return tf.reshape(tf.slice(x, [0, 0, 0], [self.batch_size, 1, hidden]), [self.batch_size, hidden])

    def classifier_probabilities(self, x):
        """The classifier head on the last stream ``x`` (beta added back): pooler (dense + tanh on
        ``[CLS]``), dense to the classes, softmax."""
        import tensorflow as tf

        pooled = tf.math.tanh(self._dense(self.first_token(x), self._pooled))
        return tf.nn.softmax(self._dense(pooled, self._cls_out), axis=-1)

    def _forward(self, input_ids, segment_ids, padding_mask):
        import tensorflow as tf

        m = self.module
        x = self.embed(input_ids, segment_ids)
        bias = self.mask_bias(padding_mask)
        for i in range(len(self._layers)):
            x = self.encoder_layer(i, x, bias)
        if self.task != "mlm":
            x = x + m.final_ln_beta
        if self.task == "encoder":
            pooled = tf.math.tanh(self._dense(x[:, 0, :], self._pooled))
            return {"sequence_output": x, "pooled_output": pooled}
        if self.task == "classifier":
            return {"probabilities": self.classifier_probabilities(x)}
        self._tap("mlm.x", x)
        h = self._gelu(self._dense(x, self._mlm_dense), exact=self._mlm_exact_gelu)
        if self._inv_gamma is None:
            h = self._layer_norm(h, self._mlm_ln)
            return {"logits": self._dense(h, self._mlm_out)}
        # gamma lives in the shared table, beta in the bias: logits = norm(h) E'^T + b'
        _, _, eps = self._mlm_ln
        h = self._layer_norm(h, (None, None, eps))
        flat = tf.reshape(h, [-1, h.shape[-1]])
        logits = tf.matmul(flat, m.token_embedding, transpose_b=True) + self._mlm_out_b
        return {"logits": tf.reshape(logits, [self.batch_size, self.seq_len, -1])}
