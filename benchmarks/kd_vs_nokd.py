"""The paper's Table 2 at our scale: held-out MLM accuracy of nokd, dual, dual+down, dual+up.

Same student, same data, same steps, same seeds; 3 seeds each; held-out
masked-token accuracy on identical masked positions (fixed masking seed).
Writes ``OUT/results.json``, ``OUT/table.md`` (mean ± std) and
``OUT/accuracy_vs_step.png``.

The teacher is first prepared (``mode: teacher``: its MLM heads — and here its
encoder — trained on the corpus), then every KD mode starts from that
prepared teacher, and ``nokd`` trains the same student alone.

**Stand-in until the demo data lands.** Without ``--corpus``/``--teacher`` it
uses the kit's generated corpus and a randomly initialised teacher that the
preparation stage trains from scratch. That tests the machinery, not the
paper's claim: the paper's teacher is a pretrained BERT-base.

    python benchmarks/kd_vs_nokd.py --quick                     # < 10 min on 2 cores
    python benchmarks/kd_vs_nokd.py --corpus train.txt --heldout heldout.txt \\
        --teacher path/to/hf_or_preset_dir --student-vocab vocab.txt
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = ("nokd", "dual", "dual+down", "dual+up")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="training text (default: generated stand-in)")
    ap.add_argument("--heldout", help="held-out text")
    ap.add_argument("--teacher", help="teacher source (preset / HF folder / teacher checkpoint)")
    ap.add_argument("--student-vocab", help="student vocab.txt (default: learned here)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--steps", type=int, help="distillation steps per run")
    ap.add_argument("--prep-steps", type=int, help="teacher preparation steps")
    ap.add_argument("--hidden-dim", type=int, help="student width")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--p-dt", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true", help="small everything: under 10 minutes on 2 cores")
    ap.add_argument("--out", default="benchmarks/results/kd_vs_nokd")
    args = ap.parse_args(argv)

    import numpy as np

    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill import synthetic
    from mobile_bert_distill.evaluation import evaluate_student, evaluate_teacher
    from mobile_bert_distill.training import distill
    from mobile_bert_distill.vocab import build_vocab

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    stand_in = not args.corpus
    if stand_in:
        train, held = os.path.join(out, "train.txt"), os.path.join(out, "heldout.txt")
        if not os.path.exists(held):
            synthetic.write_corpus(train, 3000 if args.quick else 20000, seed=0)
            synthetic.write_corpus(held, 200 if args.quick else 1000, seed=1)
    else:
        train, held = args.corpus, args.heldout or args.corpus
    tv_dir, sv_dir = os.path.join(out, "teacher_vocab"), os.path.join(out, "student_vocab")
    teacher_vocab = None
    if not args.teacher:
        if not os.path.exists(os.path.join(tv_dir, "vocab.txt")):
            build_vocab([train], tv_dir, size=600, overwrite=True, log=lambda m: None)
        teacher_vocab = os.path.join(tv_dir, "vocab.txt")
    student_vocab = args.student_vocab
    if not student_vocab:
        if not os.path.exists(os.path.join(sv_dir, "vocab.txt")):
            build_vocab([train], sv_dir, size=200 if stand_in else 4928, teacher_vocab_path=teacher_vocab,
                        overwrite=True, log=lambda m: None)
        student_vocab = os.path.join(sv_dir, "vocab.txt")

    quick = args.quick
    steps = args.steps or (1000 if quick else 2000)
    prep_steps = args.prep_steps or (3000 if quick else 2000)
    seq_len = 32 if quick else 128
    base = {
        "data": {"corpus": [train], "heldout": held, "student_vocab": student_vocab, "seq_len": seq_len,
                 "max_predictions": max(1, round(0.15 * seq_len)), "heldout_batches": 4 if quick else 16},
        "student": {"hidden_dim": args.hidden_dim or (32 if quick else 48), "num_heads": 2 if quick else 4,
                    "dropout": 0.0 if quick else 0.1},
        "dual": {"p_dt": args.p_dt},
        "loss": {"epsilon": args.epsilon},
        "train": {"steps": steps, "batch_size": 32, "learning_rate": 1e-2 if quick else 1e-3,
                  "warmup_steps": steps // 10, "log_every": steps // 10 if steps >= 10 else steps,
                  "eval_every": (steps // 5) // max(steps // 10, 1) * max(steps // 10, 1) if steps >= 10 else 0,
                  "checkpoint_every": steps, "keep_checkpoints": 1},
    }
    if args.teacher:
        teacher_cfg = {"source": args.teacher}
    else:
        teacher_cfg = {"random": {"vocabulary": teacher_vocab, "num_layers": 2, "hidden_dim": 64,
                                  "num_heads": 4, "intermediate_dim": 128}, "dropout": 0.0}

    # --- 1. teacher preparation (cached)
    prep_dir = os.path.join(out, "teacher_prep")
    if not os.path.exists(os.path.join(prep_dir, "teacher")):
        cfg = config_lib.resolve(dict(base, teacher=teacher_cfg, mode="teacher"),
                                 [f"train.steps={prep_steps}", f"train.log_every={prep_steps // 10}",
                                  "train.eval_every=0", f"train.checkpoint_every={prep_steps}",
                                  f"train.warmup_steps={prep_steps // 10}", "dual.p_dt=0.5"])
        distill(cfg, out_dir=prep_dir, overwrite=True, restart=True)
    teacher_eval = evaluate_teacher(os.path.join(prep_dir, "teacher"), [held], seq_len=seq_len, progress=False)
    print(f"prepared teacher: teacher-vocab head {teacher_eval['teacher_vocab_head_accuracy']:.4f}, "
          f"student-vocab head {teacher_eval['student_vocab_head_accuracy']:.4f}", flush=True)

    # --- 2. the grid
    results = {"config": base, "stand_in": stand_in, "teacher_after_prep": teacher_eval, "runs": []}
    for mode in args.modes:
        for seed in args.seeds:
            run_dir = os.path.join(out, "runs", f"{mode.replace('+', '_')}_seed{seed}")
            if not os.path.exists(os.path.join(run_dir, "summary.json")):
                cfg_dict = dict(base, mode=mode, seed=seed)
                if mode != "nokd":
                    cfg_dict["teacher"] = {"source": os.path.join(prep_dir, "teacher"), "dropout": 0.0 if quick else None}
                else:  # read for the student's depth only; nokd never builds the teacher
                    cfg_dict["teacher"] = {"source": os.path.join(prep_dir, "teacher")}
                distill(config_lib.resolve(cfg_dict), out_dir=run_dir, overwrite=True, restart=True)
            ev = evaluate_student(os.path.join(run_dir, "student"), [held], progress=False)
            with open(os.path.join(run_dir, "history.json"), encoding="utf-8") as f:
                hist = json.load(f)
            curve = [(r["step"], r["val_student_acc"]) for r in hist if "val_student_acc" in r]
            results["runs"].append({"mode": mode, "seed": seed, "heldout_accuracy": ev["student_accuracy"],
                                    "masked_tokens": ev["masked_tokens"], "curve": curve})
            print(f"{mode:10s} seed {seed}: held-out accuracy {ev['student_accuracy']:.4f}", flush=True)

    # --- 3. table + plot
    rows = []
    nokd_mean = None
    for mode in args.modes:
        accs = np.array([r["heldout_accuracy"] for r in results["runs"] if r["mode"] == mode])
        mean, std = float(accs.mean()), float(accs.std(ddof=1)) if len(accs) > 1 else 0.0
        if mode == "nokd":
            nokd_mean = mean
        rows.append((mode, mean, std, len(accs)))
    results["table"] = [{"mode": m, "mean": a, "std": s, "seeds": n} for m, a, s, n in rows]
    results["seconds"] = round(time.time() - t_start, 1)
    lines = ["| mode | held-out MLM accuracy (mean ± std) | Δ vs nokd (points) | seeds |", "|---|---|---|---|"]
    for m, a, s, n in rows:
        delta = f"{100 * (a - nokd_mean):+.2f}" if nokd_mean is not None else ""
        lines.append(f"| {m} | {100 * a:.2f} ± {100 * s:.2f} | {delta} | {n} |")
    table = "\n".join(lines)
    note = ("Stand-in data: generated corpus and a teacher trained from scratch in the preparation stage."
            if stand_in else f"Corpus {train}; teacher {args.teacher}.")
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(f"# KD vs NoKD (paper Table 2 at our scale)\n\n{note}\n\n"
                f"Teacher after preparation: teacher-vocab head {100 * teacher_eval['teacher_vocab_head_accuracy']:.2f}%, "
                f"student-vocab head {100 * teacher_eval['student_vocab_head_accuracy']:.2f}%.\n\n{table}\n\n"
                f"Paper (48-d): NoKD 28.83, DualTrain 29.51, +Down 29.55, +Up 29.89.\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for mode in args.modes:
            curves = [r["curve"] for r in results["runs"] if r["mode"] == mode and r["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = [c[0] for c in curves[0][:n]]
            ys = np.mean([[p[1] for p in c[:n]] for c in curves], axis=0)
            ax.plot(xs, ys, marker="o", label=mode)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out masked-token accuracy")
        ax.set_title("KD vs NoKD (mean over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "accuracy_vs_step.png"), dpi=120)
    except ImportError:
        pass
    print(table)
    print(f"wrote {out}/table.md, results.json, accuracy_vs_step.png in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
