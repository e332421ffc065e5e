"""The teacher of a pack: its weights stored as bfloat16 (or float16) safetensors, rebuilt as float32 there.

An HDF5 weights file (keras-hub's ``model.weights.h5``) becomes one tensor per dataset, keyed by
its HDF5 path; its groups and attributes ride in the safetensors metadata, so
:func:`unpack_teacher` rebuilds the same file layout that Keras reads. Hugging Face
``*.safetensors`` and the kit's ``dual_heads.npz`` are stored the same way. Unpacking needs NumPy
and h5py only: it runs on the target before Keras is installed there.
"""

import contextlib
import json
import os
import re
import shutil

import numpy as np

from mobile_bert_distill.atomic import atomic_dir, atomic_write_json
from mobile_bert_distill.distill.pack_run.safetensors_io import (from_bf16_bits, read_safetensors,
                                                                 safetensors_dtypes, to_bf16_bits,
                                                                 write_safetensors, write_safetensors_exact)
from mobile_bert_distill.errors import UserError

TEACHER_DTYPES = ("bfloat16", "float16", "float32")
TEACHER_MANIFEST = "PACKED_TEACHER.json"
# Alternative weight formats of a Hugging Face folder (keras-hub reads model.safetensors) and the
# task head of a keras-hub preset (the kit builds its own heads): not packed.
SKIP_TEACHER_FILES = re.compile(
    r"(^|/)(pytorch_model.*\.bin|tf_model\.h5|flax_model\.msgpack|rust_model\.ot|.*\.onnx|onnx/.*|openvino/.*|"
    r"coreml/.*|task\.weights\.h5|__pycache__/.*|\..*)$")


def _log(msg):
    print(msg, flush=True)


class _NotPackable(Exception):
    pass


def _encode_attr(value):
    if isinstance(value, bytes):
        return {"t": "bytes", "v": value.decode("latin-1")}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise _NotPackable(f"attribute of dtype {a.dtype}")
    return {"t": "array", "v": a.tolist(), "dtype": a.dtype.str}


def _decode_attr(enc):
    if enc["t"] == "bytes":
        return np.bytes_(enc["v"].encode("latin-1"))
    if enc["t"] == "str":
        return enc["v"]
    return np.asarray(enc["v"], dtype=enc["dtype"])


def _h5_to_tensors(path):
    import h5py

    arrays, groups, attrs, dtypes = {}, [], {}, {}
    with h5py.File(path, "r") as f:
        if f.attrs:
            attrs[""] = {k: _encode_attr(v) for k, v in f.attrs.items()}

        def visit(name, obj):
            if obj.attrs:
                attrs[name] = {k: _encode_attr(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Group):
                groups.append(name)
            elif isinstance(obj, h5py.Dataset):
                if obj.dtype.kind not in "biuf" or obj.dtype.names is not None:
                    raise _NotPackable(f"dataset {name} of dtype {obj.dtype}")
                arrays[name] = np.asarray(obj[()])
                dtypes[name] = obj.dtype.str
            else:
                raise _NotPackable(f"{name} is a {type(obj).__name__}")

        f.visititems(visit)
    meta = {"mbd.kind": "h5", "mbd.groups": json.dumps(groups), "mbd.attrs": json.dumps(attrs),
            "mbd.dtypes": json.dumps(dtypes)}
    return arrays, meta


def _tensors_to_h5(arrays, meta, path):
    import h5py

    dtypes = json.loads(meta["mbd.dtypes"])
    attrs = json.loads(meta["mbd.attrs"])
    with h5py.File(path, "w") as f:
        for g in json.loads(meta["mbd.groups"]):
            f.require_group(g)
        for name, a in arrays.items():
            f.create_dataset(name, data=np.asarray(a).astype(dtypes.get(name, a.dtype)))
        for name, values in attrs.items():
            obj = f if name == "" else f[name]
            for k, enc in values.items():
                obj.attrs[k] = _decode_attr(enc)


# ------------------------------------------------------------------------------------ teacher
def _teacher_files(src):
    kept, skipped = [], []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for fn in sorted(files):
            rel = os.path.relpath(os.path.join(root, fn), src).replace(os.sep, "/")
            (skipped if SKIP_TEACHER_FILES.search(rel) else kept).append(rel)
    return kept, skipped


def pack_teacher(src, dst, dtype="bfloat16", log=_log):
    """Copy the teacher folder ``src`` to ``dst`` with its weights stored in ``dtype``.

    Weight files: ``*.h5`` (Keras/keras-hub weights; every dataset keyed by its HDF5 path),
    ``*.safetensors`` (Hugging Face) and ``*.npz`` (the kit's ``dual_heads.npz``) become
    ``<name>.<dtype>.safetensors``; floating-point tensors are stored in ``dtype``, others as they
    are. Every other file (config.json, tokenizer files, vocabularies) is copied. Alternative weight
    formats (``pytorch_model.bin``, ``tf_model.h5``, ONNX, ...), ``task.weights.h5`` and hidden
    files are left out. ``dst/PACKED_TEACHER.json`` tells :func:`unpack_teacher` what to rebuild.

    Args:
        src: a keras-hub preset folder, a Hugging Face BERT folder or a teacher checkpoint of ``mbd distill``.
        dst: the folder to write (must not exist).
        dtype: ``bfloat16`` (default), ``float16``, or ``float32`` (weights copied unchanged).
        log: progress callback.

    Returns:
        The manifest dict written to ``PACKED_TEACHER.json``.
    """
    if dtype not in TEACHER_DTYPES:
        raise UserError(f"teacher dtype must be one of {', '.join(TEACHER_DTYPES)} (got {dtype!r})")
    kept, skipped = _teacher_files(src)
    if not kept:
        raise UserError(f"teacher folder {src} is empty")
    os.makedirs(dst)
    manifest = {"format": 1, "dtype": dtype, "weights": {}, "skipped": skipped}
    for rel in kept:
        path = os.path.join(src, rel)
        out = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        kind = next((k for k, ext in (("h5", ".h5"), ("safetensors", ".safetensors"), ("npz", ".npz"))
                     if rel.endswith(ext)), None)
        if kind is None or dtype == "float32":
            shutil.copy2(path, out)
            continue
        log(f"  teacher {rel}: {os.path.getsize(path) / 1e6:.1f} MB -> {dtype}")
        try:
            if kind == "h5":
                arrays, meta = _h5_to_tensors(path)
            elif kind == "safetensors":
                arrays, orig = read_safetensors(path, keep_dtype=True)
                dt = {k: a.dtype.str for k, a in arrays.items()}
                bf16 = [k for k, v in safetensors_dtypes(path).items() if v == "BF16"]
                for k in bf16:  # already bfloat16: keep the bits, stored as BF16 again below
                    arrays[k] = from_bf16_bits(arrays[k])
                meta = {"mbd.kind": "safetensors", "mbd.metadata": json.dumps(orig), "mbd.dtypes": json.dumps(dt),
                        "mbd.bf16": json.dumps(bf16)}
            else:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                meta = {"mbd.kind": "npz", "mbd.dtypes": json.dumps({k: a.dtype.str for k, a in arrays.items()})}
            packed = f"{rel}.{dtype}.safetensors"
            write_safetensors(os.path.join(dst, packed), arrays, metadata=meta, dtype=dtype)
        except (_NotPackable, ValueError, OSError) as e:  # e.g. string arrays: the file travels as it is
            log(f"  teacher {rel}: kept as it is ({e})")
            with contextlib.suppress(OSError):
                os.remove(os.path.join(dst, f"{rel}.{dtype}.safetensors"))
            shutil.copy2(path, out)
            continue
        manifest["weights"][rel] = {"kind": kind, "file": packed}
    atomic_write_json(os.path.join(dst, TEACHER_MANIFEST), manifest)
    return manifest


def unpack_teacher(src, dst):
    """Rebuild the teacher folder written by :func:`pack_teacher`, with float32 weights.

    ``dst`` appears complete or not at all (built in a temporary sibling, then renamed); an existing
    ``dst`` is left alone, so a second call does nothing. Needs NumPy and h5py only (plus the
    files' own formats): no Keras, no TensorFlow.

    Args:
        src: the packed teacher folder (with ``PACKED_TEACHER.json``).
        dst: the preset folder to create.

    Returns:
        ``dst``.
    """
    if os.path.isdir(dst):
        return dst
    manifest_path = os.path.join(src, TEACHER_MANIFEST)
    if not os.path.isfile(manifest_path):
        raise UserError(f"{src} is not a packed teacher (no {TEACHER_MANIFEST})")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    packed = {w["file"]: rel for rel, w in manifest["weights"].items()}
    with atomic_dir(dst) as tmp:
        for root, dirs, files in os.walk(src):
            for fn in files:
                rel = os.path.relpath(os.path.join(root, fn), src).replace(os.sep, "/")
                if rel == TEACHER_MANIFEST or rel in packed:
                    continue
                out = os.path.join(tmp, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copy2(os.path.join(root, fn), out)
        for file, rel in packed.items():
            out = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            arrays, meta = read_safetensors(os.path.join(src, file))
            kind = meta.get("mbd.kind")
            dtypes = json.loads(meta.get("mbd.dtypes", "{}"))
            if kind == "h5":
                _tensors_to_h5(arrays, meta, out)
            elif kind == "safetensors":
                bf16 = set(json.loads(meta.get("mbd.bf16", "[]")))
                restored = {k: (to_bf16_bits(a) if k in bf16 else a.astype(dtypes.get(k, a.dtype)))
                            for k, a in arrays.items()}
                write_safetensors_exact(out, restored, bf16, json.loads(meta.get("mbd.metadata", "{}")))
            elif kind == "npz":
                np.savez(out[:-4] if out.endswith(".npz") else out,
                         **{k: a.astype(dtypes.get(k, a.dtype)) for k, a in arrays.items()})
            else:
                raise UserError(f"{file}: unknown packed kind {kind!r}")
    return dst

