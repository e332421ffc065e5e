"""Where the time goes in a .tflite: per-op-type timing and XNNPACK partitions.

The Python LiteRT interpreter has no per-op profiler, so this module cuts the
model apart: every operator becomes a one-op model (same tensors, shapes,
weights and quantization parameters), which is timed alone through the same
interpreter (XNNPACK on by default, as in the benchmark). Times are medians of
the process CPU time per ``invoke()`` (meant for 1 thread), so other processes
on a shared machine do not inflate them. Summed by op type,
that says which kinds of op cost what, and whether XNNPACK took them (a
one-op model with a ``DELEGATE`` node was delegated). The whole model is
timed too; the gap between it and the sum of the parts is the price of
partition boundaries and of the work XNNPACK fuses away.

Also reported: the XNNPACK partitions of the whole model and the ops left
outside them (:func:`mobile_bert_distill.litert.on_device_bench.delegate_partitions`),
and the whole-model latency with the built-in kernels only.

Example::

    from mobile_bert_distill.litert.opprofile import profile, format_profile
    prof = profile("student.tflite", threads=1, runs=10)
    print(format_profile(prof))
"""

from __future__ import annotations

import copy
import time

import numpy as np

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert.on_device_bench import Graph, delegate_partitions, make_inputs


def _interpreter(content=None, path=None, threads=1, xnnpack=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=path, model_content=content, num_threads=threads,
                         experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


def _time(interp, runs, warmup=2):
    """Median CPU time of ``invoke()`` (1 thread: robust to other processes on the machine)."""
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        interp.invoke()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def _fill(interp, rng):
    for d in interp.get_input_details():
        shape, dtype = d["shape"], d["dtype"]
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            value = np.ones(shape, np.bool_)
        elif dtype in (np.int8, np.uint8, np.int16):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
        else:  # int32/int64 are indices or shapes here: zeros are always in range
            value = np.zeros(shape, dtype)
        interp.set_tensor(d["index"], value)


def single_op_models(data):
    """Yield ``(op index, op type, flatbuffer bytes)``: each operator as a model of its own."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    sub = model.subgraphs[0]
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if isinstance(v, int)}
    empty = fb.BufferT()
    for index, op in enumerate(sub.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        one = fb.ModelT()
        one.version = model.version
        one.operatorCodes = model.operatorCodes
        one.buffers = [empty]
        graph = fb.SubGraphT()
        graph.tensors, graph.inputs, mapping = [], [], {}

        def add(t, is_input):
            if t < 0:
                return t
            if t in mapping:
                return mapping[t]
            tensor = copy.copy(sub.tensors[t])
            buf = model.buffers[tensor.buffer] if tensor.buffer else None
            has_data = buf is not None and buf.data is not None and len(buf.data) > 0
            if has_data:
                one.buffers.append(buf)
                tensor.buffer = len(one.buffers) - 1
            else:
                tensor.buffer = 0
                if is_input:
                    graph.inputs.append(len(graph.tensors))
            mapping[t] = len(graph.tensors)
            graph.tensors.append(tensor)
            return mapping[t]

        new_op = copy.copy(op)
        new_op.inputs = [add(int(t), True) for t in op.inputs]
        new_op.outputs = [add(int(t), False) for t in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            new_op.intermediates = [add(int(t), False) for t in op.intermediates]
        graph.outputs = list(new_op.outputs)
        graph.operators = [new_op]
        one.subgraphs = [graph]
        yield index, kind, bytes(flatbuffer_utils.convert_object_to_bytearray(one))


def profile(path, *, threads=1, runs=10, seq_len=None, seed=0):
    """Profile ``path``; returns a JSON-ready dict (see the module docstring)."""
    with open(path, "rb") as f:
        data = f.read()
    graph = Graph(data, path=path)
    if graph.is_staged():
        raise UserError(f"{path} is a staged early-exit model (a signature per layer): profile its full-depth "
                        "export")
    rng = np.random.default_rng(seed)
    feeds = make_inputs(graph, seq_len or graph.static_seq_len(), rng)

    def whole(xnnpack):
        interp = _interpreter(path=path, threads=threads, xnnpack=xnnpack)
        for index, value in feeds.items():
            interp.set_tensor(index, value)
        return interp, _time(interp, runs)

    delegated_interp, whole_ms = whole(True)
    partitions = delegate_partitions(delegated_interp._get_ops_details())
    del delegated_interp
    _, builtin_ms = whole(False)

    # the cost of one invoke() of a trivial model, to subtract from each op
    overheads = []
    by_type, per_op = {}, []
    for index, kind, content in single_op_models(data):
        try:
            interp = _interpreter(content=content, threads=threads)
        except (RuntimeError, ValueError) as e:
            per_op.append({"index": index, "type": kind, "error": " ".join(str(e).split())[:120]})
            continue
        delegated = any(o["op_name"] == "DELEGATE" for o in interp._get_ops_details())
        _fill(interp, rng)
        try:
            seconds = _time(interp, runs)
        except RuntimeError as e:
            per_op.append({"index": index, "type": kind, "error": " ".join(str(e).split())[:120]})
            continue
        if kind in ("RESHAPE",):
            overheads.append(seconds)
        per_op.append({"index": index, "type": kind, "ms": seconds * 1e3, "delegated": delegated})
    overhead = float(np.min(overheads)) * 1e3 if overheads else 0.0
    for rec in per_op:
        if "ms" not in rec:
            continue
        rec["ms_net"] = max(0.0, rec["ms"] - overhead)
        entry = by_type.setdefault(rec["type"], {"type": rec["type"], "count": 0, "delegated": 0, "ms": 0.0})
        entry["count"] += 1
        entry["delegated"] += int(rec["delegated"])
        entry["ms"] += rec["ms_net"]
    total = sum(e["ms"] for e in by_type.values()) or 1.0
    rows = sorted(by_type.values(), key=lambda e: -e["ms"])
    for e in rows:
        e["share"] = e["ms"] / total
    return {
        "threads": threads,
        "runs": runs,
        "whole_model_ms": whole_ms * 1e3,
        "whole_model_builtin_kernels_ms": builtin_ms * 1e3,
        "sum_of_ops_ms": total,
        "invoke_overhead_ms": overhead,
        "xnnpack": partitions,
        "by_type": rows,
        "slowest_ops": sorted((r for r in per_op if "ms" in r), key=lambda r: -r["ms_net"])[:10],
        "failed_ops": [r for r in per_op if "error" in r],
    }


def format_profile(prof):
    """Markdown table of a :func:`profile` result."""
    lines = [
        f"CPU time per invoke: whole model {prof['whole_model_ms']:.3f} ms with XNNPACK "
        f"({prof['xnnpack']['partitions']} partitions), {prof['whole_model_builtin_kernels_ms']:.3f} ms with built-in kernels only; "
        f"ops timed one by one sum to {prof['sum_of_ops_ms']:.3f} ms "
        f"(each net of {prof['invoke_overhead_ms'] * 1e3:.1f} us invoke overhead)",
        "",
        "| op type | count | in XNNPACK alone | ms (sum) | share |",
        "|---|---:|---:|---:|---:|",
    ]
    for e in prof["by_type"]:
        lines.append(f"| {e['type']} | {e['count']} | {e['delegated']} | {e['ms']:.3f} | {100 * e['share']:.1f}% |")
    outside = prof["xnnpack"]["outside"]
    if outside:
        lines += ["", "Ops left outside XNNPACK in the whole model: "
                  + ", ".join(f"{k} x{v}" for k, v in sorted(outside.items(), key=lambda kv: -kv[1]))]
    if prof["failed_ops"]:
        lines += ["", f"{len(prof['failed_ops'])} ops could not run alone: "
                  + ", ".join(sorted({r['type'] for r in prof['failed_ops']}))]
    return "\n".join(lines)
