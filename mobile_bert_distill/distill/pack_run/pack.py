"""`mbd pack-run` itself: :func:`pack_run` writes the folder, part by part, whole or not at all."""

import os
import re
import shutil

from mobile_bert_distill.atomic import atomic_dir, atomic_write_json, atomic_write_text, locked_output
from mobile_bert_distill.distill import config as config_lib
from mobile_bert_distill.distill.pack_run.teacher import TEACHER_DTYPES, TEACHER_MANIFEST, pack_teacher
from mobile_bert_distill.distill.pack_run.template import run_py
from mobile_bert_distill.distill.pack_run.wheels import PYTHON_VERSION, collect_wheels
from mobile_bert_distill.errors import UserError

WARN_MB = 60
# Lines packed from each corpus file by default: the demo's teacher (45.7 MB as bfloat16), the wheels
# (8.4 MB) and 100,000 demo lines (11.5 MB) came to 66.2 MB; at 40,000 lines such a pack is ~59 MB.
DEFAULT_MAX_LINES = 40000
PARTS = ("wheels", "package", "teacher", "data", "run.py")
UNPACKED_TEACHER = "teacher_preset"  # in data/, rebuilt by run.py


def _log(msg):
    print(msg, flush=True)


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
        cache_dir: download cache of the wheels (default
            :func:`~mobile_bert_distill.distill.pack_run.wheels.default_wheel_cache`).
        python_version: the target Python's ``MAJOR.MINOR`` (wheels are chosen for it).
        teacher_dtype: ``bfloat16``, ``float16`` or ``float32``: how the teacher weights are stored.
        log: progress callback.

    Returns:
        A summary dict: ``path``, ``sizes`` (part -> bytes), ``wheels``, ``teacher``, ``config``.
    """
    if not isinstance(max_lines, int) or max_lines < 0:
        raise UserError(f"max lines must be an integer >= 0 (got {max_lines!r})")
    if teacher_dtype not in TEACHER_DTYPES:
        raise UserError(f"teacher dtype must be one of {', '.join(TEACHER_DTYPES)} (got {teacher_dtype!r})")
    if not re.fullmatch(r"3\.\d+", str(python_version)):
        raise UserError(f"python version must look like 3.12 (got {python_version!r})")
    out_dir = os.path.abspath(out_dir)
    with locked_output(out_dir, overwrite, "pack folder"):
        return _locked_pack_run(config_path, out_dir, overrides, wheels_dir, no_wheels, max_lines, cache_dir,
                                python_version, teacher_dtype, log)


def _locked_pack_run(config_path, out_dir, overrides, wheels_dir, no_wheels, max_lines, cache_dir,
                     python_version, teacher_dtype, log):
    import mobile_bert_distill

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
            teacher_info = _pack_teacher_part(cfg["mode"], teacher_src, os.path.join(tmp, "teacher"),
                                              teacher_dtype, log)
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
                          run_py(mobile_bert_distill.__version__, python_version, UNPACKED_TEACHER))
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


def _pack_teacher_part(mode, teacher_src, dst, teacher_dtype, log):
    """Write the pack's ``teacher/``; returns :func:`pack_teacher`'s manifest, or ``None`` for nokd."""
    if mode == "nokd":
        log(f"teacher: nokd reads only its depth; packing {teacher_src}/config.json")
        os.makedirs(dst)
        shutil.copy2(os.path.join(teacher_src, "config.json"), os.path.join(dst, "config.json"))
        atomic_write_json(os.path.join(dst, TEACHER_MANIFEST),
                          {"format": 1, "dtype": None, "weights": {}, "skipped": ["all but config.json"]})
        return None
    log(f"teacher: packing {teacher_src} ({_size(teacher_src) / 1e6:.1f} MB) as {teacher_dtype}")
    teacher_info = pack_teacher(teacher_src, dst, dtype=teacher_dtype, log=log)
    if teacher_info["skipped"]:
        log(f"  teacher: left out {', '.join(teacher_info['skipped'])}")
    return teacher_info
