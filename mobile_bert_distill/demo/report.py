"""The demo's ``REPORT.md``: what each stage produced, read back from its output files.

:func:`write_report` writes the real demo's report (and ``training_curves.png``)
from the files the stages left in the output folder; :func:`write_tiny_report`
the tiny demo's. Both only read: a missing result shows as ``-`` where it can.
"""

import json
import os
import platform
import sys
import time

from mobile_bert_distill.atomic import atomic_write_text
from mobile_bert_distill.demo.config import ROOT

SETUP_TIMES = ".mbd_setup_seconds"  # written into the venv by the Makefile: "venv N" / "install N"


def load_json(path, default=None):
    """The JSON in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _setup_times():
    path = os.path.join(sys.prefix, SETUP_TIMES)
    times = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    times[parts[0]] = float(parts[1])
    except (OSError, ValueError):
        pass
    return times


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _curves_plot(out, dirs, ev, model_rep):
    """training_curves.png: training-batch accuracy vs step, and the held-out accuracies as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["#555555", "#aaaaaa", "#d62728", "#1f77b4"]
    series = [("teacher-prep", "teacher_acc_tvocab", "teacher-prep, teacher-vocab head"),
              ("teacher-prep", "teacher_acc_svocab", "teacher-prep, student-vocab head"),
              ("nokd", "student_acc", "student nokd"), ("dual+up", "student_acc", "student dual+up")]
    for (run, key, label), color in zip(series, colors):
        hist = load_json(os.path.join(dirs[run], "history.json"), [])
        pts = [(r["step"], r[key]) for r in hist if key in r]
        if pts:
            a.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=".", label=label, color=color,
                   linestyle="--" if run == "teacher-prep" else "-")
    a.set_xlabel("step (teacher-prep and each distillation from 0)")
    a.set_ylabel("accuracy on training batches (%)\n(BERT masking: 10% of targets left in place)", fontsize=8)
    a.set_title("training")
    a.legend(fontsize=8)
    names = ["teacher\nteacher-vocab head", "teacher\nstudent-vocab head", "student\nnokd", "student\ndual+up"]
    vals = [ev["teacher"]["teacher_vocab_head_accuracy"], ev["teacher"]["student_vocab_head_accuracy"],
            ev["nokd"]["student_accuracy"], ev["dual+up"]["student_accuracy"]]
    b.bar(range(len(vals)), [100 * v for v in vals], color=colors)
    for i, v in enumerate(vals):
        b.text(i, 100 * v, f"{100 * v:.2f}", ha="center", va="bottom", fontsize=8)
    b.set_xticks(range(len(vals)), names, fontsize=8)
    b.set_ylabel("held-out masked-token accuracy (%)")
    b.set_title("held-out")
    fig.tight_layout()
    path = os.path.join(out, "training_curves.png")
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


def write_report(out, st, info):
    """Write ``out/REPORT.md`` (and ``out/training_curves.png``) of the real demo; return its path.

    Args:
        out: the output folder (``eval.json`` is read from it).
        st: the :class:`~mobile_bert_distill.demo.pipeline.Stages` that ran: this run's wall
            times and each stage's last real run (``stages.json``).
        info: what :func:`~mobile_bert_distill.demo.pipeline.run_real` knows: ``dirs`` and
            ``runs`` (run folders and resolved configs by run name), ``vocab_dir``,
            ``model_report``, ``bench_dir``, ``assets``, ``train``, ``held``, ``cache``,
            ``own_corpus``, ``teacher`` (its ``teacher_info.json``), ``t_start`` and ``load_start``.
    """
    from mobile_bert_distill.bench.report import comparison_rows

    dirs, runs = info["dirs"], info["runs"]
    ev = load_json(os.path.join(out, "eval.json"))
    summ = {n: load_json(os.path.join(d, "summary.json"), {}) for n, d in dirs.items()}
    vs = load_json(os.path.join(info["vocab_dir"], "vocab_stats.json"), {})
    rep = load_json(info["model_report"], {})
    bench = load_json(os.path.join(info["bench_dir"], "results.json"), {})
    cstats = None if info["own_corpus"] else load_json(os.path.join(info["cache"], "corpus", "corpus_stats.json"))
    par = rep.get("parity", {})
    t = info["teacher"]
    n_train = sum(1 for _ in open(info["train"], encoding="utf-8"))
    mb_train = os.path.getsize(info["train"]) / 1e6
    n_held = sum(1 for _ in open(info["held"], encoding="utf-8"))
    prep, kd_cfg = runs["teacher-prep"], runs["dual+up"]
    kd, nokd = ev["dual+up"]["student_accuracy"], ev["nokd"]["student_accuracy"]
    th_t, th_s = ev["teacher"]["teacher_vocab_head_accuracy"], ev["teacher"]["student_vocab_head_accuracy"]
    gate = kd > nokd
    verdict = (f"**PASSED**: the distilled (dual+up) student beats the nokd student on the same held-out "
               f"positions, {_pct(kd)} % vs {_pct(nokd)} % ({100 * (kd - nokd):+.2f} points)." if gate else
               f"**NOT PASSED**: the distilled (dual+up) student does NOT beat the nokd student in this run: "
               f"{_pct(kd)} % vs {_pct(nokd)} % ({100 * (kd - nokd):+.2f} points).")
    n_masked = ev["nokd"]["masked_tokens"]
    margin = round(kd * n_masked) - round(nokd * n_masked)
    se = 100 * ((kd * (1 - kd) + nokd * (1 - nokd)) / max(n_masked, 1)) ** 0.5
    noise = (f" The margin is {margin:+d} of {n_masked:,} masked pieces; the standard error of the difference "
             f"(unpaired, an upper bound for these paired scores) is about {se:.2f} points"
             + (", so this gap is within noise." if abs(100 * (kd - nokd)) < 2 * se else ", so the gap is larger "
                "than two standard errors."))
    teacher_better = th_s > max(kd, nokd)
    plot = _curves_plot(out, dirs, ev, rep)

    lines = ["# mobile-bert-distill demo report", ""]
    src = (f"your corpus `{info['own_corpus']}`" if info["own_corpus"] else
           "English text from Debian packages (`mbd data fetch-demo`: "
           + ", ".join(f"{k} {v.get('package', '')}" for k, v in (cstats or {}).get("sources", {}).items()) + ")")
    lines += [f"Data: {src}. Training slice: {n_train:,} lines ({mb_train:.1f} MB, the first "
              f"`demo.train_mb` of the shuffled training split); held-out: {n_held:,} lines of the held-out split "
              "(never trained on).",
              f"Teacher: `{t.get('package', '?')}` {t.get('package_version', '')} — BERT {t.get('num_layers')}×"
              f"{t.get('hidden_dim')}, {t.get('params', 0):,} parameters, bert-base-uncased vocabulary "
              f"({t.get('vocab_size', 0):,}), a sentence-embedding model without an MLM head.",
              f"Student: {summ['dual+up'].get('student_parameters', 0):,} parameters "
              f"({kd_cfg['student']['hidden_dim']}-d, {summ['dual+up'].get('shared_projection_shapes', 0)} "
              f"shared-projection shapes in training), vocabulary {vs.get('size', 0):,}.", ""]

    lines += [f"**This demo is a smoke run**: {kd_cfg['train']['steps']} training steps per student, sized for a "
              "2-core CPU, are too few for a student to learn much past the most frequent pieces, so the figures "
              "below show that every stage works, not how good the method is. What the method does at scale "
              "(a longer teacher preparation, students at two widths, several seeds): "
              f"[docs/results/table2.md]({os.path.relpath(os.path.join(ROOT, 'docs', 'results', 'table2.md'), out)}).",
              ""]
    lines += ["## Held-out masked-token accuracy", "",
              f"`mbd eval` on the held-out lines, sequence length {ev['nokd']['seq_len']}, fixed masking seed "
              f"{ev['nokd']['seed']}: both students are scored on exactly the same "
              f"{ev['nokd']['masked_tokens']:,} masked pieces. The teacher's heads are scored on the teacher's own "
              "segmentation (teacher-vocabulary head) and on the student segmentation (student-vocabulary head: "
              "the same pieces the students predict).", "",
              "| model | held-out accuracy (%) | masked pieces | training steps | batch | training s |",
              "|---|---:|---:|---:|---:|---:|",
              f"| teacher, teacher-vocabulary head (after teacher-prep) | {_pct(th_t)} | "
              f"{ev['teacher']['teacher_vocab_head_masked_tokens']:,} | {prep['train']['steps']} | "
              f"{prep['train']['batch_size']} | {summ['teacher-prep'].get('seconds', '-')} |",
              f"| teacher, student-vocabulary head (after teacher-prep) | {_pct(th_s)} | "
              f"{ev['teacher']['student_vocab_head_masked_tokens']:,} | | | |",
              f"| student, nokd (no teacher) | {_pct(nokd)} | {ev['nokd']['masked_tokens']:,} | "
              f"{summ['nokd'].get('steps')} | {runs['nokd']['train']['batch_size']} | {summ['nokd'].get('seconds')} |",
              f"| student, dual+up (distilled) | {_pct(kd)} | {ev['dual+up']['masked_tokens']:,} | "
              f"{summ['dual+up'].get('steps')} | {kd_cfg['train']['batch_size']} | {summ['dual+up'].get('seconds')} |",
              "", f"Quality gate: {verdict}{noise}",
              "" if teacher_better else "",
              ("The prepared teacher's student-vocabulary head is a better masked-LM than both students."
               if teacher_better else
               "**Note:** the prepared teacher's student-vocabulary head is NOT better than the students here."),
              ""]
    lines += ["Same for both students: data, sequence length, batch, steps, learning-rate schedule, seed "
              f"({kd_cfg['data']['seq_len']} tokens, batch {kd_cfg['train']['batch_size']}, "
              f"{kd_cfg['train']['steps']} steps, lr {kd_cfg['train']['learning_rate']}, seed {kd_cfg['seed']}). "
              f"dual+up: p_dt {kd_cfg['dual']['p_dt']}"
              + (f" (ramp from {kd_cfg['dual']['p_dt_start']} over {kd_cfg['dual']['ramp_steps']} steps)"
                 if kd_cfg['dual']['ramp_steps'] else "")
              + f", ε {kd_cfg['loss']['epsilon']}, teacher encoder "
              + ("trained" if kd_cfg["teacher"]["trainable"] else "frozen")
              + f"; teacher-prep: {prep['train']['steps']} steps, lr {prep['train']['learning_rate']}, encoder "
              + ("trained" if prep["teacher"]["trainable"] else "frozen") + ". The resolved configs: `configs/` in this folder.", ""]

    lines += ["## Vocabulary", "", "| | student | teacher |", "|---|---:|---:|",
              f"| size | {vs.get('size', 0):,} | {vs.get('teacher_size', 0):,} |",
              f"| pieces per word (training slice) | {vs['student_on_corpus']['pieces_per_word']:.3f} | "
              f"{vs['teacher_on_corpus']['pieces_per_word']:.3f} |",
              f"| [UNK] rate | {vs['student_on_corpus']['unk_rate']:.4%} | {vs['teacher_on_corpus']['unk_rate']:.4%} |",
              "", f"{vs.get('overlap_with_teacher', 0):.1%} of the student's pieces are teacher pieces (paper: 93.9%).",
              ""]

    if par:
        lines += [f"## {rep.get('quantization')} export vs the float student", "",
                  f"`mbd export` of the dual+up student, static sequence length {rep.get('seq_len')}, "
                  f"calibrated on {rep.get('calibration', {}).get('sequences', '-')} held-out sequences; parity on "
                  f"{par.get('sequences')} other held-out sequences ({par.get('masked_tokens', 0):,} masked "
                  "tokens) against the float Keras student.", "",
                  "| | value |", "|---|---:|",
                  f"| top-1 agreement int8 vs float | {_pct(par.get('top1_agreement'))} % |",
                  *([f"| … where float's top-2 logit gap ≥ {par['near_tie_gap']:g} "
                     f"({_pct(1 - par['near_tie_fraction'])} % of tokens) | {_pct(par['top1_agreement_clear'])} % |"]
                    if par.get("top1_agreement_clear") is not None else []),
                  f"| masked-token accuracy, float Keras | {_pct(par.get('float_accuracy'))} % |",
                  f"| masked-token accuracy, {rep.get('quantization')} LiteRT | {_pct(par.get('tflite_accuracy'))} % |",
                  f"| max / mean abs logit difference | {par.get('max_abs_logit_diff', 0):.3g} / "
                  f"{par.get('mean_abs_logit_diff', 0):.3g} |",
                  f"| file size | {rep.get('size_mb', 0):.2f} MB ({rep.get('params', 0):,} parameters) |",
                  f"| XNNPACK partitions | {rep.get('xnnpack', {}).get('delegate_partitions', '-')} |", "",
                  f"Android assets: `{os.path.relpath(info['assets'], ROOT)}/` (model.tflite, vocab.txt, "
                  "model_info.json)." if info["assets"] else "", ""]

    rows = comparison_rows(bench) if bench else []
    if rows:
        lines += ["## Size and latency vs BERT-base", "",
                  "`mbd bench`: each model in a fresh process, valid inputs, 1 thread unless stated; BERT-base "
                  "(12×768, 30,522 vocabulary) randomly initialised (speed and size do not depend on its weights) "
                  "and exported with the same exporter and quantization. p50 is the process CPU time per inference "
                  "(not inflated by other processes on a shared machine); wall-clock p50 beside it.", "",
                  "| seq | threads | student p50 ms (wall) | BERT-base p50 ms (wall) | speed-up | student MB | "
                  "BERT-base MB | smaller by | FLOPs ratio |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['seq_len']} | {r['threads']} | {r['model_cpu_p50_ms']:.2f} ({r['model_p50_ms']:.2f}) | "
                         f"{r['baseline_cpu_p50_ms']:.1f} ({r['baseline_p50_ms']:.1f}) | {r['latency_x_cpu']:.1f}× | "
                         f"{r['model_size_mb']:.2f} | {r['baseline_size_mb']:.1f} | {r['size_x']:.1f}× | "
                         + (f"{r['flops_x']:.0f}×" if r.get("flops_x") else "-") + " |")
        lines += ["", "Full benchmark report: `bench/REPORT.md`.", ""]

    setup = _setup_times()
    lines += ["## Stage wall times", "",
              f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}; load "
              f"average (1 min) {info['load_start'][0]:.2f} when this run started, {os.getloadavg()[0]:.2f} at "
              "its end. Other processes on the machine slow every stage: the CPU seconds (this process and its "
              "children, all cores) show the work itself.", "",
              "| stage | this run: wall s | last real run: wall s | CPU s | load average at its end |",
              "|---|---:|---:|---:|---:|"]
    total_wall = total_cpu = 0.0
    for key, label in (("venv", "create .venv (make)"), ("install", "install (make)")):
        if key in setup:
            lines.append(f"| {label} | | {setup[key]:.0f} | | |")
            total_wall += setup[key]
    for name, secs in st.times.items():
        s = st.state.get(name, {})
        total_wall += s.get("seconds", 0.0)
        total_cpu += s.get("cpu_seconds", 0.0)
        lines.append(f"| {name} | {'cached' if secs == 0 else f'{secs:.0f}'} | {s.get('seconds', '-')} | "
                     f"{s.get('cpu_seconds', '-')} | {s.get('load_average_1m', '-')} |")
    lines += [f"| **total** | {time.time() - info['t_start']:.0f} | {total_wall:.0f} | {total_cpu:.0f} | |", "",
              "\"this run\": this invocation (cached stages are skipped); \"last real run\": each stage's last "
              "actual run — the sum is the cost of a run from scratch (set-up included when the Makefile "
              "recorded it).", ""]
    lines += ["## Plots", "", f"![training curves and held-out accuracy]({os.path.relpath(plot, out)})", ""]
    for png in ("latency_vs_seq.png", "size_vs_latency.png"):
        if os.path.exists(os.path.join(info["bench_dir"], png)):
            lines.append(f"![{png}](bench/{png})")
    lines.append("")
    path = os.path.join(out, "REPORT.md")
    atomic_write_text(path, "\n".join(lines))
    return path


def write_tiny_report(out, st, results, runs, train, vocab_dir):
    """Write ``out/REPORT.md`` of the tiny demo and return its path.

    Args:
        out: the output folder.
        st: the :class:`~mobile_bert_distill.demo.pipeline.Stages` that ran (its wall times).
        results: the held-out evaluation: ``{"nokd": ..., "dual+up": ..., "teacher": ...}``.
        runs: ``{mode: run folder}`` of the two students (each has a ``summary.json``).
        train: the training text (its line count is reported).
        vocab_dir: the student vocabulary folder (its ``vocab_stats.json``).
    """
    vocab_stats = json.load(open(os.path.join(vocab_dir, "vocab_stats.json"), encoding="utf-8"))
    summ = {m: json.load(open(os.path.join(d, "summary.json"), encoding="utf-8")) for m, d in runs.items()}
    kd, base_acc = results["dual+up"]["student_accuracy"], results["nokd"]["student_accuracy"]
    verdict = ("the distilled student beats the nokd baseline" if kd > base_acc else
               "the distilled student does NOT beat the nokd baseline in this run")
    report = f"""# mobile-bert-distill demo report (tiny built-in configuration)

Generated text ({len(open(train, encoding='utf-8').readlines())} training lines), a randomly initialised
2-layer teacher trained jointly with a 2-layer 16-d student. This demo shows the pipeline working end
to end; it says nothing about quality at real scale.

## Vocabulary
| | student | teacher |
|---|---|---|
| size | {vocab_stats['size']} | {vocab_stats.get('teacher_size')} |
| pieces per word | {vocab_stats['student_on_corpus']['pieces_per_word']:.3f} | {vocab_stats['teacher_on_corpus']['pieces_per_word']:.3f} |
| [UNK] rate | {vocab_stats['student_on_corpus']['unk_rate']:.4%} | {vocab_stats['teacher_on_corpus']['unk_rate']:.4%} |

Overlap: {vocab_stats['overlap_with_teacher']:.1%} of the student's pieces are teacher pieces (paper: 93.9%).

## Held-out masked-token accuracy (same masked positions for both students)
| model | accuracy | masked pieces | train steps | train seconds |
|---|---|---|---|---|
| student, nokd | {base_acc:.4f} | {results['nokd']['masked_tokens']} | {summ['nokd']['steps']} | {summ['nokd']['seconds']} |
| student, dual+up | {kd:.4f} | {results['dual+up']['masked_tokens']} | {summ['dual+up']['steps']} | {summ['dual+up']['seconds']} |
| teacher, teacher-vocabulary head | {results['teacher']['teacher_vocab_head_accuracy']:.4f} | {results['teacher']['teacher_vocab_head_masked_tokens']} | | |
| teacher, student-vocabulary head | {results['teacher']['student_vocab_head_accuracy']:.4f} | {results['teacher']['student_vocab_head_masked_tokens']} | | |

Verdict: {verdict} ({kd:.4f} vs {base_acc:.4f}).

## Stage times (s)
""" + "\n".join(f"- {k}: {v:.0f}" for k, v in st.times.items()) + "\n"
    path = os.path.join(out, "REPORT.md")
    atomic_write_text(path, report)
    return path
