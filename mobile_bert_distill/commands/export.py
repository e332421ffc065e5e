"""`mbd export`: the student preset to a LiteRT ``.tflite`` (+ report, + Android assets)."""

from mobile_bert_distill.commands import _types as T


def register(sub):
    from mobile_bert_distill.export import DEFAULT_QUANTIZATION, INT8_RECIPES, MLM_QUANTIZATIONS

    p = sub.add_parser(
        "export", help="export the student to LiteRT (.tflite) with float/int8 quantization",
        description="Convert the student preset written by `mbd distill` to a LiteRT flatbuffer with static "
                    "[batch, seq-len] int32 inputs input_ids/segment_ids/padding_mask and outputs `logits` "
                    "(--task mlm), `sequence_output`/`pooled_output` (--task encoder) or `probabilities` "
                    "(--task classifier: the folder `mbd finetune` writes). Writes MODEL and "
                    "MODEL's .report.json (op histogram, QUANTIZE/DEQUANTIZE and float-op counts, size, "
                    "params, parity with the float Keras student on held-out text). Fails with nothing "
                    "written when the file exceeds --max-size-mb or parity is below --min-agreement.")
    p.add_argument("--student", required=True, metavar="DIR",
                   help="student preset folder (OUT/student); for --task classifier the classifier folder "
                        "`mbd finetune` writes (BertTextClassifier preset + labels.json)")
    p.add_argument("--out", required=True, metavar="MODEL.tflite", help="output model file")
    p.add_argument("--task", choices=("mlm", "encoder", "classifier"), default="mlm",
                   help="mlm: fill-mask logits; encoder: sequence and pooled outputs; classifier: class "
                        "probabilities [batch, num_classes] (default: mlm)")
    p.add_argument("--quantization", choices=MLM_QUANTIZATIONS, default=DEFAULT_QUANTIZATION,
                   help="float32, float16, dynamic (int8 weights, float activations), int8 "
                        "(full integer, calibrated on --calibration-corpus) or mixed (--task mlm: float16, "
                        "int8 or int4 per weight matrix by Hessian sensitivity until the file fits "
                        "--target-size-mb; needs ai-edge-quantizer) (default: int8)")
    p.add_argument("--target-size-mb", type=T.positive_float,
                   help="mixed only: the size the file must fit, in MB (10^6 bytes)")
    p.add_argument("--int8-recipe", choices=INT8_RECIPES, default="matmul",
                   help="matmul: every FULLY_CONNECTED/BATCH_MATMUL int8, elementwise ops float (default); "
                        "xnnpack: also the elementwise ops int8 except SOFTMAX/RSQRT; strict: every op "
                        "int8; naive: the stock Keras graph")
    p.add_argument("--seq-len", type=T.positive_int, default=None,
                   help="static sequence length (default: 128; classifier: its preprocessor's length)")
    p.add_argument("--batch-size", type=T.positive_int, default=1, help="static batch size (default: 1)")
    p.add_argument("--calibration-corpus", metavar="TEXT",
                   help="UTF-8 text, one sentence/paragraph per line: int8 calibration (9 lines in 10) "
                        "and held-out parity (every 10th line); required for int8")
    p.add_argument("--num-calibration", type=T.positive_int, default=200, help="calibration sequences (default: 200)")
    p.add_argument("--num-parity", type=T.positive_int, default=200,
                   help="held-out parity sequences (default: 200; --parity-csv uses all its rows)")
    p.add_argument("--max-size-mb", type=T.positive_float, help="fail (nothing written) when the model is larger")
    p.add_argument("--min-agreement", type=T.unit_interval,
                   help="fail (nothing written) when masked-token top-1 agreement with the float model "
                        "(encoder: mean cosine; classifier: label agreement) is lower "
                        "(default: 0.99 for int8, 0.999 float32, "
                        "0.99 float16, 0.95 dynamic, 0.9 mixed; 0 disables)")
    p.add_argument("--android-assets", metavar="DIR",
                   help="also write DIR/model.tflite, DIR/vocab.txt and DIR/model_info.json (golden vectors); "
                        "a classifier also gets DIR/labels.txt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing MODEL, its report and the asset files (default: refuse)")
    p.add_argument("--parity-csv", metavar="CSV",
                   help="classifier only: labelled CSV (e.g. the eval.csv of `mbd finetune`) on whose rows "
                        "label agreement with the float classifier and both models' accuracy are measured "
                        "(default: held-out corpus lines, agreement only)")
    p.add_argument("--text-column", help="--parity-csv text column (default: the one `mbd finetune` used)")
    p.add_argument("--label-column", help="--parity-csv label column (default: the one `mbd finetune` used)")
    p.add_argument("--full-depth", action="store_true",
                   help="classifier only: a folder `mbd finetune --early-exit` wrote exports as a staged model "
                        "(a signature per layer, for `mbd predict --speed`); this exports the plain "
                        "full-depth classifier instead")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.export import export_student, min_agreement_for, report_path

    kw = {"recipe": args.int8_recipe} if args.quantization == "int8" else {}
    if args.target_size_mb is not None:
        kw["target_size_mb"] = args.target_size_mb
    min_agreement = min_agreement_for(args.quantization, args.min_agreement,
                                      real_text=args.calibration_corpus is not None or args.parity_csv is not None)
    report = export_student(
        args.student, args.out, task=args.task, quantization=args.quantization, seq_len=args.seq_len,
        batch_size=args.batch_size, calibration_corpus=args.calibration_corpus,
        num_calibration=args.num_calibration, num_parity=args.num_parity, max_size_mb=args.max_size_mb,
        min_agreement=min_agreement, android_assets=args.android_assets, overwrite=args.overwrite,
        parity_csv=args.parity_csv, text_column=args.text_column, label_column=args.label_column,
        early_exit=False if args.full_depth else None, **kw)
    g, par = report["graph_ops"], report["parity"]
    print(f"wrote {args.out} ({report['size_mb']:.3f} MB, {args.quantization}"
          f"{', recipe ' + report['recipe'] if report.get('recipe') else ''}; {report['params']:,} params)")
    print(f"ops: {sum(g['ops'].values())} ({g['quantize_ops']} QUANTIZE, {g['dequantize_ops']} DEQUANTIZE, "
          f"float: {g['float_ops'] or 'none'}); XNNPACK partitions: {report['xnnpack']['delegate_partitions']}")
    if "label_agreement" in par:
        line = (f"parity on {par['examples']} texts ({report['parity_data']['source']}): label agreement "
                f"{par['label_agreement']:.4f} ({par['label_flips']} flipped), max |dprob| "
                f"{par['max_abs_prob_diff']:.4g}")
        if "float_accuracy" in par:
            line += f", accuracy {par['float_accuracy']:.4f} float -> {par['tflite_accuracy']:.4f}"
        print(line)
        print(f"output: probabilities [{report['batch_size']}, {report['num_classes']}] over "
              f"{', '.join(report['labels'])}")
        if report.get("early_exit"):
            ee = report["early_exit"]
            print(f"staged early exit: signatures {ee['signatures'][0]}, {ee['signatures'][1]} .. "
                  f"{ee['signatures'][-1]}; exit label agreement with float per layer: "
                  + " ".join(f"{a:.3f}" for a in par["exit_label_agreement"]))
    elif "top1_agreement" in par:
        line = (f"parity on {par['masked_tokens']} masked tokens ({par['source']}): top-1 agreement "
                f"{par['top1_agreement']:.4f}, max |dlogit| {par['max_abs_logit_diff']:.4g}")
        if par.get("top1_agreement_clear") is not None and par.get("near_tie_fraction"):
            line += (f" ({par['top1_agreement_clear']:.4f} where float's top-2 gap >= {par['near_tie_gap']:g}; "
                     f"{100 * par['near_tie_fraction']:.1f}% of tokens are near-ties)")
        if "float_accuracy" in par:
            line += f", accuracy {par['float_accuracy']:.4f} float -> {par['tflite_accuracy']:.4f}"
        print(line)
    else:
        print(f"parity on {par['tokens']} tokens ({par['source']}): sequence-output cosine "
              f"{par['sequence_output_cosine_mean']:.5f} (min {par['sequence_output_cosine_min']:.5f})")
    if "mixed_precision" in report:
        from mobile_bert_distill.export.mixed import TIED

        counts = {}
        for m in report["mixed_precision"]["matrices"]:
            counts[m["precision"]] = counts.get(m["precision"], 0) + 1
        print(f"mixed precision for {report['mixed_precision']['target_size_mb']:g} MB: "
              + ", ".join(f"{n} matrices {p}" for p, n in counts.items()) + "; embedding tables int8"
              + (" (the MLM head reads the token table)" if TIED in counts else ""))
    print(f"report: {report_path(args.out)}")
    if args.android_assets:
        files = ", ".join(report.get("android_assets", {}).get("files", []))
        print(f"android assets in {args.android_assets}: {files}")
    return 0
