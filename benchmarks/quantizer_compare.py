"""Compare ai-edge-quantizer (AEQ) files with the kit's own exports of one trained student.

The kit's ``float32``, ``dynamic`` and ``int8`` files are written with
:func:`mobile_bert_distill.export.export_student` (what ``mbd export`` runs: the
corpus split, calibration and parity sequences are the same). The AEQ files are
made by ai-edge-quantizer from the kit's float32 file, with its ready-made recipes
(``dynamic_wi8_afp32``, ``weight_only_wi8_afp32``, ``dynamic_wi4_afp32``,
``static_wi8_ai8``) and one mixed recipe: the feed-forward FULLY_CONNECTEDs in
int4 channelwise, the other FULLY_CONNECTEDs in int8 channelwise (both dynamic)
and the GATHER embedding tables in static int8 (``ffn4_fc8_gather8``).

For every file it reports: size; XNNPACK partitions and the ops left outside the
delegate (beyond those the float32 file leaves outside); the stored dtype of the
FULLY_CONNECTED weights and of the token embedding table; p50 latency with one
thread, batch 1 (the files timed in interleaved rounds, so that background load
hits all of them alike); top-1 agreement with the kit float32 file at the
``[MASK]`` positions of held-out sequences (all tokens, and the clear tokens whose
float top-2 logit gap is at least 0.5); each file's masked-token accuracy. The
output also records the CPU model and its SIMD flags: int8/int4 kernels rank
differently on CPUs with VNNI or Arm dot-product instructions.

ai-edge-quantizer is imported only here (``pip install ai-edge-quantizer==0.10.0``).

``--mixed-mb`` adds the kit's own ``mixed`` mode (``mbd export --quantization mixed``:
float16/int8/int4 per weight matrix by Hessian sensitivity, through AEQ) at the given sizes.

Run (about 4 minutes on 2 cores for the 6 x 48 student, most of it the kit's exports)::

    .venv/bin/python benchmarks/quantizer_compare.py \\
        --student benchmarks/results/table2_cpu/runs/48d_tinybert_seed0/student \\
        --corpus demo_out/data/heldout.txt --work bench/quantizer_compare --mixed-mb 0.768,0.8 \\
        --json docs/results/quantizer_compare.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
from importlib import metadata

import numpy as np

KIT_MODES = ("float32", "dynamic", "int8")


def _named(name):
    """An AEQ ready-made recipe (a function of ``ai_edge_quantizer.recipe``)."""
    def configure(aeq, q, ffn_regex):
        q.load_quantization_recipe(getattr(aeq.recipe, name)())
    return configure


def ffn4_fc8_gather8(aeq, q, ffn_regex):
    """FFN FCs int4 channelwise, other FCs int8 channelwise (dynamic), GATHER tables static int8.

    AEQ matches ``regex`` against an op's scope (its output tensor names joined by ``;``, plus a
    trailing ``;``); a later entry wins. GATHER is quantized only by static configs in AEQ 0.10.0.
    """
    G, OP = aeq.qtyping.QuantGranularity, aeq.qtyping.TFLOperationName
    q.add_dynamic_config(regex=".*", operation_name=OP.FULLY_CONNECTED, num_bits=8, granularity=G.CHANNELWISE)
    q.add_dynamic_config(regex=ffn_regex, operation_name=OP.FULLY_CONNECTED, num_bits=4,
                         granularity=G.CHANNELWISE)
    q.add_static_config(regex=".*", operation_name=OP.GATHER, activation_num_bits=8, weight_num_bits=8)


AEQ_RECIPES = {
    "dynamic_wi8_afp32": _named("dynamic_wi8_afp32"),
    "weight_only_wi8_afp32": _named("weight_only_wi8_afp32"),
    "dynamic_wi4_afp32": _named("dynamic_wi4_afp32"),
    "static_wi8_ai8": _named("static_wi8_ai8"),
    "ffn4_fc8_gather8": ffn4_fc8_gather8,
}

INSTALL_HINT = "pip install ai-edge-quantizer==0.10.0"


def import_aeq():
    """The ai_edge_quantizer modules this script uses, or ``None`` when it is not installed."""
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
    except ImportError:
        return None
    return argparse.Namespace(qtyping=qtyping, quantizer=quantizer, recipe=recipe)


def cpu_info():
    """CPU model, the SIMD flags that matter to XNNPACK's int8/int4 kernels, and the full flag list."""
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware") and model == "unknown":
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    simd = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")
    return {"model": model, "cores": os.cpu_count(),
            "simd": {name: name in flags for name in simd}, "flags": " ".join(flags)}


def load_feeds(student, corpus, seq_len, num_calibration, num_parity, seed=0):
    """Calibration and parity sequences exactly as :func:`export_student` draws them."""
    from mobile_bert_distill.export import corpus_sequences, find_preset_vocab, read_calibration_text
    from mobile_bert_distill.text.corpus import split_corpus
    from mobile_bert_distill.text.wordpiece import WordPiece

    tok = WordPiece(find_preset_vocab(student))
    calib_lines, heldout = split_corpus(read_calibration_text(corpus))
    calib, _ = corpus_sequences(calib_lines, tok, seq_len, num_calibration, seed=seed)
    parity, labels = corpus_sequences(heldout, tok, seq_len, num_parity, seed=seed + 1)
    return calib, parity, labels, tok.special_id("[MASK]")


def ffn_scope_regex(float_path, student):
    """An exact regex over the scopes of the feed-forward FCs (weights ``[I, H]`` or ``[H, I]``)."""
    from mobile_bert_distill.litert.on_device_bench import Graph

    with open(os.path.join(student, "config.json")) as f:
        cfg = json.load(f)["config"]
    ffn_shapes = ([cfg["intermediate_dim"], cfg["hidden_dim"]], [cfg["hidden_dim"], cfg["intermediate_dim"]])
    g = Graph.from_file(float_path)
    scopes = [";".join(g.tensors[t]["name"] for t in op["outputs"]) + ";" for op in g.ops
              if op["type"] == "FULLY_CONNECTED" and g.tensors[op["inputs"][1]]["shape"] in ffn_shapes]
    if not scopes:
        raise ValueError(f"no feed-forward FULLY_CONNECTED of shape {ffn_shapes} in {float_path}")
    return "^(" + "|".join(re.escape(s) for s in scopes) + ")$", len(scopes)


def aeq_quantize(aeq, float_path, out_path, name, ffn_regex, calib):
    """Write ``out_path`` from the kit float32 file with AEQ recipe ``name``; return seconds taken."""
    t = time.time()
    q = aeq.quantizer.Quantizer(float_path)
    AEQ_RECIPES[name](aeq, q, ffn_regex)
    result = None
    if q.need_calibration:
        samples = [{k: v[i : i + 1] for k, v in calib.items()} for i in range(len(calib["input_ids"]))]
        result = q.calibrate({"serving_default": samples}, num_threads=1)
    q.quantize(result, enable_progress_report=False).export_model(out_path, overwrite=True)
    return time.time() - t


def masked_logits(path, feeds, where, chunk=16):
    """The file's logits at the ``where`` positions, ``[M, V]`` float32 (XNNPACK, 1 thread)."""
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    interp, _ = load_interpreter(path, num_threads=1)
    out = []
    for s in range(0, len(where), chunk):
        logits = run_batches(interp, {k: v[s : s + chunk] for k, v in feeds.items()})["logits"]
        out.append(logits[where[s : s + chunk]])
    return np.concatenate(out)


def time_files(paths, feed, *, rounds, per_round, warmup=3):
    """Interleaved single-thread latency of ``invoke()`` (inputs set once); ``{path: (p50, p90) ms}``."""
    from mobile_bert_distill.litert.tools import load_interpreter, signature_runner

    interps = {}
    for p in paths:
        interp, _ = load_interpreter(p, num_threads=1)
        for name, d in signature_runner(interp).get_input_details().items():
            interp.set_tensor(d["index"], feed[name].astype(d["dtype"]))
        for _ in range(warmup):
            interp.invoke()
        interps[p] = interp
    samples = {p: [] for p in paths}
    for _ in range(rounds):
        for p, interp in interps.items():
            for _ in range(per_round):
                t = time.perf_counter()
                interp.invoke()
                samples[p].append(1000 * (time.perf_counter() - t))
    return {p: (float(np.percentile(s, 50)), float(np.percentile(s, 90))) for p, s in samples.items()}


def measure(files, parity_feeds, labels, mask_id, *, rounds, per_round):
    """One row per file (``files``: ``{label: path}``, the kit float32 file first)."""
    from mobile_bert_distill.export import inspect_tflite, parity
    from mobile_bert_distill.litert.on_device_bench import Graph

    where = parity_feeds["input_ids"] == mask_id
    m = int(where.sum())  # parity() scores the masked positions; only those are kept, as one row
    packed = {"input_ids": np.full((1, m), mask_id, np.int32), "padding_mask": np.ones((1, m), np.int32)}
    truth = labels[where][None]
    timing = time_files(list(files.values()), {k: v[:1] for k, v in parity_feeds.items()},
                        rounds=rounds, per_round=per_round)
    rows, ref, base_outside = [], None, None
    for label, path in files.items():
        logits = masked_logits(path, parity_feeds, where)
        if ref is None:
            ref = logits
        par = parity("mlm", {"logits": ref[None]}, {"logits": logits[None]}, packed, labels=truth, mask_id=mask_id)
        xnn = inspect_tflite(path)["xnnpack"]
        outside = xnn["ops_outside_delegate"]
        base_outside = outside if base_outside is None else base_outside
        extra = {k: n - base_outside.get(k, 0) for k, n in outside.items() if n > base_outside.get(k, 0)}
        rows.append({
            "file": label, "path": os.path.abspath(path),
            "size_mb": round(os.path.getsize(path) / 1e6, 3),
            "xnnpack_partitions": xnn["delegate_partitions"],
            "ops_outside_xnnpack": outside, "ops_outside_beyond_float32": extra,
            **Graph.from_file(path).stored_weight_types(),
            "p50_ms": round(timing[path][0], 3), "p90_ms": round(timing[path][1], 3),
            "masked_tokens": par["masked_tokens"],
            "top1_agreement": round(par["top1_agreement"], 4),
            "top1_agreement_clear": par["top1_agreement_clear"] and round(par["top1_agreement_clear"], 4),
            "near_tie_fraction": round(par["near_tie_fraction"], 4),
            "max_abs_logit_diff": round(par["max_abs_logit_diff"], 4),
            "mean_abs_logit_diff": round(par["mean_abs_logit_diff"], 5),
            "masked_accuracy": round(par["tflite_accuracy"], 4),
        })
    return rows


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"


def print_table(rows, cpu):
    print(f"\nCPU: {cpu['model']} ({cpu['cores']} cores); "
          + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in cpu["simd"].items()))
    head = (f"{'file':<27} {'MB':>6} {'parts':>5} {'p50 ms':>7} {'agree':>6} {'clear':>6} {'acc':>6}  "
            f"{'FC weights':<20} {'table':<7} outside XNNPACK (beyond float32)")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['file']:<27} FAILED: {r['error']}")
            continue
        fc = " ".join(f"{k}:{n}" for k, n in r["fc_weights"].items())
        out = ", ".join(f"{k} {n}" for k, n in r["ops_outside_beyond_float32"].items()) or "-"
        print(f"{r['file']:<27} {r['size_mb']:>6.3f} {r['xnnpack_partitions']:>5} {r['p50_ms']:>7.2f} "
              f"{r['top1_agreement']:>6.4f} {_fmt(r['top1_agreement_clear']):>6} {r['masked_accuracy']:>6.4f}  "
              f"{fc:<20} {r['embedding_table'] or '-':<7} {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", required=True, help="trained student preset folder (what `mbd distill` writes)")
    ap.add_argument("--corpus", required=True, help="text file: every 10th line is held out for parity, "
                                                    "the rest calibrates (as in `mbd export`)")
    ap.add_argument("--work", default="bench/quantizer_compare", help="folder for the .tflite files")
    ap.add_argument("--kit", default=",".join(KIT_MODES), help="kit modes (float32 is always made: "
                                                               "the reference and AEQ's input)")
    ap.add_argument("--recipes", default=",".join(AEQ_RECIPES), help="comma-separated subset of "
                                                                      + ",".join(AEQ_RECIPES))
    ap.add_argument("--mixed-mb", default="", help="comma-separated target sizes (MB) of the kit's `mixed` "
                                                   "mode (Hessian-guided float16/int8/int4), e.g. 0.768,0.8")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200, help="calibration sequences (kit int8 and AEQ)")
    ap.add_argument("--parity", type=int, default=200, help="held-out sequences for agreement and accuracy")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--per-round", type=int, default=30, help="invokes per file and round")
    ap.add_argument("--json", help="where to write the results (default WORK/quantizer_compare.json)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in AEQ_RECIPES]
    if unknown:
        ap.error(f"unknown recipe(s) {','.join(unknown)}; choose from {','.join(AEQ_RECIPES)}")
    aeq = import_aeq()
    if aeq is None:
        print(f"quantizer_compare.py: error: ai-edge-quantizer is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2

    from mobile_bert_distill.export import export_student

    os.makedirs(args.work, exist_ok=True)
    cpu = cpu_info()
    calib, parity_feeds, labels, mask_id = load_feeds(args.student, args.corpus, args.seq_len,
                                                      args.calibration, args.parity)
    files, errors, seconds = {}, {}, {}
    for mode in ["float32"] + [m for m in args.kit.split(",") if m and m != "float32"]:
        out = os.path.join(args.work, f"kit_{mode}.tflite")
        t = time.time()
        export_student(args.student, out, task="mlm", quantization=mode, seq_len=args.seq_len,
                       calibration_corpus=args.corpus, num_calibration=args.calibration,
                       num_parity=args.parity, overwrite=True)
        seconds[f"kit_{mode}"] = round(time.time() - t, 1)
        files[f"kit {mode}"] = out
        print(f"kit {mode}: exported in {seconds[f'kit_{mode}']:.0f}s", flush=True)
    for target in [float(x) for x in args.mixed_mb.split(",") if x]:
        out = os.path.join(args.work, f"kit_mixed_{target:g}.tflite")
        t = time.time()
        export_student(args.student, out, task="mlm", quantization="mixed", target_size_mb=target,
                       seq_len=args.seq_len, calibration_corpus=args.corpus, num_calibration=args.calibration,
                       num_parity=args.parity, overwrite=True)
        seconds[f"kit_mixed_{target:g}"] = round(time.time() - t, 1)
        files[f"kit mixed {target:g} MB"] = out
        print(f"kit mixed {target:g} MB: exported in {seconds[f'kit_mixed_{target:g}']:.0f}s", flush=True)
    float_path = files["kit float32"]
    ffn_regex, n_ffn = ffn_scope_regex(float_path, args.student)
    for name in recipes:
        out = os.path.join(args.work, f"aeq_{name}.tflite")
        try:
            seconds[f"aeq_{name}"] = round(aeq_quantize(aeq, float_path, out, name, ffn_regex, calib), 1)
            files[f"aeq {name}"] = out
            print(f"aeq {name}: quantized in {seconds[f'aeq_{name}']:.0f}s", flush=True)
        except Exception as e:  # a recipe that refuses the model is a result, not a crash
            errors[f"aeq {name}"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"aeq {name}: FAILED {errors[f'aeq {name}']}", flush=True)

    rows = measure(files, parity_feeds, labels, mask_id, rounds=args.rounds, per_round=args.per_round)
    rows += [{"file": k, "error": v} for k, v in errors.items()]
    versions = {}
    for pkg in ("ai-edge-quantizer", "ai-edge-litert", "tensorflow", "keras", "keras-hub", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    doc = {
        "command": "python benchmarks/quantizer_compare.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "student": os.path.abspath(args.student), "corpus": os.path.abspath(args.corpus),
        "seq_len": args.seq_len, "calibration_sequences": args.calibration, "parity_sequences": args.parity,
        "mask_id": int(mask_id), "threads": 1, "timing": {"rounds": args.rounds, "per_round": args.per_round},
        "ffn_fully_connected": n_ffn, "cpu": cpu, "versions": versions, "seconds": seconds, "files": rows,
    }
    path = args.json or os.path.join(args.work, "quantizer_compare.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print_table(rows, cpu)
    print(f"\nagree/clear: top-1 agreement with kit float32 at the [MASK] positions (clear: float top-2 gap "
          f">= 0.5; {rows[0]['near_tie_fraction']:.0%} of {rows[0]['masked_tokens']} are near-ties); "
          f"acc: masked-token accuracy\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
