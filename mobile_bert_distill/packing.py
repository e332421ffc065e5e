"""`mbd pack-run`: one folder that trains a config on an offline machine without TensorFlow.

The target is a machine with a system Python (3.12 by default) that has JAX, NumPy, h5py,
safetensors and tokenizers, but no TensorFlow, Keras or keras-hub, and no network. The folder
holds everything else the JAX training path needs::

    DIR/
      run.py        stdlib only: `python3 run.py [extra `mbd distill` args]`
      wheels/       keras, keras-hub (this machine's versions) and what they need that is
                    not on the target (see DEVICE_HAS, LEFT_OUT)
      package/      a copy of the `mobile_bert_distill/` source tree
      teacher/      the teacher preset, weights as bfloat16 safetensors (see pack_teacher)
      data/         the first --max-lines lines of each corpus file, the vocabularies and a
                    config.yaml whose paths are relative to data/
      manifest.json what was packed, from where, and the size of each part

`run.py` installs the wheels the target lacks into DIR/site (`pip install --no-index --no-deps
--target`), rebuilds a float32 teacher preset in DIR/data/teacher_preset with :func:`unpack_teacher`,
and runs ``python3 -m mobile_bert_distill distill --backend jax --config data/config.yaml --out
DIR/out`` with ``PYTHONPATH=site:package``, streaming its output and exiting with its code.

Teacher weights are stored as safetensors written and read here with NumPy alone (BF16 has no
NumPy dtype, so it is handled as the top 16 bits of float32, rounded to nearest even). An HDF5
weights file (keras-hub's ``model.weights.h5``) becomes one tensor per dataset, keyed by its HDF5
path; its groups and attributes ride in the safetensors metadata, so unpacking rebuilds the same
file layout that Keras reads.

Example:
>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> write_safetensors(d + "/w.safetensors", {"a": np.array([1.0, 0.1], "float32")}, dtype="bfloat16")
>>> arrays, meta = read_safetensors(d + "/w.safetensors")
>>> arrays["a"].dtype.name, float(arrays["a"][1])
('float32', 0.10009765625)
"""

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np

from mobile_bert_distill import config as config_lib
from mobile_bert_distill.atomic import atomic_dir, atomic_write_json, atomic_write_text, locked_output
from mobile_bert_distill.errors import UserError

PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ROOTS = ("keras", "keras-hub")  # pinned to this machine's versions; run.py always installs them
KIT_NEEDS = ("pyyaml", "tqdm")  # imported by this package on the JAX training path
# On the target already (JAX and its dependencies, the listed libraries): never shipped, since
# a copy first on PYTHONPATH could shadow the one JAX was built against.
DEVICE_HAS = ("numpy", "h5py", "safetensors", "tokenizers", "jax", "jaxlib", "ml-dtypes", "opt-einsum", "scipy")
# Requirements of keras-hub left out on purpose, and why.
LEFT_OUT = {
    "tensorflow-text": "TensorFlow; the JAX path tokenizes without it",
    "tensorflow": "not used by the JAX path",
    "kagglehub": "downloads presets (no network there); keras-hub imports without it, but not "
                 "with kagglehub and without kagglesdk",
    "kagglesdk": "only used by kagglehub",
    "sentencepiece": "not used by BERT",
}
WARN_MB = 60
# Lines packed from each corpus file by default: the demo's teacher (45.7 MB as bfloat16), the wheels
# (8.4 MB) and 100,000 demo lines (11.5 MB) came to 66.2 MB; at 40,000 lines such a pack is ~59 MB.
DEFAULT_MAX_LINES = 40000
TEACHER_DTYPES = ("bfloat16", "float16", "float32")
TEACHER_MANIFEST = "PACKED_TEACHER.json"
# Alternative weight formats of a Hugging Face folder (keras-hub reads model.safetensors) and the
# task head of a keras-hub preset (the kit builds its own heads): not packed.
SKIP_TEACHER_FILES = re.compile(
    r"(^|/)(pytorch_model.*\.bin|tf_model\.h5|flax_model\.msgpack|rust_model\.ot|.*\.onnx|onnx/.*|openvino/.*|"
    r"coreml/.*|task\.weights\.h5|__pycache__/.*|\..*)$")
PARTS = ("wheels", "package", "teacher", "data", "run.py")
UNPACKED_TEACHER = "teacher_preset"  # in data/, rebuilt by run.py


def _log(msg):
    print(msg, flush=True)


def default_wheel_cache():
    """``$MBD_CACHE_DIR/wheels``, else ``~/.cache/mobile_bert_distill/wheels``."""
    root = os.environ.get("MBD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mobile_bert_distill")
    return os.path.join(root, "wheels")


# ----------------------------------------------------------------------------------- wheels
def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name):
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheel_requirements(python_version=PYTHON_VERSION):
    """The distributions the target lacks, pinned to the versions installed here.

    Walks the ``Requires-Dist`` of keras and keras-hub (markers evaluated for CPython
    ``python_version`` on Linux x86_64), skipping :data:`DEVICE_HAS` and :data:`LEFT_OUT`, and adds
    :data:`KIT_NEEDS`.

    Args:
        python_version: the target's ``MAJOR.MINOR``.

    Returns:
        A list of ``(name, version)``, keras and keras-hub first.
    """
    import importlib.metadata

    from packaging.markers import Marker
    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": python_version + ".0",
           "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    skip = {_canon(n) for n in DEVICE_HAS} | {_canon(n) for n in LEFT_OUT}
    order, seen = [], set()
    todo = list(ROOTS) + list(KIT_NEEDS)
    while todo:
        name = todo.pop(0)
        key = _canon(name)
        if key in seen or key in skip:
            continue
        seen.add(key)
        version = _installed_version(name)
        if version is None:
            raise UserError(f"{name} is not installed in {sys.executable}: it must be, to pin the version packed")
        order.append((key, version))
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or Marker(str(req.marker)).evaluate(env):
                todo.append(req.name)
    return order


def _wheel_fits(filename, name, version, python_version=PYTHON_VERSION):
    """Is ``filename`` a wheel of ``name==version`` that installs on CPython ``python_version``, Linux x86_64?"""
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) < 5 or _canon(parts[0]) != _canon(name) or parts[1] != version:
        return False
    pyt, abi, plat = parts[-3:]
    major, minor = (int(x) for x in python_version.split(".")[:2])
    ok_py = False
    for tag in pyt.split("."):
        if tag in (f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"):
            ok_py = True
        elif "abi3" in abi.split(".") and re.fullmatch(rf"cp{major}(\d+)", tag) and int(tag[3:]) <= minor:
            ok_py = True
    ok_plat = plat == "any" or any(p.startswith("manylinux") and p.endswith("x86_64") for p in plat.split("."))
    return ok_py and ok_plat


def _find_wheel(folder, name, version, python_version):
    if not os.path.isdir(folder):
        return None
    hits = sorted(f for f in os.listdir(folder) if _wheel_fits(f, name, version, python_version))
    return os.path.join(folder, hits[-1]) if hits else None


def _pip_download(missing, cache, python_version, log):
    log(f"downloading {len(missing)} wheel(s) into {cache} (pip download): "
        f"{', '.join(f'{n}=={v}' for n, v in missing)}")
    os.makedirs(cache, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--disable-pip-version-check",
           "--dest", cache]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{n}=={v}" for n, v in missing]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"pip download failed ({type(e).__name__}); without network, take the wheels from a "
                        "folder", option="wheels_dir", purpose="DIR holding them") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise UserError(f"pip download failed ({last[:300]}); if this machine has no network, take the wheels of "
                        f"{' '.join(f'{n}=={v}' for n, v in missing)} from a folder", option="wheels_dir",
                        purpose="DIR holding them")


def collect_wheels(dest, wheels_dir=None, cache_dir=None, python_version=PYTHON_VERSION, log=_log):
    """Copy the wheels of :func:`wheel_requirements` into ``dest``.

    Args:
        dest: folder to fill (created).
        wheels_dir: take every wheel from this folder, nothing is downloaded; a missing one is an error.
        cache_dir: where downloaded wheels are kept (default :func:`default_wheel_cache`); wheels
            already there are reused, the others fetched with one ``pip download``.
        python_version: the target's ``MAJOR.MINOR``.
        log: progress callback.

    Returns:
        The list of wheel file names copied.
    """
    reqs = wheel_requirements(python_version)
    if wheels_dir is not None:
        source = os.path.abspath(wheels_dir)
        if not os.path.isdir(source):
            raise UserError(f"wheels folder not found: {wheels_dir}")
        for name, version in reqs:
            if _find_wheel(source, name, version, python_version) is None:
                raise UserError(f"no wheel of {name}=={version} for CPython {python_version} on Linux x86_64 "
                                f"in {wheels_dir} (needed: {' '.join(f'{n}=={v}' for n, v in reqs)})")
    else:
        source = os.path.abspath(cache_dir or default_wheel_cache())
        missing = [(n, v) for n, v in reqs if _find_wheel(source, n, v, python_version) is None]
        if missing:
            _pip_download(missing, source, python_version, log)
        for name, version in missing:
            if _find_wheel(source, name, version, python_version) is None:
                raise UserError(f"pip download gave no usable wheel of {name}=={version} for CPython "
                                f"{python_version} on Linux x86_64", option="wheels_dir", purpose="DIR holding one")
    os.makedirs(dest, exist_ok=True)
    names = []
    for name, version in reqs:
        path = _find_wheel(source, name, version, python_version)
        shutil.copy2(path, os.path.join(dest, os.path.basename(path)))
        names.append(os.path.basename(path))
    return names


# ------------------------------------------------------------------------------- safetensors
_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_NUMPY_ST = {np.dtype(v).str.lstrip("<|="): k for k, v in _ST_NUMPY.items()}


def _to_bf16_bits(a):
    """float32/64 array -> uint16 bfloat16 bits (round to nearest even, NaN kept)."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype("<u2")
    nan = np.isnan(np.asarray(a, dtype="<f4"))
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def _from_bf16_bits(u):
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
            st, raw = "BF16", _to_bf16_bits(a)
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
            a = a.copy() if keep_dtype else _from_bf16_bits(a)
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


# --------------------------------------------------------------------------------- HDF5 <-> tensors
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
                    arrays[k] = _from_bf16_bits(arrays[k])
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
                restored = {k: (_to_bf16_bits(a) if k in bf16 else a.astype(dtypes.get(k, a.dtype)))
                            for k, a in arrays.items()}
                _write_safetensors_exact(out, restored, bf16, json.loads(meta.get("mbd.metadata", "{}")))
            elif kind == "npz":
                np.savez(out[:-4] if out.endswith(".npz") else out,
                         **{k: a.astype(dtypes.get(k, a.dtype)) for k, a in arrays.items()})
            else:
                raise UserError(f"{file}: unknown packed kind {kind!r}")
    return dst


def _write_safetensors_exact(path, arrays, bf16, metadata):
    """Write arrays in their own dtypes; the names in ``bf16`` hold uint16 bfloat16 bits."""
    _write_entries(path, {name: ("BF16" if name in bf16 else _NUMPY_ST[a.dtype.str.lstrip("<|=>")], a)
                          for name, a in arrays.items()}, metadata)


# --------------------------------------------------------------------------------------- data
def _head(src, dst, max_lines):
    """Copy the first ``max_lines`` lines (all with 0) byte for byte; returns the lines copied."""
    n = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for line in fin:
            if max_lines and n >= max_lines:
                break
            fout.write(line)
            n += 1
    return n


def _need_file(path, what):
    if not path or not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    return path


def _unique(name, used):
    base, ext = os.path.splitext(name)
    out, i = name, 1
    while out in used:
        i += 1
        out = f"{base}_{i}{ext}"
    used.add(out)
    return out


# ------------------------------------------------------------------------------------ run.py
RUN_PY = r'''#!/usr/bin/env python3
"""Train a packed config here, offline, on JAX: `python3 run.py [extra `mbd distill` arguments]`.

Written by `mbd pack-run` (mobile_bert_distill {version}); needs only this folder and a Python
{python} with JAX, NumPy, h5py, safetensors and tokenizers. It

1. installs the wheels in wheels/ that this Python lacks into site/ (`pip install --no-index
   --no-deps --target site`; keras and keras-hub always, unless this Python has the same versions);
   without pip it unzips them, which is what installing a wheel amounts to;
2. rebuilds the float32 teacher preset data/{unpacked}/ from teacher/ (bfloat16 safetensors);
3. runs `python3 -m mobile_bert_distill distill --backend jax --config data/config.yaml --out out`
   with PYTHONPATH=site:package and KERAS_BACKEND=jax, streaming its output, and exits with its code.

`python3 run.py --setup-only` does 1 and 2, prints the PYTHONPATH that runs the kit from this
folder, and stops: for other scripts of the kit (e.g. its benchmarks/table2.py, whose --teacher is
then data/{unpacked}; run them with KERAS_BACKEND=jax).

Extra arguments go to `mbd distill` and win over the ones above, e.g.
    python3 run.py --override train.steps=20000 train.batch_size=256
    python3 run.py --out /scratch/run1 --overwrite
A killed run resumes from its last checkpoint when the same command is run again.
"""

import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(HERE, "site")
PACKAGE = os.path.join(HERE, "package")
ALWAYS = {{"keras", "keras-hub", "keras_hub"}}  # the versions the kit was packed with


def say(msg):
    print("run.py: " + msg, flush=True)


def canon(name):
    return name.replace("_", "-").replace(".", "-").lower()


def system_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheels_to_install():
    todo = []
    for path in sorted(glob.glob(os.path.join(HERE, "wheels", "*.whl"))):
        name, version = os.path.basename(path).split("-")[:2]
        have = system_version(canon(name))
        if have is None or (canon(name) in ALWAYS and have != version):
            todo.append(path)
    return todo


def unzip_wheel(path, target):
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            parts = member.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib") or not parts[-1]:
                    continue
                out = os.path.join(target, *parts[2:])
            else:
                out = os.path.join(target, *parts)
            if member.endswith("/"):
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)


def install(wheels):
    names = sorted(os.path.basename(w) for w in wheels)
    marker = os.path.join(SITE, ".installed.json")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == names:
                return
    tmp = SITE + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    say(f"installing {{len(wheels)}} wheel(s) into {{SITE}}")
    has_pip = subprocess.call([sys.executable, "-m", "pip", "--version"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if has_pip:
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                                "--disable-pip-version-check", "--no-warn-script-location",
                                "--target", tmp] + list(wheels))
        if code != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            sys.exit(f"run.py: pip install of the wheels failed (exit code {{code}})")
    else:
        say("no pip in this Python: unzipping the wheels instead")
        for w in wheels:
            unzip_wheel(w, tmp)
    with open(os.path.join(tmp, ".installed.json"), "w", encoding="utf-8") as f:
        json.dump(names, f)
    shutil.rmtree(SITE, ignore_errors=True)
    os.replace(tmp, SITE)


def main(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    setup_only = "--setup-only" in argv
    wheels = wheels_to_install()
    if wheels:
        install(wheels)
    env = dict(os.environ)
    path = [p for p in (SITE if wheels else None, PACKAGE) if p]
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["KERAS_BACKEND"] = "jax"
    packed_teacher = os.path.join(HERE, "teacher")
    teacher = os.path.join(HERE, "data", "{unpacked}")
    if os.path.isdir(packed_teacher) and not os.path.isdir(teacher):
        say(f"unpacking the teacher into {{teacher}}")
        code = subprocess.call([sys.executable, "-c", "import sys; from mobile_bert_distill.packing import "
                                "unpack_teacher; unpack_teacher(sys.argv[1], sys.argv[2])", packed_teacher, teacher],
                               env=env, cwd=HERE)
        if code != 0:
            return code
    if setup_only:
        print("PYTHONPATH=" + env["PYTHONPATH"], flush=True)
        return 0
    cmd = [sys.executable, "-m", "mobile_bert_distill", "distill", "--backend", "jax",
           "--config", os.path.join(HERE, "data", "config.yaml"), "--out", os.path.join(HERE, "out")] + argv
    say(" ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, env=env, cwd=HERE)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


# ------------------------------------------------------------------------------------- sizes
def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def size_table(sizes, warn_mb=WARN_MB):
    """Lines of a table of part sizes in MB (10^6 bytes), with the total and a warning above ``warn_mb``."""
    lines = [f"  {'part':<10}{'MB':>9}"]
    for name, n in sizes.items():
        lines.append(f"  {name:<10}{n / 1e6:>9.2f}")
    total = sum(sizes.values())
    lines.append(f"  {'total':<10}{total / 1e6:>9.2f}")
    if total / 1e6 > warn_mb:
        lines.append(f"warning: the folder is {total / 1e6:.1f} MB, more than {warn_mb} MB")
    return lines


# -------------------------------------------------------------------------------------- pack
def _teacher_source(cfg):
    """The teacher folder to pack, or ``None`` (a random teacher, or nokd without a local teacher)."""
    t = cfg["teacher"]
    if t["random"] or not t["source"]:
        return None
    src = str(t["source"])
    if cfg["mode"] == "nokd":  # nokd reads only the teacher's depth, from its config.json
        return src if os.path.isfile(os.path.join(src, "config.json")) else None
    if not os.path.isdir(src):
        raise UserError(f"teacher.source {src!r} is not a folder: pack-run packs a local teacher (a keras-hub "
                        "preset folder, a Hugging Face BERT folder or a teacher checkpoint); download it first")
    return src


def pack_run(config_path, out_dir, overrides=(), wheels_dir=None, no_wheels=False, max_lines=DEFAULT_MAX_LINES,
             overwrite=False, cache_dir=None, python_version=PYTHON_VERSION, teacher_dtype="bfloat16", log=_log):
    """Write the offline training folder ``out_dir`` for the config ``config_path``.

    Args:
        config_path: the distillation config (YAML, as for ``mbd distill``).
        out_dir: the folder to write; built in a temporary sibling and renamed at the end.
        overrides: ``key=value`` strings applied to the config (as ``--override``).
        wheels_dir: take the wheels from this folder instead of downloading them.
        no_wheels: write no wheels/ (the target has keras and keras-hub).
        max_lines: lines copied from the start of each corpus and held-out file (0: all).
        overwrite: replace an existing ``out_dir``.
        cache_dir: download cache of the wheels (default :func:`default_wheel_cache`).
        python_version: the target Python's ``MAJOR.MINOR`` (wheels are chosen for it).
        teacher_dtype: ``bfloat16``, ``float16`` or ``float32``: how the teacher weights are stored.
        log: progress callback.

    Returns:
        A summary dict: ``path``, ``sizes`` (part -> bytes), ``wheels``, ``teacher``, ``config``.
    """
    import mobile_bert_distill

    if not isinstance(max_lines, int) or max_lines < 0:
        raise UserError(f"max lines must be an integer >= 0 (got {max_lines!r})")
    if teacher_dtype not in TEACHER_DTYPES:
        raise UserError(f"teacher dtype must be one of {', '.join(TEACHER_DTYPES)} (got {teacher_dtype!r})")
    if not re.fullmatch(r"3\.\d+", str(python_version)):
        raise UserError(f"python version must look like 3.12 (got {python_version!r})")
    out_dir = os.path.abspath(out_dir)
    with locked_output(out_dir, overwrite, "pack folder"):
        data, base = config_lib.load_yaml(config_path)
        cfg = config_lib.resolve(data, list(overrides), base_dir=base)
        d, t = cfg["data"], cfg["teacher"]
        corpus = [_need_file(p, "corpus file") for p in d["corpus"]]
        heldout = _need_file(d["heldout"], "held-out file") if d["heldout"] else None
        student_vocab = _need_file(d["student_vocab"], "student vocabulary")
        teacher_vocab = _need_file(t["random"]["vocabulary"], "teacher vocabulary") if t["random"] else None
        teacher_src = _teacher_source(cfg)
        package_src = os.path.dirname(os.path.abspath(mobile_bert_distill.__file__))

        with atomic_dir(out_dir, overwrite=True) as tmp:
            wheels = []
            if not no_wheels:
                log("wheels: keras, keras-hub and what the target lacks")
                wheels = collect_wheels(os.path.join(tmp, "wheels"), wheels_dir=wheels_dir, cache_dir=cache_dir,
                                        python_version=python_version, log=log)
            shutil.copytree(package_src, os.path.join(tmp, "package", "mobile_bert_distill"),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
            teacher_info = None
            if teacher_src:
                if cfg["mode"] == "nokd":
                    log(f"teacher: nokd reads only its depth; packing {teacher_src}/config.json")
                    os.makedirs(os.path.join(tmp, "teacher"))
                    shutil.copy2(os.path.join(teacher_src, "config.json"), os.path.join(tmp, "teacher", "config.json"))
                    atomic_write_json(os.path.join(tmp, "teacher", TEACHER_MANIFEST),
                                      {"format": 1, "dtype": None, "weights": {}, "skipped": ["all but config.json"]})
                else:
                    log(f"teacher: packing {teacher_src} ({_size(teacher_src) / 1e6:.1f} MB) as {teacher_dtype}")
                    teacher_info = pack_teacher(teacher_src, os.path.join(tmp, "teacher"), dtype=teacher_dtype, log=log)
                    if teacher_info["skipped"]:
                        log(f"  teacher: left out {', '.join(teacher_info['skipped'])}")
            ddir = os.path.join(tmp, "data")
            os.makedirs(ddir)
            # names of the folder's top level too: config paths are looked up from there first (config.resolve)
            used = {"config.yaml", UNPACKED_TEACHER, "site", "out", "manifest.json"} | set(PARTS)
            log(f"data: the first {max_lines or 'all'} lines of {len(corpus) + bool(heldout)} text file(s)")
            packed_corpus, lines = [], {}
            for p in corpus:
                name = _unique(os.path.basename(p), used)
                lines[name] = _head(p, os.path.join(ddir, name), max_lines)
                packed_corpus.append(name)
            cfg["data"]["corpus"] = packed_corpus
            if heldout:
                name = _unique("heldout_" + os.path.basename(heldout), used)
                lines[name] = _head(heldout, os.path.join(ddir, name), max_lines)
                cfg["data"]["heldout"] = name
            name = _unique("student_vocab.txt", used)
            shutil.copy2(student_vocab, os.path.join(ddir, name))
            cfg["data"]["student_vocab"] = name
            if teacher_vocab:
                name = _unique("teacher_vocab.txt", used)
                shutil.copy2(teacher_vocab, os.path.join(ddir, name))
                cfg["teacher"]["random"]["vocabulary"] = name
            if teacher_src:
                cfg["teacher"]["source"] = UNPACKED_TEACHER  # data/teacher_preset: unpacked there by run.py
            config_text = ("# written by `mbd pack-run`: paths are relative to this folder (data/); run.py rebuilds\n"
                           "# data/teacher_preset from ../teacher before training\n" + config_lib.dump(cfg))
            atomic_write_text(os.path.join(ddir, "config.yaml"), config_text)
            atomic_write_text(os.path.join(tmp, "run.py"),
                              RUN_PY.format(version=mobile_bert_distill.__version__, python=python_version,
                                            unpacked=UNPACKED_TEACHER))
            os.chmod(os.path.join(tmp, "run.py"), 0o755)
            sizes = {part: _size(os.path.join(tmp, part)) for part in PARTS if os.path.exists(os.path.join(tmp, part))}
            summary = {"path": out_dir, "config": os.path.abspath(config_path), "overrides": list(overrides),
                       "python_version": python_version, "wheels": wheels, "lines": lines,
                       "teacher": {"source": teacher_src, "dtype": teacher_dtype if teacher_info else None,
                                   "weights": sorted(teacher_info["weights"]) if teacher_info else []},
                       "sizes": sizes, "total_bytes": sum(sizes.values())}
            atomic_write_json(os.path.join(tmp, "manifest.json"), summary)
            log(f"finishing: renaming into {out_dir}")
        return summary
