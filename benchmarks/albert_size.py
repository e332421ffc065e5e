#!/usr/bin/env python3
"""Which student width fits the 7 MB budget, with ALBERT's factorised embedding and layer sharing.

For each variant and width, builds a random-init 12-layer student masked LM
with the paper's 4928-piece vocabulary (feed-forward 4 x hidden, 4 heads),
exports it with the kit's exporter (int8, the default recipe, the MLM task
that ``mbd export`` writes by default) and records the Keras parameter count
and the ``.tflite`` size. Size does not depend on training, so random weights
give the shipped size (constant weights are perturbed first, as a trained
model's are never exactly 0 or 1).

Variants:

* ``bert``: embedding as wide as the hidden states, 12 distinct layers;
* ``factorised``: an ``E``-wide embedding (``--embedding-dim``, ALBERT's 128)
  and a learned ``E -> hidden`` projection, 12 distinct layers;
* ``shared``: the factorised embedding and one layer shared by all 12 depths.

Widths are measured in increasing order; a variant stops at its first width
over the budget (a wider one only grows). Prints a table and, per variant,
the widest measured width under the budget; writes ``OUT/albert_size.json``.

Usage::

    python benchmarks/albert_size.py --out benchmarks/results/albert_size \\
        --widths 48,96,192,208,224,384,512,640,704,768
"""

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mobile_bert_distill.atomic import atomic_write_json  # noqa: E402
from mobile_bert_distill.bench.params import PAPER_STUDENT_VOCAB  # noqa: E402
from mobile_bert_distill.commands._types import positive_int_list  # noqa: E402
from mobile_bert_distill.text.rows import SPECIAL_TOKENS  # noqa: E402

VARIANTS = {"bert": dict(), "factorised": dict(factorised=True), "shared": dict(factorised=True, share_layers=True)}
BUDGET_MB = 7.0  # the project's on-device size budget


def build(variant, hidden, embedding_dim, num_layers, seed):
    import keras
    import numpy as np

    from mobile_bert_distill.bench import perturb_constant_weights
    from mobile_bert_distill.distill.student import build_student

    vocab = list(SPECIAL_TOKENS) + [f"piece{i}" for i in range(PAPER_STUDENT_VOCAB - len(SPECIAL_TOKENS))]
    opts = VARIANTS[variant]
    keras.utils.set_random_seed(seed)
    model = build_student(vocab, hidden_dim=hidden, num_layers=num_layers, num_heads=4, dropout=0.0,
                          embedding_dim=embedding_dim if opts.get("factorised") else None,
                          share_layers=opts.get("share_layers", False), seq_len=128)
    perturb_constant_weights(model, np.random.default_rng(seed))
    return model


def measure(variant, hidden, args):
    from mobile_bert_distill.architectures import architecture_summary, is_albert
    from mobile_bert_distill.export import export_keras_model

    model = build(variant, hidden, args.embedding_dim, args.num_layers, seed=hidden)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "student.tflite")
        t0 = time.perf_counter()
        report = export_keras_model(model, path, task="mlm", quantization="int8", seq_len=args.seq_len,
                                    num_calibration=args.calibration, num_parity=2, write_report=False)
        seconds = time.perf_counter() - t0
        size = os.path.getsize(path)
    return {"variant": variant, "hidden_dim": hidden, "architecture": architecture_summary(model.backbone),
            "embedding_dim": int(model.backbone.embedding_dim if is_albert(model.backbone) else hidden),
            "parameters": int(model.count_params()), "backbone_parameters": int(model.backbone.count_params()),
            "int8_bytes": size, "int8_mb": size / 1e6, "fits": size / 1e6 < args.budget_mb,
            "export_seconds": round(seconds, 1), "recipe": report.get("recipe")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (albert_size.json)")
    p.add_argument("--widths", type=positive_int_list, default=[48, 96, 192, 256, 384, 512, 768],
                   help="hidden widths, each divisible by 4 (default: 48,96,192,256,384,512,768)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    p.add_argument("--embedding-dim", type=int, default=128, help="E of the factorised variants (default: 128)")
    p.add_argument("--num-layers", type=int, default=12, help="depth (default: 12)")
    p.add_argument("--seq-len", type=int, default=128, help="static sequence length (default: 128)")
    p.add_argument("--calibration", type=int, default=16, help="int8 calibration sequences (default: 16)")
    p.add_argument("--budget-mb", type=float, default=BUDGET_MB, help=f"size budget in MB (default: {BUDGET_MB})")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS] + [str(w) for w in args.widths if w % 4]
    if bad:
        print(f"albert_size.py: error: unknown variant or width not divisible by 4: {', '.join(bad)}",
              file=sys.stderr)
        return 2
    rows = []
    print(f"{'variant':<11} {'width':>5} {'params':>11} {'int8 MB':>8}  architecture")
    for variant in variants:
        for hidden in sorted(args.widths):
            row = measure(variant, hidden, args)
            rows.append(row)
            print(f"{variant:<11} {hidden:>5} {row['parameters']:>11,} {row['int8_mb']:>8.3f}  {row['architecture']}",
                  flush=True)
            if not row["fits"]:  # size grows with the width: the wider ones are over the budget too
                break
    widest = {v: max((r["hidden_dim"] for r in rows if r["variant"] == v and r["fits"]), default=None)
              for v in variants}
    for v, w in widest.items():
        print(f"widest {v} student under {args.budget_mb} MB (int8, of the widths measured): {w}")
    doc = {"command": " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
           "budget_mb": args.budget_mb, "vocabulary": PAPER_STUDENT_VOCAB, "num_layers": args.num_layers,
           "embedding_dim": args.embedding_dim, "seq_len": args.seq_len, "machine": platform.machine(),
           "rows": rows, "widest_under_budget": widest}
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, "albert_size.json"), doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
