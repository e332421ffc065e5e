"""Post-training fixes for int8 top-1 agreement: SmoothQuant, query/key balancing, GPTQ, score ranges.

Measures, on the reference student of ``benchmarks/export_modes.py`` and the
same calibration (200 sequences) and parity (300 held-out sequences, 3,084
masked tokens) feeds as ``research/int8_agreement_probe.py``:

1. weights only (float activations): the export graph with its projection
   kernels rounded to the per-channel int8 grid, round-to-nearest vs GPTQ;
2. full int8 (``matmul`` recipe) with each graph option of
   :class:`~mobile_bert_distill.export.graph.GraphOptions` (``smooth_alpha``,
   ``balance_qk``, ``gptq``, ``score_margin``): agreement, accuracy, size, op counts, and
   single-thread p50 latency next to float32 timed in the same run. Every
   variant starts from the recipe with ``score_margin=None`` (``matmul`` is
   the recipe as it was before score ranges became its default).

Run (about 20 minutes each on 2 busy cores)::

    .venv/bin/python research/int8_smoothing.py --work bench/export_modes --weights-only \\
        --variants matmul,sq0.5,qk,sq0.5+qk,gptq,sq0.5+qk+gptq --json smoothing_run1.json
    .venv/bin/python research/int8_smoothing.py --work bench/export_modes \\
        --variants matmul,gptq,scores6,scores8,scores10,scores8+gptq,scores8+qk --json smoothing_run2.json

(In ``bench/export_modes/smoothing_run1.json`` the ``gptq`` rows were measured
while GPTQ without smoothing still ran on the unfolded-LayerNorm graph; its
full-int8 ``gptq`` row is superseded by ``smoothing_run2.json``.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

VARIANTS = {
    "matmul": {},
    "sq0.5": {"smooth_alpha": 0.5},
    "qk": {"balance_qk": True},
    "sq0.5+qk": {"smooth_alpha": 0.5, "balance_qk": True},
    "gptq": {"gptq": True},
    "sq0.5+qk+gptq": {"smooth_alpha": 0.5, "balance_qk": True, "gptq": True},
    "scores6": {"score_margin": 6.0},
    "scores8": {"score_margin": 8.0},
    "scores10": {"score_margin": 10.0},
    "scores8+gptq": {"score_margin": 8.0, "gptq": True},
    "scores8+qk": {"score_margin": 8.0, "balance_qk": True},
    "scores8+gptq+qk": {"score_margin": 8.0, "gptq": True, "balance_qk": True},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="bench/export_modes")
    ap.add_argument("--parity", type=int, default=300)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated names; NAME=key:value;key:value defines a new one")
    ap.add_argument("--weights-only", action="store_true", help="also run the weights-only comparison")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mobile_bert_distill.export import graph as G
    from mobile_bert_distill import export as E
    from mobile_bert_distill.export import experimental as X
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches
    from mobile_bert_distill.text.wordpiece import WordPiece

    model, vocab = E.load_student(os.path.join(args.work, "student"))
    lines = E.read_corpus(os.path.join(args.work, "synthetic.txt"))
    calib_lines, heldout = E.split_corpus(lines)
    tok = WordPiece(vocab)
    calib, _ = E.corpus_sequences(calib_lines, tok, 128, 200, seed=0)
    par, labels = E.corpus_sequences(heldout, tok, 128, args.parity, seed=1)
    ref = {"logits": E.keras_outputs(model, "mlm", par)["logits"]}
    weights, config = G.extract_weights(model, "mlm")
    stats = G.calibration_stats(weights, config, calib, task="mlm", seq_len=128)
    G.calibration_stats = lambda *a, **k: stats  # same feeds every time: compute once
    results = {"masked_tokens": int((par["input_ids"] == 4).sum()), "weights_only": {}, "int8": {}}

    def score(logits):
        p = E.parity("mlm", ref, {"logits": logits}, par, labels)
        return {"top1_agreement": round(p["top1_agreement"], 4), "tflite_accuracy": round(p["tflite_accuracy"], 4),
                "float_accuracy": round(p["float_accuracy"], 4)}

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)

    if args.weights_only:
        gptq = X.gptq_round
        rtn = lambda k, h, **kw: gptq(k, np.eye(len(k)), damp=0.0)  # noqa: E731  (no compensation)
        for name, extra, fn in (("rtn", {}, rtn), ("gptq", {}, gptq), ("sq0.5 rtn", {"smooth_alpha": 0.5}, rtn),
                                ("sq0.5 gptq", {"smooth_alpha": 0.5}, gptq)):
            X.gptq_round = fn
            m = G.ExportBert(weights, config, task="mlm", seq_len=128, batch_size=20,
                             options=G.GraphOptions(gptq=True, **extra), stats=stats)
            out = np.concatenate([m.module.serve(**{k: v[i:i + 20] for k, v in par.items()})["logits"].numpy()
                                  for i in range(0, len(par["input_ids"]), 20)])
            results["weights_only"][name] = score(out)
            print("weights only", name, results["weights_only"][name], flush=True)
        X.gptq_round = gptq
        save()

    recipe = X.recipe_table()["matmul"]
    tmp = tempfile.mkdtemp(prefix="mbd-sq-")
    paths = {}
    flat = E.convert(model, task="mlm", quantization="float32", seq_len=128, graph="friendly")
    paths["float32"] = os.path.join(tmp, "float32.tflite")
    open(paths["float32"], "wb").write(flat)
    results["float32_mb"] = round(len(flat) / 1e6, 3)
    for name in args.variants.split(","):
        if "=" in name:
            name, spec = name.split("=", 1)
            change = {}
            for kv in spec.split(";"):
                k, v = kv.split(":")
                change[k] = float(v) if k in ("smooth_alpha", "score_margin") else v.lower() in ("1", "true", "yes")
        else:
            change = VARIANTS[name]
        # every variant starts from the recipe with score ranges off (the recipe's default since these runs)
        opts = dataclasses.replace(recipe["graph_options"], **{"score_margin": None, **change})
        flat = E.convert(model, task="mlm", quantization="int8", seq_len=128, calibration_feeds=calib,
                         graph="friendly", graph_options=opts, float_ops=tuple(recipe["float_ops"]),
                         xnnpack_fixups=True, share_embedding=True, float_logits=True)
        interp, _ = load_interpreter(model_content=flat, num_threads=1)
        row = score(run_batches(interp, par)["logits"])
        g = E.inspect_tflite(flat)["graph_ops"]
        row.update(options=change, size_mb=round(len(flat) / 1e6, 3),
                   size_vs_float32=round(len(flat) / 1e6 / results["float32_mb"], 3),
                   int8_compute_ops=g["int8_compute_ops"], float_compute_ops=g["float_compute_ops"],
                   hybrid_compute_ops=g["hybrid_compute_ops"], ops=g["ops"])
        paths[name] = os.path.join(tmp, f"{name}.tflite")
        open(paths[name], "wb").write(flat)
        results["int8"][name] = row
        print(name, {k: row[k] for k in ("top1_agreement", "tflite_accuracy", "size_mb", "float_compute_ops")},
              flush=True)
        save()
    if not args.no_timing:
        from export_modes import time_models

        feeds, _ = E.corpus_sequences(heldout, tok, 128, 1, seed=123)
        timing = time_models(list(paths.values()), feeds)
        results["float32_p50_ms"] = round(timing[paths["float32"]][0], 3)
        for name, row in results["int8"].items():
            row["p50_ms"] = round(timing[paths[name]][0], 3)
            row["latency_vs_float32"] = round(row["p50_ms"] / results["float32_p50_ms"], 3)
            print(name, "p50", row["p50_ms"], "float32", results["float32_p50_ms"], flush=True)
        save()
    return results


if __name__ == "__main__":
    main()
