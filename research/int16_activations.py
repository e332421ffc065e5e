#!/usr/bin/env python3
"""How far int16 activations go: the 12x48 reference student in TFLite's 16x8 mode.

The int8 exports stop short of 0.99 top-1 agreement with the float student
(``benchmarks/export_modes.py``). This measures the converter's
``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` mode (int16
activations, int8 weights; not a ``mbd export`` mode) on the same student,
calibration and parity sequences as ``export_modes.py``, beside float32 in the
same run:

* ``16x8``: round-to-nearest int8 weights;
* ``16x8-gptq``: GPTQ-rounded int8 weights (``GraphOptions(gptq=True)``).

Both use an untied embedding: with the tied one (one table for the lookup and
the MLM output projection) the 16x8 calibrator fails with "Mismatch between
number of weight maxs and channels: 1 vs 4928".

Run (about 6 minutes on 2 idle cores; needs ``bench/export_modes/student``
from ``export_modes.py``)::

    .venv/bin/python research/int16_activations.py --json bench/export_modes/int16_activations.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# the reference student (benchmarks/_reference_student.py) is shared with benchmarks/export_modes.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from mobile_bert_distill import export as E  # noqa: E402
from mobile_bert_distill.export import experimental as X  # noqa: E402
from mobile_bert_distill.atomic import atomic_write_json  # noqa: E402
from mobile_bert_distill.export.graph import GraphOptions  # noqa: E402

VARIANTS = ("float32", "16x8", "16x8-gptq")


def convert_16x8(model, calib, seq_len, gptq):
    """16x8 flatbuffer bytes of ``model`` (friendly graph, untied embedding)."""
    tf = X.quiet_tf()
    opts = GraphOptions(tie_embedding=False, gptq=gptq)
    with tempfile.TemporaryDirectory(prefix="mbd-16x8-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        X.friendly_saved_model(model, "mlm", seq_len, 1, saved, opts, calib if opts.needs_calibration else None)
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative():
            for i in range(len(calib["input_ids"])):
                yield {k: calib[k][i : i + 1] for k in E.INPUT_NAMES}

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS]
        return bytes(conv.convert())


def run_model(path, feeds, *, timing_runs=30):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
    n = len(feeds["input_ids"])
    logits = np.concatenate([runner(**{k: feeds[k][i : i + 1] for k in E.INPUT_NAMES})["logits"]
                             for i in range(n)])
    one = {k: feeds[k][0:1] for k in E.INPUT_NAMES}
    for _ in range(3):
        runner(**one)
    times = []
    for _ in range(timing_runs):
        t = time.perf_counter()
        runner(**one)
        times.append(time.perf_counter() - t)
    return logits, 1000.0 * float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default="bench/export_modes/student")
    ap.add_argument("--corpus", default="bench/export_modes/synthetic.txt")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--parity", type=int, default=300)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", default=None, help="where the .tflite files go (default: a temporary folder)")
    ap.add_argument("--json", default="bench/export_modes/int16_activations.json")
    args = ap.parse_args(argv)
    from _reference_student import load_reference, missing_inputs

    if missing_inputs("int16_activations", args.student, args.corpus):
        return 2
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"int16_activations: error: unknown variant(s) {unknown}; choose from {VARIANTS}", file=sys.stderr)
        return 2

    model, _, _, calib, feeds, labels, reference = load_reference(
        args.student, args.corpus, seq_len=args.seq_len, calibration=args.calibration, parity=args.parity)

    work = args.work or tempfile.mkdtemp(prefix="mbd-int16-")
    os.makedirs(work, exist_ok=True)
    rows = []
    for name in variants:
        t = time.time()
        if name == "float32":
            flat = E.convert(model, task="mlm", quantization="float32", seq_len=args.seq_len)
        else:
            flat = convert_16x8(model, calib, args.seq_len, gptq=name.endswith("gptq"))
        path = os.path.join(work, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(flat)
        logits, p50 = run_model(path, feeds)
        par = E.parity("mlm", reference, {"logits": logits}, feeds, labels)
        row = {"variant": name, "size_bytes": len(flat), "p50_ms": round(p50, 3),
               "convert_s": round(time.time() - t, 1),
               **{k: par[k] for k in ("masked_tokens", "top1_agreement", "near_tie_fraction",
                                      "top1_agreement_clear", "top1_agreement_near_ties",
                                      "max_abs_logit_diff", "mean_abs_logit_diff", "float_accuracy",
                                      "tflite_accuracy", "accuracy_drop_points")}}
        rows.append(row)
        print(f"{name}: {len(flat) / 1e6:.3f} MB, p50 {p50:.2f} ms, agreement {par['top1_agreement']:.4f} "
              f"(clear {par['top1_agreement_clear']:.4f}, near-ties {par['top1_agreement_near_ties']:.4f}), "
              f"accuracy drop {par['accuracy_drop_points']:.2f} points", flush=True)
    base = next((r for r in rows if r["variant"] == "float32"), None)
    for r in rows:
        if base:
            r["size_vs_float32"] = round(r["size_bytes"] / base["size_bytes"], 3)
            r["latency_vs_float32"] = round(r["p50_ms"] / base["p50_ms"], 2)
    doc = {"student": os.path.abspath(args.student), "corpus": os.path.abspath(args.corpus),
           "seq_len": args.seq_len, "threads": 1, "load_average": os.getloadavg(), "variants": rows}
    atomic_write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
