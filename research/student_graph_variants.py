#!/usr/bin/env python3
"""Which export graph runs the 48-d student fastest? Same weights, several graphs, one run.

Exports one random-init 12-layer 48-d student (4928 WordPieces) through the
kit's exporter with each :class:`~mobile_bert_distill.export.graph.GraphOptions`
variant and quantization mode below, then times them interleaved (``--rounds``)
at seq 128, 1 thread, and prints a table sorted by p50. Variants marked
"model change" alter the architecture (head count), not just the graph:
they are a trade-off to weigh against quality, listed for scale.

Usage::

    python research/student_graph_variants.py --out bench/variants --runs 30 --rounds 3
"""

import argparse
import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mobile_bert_distill import bench
from mobile_bert_distill.litert import on_device_bench as lb  # noqa: E402
from mobile_bert_distill.atomic import atomic_write_json  # noqa: E402


def variants():
    from mobile_bert_distill.export.graph import GraphOptions

    base = GraphOptions()
    out = [("default", 4, base)]
    for name, change in (("attention=heads", {"attention": "heads"}),
                         ("fuse_qkv", {"fuse_qkv": True}),
                         ("attention=heads+fuse_qkv", {"attention": "heads", "fuse_qkv": True}),
                         ("no LayerNorm epsilon op", {"layer_norm_epsilon": False}),
                         ("gelu=tanh", {"gelu": "tanh"})):
        fields = {f.name for f in dataclasses.fields(GraphOptions)}
        if set(change) <= fields:
            out.append((name, 4, dataclasses.replace(base, **change)))
    out += [("2 heads (model change)", 2, base), ("1 head (model change)", 1, base)]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench/variants")
    p.add_argument("--modes", default="dynamic,float32")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seq-len", type=int, default=128)
    args = p.parse_args(argv)
    import keras
    import keras_hub
    import numpy as np

    from mobile_bert_distill.export import export_keras_model

    os.makedirs(args.out, exist_ok=True)
    models, meta = [], {}
    for heads in sorted({h for _, h, _ in variants()}):
        keras.utils.set_random_seed(48)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=4928, num_layers=12, num_heads=heads, hidden_dim=48, intermediate_dim=192,
            dropout=0.0, max_sequence_length=512)
        bench.perturb_constant_weights(backbone, np.random.default_rng(48))
        for name, h, options in variants():
            if h != heads:
                continue
            for mode in args.modes.split(","):
                slug = "".join(c if c.isalnum() else "_" for c in f"{name}_{mode}")
                path = os.path.join(args.out, f"s48_{slug}.tflite")
                if not os.path.isfile(path):
                    print(f"exporting {name} ({mode})", file=sys.stderr, flush=True)
                    export_keras_model(backbone, path, task="encoder", quantization=mode,
                                       seq_len=args.seq_len, graph_options=options, num_parity=4,
                                       num_calibration=16, write_report=False)
                label = f"{name} | {mode}"
                models.append((label, [path]))
                meta[label] = {"variant": name, "mode": mode, "heads": h, "graph_options": options.to_dict()}
    doc = lb.run_benchmark(models, [args.seq_len], [1], args.runs, args.warmup, tool="student_graph_variants",
                           rounds=args.rounds,
                           progress=lambda label, *_: print(f"timing {label}", file=sys.stderr, flush=True))
    rows = []
    for r in doc["results"]:
        m = next(m for m in doc["models"] if m["sha256"] == r["sha256"])
        rows.append({**meta[r["model"]], "p50_ms": r["latency_ms"]["p50"], "min_ms": r["latency_ms"]["min"],
                     "ops": m["num_ops"], "size_mb": m["size_bytes"] / 1e6,
                     "xnnpack_partitions": r["xnnpack_partitions"], "load_avg_1m": r["load_avg_1m"]})
    rows.sort(key=lambda r: r["p50_ms"])
    atomic_write_json(os.path.join(args.out, "variants.json"), {"host": doc["host"], "rows": rows})
    print("| variant | mode | ops | XNNPACK partitions | p50 ms | min ms | size MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['mode']} | {r['ops']} | {r['xnnpack_partitions']} | {r['p50_ms']:.3f} | "
              f"{r['min_ms']:.3f} | {r['size_mb']:.2f} |")
    print(json.dumps({"load_avg_1m": [r["load_avg_1m"] for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
