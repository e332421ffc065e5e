"""Training speed by backend: sequences/s of the kit's own ``nokd`` and ``dual+up`` steps.

Paths: TensorFlow graph (``train.jit_compile: false``), TensorFlow with XLA
(``true``) and JAX (jit, always compiled). Each path runs in its own process
(``KERAS_BACKEND`` is fixed at Keras's import) and times ``fit()`` over the
backend's real training input (``tf.data`` + tf-text on TensorFlow, the NumPy
loader + pure-Python WordPiece on JAX), so what is timed is what
``mbd distill`` runs. Shapes: the demo's teacher (6 x 384, 12 heads, 1536,
30,522-piece vocabulary, random weights) and student (6 x 48, 4 heads, 4,928
pieces) at batch x sequence 16 x 32 (the demo's) and 32 x 128, with the demo's settings
(``mobile_bert_distill/configs/demo.yaml``: teacher encoder frozen, no dropout).

Ratios are only comparable within one run on one machine: the CPU flags
(``lscpu``) are printed and stored with the figures.

    python benchmarks/train_speed.py --out benchmarks/results/train_speed.json
    python benchmarks/train_speed.py --quick      # tiny shapes, a smoke run
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PATHS = {"tensorflow-graph": ("tensorflow", False), "tensorflow-xla": ("tensorflow", True), "jax-jit": ("jax", True)}
MODES = ("nokd", "dual+up")


def cpu_flags():
    """The lscpu model name and the SIMD flags that decide int8/float speed."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"model": "unknown", "flags": []}
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
    return {"model": info.get("Model name", "unknown").strip(), "cpus": os.cpu_count(), "flags": keep}


def write_inputs(d, quick):
    """Generated corpus, a learned student vocabulary, a teacher vocabulary padded to its size."""
    from mobile_bert_distill.demo import synthetic
    from mobile_bert_distill import text
    from mobile_bert_distill.text.vocab import learn_vocab

    lines = synthetic.generate(2000 if quick else 20000, seed=0)
    words = text.pretokenize(lines, implementation="python")
    s_vocab = learn_vocab(lines, size=300 if quick else 4928, words=words)
    t_size = 2000 if quick else 30522
    t_vocab = learn_vocab(lines, size=min(t_size, 8000), words=words)
    t_vocab += [f"##zq{i}" for i in range(t_size - len(t_vocab))]
    paths = {"corpus": os.path.join(d, "corpus.txt"), "student_vocab": os.path.join(d, "student_vocab.txt"),
             "teacher_vocab": os.path.join(d, "teacher_vocab.txt")}
    for key, items in (("corpus", lines), ("student_vocab", s_vocab), ("teacher_vocab", t_vocab[:t_size])):
        with open(paths[key], "w", encoding="utf-8") as f:
            f.write("\n".join(items) + "\n")
    return paths


def config_dict(paths, mode, batch, seq, jit, quick):
    t_arch = (dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128) if quick
              else dict(num_layers=6, hidden_dim=384, num_heads=12, intermediate_dim=1536))
    cfg = {"mode": mode, "seed": 0,
           "data": {"corpus": [paths["corpus"]], "student_vocab": paths["student_vocab"], "seq_len": seq,
                    "max_predictions": max(1, round(0.15 * seq))},
           "student": {"hidden_dim": 16 if quick else 48, "num_heads": 2 if quick else 4,
                       "num_layers": t_arch["num_layers"], "dropout": 0.0},
           "train": {"steps": 10**6, "batch_size": batch, "jit_compile": jit, "log_every": 1,
                     "checkpoint_every": 1}}
    if mode != "nokd":
        # as mobile_bert_distill/configs/demo.yaml distils: the prepared teacher's encoder frozen, no dropout
        cfg["teacher"] = {"random": dict(vocabulary=paths["teacher_vocab"], **t_arch), "trainable": False,
                          "dropout": 0.0}
    return cfg


def time_steps(cfg, steps, repeats=1):
    """``(seconds per step, seconds to build and run the first 2 steps, seconds per batch)``.

    The step is the kit's own (``Run`` + ``Distiller.fit`` over the backend's real
    training input); the per-step figure is the best of ``repeats`` × ``steps``,
    after 2 steps that trace and compile it. Seconds per batch: the NumPy batch maker
    alone (the work of the input pipeline, on its own thread during training).
    """
    from mobile_bert_distill.distill import backends
    from mobile_bert_distill.distill.run import Run

    t0 = time.perf_counter()
    run = Run(cfg, log=lambda m: None).build()
    maker = run.make_makers()
    feed = backends.module().training_input
    run.distiller.fit(feed(maker, 0, 2), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    first_s = time.perf_counter() - t0
    best, start = float("inf"), 2
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.distiller.fit(feed(maker, start, start + steps), epochs=1, steps_per_epoch=steps, verbose=0,
                          shuffle=False)
        best = min(best, (time.perf_counter() - t0) / steps)
        start += steps
    t0 = time.perf_counter()
    for step in range(start, start + steps):
        maker(step)
    return best, first_s, (time.perf_counter() - t0) / steps


def worker(spec):
    """One path in this process: seconds per step for each (mode, shape)."""
    from mobile_bert_distill.distill import config

    out = []
    for mode in MODES:
        for batch, seq in spec["shapes"]:
            cfg = config.resolve(config_dict(spec["paths"], mode, batch, seq, spec["jit"], spec["quick"]))
            best, compile_s, batch_s = time_steps(cfg, spec["steps"], spec["repeats"])
            out.append({"mode": mode, "batch_size": batch, "seq_len": seq, "step_seconds": best,
                        "sequences_per_s": batch / best, "first_fit_seconds": compile_s,
                        "batch_seconds": batch_s})
            print(f"  {spec['name']:17s} {mode:8s} {batch:3d} x {seq:<4d} {best * 1e3:8.1f} ms/step "
                  f"(making the batch alone: {batch_s * 1e3:.1f} ms)", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (the best is kept)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (smoke run)")
    ap.add_argument("--out", default="benchmarks/results/train_speed.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        with open(args.worker, encoding="utf-8") as f:
            spec = json.load(f)
        result = worker(spec)
        with open(spec["result"], "w", encoding="utf-8") as f:
            json.dump(result, f)
        return 0

    names = args.paths.split(",")
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        ap.error(f"unknown path(s) {unknown}: use {', '.join(PATHS)}")
    shapes = [[4, 16]] if args.quick else [[16, 32], [32, 128]]
    machine = cpu_flags()
    print(f"CPU: {machine['model']}, {machine.get('cpus')} cores; flags: {' '.join(machine['flags'])}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        paths = write_inputs(d, args.quick)
        for name in names:
            backend, jit = PATHS[name]
            spec = {"name": name, "paths": paths, "shapes": shapes, "jit": jit, "quick": args.quick,
                    "steps": 2 if args.quick else args.steps, "repeats": args.repeats,
                    "result": os.path.join(d, f"{name}.json")}
            spec_path = os.path.join(d, f"{name}.spec.json")
            with open(spec_path, "w", encoding="utf-8") as f:
                json.dump(spec, f)
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", spec_path], env=env)
            if r.returncode:
                print(f"{name}: failed (exit {r.returncode})", file=sys.stderr)
                return 1
            with open(spec["result"], encoding="utf-8") as f:
                rows.extend(dict(path=name, **row) for row in json.load(f))

    def ms(path, mode, shape):
        return next(r["step_seconds"] for r in rows if r["path"] == path and r["mode"] == mode
                    and [r["batch_size"], r["seq_len"]] == shape) * 1e3

    print(f"\n{'mode':8s} {'batch x seq':12s}" + "".join(f"{n:>18s}" for n in names) + "   (ms per step)")
    for mode in MODES:
        for shape in shapes:
            print(f"{mode:8s} {shape[0]:>4d} x {shape[1]:<5d}" + "".join(f"{ms(n, mode, shape):18.1f}" for n in names))
    result = {"machine": machine, "shapes": shapes, "rows": rows,
              "command": "python benchmarks/train_speed.py" + (" --quick" if args.quick else "")}
    if {"tensorflow-xla", "jax-jit"} <= set(names):
        result["jax_over_tensorflow_xla"] = {f"{m} {s[0]}x{s[1]}": ms("jax-jit", m, s) / ms("tensorflow-xla", m, s)
                                             for m in MODES for s in shapes}
        print("JAX / TensorFlow-XLA step time: " + ", ".join(f"{k} {v:.2f}x"
                                                            for k, v in result["jax_over_tensorflow_xla"].items())
              + " (target <= 1.2x)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
