"""Downstream sentiment: fine-tuned teacher vs the distilled 48-d student, with and without task KD.

On the Rotten Tomatoes split of ``mbd data fetch-sentiment`` (3,200 / 800 sentences), with the
teacher and students that ``make demo`` writes under ``demo_out/``:

1. ``teacher``       the demo teacher (teacher-prep) fine-tuned as a classifier (``mbd finetune --teacher``)
2. ``student``       the dual+up (distilled) student fine-tuned on the labels alone
3. ``student_kd``    the same student fine-tuned with soft-target KD from (1) of the same seed
                     (``α·CE + (1−α)·T²·KL``, T=2, α=0.5 by default)
4. ``nokd_student``  the nokd-pretrained student (no teacher in pre-training) fine-tuned, no KD

Each is run for every seed (``--seeds``, default 0 1 2) and scored on the eval split: accuracy and
macro-F1, mean ± std over the seeds. Then the best student variant (highest mean accuracy) is
exported to int8 LiteRT for each of its seeds (the library's classifier export, calibrated on the
training texts) and run over the eval CSV with ``LiteRTModel.classify``: its accuracy against the
float Keras accuracy of the same classifier, target a drop of at most 0.5 points.

Writes ``--out-json`` (default ``benchmarks/results/finetune_kd.json``) and a markdown table
(stdout and ``--out-md``); fine-tuned classifiers and exports go to ``--work`` and are reused when
a later run has the same inputs and settings (``--rerun`` to redo them).

    python benchmarks/finetune_kd.py                  # after `make demo`; 3 seeds
    python benchmarks/finetune_kd.py --quick          # smoke test: 1 seed, 2 epochs, 400/200 sentences
    python benchmarks/finetune_kd.py --teacher T --student S --nokd-student N --data-dir D
"""

import argparse
import gc
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

DEMO_OUT = os.path.join(ROOT, "demo_out")
DEFAULTS = {
    "teacher": os.path.join(DEMO_OUT, "teacher_prep", "teacher"),
    "student": os.path.join(DEMO_OUT, "dual_up", "student"),
    "nokd_student": os.path.join(DEMO_OUT, "nokd", "student"),
}
RESULTS = os.path.join(ROOT, "benchmarks", "results")
VARIANTS = ("teacher", "student", "student_kd", "nokd_student")
STUDENT_VARIANTS = VARIANTS[1:]
INT8_TARGET_POINTS = 0.5

# Zhao et al. 2019 (arXiv 1909.11687 v1), Table 3: GLUE test sets; the SST-2 accuracy column.
PAPER = {
    "source": "Zhao et al. 2019, arXiv 1909.11687, Table 3 (GLUE test, SST-2 accuracy %)",
    "teacher_bert_base": 93.5,
    "student_48d_nokd": 79.5,
    "student_48d_shared_projections": 82.2,
}


class BenchError(Exception):
    """One line for the user; exit code 2."""


def _rel(path):
    path = os.path.abspath(path)
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def _fingerprint(path):
    """``[path, size, mtime]`` of the files that define a model folder or a data file."""
    files = [path]
    if os.path.isdir(path):
        files = [os.path.join(path, n) for n in ("config.json", "model.weights.h5", "task.weights.h5",
                                                 "labels.json")
                 if os.path.exists(os.path.join(path, n))]
    out = []
    for f in files:
        st = os.stat(f)
        out.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
    return out


def _backbone_facts(model_dir):
    """``{num_layers, hidden_dim, vocabulary_size}`` from ``config.json`` (keras-hub preset or HF folder)."""
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    if isinstance(raw.get("config"), dict):  # keras-hub
        cfg = raw["config"]
        return {k: cfg.get(k) for k in ("num_layers", "hidden_dim", "vocabulary_size")}
    return {"num_layers": raw.get("num_hidden_layers"), "hidden_dim": raw.get("hidden_size"),
            "vocabulary_size": raw.get("vocab_size")}


def _distill_steps(student_dir):
    """Steps of the distillation run that wrote ``RUN/student`` (``RUN/summary.json``), else ``None``."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(student_dir)), "summary.json"),
                  encoding="utf-8") as f:
            return int(json.load(f)["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _describe(facts):
    if not facts.get("hidden_dim"):
        return "?"
    return f"{facts['num_layers']}×{facts['hidden_dim']}, vocab {facts['vocabulary_size']:,}"


def mean_std(values):
    import numpy as np

    a = np.asarray(values, "float64")
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "values": [float(v) for v in values]}


# ------------------------------------------------------------------ data
def prepare_data(args, work, log):
    """``(train_csv, eval_csv, info)``: the split (fetched when needed), cut to the subset sizes."""
    from mobile_bert_distill.atomic import atomic_write_text
    from mobile_bert_distill.downstream.finetune import read_labelled_csv
    from mobile_bert_distill.downstream.sentiment_data import _csv_text, fetch_sentiment, stratified_split

    if args.data_dir:
        data_dir = os.path.abspath(args.data_dir)
        cache = os.path.abspath(os.path.expanduser(args.cache or _default_cache()))
    else:
        cache = os.path.abspath(os.path.expanduser(args.cache or _default_cache()))
        data_dir = os.path.join(cache, "sentiment")
    train, ev = os.path.join(data_dir, "train.csv"), os.path.join(data_dir, "eval.csv")
    if os.path.isfile(train) and os.path.isfile(ev):
        source = f"{_rel(data_dir)}/train.csv, eval.csv"
        split = os.path.join(data_dir, "split.json")
        if os.path.isfile(split):  # written by fetch_sentiment
            with open(split, encoding="utf-8") as f:
                stats = json.load(f)
            source = f"Rotten Tomatoes sentences ({stats.get('source')}), fixed stratified split"
        fetched = False
    else:
        log(f"fetching the Rotten Tomatoes split (mbd data fetch-sentiment) into {_rel(data_dir)}")
        res = fetch_sentiment(cache, data_dir, log=lambda m: log("  " + m))
        train, ev = res["train"], res["eval"]
        source = f"Rotten Tomatoes sentences ({res['stats']['source']}), fixed stratified split"
        fetched = True
    info = {"dir": data_dir, "source": source, "fetched": fetched}
    for name, path, limit in (("train", train, args.train_subset), ("eval", ev, args.eval_subset)):
        texts, labels = read_labelled_csv(path, log=None)
        info[f"{name}_total"] = len(texts)
        if limit and limit < len(texts):
            rows = list(zip(texts, labels))
            _, subset = stratified_split(rows, eval_fraction=limit / len(rows), seed=0)
            path = os.path.join(work, "data", f"{name}.csv")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            text = _csv_text(subset)
            if not (os.path.exists(path) and open(path, encoding="utf-8", newline="").read() == text):
                atomic_write_text(path, text)  # unchanged files keep their mtime (and the cached runs)
            texts = [t for t, _ in subset]
        info[f"{name}_csv"] = os.path.abspath(path)
        info[f"{name}_examples"] = len(texts)
    return info["train_csv"], info["eval_csv"], info


def _default_cache():
    return os.environ.get("MBD_CACHE_DIR") or os.path.join("~", ".cache", "mobile_bert_distill")


# ------------------------------------------------------------------ one fine-tuning run
def run_finetune(variant, seed, model_dir, train_csv, eval_csv, run_dir, settings, teacher_clf, *, rerun, log):
    """Fine-tune (or reuse) one classifier; returns its metrics plus ``seconds`` and ``cached``."""
    import keras

    from mobile_bert_distill.atomic import atomic_write_json
    from mobile_bert_distill.downstream.finetune import finetune

    is_teacher = variant == "teacher"
    kd = variant == "student_kd"
    hp = {"epochs": settings["teacher_epochs" if is_teacher else "epochs"],
          "learning_rate": settings["teacher_learning_rate" if is_teacher else "learning_rate"],
          "batch_size": settings["batch_size"], "seq_len": settings["seq_len"], "seed": seed}
    if kd:
        hp.update(temperature=settings["temperature"], alpha=settings["alpha"], kd_loss=settings["kd_loss"])
    key = {"model": _fingerprint(model_dir), "train": _fingerprint(train_csv), "eval": _fingerprint(eval_csv),
           "hp": hp, "teacher_classifier": _fingerprint(teacher_clf) if kd else None}
    key = json.loads(json.dumps(key))
    key_path = run_dir + ".key.json"
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not rerun and os.path.exists(metrics_path) and os.path.exists(key_path):
        with open(key_path, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("key") == key:
            with open(metrics_path, encoding="utf-8") as f:
                m = json.load(f)
            return dict(m, seconds=old.get("seconds"), cached=True, hp=hp)
    t0 = time.time()
    m = finetune(model_dir, train_csv, eval_csv, run_dir, epochs=hp["epochs"], batch_size=hp["batch_size"],
                 learning_rate=hp["learning_rate"], seq_len=hp["seq_len"], seed=seed,
                 teacher_classifier=teacher_clf if kd else None, temperature=settings["temperature"],
                 alpha=settings["alpha"], kd_loss=settings["kd_loss"], overwrite=True, log=log)
    seconds = round(time.time() - t0, 1)
    atomic_write_json(key_path, {"key": key, "seconds": seconds})
    keras.backend.clear_session()
    gc.collect()
    return dict(m, seconds=seconds, cached=False, hp=hp)


# ------------------------------------------------------------------ int8
def calibration_file(path, texts):
    """Write ``texts`` to ``path``, one per line (whitespace folded), unless it holds them already:
    an unchanged file keeps its mtime, and so the exports keyed on it stay valid."""
    from mobile_bert_distill.atomic import atomic_write_text

    text = "".join(" ".join(t.split()) + "\n" for t in texts)
    if not (os.path.exists(path) and open(path, encoding="utf-8").read() == text):
        atomic_write_text(path, text)
    return path


def cached_int8_export(folder, out_path, calibration, eval_csv, num_calibration, *, rerun, seq_len=None,
                       early_exit=False):
    """The library's int8 classifier export of ``folder`` (calibrated on the ``calibration`` file, parity
    on ``eval_csv``; ``seq_len`` None: its own length; ``early_exit``: the staged model), reused while
    the folder, the data, the settings and the kit's export code are unchanged. Returns ``(report, cached)``."""
    from mobile_bert_distill import bench
    from mobile_bert_distill.atomic import atomic_write_json
    from mobile_bert_distill.downstream import early_exit as exits
    from mobile_bert_distill.export import bilstm, classifier, export_student, staged, student, validation

    report_file = os.path.splitext(out_path)[0] + ".report.json"
    key = json.loads(json.dumps({"classifier": _fingerprint(folder), "calibration": _fingerprint(calibration),
                                 "eval": _fingerprint(eval_csv), "num_calibration": num_calibration,
                                 "seq_len": seq_len, "early_exit": early_exit,
                                 "code": bench.export_fingerprint(student, classifier, staged, bilstm, validation,
                                                                  exits)}))
    key_path = out_path + ".key.json"
    if not rerun and all(os.path.exists(p) for p in (out_path, report_file, key_path)):
        with open(key_path, encoding="utf-8") as f:
            if json.load(f).get("key") == key:
                with open(report_file, encoding="utf-8") as g:
                    return json.load(g), True
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    report = export_student(folder, out_path, task="classifier", quantization="int8", seq_len=seq_len,
                            calibration_corpus=calibration, num_calibration=num_calibration, parity_csv=eval_csv,
                            overwrite=True, early_exit=early_exit)
    atomic_write_json(key_path, {"key": key})
    return report, False


def int8_eval(clf_dir, out_path, train_texts, eval_csv, work, num_calibration, *, rerun):
    """Export ``clf_dir`` to int8 (calibrated on the training texts) and classify the eval CSV with LiteRT."""
    from mobile_bert_distill.export import find_preset_vocab, read_classifier_labels
    from mobile_bert_distill.downstream.finetune import read_labelled_csv
    from mobile_bert_distill.litert.inference import LiteRTModel, TruncationWarning

    calib = calibration_file(os.path.join(work, "calibration_train_texts.txt"), train_texts)
    t0 = time.time()
    report, cached = cached_int8_export(clf_dir, out_path, calib, eval_csv, num_calibration, rerun=rerun)
    export_s = time.time() - t0
    texts, labels = read_labelled_csv(eval_csv, log=None)
    t1 = time.time()
    classes, _ = read_classifier_labels(clf_dir)
    model = LiteRTModel(out_path, find_preset_vocab(clf_dir), labels=classes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        preds = model.classify(texts)
    truncated = sum(1 for w in caught if issubclass(w.category, TruncationWarning))
    correct = sum(str(p["label"]) == y for p, y in zip(preds, labels))
    par = report.get("parity", {})
    return {"tflite": os.path.abspath(out_path), "size_mb": report.get("size_mb"), "seq_len": report.get("seq_len"),
            "calibration_sequences": (report.get("calibration") or {}).get("sequences"),
            "int8_accuracy": correct / len(texts), "eval_examples": len(texts), "truncated_texts": truncated,
            "predicted_classes": len({p["label"] for p in preds}),
            "runtime": model.runtime, "export_seconds": round(export_s, 1) if not cached else None,
            "classify_seconds": round(time.time() - t1, 1), "cached": cached,
            "export_parity": {k: par.get(k) for k in ("label_agreement", "label_flips", "float_accuracy",
                                                      "tflite_accuracy", "max_abs_prob_diff")}}


# ------------------------------------------------------------------ table
def render_table(res):
    s = res["settings"]
    kd_desc = f"labels + soft-target KD from the teacher (T={s['temperature']:g}, α={s['alpha']:g}, {s['kd_loss']})"
    lines = [f"# Fine-tuning with and without task KD ({res['data']['train_examples']:,} train / "
             f"{res['data']['eval_examples']:,} eval sentences{', --quick' if res['quick'] else ''})", "",
             "| model | fine-tuning | accuracy (%) | macro-F1 (%) | seeds | s per run |",
             "|---|---|---:|---:|---:|---:|"]
    for row in res["rows"]:
        secs = [x for x in row["seconds"] if x is not None]
        per_run = f"{sum(secs) / len(secs):.0f}" if secs else "-"
        lines.append(f"| {row['label']} | {kd_desc if row['kd'] else 'labels only'} | "
                     f"{100 * row['accuracy']['mean']:.2f} ± {100 * row['accuracy']['std']:.2f} | "
                     f"{100 * row['macro_f1']['mean']:.2f} ± {100 * row['macro_f1']['std']:.2f} | "
                     f"{len(row['seeds'])} | {per_run} |")
    q = res.get("int8")
    if q:
        lines.append(f"| {q['label']}, **int8 LiteRT** | `LiteRTModel.classify` over the eval CSV | "
                     f"{100 * q['int8_accuracy']['mean']:.2f} ± {100 * q['int8_accuracy']['std']:.2f} | | "
                     f"{len(q['seeds'])} | |")
    p = res["paper"]
    lines.append(f"| *paper, SST-2 test (Table 3)* | *their fine-tuning* | *teacher BERT-base "
                 f"{p['teacher_bert_base']}; 48-d NoKD {p['student_48d_nokd']}; 48-d + shared projections "
                 f"{p['student_48d_shared_projections']}* | | | |")
    lines.append("")
    if q:
        verdict = "**met**" if q["met"] else "**not met**"
        lines.append(f"int8: the best student variant (`{q['variant']}`, highest mean float accuracy) exported "
                     f"to int8 (calibrated on {q['calibration_sequences']} training texts, static length "
                     f"{q['seq_len']}, {q['size_mb']:.2f} MB): {100 * q['int8_accuracy']['mean']:.2f} % vs "
                     f"{100 * q['float_accuracy']['mean']:.2f} % float, a drop of {q['drop_points']:+.2f} points "
                     f"(worst seed {q['worst_drop_points']:+.2f}); target ≤ {q['target_points']} points: {verdict}."
                     + (f" {q['truncated_texts']} of {q['eval_examples']} eval texts were cut to the static length "
                        "(fine-tuning cuts them alike)." if q.get("truncated_texts") else "")
                     + (" **Caveat:** the int8 model predicts a single class for every eval text (seed(s) "
                        + ", ".join(str(r["seed"]) for r in q["per_seed"] if r["predicted_classes"] == 1)
                        + "), so its accuracy is the class share and the drop says little."
                        if any(r["predicted_classes"] == 1 for r in q["per_seed"]) else ""))
        lines.append("")
    t = res["models"]
    lines.append(f"Teacher: `{_rel(t['teacher'])}` ({_describe(t['teacher_facts'])}); students: "
                 f"`{_rel(t['student'])}` and `{_rel(t['nokd_student'])}` ({_describe(t['student_facts'])}). "
                 f"Students: {s['epochs']} epochs at lr {s['learning_rate']:g}; teacher: {s['teacher_epochs']} "
                 f"epochs at lr {s['teacher_learning_rate']:g}; batch {s['batch_size']}, sequence length "
                 f"{s['seq_len']}, AdamW with warm-up and cosine decay (`mbd finetune`). Mean ± sample std "
                 f"over seeds {', '.join(map(str, s['seeds']))}; the KD student of seed k learns from the "
                 "teacher classifier of seed k.")
    lines.append("")
    steps = t.get("student_distill_steps")
    lines.append("The paper's row is for context only: data and scale differ. It fine-tunes on SST-2 (67k "
                 "training sentences, scored on the GLUE test set) with a BERT-base teacher and students "
                 "distilled at full scale; here the data is " + res["data"]["source"] + ", the teacher is "
                 "the one above" + (f", and the students were distilled for {steps:,} steps" if steps else "")
                 + ".")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=DEFAULTS["teacher"], metavar="DIR",
                    help="teacher to fine-tune (default: demo_out/teacher_prep/teacher)")
    ap.add_argument("--student", default=DEFAULTS["student"], metavar="DIR",
                    help="distilled student preset (default: demo_out/dual_up/student)")
    ap.add_argument("--nokd-student", default=DEFAULTS["nokd_student"], metavar="DIR",
                    help="nokd-pretrained student preset (default: demo_out/nokd/student)")
    ap.add_argument("--data-dir", metavar="DIR", help="folder with train.csv/eval.csv (columns text,label); "
                    "fetched there when missing (default: CACHE/sentiment)")
    ap.add_argument("--cache", metavar="DIR", help="cache for the fetched data (default: $MBD_CACHE_DIR, "
                    "else ~/.cache/mobile_bert_distill)")
    ap.add_argument("--seeds", type=int, nargs="+", help="fine-tuning seeds (default: 0 1 2; --quick: 0)")
    ap.add_argument("--epochs", type=int, help="student epochs (default: 3; --quick: 2)")
    ap.add_argument("--teacher-epochs", type=int, help="teacher epochs (default: 3; --quick: 2)")
    ap.add_argument("--learning-rate", type=float, default=5e-4, help="student peak learning rate")
    ap.add_argument("--teacher-learning-rate", type=float, default=5e-5, help="teacher peak learning rate")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=2.0, help="KD temperature T")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the hard-label loss in KD")
    ap.add_argument("--kd-loss", choices=("kl", "mse"), default="kl")
    ap.add_argument("--train-subset", type=int, help="use a stratified subset of N training sentences "
                    "(default: all; --quick: 400)")
    ap.add_argument("--eval-subset", type=int, help="use a stratified subset of N eval sentences "
                    "(default: all; --quick: 200)")
    ap.add_argument("--num-calibration", type=int, default=200, help="int8 calibration sequences")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 1 seed, 2 epochs, 400/200 sentences")
    ap.add_argument("--work", default=os.path.join(RESULTS, "finetune_kd"), metavar="DIR",
                    help="fine-tuned classifiers and exports (reused when inputs and settings match)")
    ap.add_argument("--rerun", action="store_true", help="redo every run even if --work has it")
    ap.add_argument("--out-json", default=os.path.join(RESULTS, "finetune_kd.json"))
    ap.add_argument("--out-md", default=os.path.join(RESULTS, "finetune_kd.md"))
    args = ap.parse_args(argv)
    q = args.quick
    args.seeds = args.seeds or ([0] if q else [0, 1, 2])
    args.epochs = args.epochs or (2 if q else 3)
    args.teacher_epochs = args.teacher_epochs or (2 if q else 3)
    args.train_subset = args.train_subset if args.train_subset is not None else (400 if q else 0)
    args.eval_subset = args.eval_subset if args.eval_subset is not None else (200 if q else 0)
    for name in ("epochs", "teacher_epochs", "batch_size", "seq_len", "num_calibration"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error("--seeds must be distinct")
    try:
        return _run(args)
    except BenchError as e:
        print(f"finetune_kd: error: {e}", file=sys.stderr, flush=True)
        return 2


def _run(args):
    from mobile_bert_distill.errors import UserError

    for what, path in (("teacher", args.teacher), ("student", args.student), ("nokd student", args.nokd_student)):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise BenchError(f"{what} not found: {_rel(path)} (run `make demo` first, or pass "
                             f"--{what.replace(' ', '-')} DIR)")
    try:
        return _bench(args)
    except UserError as e:
        raise BenchError(str(e)) from None


def _bench(args):
    import logging

    import numpy as np

    from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text
    from mobile_bert_distill.downstream.finetune import read_labelled_csv

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices between runs

    t_start = time.time()
    load_start = os.getloadavg()[0]
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    n_runs = len(VARIANTS) * len(args.seeds)
    total = 1 + n_runs + len(args.seeds) + 1
    step = [0]

    def line(text):
        print(f"[{step[0]}/{total}] {text}", flush=True)

    def indent(msg):
        print(f"    {msg}", flush=True)

    print(f"finetune_kd: {os.cpu_count()} CPUs, load average {load_start:.2f}; work {_rel(work)}", flush=True)
    step[0] += 1
    t0 = time.time()
    line("data ...")
    train_csv, eval_csv, data = prepare_data(args, work, indent)
    line(f"data: {data['train_examples']:,} train / {data['eval_examples']:,} eval sentences "
         f"({data['source']}) in {time.time() - t0:.0f} s")

    settings = {"seeds": args.seeds, "epochs": args.epochs, "teacher_epochs": args.teacher_epochs,
                "learning_rate": args.learning_rate, "teacher_learning_rate": args.teacher_learning_rate,
                "batch_size": args.batch_size, "seq_len": args.seq_len, "temperature": args.temperature,
                "alpha": args.alpha, "kd_loss": args.kd_loss, "train_subset": args.train_subset or None,
                "eval_subset": args.eval_subset or None, "num_calibration": args.num_calibration}
    models = {"teacher": os.path.abspath(args.teacher), "student": os.path.abspath(args.student),
              "nokd_student": os.path.abspath(args.nokd_student),
              "teacher_facts": _backbone_facts(args.teacher), "student_facts": _backbone_facts(args.student),
              "nokd_student_facts": _backbone_facts(args.nokd_student),
              "student_distill_steps": _distill_steps(args.student)}
    width = models["student_facts"].get("hidden_dim")
    sw = f"{width}-d " if width else ""
    labels = {"teacher": f"teacher ({_describe(models['teacher_facts'])})",
              "student": f"{sw}student, dual+up (distilled)",
              "student_kd": f"{sw}student, dual+up (distilled)",
              "nokd_student": f"{sw}student, nokd (no teacher in pre-training)"}
    sources = {"teacher": args.teacher, "student": args.student, "student_kd": args.student,
               "nokd_student": args.nokd_student}
    runs = []
    for seed in args.seeds:
        teacher_clf = os.path.join(work, "runs", f"teacher_seed{seed}")
        for variant in VARIANTS:
            step[0] += 1
            run_dir = os.path.join(work, "runs", f"{variant}_seed{seed}")
            what = ("fine-tuning with KD from teacher seed " + str(seed)) if variant == "student_kd" else "fine-tuning"
            line(f"{variant} seed {seed}: {what} ...")
            m = run_finetune(variant, seed, sources[variant], train_csv, eval_csv, run_dir, settings,
                             teacher_clf, rerun=args.rerun, log=indent)
            runs.append({"variant": variant, "seed": seed, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                         "seconds": m["seconds"], "cached": m["cached"], "classifier": run_dir,
                         "hyperparameters": m["hp"]})
            line(f"{variant} seed {seed}: accuracy {100 * m['accuracy']:.2f} %, macro-F1 "
                 f"{100 * m['macro_f1']:.2f} % " + ("(cached)" if m["cached"] else f"in {m['seconds']:.0f} s"))

    rows = []
    for variant in VARIANTS:
        rs = [r for r in runs if r["variant"] == variant]
        rows.append({"variant": variant, "label": labels[variant], "model": os.path.abspath(sources[variant]),
                     "kd": variant == "student_kd", "seeds": [r["seed"] for r in rs],
                     "accuracy": mean_std([r["accuracy"] for r in rs]),
                     "macro_f1": mean_std([r["macro_f1"] for r in rs]),
                     "seconds": [r["seconds"] for r in rs]})
    best = max((r for r in rows if r["variant"] in STUDENT_VARIANTS), key=lambda r: r["accuracy"]["mean"])

    train_texts, _ = read_labelled_csv(train_csv, log=None)
    per_seed = []
    for seed in args.seeds:
        step[0] += 1
        clf_dir = os.path.join(work, "runs", f"{best['variant']}_seed{seed}")
        line(f"int8 export + LiteRT eval of {best['variant']} seed {seed} ...")
        t0 = time.time()
        r = int8_eval(clf_dir, os.path.join(work, "int8", f"{best['variant']}_seed{seed}.tflite"), train_texts,
                      eval_csv, work, args.num_calibration, rerun=args.rerun)
        run = next(x for x in runs if x["variant"] == best["variant"] and x["seed"] == seed)
        r.update(seed=seed, float_accuracy=run["accuracy"],
                 drop_points=100.0 * (run["accuracy"] - r["int8_accuracy"]))
        per_seed.append(r)
        line(f"int8 {best['variant']} seed {seed}: {100 * r['int8_accuracy']:.2f} % vs float "
             f"{100 * r['float_accuracy']:.2f} % ({r['drop_points']:+.2f} points, {r['size_mb']:.2f} MB) in "
             f"{time.time() - t0:.0f} s" + (" (export cached)" if r["cached"] else ""))
    int8_acc = mean_std([r["int8_accuracy"] for r in per_seed])
    float_acc = mean_std([r["float_accuracy"] for r in per_seed])
    drop = 100.0 * (float_acc["mean"] - int8_acc["mean"])
    int8 = {"variant": best["variant"], "label": best["label"] + (", KD" if best["kd"] else ", no KD"),
            "seeds": [r["seed"] for r in per_seed], "int8_accuracy": int8_acc, "float_accuracy": float_acc,
            "drop_points": drop, "worst_drop_points": max(r["drop_points"] for r in per_seed),
            "target_points": INT8_TARGET_POINTS, "met": bool(drop <= INT8_TARGET_POINTS),
            "size_mb": float(np.mean([r["size_mb"] for r in per_seed])), "seq_len": per_seed[0]["seq_len"],
            "calibration_sequences": per_seed[0]["calibration_sequences"],
            "truncated_texts": per_seed[0]["truncated_texts"], "eval_examples": per_seed[0]["eval_examples"],
            "float_accuracy_is": "the fine-tuned Keras classifier's eval accuracy (mbd finetune metrics)",
            "per_seed": per_seed}

    step[0] += 1
    res = {"benchmark": "finetune_kd", "quick": bool(args.quick), "data": data, "models": models,
           "settings": settings, "rows": rows, "runs": runs, "best_student": best["variant"], "int8": int8,
           "paper": PAPER,
           "machine": {"cpus": os.cpu_count(), "load_average_start": round(load_start, 2),
                       "load_average_end": round(os.getloadavg()[0], 2)},
           "seconds": round(time.time() - t_start, 1),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    table = render_table(res)
    atomic_write_json(os.path.abspath(args.out_json), res)
    atomic_write_text(os.path.abspath(args.out_md), table)
    line(f"report: {_rel(args.out_json)}, {_rel(args.out_md)}")
    print()
    print(table, end="", flush=True)
    print(f"\nfinetune_kd: done in {res['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
