"""PNG plots of a benchmark results document (matplotlib, no display needed).

* ``latency_vs_seq.png``: p50 latency against sequence length, one line per
  (model, device, threads), log scale;
* ``size_vs_latency.png``: file size against p50 latency, one point per
  model (longest common sequence length, fewest threads), with the 7 MB line.

For 1-thread results the plotted p50 is the process CPU time per ``invoke()``
(equal to the wall clock on an idle machine, and unaffected by other
processes on a shared one); multi-thread results use the wall clock.

Example::

    import json
    from mobile_bert_distill.bench.plots import write_plots
    write_plots(json.load(open("bench/results.json")), "bench")
"""

from __future__ import annotations

import os

from mobile_bert_distill.atomic import atomic_file

SIZE_LINE_MB = 7.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_ticks(axis, lo, hi):
    """Plain numbers on a log axis; minor ticks labelled only when it spans < 1.5 decades."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(fmt if hi / max(lo, 1e-12) < 30 else NullFormatter())


def _save(fig, path):
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def p50(result):
    """The plotted latency: CPU-time p50 for 1 thread (robust to load), else wall-clock p50."""
    if result["threads"] == 1 and result.get("cpu_ms"):
        return result["cpu_ms"]["p50"]
    return result["latency_ms"]["p50"]


AXIS_NOTE = "p50 latency, ms (1 thread: CPU time per invoke)"


def latency_vs_seq(doc, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lines = {}
    for r in doc["results"]:
        lines.setdefault((r["model"], r.get("source") or "", r["threads"]), []).append(
            (r["seq_len"], p50(r)))
    styles = ["-", "--", ":", "-."]
    threads = sorted({k[2] for k in lines})
    for (model, source, t), pts in sorted(lines.items()):
        pts.sort()
        device = "" if source.startswith("host") or not source else f" @{source}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                linestyle=styles[threads.index(t) % len(styles)],
                label=f"{model}{device}, {t} thr")
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis, *ax.get_ylim())
    ax.set_xticks(sorted({r["seq_len"] for r in doc["results"]}))
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel(AXIS_NOTE + ", log")
    ax.set_title("Latency vs sequence length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    plt.close(fig)


def size_vs_latency(doc, path):
    plt = _plt()
    by_model = {}
    for r in doc["results"]:
        by_model.setdefault((r["model"], r.get("source") or ""), []).append(r)
    seqs = set.intersection(*[{r["seq_len"] for r in rs} for rs in by_model.values()]) if by_model else set()
    seq = max(seqs) if seqs else None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = {m["sha256"]: m["size_bytes"] / 1e6 for m in doc["models"]}
    for (model, source), rs in sorted(by_model.items()):
        pool = [r for r in rs if seq is None or r["seq_len"] == seq]
        if not pool:
            pool = rs
        r = min(pool, key=lambda r: (r["threads"], -r["seq_len"]))
        x, y = p50(r), sizes.get(r["sha256"])
        if y is None:
            continue
        device = "" if source.startswith("host") or not source else f" @{source}"
        ax.scatter([x], [y], s=40)
        ax.annotate(f"{model}{device}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.axhline(SIZE_LINE_MB, color="red", linestyle="--", linewidth=1, label="7 MB")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, SIZE_LINE_MB / 2), max(hi, SIZE_LINE_MB * 2))
    _plain_ticks(ax.xaxis, *ax.get_xlim())
    _plain_ticks(ax.yaxis, *ax.get_ylim())
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"{AXIS_NOTE}, log{f', seq {seq}' if seq else ''}, fewest threads")
    ax.set_ylabel("model file size (MB, log)")
    ax.set_title("Size vs latency")
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


PLOT_FILES = ("latency_vs_seq.png", "size_vs_latency.png")


def write_plots(doc, out):
    """Write both plots (:data:`PLOT_FILES`) into ``out``; return their file names (relative to ``out``)."""
    if not doc["results"]:
        return []
    names = list(PLOT_FILES)
    latency_vs_seq(doc, os.path.join(out, names[0]))
    size_vs_latency(doc, os.path.join(out, names[1]))
    return names
