"""`mbd finetune`: fine-tune a student (or teacher) as a text classifier, optionally with task-level KD."""

from mobile_bert_distill.commands import _types as T


def register(sub):
    p = sub.add_parser(
        "finetune", help="fine-tune a student/teacher preset as a text classifier (optional soft-target KD)",
        description="Fine-tune OUT/student (or a teacher checkpoint / HF folder) as a keras-hub "
                    "BertTextClassifier (AlbertTextClassifier for an ALBERT-style student) on a labelled CSV; prints eval accuracy and macro-F1 and writes a "
                    "classifier preset with labels.json. With --teacher-classifier, the loss is "
                    "alpha*CE(hard) + (1-alpha)*T^2*KL(soft) against the teacher's outputs (--kd-loss mse: "
                    "MSE on logits). Teacher and student read the same raw text through their own tokenizers.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="DIR", help="student preset (OUT/student)")
    who.add_argument("--teacher", metavar="DIR", help="teacher checkpoint (OUT/teacher) or HF/keras-hub folder")
    p.add_argument("--data", required=True, metavar="train.csv", help="labelled training CSV (header row)")
    p.add_argument("--eval", required=True, metavar="eval.csv",
                   help="labelled evaluation CSV: accuracy and macro-F1 are measured on it")
    p.add_argument("--text-column", default="text", help="CSV column with the text (default: text)")
    p.add_argument("--label-column", default="label",
                   help="CSV column with the label (default: label); classes are its distinct values")
    p.add_argument("--out", required=True, metavar="DIR", help="output classifier folder")
    p.add_argument("--epochs", type=T.positive_int, default=3, help="passes over the training CSV (default: 3)")
    p.add_argument("--batch-size", type=T.positive_int, default=32, help="texts per step (default: 32)")
    p.add_argument("--learning-rate", type=T.positive_float, default=5e-4, help="peak learning rate (default: 5e-4)")
    p.add_argument("--seq-len", type=T.positive_int, default=64, help="tokens per text (default: 64)")
    p.add_argument("--teacher-classifier", metavar="DIR", help="fine-tuned teacher classifier for soft targets")
    p.add_argument("--temperature", type=T.positive_float, default=2.0, help="soft-target temperature (default: 2.0)")
    p.add_argument("--alpha", type=T.unit_interval, default=0.5, help="weight of the hard-label loss (default: 0.5)")
    p.add_argument("--kd-loss", choices=("kl", "mse"), default="kl",
                   help="soft-target loss: kl on tempered probabilities, or mse on logits (default: kl)")
    p.add_argument("--seed", type=T.seed, default=0, help="seed of the shuffling and the new layers (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.downstream.finetune import finetune

    finetune(args.student or args.teacher, args.data, args.eval, args.out, text_column=args.text_column,
             label_column=args.label_column, epochs=args.epochs, batch_size=args.batch_size,
             learning_rate=args.learning_rate, seq_len=args.seq_len, teacher_classifier=args.teacher_classifier,
             temperature=args.temperature, alpha=args.alpha, kd_loss=args.kd_loss, seed=args.seed,
             overwrite=args.overwrite)
    return 0
