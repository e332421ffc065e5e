"""``mbd bench``: latency, peak RSS, size, params and FLOPs of .tflite models vs BERT-base.

Example::

    mbd bench --models student.tflite --baseline bert-base --seq-len 32,64,128 \
        --threads 1,2,4 --runs 50 --warmup 5 --out bench/
    mbd bench --merge board.json --out bench/          # add a board's results
    mbd bench --models student.tflite --adb-script --out bench/
"""

from mobile_bert_distill.commands import _types as T
from mobile_bert_distill.errors import UserError

EPILOG = """\
Each setting runs in a fresh process (clean peak RSS) with valid inputs: token
ids from the model's vocabulary, [CLS] ... [SEP], a real length in
[0.75*seq, seq] and padding after it. Several files under one label
(LABEL=a_s32.tflite,a_s128.tflite) are one model exported at several static
lengths; each --seq-len runs on the smallest file that holds it.

--baseline bert-base builds a random-init BERT-base (12x768, 30522 vocab),
exports it with the kit's exporter in the task and quantization of each
--models file (or --baseline-quantization), and caches it (--cache-dir,
default ~/.cache/mobile_bert_distill/baselines or $MBD_CACHE_DIR).

Writes OUT/results.json, OUT/REPORT.md, OUT/latency_vs_seq.png,
OUT/size_vs_latency.png (and OUT/profile.json with --profile).
Boards: run benchmarks/on_device_bench.py there (numpy + ai-edge-litert
only) and merge its JSON with --merge. Android: --adb-script writes
OUT/android/run_on_phone.sh for LiteRT's C++ benchmark_model with valid
inputs (LiteRT's Python litert-benchmark fills int32 inputs with -128..127,
which breaks BERT).
"""


def register(subparsers):
    import argparse

    p = subparsers.add_parser(
        "bench",
        help="benchmark .tflite models against BERT-base (latency, RSS, size, params, FLOPs)",
        description="Benchmark LiteRT models against a BERT-base baseline and write results.json, "
                    "REPORT.md and plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", nargs="+", default=[], metavar="[LABEL=]PATH[,PATH...]",
                   help=".tflite files to benchmark")
    p.add_argument("--baseline", metavar="SPEC",
                   help="'bert-base' (random init) or 'keras-hub-preset:NAME_OR_DIR'")
    p.add_argument("--seq-len", type=T.positive_int_list, default="128",
                   help="comma-separated sequence lengths (default 128)")
    p.add_argument("--threads", type=T.positive_int_list, default="1",
                   help="comma-separated thread counts (default 1)")
    p.add_argument("--runs", type=T.positive_int, default=50, help="timed runs per setting (default 50)")
    p.add_argument("--warmup", type=T.nonnegative_int, default=5, help="untimed warm-up runs per setting (default 5)")
    p.add_argument("--out", default="bench", help="output directory (default bench/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (or OUT/android with --adb-script) (default: refuse; "
                        "--merge alone always updates OUT)")
    p.add_argument("--merge", action="append", default=[], metavar="BOARD.json",
                   help="merge results from on_device_bench.py (repeatable); alone, merges into OUT/results.json")
    p.add_argument("--cache-dir", help="where exported baselines are cached")
    p.add_argument("--baseline-quantization", metavar="MODES",
                   help="comma-separated modes for the baseline (default: those of --models)")
    p.add_argument("--baseline-task", choices=("mlm", "encoder"),
                   help="task of the baseline (default: those of --models, else encoder)")
    p.add_argument("--profile", action="store_true",
                   help="also time every op alone and report where the time goes (1 thread)")
    p.add_argument("--adb-script", action="store_true",
                   help="only write OUT/android/run_on_phone.sh (+ input files) for an Android phone")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-isolate", action="store_true",
                   help="measure in one process (faster; peak RSS then covers every model)")
    p.add_argument("--rounds", type=T.positive_int, default=1,
                   help="measure the whole list this many times in turn, pooling the samples "
                        "(shares bursts of background load fairly between models; default 1)")
    p.add_argument("--seed", type=T.seed, default=0, help="seed of the random inputs")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill import bench

    seqs, threads = args.seq_len, args.threads
    if args.adb_script:
        if not args.models:
            raise UserError("--adb-script needs --models")
        path = bench.write_adb_script(args.models, seqs, threads, args.runs, args.warmup, args.out,
                                      seed=args.seed, overwrite=args.overwrite)
        print(f"wrote {path}")
        return 0
    quants = None
    if args.baseline_quantization:
        quants = [q.strip() for q in args.baseline_quantization.split(",") if q.strip()]
    doc = bench.run_bench(
        models=args.models, baseline=args.baseline, seq_lens=seqs, threads=threads, runs=args.runs,
        warmup=args.warmup, out=args.out, merge_files=args.merge, cache_dir=args.cache_dir,
        baseline_quantization=quants, baseline_task=args.baseline_task, isolate=not args.no_isolate,
        profile=args.profile, plots=not args.no_plots, seed=args.seed, rounds=args.rounds,
        overwrite=args.overwrite,
    )
    from mobile_bert_distill.bench.report import comparison_rows

    for r in doc["results"]:
        lat = r["latency_ms"]
        print(f"{r['model'][:34]:<34} {str(r.get('source'))[:18]:<18} seq {r['seq_len']:>4} "
              f"thr {r['threads']:>2}  p50 {lat['p50']:10.3f} ms  p90 {lat['p90']:10.3f}  "
              f"rss {r['peak_rss_mb']:6.0f} MB")
    for c in comparison_rows(doc):
        print(f"{c['model'][:34]:<34} vs {c['baseline']}: seq {c['seq_len']} thr {c['threads']}: "
              f"latency {c['latency_x']:.1f}x, size {c['size_x']:.1f}x, "
              f"GFLOP/s {c['model_gflops']:.1f} vs {c['baseline_gflops']:.1f} ({100 * c['gflops_ratio']:.0f}%)")
    return 0
