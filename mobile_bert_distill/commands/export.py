"""`mbd export`: the student preset to a LiteRT ``.tflite`` (+ report, + Android assets)."""

import os


def register(sub):
    from mobile_bert_distill.export import INT8_RECIPES, QUANTIZATIONS

    p = sub.add_parser(
        "export", help="export the student to LiteRT (.tflite) with float/int8 quantization",
        description="Convert the student preset written by `mbd distill` to a LiteRT flatbuffer with static "
                    "[batch, seq-len] int32 inputs input_ids/segment_ids/padding_mask and outputs `logits` "
                    "(--task mlm) or `sequence_output`/`pooled_output` (--task encoder). Writes MODEL and "
                    "MODEL's .report.json (op histogram, QUANTIZE/DEQUANTIZE and float-op counts, size, "
                    "params, parity with the float Keras student on held-out text). Fails with nothing "
                    "written when the file exceeds --max-size-mb or parity is below --min-agreement.")
    p.add_argument("--student", required=True, metavar="DIR", help="student preset folder (OUT/student)")
    p.add_argument("--out", required=True, metavar="MODEL.tflite", help="output model file")
    p.add_argument("--task", choices=("mlm", "encoder"), default="mlm",
                   help="mlm: fill-mask logits; encoder: sequence and pooled outputs (default: mlm)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="int8",
                   help="float32, float16, dynamic (int8 weights, float activations) or int8 "
                        "(full integer, calibrated on --calibration-corpus) (default: int8)")
    p.add_argument("--int8-recipe", choices=INT8_RECIPES, default="matmul",
                   help="matmul: every FULLY_CONNECTED/BATCH_MATMUL int8, elementwise ops float (default); "
                        "xnnpack: also the elementwise ops int8 except SOFTMAX/RSQRT; strict: every op "
                        "int8; naive: the stock Keras graph")
    p.add_argument("--seq-len", type=int, default=128, help="static sequence length (default: 128)")
    p.add_argument("--batch-size", type=int, default=1, help="static batch size (default: 1)")
    p.add_argument("--calibration-corpus", metavar="TEXT",
                   help="UTF-8 text, one sentence/paragraph per line: int8 calibration (9 lines in 10) "
                        "and held-out parity (every 10th line); required for int8")
    p.add_argument("--num-calibration", type=int, default=200, help="calibration sequences (default: 200)")
    p.add_argument("--num-parity", type=int, default=200, help="held-out parity sequences (default: 200)")
    p.add_argument("--max-size-mb", type=float, help="fail (nothing written) when the model is larger")
    p.add_argument("--min-agreement", type=float,
                   help="fail (nothing written) when masked-token top-1 agreement with the float model "
                        "(encoder: mean cosine) is lower (default: 0.99 for int8, 0.999 float32, "
                        "0.99 float16, 0.95 dynamic; 0 disables)")
    p.add_argument("--android-assets", metavar="DIR",
                   help="also write DIR/model.tflite, DIR/vocab.txt and DIR/model_info.json (golden vectors)")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.export import DEFAULT_MIN_AGREEMENT, export_student, report_path

    if args.seq_len < 8:
        raise UserError("--seq-len must be at least 8")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.max_size_mb is not None and args.max_size_mb <= 0:
        raise UserError("--max-size-mb must be positive")
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a directory; give a file name like model.tflite")
    min_agreement = args.min_agreement
    if min_agreement is None:
        min_agreement = DEFAULT_MIN_AGREEMENT[args.quantization]
        if args.calibration_corpus is None:
            min_agreement = None  # random ids: agreement is reported, not enforced
    elif min_agreement <= 0:
        min_agreement = None
    kw = {"recipe": args.int8_recipe} if args.quantization == "int8" else {}
    report = export_student(
        args.student, args.out, task=args.task, quantization=args.quantization, seq_len=args.seq_len,
        batch_size=args.batch_size, calibration_corpus=args.calibration_corpus,
        num_calibration=args.num_calibration, num_parity=args.num_parity, max_size_mb=args.max_size_mb,
        min_agreement=min_agreement, android_assets=args.android_assets, **kw)
    g, par = report["graph_ops"], report["parity"]
    print(f"wrote {args.out} ({report['size_mb']:.3f} MB, {args.quantization}"
          f"{', recipe ' + report['recipe'] if report.get('recipe') else ''}; {report['params']:,} params)")
    print(f"ops: {sum(g['ops'].values())} ({g['quantize_ops']} QUANTIZE, {g['dequantize_ops']} DEQUANTIZE, "
          f"float: {g['float_ops'] or 'none'}); XNNPACK partitions: {report['xnnpack']['delegate_partitions']}")
    if "top1_agreement" in par:
        line = (f"parity on {par['masked_tokens']} masked tokens ({par['source']}): top-1 agreement "
                f"{par['top1_agreement']:.4f}, max |dlogit| {par['max_abs_logit_diff']:.4g}")
        if "float_accuracy" in par:
            line += f", accuracy {par['float_accuracy']:.4f} float -> {par['tflite_accuracy']:.4f}"
        print(line)
    else:
        print(f"parity on {par['tokens']} tokens ({par['source']}): sequence-output cosine "
              f"{par['sequence_output_cosine_mean']:.5f} (min {par['sequence_output_cosine_min']:.5f})")
    print(f"report: {report_path(args.out)}")
    if args.android_assets:
        print(f"android assets: {args.android_assets}/model.tflite, vocab.txt, model_info.json")
    return 0
