"""``mbd bench``: time .tflite models against a BERT-base baseline and write a report.

The measuring itself is :mod:`mobile_bert_distill.litert.on_device_bench` (the same
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

import os
import shutil
import sys

from mobile_bert_distill.atomic import atomic_dir, atomic_write_json, atomic_write_text, locked_output
from mobile_bert_distill.bench.baseline import Baseline, check_quantization, default_cache_dir, default_quantization
from mobile_bert_distill.bench.params import BertConfig
from mobile_bert_distill.bench.results import analyse_model, load_document, merge
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert import on_device_bench as lb

TOOL = "mbd bench"


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
    for quant in baseline_quantization or ():
        check_quantization(quant)
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
                check_quantization(quant)
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
            from mobile_bert_distill.litert import opprofile

            profiles = []
            longest = {}
            for m in doc["models"]:
                if m.get("early_exit"):
                    log(f"not profiling {m['label']}: a staged early-exit model (a signature per layer)")
                elif m.get("path") and os.path.isfile(m["path"]) and (m.get("source") or "").startswith("host"):
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
    from mobile_bert_distill.bench import plots as plots_mod
    from mobile_bert_distill.bench import report

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
