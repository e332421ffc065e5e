"""The paper's Table 2 where students learn, sized by a time budget.

1. **Teacher.** ``mode: teacher`` from the raw teacher with the demo's teacher-prep settings
   (``mobile_bert_distill/configs/demo.yaml``, ``demo.teacher_prep``: encoder trained, both MLM heads, the
   up-projection, the ``p_dt`` ramp), for ``--prep-share`` of the budget. Both heads are scored on
   the held-out text every fifth of the run (the curve) and at the end. Target: the
   teacher-vocabulary head at >= 40 % held-out masked-token accuracy.
2. **Students.** For each width (``--widths``, default 48 and 192; depth = the teacher's), every
   mode (``nokd``, ``dual``, ``dual+down``, ``dual+up``; ``--modes`` adds the ``+soft`` ones and ``tinybert``) and seed, with the demo's distillation
   settings (teacher frozen, ``epsilon``, learning rate) from the prepared teacher. All runs of a
   width share the data, steps and schedule. Each student is scored by ``evaluate_student`` (what
   ``mbd eval`` runs) on the same masked held-out positions. Targets: every 48-d student >= 20 %;
   ``dual+up`` - ``nokd`` >= +1.0 point at 48-d (paper: +1.06).
3. **Sizing.** A probe builds each kind of run (teacher-prep; ``nokd`` and ``dual+up`` per width),
   runs 2 steps to compile it and times a few more. The steps are then set so that each stage
   fits its share of what is left of the budget, build and compile included. The plan is kept
   in ``OUT/plan.json``: rerunning the same command reuses it and every finished run, so an
   interrupted grid resumes. ``--plan-only`` stops after the probes: on a machine lent for a few
   minutes at a time, one short call plans and a second one trains.

The knobs come from a demo config (``--config``, default ``mobile_bert_distill/configs/demo.yaml``: the ones
``make demo`` uses); the data from a demo folder (``--demo``, default ``demo_out``: its
``data/train.txt``, ``data/heldout.txt``, student vocabulary and raw teacher) or your own
(``--corpus``, ``--heldout``, ``--student-vocab``, ``--teacher``). ``--override KEY=VALUE``
changes every run (e.g. ``train.batch_size=128 data.seq_len=128``). It trains on the process's
Keras backend (``KERAS_BACKEND=jax`` where TensorFlow is missing).

Writes ``OUT/results.json``, ``OUT/table.md``, ``OUT/curves.png`` and, per width, the best
student as one keras-hub preset archive ``OUT/best/student_<W>d.tar.gz``.

    python benchmarks/table2.py --budget-minutes 90          # after `make demo`
    KERAS_BACKEND=jax python benchmarks/table2.py --budget-minutes 8 --override train.batch_size=128
    python benchmarks/table2.py --prep-steps 400 --steps 800 --seeds 0 --widths 48   # fixed steps

``--prepared-teacher RUN`` skips step 1 and trains every student from the teacher an earlier
grid prepared (its ``OUT/teacher_prep``), so a grid can grow by widths, modes or a student
variant (``--override student.embedding_dim=128 student.share_layers=true``) on the same teacher:

    python benchmarks/table2.py --prepared-teacher OUT192/teacher_prep --steps 960 --widths 640 \\
        --modes nokd dual+up --override student.embedding_dim=128 student.share_layers=true --out OUT640
"""

import argparse
import json
import os
import sys
import tarfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mobile_bert_distill import CONFIGS_DIR  # noqa: E402

MODES = ("nokd", "dual", "dual+down", "dual+up")  # the paper's Table 2: the default grid
OTHER_METHODS = ("soft", "dual+soft", "dual+down+soft", "dual+up+soft", "tinybert")  # DistilBERT, TinyBERT: on request
PAPER_48D = {"nokd": 28.83, "dual": 29.51, "dual+down": 29.55, "dual+up": 29.89}  # Table 2, held-out %
TEACHER_TARGET = 0.40
STUDENT_48D_TARGET = 0.20
UP_GAIN_TARGET = 0.010  # dual+up - nokd at 48-d
MARGIN = 0.9  # of each stage's budget spent on planned steps: evaluation, saving and noise take the rest
PROBE_STEPS = 5


class BenchError(Exception):
    """One line for the user; exit code 2."""


# ---------------------------------------------------------------------------- plan
def plan_steps(budget_s, runs):
    """The most steps (a multiple of 10, at least 10) that ``runs`` can each take within ``budget_s``.

    Args:
        budget_s: seconds for all the runs together.
        runs: one ``(seconds_per_step, fixed_seconds)`` per run (build, compile, evaluation).

    >>> plan_steps(100.0, [(0.1, 10.0), (0.2, 20.0)])
    230
    """
    per_step = sum(r[0] for r in runs)
    fixed = sum(r[1] for r in runs)
    steps = int(max(budget_s - fixed, 0.0) / per_step) // 10 * 10
    return max(steps, 10)


def schedule(steps, ref):
    """Overrides that stretch the schedule of config ``ref`` over ``steps`` (a multiple of 10)."""
    scale = steps / ref["train"]["steps"]
    out = [f"train.steps={steps}", f"train.log_every={steps // 10}", f"train.eval_every={steps // 5}",
           f"train.checkpoint_every={steps // 2}", "train.keep_checkpoints=1",
           f"train.warmup_steps={round(ref['train']['warmup_steps'] * scale)}"]
    if ref["dual"]["ramp_steps"]:
        out.append(f"dual.ramp_steps={min(steps, round(ref['dual']['ramp_steps'] * scale))}")
    return out


# ---------------------------------------------------------------------------- inputs
def demo_inputs(demo_dir):
    """Training text, held-out text, student vocabulary and raw teacher of a ``make demo`` folder."""
    from mobile_bert_distill.distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    demo_dir = os.path.abspath(demo_dir)
    paths = {"corpus": os.path.join(demo_dir, "data", "train.txt"),
             "heldout": os.path.join(demo_dir, "data", "heldout.txt"),
             "student_vocab": os.path.join(demo_dir, "student_vocab", "vocab.txt")}
    prep_yaml = os.path.join(demo_dir, "configs", "teacher-prep.yaml")
    missing = [p for p in list(paths.values()) + [prep_yaml] if not os.path.exists(p)]
    if missing:
        raise BenchError(f"no demo data in {demo_dir} (missing {missing[0]}): run `make demo` first, "
                         "or pass --corpus, --heldout, --student-vocab and --teacher")
    try:
        paths["teacher"] = config_lib.load_yaml(prep_yaml)[0]["teacher"]["source"]
    except UserError as e:
        raise BenchError(str(e)) from None
    return paths


class Grid:
    """The configs of every run: the demo config's knobs, the given data, the overrides."""

    def __init__(self, config_path, inputs, overrides, prepared):
        from mobile_bert_distill.demo import DemoError, load_demo_config, run_configs

        self.prepared = prepared  # the prepared teacher every student learns from
        try:
            demo, raw, base = load_demo_config(config_path)
            runs = run_configs(demo, raw, base, train=inputs["corpus"], student_vocab=inputs["student_vocab"],
                               teacher_source=inputs["teacher"], prep_teacher=self.prepared)
        except DemoError as e:
            raise BenchError(str(e)) from None
        extra = list(overrides) + [f"data.heldout={inputs['heldout']}"]
        self.prep = self._resolve(runs["teacher-prep"], extra)
        self.kd = self._resolve(runs["dual+up"], extra)
        self.nokd = self._resolve(runs["nokd"], extra)

    @staticmethod
    def _resolve(cfg, overrides):
        from mobile_bert_distill.distill import config as config_lib
        from mobile_bert_distill.errors import UserError

        try:
            return config_lib.resolve(cfg, overrides)
        except UserError as e:
            raise BenchError(str(e)) from None

    def teacher(self, steps, width, source=None):
        over = [f"student.hidden_dim={width}"] + ([f"teacher.source={source}"] if source else [])
        return self._resolve(self.prep, over + (schedule(steps, self.prep) if steps else []))

    def student(self, mode, width, seed, steps, source=None):
        ref = self.nokd if mode == "nokd" else self.kd
        over = [f"mode={mode}", f"seed={seed}", f"student.hidden_dim={width}",
                f"teacher.source={source or self.prepared}"]
        return self._resolve(ref, over + (schedule(steps, ref) if steps else []))


def probe(grid, widths, teacher_source, log):
    """Seconds per step and fixed seconds of each kind of run (``time_steps`` of the speed benchmark)."""
    from train_speed import time_steps

    kinds = {"teacher": grid.teacher(None, widths[0])}
    for w in widths:
        kinds[f"nokd {w}"] = grid.student("nokd", w, 0, None, source=teacher_source)
        kinds[f"kd {w}"] = grid.student("dual+up", w, 0, None, source=teacher_source)
    out = {}
    for name, cfg in kinds.items():
        step_s, first_s, _ = time_steps(cfg, PROBE_STEPS)
        out[name] = {"step_seconds": step_s, "fixed_seconds": first_s}
        log(f"probe {name}: {step_s * 1e3:.1f} ms/step, {first_s:.1f} s to build and compile")
    return out


def make_plan(args, grid, inputs, budget_s, prep_steps, log):
    """``{"prep_steps", "steps": {width: steps}, ...}``: sized by probes, or the fixed steps given.

    With ``prep_steps`` given (those of a reused teacher preparation), only the students share the budget.
    """
    if prep_steps and args.steps:
        return {"prep_steps": prep_steps, "steps": {str(w): args.steps for w in args.widths}, "probe": None}
    t0 = time.time()
    # the raw teacher stands in for the prepared one: the same encoder, so the same cost
    speeds = probe(grid, args.widths, inputs["teacher"], log)
    left = budget_s - (time.time() - t0)
    prep_budget = 0.0 if args.prepared_teacher else left * args.prep_share
    eval_s = speeds["teacher"]["fixed_seconds"]  # a build-and-compile's worth for scoring and saving
    plan = {"probe": speeds, "probe_seconds": round(time.time() - t0, 1), "budget_seconds": budget_s}
    plan["prep_steps"] = prep_steps or plan_steps(
        MARGIN * prep_budget, [(speeds["teacher"]["step_seconds"], speeds["teacher"]["fixed_seconds"] + eval_s)])
    per_width = (left - prep_budget) / len(args.widths)
    plan["steps"] = {}
    for w in args.widths:
        runs = []
        for mode in args.modes:
            s = speeds[f"nokd {w}" if mode == "nokd" else f"kd {w}"]
            runs += [(s["step_seconds"], s["fixed_seconds"] + eval_s)] * len(args.seeds)
        plan["steps"][str(w)] = args.steps or plan_steps(MARGIN * per_width, runs)
    return plan


# ---------------------------------------------------------------------------- run
def train(cfg, run_dir, log):
    """Train ``cfg`` into ``run_dir`` unless it is there already; ``(summary, wall seconds, reused)``."""
    from mobile_bert_distill.distill.config import same_config
    from mobile_bert_distill.distill.run import distill

    t0 = time.time()
    reused = os.path.exists(os.path.join(run_dir, "summary.json")) and \
        same_config(os.path.join(run_dir, "config.yaml"), cfg)
    if not reused:
        distill(cfg, out_dir=run_dir, overwrite=True, restart=True, progress=False, log=lambda m: None)
    return finished_run(run_dir)[1], time.time() - t0, reused


def finished_run(run_dir):
    """``(config, summary with its history)`` of a finished ``mbd distill`` run folder."""
    import yaml

    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "history.json"), encoding="utf-8") as f:
        summary["history"] = json.load(f)
    return cfg, summary


def check_prepared(run_dir):
    """A reusable teacher preparation: a finished ``mode: teacher`` run with its teacher checkpoint."""
    from mobile_bert_distill.distill.teacher import is_teacher_checkpoint

    for name in ("config.yaml", "summary.json", "history.json"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise BenchError(f"{run_dir} is not a finished teacher preparation (no {name})")
    cfg, summary = finished_run(run_dir)
    if cfg.get("mode") != "teacher":
        raise BenchError(f"{run_dir} is a {cfg.get('mode')!r} run, not a teacher preparation (mode: teacher)")
    if not is_teacher_checkpoint(os.path.join(run_dir, "teacher")):
        raise BenchError(f"{run_dir}/teacher is not a teacher checkpoint")
    return cfg, summary


def tokens_seen(cfg):
    return cfg["train"]["steps"] * cfg["train"]["batch_size"] * cfg["data"]["seq_len"]


def machine():
    """Backend and device the runs used (CPU model and flags on a CPU)."""
    from mobile_bert_distill.distill import backends
    from train_speed import cpu_flags

    info = {"backend": backends.current(), "cpu": cpu_flags()}
    if backends.current() == "jax":
        import jax

        info["devices"] = [d.device_kind for d in jax.devices()]
    else:
        import tensorflow as tf

        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    return info


# ---------------------------------------------------------------------------- report
def summarise(runs, modes, widths):
    """Mean, spread and per-seed accuracy of every (width, mode)."""
    import numpy as np

    rows = []
    for w in widths:
        base = None
        for mode in modes:
            accs = [r["heldout_accuracy"] for r in runs if r["width"] == w and r["mode"] == mode]
            if not accs:
                continue
            mean = float(np.mean(accs))
            base = mean if mode == "nokd" else base
            rows.append({"width": w, "mode": mode, "mean": mean, "seeds": len(accs), "per_seed": accs,
                         "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                         "delta_vs_nokd": None if base is None else mean - base})
    return rows


def targets(teacher_eval, rows):
    """Each target of the issue: what was measured and whether it is met."""
    out = [{"target": f"teacher-vocabulary head >= {100 * TEACHER_TARGET:.0f} %",
            "measured": teacher_eval["teacher_vocab_head_accuracy"],
            "met": teacher_eval["teacher_vocab_head_accuracy"] >= TEACHER_TARGET}]
    small = [r for r in rows if r["width"] == 48]
    if small:
        worst = min(min(r["per_seed"]) for r in small)
        out.append({"target": f"every 48-d student >= {100 * STUDENT_48D_TARGET:.0f} %", "measured": worst,
                    "met": worst >= STUDENT_48D_TARGET})
        up = next((r for r in small if r["mode"] == "dual+up"), None)
        if up is not None and up["delta_vs_nokd"] is not None:
            out.append({"target": f"dual+up - nokd at 48-d >= +{100 * UP_GAIN_TARGET:.1f} points",
                        "measured": up["delta_vs_nokd"], "met": up["delta_vs_nokd"] >= UP_GAIN_TARGET})
    return out


def table_md(res):
    t = res["teacher"]["heldout"]
    lines = [f"Teacher after {res['plan']['prep_steps']} preparation steps: teacher-vocabulary head "
             f"{100 * t['teacher_vocab_head_accuracy']:.2f} %, student-vocabulary head "
             f"{100 * t['student_vocab_head_accuracy']:.2f} % (held-out masked pieces).", "",
             "| width | mode | steps | held-out accuracy % (mean ± std) | Δ vs nokd | per seed | paper (48-d) |",
             "|---:|---|---:|---|---:|---|---:|"]
    for r in res["table"]:
        spread = f"{100 * r['std']:.2f}" if r["std"] is not None else "—"
        delta = f"{100 * r['delta_vs_nokd']:+.2f}" if r["delta_vs_nokd"] is not None else ""
        paper = f"{PAPER_48D[r['mode']]:.2f}" if r["width"] == 48 and r["mode"] in PAPER_48D else ""
        lines.append(f"| {r['width']} | {r['mode']} | {res['plan']['steps'][str(r['width'])]} | "
                     f"{100 * r['mean']:.2f} ± {spread} | {delta} | "
                     f"{', '.join(f'{100 * a:.2f}' for a in r['per_seed'])} | {paper} |")
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for g in res["targets"]:
        lines.append(f"| {g['target']} | {100 * g['measured']:.2f} | {'yes' if g['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobile_bert_distill.atomic import atomic_file

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    # the held-out check inside fit() draws its batches at the start of the p_dt ramp (teacher pieces
    # only), so it scores the teacher-vocabulary head alone; the final scores of both heads are stars
    pts = [(h["step"], h["val_teacher_acc_tvocab"]) for h in res["teacher"]["history"] if "val_teacher_acc_tvocab" in h]
    if pts:
        a1.plot(*zip(*pts), marker="o", label="teacher-vocabulary head")
    final = res["teacher"]["heldout"]
    a1.plot([res["teacher"]["steps"]], [final["teacher_vocab_head_accuracy"]], "*", ms=12, c="C0")
    a1.plot([res["teacher"]["steps"]], [final["student_vocab_head_accuracy"]], "*", ms=12, c="C1",
            label="student-vocabulary head (end)")
    a1.axhline(TEACHER_TARGET, ls=":", c="grey")
    a1.set(title="teacher preparation", xlabel="step", ylabel="held-out masked accuracy")
    a1.legend()
    for w in sorted({r["width"] for r in res["runs"]}):
        for mode in res["modes"]:
            curves = [r["curve"] for r in res["runs"] if r["width"] == w and r["mode"] == mode and r["curve"]]
            if curves:
                n = min(len(c) for c in curves)
                xs = [c[0] for c in curves[0][:n]]
                ys = [sum(c[i][1] for c in curves) / len(curves) for i in range(n)]
                a2.plot(xs, ys, marker="o", ls="-" if w == min(res["widths"]) else "--", label=f"{w}-d {mode}")
    a2.set(title="students (mean over seeds)", xlabel="step", ylabel="held-out masked accuracy")
    a2.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def archive(src, dst):
    from mobile_bert_distill.atomic import atomic_file

    with atomic_file(dst, suffix=".tar.gz") as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(src, arcname=os.path.basename(dst)[:-len(".tar.gz")])


# ---------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-minutes", type=float, default=90.0,
                    help="wall time for probes, teacher preparation and the grid (default 90)")
    ap.add_argument("--prep-share", type=float, default=0.3,
                    help="share of the budget (after the probes) for teacher preparation (default 0.3)")
    ap.add_argument("--prep-steps", type=int, help="teacher preparation steps instead of sizing them")
    ap.add_argument("--steps", type=int, help="steps of every student run instead of sizing them")
    ap.add_argument("--prepared-teacher", metavar="RUN",
                    help="an earlier grid's OUT/teacher_prep: train the students from its teacher instead of "
                         "preparing one")
    ap.add_argument("--widths", type=int, nargs="+", default=[48, 192], help="student widths (default 48 192)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES + OTHER_METHODS,
                    help="default: the paper's four (the +soft modes add DistilBERT's terms, tinybert TinyBERT's; "
                         "their steps are sized from the dual+up probe)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="default: 0 1")
    ap.add_argument("--config", default=os.path.join(CONFIGS_DIR, "demo.yaml"),
                    help="demo config whose knobs every run uses (default: mobile_bert_distill/configs/demo.yaml)")
    ap.add_argument("--demo", default="demo_out", metavar="DIR",
                    help="`make demo` folder whose data and raw teacher are used (default: demo_out)")
    ap.add_argument("--corpus", help="training text (with --heldout, --student-vocab, --teacher: instead of --demo)")
    ap.add_argument("--heldout", help="held-out text")
    ap.add_argument("--student-vocab", help="student vocab.txt")
    ap.add_argument("--teacher", help="raw teacher: keras-hub preset, Hugging Face BERT folder or teacher checkpoint")
    ap.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    ap.add_argument("--plan-only", action="store_true",
                    help="probe, write OUT/plan.json and stop (the same command without it then trains to that plan)")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results", "table2"), help="output folder")
    args = ap.parse_args(argv)
    own = [args.corpus, args.heldout, args.student_vocab, args.teacher]
    for name, v in (("--budget-minutes", args.budget_minutes), ("--prep-steps", args.prep_steps),
                    ("--steps", args.steps)):
        if v is not None and v <= 0:
            return _fail(f"{name} must be positive")
    for name, v in (("--prep-steps", args.prep_steps), ("--steps", args.steps)):
        if v is not None and v % 10:
            return _fail(f"{name} must be a multiple of 10 (the schedule logs every tenth of a run)")
    if not 0.0 < args.prep_share < 1.0:
        return _fail("--prep-share must be between 0 and 1")
    if any(own) and not all(own):
        return _fail("--corpus, --heldout, --student-vocab and --teacher go together")
    if any(w <= 0 for w in args.widths):
        return _fail("--widths must be positive")
    if args.prepared_teacher and args.prep_steps:
        return _fail("--prep-steps and --prepared-teacher exclude each other (a prepared teacher has its steps)")
    out = os.path.abspath(args.out)
    prep_dir = os.path.abspath(args.prepared_teacher) if args.prepared_teacher else os.path.join(out, "teacher_prep")
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:6.0f} s] {msg}", flush=True)

    from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text
    from mobile_bert_distill.distill.evaluation import evaluate_student, evaluate_teacher

    try:
        prepared = check_prepared(prep_dir) if args.prepared_teacher else None
        inputs = dict(zip(("corpus", "heldout", "student_vocab", "teacher"), own)) if all(own) \
            else demo_inputs(args.demo)
        for key in ("corpus", "heldout", "student_vocab"):
            if not os.path.isfile(inputs[key]):
                raise BenchError(f"no such file: {inputs[key]}")
        grid = Grid(args.config, inputs, args.override, os.path.join(prep_dir, "teacher"))
    except BenchError as e:
        return _fail(str(e))
    os.makedirs(out, exist_ok=True)

    # ------------------------------------------------------------ 0. plan
    key = {"budget_minutes": args.budget_minutes, "prep_share": args.prep_share, "widths": args.widths,
           "modes": args.modes, "seeds": args.seeds, "prep_steps": args.prep_steps, "steps": args.steps,
           "config": grid.kd, "inputs": inputs, "backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    if prepared:
        key["prepared_teacher"] = prep_dir
    key = json.loads(json.dumps(key))
    plan_path = os.path.join(out, "plan.json")
    plan = None
    if os.path.exists(plan_path):
        with open(plan_path, encoding="utf-8") as f:
            old = json.load(f)
        plan = old["plan"] if old.get("key") == key else None
    if plan is None:
        prep_steps = prepared[0]["train"]["steps"] if prepared else args.prep_steps
        plan = make_plan(args, grid, inputs, args.budget_minutes * 60, prep_steps, log)
        atomic_write_json(plan_path, {"key": key, "plan": plan})
    log(f"plan: teacher preparation {plan['prep_steps']} steps; students "
        + ", ".join(f"{w}-d {s} steps" for w, s in plan["steps"].items())
        + f"; {len(args.modes) * len(args.seeds)} runs per width")
    if args.plan_only:
        return 0
    seq = grid.kd["data"]["seq_len"]

    # ------------------------------------------------------------ 1. teacher
    if prepared:
        (prep_cfg, summary), reused = prepared, True
        secs = summary["seconds"]  # what the preparation took when it ran
    else:
        prep_cfg = grid.teacher(plan["prep_steps"], args.widths[0])
        summary, secs, reused = train(prep_cfg, prep_dir, log)
    teacher_eval = evaluate_teacher(grid.prepared, [inputs["heldout"]], seq_len=seq, progress=False)
    log(f"teacher ({f'from {prep_dir}' if prepared else 'reused' if reused else f'{secs:.0f} s'}): teacher-vocabulary head "
        f"{100 * teacher_eval['teacher_vocab_head_accuracy']:.2f} %, student-vocabulary head "
        f"{100 * teacher_eval['student_vocab_head_accuracy']:.2f} %")
    res = {"command": "python benchmarks/table2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine(), "inputs": inputs, "widths": args.widths, "modes": args.modes,
           "seeds": args.seeds, "plan": plan,
           "teacher": {"steps": plan["prep_steps"], "tokens_seen": tokens_seen(prep_cfg),
                       "seconds": round(secs, 1), "heldout": teacher_eval, "history": summary["history"],
                       "config": prep_cfg, "prepared_by": prep_dir},
           "student_configs": {}, "runs": []}

    # ------------------------------------------------------------ 2. students (seed-major: an
    # interrupted grid still holds whole comparisons for the seeds it finished)
    jobs = [(s, w, m) for s in args.seeds for w in args.widths for m in args.modes]
    for i, (seed, width, mode) in enumerate(jobs, 1):
        cfg = grid.student(mode, width, seed, plan["steps"][str(width)])
        res["student_configs"].setdefault(str(width), cfg)
        run_dir = os.path.join(out, "runs", f"{width}d_{mode.replace('+', '_')}_seed{seed}")
        summary, secs, reused = train(cfg, run_dir, log)
        ev = evaluate_student(os.path.join(run_dir, "student"), [inputs["heldout"]], seq_len=seq, progress=False)
        curve = [(h["step"], h["val_student_acc"]) for h in summary["history"] if "val_student_acc" in h]
        res["runs"].append({"width": width, "mode": mode, "seed": seed, "heldout_accuracy": ev["student_accuracy"],
                            "masked_tokens": ev["masked_tokens"], "steps": cfg["train"]["steps"],
                            "tokens_seen": tokens_seen(cfg), "seconds": round(secs, 1), "curve": curve,
                            "student": run_dir})
        log(f"[{i}/{len(jobs)}] {width}-d {mode} seed {seed}: {100 * ev['student_accuracy']:.2f} % "
            f"({ev['masked_tokens']:,} masked pieces; {'reused' if reused else f'{secs:.0f} s'})")

    # ------------------------------------------------------------ 3. report
    res["table"] = summarise(res["runs"], args.modes, args.widths)
    res["targets"] = targets(teacher_eval, res["table"])
    res["paper_48d"] = PAPER_48D
    res["seconds"] = round(time.time() - t_start, 1)
    os.makedirs(os.path.join(out, "best"), exist_ok=True)
    for w in args.widths:
        best = max((r for r in res["runs"] if r["width"] == w), key=lambda r: r["heldout_accuracy"])
        archive(os.path.join(best["student"], "student"), os.path.join(out, "best", f"student_{w}d.tar.gz"))
        res.setdefault("best", {})[str(w)] = {k: best[k] for k in ("mode", "seed", "heldout_accuracy")}
    table = table_md(res)
    atomic_write_text(os.path.join(out, "table.md"), table)
    atomic_write_json(os.path.join(out, "results.json"), res)
    try:
        plot(res, os.path.join(out, "curves.png"))
    except ImportError:
        log("matplotlib is missing: no curves.png")
    print(table)
    log(f"wrote {out}/results.json, table.md, curves.png, best/")
    return 0


def _fail(message):
    print(f"table2: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
