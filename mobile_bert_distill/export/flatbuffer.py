"""Post-conversion fix-ups that let XNNPACK run a full-int8 BERT graph.

TFLite's calibrator picks an asymmetric int8 range for every activation. Two
XNNPACK rules (checked by the delegate when it claims nodes) then push int8
ops back onto the slow built-in kernels, splitting the graph into dozens of
delegate partitions:

* an int8 ``BATCH_MATMUL`` is delegated only when its right-hand operand has
  zero point 0 (XNNPACK's int8 GEMM treats the right side like weights);
* an int8 ``ADD``/``SUB`` is delegated only when each
  ``input_scale / output_scale`` lies in ``[2**-10, 2**8)``; the ``x - mean(x)``
  of LayerNorm has a mean whose calibrated range is ~1000x narrower than x.

:func:`fix_int8_for_xnnpack` rewrites the quantization parameters in the
flatbuffer, without touching weights: the right operands of ``BATCH_MATMUL``
(and every tensor tied to them through ``RESHAPE``/``TRANSPOSE``) become
symmetric over the same real range (at most one bit of resolution lost), and
too-narrow ``ADD``/``SUB`` inputs get the smallest scale the rule allows
(finer than the output's own rounding step, so the sum loses nothing).
Producers requantize to whatever their output parameters say, so the graph
stays exact with respect to the new parameters.

Example::

    from mobile_bert_distill.export.flatbuffer import fix_int8_for_xnnpack
    fixed, changes = fix_int8_for_xnnpack(open("int8.tflite", "rb").read())
    print(changes)  # {'symmetric_matmul_operands': 48, 'widened_add_inputs': 25}
"""

from __future__ import annotations

import numpy as np

_PASS_THROUGH = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")
_MIN_RATIO = 2.0 ** -10


def _op_names(model):
    from ai_edge_litert.tools import flatbuffer_utils as fu

    return [fu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]


class _DedupBuilder:
    """A ``flatbuffers.Builder`` that writes each distinct numeric vector once.

    An int8 model repeats the same small vectors hundreds of times: the int64
    zero points of every per-channel tensor (all zeros, 8 bytes a channel),
    shapes such as ``[1, 128, 48]``, shape signatures. FlatBuffers lets many
    tables point at one vector (offsets only have to point forward, which a
    vector written earlier always does), so the file stays a valid TFLite
    model that every reader accepts; only the bytes shrink. Weight buffers
    (byte vectors with their own 16-byte alignment) are written as usual.
    """

    def __new__(cls, initial_size=1024):
        import flatbuffers

        class Builder(flatbuffers.Builder):
            def __init__(self, size):
                super().__init__(size)
                self._vectors = {}

            def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
                if x.dtype.itemsize == 1:
                    return super().CreateNumpyVector(x)
                key = (x.dtype.str, x.tobytes())
                offset = self._vectors.get(key)
                if offset is None:
                    offset = self._vectors[key] = super().CreateNumpyVector(x)
                return offset

        return Builder(initial_size)


def pack_model(model):
    """Serialize a ``schema_py_generated.ModelT`` with shared duplicate vectors
    (see :class:`_DedupBuilder`); returns ``bytes``."""
    builder = _DedupBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quant_key(q):
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return (np.asarray(q.scale, np.float32).tobytes(), np.asarray(q.zeroPoint, np.int64).tobytes(),
            int(q.quantizedDimension or 0))


def share_constants(model):
    """Point every op at one copy of each distinct constant tensor, then drop
    the tensors and buffers nothing reads any more (in place; returns the
    number of tensors removed).

    The converter writes a fresh constant for each use: the ``[0, 2, 1, 3]``
    permutation of every attention ``TRANSPOSE``, the ``[-1]`` axis of every
    LayerNorm ``MEAN``, the target shape of every ``RESHAPE``. Constants are
    read-only, so one tensor can feed them all.
    """
    removed = 0
    for graph in model.subgraphs:
        tensors = graph.tensors
        first = {}
        alias = {}
        for i, t in enumerate(tensors):
            buf = model.buffers[t.buffer] if t.buffer else None
            if buf is None or buf.data is None or len(buf.data) == 0 or t.isVariable:
                continue
            key = (t.type, tuple(int(d) for d in t.shape), bytes(buf.data), _quant_key(t.quantization))
            alias[i] = first.setdefault(key, i)
        used = set(int(x) for x in graph.inputs) | set(int(x) for x in graph.outputs)
        for op in graph.operators:
            if op.inputs is not None:
                op.inputs = [alias.get(int(x), int(x)) if int(x) >= 0 else int(x) for x in op.inputs]
                used.update(int(x) for x in op.inputs if int(x) >= 0)
            used.update(int(x) for x in op.outputs)
            if op.intermediates is not None:
                used.update(int(x) for x in op.intermediates)
        for sig in model.signatureDefs or []:
            used.update(int(t.tensorIndex) for t in list(sig.inputs or []) + list(sig.outputs or []))
        if len(used) == len(tensors):
            continue
        new_index = {}
        kept = []
        for i, t in enumerate(tensors):
            if i in used:
                new_index[i] = len(kept)
                kept.append(t)
        removed += len(tensors) - len(kept)
        graph.tensors = kept
        remap = lambda xs: [new_index[int(x)] if int(x) >= 0 else int(x) for x in xs]  # noqa: E731
        graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
        for op in graph.operators:
            op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
            if op.intermediates is not None:
                op.intermediates = remap(op.intermediates)
        for sig in model.signatureDefs or []:
            if sig.subgraphIndex == model.subgraphs.index(graph):
                for t in list(sig.inputs or []) + list(sig.outputs or []):
                    t.tensorIndex = new_index[int(t.tensorIndex)]
    # buffers nothing points at any more (buffer 0 stays: the empty sentinel)
    referenced = {0} | {int(t.buffer) for g in model.subgraphs for t in g.tensors}
    referenced |= {int(m.buffer) for m in (model.metadata or [])}
    if len(referenced) < len(model.buffers):
        order = [i for i in range(len(model.buffers)) if i in referenced]
        new_buf = {old: new for new, old in enumerate(order)}
        model.buffers = [model.buffers[i] for i in order]
        for g in model.subgraphs:
            for t in g.tensors:
                t.buffer = new_buf[int(t.buffer)]
        for m in model.metadata or []:
            m.buffer = new_buf[int(m.buffer)]
    return removed


def drop_empty_quantization(model):
    """Remove the empty quantization tables of float tensors (in place)."""
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is not None and (q.scale is None or len(q.scale) == 0) and q.details is None:
                tensor.quantization = None


def compact(model_bytes):
    """Shrink TFLite bytes without changing what the model computes: one copy
    of each distinct constant (:func:`share_constants`), no empty
    quantization tables, duplicate vectors shared (:func:`pack_model`).
    Returns ``(bytes, {"bytes_saved": n, "constants_shared": k})``."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    removed = share_constants(model)
    drop_empty_quantization(model)
    out = pack_model(model)
    return out, {"bytes_saved": len(model_bytes) - len(out), "constants_shared": removed}


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _qparams(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _set_qparams(tensor, scale, zero_point):
    tensor.quantization.scale = np.asarray([scale], dtype=np.float32)
    tensor.quantization.zeroPoint = np.asarray([zero_point], dtype=np.int64)


def fix_int8_for_xnnpack(model_bytes):
    """Return ``(new_model_bytes, changes)``; see the module docstring."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    names = _op_names(model)
    changes = {"symmetric_matmul_operands": 0, "widened_add_inputs": 0}
    for graph in model.subgraphs:
        tensors = graph.tensors
        ops = graph.operators
        groups = _UnionFind()
        producer = {}
        for op in ops:
            name = names[op.opcodeIndex]
            for t in op.outputs:
                producer[int(t)] = op
            if name in _PASS_THROUGH and len(op.inputs) and len(op.outputs):
                groups.union(int(op.inputs[0]), int(op.outputs[0]))
            elif name == "SPLIT" and len(op.inputs) == 2:
                # XNNPACK delegates an int8 SPLIT only when every output keeps the
                # input's parameters (a fused QKV split feeds BATCH_MATMUL operands)
                for out in op.outputs:
                    groups.union(int(op.inputs[1]), int(out))
        members = {}
        for t in range(len(tensors)):
            members.setdefault(groups.find(t), []).append(t)

        def is_int8_activation(t):
            tensor = tensors[t]
            return tensor.type == schema.TensorType.INT8 and t in producer and _qparams(tensor)

        def group_of(t):
            return members[groups.find(t)]

        def retarget(t, new_scale, new_zero):
            for m in group_of(t):
                if _qparams(tensors[m]) is not None:
                    _set_qparams(tensors[m], new_scale, new_zero)

        for op in ops:
            name = names[op.opcodeIndex]
            if name == "BATCH_MATMUL" and len(op.inputs) >= 2:
                rhs = int(op.inputs[1])
                if not is_int8_activation(rhs):
                    continue
                scale, zero = _qparams(tensors[rhs])
                if zero == 0:
                    continue
                lo, hi = (-128 - zero) * scale, (127 - zero) * scale
                retarget(rhs, max(abs(lo), abs(hi)) / 127.0, 0)
                changes["symmetric_matmul_operands"] += 1
            elif name in ("ADD", "SUB") and len(op.inputs) == 2:
                out = _qparams(tensors[int(op.outputs[0])])
                if out is None or tensors[int(op.outputs[0])].type != schema.TensorType.INT8:
                    continue
                for t in (int(i) for i in op.inputs):
                    if not is_int8_activation(t):
                        continue
                    scale, zero = _qparams(tensors[t])
                    floor = out[0] * _MIN_RATIO * 1.001
                    if scale >= floor:
                        continue
                    lo, hi = (-128 - zero) * scale, (127 - zero) * scale
                    center = 0.5 * (lo + hi)
                    new_zero = int(np.clip(round(-center / floor), -128, 127))
                    retarget(t, floor, new_zero)
                    changes["widened_add_inputs"] += 1
    return pack_model(model), changes


def share_tied_embedding(model_bytes):
    """Store a tied input/output embedding once in an int8 model.

    BERT's MLM output projection reuses the token-embedding matrix. The
    converter quantizes it twice: per-tensor for the input ``GATHER`` and
    per-channel for the output ``FULLY_CONNECTED`` (with a scale and an int64
    zero point per vocabulary row), which is ~40% of an int8 student's file.
    This pass requantizes the matrix once, symmetric per-tensor over its full
    range (the converter's lookup table is clipped to the range of the rows
    seen in calibration), points both ops at it and rescales the output bias. Returns ``(bytes, changes)``;
    the model is returned unchanged when no tied pair is found.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    names = _op_names(model)
    changes = {"shared_embedding_rows": 0}
    for graph in model.subgraphs:
        tensors = graph.tensors
        gathers = [op for op in graph.operators if names[op.opcodeIndex] == "GATHER"]
        fcs = [op for op in graph.operators if names[op.opcodeIndex] == "FULLY_CONNECTED"]

        def const_int8(t):
            tensor = tensors[t]
            buf = model.buffers[tensor.buffer]
            if tensor.type != schema.TensorType.INT8 or buf.data is None or len(buf.data) == 0:
                return None
            return np.frombuffer(bytes(buf.data), dtype=np.int8).reshape(tensor.shape)

        for g in gathers:
            table_idx = int(g.inputs[0])
            table = const_int8(table_idx)
            if table is None or table.ndim != 2:
                continue
            gq = tensors[table_idx].quantization
            if gq is None or len(gq.scale) != 1:
                continue
            g_real = (table.astype(np.float32) - gq.zeroPoint[0]) * gq.scale[0]
            for fc in fcs:
                w_idx = int(fc.inputs[1])
                if w_idx == table_idx or list(tensors[w_idx].shape) != list(table.shape):
                    continue
                weights = const_int8(w_idx)
                wq = tensors[w_idx].quantization
                if weights is None or wq is None or wq.scale is None:
                    continue
                w_scale = np.asarray(wq.scale, np.float32).reshape(-1, 1) if len(wq.scale) > 1 else np.float32(wq.scale[0])
                w_real = weights.astype(np.float32) * w_scale
                # The GATHER table's range comes from calibrating the looked-up
                # rows, so rare rows are clipped: compare the elements that fit.
                tol = 1.01 * (float(np.max(wq.scale)) + float(gq.scale[0]))
                if np.mean(np.abs(w_real - g_real) <= tol) < 0.98:
                    continue  # not the same matrix
                scale = float(np.max(np.abs(w_real))) / 127.0
                shared = np.clip(np.round(w_real / scale), -127, 127).astype(np.int8)
                model.buffers[tensors[table_idx].buffer].data = np.frombuffer(shared.tobytes(), np.uint8)
                _set_qparams(tensors[table_idx], scale, 0)
                for out in g.outputs:
                    if _qparams(tensors[int(out)]) is not None:
                        _set_qparams(tensors[int(out)], scale, 0)
                # bias: int32 at scale input_scale * weight_scale[c]
                in_q = _qparams(tensors[int(fc.inputs[0])])
                if len(fc.inputs) > 2 and int(fc.inputs[2]) >= 0 and in_q is not None:
                    b_idx = int(fc.inputs[2])
                    b_t = tensors[b_idx]
                    b_buf = model.buffers[b_t.buffer]
                    in_scale = in_q[0]
                    old = np.frombuffer(bytes(b_buf.data), dtype=np.int32).astype(np.float64)
                    real = old * np.asarray(b_t.quantization.scale, np.float64)
                    new_scale = in_scale * scale
                    b_buf.data = np.frombuffer(
                        np.round(real / new_scale).astype(np.int32).tobytes(), np.uint8)
                    b_t.quantization.scale = np.asarray([new_scale], np.float32)
                    b_t.quantization.zeroPoint = np.asarray([0], np.int64)
                    b_t.quantization.quantizedDimension = 0
                model.buffers[tensors[w_idx].buffer].data = None
                tensors[w_idx].quantization = None  # orphaned: drop its 4928 scales/zero points
                fc.inputs[1] = table_idx
                changes["shared_embedding_rows"] += int(table.shape[0])
                break
    return pack_model(model), changes


def float_output_projection(model_bytes):
    """Let the final ``FULLY_CONNECTED`` (the MLM logits) produce float output.

    In a full-int8 graph the logits are requantized to 256 levels over their
    whole range (~0.1 apart for a trained student) before the final
    ``DEQUANTIZE``, so near-ties among the top candidates flip. This pass turns
    that one op into a dynamic-range ("hybrid") ``FULLY_CONNECTED``: its int8
    input is dequantized, XNNPACK re-quantizes it per row on the fly, the GEMM
    still runs on the int8 weights, and it writes float32 logits directly
    (the trailing ``DEQUANTIZE`` is removed). Returns ``(bytes, changes)``.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    names = _op_names(model)
    changes = {"float_output_projections": 0}
    dq_code = next((i for i, n in enumerate(names) if n == "DEQUANTIZE"), None)
    if dq_code is None:
        return bytes(model_bytes), changes
    for graph in model.subgraphs:
        tensors, ops = graph.tensors, graph.operators
        outputs = {int(t) for t in graph.outputs}
        consumers = {}
        for op in ops:
            for t in op.inputs:
                consumers.setdefault(int(t), []).append(op)
        for k, dq in enumerate(list(ops)):
            if names[dq.opcodeIndex] != "DEQUANTIZE" or int(dq.outputs[0]) not in outputs:
                continue
            q_out = int(dq.inputs[0])
            fc = next((op for op in ops if int(q_out) in [int(o) for o in op.outputs]), None)
            if fc is None or names[fc.opcodeIndex] != "FULLY_CONNECTED" or len(consumers.get(q_out, [])) != 1:
                continue
            x_idx, w_idx = int(fc.inputs[0]), int(fc.inputs[1])
            w_q = tensors[w_idx].quantization
            if tensors[x_idx].type != schema.TensorType.INT8 or w_q is None or any(int(z) != 0 for z in w_q.zeroPoint):
                continue
            # The float input: when the int8 input is just a QUANTIZE of a float
            # tensor (a float LayerNorm in front), read that tensor itself, which
            # skips a per-tensor rounding of the logits' input; otherwise a new
            # DEQUANTIZE in front of the FC makes a float copy.
            quantizer = next((op for op in ops if int(x_idx) in [int(o) for o in op.outputs]), None)
            if (quantizer is not None and names[quantizer.opcodeIndex] == "QUANTIZE"
                    and tensors[int(quantizer.inputs[0])].type == schema.TensorType.FLOAT32
                    and len(consumers.get(x_idx, [])) == 1):
                fc.inputs[0] = int(quantizer.inputs[0])
                _finish_float_projection(model, fc, dq, ops, tensors, schema)
                ops.remove(quantizer)
                changes["float_output_projections"] += 1
                break
            xf = schema.TensorT()
            xf.shape = list(tensors[x_idx].shape)
            xf.type = schema.TensorType.FLOAT32
            xf.name = (tensors[x_idx].name or b"x") + b"/float"
            xf.buffer = 0
            tensors.append(xf)
            xf_idx = len(tensors) - 1
            new_dq = schema.OperatorT()
            new_dq.opcodeIndex = dq_code
            new_dq.inputs = [x_idx]
            new_dq.outputs = [xf_idx]
            fc.inputs[0] = xf_idx
            _finish_float_projection(model, fc, dq, ops, tensors, schema)
            ops.insert(ops.index(fc), new_dq)
            changes["float_output_projections"] += 1
            break
    return pack_model(model), changes


def _finish_float_projection(model, fc, dq, ops, tensors, schema):
    """Make ``fc`` (already reading a float input) a hybrid op with a float
    bias that writes the graph output of ``dq``, and remove ``dq``."""
    # float bias (float16 + DEQUANTIZE would halve it, but XNNPACK then
    # refuses the hybrid FULLY_CONNECTED: measured)
    if len(fc.inputs) > 2 and int(fc.inputs[2]) >= 0:
        b_t = tensors[int(fc.inputs[2])]
        b_buf = model.buffers[b_t.buffer]
        q = np.frombuffer(bytes(b_buf.data), dtype=np.int32).astype(np.float64)
        real = (q * np.asarray(b_t.quantization.scale, np.float64)).astype(np.float32)
        b_buf.data = np.frombuffer(real.tobytes(), np.uint8)
        b_t.type = schema.TensorType.FLOAT32
        b_t.quantization = None
    fc.outputs[0] = int(dq.outputs[0])
    if fc.builtinOptions is not None:
        fc.builtinOptions.asymmetricQuantizeInputs = True
    ops.remove(dq)


def split_float16_dequantize(model_bytes):
    """Give XNNPACK its own ``DEQUANTIZE`` of each float16 weight that an
    op outside the delegate also reads.

    In a float16 model the tied token-embedding table is one float16
    constant behind one ``DEQUANTIZE`` that feeds both the input ``GATHER``
    (which XNNPACK does not run) and the MLM logits ``FULLY_CONNECTED``.
    XNNPACK unpacks a float16 weight only when every reader of the
    ``DEQUANTIZE`` is delegated, so the logits projection, about a third of
    the student's FLOPs, fell back to the built-in float kernel. This pass
    adds a second ``DEQUANTIZE`` of the same float16 tensor for the
    delegated readers; the file keeps one copy of the table. Returns
    ``(bytes, changes)``.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    names = _op_names(model)
    changes = {"split_dequantize": 0}
    for graph in model.subgraphs:
        tensors, ops = graph.tensors, graph.operators
        readers = {}
        for op in ops:
            for t in op.inputs:
                readers.setdefault(int(t), []).append(op)
        for dq in list(ops):
            if names[dq.opcodeIndex] != "DEQUANTIZE" or tensors[int(dq.inputs[0])].type != schema.TensorType.FLOAT16:
                continue
            out = int(dq.outputs[0])
            outside = [op for op in readers.get(out, []) if names[op.opcodeIndex] == "GATHER"]
            inside = [op for op in readers.get(out, []) if names[op.opcodeIndex] != "GATHER"]
            if not outside or not inside:
                continue
            copy = schema.TensorT()
            copy.shape, copy.type, copy.buffer = list(tensors[out].shape), tensors[out].type, 0
            copy.name = (tensors[out].name or b"w") + b"/delegated"
            tensors.append(copy)
            new_dq = schema.OperatorT()
            new_dq.opcodeIndex, new_dq.inputs, new_dq.outputs = dq.opcodeIndex, [int(dq.inputs[0])], [len(tensors) - 1]
            ops.insert(min(ops.index(op) for op in inside), new_dq)  # next to its readers: one partition
            for op in inside:
                op.inputs = [len(tensors) - 1 if int(t) == out else int(t) for t in op.inputs]
            changes["split_dequantize"] += 1
        if changes["split_dequantize"]:
            _embedding_lookup_first(graph, names)
    return pack_model(model), changes


def _embedding_lookup_first(graph, names, kinds=("GATHER", "CAST")):
    """Move the ops that XNNPACK leaves to the built-in kernels (the lookups
    and casts at the graph's input) and everything they read to the front.

    TFLite cuts delegate partitions along the op order: a delegated
    ``DEQUANTIZE`` listed before an undelegated ``GATHER`` that the rest of
    the graph waits on becomes a partition of its own. Ancestors first, the
    rest in their old order, is still a topological order.
    """
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    early, stack = set(), [op for op in graph.operators if names[op.opcodeIndex] in kinds]
    while stack:
        op = stack.pop()
        if id(op) not in early:
            early.add(id(op))
            stack.extend(producer[int(t)] for t in op.inputs if int(t) in producer)
    graph.operators = ([op for op in graph.operators if id(op) in early]
                       + [op for op in graph.operators if id(op) not in early])


def strip_tensor_names(model_bytes):
    """Drop the names of internal tensors (kept: the signature inputs/outputs).

    The converter names tensors after the fused TF ops (``mul_15;add_15;...``);
    nothing reads them at run time. Returns ``(bytes, changes)``.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    keep = set()
    for sig in model.signatureDefs or []:
        for t in list(sig.inputs or []) + list(sig.outputs or []):
            keep.add(int(t.tensorIndex))
    dropped = 0
    for graph in model.subgraphs:
        for i, tensor in enumerate(graph.tensors):
            if i not in keep and tensor.name:
                dropped += len(tensor.name)
                tensor.name = None
    return pack_model(model), {"name_bytes_dropped": dropped}


def set_attention_score_ranges(model_bytes, ranges):
    """Give the attention-score ``BATCH_MATMUL`` outputs the real ranges ``ranges``.

    ``ranges`` lists one ``(lo, hi)`` per attention layer, in graph order. A
    score matmul is a ``BATCH_MATMUL`` whose left operand is not the
    quantized output of a ``SOFTMAX`` (that one is the context matmul). The
    calibrated range of the scores also covers scores of padded keys, which
    the mask pushes out of the softmax anyway, and far-below-the-row-maximum
    scores whose softmax weight is ~0; a narrower range (computed from the
    float scores that matter, see
    :func:`~mobile_bert_distill.export.graph.calibration_stats`) gives the
    int8 scores a finer step. The producer requantizes (saturating) to the
    new parameters and the consumer reads them, so nothing else changes.
    Returns ``(bytes, changes)``.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    names = _op_names(model)
    changes = {"score_ranges_set": 0}
    for graph in model.subgraphs:
        producer = {int(t): op for op in graph.operators for t in op.outputs}
        scores = []
        for op in graph.operators:
            if names[op.opcodeIndex] != "BATCH_MATMUL":
                continue
            lhs = producer.get(int(op.inputs[0]))
            src = producer.get(int(lhs.inputs[0])) if lhs is not None and names[lhs.opcodeIndex] == "QUANTIZE" else None
            if src is not None and names[src.opcodeIndex] == "SOFTMAX":
                continue
            scores.append(op)
        if not ranges or len(scores) % len(ranges):
            raise ValueError(f"found {len(scores)} attention-score matmuls, got {len(ranges)} ranges")
        per = len(scores) // len(ranges)  # per-head attention: one matmul a head, same range
        ranges = [r for r in ranges for _ in range(per)]
        for op, (lo, hi) in zip(scores, ranges):
            out = graph.tensors[int(op.outputs[0])]
            if _qparams(out) is None:
                continue
            lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
            scale = max(hi - lo, 1e-6) / 255.0
            zero = int(np.clip(round(-128 - lo / scale), -128, 127))
            _set_qparams(out, scale, zero)
            changes["score_ranges_set"] += 1
    return pack_model(model), changes

