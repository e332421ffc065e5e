"""Early exit (FastBERT) on a real classifier: accuracy and macro-F1 vs mean layers and LiteRT latency.

Takes a classifier folder written by ``mbd finetune --early-exit`` and its labelled eval CSV, and
exports it twice with the library (int8, the default ``matmul`` recipe, calibrated on the training
texts): the staged early-exit model (``mbd export`` on the folder) and the full-depth classifier
exported the normal way (``--full-depth``). Then, over the eval sentences at batch 1:

* per speed ``s`` (a text stops at the first exit whose normalised entropy is below ``s``; ``s = 0``
  runs every layer): accuracy, macro-F1, mean layers executed, mean LiteRT latency per sentence
  (the stage loop of ``LiteRTModel.classify(speed=s)``, tokenization excluded);
* the full-depth int8 classifier: accuracy, macro-F1, mean latency per sentence (its one signature);
* each int8 exit's own accuracy (every stage run).

Latencies are interleaved: in each of ``--rounds`` passes every sentence runs through every
configuration back to back (in an order rotated per sentence), so background load hits all alike;
after a warm-up, with ``--threads`` interpreter threads. The target: some speed
with >= 2x lower mean latency than the full-depth model at <= 1 point lower accuracy. Speed figures
are only comparable within one run on one machine: the CPU model and SIMD flags (``lscpu``) are
printed and stored with them.

Writes ``OUT/early_exit.json`` and ``OUT/early_exit.md`` (also printed); the two exports stay in
``OUT`` and are reused by a later run while the folder, the data and the settings are unchanged
(``--rerun`` redoes them).

    python benchmarks/early_exit.py --classifier clf_ee/ --train train.csv --eval eval.csv --out bench/early_exit
    python benchmarks/early_exit.py ... --quick     # 100 eval sentences, 1 round: a smoke run
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
    if path not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, path)

from train_speed import cpu_flags  # noqa: E402

SPEEDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 1.0)
TARGET_SPEEDUP, TARGET_DROP_POINTS = 2.0, 1.0


def export_both(args, log):
    """The staged and the full-depth int8 exports of the classifier (reused while the folder, the data
    and the settings are unchanged)."""
    from finetune_kd import cached_int8_export, calibration_file

    from mobile_bert_distill.downstream.finetune import read_labelled_csv

    os.makedirs(args.out, exist_ok=True)
    calib = calibration_file(os.path.join(args.out, "calibration.txt"), read_labelled_csv(args.train, log=None)[0])
    paths = {}
    for name, staged in (("staged", True), ("full_depth", False)):
        out = paths[name] = os.path.join(args.out, f"{name}_int8.tflite")
        t0 = time.perf_counter()
        report, cached = cached_int8_export(args.classifier, out, calib, args.eval, args.num_calibration,
                                            rerun=args.rerun, early_exit=staged)
        log(f"{'reused' if cached else 'exported'} {out}: {report['size_mb']:.2f} MB, label agreement with "
            f"float {report['parity']['label_agreement']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return paths


def timed_round(configs, rows, seconds):
    """One pass: every sentence through every configuration, in an order rotated per sentence (so a
    change of background load hits all configurations alike); appends to ``seconds[name]``."""
    names = list(configs)
    for i, row in enumerate(rows):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            configs[name](row)
            seconds[name].append(time.perf_counter() - t0)


def measure(args, paths, log):
    import numpy as np

    from mobile_bert_distill.downstream.finetune import (
        accuracy_and_macro_f1, encode_labels, read_labelled_csv)
    from mobile_bert_distill.export import read_classifier_labels
    from mobile_bert_distill.litert.inference import LiteRTModel
    from mobile_bert_distill.litert.tools import signature_runner

    classes, meta = read_classifier_labels(args.classifier)
    texts, raw = read_labelled_csv(args.eval, meta.get("text_column") or "text",
                                   meta.get("label_column") or "label", log=None)
    if args.quick:
        texts, raw = texts[:100], raw[:100]
    y = encode_labels(raw, classes, args.eval)
    vocab = os.path.join(args.classifier, "assets", "tokenizer", "vocabulary.txt")
    staged = LiteRTModel(paths["staged"], vocab, num_threads=args.threads)
    full = LiteRTModel(paths["full_depth"], vocab, num_threads=args.threads)
    feeds, _ = staged.encode(texts)
    rows = [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(len(texts))]
    K, L = len(classes), staged.stages.num_layers

    runner = signature_runner(full.interpreter)
    configs = {"full_depth": lambda row: runner(**row)}
    for s in args.speeds:
        configs[f"s={s:g}"] = lambda row, s=s: staged.stages.run(row, speed=s)
    log(f"warm-up, then {args.rounds} interleaved round(s) of {len(configs)} configurations x {len(rows)} sentences")
    timed_round(configs, rows[:20], {name: [] for name in configs})  # warm-up
    seconds = {name: [] for name in configs}
    for r in range(args.rounds):
        timed_round(configs, rows, seconds)
        log(f"round {r + 1}: full depth {1e3 * np.mean(seconds['full_depth']):.2f} ms/sentence so far")

    full_pred = full.run(feeds)["probabilities"].argmax(-1)
    acc, f1 = accuracy_and_macro_f1(y, full_pred, K)
    reference = {"accuracy": acc, "macro_f1": f1, "layers": L,
                 "mean_latency_ms": 1e3 * float(np.mean(seconds["full_depth"])),
                 "median_latency_ms": 1e3 * float(np.median(seconds["full_depth"]))}
    exits = staged.stages.exit_probabilities(feeds)
    per_exit = [accuracy_and_macro_f1(y, exits[:, k].argmax(-1), K) for k in range(L)]
    table = []
    for s in args.speeds:
        probs, layers = staged.stages.run(feeds, speed=s)
        a, f = accuracy_and_macro_f1(y, probs.argmax(-1), K)
        lat = 1e3 * float(np.mean(seconds[f"s={s:g}"]))
        table.append({"speed": s, "accuracy": a, "macro_f1": f, "mean_layers": float(layers.mean()),
                      "layers_histogram": np.bincount(layers, minlength=L + 1)[1:].tolist(),
                      "mean_latency_ms": lat, "median_latency_ms": 1e3 * float(np.median(seconds[f"s={s:g}"])),
                      "speedup_vs_full_depth": reference["mean_latency_ms"] / lat,
                      "accuracy_drop_points": 100.0 * (reference["accuracy"] - a)})
    return {"examples": len(texts), "classes": classes, "num_layers": L, "seq_len": staged.seq_len,
            "full_depth_int8": reference, "early_exit_int8": table,
            "int8_exit_accuracy": [a for a, _ in per_exit], "int8_exit_macro_f1": [f for _, f in per_exit]}


def markdown(result):
    ref = result["full_depth_int8"]
    lines = [f"Early exit on `{result['classifier']}` ({result['num_layers']} layers), {result['examples']} eval "
             f"sentences, seq {result['seq_len']}, batch 1, {result['threads']} thread(s), int8 (matmul recipe); "
             f"CPU {result['machine']['model']} ({' '.join(result['machine']['flags'])}).", "",
             "| model | speed | accuracy | macro-F1 | mean layers | mean latency (ms) | speed-up | drop (points) |",
             "|---|---|---|---|---|---|---|---|",
             f"| full depth int8 | - | {ref['accuracy']:.4f} | {ref['macro_f1']:.4f} | {ref['layers']} | "
             f"{ref['mean_latency_ms']:.2f} | 1.00x | 0.00 |"]
    for row in result["early_exit_int8"]:
        lines.append(f"| staged int8 | {row['speed']:g} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
                     f"{row['mean_layers']:.2f} | {row['mean_latency_ms']:.2f} | "
                     f"{row['speedup_vs_full_depth']:.2f}x | {row['accuracy_drop_points']:.2f} |")
    lines += ["", "int8 accuracy of each exit alone (layers 1..L): "
              + ", ".join(f"{a:.4f}" for a in result["int8_exit_accuracy"]), ""]
    best = result["target"]["best"]
    lines.append(f"Target (>= {TARGET_SPEEDUP:g}x lower mean latency at <= {TARGET_DROP_POINTS:g} point lower "
                 "accuracy than the full-depth int8 model): "
                 + (f"met at speed {best['speed']:g} ({best['speedup_vs_full_depth']:.2f}x, "
                    f"{best['accuracy_drop_points']:.2f} points)" if result["target"]["met"] else
                    "not met" + (f"; the fastest speed within the accuracy budget is {best['speed']:g} "
                                 f"({best['speedup_vs_full_depth']:.2f}x, {best['accuracy_drop_points']:.2f} points)"
                                 if best else "")))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", required=True, help="a folder `mbd finetune --early-exit` wrote")
    ap.add_argument("--train", required=True, help="its training CSV (the texts calibrate int8)")
    ap.add_argument("--eval", required=True, help="the labelled eval CSV")
    ap.add_argument("--out", required=True, help="output folder (exports, JSON, markdown)")
    ap.add_argument("--speeds", type=float, nargs="+", default=list(SPEEDS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-calibration", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="100 eval sentences, 1 round")
    ap.add_argument("--rerun", action="store_true", help="redo the exports")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 1
    if not all(0.0 <= s <= 1.0 for s in args.speeds):
        ap.error("speeds must lie in [0, 1]")
    machine = cpu_flags()
    print(f"CPU: {machine['model']}, {machine.get('cpus')} cores; flags: {' '.join(machine['flags'])}")

    def log(msg):
        print(msg, flush=True)

    paths = export_both(args, log)
    result = measure(args, paths, log)
    result.update(classifier=os.path.abspath(args.classifier), threads=args.threads, rounds=args.rounds,
                  machine=machine, exports={k: os.path.abspath(v) for k, v in paths.items()},
                  command="python benchmarks/early_exit.py " + " ".join(sys.argv[1:] if argv is None else argv))
    metrics = os.path.join(args.classifier, "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics, encoding="utf-8") as f:
            result["finetune_metrics"] = json.load(f)
    ok = [r for r in result["early_exit_int8"] if r["accuracy_drop_points"] <= TARGET_DROP_POINTS]
    best = max(ok, key=lambda r: r["speedup_vs_full_depth"]) if ok else None
    result["target"] = {"speedup": TARGET_SPEEDUP, "max_drop_points": TARGET_DROP_POINTS, "best": best,
                        "met": bool(best and best["speedup_vs_full_depth"] >= TARGET_SPEEDUP)}
    text = markdown(result)
    print("\n" + text)
    for name, content in (("early_exit.json", json.dumps(result, indent=2) + "\n"), ("early_exit.md", text)):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, os.path.join(args.out, name))
    print(f"wrote {os.path.join(args.out, 'early_exit.json')} and early_exit.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
