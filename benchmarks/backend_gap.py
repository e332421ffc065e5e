"""Where JAX's training step loses to TensorFlow-XLA on a CPU: forward vs backward, layer by layer.

The kit's student step (6 x 48, 4 heads, 4,928 pieces, batch x sequence 32 x 128) is timed in
parts, plain keras-hub and Keras layers (no kit code), each compiled with XLA on both backends
(``tf.function(jit_compile=True)`` and ``jax.jit``) in a fresh process per backend:

- ``mlm-forward``: the BertMaskedLM forward pass;
- ``mlm-gradient``: forward + backward of its masked-LM cross-entropy (no optimizer);
- ``encoder-x6``, ``attention-x6``, ``ffn-x6``: forward + backward of six stacked keras-hub
  ``TransformerEncoder`` layers / Keras ``MultiHeadAttention`` / the dense-gelu-dense block on a
  float input;
- ``layernorm-x6``, ``gelu``: the small elementwise pieces.

Ratios are only comparable within one run on one machine: the CPU flags (``lscpu``) are printed and
stored with the figures. ``--one-core`` pins every worker to one core (is the gap threading?).

    python benchmarks/backend_gap.py --out benchmarks/results/backend_gap.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_speed import cpu_flags  # noqa: E402

PARTS = ("mlm-forward", "mlm-gradient", "encoder-x6", "attention-x6", "ffn-x6", "layernorm-x6", "gelu")
BACKENDS = ("tensorflow", "jax")
B, S, H, V, P = 32, 128, 48, 4928, 20


def _model_and_loss(part):
    """``(variables, function of (inputs) -> scalar or outputs, inputs)`` of one part."""
    import keras
    import keras_hub
    import numpy as np
    from keras import layers, ops

    rng = np.random.default_rng(0)

    def gelu(x):
        return keras.activations.gelu(x, approximate=False)  # BERT's exact gelu

    if part.startswith("mlm"):
        backbone = keras_hub.models.BertBackbone(vocabulary_size=V, num_layers=6, num_heads=4, hidden_dim=H,
                                                 intermediate_dim=4 * H, max_sequence_length=512, dropout=0.0)
        model = keras_hub.models.BertMaskedLM(backbone)
        x = {"token_ids": rng.integers(5, V, (B, S)).astype("int32"), "segment_ids": np.zeros((B, S), "int32"),
             "padding_mask": np.ones((B, S), "int32"), "mask_positions": rng.integers(0, S, (B, P)).astype("int32")}
        y = rng.integers(5, V, (B, P)).astype("int32")
        if part == "mlm-forward":
            return model, model, x
        return model, lambda inputs: ops.mean(ops.sparse_categorical_crossentropy(y, model(inputs), from_logits=True)), x
    x = rng.normal(size=(B, S, H)).astype("float32")
    if part == "encoder-x6":
        block = keras_hub.layers.TransformerEncoder(intermediate_dim=4 * H, num_heads=4, dropout=0.0, activation=gelu,
                                                    layer_norm_epsilon=1e-12)
        block.build((B, S, H))
        one = block
    elif part == "attention-x6":
        block = layers.MultiHeadAttention(num_heads=4, key_dim=H // 4)
        block.build((B, S, H), (B, S, H))
        one = lambda t: block(t, t)  # noqa: E731
    elif part == "ffn-x6":
        up, down = layers.Dense(4 * H), layers.Dense(H)
        up.build((B, S, H))
        down.build((B, S, 4 * H))
        block = keras.Sequential([up, down])
        one = lambda t: down(gelu(up(t)))  # noqa: E731
    elif part == "layernorm-x6":
        block = layers.LayerNormalization(epsilon=1e-12)
        block.build((B, S, H))
        one = block
    else:  # gelu
        block = layers.Dense(4 * H)
        block.build((B, S, H))
        return block, lambda t: ops.mean(ops.square(gelu(block(t)))), x

    def stacked(t):
        for _ in range(6):
            t = one(t)
        return ops.mean(ops.square(t))

    return block, stacked, x


def _timer(backend, part):
    """A zero-argument function that runs the part once and waits for its result."""
    model, fn, x = _model_and_loss(part)
    variables = model.trainable_variables
    forward_only = part == "mlm-forward"
    if backend == "jax":
        import jax
        import keras

        def loss(values, inputs):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(inputs)

        step = jax.jit(loss if forward_only else jax.grad(loss))
        values = [v.value for v in variables]
        return lambda: jax.block_until_ready(step(values, x))
    import tensorflow as tf

    inputs = tf.nest.map_structure(tf.constant, x)

    @tf.function(jit_compile=True)
    def step(inputs):
        if forward_only:
            return fn(inputs)
        with tf.GradientTape() as tape:
            value = fn(inputs)
        # dense gradients on both sides (an embedding's is IndexedSlices on TensorFlow, dense on JAX)
        return [tf.convert_to_tensor(g) for g in tape.gradient(value, variables) if g is not None]

    return lambda: tf.nest.map_structure(lambda t: t.numpy(), step(inputs))


def worker(backend, part, repeats):
    run = _timer(backend, part)
    for _ in range(3):  # trace, compile, warm
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    print(json.dumps({"ms": 1000 * min(times), "median_ms": 1000 * sorted(times)[len(times) // 2]}))


def measure(backend, part, repeats, one_core):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", backend, part, "--repeats", str(repeats)]
    if one_core:
        cmd = ["taskset", "-c", "0"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        sys.exit(f"backend_gap.py: {backend} {part} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per part (the fastest is kept)")
    ap.add_argument("--one-core", action="store_true", help="pin every worker to CPU 0 (taskset)")
    ap.add_argument("--out", help="write the figures here as JSON")
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "PART"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(*args.worker, args.repeats)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part {unknown[0]!r} (one of {', '.join(PARTS)})")
    machine = cpu_flags()
    print(f"CPU: {machine['model']}, {machine['cpus']} CPUs, flags {' '.join(machine['flags'])}"
          + (" (workers pinned to one core)" if args.one_core else ""))
    print(f"{'part':<14} {'TF-XLA ms':>10} {'JAX ms':>10} {'JAX / TF-XLA':>13}")
    rows = []
    for part in parts:
        tf_ms, jax_ms = (measure(b, part, args.repeats, args.one_core)["ms"] for b in BACKENDS)
        rows.append({"part": part, "tensorflow_xla_ms": tf_ms, "jax_ms": jax_ms, "ratio": jax_ms / tf_ms})
        print(f"{part:<14} {tf_ms:>10.2f} {jax_ms:>10.2f} {jax_ms / tf_ms:>13.2f}", flush=True)
    if args.out:
        from mobile_bert_distill.atomic import atomic_write_json

        import jax
        import tensorflow as tf

        atomic_write_json(args.out, {"machine": machine, "one_core": args.one_core, "rows": rows,
                                     "shapes": {"batch": B, "seq_len": S, "hidden": H, "vocab": V, "masked": P},
                                     "versions": {"tensorflow": tf.__version__, "jax": jax.__version__}})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
