"""Training-side cost figures of the distillation core (printed and written as JSON).

1. Input pipeline throughput: sequences/s of the dual-view ``tf.data`` pipeline
   (student view + mixed teacher view + masking) against the sequence rate of
   the ``dual+up`` train step. Target: pipeline >= 5x the train step.
2. Cost of one ``dual+up`` step against a teacher-only step plus a
   student-only step, each measured alone. Target: <= 1.2x.

The teacher has the demo teacher's architecture (6 x 384, 12 heads, 1536,
30,522-piece vocabulary) with random weights — cost does not depend on the
weights; the student is 6 x 48 (the teacher's depth) with a 4,928-piece vocabulary.
The text is the kit's generated corpus unless ``--corpus`` is given.

    python benchmarks/train_cost.py --out benchmarks/results/train_cost.json
    python benchmarks/train_cost.py --quick     # small shapes, seconds
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def filler_vocab(learned, size):
    """Pad a learned vocabulary to ``size`` with unused pieces (cost studies only)."""
    out = list(learned)
    i = 0
    while len(out) < size:
        out.append(f"##zq{i}")
        i += 1
    return out[:size]


def time_fit(distiller, batch, steps, repeats=2):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors(batch).repeat()
    distiller.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace + warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        distiller.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="*", help="text files (default: generated text)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    ap.add_argument("--pipeline-batches", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="tiny shapes (smoke run)")
    ap.add_argument("--out", default="benchmarks/results/train_cost.json")
    args = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from mobile_bert_distill.demo import synthetic
    from mobile_bert_distill import text
    from mobile_bert_distill.distill.data import PieceTable, TokenizedCorpus
    from mobile_bert_distill.distill.distiller import Distiller
    from mobile_bert_distill.distill.backends import tensorflow_backend
    from mobile_bert_distill.distill.mixing import DualBatchMaker
    from mobile_bert_distill.distill.student import build_student
    from mobile_bert_distill.distill.teacher import DualVocabTeacher, random_teacher
    from mobile_bert_distill.text.vocab import learn_vocab

    if args.quick:
        t_arch = dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128)
        s_arch = dict(hidden_dim=16, num_layers=2, num_heads=2)
        t_size, s_size, batch, seq = 2000, 300, 8, 32
    else:
        t_arch = dict(num_layers=6, hidden_dim=384, num_heads=12, intermediate_dim=1536)
        s_arch = dict(hidden_dim=48, num_layers=6, num_heads=4)
        t_size, s_size, batch, seq = 30522, 4928, args.batch_size, args.seq_len
    lines = text.read_corpus(args.corpus) if args.corpus else synthetic.generate(20000, seed=0)
    words = text.pretokenize(lines)
    s_vocab = learn_vocab(lines, size=s_size, words=words)
    t_vocab = filler_vocab(learn_vocab(lines, size=min(t_size, 8000), words=words), t_size)
    corpus = TokenizedCorpus.from_lines(lines, words)
    s_table, t_table = PieceTable(s_vocab, corpus.words), PieceTable(t_vocab, corpus.words)
    maker = DualBatchMaker(corpus, s_table, t_table, seq_len=seq, batch_size=batch,
                           max_predictions=max(1, round(0.15 * seq)), p_dt=0.5, seed=0)

    # 1. input pipeline, alone
    ds = iter(tensorflow_backend.training_input(maker, 0, 10**9))
    for _ in range(5):
        next(ds)
    t0 = time.perf_counter()
    for _ in range(args.pipeline_batches):
        next(ds)
    pipeline_sps = args.pipeline_batches * batch / (time.perf_counter() - t0)
    single = time.perf_counter()
    for s in range(10):
        maker(s)
    single_sps = 10 * batch / (time.perf_counter() - single)

    # 2. step costs
    b = {k: tf.constant(v) for k, v in maker(0).items()}
    student_keys = [k for k in b if k.startswith("s_")]
    teacher_keys = [k for k in b if k.startswith("t_")]

    def build(mode, use_student_loss=True):
        keras.utils.set_random_seed(0)
        student = build_student(s_vocab, seq_len=seq, **s_arch)
        teacher = None
        if mode != "nokd":
            tb, _ = random_teacher(t_vocab, **t_arch)
            teacher = DualVocabTeacher(tb, student.backbone.token_embedding)
            tb.pooled_dense.trainable = False
        student.backbone.pooled_dense.trainable = False
        d = Distiller(student, teacher, mode=mode, use_student_loss=use_student_loss)
        d.compile(optimizer=keras.optimizers.AdamW(1e-4))
        return d

    t_full = time_fit(build("dual+up"), b, args.steps)
    t_teacher = time_fit(build("dual", use_student_loss=False), {k: b[k] for k in teacher_keys}, args.steps)
    t_student = time_fit(build("nokd"), {k: b[k] for k in student_keys}, args.steps)
    step_sps = batch / t_full
    res = {
        "machine": {"cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__},
        "shapes": {"teacher": t_arch, "student": s_arch, "teacher_vocab": t_size, "student_vocab": s_size,
                   "batch_size": batch, "seq_len": seq},
        "pipeline_sequences_per_s": pipeline_sps,
        "pipeline_single_thread_sequences_per_s": single_sps,
        "train_step_sequences_per_s": step_sps,
        "pipeline_over_step": pipeline_sps / step_sps,
        "pipeline_target": ">= 5",
        "step_seconds": {"dual+up": t_full, "teacher_only": t_teacher, "student_only": t_student},
        "dual_up_over_sum": t_full / (t_teacher + t_student),
        "step_target": "<= 1.2",
    }
    print(f"input pipeline: {pipeline_sps:,.0f} seq/s ({single_sps:,.0f} seq/s in one Python thread); "
          f"dual+up train step: {step_sps:,.1f} seq/s -> ratio {res['pipeline_over_step']:.1f}x (target >= 5x)")
    print(f"step cost: dual+up {t_full * 1e3:.0f} ms vs teacher-only {t_teacher * 1e3:.0f} ms + student-only "
          f"{t_student * 1e3:.0f} ms -> {res['dual_up_over_sum']:.2f}x (target <= 1.2x)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
