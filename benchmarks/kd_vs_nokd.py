"""The paper's Table 2 at our scale: held-out MLM accuracy of nokd, dual, dual+down, dual+up.

Same student, same data, same steps, same seeds; 3 seeds each; held-out
masked-token accuracy on identical masked positions (fixed masking seed).
Writes ``OUT/results.json``, ``OUT/table.md`` (mean ± std) and
``OUT/accuracy_vs_step.png``.

Every KD mode starts from one prepared teacher (``mode: teacher``: its MLM
heads — and its encoder — trained on the corpus, as ``mbd teacher-prep``
does), and ``nokd`` trains the same student alone.

**Default: the demo's teacher and corpus.** After ``make demo`` (folder
``demo_out/``, or ``--demo DIR``) every run starts from the demo's own resolved
configs (``DIR/configs/nokd.yaml`` and ``dual_up.yaml``: the MiniLM teacher
prepared by ``mbd teacher-prep``, the Debian corpus, the 4,928-piece student
vocabulary, the demo's steps, batch, learning rate and epsilon); only ``mode``
and ``seed`` change, plus a held-out evaluation every fifth of the run for the
curve. Accuracy is scored like the demo's table (``mbd eval`` on
``DIR/data/heldout.txt``, same masking seed, same sequence length), so the
demo's seed-0 figures are directly comparable.

``--corpus``/``--teacher`` run the same grid on your own data; ``--stand-in``
uses the kit's generated corpus and a small teacher trained from scratch (tests
the machinery only, not the paper's claim).

    python benchmarks/kd_vs_nokd.py                 # after `make demo`: 4 modes x 3 seeds
    python benchmarks/kd_vs_nokd.py --quick         # 1 seed, 200 steps, 500 held-out lines: < 10 min
    python benchmarks/kd_vs_nokd.py --stand-in --quick
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


class BenchError(Exception):
    """One line for the user; exit code 2."""


def _short_run(steps):
    """Overrides that shorten a demo config to ``steps`` (``--quick`` / ``--steps``)."""
    log = max(1, steps // 10)
    return [f"train.steps={steps}", f"train.warmup_steps={steps // 10}", f"train.log_every={log}",
            f"train.checkpoint_every={steps}"]


def _curve_overrides(cfg):
    """Evaluate on the held-out batches every fifth of the run (a multiple of log_every)."""
    steps, log = cfg["train"]["steps"], cfg["train"]["log_every"]
    every = max(1, (steps // 5) // log) * log
    return [f"train.eval_every={every}"]


def demo_setup(args, out):
    """Grid settings read from a finished ``make demo`` folder: its resolved configs, data and teacher."""
    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    demo = os.path.abspath(args.demo)
    need = {"nokd": os.path.join(demo, "configs", "nokd.yaml"),
            "kd": os.path.join(demo, "configs", "dual_up.yaml"),
            "heldout": os.path.join(demo, "data", "heldout.txt")}
    missing = [p for p in need.values() if not os.path.exists(p)]
    if missing:
        raise BenchError(f"no finished demo in {demo} (missing {missing[0]}): run `make demo` first, "
                         "or pass --stand-in or --corpus/--teacher")
    raw = {}
    for key in ("nokd", "kd"):
        try:
            raw[key] = config_lib.load_yaml(need[key])[0]
        except UserError as e:
            raise BenchError(str(e)) from None
    source = raw["kd"]["teacher"]["source"]
    if not os.path.exists(os.path.join(str(source), "config.json")):
        raise BenchError(f"the demo's prepared teacher is missing: {source} (rerun `make demo`)")
    extra = _short_run(args.steps or 200) if (args.quick or args.steps) else []
    held = need["heldout"]

    def config_for(mode, seed):
        data = dict(raw["nokd" if mode == "nokd" else "kd"], mode=mode, seed=seed)
        # nokd reads the teacher only for the student's depth: the prepared teacher has the same depth
        # and, unlike the raw teacher's path (inside the venv that ran the demo), is in the demo folder
        data["teacher"] = dict(data["teacher"], source=source)
        cfg = config_lib.resolve(data, extra)
        return config_lib.resolve(cfg, _curve_overrides(cfg) + [f"data.heldout={held}"])

    eval_path = os.path.join(demo, "eval.json")
    teacher_eval = None
    if os.path.exists(eval_path):
        with open(eval_path, encoding="utf-8") as f:
            t = json.load(f).get("teacher", {})
        if "teacher_vocab_head_accuracy" in t:
            teacher_eval = {k: t[k] for k in ("teacher_vocab_head_accuracy", "student_vocab_head_accuracy")}
    seq = config_for("nokd", 0)["data"]["seq_len"]
    if teacher_eval is None:
        from mobile_bert_distill.evaluation import evaluate_teacher

        teacher_eval = evaluate_teacher(source, [held], seq_len=seq, progress=False)
    note = (f"The demo's setting ({os.path.relpath(demo)}): corpus {raw['kd']['data']['corpus'][0]}, "
            f"prepared teacher {source}, student vocabulary {raw['kd']['data']['student_vocab']}; "
            f"held-out {held}, sequence length {seq}.")
    return config_for, held, {"seq_len": seq, "batch_size": 32, "max_batches": 8 if args.quick else None}, \
        teacher_eval, note


def custom_setup(args, out):
    """``--corpus``/``--teacher`` (your data) or ``--stand-in`` (generated corpus, teacher from scratch)."""
    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill import synthetic
    from mobile_bert_distill.evaluation import evaluate_teacher
    from mobile_bert_distill.training import distill
    from mobile_bert_distill.vocab import build_vocab

    stand_in = not args.corpus
    os.makedirs(out, exist_ok=True)
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

    # teacher preparation (cached)
    prep_dir = os.path.join(out, "teacher_prep")
    if not os.path.exists(os.path.join(prep_dir, "teacher")):
        cfg = config_lib.resolve(dict(base, teacher=teacher_cfg, mode="teacher"),
                                 [f"train.steps={prep_steps}", f"train.log_every={prep_steps // 10}",
                                  "train.eval_every=0", f"train.checkpoint_every={prep_steps}",
                                  f"train.warmup_steps={prep_steps // 10}", "dual.p_dt=0.5"])
        distill(cfg, out_dir=prep_dir, overwrite=True, restart=True)
    teacher_eval = evaluate_teacher(os.path.join(prep_dir, "teacher"), [held], seq_len=seq_len, progress=False)

    def config_for(mode, seed):
        # nokd reads the teacher source for the student's depth only; it never builds the teacher
        teacher = {"source": os.path.join(prep_dir, "teacher")}
        if mode != "nokd":
            teacher["dropout"] = 0.0 if quick else None
        return config_lib.resolve(dict(base, mode=mode, seed=seed, teacher=teacher))

    note = ("Stand-in data: generated corpus and a teacher trained from scratch in the preparation stage."
            if stand_in else f"Corpus {train}; teacher {args.teacher}.")
    return config_for, held, {"seq_len": None, "batch_size": 32, "max_batches": None}, teacher_eval, note


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="demo_out", metavar="DIR",
                    help="finished `make demo` folder whose teacher, corpus and configs the grid uses (default)")
    ap.add_argument("--stand-in", action="store_true",
                    help="generated corpus and a small teacher trained from scratch (no demo needed)")
    ap.add_argument("--corpus", help="your training text (instead of the demo's)")
    ap.add_argument("--heldout", help="held-out text (with --corpus)")
    ap.add_argument("--teacher", help="teacher source (with --corpus: preset / HF folder / teacher checkpoint)")
    ap.add_argument("--student-vocab", help="student vocab.txt (with --corpus/--stand-in; default: learned here)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2; --quick: 0)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--steps", type=int, help="distillation steps per run (default: the demo's; --quick: 200)")
    ap.add_argument("--prep-steps", type=int, help="teacher preparation steps (--stand-in/--corpus only)")
    ap.add_argument("--hidden-dim", type=int, help="student width (--stand-in/--corpus only)")
    ap.add_argument("--epsilon", type=float, default=1.0, help="(--stand-in/--corpus only)")
    ap.add_argument("--p-dt", type=float, default=0.5, help="(--stand-in/--corpus only)")
    ap.add_argument("--quick", action="store_true", help="1 seed, short runs: under 10 minutes on 2 cores")
    ap.add_argument("--out", help="output folder (default: benchmarks/results/kd_vs_nokd[_quick][_stand_in])")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps <= 0:
        return _fail("--steps must be positive")
    if args.stand_in and args.corpus:
        return _fail("--stand-in and --corpus exclude each other")
    if args.teacher and not args.corpus:
        return _fail("--teacher needs --corpus (the default uses the demo's teacher)")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])

    import numpy as np

    from mobile_bert_distill.evaluation import evaluate_student
    from mobile_bert_distill.training import distill

    setting = "demo" if not (args.stand_in or args.corpus) else ("stand_in" if args.stand_in else "custom")
    out = os.path.abspath(args.out or os.path.join(
        "benchmarks", "results", "kd_vs_nokd" + ("_quick" if args.quick else "")
        + ("" if setting == "demo" else f"_{setting}")))
    t_start = time.time()
    try:
        setup = demo_setup if setting == "demo" else custom_setup
        config_for, held, eval_kw, teacher_eval, note = setup(args, out)
    except BenchError as e:
        return _fail(str(e))
    if teacher_eval:
        print(f"prepared teacher: teacher-vocab head {teacher_eval['teacher_vocab_head_accuracy']:.4f}, "
              f"student-vocab head {teacher_eval['student_vocab_head_accuracy']:.4f}", flush=True)

    # --- the grid: every run resumable (a finished run with the same config is reused)
    first = config_for(args.modes[0], seeds[0])
    results = {"setting": setting, "stand_in": setting == "stand_in", "note": note, "seeds": seeds,
               "config": {k: first[k] for k in ("data", "student", "dual", "loss", "train")},
               "teacher_after_prep": teacher_eval, "runs": []}
    total = len(args.modes) * len(seeds)
    # seed-major: an interrupted grid still holds complete comparisons for the seeds it finished
    for i, (seed, mode) in enumerate([(s, m) for s in seeds for m in args.modes], 1):
        run_dir = os.path.join(out, "runs", f"{mode.replace('+', '_')}_seed{seed}")
        cfg = config_for(mode, seed)
        done = os.path.exists(os.path.join(run_dir, "summary.json")) and _same_config(run_dir, cfg)
        t0 = time.time()
        print(f"[{i}/{total}] {mode} seed {seed}: {'reusing the finished run' if done else 'training'} "
              f"({cfg['train']['steps']} steps) ...", flush=True)
        if not done:
            distill(cfg, out_dir=run_dir, overwrite=True, restart=True, progress=False)
        ev = evaluate_student(os.path.join(run_dir, "student"), [held], progress=False, **eval_kw)
        with open(os.path.join(run_dir, "history.json"), encoding="utf-8") as f:
            hist = json.load(f)
        curve = [(r["step"], r["val_student_acc"]) for r in hist if "val_student_acc" in r]
        results["runs"].append({"mode": mode, "seed": seed, "heldout_accuracy": ev["student_accuracy"],
                                "masked_tokens": ev["masked_tokens"], "curve": curve})
        print(f"[{i}/{total}] {mode} seed {seed}: held-out accuracy {100 * ev['student_accuracy']:.2f}% "
              f"({ev['masked_tokens']:,} masked pieces) in {time.time() - t0:.0f} s", flush=True)

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
    lines = ["| mode | held-out MLM accuracy (mean ± std) | Δ vs nokd (points) | seeds | per seed |",
             "|---|---|---|---|---|"]
    for m, a, s, n in rows:
        per_seed = ", ".join(f"{100 * r['heldout_accuracy']:.2f}" for r in results["runs"] if r["mode"] == m)
        delta = f"{100 * (a - nokd_mean):+.2f}" if nokd_mean is not None else ""
        spread = f"{100 * s:.2f}" if n > 1 else "—"  # one seed has no spread
        lines.append(f"| {m} | {100 * a:.2f} ± {spread} | {delta} | {n} | {per_seed} |")
    table = "\n".join(lines)
    from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text

    atomic_write_text(os.path.join(out, "table.md"), (f"# KD vs NoKD (paper Table 2 at our scale)\n\n{note}\n\n"
                f"Teacher after preparation: teacher-vocab head {100 * teacher_eval['teacher_vocab_head_accuracy']:.2f}%, "
                f"student-vocab head {100 * teacher_eval['student_vocab_head_accuracy']:.2f}%.\n\n{table}\n\n"
                f"Paper (48-d): NoKD 28.83, DualTrain 29.51, +Down 29.55, +Up 29.89.\n"))
    atomic_write_json(os.path.join(out, "results.json"), results)
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
        from mobile_bert_distill.atomic import atomic_file

        with atomic_file(os.path.join(out, "accuracy_vs_step.png"), suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    except ImportError:
        pass
    print(table)
    print(f"wrote {out}/table.md, results.json, accuracy_vs_step.png in {results['seconds']:.0f} s")
    return 0


def _same_config(run_dir, cfg):
    """True when the run in ``run_dir`` was made with ``cfg`` (its output folder aside)."""
    import yaml

    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    strip = lambda c: {k: v for k, v in c.items() if k != "output_dir"}  # noqa: E731
    return strip(old) == strip(json.loads(json.dumps(cfg)))


def _fail(message):
    print(f"kd_vs_nokd: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
