"""Small, TensorFlow-free helpers to inspect and run ``.tflite`` files.

* :func:`load_interpreter` picks the best runtime available
  (``ai_edge_litert``, then ``tflite_runtime``, then ``tf.lite``) and turns a
  file that is not a TFLite flatbuffer into a :class:`UserError`.
* :func:`op_histogram` counts the operators of the graph and, separately, the
  nodes the interpreter actually runs (XNNPACK ``DELEGATE`` partitions
  included), with the ops that compute in float.

Example::

    from mobile_bert_distill.litert.tools import load_interpreter, op_histogram
    interp, runtime = load_interpreter("model.tflite", num_threads=1)
    print(runtime, op_histogram(interp)["ops"])
"""

from __future__ import annotations

import collections
import os

from mobile_bert_distill.errors import UserError

#: Operators that convert between float and integer domains.
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
#: Operators whose float execution matters for an "integer graph" claim.
COMPUTE_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL")
_INDEX_OPS = ("GATHER", "RESHAPE", "CAST", "SHAPE", "STRIDED_SLICE", "CONCATENATION",
              "PACK", "TRANSPOSE", "SPLIT", "SLICE", "EXPAND_DIMS", "SQUEEZE")
_TFLITE_MAGIC = b"TFL3"


def runtime_name():
    """The name of the interpreter module :func:`load_interpreter` will use."""
    return _interpreter_class()[1]


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"
    except ImportError as e:  # pragma: no cover - needs a machine with none of them
        raise UserError(
            "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime / tensorflow)"
        ) from e


def check_flatbuffer(path):
    """Raise :class:`UserError` unless ``path`` looks like a complete TFLite flatbuffer."""
    if not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if size < 16 or head[4:8] != _TFLITE_MAGIC:
        raise UserError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)")


def load_interpreter(path=None, *, model_content=None, num_threads=1, xnnpack=True):
    """Load a TFLite model; return ``(interpreter, runtime_name)``.

    ``xnnpack=False`` runs on the built-in kernels only (no default delegate).
    A file that is not a flatbuffer, or is truncated, raises :class:`UserError`.
    """
    cls, name = _interpreter_class()
    kwargs = {"num_threads": num_threads}
    if not xnnpack:
        try:
            from ai_edge_litert.interpreter import OpResolverType
        except ImportError:  # pragma: no cover
            import tensorflow as tf

            OpResolverType = tf.lite.experimental.OpResolverType
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if path is not None:
        check_flatbuffer(path)
        kwargs["model_path"] = path
    else:
        kwargs["model_content"] = model_content
    try:
        interp = cls(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        where = path or "model bytes"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load {where} as a TFLite model (truncated or corrupt?): {first}") from e
    return interp, name


def op_histogram(interpreter):
    """Describe the graph the interpreter runs.

    Returns a dict with ``ops`` (histogram of the graph's operators), ``quantize_ops``,
    ``dequantize_ops``, ``float_compute_ops`` (FULLY_CONNECTED/BATCH_MATMUL
    running on float inputs), ``int8_compute_ops``, ``hybrid_compute_ops`` (int8 weights, float
    activations) and ``float_ops`` (every
    non-delegated, non-index op computing on float tensors, by type).
    """
    details = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    hist = collections.Counter(op["op_name"] for op in details if op["op_name"] != "DELEGATE")
    float_compute = collections.Counter()
    int_compute = collections.Counter()
    hybrid_compute = collections.Counter()
    float_ops = collections.Counter()
    for op in details:
        name = op["op_name"]
        if name in ("DELEGATE",) + CONVERSION_OPS + _INDEX_OPS:
            continue
        in_types = [str(tensors[i]["dtype"].__name__) for i in op["inputs"] if i >= 0 and i in tensors]
        is_float = bool(in_types) and in_types[0].startswith("float")
        hybrid = is_float and len(in_types) > 1 and in_types[1] == "int8"
        if name in COMPUTE_OPS:
            if hybrid:
                hybrid_compute[name] += 1  # dynamic-range: int8 weights, float activations
            else:
                (float_compute if is_float else int_compute)[name] += 1
        if is_float and not hybrid:
            float_ops[name] += 1
    return {
        "ops": dict(sorted(hist.items())),
        "num_nodes": sum(hist.values()),
        "quantize_ops": hist.get("QUANTIZE", 0),
        "dequantize_ops": hist.get("DEQUANTIZE", 0),
        "float_compute_ops": dict(float_compute),
        "int8_compute_ops": dict(int_compute),
        "hybrid_compute_ops": dict(hybrid_compute),
        "float_ops": dict(sorted(float_ops.items())),
    }


def delegated_nodes(interpreter):
    """Map each delegate partition to the original nodes it replaced.

    Returns ``(partitions, outside)``: a list of sets of node indices
    (:func:`mobile_bert_distill.litert.on_device_bench.partition_members`), and the
    histogram of op types that run outside every delegate.
    """
    from mobile_bert_distill.litert.on_device_bench import partition_members

    details = interpreter._get_ops_details()
    partitions = partition_members(details)
    inside = set().union(*partitions)
    outside = collections.Counter(op["op_name"] for op in details
                                  if op["op_name"] != "DELEGATE" and op["index"] not in inside)
    return partitions, dict(sorted(outside.items()))


def signature_runner(interpreter, key="serving_default"):
    """Return the named signature runner (the only one when ``key`` is missing)."""
    sigs = interpreter.get_signature_list()
    if not sigs:
        raise UserError("the model has no signatures; export it with `mbd export`")
    if key not in sigs:
        key = next(iter(sigs))
    return interpreter.get_signature_runner(key)


def signature_io(interpreter, key="serving_default"):
    """Describe each named input and output: tensor name, shape, dtype, scale, zero point."""
    runner = signature_runner(interpreter, key)

    def describe(details):
        out = {}
        for name, d in sorted(details.items()):
            scale, zero = d.get("quantization", (0.0, 0))
            out[name] = {
                "tensor_name": d["name"],
                "shape": [int(s) for s in d["shape"]],
                "dtype": d["dtype"].__name__,
                "quantization": {"scale": float(scale), "zero_point": int(zero)},
            }
        return out

    return {"inputs": describe(runner.get_input_details()), "outputs": describe(runner.get_output_details())}


def run_batches(interpreter, feeds, *, progress=None):
    """Run the ``serving_default`` signature over feeds of any batch size.

    ``feeds`` maps input names to ``[N, S]`` int32 arrays; the model's static
    batch size ``B`` is filled by padding the last chunk. Returns a dict of
    ``[N, ...]`` float32 outputs (int8 outputs are dequantised).
    """
    import numpy as np

    runner = signature_runner(interpreter)
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    batch = int(next(iter(in_details.values()))["shape"][0])
    n = len(next(iter(feeds.values())))
    results = collections.defaultdict(list)
    starts = range(0, n, batch)
    if progress is not None:
        starts = progress(starts)
    for start in starts:
        chunk = {}
        for name, arr in feeds.items():
            part = np.asarray(arr[start : start + batch], dtype=np.int32)
            if len(part) < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
            chunk[name] = part
        out = runner(**chunk)
        for name, value in out.items():
            scale, zero = out_details[name].get("quantization", (0.0, 0))
            if value.dtype != np.float32 and scale:
                value = (value.astype(np.float32) - zero) * scale
            results[name].append(value[: min(batch, n - start)])
    return {k: np.concatenate(v) for k, v in results.items()}
