#!/usr/bin/env python3
"""The distillation methods side by side: one table from a ``benchmarks/table2.py`` grid.

``table2.py --modes ...`` trains every mode on the same data, steps, seeds and
held-out scoring. This script reads its ``OUT/results.json`` and adds, for
every (width, mode) of the grid:

* **step cost relative to ``nokd``**: seconds per training step of the run's
  own configuration (the speed benchmark's ``time_steps``: the kit's step over
  its real input, best of ``--repeats`` x ``--steps`` after compilation), one
  mode after another in this process, divided by ``nokd``'s at that width;
* **student**: the architecture of the first seed's student, as training logs it
  (depth, width, and the factorised embedding and layer sharing of an ALBERT-style one);
* **int8 size**: the first seed's student exported as ``mbd export`` does
  (int8, default recipe, the ``mlm`` task, calibrated on the grid's held-out
  text).

Prints the table and writes ``OUT/methods.json`` and ``OUT/methods.md``.

``--costs-from JSON`` rescores a grid some of whose runs were retrained with the same
configurations: the step time and int8 size of every (width, mode) found in an earlier
``methods.json`` are taken from it (the output names the file and which rows came from
it); the rest are measured.

Usage::

    python benchmarks/table2.py --modes nokd dual+up soft dual+up+soft tinybert --out OUT ...
    python benchmarks/methods.py --grid OUT
    python benchmarks/methods.py --grid OUT --costs-from docs/results/methods.json
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text  # noqa: E402


def run_dir(grid, row, seed):
    return os.path.join(grid, "runs", f"{row['width']}d_{row['mode'].replace('+', '_')}_seed{seed}")


def step_seconds(directory, steps, repeats):
    import yaml

    from mobile_bert_distill.distill.config import resolve
    from train_speed import time_steps

    with open(os.path.join(directory, "config.yaml"), encoding="utf-8") as f:
        cfg = resolve(yaml.safe_load(f))  # a run recorded before a setting existed ran with its default
    return time_steps(cfg, steps, repeats)[0]


def int8_bytes(directory, heldout):
    from mobile_bert_distill.export import export_student

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "student.tflite")
        export_student(os.path.join(directory, "student"), path, quantization="int8", calibration_corpus=heldout,
                       num_calibration=64, num_parity=32)
        return os.path.getsize(path)


def architecture(directory):
    """The run's student in one line (``architectures.architecture_summary`` of its preset)."""
    from mobile_bert_distill.architectures import architecture_summary, load_preset

    return architecture_summary(load_preset(os.path.join(directory, "student"), "masked_lm", "student").backbone)


def table_md(rows):
    lines = ["| width | student | mode | held-out accuracy % (mean ± std) | per seed | step cost vs nokd | ms/step "
             "| int8 MB |",
             "|---:|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        spread = f"{100 * r['std']:.2f}" if r["std"] is not None else "—"
        lines.append(f"| {r['width']} | {r['architecture']} | {r['mode']} | {100 * r['mean']:.2f} ± {spread} | "
                     f"{', '.join(f'{100 * a:.2f}' for a in r['per_seed'])} | {r['step_cost_vs_nokd']:.2f}× | "
                     f"{1e3 * r['step_seconds']:.0f} | {r['int8_bytes'] / 1e6:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", required=True, help="output folder of a benchmarks/table2.py run (its results.json)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat (default: 10)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats; the best counts (default: 2)")
    p.add_argument("--costs-from", metavar="JSON",
                   help="an earlier methods.json: take the step time and int8 size of the (width, mode) rows "
                        "it has instead of measuring them")
    args = p.parse_args(argv)
    path = os.path.join(args.grid, "results.json")
    if not os.path.isfile(path):
        print(f"methods.py: error: {path} not found (run benchmarks/table2.py --out {args.grid} first)",
              file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as f:
        res = json.load(f)
    missing = sorted({r["width"] for r in res["table"]} - {r["width"] for r in res["table"] if r["mode"] == "nokd"})
    if missing:
        print(f"methods.py: error: the grid has no nokd run at width(s) {missing}: step costs are relative to it",
              file=sys.stderr)
        return 2
    earlier = {}
    if args.costs_from:
        try:
            with open(args.costs_from, encoding="utf-8") as f:
                earlier = {(r["width"], r["mode"]): r for r in json.load(f)["rows"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"methods.py: error: {args.costs_from} is not a readable methods.json ({e})", file=sys.stderr)
            return 2
    rows = []
    for r in res["table"]:
        directory = run_dir(args.grid, r, res["seeds"][0])
        arch = architecture(directory)
        old = earlier.get((r["width"], r["mode"]))
        if old is not None:
            row = dict(r, step_seconds=old["step_seconds"], int8_bytes=old["int8_bytes"], student=directory,
                       architecture=arch, costs_from=args.costs_from)
        else:
            row = dict(r, step_seconds=step_seconds(directory, args.steps, args.repeats),
                       int8_bytes=int8_bytes(directory, res["inputs"]["heldout"]), student=directory,
                       architecture=arch)
        rows.append(row)
        print(f"{r['width']}-d {r['mode']}: {1e3 * row['step_seconds']:.0f} ms/step, "
              f"int8 {row['int8_bytes'] / 1e6:.3f} MB" + (f" (from {args.costs_from})" if old else ""), flush=True)
    nokd = {r["width"]: r["step_seconds"] for r in rows if r["mode"] == "nokd"}
    for r in rows:
        r["step_cost_vs_nokd"] = r["step_seconds"] / nokd[r["width"]]
    table = table_md(rows)
    doc = {"command": "python benchmarks/methods.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "grid_command": res["command"], "machine": res["machine"], "inputs": res["inputs"],
           "teacher": {k: res["teacher"][k] for k in ("steps", "tokens_seen", "heldout")},
           "student_steps": res["plan"]["steps"], "seeds": res["seeds"], "rows": rows}
    atomic_write_json(os.path.join(args.grid, "methods.json"), doc)
    atomic_write_text(os.path.join(args.grid, "methods.md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
