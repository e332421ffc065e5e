"""Measure every LiteRT export mode of the 12-layer 48-d student at seq 128.

For each mode (float32, float16, dynamic-range, and the int8 recipes) this
exports the student with :func:`mobile_bert_distill.export.export_student`,
then reports file size, single-thread latency (p50/p90, the models timed in
interleaved rounds so that machine noise hits all of them alike), masked-token
top-1 agreement with the float Keras model, each model's masked-token
accuracy on held-out text, and the op counts of the int8 graph.

Accuracy needs a trained student. Without ``--student``, this trains a
reference one, cached under ``--work``: a 4,928-WordPiece vocabulary learned
with HF ``tokenizers`` on the docstrings of the Python standard library, and
a 12-layer, 48-d, 4-head, I=192 ``BertMaskedLM`` trained with plain MLM for
``--train-steps`` on generated templated English with learnable relations
(capitals, animal sounds, opposites, counting; :func:`synthetic_corpus`). A
few minutes of training on real text leave a 12-layer 48-d student predicting
the unigram distribution (one token everywhere), on which agreement is
trivially 100%; the templated text gives varied predictions. Every 10th
line is held out: never trained on, it is what parity and accuracy are
measured on; the rest calibrates int8.

The default 8,000 steps train the student to convergence (held-out masked
accuracy 97.4%; 2.2% of masked tokens are near-ties, float's top-2 logit gap
< 0.5). Top-1 agreement depends on that fraction: int8 flips near-ties and
almost nothing else. A student stopped at 2,000 steps (held-out accuracy
40.6%, 31% near-ties) gives int8 agreement 0.933, with 99.8% on the clear
tokens. The table prints agreement on both kinds (``clear``/``ties``). The
cached student records its steps (``reference_training.json``); asking a
folder for other steps is an error rather than a silent reuse.

Run (about 45 minutes of training on 2 cores the first time, then ~6
minutes)::

    .venv/bin/python benchmarks/export_modes.py --work bench/export_modes \
        --modes float32,float16,dynamic,int8,int8-fc --json bench/export_modes/modes.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import sysconfig
import time

import numpy as np

MODES = {
    "float32": {"quantization": "float32"},
    "float16": {"quantization": "float16"},
    "dynamic": {"quantization": "dynamic"},
    "int8": {"quantization": "int8", "recipe": "matmul"},
    "int8-fc": {"quantization": "int8", "recipe": "fc"},
    "int8-xnnpack": {"quantization": "int8", "recipe": "xnnpack"},
    "int8-int8-logits": {"quantization": "int8", "recipe": "xnnpack", "float_logits": False},
    "int8-per-tensor": {"quantization": "int8", "recipe": "xnnpack", "per_channel": False},
    "int8-strict": {"quantization": "int8", "recipe": "strict"},
    "int8-naive": {"quantization": "int8", "recipe": "naive"},
}


def stdlib_corpus(path, max_lines=120_000):
    """Write the docstrings of the Python standard library, one paragraph a line."""
    root = sysconfig.get_paths()["stdlib"]
    lines = []
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "idlelib", "site-packages"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if not doc:
                        continue
                    for para in doc.split("\n\n"):
                        para = " ".join(para.split())
                        if len(para) >= 30 and not para.startswith(">>>"):
                            lines.append(para)
            if len(lines) >= max_lines:
                break
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:max_lines]) + "\n")
    return path


_COUNTRIES = {"france": "paris", "germany": "berlin", "japan": "tokyo", "italy": "rome", "spain": "madrid",
              "egypt": "cairo", "peru": "lima", "kenya": "nairobi", "canada": "ottawa", "china": "beijing",
              "russia": "moscow", "greece": "athens", "norway": "oslo", "poland": "warsaw", "chile": "santiago",
              "cuba": "havana", "india": "delhi", "iran": "tehran", "mexico": "mexico", "ireland": "dublin"}
_ANIMALS = {"dog": "barks", "cat": "meows", "cow": "moos", "lion": "roars", "duck": "quacks",
            "sheep": "bleats", "horse": "neighs", "owl": "hoots", "snake": "hisses", "bee": "buzzes"}
_OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("open", "closed"), ("light", "dark"),
              ("early", "late"), ("happy", "sad"), ("old", "new"), ("high", "low"), ("full", "empty")]
_NAMES = ["anna", "omar", "li", "maria", "john", "sara", "ivan", "yuki", "paul", "nina", "tom", "emma"]
_THINGS = ["apples", "books", "pencils", "tickets", "flowers", "cups", "stamps", "coins"]
_PLACES = ["market", "library", "station", "museum", "school", "garden", "harbor", "bakery"]
_NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def synthetic_corpus(path, n=40_000, seed=0):
    """Templated English with learnable relations (capitals, animal sounds,
    opposites, counting), so that a small student trained for minutes makes
    varied, non-trivial predictions: what parity needs."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(2, 5)):
            k = rng.randrange(6)
            if k == 0:
                c = rng.choice(list(_COUNTRIES))
                parts.append(f"the capital of {c} is {_COUNTRIES[c]} .")
            elif k == 1:
                a = rng.choice(list(_ANIMALS))
                parts.append(f"the {a} {_ANIMALS[a]} in the {rng.choice(_PLACES)} .")
            elif k == 2:
                x, y = rng.choice(_OPPOSITES)
                if rng.random() < 0.5:
                    x, y = y, x
                parts.append(f"the opposite of {x} is {y} .")
            elif k == 3:
                i = rng.randrange(9)
                parts.append(f"after {_NUMBERS[i]} comes {_NUMBERS[i + 1]} .")
            elif k == 4:
                parts.append(f"{rng.choice(_NAMES)} bought {rng.choice(_NUMBERS[1:])} {rng.choice(_THINGS)} "
                             f"at the {rng.choice(_PLACES)} .")
            else:
                c = rng.choice(list(_COUNTRIES))
                parts.append(f"{rng.choice(_NAMES)} flew from {_COUNTRIES[c]} , the capital of {c} , "
                             f"to {rng.choice(list(_COUNTRIES.values()))} .")
        lines.append(" ".join(parts))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def train_reference_student(corpus, out_dir, *, steps, vocab_corpus=None, seq_len=128, batch=16, seed=0):
    """Learn a 4,928-token vocabulary (on ``vocab_corpus``, default ``corpus``)
    and train the 12 x 48-d student with MLM on ``corpus``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_hub
    import tensorflow as tf
    from tokenizers import BertWordPieceTokenizer

    from mobile_bert_distill.export import read_calibration_text
    from mobile_bert_distill.text.corpus import split_corpus

    lines = read_calibration_text(corpus)
    train_lines, _ = split_corpus(lines)
    vocab_lines = read_calibration_text(vocab_corpus) if vocab_corpus else train_lines
    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    tok.train_from_iterator(vocab_lines, vocab_size=4928, min_frequency=2,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                            show_progress=False)
    vocab = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=12, num_heads=4, hidden_dim=48,
        intermediate_dim=192, max_sequence_length=512, dropout=0.0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True, strip_accents=True)
    pre = keras_hub.models.BertMaskedLMPreprocessor(tokenizer=tokenizer, sequence_length=seq_len,
                                                    mask_selection_length=24)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=pre)
    # pack short docstrings into longer training rows
    packed, cur = [], ""
    for line in train_lines:
        cur = f"{cur} {line}" if cur else line
        if len(cur) > 560:  # ~ fills seq_len 128
            packed.append(cur)
            cur = ""
    ds = (tf.data.Dataset.from_tensor_slices(packed).shuffle(20_000, seed=seed).repeat()
          .batch(batch).map(pre, num_parallel_calls=2).prefetch(2))
    model.preprocessor = None
    warm = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warm, warmup_target=2e-3, warmup_steps=warm, alpha=0.1)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["sparse_categorical_accuracy"])
    class SaveEachEpoch(keras.callbacks.Callback):
        """Keep a usable preset on disk while training runs."""

        def on_epoch_end(self, epoch, logs=None):
            model.preprocessor = pre
            model.save_to_preset(out_dir)
            model.preprocessor = None

    model.fit(ds, steps_per_epoch=max(1, steps // 10), epochs=10, verbose=2, callbacks=[SaveEachEpoch()])
    model.preprocessor = pre
    model.save_to_preset(out_dir)
    return out_dir


#: written into the cached student's folder: how it was trained
TRAINING_MARKER = "reference_training.json"


def time_models(paths, feeds, *, rounds=7, per_round=25, threads=1):
    """Interleaved single-thread timing; returns ``{path: (p50_ms, p90_ms)}``."""
    from mobile_bert_distill.litert.tools import load_interpreter, signature_runner

    runners = {}
    for p in paths:
        interp, _ = load_interpreter(p, num_threads=threads)
        runners[p] = signature_runner(interp)
        for _ in range(5):
            runners[p](**feeds)
    samples = {p: [] for p in paths}
    for _ in range(rounds):
        for p, run in runners.items():
            for _ in range(per_round):
                t = time.perf_counter()
                run(**feeds)
                samples[p].append(1000 * (time.perf_counter() - t))
    return {p: (float(np.percentile(s, 50)), float(np.percentile(s, 90))) for p, s in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="bench/export_modes", help="cache and output folder")
    ap.add_argument("--student", help="student preset (default: train a reference one)")
    ap.add_argument("--corpus", help="text file for training/calibration/parity (default: generated "
                                     "templated text, see synthetic_corpus)")
    ap.add_argument("--train-steps", type=int, default=8000,
                    help="MLM steps of the reference student (default 8000: trained to convergence)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    ap.add_argument("--parity", type=int, default=300, help="held-out sequences for parity")
    ap.add_argument("--json", help="where to write the table (default WORK/modes.json)")
    ap.add_argument("--train-only", action="store_true", help="stop after preparing the student")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from mobile_bert_distill.export import corpus_sequences, export_student, read_calibration_text
    from mobile_bert_distill.text.corpus import split_corpus
    from mobile_bert_distill.text.wordpiece import WordPiece

    os.makedirs(args.work, exist_ok=True)
    corpus = args.corpus or os.path.join(args.work, "synthetic.txt")
    if not os.path.exists(corpus):
        synthetic_corpus(corpus)
    vocab_corpus = os.path.join(args.work, "stdlib_docstrings.txt")
    student = args.student or os.path.join(args.work, "student")
    if not args.student:
        marker = os.path.join(student, TRAINING_MARKER)
        if os.path.exists(os.path.join(student, "config.json")):
            trained = json.load(open(marker)).get("steps") if os.path.exists(marker) else None
            if trained != args.train_steps:
                print(f"export_modes.py: error: {student} holds a student trained for {trained or 'an unknown number of'} "
                      f"steps, not --train-steps {args.train_steps}; use another --work folder", file=sys.stderr)
                return 2
        else:
            if not os.path.exists(vocab_corpus):
                stdlib_corpus(vocab_corpus)
            print(f"training the reference student ({args.train_steps} steps) ...", flush=True)
            train_reference_student(corpus, student, steps=args.train_steps, vocab_corpus=vocab_corpus)
            with open(marker, "w") as f:
                json.dump({"steps": args.train_steps}, f)
    if args.train_only:
        return 0

    results = {}
    for mode in args.modes.split(","):
        spec = dict(MODES[mode])
        out = os.path.join(args.work, f"{mode}.tflite")
        t = time.time()
        rep = export_student(student, out, task="mlm", seq_len=args.seq_len, calibration_corpus=corpus,
                             num_parity=args.parity, overwrite=True, **spec)
        print(f"{mode}: exported in {time.time() - t:.0f}s", flush=True)
        results[mode] = {"path": out, "report": rep}

    # latency on a realistic held-out input (a sentence padded to seq_len)
    vocab = WordPiece(os.path.join(student, "assets/tokenizer/vocabulary.txt"))
    _, heldout = split_corpus(read_calibration_text(corpus))
    feeds, _ = corpus_sequences(heldout, vocab, args.seq_len, 1, seed=123)
    timing = time_models([r["path"] for r in results.values()], feeds)

    float_size = results.get("float32", {}).get("report", {}).get("size_bytes")
    float_lat = timing.get(results["float32"]["path"])[0] if "float32" in results else None
    table = []
    for mode, r in results.items():
        rep = r["report"]
        par = rep["parity"]
        p50, p90 = timing[r["path"]]
        g = rep["graph_ops"]
        table.append({
            "mode": mode,
            "size_mb": round(rep["size_bytes"] / 1e6, 3),
            "size_vs_float32": round(rep["size_bytes"] / float_size, 3) if float_size else None,
            "p50_ms": round(p50, 3),
            "p90_ms": round(p90, 3),
            "latency_vs_float32": round(p50 / float_lat, 3) if float_lat else None,
            "top1_agreement": round(par["top1_agreement"], 4),
            "near_tie_fraction": round(par["near_tie_fraction"], 4),
            "top1_agreement_clear": round(par["top1_agreement_clear"], 4),
            "top1_agreement_near_ties": round(par["top1_agreement_near_ties"], 4),
            "float_accuracy": round(par["float_accuracy"], 4),
            "tflite_accuracy": round(par["tflite_accuracy"], 4),
            "accuracy_drop_points": round(par["accuracy_drop_points"], 2),
            "masked_tokens": par["masked_tokens"],
            "quantize_ops": g["quantize_ops"],
            "dequantize_ops": g["dequantize_ops"],
            "int8_compute_ops": g["int8_compute_ops"],
            "float_compute_ops": g["float_compute_ops"],
            "hybrid_compute_ops": g["hybrid_compute_ops"],
            "float_ops": g["float_ops"],
            "xnnpack_partitions": rep["xnnpack"]["delegate_partitions"],
            "ops_outside_xnnpack": rep["xnnpack"]["ops_outside_delegate"],
            "ops": g["ops"],
        })
    doc = {
        "student": os.path.abspath(student),
        "corpus": os.path.abspath(corpus),
        "seq_len": args.seq_len,
        "threads": 1,
        "machine": _machine(),
        "modes": table,
    }
    path = args.json or os.path.join(args.work, "modes.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print_table(table)
    if table:
        print(f"\nnear-ties (float top-2 logit gap < 0.5): {table[0]['near_tie_fraction']:.1%} of "
              f"{table[0]['masked_tokens']} masked tokens; 'clear'/'ties': agreement on the others/on them")
    print(f"\nwritten {path}")
    return 0


def _machine():
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "python": platform.python_version()}


def print_table(table):
    head = f"{'mode':<17} {'MB':>6} {'xF32':>5} {'p50 ms':>7} {'xF32':>5} {'agree':>6} {'clear':>6} {'ties':>6} {'acc':>6} {'drop':>6} {'Q/DQ':>7} {'parts':>5}"
    print(head)
    print("-" * len(head))
    for r in table:
        print(f"{r['mode']:<17} {r['size_mb']:>6.3f} {r['size_vs_float32']:>5.2f} {r['p50_ms']:>7.2f} "
              f"{r['latency_vs_float32']:>5.2f} {r['top1_agreement']:>6.3f} "
              f"{r['top1_agreement_clear']:>6.3f} {r['top1_agreement_near_ties']:>6.3f} {r['tflite_accuracy']:>6.3f} "
              f"{r['accuracy_drop_points']:>6.2f} {r['quantize_ops']:>3}/{r['dequantize_ops']:<3} {r['xnnpack_partitions']:>5}")
    for r in table:
        if r["mode"].startswith("int8"):
            print(f"\n{r['mode']} ops: {json.dumps(r['ops'])}")
            print(f"  int8 FC/BMM: {r['int8_compute_ops']}  float FC/BMM: {r['float_compute_ops']}  "
                  f"float ops: {r['float_ops']}  outside XNNPACK: {r['ops_outside_xnnpack']}")


if __name__ == "__main__":
    sys.exit(main())
