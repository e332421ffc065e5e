"""Task-level compression, one table: the fine-tuned teacher against every way the kit shrinks it.

Rows (each a list of classifier folders, one per seed, named in a JSON manifest): the fine-tuned
teacher, distilled students fine-tuned with and without task KD (``mbd finetune``), FastBERT early
exit at fixed speeds (``mbd finetune --early-exit``), BERT-of-Theseus (``mbd theseus``) and the
BiLSTM student (``mbd finetune --arch bilstm``). The runs themselves are made by those commands;
this script measures them all the same way, on the labelled eval CSV:

* accuracy and macro-F1 of the float Keras model (its ``metrics.json``) and of its int8 LiteRT
  export (the library's classifier export, calibrated on the training texts), mean ± sample std
  over the seeds;
* int8 size, and parameters of the float model (a staged row's exits included);
* LiteRT p50 latency per sentence at batch 1 (``--threads``, default 1), the eval sentences fed one
  by one: at the classifier's own length (64 unless fine-tuned otherwise: the exports have a static
  shape, so a sentence is padded to it; every seed) and at 128 (a second export, of the first seed
  only: the architecture sets it), and the mean as well. FastBERT's latency is the stage loop at its
  speed. Latencies are interleaved: every sentence runs through every model back to back, in an
  order rotated per sentence, so background load hits all alike.

The manifest (``--manifest``)::

    {"rows": [{"name": "teacher (6x384)", "runs": [{"seed": 0, "dir": "clf_s0", "command": "mbd ..."}]},
              {"name": "FastBERT", "speeds": [0.3, 0.5, 0.7], "baseline": "teacher (6x384)", "runs": [...]},
              ...]}

A row may carry a ``note`` (printed under the table). A row with ``speeds`` needs folders with
early exits and gives one table row per speed; with ``baseline`` (another row's name, the
full-depth model) the table adds FastBERT's target: >= 2x lower mean latency than the baseline at
<= 1 point lower int8 accuracy, per speed. Exports go to
``--work`` and are reused while the folder, the data and the settings are unchanged (``--rerun``).
Speed figures compare only within one run: the CPU model and SIMD flags are printed and stored.

    python benchmarks/task_compression.py --manifest runs.json --train train.csv --eval eval.csv \
        --out-json docs/results/task_compression.json --out-md docs/results/task_compression.md
"""

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
    if path not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, path)

from early_exit import TARGET_DROP_POINTS, TARGET_SPEEDUP, timed_round  # noqa: E402
from finetune_kd import cached_int8_export, calibration_file, mean_std  # noqa: E402
from train_speed import cpu_flags  # noqa: E402

LENGTH_128 = 128


class BenchError(Exception):
    """One line for the user; exit code 2."""


def read_manifest(path):
    """The manifest's rows, each checked: a name, runs with distinct seeds and existing folders."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a manifest with a 'rows' list ({e})") from None
    base = os.path.dirname(os.path.abspath(path))
    for row in rows:
        if not row.get("name") or not row.get("runs"):
            raise BenchError(f"{path}: every row needs a name and at least one run")
        seeds = [r["seed"] for r in row["runs"]]
        if len(set(seeds)) != len(seeds):
            raise BenchError(f"{path}: row {row['name']!r} repeats a seed")
        for r in row["runs"]:
            r["dir"] = os.path.normpath(os.path.join(base, os.path.expanduser(r["dir"])))
            if not os.path.isdir(r["dir"]):
                raise BenchError(f"row {row['name']!r}, seed {r['seed']}: {r['dir']} is not a folder")
        if any(not 0.0 <= s <= 1.0 for s in row.get("speeds", ())):
            raise BenchError(f"row {row['name']!r}: speeds must lie in [0, 1]")
        if row.get("baseline") not in (None, *(r["name"] for r in rows if not r.get("speeds"))):
            raise BenchError(f"row {row['name']!r}: its baseline {row['baseline']!r} is no row without speeds")
    return rows


def float_parameters(folder, *, exits):
    """Parameters of the float model of a classifier folder (BiLSTM or keras-hub), its early exits
    included when ``exits``."""
    import numpy as np

    from mobile_bert_distill.downstream.bilstm import is_bilstm_folder
    from mobile_bert_distill.downstream.finetune import load_classifier

    if is_bilstm_folder(folder):
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            return int(json.load(f)["model"]["params"])
    clf, _ = load_classifier(folder)
    n = int(clf.count_params())
    if exits:
        with np.load(os.path.join(folder, "early_exit.npz")) as z:
            n += sum(int(z[k].size) for k in z.files)
    return n


def measure(rows, args):
    """Export, score and time every run; returns the table rows (one per row and speed)."""
    import numpy as np

    import keras

    from mobile_bert_distill.downstream.finetune import accuracy_and_macro_f1, encode_labels, read_labelled_csv
    from mobile_bert_distill.export import LABELS_FILE, find_preset_vocab
    from mobile_bert_distill.litert.inference import LiteRTModel, TruncationWarning
    from mobile_bert_distill.litert.tools import signature_runner

    os.makedirs(args.work, exist_ok=True)
    calibration = calibration_file(os.path.join(args.work, "calibration.txt"),
                                   read_labelled_csv(args.train, log=None)[0])
    texts, raw = read_labelled_csv(args.eval, log=None)
    timed = texts[: args.latency_sentences]

    runs, configs = [], {}
    for i, row in enumerate(rows):
        staged = bool(row.get("speeds"))
        for r in row["runs"]:
            folder, seed = r["dir"], r["seed"]
            print(f"{row['name']}, seed {seed}: {folder}", flush=True)
            with open(os.path.join(folder, LABELS_FILE), encoding="utf-8") as f:
                classes = json.load(f)["classes"]  # BiLSTM folders too (not keras-hub presets)
            y = encode_labels(raw, classes, args.eval)
            with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
                metrics = json.load(f)
            stem = os.path.join(args.work, f"row{i}_seed{seed}")
            # the latency at 128 depends on the architecture, not the seed: the first seed's export serves
            lengths = (None, LENGTH_128) if r is row["runs"][0] else (None,)
            reports = {}
            for length in lengths:
                t0 = time.perf_counter()
                path = f"{stem}_{length or 'own'}.tflite"
                reports[length], cached = cached_int8_export(folder, path, calibration, args.eval,
                                                             args.num_calibration, rerun=args.rerun,
                                                             seq_len=length, early_exit=staged)
                if not cached:
                    print(f"  exported {path}: {reports[length]['size_mb']:.2f} MB "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
            vocab = find_preset_vocab(folder)
            models = {length: LiteRTModel(f"{stem}_{length or 'own'}.tflite", vocab, labels=classes,
                                          num_threads=args.threads) for length in reports}
            for speed in row.get("speeds") or [None]:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", TruncationWarning)
                    preds = models[None].classify(texts, speed=speed)
                acc, f1 = accuracy_and_macro_f1(y, np.array([p["index"] for p in preds]), len(classes))
                entry = {"row": row["name"], "speed": speed, "baseline": row.get("baseline"), "note": row.get("note"),
                         "seed": seed,
                         "dir": folder, "command": r.get("command"), "float_accuracy": metrics["accuracy"],
                         "float_macro_f1": metrics["macro_f1"], "int8_accuracy": acc, "int8_macro_f1": f1,
                         "size_mb": reports[None]["size_mb"], "seq_len": models[None].seq_len,
                         "parameters": float_parameters(folder, exits=staged), "latency_ms": {},
                         "mean_latency_ms": {},
                         "truncated_texts": sum(issubclass(w.category, TruncationWarning) for w in caught)}
                if staged:
                    entry["mean_layers"] = float(np.mean([p["layers"] for p in preds]))
                runs.append(entry)
                for length, model in models.items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", TruncationWarning)  # counted above
                        feeds, _ = model.encode(timed)
                    one = [{k: v[j : j + 1] for k, v in feeds.items()} for j in range(len(timed))]
                    if staged:
                        fn = lambda x, m=model, s=speed: m.stages.run(x, speed=s)  # noqa: E731
                    else:
                        fn = signature_runner(model.interpreter)
                        fn = lambda x, run=fn: run(**x)  # noqa: E731
                    configs[(len(runs) - 1, length or "own")] = lambda j, one=one, fn=fn: fn(one[j])
            keras.backend.clear_session()

    print(f"timing {len(configs)} configurations x {len(timed)} sentences, {args.rounds} round(s), "
          f"{args.threads} thread(s)", flush=True)
    sentences = list(range(len(timed)))
    timed_round(configs, sentences[:10], {name: [] for name in configs})  # warm-up
    seconds = {name: [] for name in configs}
    for k in range(args.rounds):
        timed_round(configs, sentences, seconds)
        print(f"  round {k + 1} of {args.rounds} done", flush=True)
    for (i, length), values in seconds.items():
        runs[i]["latency_ms"][str(length)] = 1e3 * float(np.median(values))
        runs[i]["mean_latency_ms"][str(length)] = 1e3 * float(np.mean(values))
    return runs


def summarise(runs):
    """One table row per manifest row and speed: means (± sample std over seeds) of every figure."""
    import numpy as np

    out = []
    for key in dict.fromkeys((r["row"], r["speed"]) for r in runs):
        group = [r for r in runs if (r["row"], r["speed"]) == key]
        row = {"row": key[0], "speed": key[1], "baseline": group[0]["baseline"],
               "seeds": [r["seed"] for r in group],
               "parameters": group[0]["parameters"], "seq_len": group[0]["seq_len"],
               "size_mb": float(np.mean([r["size_mb"] for r in group])),
               **{kind: {n: float(np.mean([r[kind][n] for r in group if n in r[kind]])) for n in group[0][kind]}
                  for kind in ("latency_ms", "mean_latency_ms")}}
        for name in ("float_accuracy", "float_macro_f1", "int8_accuracy", "int8_macro_f1"):
            row[name] = mean_std([r[name] for r in group])
        if "mean_layers" in group[0]:
            row["mean_layers"] = float(np.mean([r["mean_layers"] for r in group]))
        out.append(row)
    return out


def markdown(result):
    def pct(ms):
        return f"{100 * ms['mean']:.2f}" + (f" ± {100 * ms['std']:.2f}" if len(ms["values"]) > 1 else "")

    m = result["machine"]
    lines = [f"# Task-level compression on {result['data']}", "",
             f"Command: `{result['command']}`. CPU: {m['model']}, {m['cpus']} cores; flags: {' '.join(m['flags'])}. "
             f"Latency: p50 per sentence, batch 1, {result['threads']} thread(s), {result['latency_sentences']} eval "
             f"sentences x {result['rounds']} interleaved rounds.", "",
             "| model | seeds | accuracy float | accuracy int8 | macro-F1 int8 | int8 MB | parameters | "
             f"p50 ms at own length | p50 ms at {LENGTH_128} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["table"]:
        name = row["row"] + (f", speed {row['speed']:g} ({row['mean_layers']:.2f} layers on average)"
                             if row["speed"] is not None else "")
        lat = row["latency_ms"]
        lines.append(f"| {name} | {len(row['seeds'])} | {pct(row['float_accuracy'])} | {pct(row['int8_accuracy'])} | "
                     f"{pct(row['int8_macro_f1'])} | {row['size_mb']:.2f} | {row['parameters'] / 1e6:.2f} M | "
                     f"{lat['own']:.2f} (length {row['seq_len']}) | {lat[str(LENGTH_128)]:.2f} |")
    lines += ["", "Accuracy and macro-F1 in % on the eval split (mean ± sample std over the seeds when there are "
              "several). Float figures are the Keras model's own (`metrics.json`); int8 ones come from "
              "`LiteRTModel.classify` on the exported file. The exports have a static length: a sentence is "
              "padded to it, so 'own length' is the classifier's fine-tuning length.", "", "Runs:", ""]
    for row, seed in dict.fromkeys((r["row"], r["seed"]) for r in result["runs"]):
        r = next(x for x in result["runs"] if (x["row"], x["seed"]) == (row, seed))
        lines.append(f"- {row}, seed {seed}: `{r['command'] or r['dir']}`")
    notes = dict.fromkeys((r["row"], r["note"]) for r in result["runs"] if r["note"])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {row}: {note}" for row, note in notes]
    checks = result["early_exit_target"]
    if checks:
        lines += ["", f"Early exit against its full-depth baseline (target: >= {TARGET_SPEEDUP:g}x lower mean latency "
                  f"per sentence at <= {TARGET_DROP_POINTS:g} point lower int8 accuracy):", ""]
        for c in checks:
            lines.append(f"- {c['row']}, speed {c['speed']:g}: {c['speedup']:.2f}x, {c['drop_points']:+.2f} points: "
                         + ("**met**" if c["met"] else "not met"))
    return "\n".join(lines) + "\n"


def early_exit_target(table):
    """Per speed of a row with a baseline: its mean-latency speed-up and int8 accuracy drop."""
    out = []
    for row in table:
        if row["speed"] is None or not row["baseline"]:
            continue
        base = next(b for b in table if b["row"] == row["baseline"] and b["speed"] is None)
        speedup = base["mean_latency_ms"]["own"] / row["mean_latency_ms"]["own"]
        drop = 100.0 * (base["int8_accuracy"]["mean"] - row["int8_accuracy"]["mean"])
        out.append({"row": row["row"], "speed": row["speed"], "baseline": base["row"], "speedup": speedup,
                    "drop_points": drop, "met": speedup >= TARGET_SPEEDUP and drop <= TARGET_DROP_POINTS})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True, help="JSON: the rows and their classifier folders per seed")
    ap.add_argument("--train", required=True, help="the training CSV (its texts calibrate int8)")
    ap.add_argument("--eval", required=True, help="the labelled eval CSV")
    ap.add_argument("--data-name", default="the Rotten Tomatoes split of `mbd data fetch-sentiment`",
                    help="how the table names the data")
    ap.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "results", "task_compression"),
                    help="the exports (reused while their inputs are unchanged)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-sentences", type=int, default=200, help="eval sentences timed (the first N)")
    ap.add_argument("--num-calibration", type=int, default=200)
    ap.add_argument("--rerun", action="store_true", help="redo the exports")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "benchmarks", "results", "task_compression.json"))
    ap.add_argument("--out-md", default=os.path.join(ROOT, "benchmarks", "results", "task_compression.md"))
    args = ap.parse_args(argv)
    for name in ("threads", "rounds", "latency_sentences", "num_calibration"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    from mobile_bert_distill.errors import UserError

    machine = cpu_flags()
    print(f"CPU: {machine['model']}, {machine.get('cpus')} cores; flags: {' '.join(machine['flags'])}", flush=True)
    try:
        rows = read_manifest(args.manifest)
        runs = measure(rows, args)
    except (BenchError, UserError) as e:
        print(f"task_compression: error: {e}", file=sys.stderr)
        return 2
    result = {"command": "python benchmarks/task_compression.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "data": args.data_name, "machine": machine,
              "threads": args.threads, "rounds": args.rounds, "latency_sentences": args.latency_sentences,
              "table": summarise(runs), "runs": runs}
    result["early_exit_target"] = early_exit_target(result["table"])
    text = markdown(result)
    print("\n" + text)
    for path, content in ((args.out_json, json.dumps(result, indent=1) + "\n"), (args.out_md, text)):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    print(f"wrote {args.out_json} and {args.out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
