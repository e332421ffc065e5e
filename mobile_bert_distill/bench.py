"""``mbd bench``: time .tflite models against a BERT-base baseline and write a report.

The measuring itself is :mod:`mobile_bert_distill.litert_bench` (the same
standalone file as ``benchmarks/on_device_bench.py``), one fresh worker
process per (model, sequence length, threads). This module adds what needs
the rest of the kit: the BERT-base baseline (built with keras-hub, exported
with :func:`mobile_bert_distill.export.export_keras_model`, cached on disk),
architectures and analytic FLOPs/params, merging of board results, the
report and plots, and an adb script for Android phones.

Example::

    from mobile_bert_distill import bench
    doc = bench.run_bench(models=["student.tflite"], baseline="bert-base",
                          seq_lens=[128], threads=[1], runs=20, warmup=3, out="bench")
    print(doc["models"][0]["flops_counted"]["matmul"])
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys

from mobile_bert_distill import flops as flops_mod
from mobile_bert_distill import litert_bench as lb
from mobile_bert_distill.atomic import atomic_dir, atomic_write_json, atomic_write_text, locked_output
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.params import BERT_BASE, BertConfig, param_counts

BASELINE_LABEL = "BERT-base"
TOOL = "mbd bench"


def default_cache_dir():
    root = os.environ.get("MBD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mobile_bert_distill")
    return os.path.join(root, "baselines")


def default_quantization():
    """The mode ``mbd export`` writes by default (``export.DEFAULT_QUANTIZATION``)."""
    from mobile_bert_distill.export import DEFAULT_QUANTIZATION

    return DEFAULT_QUANTIZATION


# --------------------------------------------------------------------------
# the baseline
# --------------------------------------------------------------------------
class Baseline:
    """What ``--baseline`` names: ``bert-base`` (random init) or ``keras-hub-preset:NAME_OR_DIR``."""

    def __init__(self, spec, export_kwargs=None):
        self.spec = spec
        self.export_kwargs = dict(export_kwargs or {})
        if spec == "bert-base":
            self.kind, self.preset, self.config = "random", None, BERT_BASE
            self.label = BASELINE_LABEL
            self.note = ("BERT-base architecture (12 x 768, 30522 WordPieces) with random weights "
                         "(seeded; biases and LayerNorm weights perturbed so that no op folds away): "
                         "speed, size and FLOPs do not depend on training")
        elif spec.startswith("keras-hub-preset:") and spec.split(":", 1)[1]:
            self.kind, self.preset = "preset", spec.split(":", 1)[1]
            self.config = None
            self.label = os.path.basename(os.path.normpath(self.preset)) or self.preset
            self.note = f"keras-hub preset {self.preset}"
        else:
            raise UserError(f"a baseline is 'bert-base' or 'keras-hub-preset:NAME_OR_DIR', got {spec!r}")

    def _key(self):
        parts = [self.spec]
        if self.kind == "preset" and os.path.isdir(self.preset):
            parts.append(str(os.path.getmtime(self.preset)))
        parts.append(export_fingerprint())
        parts.append(repr(sorted((k, repr(v)) for k, v in self.export_kwargs.items())))
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]

    def slug(self):
        text = "bert-base" if self.kind == "random" else "preset-" + self.label
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)

    def build(self, task, seed=0):
        """The keras-hub model to export (``BertMaskedLM`` for ``mlm``, else the backbone)."""
        import keras
        import keras_hub
        import numpy as np

        if self.kind == "preset":
            try:
                if task == "mlm":
                    model = keras_hub.models.BertMaskedLM.from_preset(self.preset)
                    backbone = model.backbone
                else:
                    model = backbone = keras_hub.models.BertBackbone.from_preset(self.preset)
            except Exception as e:
                raise UserError(f"cannot load keras-hub preset {self.preset!r}: {' '.join(str(e).split())[:160]}")
            self.config = BertConfig(
                vocab_size=int(backbone.vocabulary_size), hidden_dim=int(backbone.hidden_dim),
                num_layers=int(backbone.num_layers), num_heads=int(backbone.num_heads),
                intermediate_dim=int(backbone.intermediate_dim),
                max_positions=int(backbone.max_sequence_length), num_segments=int(backbone.num_segments))
            return model
        keras.utils.set_random_seed(seed)
        c = self.config
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=c.vocab_size, num_layers=c.num_layers, num_heads=c.num_heads,
            hidden_dim=c.hidden_dim, intermediate_dim=c.intermediate_dim, dropout=0.0,
            max_sequence_length=c.max_positions, num_segments=c.num_segments)
        model = keras_hub.models.BertMaskedLM(backbone=backbone) if task == "mlm" else backbone
        perturb_constant_weights(model, np.random.default_rng(seed))
        return model

    def file(self, task, quantization, seq_len, cache_dir, log=print, any_version=False):
        """Path of the cached export, building it when missing.

        The cache key includes a hash of the export code, so an edited exporter
        rebuilds; ``any_version=True`` takes the newest cached file of this
        task/mode/length whatever exporter wrote it.
        """
        os.makedirs(cache_dir, exist_ok=True)
        stem = f"{self.slug()}-{task}-{quantization}-s{seq_len}-"
        name = f"{stem}{self._key()}.tflite"
        path = os.path.join(cache_dir, name)
        if os.path.isfile(path):
            return path
        if any_version:
            older = [os.path.join(cache_dir, f) for f in os.listdir(cache_dir)
                     if f.startswith(stem) and f.endswith(".tflite")]
            if older:
                return max(older, key=os.path.getmtime)
        from mobile_bert_distill.export import export_keras_model

        log(f"building the {self.label} baseline ({task}, {quantization}, seq {seq_len}) -> {path}")
        model = self.build(task)
        # a random-init baseline needs no big calibration/parity sets
        export_keras_model(model, path, task=task, quantization=quantization, seq_len=seq_len, num_calibration=16,
                           num_parity=4, **self.export_kwargs)
        if self.config is not None:
            atomic_write_json(path + ".architecture.json", self.config.to_dict())
        return path

    def architecture_of(self, path):
        side = path + ".architecture.json"
        if self.config is None and os.path.isfile(side):
            with open(side) as f:
                self.config = BertConfig(**json.load(f))
        return self.config


def perturb_constant_weights(model, rng, scale=0.02):
    """Add noise to weights that are all zeros or all ones (fresh biases, LayerNorm).

    An untrained model's zero biases and unit LayerNorm scales let the
    converter drop ``+0`` and ``*1`` ops, which a trained model keeps.
    """
    for w in model.weights:
        value = w.numpy()
        if value.size and (not value.any() or (value == 1).all()):
            w.assign(value + rng.normal(0.0, scale, value.shape).astype(value.dtype))


def export_fingerprint():
    """Hash of the export code, so a changed export graph invalidates cached baselines.

    The modules are imported, not looked up by file name: one that moves fails here instead of
    silently leaving the key.
    """
    from mobile_bert_distill import bert_graph, export, quantization

    h = hashlib.sha1()
    for module in (export, bert_graph, quantization):
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


# --------------------------------------------------------------------------
# analysis (architecture, analytic FLOPs and params) and merging
# --------------------------------------------------------------------------
def analyse_model(record, architecture=None, architecture_source=None):
    """Fill ``architecture``, ``params`` and ``flops_analytic`` of a model record in place."""
    cfg = architecture
    source = architecture_source
    if cfg is None and record.get("path") and os.path.isfile(record["path"]):
        try:
            cfg = flops_mod.infer_architecture(lb.Graph.from_file(record["path"]))
            source = "inferred from the graph"
        except lb.BenchError:
            cfg = None
    if cfg is None or record.get("task") not in ("mlm", "encoder") or not record.get("static_seq_len"):
        return record
    record["architecture"] = {**cfg.to_dict(), "source": source or "given"}
    counts = param_counts(cfg)
    record["params"] = {"backbone_with_pooler": counts["backbone_with_pooler"],
                        "masked_lm": counts["masked_lm"], "paper_total": counts["paper_total"],
                        "exported": counts["masked_lm"] if record["task"] == "mlm"
                        else counts["backbone_with_pooler"]}
    analytic = flops_mod.analytic_flops(cfg, record["static_seq_len"], record["task"])
    analytic["comparison"] = flops_mod.compare(analytic, record["flops_counted"])
    record["flops_analytic"] = analytic
    return record


def load_document(path):
    """Read and check a results document (``mbd bench`` or ``on_device_bench.py``)."""
    if not os.path.isfile(path):
        raise UserError(f"results file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a JSON results file ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != lb.SCHEMA:
        raise UserError(f"{path} is not a benchmark results file (schema {lb.SCHEMA!r} expected)")
    for key in ("models", "results", "host"):
        if not isinstance(doc.get(key), (list, dict)):
            raise UserError(f"{path}: missing '{key}'")
    return doc


def merge(doc, board, board_name=None):
    """Add a board's results to ``doc``; models are matched by sha256 (same file, same label)."""
    source = board_name or board.get("host", {}).get("hostname") or "board"
    known = {m["sha256"]: m for m in doc["models"]}
    labels = {}
    for m in board["models"]:
        if m["sha256"] in known:
            labels[m["sha256"]] = known[m["sha256"]]["label"]
            continue
        m = dict(m)
        m["source"] = m.get("source") or source
        doc["models"].append(m)
        known[m["sha256"]] = m
        labels[m["sha256"]] = m["label"]
    existing = {(r.get("source"), r["sha256"], r["seq_len"], r["threads"]) for r in doc["results"]}
    for r in board["results"]:
        r = dict(r)
        r["source"] = r.get("source") or source
        r["model"] = labels.get(r["sha256"], r["model"])
        r["host"] = {k: board["host"].get(k) for k in ("hostname", "machine", "processor", "cpu_count")}
        key = (r["source"], r["sha256"], r["seq_len"], r["threads"])
        if key not in existing:
            doc["results"].append(r)
            existing.add(key)
    doc.setdefault("merged", []).append({"source": source, "host": board["host"], "created": board.get("created")})
    return doc


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------
def _baseline_lengths(models, seq_lens, graphs):
    """The static lengths the baseline needs: those the models run at (or each seq, alone)."""
    if not models:
        return {s: s for s in seq_lens}
    choice = {}
    label, paths = models[0]
    for s in seq_lens:
        fits = sorted((graphs[p].static_seq_len(), p) for p in paths if graphs[p].static_seq_len() >= s)
        choice[s] = fits[0][0]
    return choice


def run_bench(models=(), baseline=None, seq_lens=(128,), threads=(1,), runs=50, warmup=5, out="bench",
              merge_files=(), cache_dir=None, baseline_quantization=None, baseline_task=None,
              architectures=None, isolate=True, profile=False, profile_labels=None, plots=True, seed=0,
              log=None, show_progress=True, baseline_export_kwargs=None, rounds=1,
              baseline_any_version=False, overwrite=False):
    """Everything ``mbd bench`` does; returns the results document (also written to ``out``).

    A measuring run writes the folder ``out`` anew: an existing one is refused
    (:class:`~mobile_bert_distill.errors.OutputExists`) unless ``overwrite``, which
    replaces all of it. ``merge_files`` alone (no models, no baseline) update the
    results in an existing ``out`` instead. Either way the folder changes at once, at
    the end.

    ``models``: ``[LABEL=]PATH[,PATH...]`` strings; ``architectures``: optional
    ``{label: BertConfig}`` for models whose shape is known (else inferred).
    ``profile``: time every op alone (1 thread, the longest file of each model,
    or only the models in ``profile_labels``).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if rounds < 1:
        raise UserError(f"rounds must be >= 1, got {rounds}")
    architectures = dict(architectures or {})
    boards = [load_document(p) for p in merge_files]
    try:
        specs = lb.parse_model_specs(models) if models else []
        if specs or baseline:
            if any(t < 1 for t in threads):
                raise lb.BenchError(f"thread counts must be >= 1, got {min(threads)}")
            _, graphs = lb.plan(specs, seq_lens, threads, runs, warmup) if specs else (None, {})
    except lb.BenchError as e:
        raise UserError(str(e)) from None
    if not specs and not baseline:
        if not boards:
            raise UserError("nothing to do: no models, no baseline and no results to merge")
        with locked_output(out, True, "benchmark folder"):
            doc = load_document(os.path.join(out, "results.json"))
            for board in boards:
                merge(doc, board)
            return _finish(doc, out, plots=plots, profiles=None, log=log, update=True)
    with locked_output(out, overwrite, "benchmark folder"):
        base = Baseline(baseline, baseline_export_kwargs) if baseline else None
        if base is not None:
            modes = sorted({(graphs[p].task(), graphs[p].quantization()) for _, ps in specs for p in ps})
            if baseline_quantization or baseline_task or not modes:
                tasks = [baseline_task] if baseline_task else sorted({t for t, _ in modes} or {"encoder"})
                quants = baseline_quantization or sorted({q for _, q in modes} or {default_quantization()})
                modes = [(t, q) for t in tasks for q in quants]
            for task, quant in modes:
                if task not in ("mlm", "encoder"):
                    raise UserError(f"cannot build a baseline for task {task!r} (outputs not named logits "
                                    "or sequence_output)")
                if quant not in ("float32", "float16", "dynamic", "int8"):
                    raise UserError(f"unknown quantization {quant!r}")
            lengths = _baseline_lengths(specs, seq_lens, graphs)
            baseline_files = {}
            cache_dir = cache_dir or default_cache_dir()
            for task, quant in modes:
                paths = [base.file(task, quant, n, cache_dir, log=log, any_version=baseline_any_version)
                         for n in sorted(set(lengths.values()))]
                label = f"{base.label} {task} {quant}"
                specs.append((label, paths))
                baseline_files[label] = paths

        bar = _progress(rounds * len(lb.plan(specs, seq_lens, threads, runs, warmup)[0]), show_progress)

        def progress(label, path, s, t):
            bar.set_description(f"{label[:32]} seq={s} threads={t}")

        try:
            doc = lb.run_benchmark(specs, seq_lens, threads, runs, warmup, tool=TOOL, seed=seed,
                                   isolate=isolate, progress=progress, done=lambda rec: bar.update(1),
                                   source=f"host:{lb.host_info()['hostname']}", rounds=rounds)
        except lb.BenchError as e:
            raise UserError(str(e)) from None
        finally:
            bar.close()
        for m in doc["models"]:
            info = architectures.get(m["label"])
            if base is not None and m["label"] in baseline_files:
                m["role"] = "baseline"
                m["note"] = base.note
                analyse_model(m, base.architecture_of(m["path"]), f"--baseline {base.spec}")
            elif isinstance(info, BertConfig):
                analyse_model(m, info, "given")
            else:
                analyse_model(m)
        for board in boards:
            merge(doc, board)
        profiles = None
        if profile:
            _finish(doc, out, plots=plots, profiles=None, log=log)  # results first, in case profiling fails
            from mobile_bert_distill import opprofile

            profiles = []
            longest = {}
            for m in doc["models"]:
                if m.get("path") and os.path.isfile(m["path"]) and (m.get("source") or "").startswith("host"):
                    if profile_labels is None or m["label"] in profile_labels:
                        if m["static_seq_len"] >= longest.get(m["label"], {}).get("static_seq_len", 0):
                            longest[m["label"]] = m
            for m in longest.values():
                log(f"profiling {m['label']} ({m['file']}) op by op")
                profiles.append({"label": m["label"], "file": m["file"],
                                 **opprofile.profile(m["path"], threads=1, runs=max(3, runs // 5))})
        return _finish(doc, out, plots=plots, profiles=profiles, log=log)


def _progress(total, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    if tqdm is None:
        class _Null:
            def update(self, n=1): ...
            def set_description(self, s): ...
            def close(self): ...
        return _Null()
    return tqdm(total=total, unit="run", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _finish(doc, out, *, plots, profiles, log, update=False):
    """Write the folder ``out`` at once: results.json, REPORT.md, the plots (and profile.json).

    ``update``: keep the other files already in ``out`` (a merge); old plots go either way.
    """
    from mobile_bert_distill import plots as plots_mod
    from mobile_bert_distill import report

    with atomic_dir(out, overwrite=True) as tmp:
        if update:
            shutil.copytree(out, tmp, dirs_exist_ok=True, ignore=lambda d, names: [
                n for n in names if d == out and n in plots_mod.PLOT_FILES])
        atomic_write_json(os.path.join(tmp, "results.json"), doc)
        images = plots_mod.write_plots(doc, tmp) if plots else []
        if profiles:
            atomic_write_json(os.path.join(tmp, "profile.json"), profiles)
        atomic_write_text(os.path.join(tmp, "REPORT.md"), report.render(doc, images=images, profiles=profiles))
    log(f"wrote {os.path.join(out, 'results.json')}, {os.path.join(out, 'REPORT.md')}"
        + (f" and {len(images)} plots" if images else ""))
    return doc


# --------------------------------------------------------------------------
# Android
# --------------------------------------------------------------------------
BENCHMARK_MODEL_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/"
                       "lite/tools/nightly/latest/android_aarch64_benchmark_model")


def write_adb_script(models, seq_lens, threads, runs, warmup, out, seed=0, overwrite=False):
    """Write ``out/android/run_on_phone.sh`` and the raw int32 input files it pushes.

    ``out/android`` is written at once; an existing one is refused unless ``overwrite``.

    The script runs the TFLite/LiteRT C++ ``benchmark_model`` on the phone with
    ``--input_layer_value_files`` holding valid inputs (token ids from the
    model's vocabulary and a padding mask). LiteRT's Python
    ``litert-benchmark`` cannot be used for BERT: it fills int32 inputs with
    random -128..127, which are out-of-range token ids and a nonsense mask.
    """
    try:
        specs = lb.parse_model_specs(models)
        lb.plan(specs, seq_lens, threads, runs, warmup)
    except lb.BenchError as e:
        raise UserError(str(e)) from None
    final = os.path.join(out, "android")
    with locked_output(final, overwrite, "Android script folder"), atomic_dir(final, overwrite=True) as folder:
        _write_adb_folder(folder, specs, seq_lens, threads, runs, warmup, seed)
    return os.path.join(final, "run_on_phone.sh")


def _write_adb_folder(folder, specs, seq_lens, threads, runs, warmup, seed):
    os.makedirs(os.path.join(folder, "inputs"))
    remote = "/data/local/tmp/mbd"
    lines = [
        "#!/bin/sh",
        "# Generated by `mbd bench --adb-script`: benchmark the models on an Android phone over adb.",
        "# Needs LiteRT's C++ benchmark_model for the phone's ABI, e.g.",
        f"#   curl -L -o android_aarch64_benchmark_model {BENCHMARK_MODEL_URL}",
        "# Inputs are valid BERT inputs (raw little-endian int32 files written beside this script);",
        "# do not use LiteRT's Python `litert-benchmark` for BERT: it fills int32 inputs with -128..127.",
        "# Per-op timings: add --enable_op_profiling=true. Logs land in ./logs/.",
        "set -e",
        'cd "$(dirname "$0")"',
        "BENCH=${BENCH:-./android_aarch64_benchmark_model}",
        f"REMOTE={remote}",
        "mkdir -p logs",
        'adb shell mkdir -p "$REMOTE"',
        'adb push "$BENCH" "$REMOTE/benchmark_model"',
        'adb shell chmod 755 "$REMOTE/benchmark_model"',
    ]
    for label, paths in specs:
        for path in paths:
            graph = lb.Graph.from_file(path)
            base = os.path.basename(path)
            lines.append(f"adb push {shlex.quote(os.path.abspath(path))} \"$REMOTE/{base}\"")
            names = [graph.tensors[i]["name"] for i in graph.inputs]
            shapes = ":".join(",".join(str(d) for d in graph.tensors[i]["shape"]) for i in graph.inputs)
            for s in seq_lens:
                if s > (graph.static_seq_len() or s):
                    continue
                files = lb.write_input_files(graph, s, os.path.join(folder, "inputs"), seed=seed)
                value_files = []
                for tensor_name, local in files:
                    remote_file = f"$REMOTE/{os.path.splitext(base)[0]}.{os.path.basename(local)}"
                    lines.append(f"adb push {shlex.quote(os.path.relpath(local, folder))} \"{remote_file}\"")
                    value_files.append(f"{tensor_name.replace(':', '::')}:{remote_file}")
                for t in threads:
                    tag = f"{os.path.splitext(base)[0]}.s{s}.t{t}"
                    lines.append(
                        f"adb shell \"$REMOTE/benchmark_model --graph=$REMOTE/{base} --num_threads={t} "
                        f"--warmup_runs={warmup} --num_runs={runs} --use_xnnpack=true "
                        f"--report_peak_memory_footprint=true --input_layer={','.join(names)} "
                        f"--input_layer_shape={shapes} --input_layer_value_files={','.join(value_files)}\" "
                        f"| tee logs/{tag}.txt"
                    )
    path = os.path.join(folder, "run_on_phone.sh")
    atomic_write_text(path, "\n".join(lines) + "\n")
    os.chmod(path, 0o755)
