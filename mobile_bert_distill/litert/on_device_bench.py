#!/usr/bin/env python3
"""Benchmark LiteRT (.tflite) BERT models: latency, peak RSS, size, params, counted FLOPs.

This file is deliberately standalone: it needs only the Python standard
library, ``numpy`` and ``ai-edge-litert`` (no TensorFlow, nothing else from
mobile-bert-distill), so the very same file runs on a Raspberry Pi, a Jetson
or any aarch64 Linux board. ``benchmarks/on_device_bench.py`` is this file;
``mbd bench`` uses it too (each measurement in a fresh worker process, so that
the peak RSS belongs to one interpreter), which is why a board's JSON has the
same schema as ``mbd bench``'s and merges into its report
(``mbd bench --merge board.json``).

What it measures, per (model file, sequence length, threads):

* latency of ``invoke()`` over ``--runs`` runs after ``--warmup`` runs:
  p50/p90/p99/min/mean/max/std in ms, wall clock (``latency_ms``) and CPU
  time of the process (``cpu_ms``; with 1 thread it is the latency without
  the time other processes took the core). Inputs are valid: token ids drawn from
  the model's vocabulary (read from its embedding table), ``[CLS] ... [SEP]``
  with a real length drawn in ``[0.75 * seq, seq]`` and padding after it;
* peak RSS of the worker process and its increase over the pre-load RSS;
* XNNPACK delegate partitions and the ops left outside them.

A staged early-exit classifier (signatures ``embed``, ``stage_1`` ... ``stage_L``:
one per layer, ``hidden`` passed on) is timed through its signatures at full depth
(every stage, the slowest path; the ``padding_mask`` of every stage marks the real
length), and each signature's own p50 is kept (``stage_p50_ms``), so that the mean
latency of an early-exit run follows from the layers it used. Its file facts sum
the signatures' subgraphs.

And per model file (read from the flatbuffer, no interpreter needed): size,
sha256, inputs/outputs, task (``mlm``/``encoder``), quantization mode, static
sequence length, op histogram, parameters stored in the file, and FLOPs
counted op by op (``FULLY_CONNECTED``, ``BATCH_MATMUL``, convolutions as
matmul FLOPs = 2 x MACs; every other arithmetic op by its output elements
times a per-op cost, see :data:`ELEMENTWISE_COST`).

Run it on a board::

    pip install numpy ai-edge-litert
    python3 on_device_bench.py --models student.tflite bert_base.tflite \\
        --seq-len 128 --threads 1,4 --runs 50 --warmup 5 --out board.json

Exit code 2 with a one-line message on bad input (missing file, not a
.tflite, sequence length above the model's static length, threads <= 0).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time

import numpy as np

SCHEMA = "mobile-bert-distill/bench/1"

#: FLOPs per output element of the non-matmul arithmetic ops (reductions: per input element).
ELEMENTWISE_COST = {
    "ADD": 1, "SUB": 1, "MUL": 1, "DIV": 1, "MAXIMUM": 1, "MINIMUM": 1, "NEG": 1, "ABS": 1,
    "SQUARE": 1, "SQRT": 1, "RSQRT": 1, "EXP": 1, "LOG": 1, "TANH": 1, "LOGISTIC": 1,
    "RELU": 1, "RELU6": 1, "RELU_N1_TO_1": 1, "LEAKY_RELU": 1, "PRELU": 1, "POW": 1,
    "FLOOR_DIV": 1, "FLOOR_MOD": 1, "SIN": 1, "COS": 1, "ERF": 1, "SIGN": 1,
    "SQUARED_DIFFERENCE": 2, "HARD_SWISH": 3, "ELU": 2,
    # tanh-approximated GELU: x^3, *0.044715, +x, *sqrt(2/pi), tanh, +1, *0.5, *x
    "GELU": 8,
    # max, subtract, exp, sum, divide
    "SOFTMAX": 5, "LOG_SOFTMAX": 5,
    "L2_NORMALIZATION": 3,
}
#: Reductions cost one FLOP per *input* element.
REDUCTION_OPS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}
MATMUL_OPS = {"FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D"}

_ID_NAMES = ("input_ids", "token_ids", "input_word_ids")
_SEGMENT_NAMES = ("segment_ids", "token_type_ids", "input_type_ids")
_MASK_NAMES = ("padding_mask", "attention_mask", "input_mask")


#: The signatures of a staged early-exit classifier: token ids to the first hidden stream, then one per layer.
EMBED_SIGNATURE = "embed"


def stage_signature(layer):
    """The signature name of the stage that runs layer ``layer`` (from 1) and its exit."""
    return f"stage_{layer}"


def staged_signatures(keys):
    """Whether signature names ``keys`` are those of a staged early-exit classifier."""
    return EMBED_SIGNATURE in keys and stage_signature(1) in keys


class BenchError(Exception):
    """Bad input; reported as one line with exit code 2."""


# --------------------------------------------------------------------------
# flatbuffer reading (no interpreter)
# --------------------------------------------------------------------------
def _schema():
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError as e:  # pragma: no cover - depends on the board's install
        raise BenchError(f"ai-edge-litert is not installed ({e}); pip install ai-edge-litert") from e
    return fb


def _enum_names(cls):
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def check_model_file(path):
    """Raise :class:`BenchError` unless ``path`` is a readable TFLite flatbuffer; return its bytes."""
    if not os.path.exists(path):
        raise BenchError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise BenchError(f"not a file: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BenchError(f"not a TFLite flatbuffer (no TFL3 identifier): {path}")
    return data


class Graph:
    """One subgraph of a .tflite file: tensors, ops and signature, read-only.

    The subgraph is that of ``signature`` (default: the first subgraph, or the
    ``embed`` one of a staged early-exit model, whose other signatures
    :meth:`stage_graphs` reads).

    >>> g = Graph.from_file("model.tflite")            # doctest: +SKIP
    >>> g.op_histogram()["FULLY_CONNECTED"]             # doctest: +SKIP
    73
    """

    def __init__(self, data, path=None, signature=None):
        fb = _schema()
        self.path = path
        self.size_bytes = len(data)
        self._data = data
        try:
            model = fb.Model.GetRootAs(data, 0)
            #: ``{signature key: (signature index, subgraph index)}`` of every signature in the file
            self.signatures = {_text(model.SignatureDefs(j).SignatureKey()): (j, model.SignatureDefs(j).SubgraphIndex())
                               for j in range(model.SignatureDefsLength())}
            if signature is None:
                signature = EMBED_SIGNATURE if self.is_staged() else None
            elif signature not in self.signatures:
                raise BenchError(f"{path}: no signature {signature!r}")
            sig_index, sub_index = self.signatures[signature] if signature is not None else (0, 0)
            self.signature = signature
            sub = model.Subgraphs(sub_index)
            if sub is None:
                raise ValueError("no subgraph")
            op_names = _enum_names(fb.BuiltinOperator)
            type_names = _enum_names(fb.TensorType)
            codes = []
            for i in range(model.OperatorCodesLength()):
                oc = model.OperatorCodes(i)
                code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
                name = op_names.get(code, f"OP_{code}")
                if name == "CUSTOM":
                    name = "CUSTOM:" + _text(oc.CustomCode())
                codes.append(name)
            constant = []
            for i in range(model.BuffersLength()):
                b = model.Buffers(i)
                constant.append(b.DataLength() > 0 or b.Size() > 0)
            self.tensors = []
            for i in range(sub.TensorsLength()):
                t = sub.Tensors(i)
                shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
                buf = t.Buffer()
                self.tensors.append({
                    "name": _text(t.Name()),
                    "shape": shape,
                    "dtype": type_names.get(t.Type(), str(t.Type())).lower(),
                    "buffer": buf,
                    "constant": 0 < buf < len(constant) and constant[buf],
                })
            self.ops = []
            for i in range(sub.OperatorsLength()):
                op = sub.Operators(i)
                inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
                outputs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
                entry = {"type": codes[op.OpcodeIndex()], "inputs": inputs, "outputs": outputs}
                if entry["type"] == "BATCH_MATMUL" and op.BuiltinOptions() is not None:
                    opts = fb.BatchMatMulOptions()
                    table = op.BuiltinOptions()
                    opts.Init(table.Bytes, table.Pos)
                    entry["adj_x"], entry["adj_y"] = bool(opts.AdjX()), bool(opts.AdjY())
                self.ops.append(entry)
            self.inputs = [int(x) for x in sub.InputsAsNumpy()] if sub.InputsLength() else []
            self.outputs = [int(x) for x in sub.OutputsAsNumpy()] if sub.OutputsLength() else []
            self.signature_inputs, self.signature_outputs = {}, {}
            if model.SignatureDefsLength():
                sig = model.SignatureDefs(sig_index)
                for j in range(sig.InputsLength()):
                    self.signature_inputs[_text(sig.Inputs(j).Name())] = sig.Inputs(j).TensorIndex()
                for j in range(sig.OutputsLength()):
                    self.signature_outputs[_text(sig.Outputs(j).Name())] = sig.Outputs(j).TensorIndex()
        except BenchError:
            raise
        except Exception as e:  # a corrupt or truncated flatbuffer
            raise BenchError(f"cannot read the TFLite flatbuffer {path or ''}: {type(e).__name__}: {e}") from e

    @classmethod
    def from_file(cls, path):
        return cls(check_model_file(path), path=path)

    def is_staged(self):
        """Whether the file is a staged early-exit classifier (signatures ``embed``, ``stage_1``, ...)."""
        return staged_signatures(self.signatures)

    def stage_graphs(self):
        """``[embed, stage_1, ..., stage_L]`` graphs of a staged early-exit file, else ``[self]``."""
        if not self.is_staged():
            return [self]
        keys = [EMBED_SIGNATURE]
        while stage_signature(len(keys)) in self.signatures:
            keys.append(stage_signature(len(keys)))
        return [Graph(self._data, self.path, signature=key) for key in keys]

    # ---- naming -----------------------------------------------------------
    def input_names(self):
        """``{tensor index: name}`` of the graph inputs (signature names when present)."""
        by_index = {v: k for k, v in self.signature_inputs.items()}
        return {i: by_index.get(i, self.tensors[i]["name"]) for i in self.inputs}

    def output_names(self):
        by_index = {v: k for k, v in self.signature_outputs.items()}
        return {i: by_index.get(i, self.tensors[i]["name"]) for i in self.outputs}

    def input_roles(self):
        """``{"ids"|"segments"|"mask": tensor index}`` for a BERT-style model."""
        roles = {}
        for index, name in self.input_names().items():
            low = name.lower()
            for role, names in (("ids", _ID_NAMES), ("segments", _SEGMENT_NAMES), ("mask", _MASK_NAMES)):
                if any(n in low for n in names):
                    roles[role] = index
        if "ids" not in roles:
            raise BenchError(
                f"{self.path}: no token-id input among {sorted(self.input_names().values())} "
                f"(expected one of {', '.join(_ID_NAMES)})"
            )
        return roles

    def static_seq_len(self):
        shape = self.tensors[self.input_roles()["ids"]]["shape"]
        return int(shape[-1]) if shape else None

    def task(self):
        if self.is_staged():
            return "classifier"
        names = set(self.output_names().values())
        if "logits" in names:
            return "mlm"
        if "sequence_output" in names or "pooled_output" in names:
            return "encoder"
        return "unknown"

    # ---- structure --------------------------------------------------------
    def producers(self):
        return {t: i for i, op in enumerate(self.ops) for t in op["outputs"]}

    def consumers(self):
        out = {}
        for i, op in enumerate(self.ops):
            for t in op["inputs"]:
                if t >= 0:
                    out.setdefault(t, []).append(i)
        return out

    def op_histogram(self):
        hist = {}
        for op in self.ops:
            hist[op["type"]] = hist.get(op["type"], 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def token_embedding(self):
        """``(rows, width)`` of the embedding table gathered by the token ids, or ``None``."""
        try:
            start = self.input_roles()["ids"]
        except BenchError:
            return None
        consumers = self.consumers()
        frontier, seen = [start], {start}
        for _ in range(6):  # a few index-arithmetic ops may sit between input and GATHER
            nxt = []
            for t in frontier:
                for i in consumers.get(t, []):
                    op = self.ops[i]
                    if op["type"] == "GATHER" and len(op["inputs"]) > 1 and op["inputs"][1] == t:
                        table = self.tensors[op["inputs"][0]]
                        if len(table["shape"]) == 2:
                            return int(table["shape"][0]), int(table["shape"][1])
                    for o in op["outputs"]:
                        if o not in seen:
                            seen.add(o)
                            nxt.append(o)
            frontier = nxt
        return None

    def quantization(self):
        """``float32``, ``float16``, ``dynamic`` (int8 weights, float activations) or ``int8``."""
        dense = [op for op in self.ops if op["type"] in ("FULLY_CONNECTED", "CONV_2D")]
        weight_types = {self.tensors[op["inputs"][1]]["dtype"] for op in dense if len(op["inputs"]) > 1}
        act_types = {self.tensors[op["inputs"][0]]["dtype"] for op in dense}
        if "int8" in weight_types or "uint8" in weight_types:
            return "int8" if ({"int8", "uint8"} & act_types) else "dynamic"
        if any(t["constant"] and t["dtype"] == "float16" for t in self.tensors):
            return "float16"
        return "float32"

    def stored_weight_types(self):
        """How the weights are stored: ``{"fc_weights": {dtype: number of FULLY_CONNECTED ops},
        "embedding_table": dtype of the first GATHER's table (or None)}``. A weight that a
        DEQUANTIZE op expands at run time counts with its stored type (int4, int8, float16)."""
        producer = self.producers()

        def stored(t):
            op = producer.get(t)
            return self.ops[op]["inputs"][0] if op is not None and self.ops[op]["type"] == "DEQUANTIZE" else t

        fc = {}
        for op in self.ops:
            if op["type"] == "FULLY_CONNECTED":
                dtype = self.tensors[stored(op["inputs"][1])]["dtype"]
                fc[dtype] = fc.get(dtype, 0) + 1
        tables = [self.tensors[stored(op["inputs"][0])]["dtype"] for op in self.ops if op["type"] == "GATHER"]
        return {"fc_weights": dict(sorted(fc.items())), "embedding_table": tables[0] if tables else None}

    def params_in_file(self):
        """Elements of the constant weight tensors (each tensor once; index/shape operands excluded).

        Counted per tensor, not per buffer: the converter stores identical
        constants (e.g. all-zero biases of an untrained model) in one buffer.
        """
        skip = {  # (op type, input position) that hold shapes, permutations or indices
            ("RESHAPE", 1), ("TRANSPOSE", 1), ("GATHER", 1), ("STRIDED_SLICE", 1), ("STRIDED_SLICE", 2),
            ("STRIDED_SLICE", 3), ("SLICE", 1), ("SLICE", 2), ("MEAN", 1), ("SUM", 1), ("PAD", 1),
            ("CONCATENATION", -1), ("SPLIT", 0), ("SPLIT_V", 1), ("SPLIT_V", 2), ("BROADCAST_TO", 1),
            ("TILE", 1), ("EXPAND_DIMS", 1), ("GATHER_ND", 1), ("REDUCE_MAX", 1), ("FILL", 0),
        }
        seen, total = set(), 0
        for op in self.ops:
            for pos, t in enumerate(op["inputs"]):
                if t < 0:
                    continue
                tensor = self.tensors[t]
                if not tensor["constant"] or t in seen:
                    continue
                if (op["type"], pos) in skip or tensor["dtype"] in ("int32", "int64", "bool", "string"):
                    if not (op["type"] in ("FULLY_CONNECTED", "CONV_2D") and pos == 2):  # int32 bias
                        continue
                seen.add(t)
                total += int(np.prod(tensor["shape"])) if tensor["shape"] else 1
        return total

    # ---- FLOPs ------------------------------------------------------------
    def _numel(self, t):
        shape = self.tensors[t]["shape"]
        return int(np.prod(shape)) if shape else 1

    def flops(self):
        """FLOPs counted from the graph: ``{"matmul", "other", "total", "by_op"}``.

        Matmul FLOPs are 2 x MACs of ``FULLY_CONNECTED`` / ``BATCH_MATMUL`` /
        convolutions (a ``FULLY_CONNECTED`` bias adds its output elements to
        ``other``). Every other op is costed by :data:`ELEMENTWISE_COST`
        (reductions by input elements); data-movement ops count zero.
        """
        by_op, matmul, other = {}, 0, 0
        for op in self.ops:
            kind = op["type"]
            ins = op["inputs"]
            out = op["outputs"][0] if op["outputs"] else None
            mm = el = 0
            if kind == "FULLY_CONNECTED":
                k = self.tensors[ins[1]]["shape"][-1]
                mm = 2 * self._numel(out) * k
                if len(ins) > 2 and ins[2] >= 0:
                    el = self._numel(out)
            elif kind == "BATCH_MATMUL":
                shape = self.tensors[ins[0]]["shape"]
                k = shape[-2] if op.get("adj_x") else shape[-1]
                mm = 2 * self._numel(out) * k
            elif kind == "CONV_2D":
                w = self.tensors[ins[1]]["shape"]  # [out, kh, kw, in]
                mm = 2 * self._numel(out) * w[1] * w[2] * w[3]
            elif kind == "DEPTHWISE_CONV_2D":
                w = self.tensors[ins[1]]["shape"]  # [1, kh, kw, out]
                mm = 2 * self._numel(out) * w[1] * w[2]
            elif kind in REDUCTION_OPS:
                el = self._numel(ins[0])
            elif kind in ELEMENTWISE_COST and out is not None:
                el = ELEMENTWISE_COST[kind] * self._numel(out)
            if mm or el:
                by_op[kind] = by_op.get(kind, 0) + mm + el
            matmul += mm
            other += el
        by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
        return {"matmul": int(matmul), "other": int(other), "total": int(matmul + other), "by_op": by_op}

    # ---- description --------------------------------------------------------
    def describe(self):
        """Everything the report needs from the file alone (JSON-ready); a staged early-exit file's
        ops, parameters and FLOPs are those of all its signatures (each layer once)."""
        if self.is_staged():
            stages = self.stage_graphs()
            out = stages[0]._describe_one()
            mask = {i: n for i, n in stages[1].input_names().items() if n != "hidden"}
            out["inputs"] += stages[1]._io(mask)
            out["outputs"] = stages[-1]._io(stages[-1].output_names())
            hist, flops = {}, {"matmul": 0, "other": 0, "total": 0, "by_op": {}}
            for g in stages:
                for op, n in g.op_histogram().items():
                    hist[op] = hist.get(op, 0) + n
                f = g.flops()
                for key in ("matmul", "other", "total"):
                    flops[key] += f[key]
                for op, n in f["by_op"].items():
                    flops["by_op"][op] = flops["by_op"].get(op, 0) + n
            flops["by_op"] = dict(sorted(flops["by_op"].items(), key=lambda kv: -kv[1]))
            out.update(task="classifier", quantization=stages[1].quantization(),
                       num_ops=sum(len(g.ops) for g in stages),
                       op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
                       params_in_file=sum(g.params_in_file() for g in stages), flops_counted=flops,
                       early_exit={"num_layers": len(stages) - 1, "signatures": [g.signature for g in stages]})
            return out
        return self._describe_one()

    def _io(self, index_names):
        return [{"name": n, "shape": self.tensors[i]["shape"], "dtype": self.tensors[i]["dtype"]}
                for i, n in index_names.items()]

    def _describe_one(self):
        emb = self.token_embedding()

        hidden = None
        for i, name in self.output_names().items():
            if name == "sequence_output":
                hidden = self.tensors[i]["shape"][-1]
        if hidden is None and emb:
            hidden = emb[1]
        return {
            "task": self.task(),
            "quantization": self.quantization(),
            "static_seq_len": self.static_seq_len(),
            "vocab_size": emb[0] if emb else None,
            "hidden_size": hidden,
            "inputs": self._io(self.input_names()),
            "outputs": self._io(self.output_names()),
            "num_ops": len(self.ops),
            "op_histogram": self.op_histogram(),
            "params_in_file": self.params_in_file(),
            "flops_counted": self.flops(),
        }


def partition_members(ops_details):
    """The original ops each ``DELEGATE`` node replaced: a list of sets of op indices, one per partition.

    ``ops_details`` is ``Interpreter._get_ops_details()`` after ``allocate_tensors``: the original
    ops followed by one ``DELEGATE`` node per partition (the replaced ops stay listed). A
    partition's ops are found by walking back from its outputs to its inputs.
    """
    original = [o for o in ops_details if o["op_name"] != "DELEGATE"]
    producer = {int(t): o for o in original for t in o["outputs"]}
    partitions = []
    for d in ops_details:
        if d["op_name"] != "DELEGATE":
            continue
        stop = {int(t) for t in d["inputs"]}
        members, todo = set(), [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            op = producer.get(t)
            if op is None or t in stop or op["index"] in members:
                continue
            members.add(op["index"])
            todo.extend(int(i) for i in op["inputs"] if int(i) >= 0)
        partitions.append(members)
    return partitions


def delegate_partitions(ops_details):
    """From ``Interpreter._get_ops_details()`` after ``allocate_tensors``: XNNPACK partitions.

    Returns ``{"partitions": n, "delegated_ops": {type: n}, "outside": {type: n}}``:
    the original ops that run inside a ``DELEGATE`` node and those left to the
    built-in kernels (each of which splits the graph).
    """
    partitions = partition_members(ops_details)
    inside = set().union(*partitions)
    count_in, count_out = {}, {}
    for o in ops_details:
        if o["op_name"] != "DELEGATE":
            target = count_in if o["index"] in inside else count_out
            target[o["op_name"]] = target.get(o["op_name"], 0) + 1
    return {"partitions": len(partitions), "delegated_ops": count_in, "outside": count_out}


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def make_inputs(graph, seq_len, rng, *, cls_id=2, sep_id=3, first_id=5):
    """One valid BERT input at the file's static length with ``seq_len`` usable positions.

    Real length uniform in ``[ceil(0.75 * seq_len), seq_len]``: ``[CLS]``, ids
    drawn from ``[first_id, vocab)``, ``[SEP]``, then padding (id 0, mask 0).
    Returns ``{tensor index: int32 array}``.
    """
    static = graph.static_seq_len()
    roles = graph.input_roles()
    emb = graph.token_embedding()
    vocab = emb[0] if emb else 100
    first = first_id if vocab > first_id + 1 else 0
    length = int(rng.integers(max(2, math.ceil(0.75 * seq_len)), seq_len + 1)) if seq_len > 2 else seq_len
    ids = np.zeros((1, static), np.int32)
    ids[0, :length] = rng.integers(first, vocab, size=length)
    if length >= 2 and vocab > max(cls_id, sep_id):
        ids[0, 0], ids[0, length - 1] = cls_id, sep_id
    mask = np.zeros((1, static), np.int32)
    mask[0, :length] = 1
    segments = np.zeros((1, static), np.int32)
    segments[0, length // 2 : length] = 1  # a sentence pair
    feeds = {roles["ids"]: ids}
    if "mask" in roles:
        feeds[roles["mask"]] = mask
    if "segments" in roles:
        feeds[roles["segments"]] = segments
    for index in graph.inputs:
        if index not in feeds:
            raise BenchError(f"{graph.path}: unknown input {graph.input_names()[index]!r}")
        want = graph.tensors[index]["shape"]
        if list(feeds[index].shape) != list(want):
            feeds[index] = feeds[index].reshape(want)
    return feeds


def write_input_files(graph, seq_len, directory, *, seed=0):
    """Write one valid input per model input as raw little-endian int32 (for ``benchmark_model``).

    Returns ``[(tensor name, file path)]`` in the interpreter's input order.
    """
    feeds = make_inputs(graph, seq_len, np.random.default_rng(seed))
    out = []
    for index in graph.inputs:
        name = graph.input_names()[index]
        path = os.path.join(directory, f"{name}.s{seq_len}.bin")
        feeds[index].astype("<i4").tofile(path)
        out.append((graph.tensors[index]["name"], path))
    return out


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------
def _rss_now_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_mb():
    """Peak RSS of this process image: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``,
    which a worker would inherit from the large parent that forked it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _load_avg():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def litert_version():
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover
        return "unknown"


def latency_stats(samples_s):
    ms = np.asarray(samples_s, np.float64) * 1e3
    return {
        "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)), "min": float(ms.min()), "max": float(ms.max()),
        "mean": float(ms.mean()), "std": float(ms.std()),
    }


def check_settings(graph, seq_len, threads, runs, warmup):
    static = graph.static_seq_len()
    if threads < 1:
        raise BenchError(f"threads must be >= 1, got {threads}")
    if seq_len < 1:
        raise BenchError(f"seq-len must be >= 1, got {seq_len}")
    if static is not None and seq_len > static:
        raise BenchError(
            f"seq-len {seq_len} is above the static length {static} of {graph.path}; "
            "export the model at that length"
        )
    if runs < 1:
        raise BenchError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {warmup}")


def measure(path, seq_len, threads, runs, warmup, *, seed=0, graph=None):
    """Time one model in this process and return a result record (JSON-ready)."""
    from ai_edge_litert.interpreter import Interpreter

    graph = graph or Graph.from_file(path)
    check_settings(graph, seq_len, threads, runs, warmup)
    load_before = _load_avg()
    rss_before = _rss_now_mb()
    try:
        interp = Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BenchError(f"LiteRT cannot load {path}: {' '.join(str(e).split())[:200]}") from e
    staged = graph.is_staged()
    # the interpreter lists the ops of its first subgraph only: a staged file's partitions stay unknown
    parts = {"partitions": None, "outside": None} if staged else delegate_partitions(interp._get_ops_details())
    rng = np.random.default_rng(seed)
    feeds = [make_inputs(graph, seq_len, rng) for _ in range(min(runs + warmup, 16))]
    invoke = _staged_invoke(interp, graph) if staged else None
    times, cpu, stage_times = [], [], []
    for i in range(warmup + runs):
        if staged:
            c0, t0 = time.process_time(), time.perf_counter()
            seconds = invoke(feeds[i % len(feeds)])
        else:
            for index, value in feeds[i % len(feeds)].items():
                interp.set_tensor(index, value)
            c0, t0 = time.process_time(), time.perf_counter()
            interp.invoke()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if i >= warmup:
            times.append(dt)
            cpu.append(dc)
            if staged:
                stage_times.append(seconds)
    peak = _peak_rss_mb()
    extra = {}
    if staged:
        names = [g.signature for g in graph.stage_graphs()]
        extra["stage_p50_ms"] = {name: round(float(np.percentile([t[j] for t in stage_times], 50)) * 1e3, 4)
                                 for j, name in enumerate(names)}
        extra["timed"] = "every signature in turn (full depth), through signature runners"
    return {
        "file": os.path.basename(path),
        "seq_len": int(seq_len),
        "static_seq_len": graph.static_seq_len(),
        "threads": int(threads),
        "runs": int(runs),
        "warmup": int(warmup),
        "latency_ms": latency_stats(times),
        "samples_ms": [round(t * 1e3, 4) for t in times],
        "cpu_ms": latency_stats(cpu),
        "cpu_samples_ms": [round(t * 1e3, 4) for t in cpu],
        "load_avg_1m": [load_before, _load_avg()],
        "peak_rss_mb": round(peak, 2),
        "rss_increase_mb": round(peak - rss_before, 2) if rss_before is not None else None,
        "xnnpack_partitions": parts["partitions"],
        "ops_outside_delegate": parts["outside"],
        **extra,
    }


def _staged_invoke(interp, graph):
    """A function running a staged early-exit model at full depth on one :func:`make_inputs` feed;
    returns each signature's seconds (``embed`` first)."""
    stages = graph.stage_graphs()
    runners = [interp.get_signature_runner(g.signature) for g in stages]
    names = graph.input_names()

    def invoke(feed):
        by_name = {names[i]: v for i, v in feed.items()}
        mask = (by_name["input_ids"] != 0).astype(np.int32)
        seconds = []
        t0 = time.perf_counter()
        hidden = runners[0](**by_name)["hidden"]
        seconds.append(time.perf_counter() - t0)
        for runner in runners[1:]:
            t0 = time.perf_counter()
            hidden = runner(hidden=hidden, padding_mask=mask).get("hidden")
            seconds.append(time.perf_counter() - t0)
        return seconds

    return invoke


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_record(path, label=None):
    """The per-model entry of the results document (file facts, no timing)."""
    graph = Graph.from_file(path)
    desc = graph.describe()
    return {
        "label": label or os.path.splitext(os.path.basename(path))[0],
        "file": os.path.basename(path),
        "path": os.path.abspath(path),
        "sha256": sha256_of(path),
        "size_bytes": graph.size_bytes,
        "role": "model",
        "source": None,
        "architecture": None,
        "params": None,
        "flops_analytic": None,
        **desc,
    }


def host_info():
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "litert": litert_version(),
    }


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def new_document(tool, settings):
    """An empty results document; ``models`` and ``results`` are filled by :func:`run_benchmark`."""
    return {
        "schema": SCHEMA,
        "tool": tool,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": host_info(),
        "settings": settings,
        "models": [],
        "results": [],
    }


def measure_isolated(path, seq_len, threads, runs, warmup, seed=0, timeout=None):
    """Run :func:`measure` in a fresh Python process (clean peak RSS); return its record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", path, str(seq_len), str(threads),
           str(runs), str(warmup), str(seed)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 2:
        raise BenchError((proc.stderr.strip().splitlines() or ["worker failed"])[-1].split("error: ", 1)[-1])
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"benchmark worker failed (exit {proc.returncode}) on {path}: {tail}")
    return json.loads(lines[-1])


def plan(models, seq_lens, threads, runs, warmup):
    """Check every (model, seq, threads) before anything runs; return the job list.

    ``models`` is a list of ``(label, [paths])``: several files under one label
    are one model exported at several static lengths; each sequence length runs
    on the smallest file that holds it (padding the rest).
    """
    if not models:
        raise BenchError("no models given")
    if not seq_lens:
        raise BenchError("no sequence lengths given")
    for t in threads:
        if t < 1:
            raise BenchError(f"threads must be >= 1, got {t}")
    for s in seq_lens:
        if s < 1:
            raise BenchError(f"seq-len must be >= 1, got {s}")
    if runs < 1 or warmup < 0:
        raise BenchError(f"runs must be >= 1 and warmup >= 0 (got {runs}, {warmup})")
    labels = [label for label, _ in models]
    if len(set(labels)) != len(labels):
        raise BenchError(f"model labels must differ, got {labels}")
    jobs, graphs, owner = [], {}, {}
    for label, paths in models:
        for p in paths:
            key = os.path.realpath(p)
            if key in owner:
                raise BenchError(f"{p} is given twice ({owner[key]!r} and {label!r})")
            owner[key] = label
            graphs[p] = Graph.from_file(p)
        by_len = sorted(((graphs[p].static_seq_len(), p) for p in paths), key=lambda x: (x[0] or 0))
        for s in seq_lens:
            fits = [(n, p) for n, p in by_len if n is None or n >= s]
            if not fits:
                longest = by_len[-1]
                raise BenchError(
                    f"seq-len {s} is above the static length {longest[0]} of {longest[1]}; "
                    "export the model at that length"
                )
            for t in threads:
                jobs.append((label, fits[0][1], s, t))
    return jobs, graphs


def _combine(records):
    """One record from the same setting measured in several rounds (all samples pooled)."""
    first = dict(records[0])
    samples = [x for r in records for x in r["samples_ms"]]
    first["latency_ms"] = latency_stats([x / 1e3 for x in samples])
    first["samples_ms"] = samples
    cpu = [x for r in records for x in r["cpu_samples_ms"]]
    first["cpu_ms"] = latency_stats([x / 1e3 for x in cpu])
    first["cpu_samples_ms"] = cpu
    first["runs"] = len(samples)
    first["rounds"] = len(records)
    first["peak_rss_mb"] = max(r["peak_rss_mb"] for r in records)
    incs = [r["rss_increase_mb"] for r in records if r["rss_increase_mb"] is not None]
    first["rss_increase_mb"] = max(incs) if incs else None
    loads = [x for r in records for x in r["load_avg_1m"] if x is not None]
    first["load_avg_1m"] = [min(loads), max(loads)] if loads else [None, None]
    return first


def run_benchmark(models, seq_lens, threads, runs, warmup, *, tool, seed=0, isolate=True,
                  progress=None, done=None, source=None, rounds=1):
    """Measure every job and return the results document.

    With ``rounds > 1`` the whole job list is measured that many times in turn
    (each round ``runs`` timed runs) and the samples are pooled, so that a
    burst of load from other processes is shared by all models instead of
    landing on one. ``progress(label, path, seq, threads)`` is called before
    each measurement and ``done(record)`` after it.
    """
    if rounds < 1:
        raise BenchError(f"rounds must be >= 1, got {rounds}")
    jobs, graphs = plan(models, seq_lens, threads, runs, warmup)
    doc = new_document(tool, {"seq_lens": list(seq_lens), "threads": list(threads), "runs": runs,
                              "warmup": warmup, "rounds": rounds, "seed": seed,
                              "isolated_processes": bool(isolate),
                              "inputs": "valid ids from the vocabulary, real length in "
                                        "[0.75*seq, seq], padding after"})
    seen = set()
    for label, paths in models:
        for p in paths:
            if p not in seen:
                seen.add(p)
                rec = model_record(p, label=label)
                rec["source"] = source
                doc["models"].append(rec)
    measured = {}
    for r in range(rounds):
        for label, path, s, t in jobs:
            if progress:
                progress(label, path, s, t)
            if isolate:
                rec = measure_isolated(path, s, t, runs, warmup, seed + r)
            else:
                rec = measure(path, s, t, runs, warmup, seed=seed + r, graph=graphs[path])
            measured.setdefault((label, path, s, t), []).append(rec)
            if done:
                done(rec)
    for label, path, s, t in jobs:
        rec = _combine(measured[(label, path, s, t)])
        rec["model"] = label
        rec["sha256"] = next(m["sha256"] for m in doc["models"] if m["path"] == os.path.abspath(path))
        rec["source"] = source
        doc["results"].append(rec)
    return doc


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def parse_int_list(text, what):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchError(f"{what} is empty")
    return values


def parse_model_specs(specs):
    """``[LABEL=]PATH[,PATH...]`` -> ``[(label, [paths])]``."""
    models = []
    for spec in specs:
        label, _, rest = spec.rpartition("=") if "=" in spec else ("", "", spec)
        paths = [p for p in rest.split(",") if p]
        if not paths:
            raise BenchError(f"empty model spec {spec!r}")
        for p in paths:
            check_model_file(p)
        models.append((label or os.path.splitext(os.path.basename(paths[0]))[0], paths))
    return models


def _worker(argv):
    path, seq, threads, runs, warmup, seed = argv
    rec = measure(path, int(seq), int(threads), int(runs), int(warmup), seed=int(seed))
    print(json.dumps(rec))


def build_parser():
    p = argparse.ArgumentParser(
        prog="on_device_bench.py",
        description="Benchmark LiteRT BERT models (latency, peak RSS, size, params, FLOPs) with only "
                    "numpy and ai-edge-litert; writes JSON that `mbd bench --merge` adds to the report.",
    )
    p.add_argument("--models", nargs="+", required=True, metavar="[LABEL=]PATH[,PATH...]",
                   help="model files; several comma-separated files under one label are the same "
                        "model exported at several static lengths")
    p.add_argument("--seq-len", default="128", help="comma-separated sequence lengths (default 128)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per setting (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the whole list this many times in turn and pool the samples "
                        "(shares bursts of background load fairly between models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--source", default=None, help="name of this device in the report (default: hostname)")
    p.add_argument("--no-isolate", action="store_true",
                   help="measure in this process (faster; peak RSS is then shared by all models)")
    p.add_argument("--out", default="board.json", help="output JSON (default board.json)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        try:
            _worker(argv[1:])
        except BenchError as e:
            print(f"on_device_bench.py: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        return 0
    args = build_parser().parse_args(argv)
    try:
        models = parse_model_specs(args.models)
        seqs = parse_int_list(args.seq_len, "--seq-len")
        threads = parse_int_list(args.threads, "--threads")
        source = args.source or socket.gethostname()

        def progress(label, path, s, t):
            print(f"[on_device_bench] {label} seq={s} threads={t}", file=sys.stderr, flush=True)

        doc = run_benchmark(models, seqs, threads, args.runs, args.warmup, tool="on_device_bench.py",
                            seed=args.seed, isolate=not args.no_isolate, progress=progress, source=source,
                            rounds=args.rounds)
    except BenchError as e:
        print(f"on_device_bench.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    for r in doc["results"]:
        lat = r["latency_ms"]
        print(f"{r['model']:<28} seq {r['seq_len']:>4} threads {r['threads']:>2}  p50 {lat['p50']:9.3f} ms  "
              f"p90 {lat['p90']:9.3f}  min {lat['min']:9.3f}  rss {r['peak_rss_mb']:.0f} MB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
