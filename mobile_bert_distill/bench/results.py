"""Results documents of ``mbd bench`` and ``on_device_bench.py``: analysis, reading, merging.

Example::

    from mobile_bert_distill.bench.results import load_document, merge
    doc = merge(load_document("bench/results.json"), load_document("pi5.json"))
"""

from __future__ import annotations

import json
import os

from mobile_bert_distill.bench import flops as flops_mod
from mobile_bert_distill.bench.params import param_counts
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert import on_device_bench as lb

def analyse_model(record, architecture=None, architecture_source=None):
    """Fill ``architecture``, ``params`` and ``flops_analytic`` of a model record in place."""
    cfg = architecture
    source = architecture_source
    if cfg is None and record.get("path") and os.path.isfile(record["path"]):
        try:
            cfg = flops_mod.infer_architecture(lb.Graph.from_file(record["path"]))
            source = "inferred from the graph"
        except lb.BenchError:
            cfg = None
    if cfg is None or record.get("task") not in ("mlm", "encoder") or not record.get("static_seq_len"):
        return record
    record["architecture"] = {**cfg.to_dict(), "source": source or "given"}
    counts = param_counts(cfg)
    record["params"] = {"backbone_with_pooler": counts["backbone_with_pooler"],
                        "masked_lm": counts["masked_lm"], "paper_total": counts["paper_total"],
                        "exported": counts["masked_lm"] if record["task"] == "mlm"
                        else counts["backbone_with_pooler"]}
    analytic = flops_mod.analytic_flops(cfg, record["static_seq_len"], record["task"])
    analytic["comparison"] = flops_mod.compare(analytic, record["flops_counted"])
    record["flops_analytic"] = analytic
    return record


def load_document(path):
    """Read and check a results document (``mbd bench`` or ``on_device_bench.py``)."""
    if not os.path.isfile(path):
        raise UserError(f"results file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a JSON results file ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != lb.SCHEMA:
        raise UserError(f"{path} is not a benchmark results file (schema {lb.SCHEMA!r} expected)")
    for key in ("models", "results", "host"):
        if not isinstance(doc.get(key), (list, dict)):
            raise UserError(f"{path}: missing '{key}'")
    return doc


def merge(doc, board, board_name=None):
    """Add a board's results to ``doc``; models are matched by sha256 (same file, same label)."""
    source = board_name or board.get("host", {}).get("hostname") or "board"
    known = {m["sha256"]: m for m in doc["models"]}
    labels = {}
    for m in board["models"]:
        if m["sha256"] in known:
            labels[m["sha256"]] = known[m["sha256"]]["label"]
            continue
        m = dict(m)
        m["source"] = m.get("source") or source
        doc["models"].append(m)
        known[m["sha256"]] = m
        labels[m["sha256"]] = m["label"]
    existing = {(r.get("source"), r["sha256"], r["seq_len"], r["threads"]) for r in doc["results"]}
    for r in board["results"]:
        r = dict(r)
        r["source"] = r.get("source") or source
        r["model"] = labels.get(r["sha256"], r["model"])
        r["host"] = {k: board["host"].get(k) for k in ("hostname", "machine", "processor", "cpu_count")}
        key = (r["source"], r["sha256"], r["seq_len"], r["threads"])
        if key not in existing:
            doc["results"].append(r)
            existing.add(key)
    doc.setdefault("merged", []).append({"source": source, "host": board["host"], "created": board.get("created")})
    return doc
