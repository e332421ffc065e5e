"""`mbd predict`: fill ``[MASK]`` tokens with an exported LiteRT student, or label text with an
exported classifier."""

import json
import sys
import warnings

from mobile_bert_distill.commands import _types as T


def register(sub):
    p = sub.add_parser(
        "predict", help="fill [MASK] tokens (mlm export) or label text (classifier export) with a .tflite model",
        description="Tokenize each TEXT exactly like training (uncased WordPiece), run the LiteRT model "
                    "and print the top-k fillers of every [MASK] with probabilities (--task mlm export), or "
                    "the label and the class probabilities (--task classifier export; class names from "
                    "--labels, else MODEL's .report.json, else labels.txt beside MODEL, else indices). "
                    "Text longer than the model's static length is truncated with a warning.")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sentences (containing [MASK] for an mlm model)")
    p.add_argument("--model", required=True, metavar="MODEL.tflite",
                   help="an `mbd export --task mlm` or `--task classifier` model")
    p.add_argument("--vocab", metavar="VOCAB.txt", help="its vocabulary (default: vocab.txt beside the model)")
    p.add_argument("--input", metavar="FILE", help="read sentences from FILE, one per line ('-' = stdin)")
    p.add_argument("--top-k", type=T.positive_int, default=None,
                   help="fillers per mask (default: 5); classifier: show the k most probable classes "
                        "(default: all, in output order)")
    p.add_argument("--labels", metavar="FILE",
                   help="classifier class names: labels.txt (one per line) or a JSON file with labels/classes")
    p.add_argument("--threads", type=T.positive_int, default=1, help="interpreter threads (default: 1)")
    p.add_argument("--speed", type=T.unit_interval, default=None,
                   help="staged early-exit classifier only: stop at the first layer whose exit's normalised "
                        "entropy is below this (0: every layer, the full model; 1: the first layer); the "
                        "layers used are printed")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.litert.inference import LiteRTModel, TruncationWarning

    texts = list(args.texts)
    if args.input:
        try:
            f = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot read --input {args.input}: {e.strerror}") from e
        with f:
            try:
                texts.extend(line.rstrip("\n") for line in f if line.strip())
            except UnicodeDecodeError as e:
                raise UserError(f"--input {args.input} is not UTF-8 text (byte offset {e.start})") from None
    if not texts:
        raise UserError("no input text: give TEXT arguments or --input FILE")
    model = LiteRTModel(args.model, args.vocab, num_threads=args.threads, labels=args.labels)
    if model.task == "classifier":
        return _classify(args, model, texts)
    if args.speed is not None:
        raise UserError(f"{args.model} has no early-exit stages: --speed needs a staged classifier export")
    if model.task != "mlm":
        raise UserError(f"{args.model} is an {model.task!r} export; mbd predict needs --task mlm or classifier")
    if args.top_k is None:
        args.top_k = 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        results = model.fill_mask(texts, top_k=args.top_k)
    for w in caught:
        if issubclass(w.category, TruncationWarning):
            print(f"mbd: warning: {w.message}", file=sys.stderr)
    if args.json:
        doc = {"model": args.model, "runtime": model.runtime, "seq_len": model.seq_len,
               "results": [{"text": t, "masks": r} for t, r in zip(texts, results)]}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    for text, masks in zip(texts, results):
        print(text)
        for j, m in enumerate(masks, 1):
            cands = "  ".join(f"{c['token']} {c['probability']:.3f}" for c in m["candidates"])
            print(f"  [MASK] {j} (position {m['position']}): {cands}")
    return 0


def _classify(args, model, texts):
    from mobile_bert_distill.litert.inference import TruncationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        results = model.classify(texts, speed=args.speed)
    for w in caught:
        if issubclass(w.category, TruncationWarning):
            print(f"mbd: warning: {w.message}", file=sys.stderr)
    if args.json:
        doc = {"model": args.model, "runtime": model.runtime, "seq_len": model.seq_len, "task": "classifier",
               "labels": model.labels,
               "results": [{"text": t, "label": r["label"], "index": r["index"], "probability": r["probability"],
                            "probabilities": r["probabilities"],
                            **({"layers": r["layers"]} if "layers" in r else {})} for t, r in zip(texts, results)]}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    names = model.labels or [str(i) for i in range(model.num_classes)]
    for text, r in zip(texts, results):
        probs = r["probabilities"]
        order = (sorted(range(len(probs)), key=lambda j: -probs[j])[: args.top_k] if args.top_k
                 else range(len(probs)))
        print(text)
        print(f"  label: {names[r['index']]} ({r['probability']:.3f})"
              + (f"  [{r['layers']} of {model.stages.num_layers} layers]" if "layers" in r else ""))
        print("  probabilities: " + "  ".join(f"{names[j]} {probs[j]:.3f}" for j in order))
    return 0
