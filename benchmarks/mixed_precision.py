#!/usr/bin/env python3
"""Mixed precision under a size budget, on trained students: accuracy, size and latency.

Exports ``--small`` (a trained student preset) in int8 and in ``mixed`` precision under
``--small-mb``, and ``--wide`` (a wider student trained on the same vocabulary) in ``mixed``
under ``--wide-mb`` and in int8 (to show what the budget would hold without int4). Every file is
scored beside its float preset on the same held-out masked positions (``evaluate_export``: every
masked piece of ``--corpus``, at ``--seq-len``, the students' training length). The same plans
are exported again at ``--latency-seq-len`` and timed beside BERT-base int8 with ``mbd bench``'s
machinery (wall clock p50, 1 thread; ``--baseline`` takes ``mbd bench``'s other spec).

Targets, checked and printed:

* the small student's mixed file fits ``--small-mb`` and loses at most 0.5 points of masked-token
  accuracy against its float preset;
* the wide student's mixed file fits ``--wide-mb``; its accuracy is set against the small
  student's int8 file (reported; the wider student should be the better one).

Usage::

    python benchmarks/mixed_precision.py --small RUNS/192d_tinybert_seed0/student \\
        --wide RUNS/352d_tinybert_seed0/student --corpus demo_out/data/heldout.txt \\
        --seq-len 32 --work bench/mixed_precision --json docs/results/mixed_precision.json
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_speed import cpu_flags  # noqa: E402

from mobile_bert_distill.atomic import atomic_write_json  # noqa: E402
from mobile_bert_distill.errors import UserError  # noqa: E402

MAX_DROP_POINTS = 0.5


def files_to_make(args):
    """``(name, student, quantization, target MB)`` of every file, small student first."""
    return [("small_int8", args.small, "int8", None), ("small_mixed", args.small, "mixed", args.small_mb),
            ("wide_int8", args.wide, "int8", None), ("wide_mixed", args.wide, "mixed", args.wide_mb)]


def export(name, student, quantization, target_mb, seq_len, args, log):
    from mobile_bert_distill.export import export_student

    path = os.path.join(args.work, f"{name}_s{seq_len}.tflite")
    log(f"export {name} ({quantization}{f', {target_mb} MB' if target_mb else ''}, seq {seq_len}) -> {path}")
    kw = {"target_size_mb": target_mb} if target_mb else {}
    report = export_student(student, path, quantization=quantization, seq_len=seq_len,
                            calibration_corpus=args.corpus, min_agreement=0.0, overwrite=True, **kw)
    return path, report


def targets(rows, small_mb, wide_mb):
    """The two verdicts from the scored rows (keyed by file name)."""
    small, wide, small_int8 = rows["small_mixed"], rows["wide_mixed"], rows["small_int8"]
    return {
        "small_mixed": {"size_mb": small["size_mb"], "target_mb": small_mb, "drop_points": small["drop_points"],
                        "max_drop_points": MAX_DROP_POINTS,
                        "met": small["size_mb"] <= small_mb and small["drop_points"] <= MAX_DROP_POINTS},
        "wide_mixed": {"size_mb": wide["size_mb"], "target_mb": wide_mb, "fits": wide["size_mb"] <= wide_mb,
                       "accuracy": wide["file_accuracy"], "small_int8_accuracy": small_int8["file_accuracy"],
                       "gain_points": 100.0 * (wide["file_accuracy"] - small_int8["file_accuracy"])}}


def table_md(rows, latency):
    lines = ["| file | MB | float preset % | file % | points lost | p50 ms at seq "
             f"{latency['seq_len']} | baseline int8 / file |", "|---|---:|---:|---:|---:|---:|---:|"]
    base = latency["baseline_p50_ms"]
    for name, r in rows.items():
        ms = latency["p50_ms"].get(name)
        lines.append(f"| {name} ({r['hidden_dim']}-d {r['quantization']}) | {r['size_mb']:.3f} | "
                     f"{100 * r['student_accuracy']:.2f} | {100 * r['file_accuracy']:.2f} | {r['drop_points']:+.2f} | "
                     + (f"{ms:.2f} | {base / ms:.1f}× |" if ms else "— | — |"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", required=True, help="trained student preset folder (OUT/student), e.g. 192-d")
    p.add_argument("--wide", required=True, help="a wider trained student preset on the same vocabulary")
    p.add_argument("--corpus", required=True, help="held-out text: calibration, parity and scoring")
    p.add_argument("--small-mb", type=float, default=3.5, help="size budget of the small student (default 3.5)")
    p.add_argument("--wide-mb", type=float, default=7.0, help="size budget of the wide student (default 7)")
    p.add_argument("--seq-len", type=int, default=32,
                   help="sequence length of the scored files: the students' training length (default 32)")
    p.add_argument("--latency-seq-len", type=int, default=128, help="sequence length of the timed files")
    p.add_argument("--baseline", default="bert-base",
                   help="mbd bench's baseline, exported in int8 as a masked LM (default: bert-base)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per file and round (default 30)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--work", default="bench/mixed_precision", help="folder for the files and mbd bench's output")
    p.add_argument("--json", help="where to write the results (default WORK/mixed_precision.json)")
    args = p.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    from mobile_bert_distill import bench
    from mobile_bert_distill.distill.evaluation import evaluate_export

    try:
        for path in (args.small, args.wide, args.corpus):
            if not os.path.exists(path):
                raise UserError(f"{path} does not exist")
        if args.small_mb <= 0 or args.wide_mb <= 0:
            raise UserError(f"size budgets must be positive, not {args.small_mb} and {args.wide_mb} MB")
        os.makedirs(args.work, exist_ok=True)
        rows, timed = {}, []
        for name, student, quantization, target_mb in files_to_make(args):
            path, report = export(name, student, quantization, target_mb, args.seq_len, args, log)
            score = evaluate_export(student, path, [args.corpus], progress=False)
            log(f"  {report['size_bytes'] / 1e6:.3f} MB; masked-token accuracy {100 * score['student_accuracy']:.2f} % "
                f"float, {100 * score['file_accuracy']:.2f} % file")
            with open(os.path.join(student, "config.json"), encoding="utf-8") as f:
                hidden = json.load(f)["config"]["hidden_dim"]  # the preset's backbone
            rows[name] = {"student": os.path.abspath(student), "hidden_dim": hidden, "quantization": quantization,
                          "target_mb": target_mb, "size_mb": report["size_bytes"] / 1e6, "params": report["params"],
                          "parity_agreement": report["parity"]["top1_agreement"],
                          "mixed_precision": report.get("mixed_precision"), **score}
            if args.latency_seq_len != args.seq_len:
                path, _ = export(name, student, quantization, target_mb, args.latency_seq_len, args, log)
            timed.append(f"{name}={path}")
        doc = bench.run_bench(models=timed, baseline=args.baseline, seq_lens=[args.latency_seq_len], threads=[1],
                              runs=args.runs, out=os.path.join(args.work, "bench"), baseline_quantization=["int8"],
                              baseline_task="mlm", rounds=args.rounds, plots=False, log=log, overwrite=True)
    except UserError as e:
        print(f"mixed_precision: error: {e}", file=sys.stderr)
        return 2
    p50 = {r["model"]: r["latency_ms"]["p50"] for r in doc["results"] if r["seq_len"] == args.latency_seq_len}
    baseline = next(m["label"] for m in doc["models"] if m.get("role") == "baseline")
    latency = {"seq_len": args.latency_seq_len, "threads": 1, "baseline": baseline, "baseline_p50_ms": p50[baseline],
               "p50_ms": {k: v for k, v in p50.items() if k in rows}}
    res = {"command": "python benchmarks/mixed_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": {"cpu": cpu_flags(), **doc["host"]},
           "rows": rows, "latency": latency, "targets": targets(rows, args.small_mb, args.wide_mb)}
    out = args.json or os.path.join(args.work, "mixed_precision.json")
    atomic_write_json(out, res)
    print(table_md(rows, latency))
    t = res["targets"]
    print(f"small student: {t['small_mixed']['size_mb']:.3f} MB (budget {args.small_mb}), "
          f"{t['small_mixed']['drop_points']:+.2f} points: {'met' if t['small_mixed']['met'] else 'NOT met'}")
    print(f"wide student: {t['wide_mixed']['size_mb']:.3f} MB (budget {args.wide_mb}), "
          f"{100 * t['wide_mixed']['accuracy']:.2f} % against the small int8 file's "
          f"{100 * t['wide_mixed']['small_int8_accuracy']:.2f} % ({t['wide_mixed']['gain_points']:+.2f} points)")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
