"""``make demo-tiny``: the built-in offline pipeline on generated text, in this process (seconds).

Generated text (:mod:`mobile_bert_distill.demo.synthetic`), a teacher and a
student vocabulary, a randomly initialised 2-layer teacher trained jointly
with a 2-layer student (nokd and dual+up), the held-out evaluation and a
short report; every stage but the evaluation is skipped when its output exists.
"""

import json
import os
import sys

from mobile_bert_distill.atomic import atomic_write_text
from mobile_bert_distill.demo import synthetic
from mobile_bert_distill.demo.config import DEFAULT_CONFIG
from mobile_bert_distill.demo.pipeline import Stages
from mobile_bert_distill.demo.report import write_tiny_report


def run_tiny(args):
    """``make demo-tiny``: generated text, a random 2-layer teacher, two tiny students, in this process.

    ``args``: ``out``, ``config``, ``steps`` of the command line. Returns the exit code (2 with
    one ``demo: error:`` line when the config does not resolve).
    """
    from mobile_bert_distill.distill import config as config_lib
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.distill.evaluation import evaluate_student, evaluate_teacher
    from mobile_bert_distill.distill.run import distill
    from mobile_bert_distill.text.vocab import build_vocab

    out = os.path.abspath(args.out)
    data = os.path.join(out, "data")
    train, held = os.path.join(data, "train.txt"), os.path.join(data, "heldout.txt")
    tv, sv = os.path.join(out, "teacher_vocab"), os.path.join(out, "student_vocab")
    st = Stages(6)

    def make_data():
        os.makedirs(data, exist_ok=True)
        synthetic.write_corpus(train, 4000, seed=0)
        synthetic.write_corpus(held, 300, seed=1)

    st.run("corpus (generated text)", lambda: os.path.exists(held), make_data)
    st.run("teacher vocabulary", lambda: os.path.exists(os.path.join(tv, "vocab.txt")),
           lambda: build_vocab([train], tv, size=600, log=lambda m: None))
    st.run("student vocabulary", lambda: os.path.exists(os.path.join(sv, "vocab.txt")),
           lambda: build_vocab([train], sv, size=200, teacher_vocab_path=os.path.join(tv, "vocab.txt"),
                               log=lambda m: None))

    try:
        raw, base = config_lib.load_yaml(args.config or DEFAULT_CONFIG)
        overrides = [f"data.corpus=[{train}]", f"data.heldout={held}",
                     f"data.student_vocab={os.path.join(sv, 'vocab.txt')}",
                     f"teacher.random.vocabulary={os.path.join(tv, 'vocab.txt')}"]
        if args.steps:
            overrides += [f"train.steps={args.steps}", f"train.log_every={args.steps}", "train.eval_every=0",
                          f"train.checkpoint_every={args.steps}", "train.warmup_steps=0"]
        runs = {}
        for mode in ("nokd", "dual+up"):
            cfg = config_lib.resolve(raw, overrides + [f"mode={mode}"], base_dir=base)
            runs[mode] = os.path.join(out, mode.replace("+", "_"))
            st.run(f"distill {mode}", lambda d=runs[mode]: os.path.exists(os.path.join(d, "summary.json")),
                   lambda c=cfg, d=runs[mode]: distill(c, out_dir=d, overwrite=True, restart=True))
    except UserError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2

    results = {}

    def evaluate():
        for mode, d in runs.items():
            results[mode] = evaluate_student(os.path.join(d, "student"), [held], progress=False)
        results["teacher"] = evaluate_teacher(os.path.join(runs["dual+up"], "teacher"), [held],
                                              seq_len=cfg["data"]["seq_len"], progress=False)
        atomic_write_text(os.path.join(out, "eval.json"), json.dumps(results, indent=2))

    st.run("held-out evaluation", lambda: False, evaluate)
    report = write_tiny_report(out, st, results, runs, train, sv)
    print(f"demo report: {report}")
    return 0
