"""Dual training's two chained products, timed in the kit's order and left to right.

Two parts of a ``dual+up`` / ``dual+down`` step multiply three matrices. The kit picks the order:

- ``projections``: ``L_p`` of every paired layer weight. Each triple product (``V θ_s U`` for Up,
  ``U θ_t V`` for Down) in the order ``projections.chain_matmul`` picks, against always left to
  right (``(V θ_s) U``, ``(U θ_t) V``);
- ``student-head``: the teacher's student-vocabulary head, ``(x U_upᵀ) E_sᵀ`` (the kit's
  ``ProjectedTiedMaskedLMHead``) against ``x (E_s U_up)ᵀ`` (the whole student table mapped up
  first).

Each is forward + backward with TensorFlow XLA (``tf.function(jit_compile=True)``), gradients for
what the demo trains (its teacher encoder is frozen: the student, ``U``/``V``, the head and
``U_up``, not ``θ_t``). Shapes: the demo's teacher (6 × 384, intermediate 1,536) and a 6-layer
student of each ``--widths`` (intermediate 4× its width, 4,928 pieces), 16 sequences × 5 masked
pieces. Both orders give the same values (the largest difference is printed and stored).

Times are only comparable within one run on one machine: the CPU flags (``lscpu``) are printed and
stored with them.

    python benchmarks/dual_products.py --out benchmarks/results/dual_products.json
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_speed import cpu_flags  # noqa: E402

PARTS = ("projections", "student-head")
TEACHER = dict(num_layers=6, hidden_dim=384, num_heads=12, intermediate_dim=1536)
VOCAB, BATCH, MASKED = 4928, 16, 5


def _projection_loss(direction, student_width):
    """``(variables, kit loss, left-to-right loss)`` of ``L_p`` between random backbones."""
    import keras_hub
    from keras import ops

    from mobile_bert_distill.distill import projections

    def backbone(**arch):
        return keras_hub.models.BertBackbone(vocabulary_size=8, max_sequence_length=8, dropout=0.0, **arch)

    t = backbone(**TEACHER)
    s = backbone(num_layers=TEACHER["num_layers"], hidden_dim=student_width, num_heads=4,
                 intermediate_dim=4 * student_width)
    proj = projections.SharedProjections(direction, projections.transformer_weight_pairs(t, s))

    def left_to_right():  # the same loss, traced with every triple product taken as (ab)c
        kit_order = projections.chain_matmul
        projections.chain_matmul = lambda a, b, c: ops.matmul(ops.matmul(a, b), c)
        try:
            return proj.loss()
        finally:
            projections.chain_matmul = kit_order

    return list(s.trainable_variables) + list(proj.trainable_variables), proj.loss, left_to_right


def _student_head(student_width):
    """``(variables, kit loss, table-first loss)``: cross-entropy of the student-vocabulary head."""
    import keras
    import numpy as np
    from keras import ops

    from mobile_bert_distill.distill.teacher import ProjectedTiedMaskedLMHead

    rng = np.random.default_rng(0)
    teacher_width = TEACHER["hidden_dim"]
    embedding = keras.layers.Embedding(VOCAB, student_width)
    embedding.build((None,))
    up = keras.layers.Dense(teacher_width, use_bias=False)
    up.build((None, student_width))
    head = ProjectedTiedMaskedLMHead(embedding, up, teacher_width)
    head.build((None, None, teacher_width), (None, None))
    x = rng.normal(size=(BATCH, 32, teacher_width)).astype("float32")
    positions = rng.integers(0, 32, (BATCH, MASKED)).astype("int32")
    labels = rng.integers(0, VOCAB, (BATCH, MASKED)).astype("int32")

    def ce(logits):
        return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))

    def table_first():
        rows = ops.take_along_axis(x, ops.expand_dims(positions, -1), axis=1)
        rows = head.layer_norm(head.intermediate_dense(rows))
        return ce(ops.matmul(rows, ops.transpose(up(embedding.embeddings))) + head.output_bias)

    variables = [embedding.embeddings, up.kernel] + list(head.trainable_variables)
    return variables, lambda: ce(head(x, mask_positions=positions)), table_first


def measure(variables, loss_fn, repeats, calls=20):
    """``(fastest ms of one forward + backward, loss value)``."""
    import tensorflow as tf

    unique = list({id(v): v for v in variables}.values())

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return loss, tape.gradient(loss, unique)

    loss = float(step()[0])  # trace and compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = step()
        float(out[0])
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e3, loss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--widths", type=int, nargs="+", default=[48, 192], help="student widths")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of 20 calls (the fastest is kept)")
    ap.add_argument("--out", help="write the figures here as JSON")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part {unknown[0]!r} (one of {', '.join(PARTS)})")
    if args.repeats < 1 or any(w < 4 or w % 4 for w in args.widths):
        ap.error("repeats must be at least 1 and widths multiples of 4 (4 heads)")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    machine = cpu_flags()
    print(f"CPU: {machine['model']}, {machine['cpus']} CPUs, flags {' '.join(machine['flags'])}")
    print(f"{'part':<22} {'width':>5} {'kit ms':>8} {'left-to-right ms':>17} {'speed-up':>9} {'|Δ loss|':>9}")
    rows = []
    for part in parts:
        cases = ([(f"projections ({d})", w, _projection_loss(d, w)) for d in ("up", "down") for w in args.widths]
                 if part == "projections" else [("student-head", w, _student_head(w)) for w in args.widths])
        for name, width, (variables, kit, reference) in cases:
            kit_ms, kit_loss = measure(variables, kit, args.repeats)
            ref_ms, ref_loss = measure(variables, reference, args.repeats)
            rows.append({"part": name, "student_width": width, "kit_ms": kit_ms, "left_to_right_ms": ref_ms,
                         "speedup": ref_ms / kit_ms, "loss": kit_loss, "loss_difference": abs(kit_loss - ref_loss)})
            print(f"{name:<22} {width:>5} {kit_ms:>8.2f} {ref_ms:>17.2f} {ref_ms / kit_ms:>8.2f}x "
                  f"{abs(kit_loss - ref_loss):>9.1e}", flush=True)
    if args.out:
        import tensorflow as tf

        from mobile_bert_distill.atomic import atomic_write_json

        atomic_write_json(args.out, {"machine": machine, "rows": rows, "teacher": TEACHER,
                                     "shapes": {"vocab": VOCAB, "batch": BATCH, "masked_per_sequence": MASKED},
                                     "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
