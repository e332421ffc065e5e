"""Safetensors files written and read with NumPy alone, BF16 included.

BF16 has no NumPy dtype: it is handled as the top 16 bits of float32, rounded to nearest even
(:func:`to_bf16_bits`, :func:`from_bf16_bits`).

Example:
>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> write_safetensors(d + "/w.safetensors", {"a": np.array([1.0, 0.1], "float32")}, dtype="bfloat16")
>>> arrays, meta = read_safetensors(d + "/w.safetensors")
>>> arrays["a"].dtype.name, float(arrays["a"][1])
('float32', 0.10009765625)
"""

import json
import struct

import numpy as np

from mobile_bert_distill.errors import UserError

_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_NUMPY_ST = {np.dtype(v).str.lstrip("<|="): k for k, v in _ST_NUMPY.items()}


def to_bf16_bits(a):
    """float32/64 array -> uint16 bfloat16 bits (round to nearest even, NaN kept)."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype("<u2")
    nan = np.isnan(np.asarray(a, dtype="<f4"))
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def from_bf16_bits(u):
    """uint16 bfloat16 bits -> the float32 array they stand for (exact)."""
    return (np.asarray(u, dtype="<u2").astype("<u4") << np.uint32(16)).view("<f4")


def write_safetensors(path, arrays, metadata=None, dtype=None):
    """Write ``arrays`` (name -> NumPy array) as a safetensors file, NumPy only.

    Args:
        path: the file to write.
        arrays: name -> array; numeric or bool dtypes.
        metadata: name -> str, stored in the header's ``__metadata__``.
        dtype: ``bfloat16`` or ``float16`` stores float32/float64 arrays in that type; ``None`` or
            ``float32`` keeps every dtype.
    """
    entries = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.itemsize >= 4 and dtype == "bfloat16":
            st, raw = "BF16", to_bf16_bits(a)
        elif a.dtype.kind == "f" and a.dtype.itemsize >= 4 and dtype == "float16":
            st, raw = "F16", a.astype("<f2")
        else:
            key = a.dtype.str.lstrip("<|=>")
            if key not in _NUMPY_ST:
                raise ValueError(f"{name}: dtype {a.dtype} cannot be stored in safetensors")
            st, raw = _NUMPY_ST[key], a.astype(_ST_NUMPY[_NUMPY_ST[key]])
        entries[name] = (st, raw)
    _write_entries(path, entries, {str(k): str(v) for k, v in (metadata or {}).items()})


def _write_entries(path, entries, metadata):
    """The safetensors layout: ``entries`` maps name -> (safetensors dtype, array of its bytes)."""
    header, blobs, offset = {}, [], 0
    for name, (st, raw) in entries.items():
        data = np.ascontiguousarray(raw).tobytes()
        header[name] = {"dtype": st, "shape": list(raw.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read_safetensors(path, keep_dtype=False):
    """Read a safetensors file with NumPy alone.

    Args:
        path: the file.
        keep_dtype: return BF16 tensors as their uint16 bits instead of float32.

    Returns:
        ``(arrays, metadata)``: name -> array (BF16 and F16 become float32 unless ``keep_dtype``;
        F16 then stays float16), and the header's ``__metadata__`` dict.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise UserError(f"{path}: not a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except ValueError:
        raise UserError(f"{path}: not a safetensors file (bad header)") from None
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    arrays = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = blob[base + start:base + end]
        if info["dtype"] == "BF16":
            a = np.frombuffer(raw, dtype="<u2").reshape(info["shape"])
            a = a.copy() if keep_dtype else from_bf16_bits(a)
        elif info["dtype"] == "F16" and not keep_dtype:
            a = np.frombuffer(raw, dtype="<f2").reshape(info["shape"]).astype("float32")
        elif info["dtype"] in _ST_NUMPY:
            a = np.frombuffer(raw, dtype=_ST_NUMPY[info["dtype"]]).reshape(info["shape"]).copy()
        else:
            raise UserError(f"{path}: tensor {name} has dtype {info['dtype']}, which cannot be read here")
        arrays[name] = a
    return arrays, meta


def safetensors_dtypes(path):
    """name -> safetensors dtype string (``BF16``, ``F32``, ...) from the file's header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    return {k: v["dtype"] for k, v in header.items()}


def write_safetensors_exact(path, arrays, bf16, metadata):
    """Write arrays in their own dtypes; the names in ``bf16`` hold uint16 bfloat16 bits."""
    _write_entries(path, {name: ("BF16" if name in bf16 else _NUMPY_ST[a.dtype.str.lstrip("<|=>")], a)
                          for name, a in arrays.items()}, metadata)
