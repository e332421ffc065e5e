"""Where does the int8 student lose top-1 agreement with float? A probe.

Two experiments on one student (the reference student of
``benchmarks/export_modes.py`` by default), scored like ``mbd export``'s
parity block: top-1 agreement with the float Keras model on held-out masked
tokens.

1. Weights only: the Keras model with its weights rounded to the int8 grid
   (round to nearest, symmetric; per-channel for dense kernels, per-tensor or
   per-row for the shared token-embedding table) and float activations. This
   is the ceiling of any file that stores these weights in int8 this way.
2. Activations: the default ``matmul`` recipe with some op types kept float
   (``BATCH_MATMUL``, ``FULLY_CONNECTED``) or only the attention-score or
   only the context matmuls (by tensor name).

Run (about 10 minutes on 2 cores)::

    .venv/bin/python research/int8_agreement_probe.py --work bench/export_modes
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def fake_quant(x, axes):
    scale = np.max(np.abs(x), axis=axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(x / scale), -127, 127) * scale


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="bench/export_modes", help="export_modes.py work folder")
    ap.add_argument("--student", help="student preset (default WORK/student)")
    ap.add_argument("--corpus", help="text file (default WORK/synthetic.txt)")
    ap.add_argument("--parity", type=int, default=300)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mobile_bert_distill import export as E
    from mobile_bert_distill.export import experimental as X
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches
    from mobile_bert_distill.text.wordpiece import WordPiece

    model, vocab = E.load_student(args.student or os.path.join(args.work, "student"))
    lines = E.read_corpus(args.corpus or os.path.join(args.work, "synthetic.txt"))
    calib_lines, heldout = E.split_corpus(lines)
    tok = WordPiece(vocab)
    calib, _ = E.corpus_sequences(calib_lines, tok, 128, 200, seed=0)
    par, labels = E.corpus_sequences(heldout, tok, 128, args.parity, seed=1)
    ref = E.keras_outputs(model, "mlm", par)["logits"]
    masked = par["input_ids"] == tok.special_id("[MASK]")

    def agreement(logits):
        return float((ref[masked].argmax(-1) == logits[masked].argmax(-1)).mean())

    results = {"masked_tokens": int(masked.sum())}
    original = [w.numpy().copy() for w in model.weights]
    weight_cases = {"table per-tensor": {"emb": None}, "table per-row": {"emb": (1,)},
                    "dense per-channel": {"dense": True},
                    "table per-tensor + dense per-channel": {"emb": None, "dense": True}}
    for name, case in weight_cases.items():
        for w, value in zip(model.weights, original):
            if "token_embedding" in w.path and value.ndim == 2 and "emb" in case:
                value = fake_quant(value, case["emb"])
            elif w.path.endswith("kernel") and value.ndim >= 2 and case.get("dense"):
                value = fake_quant(value, (0, 1) if value.ndim == 3 and "attention_output" in w.path else (0,))
            w.assign(value)
        results[f"weights only: {name}"] = agreement(E.keras_outputs(model, "mlm", par)["logits"])
        print(f"weights only, {name}: {results[f'weights only: {name}']:.4f}", flush=True)
    for w, value in zip(model.weights, original):
        w.assign(value)

    recipe = X.recipe_table()["matmul"]
    scores, context = X.attention_matmul_names(model, graph_options=recipe["graph_options"])
    act_cases = {"matmul recipe": {}, "+ BATCH_MATMUL float": {"float_ops": ("BATCH_MATMUL",)},
                 "+ FULLY_CONNECTED float": {"float_ops": ("FULLY_CONNECTED",)},
                 "+ attention scores float": {"float_nodes": scores},
                 "+ attention context float": {"float_nodes": context}}
    for name, case in act_cases.items():
        flat = E.convert(model, task="mlm", quantization="int8", seq_len=128, calibration_feeds=calib,
                         graph="friendly", graph_options=recipe["graph_options"],
                         float_ops=tuple(recipe["float_ops"]) + case.get("float_ops", ()),
                         float_nodes=case.get("float_nodes", ()), xnnpack_fixups=True,
                         share_embedding=True, float_logits=True)
        interp, _ = load_interpreter(model_content=flat, num_threads=1)
        results[f"int8: {name}"] = agreement(run_batches(interp, par)["logits"])
        print(f"int8, {name}: {results[f'int8: {name}']:.4f}", flush=True)
    if args.json:
        from mobile_bert_distill.atomic import atomic_write_json

        atomic_write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
