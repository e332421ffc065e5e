"""`mbd finetune`: fine-tune a student (or teacher) as a text classifier, optionally with task-level KD."""

from mobile_bert_distill.commands import _types as T


def add_labelled_data(p, classes):
    """The options of a verb that trains a classifier on labelled CSVs and writes a classifier
    folder: ``--data``, ``--eval``, ``--text-column``, ``--label-column`` (``classes`` says where
    its classes come from) and ``--out``."""
    p.add_argument("--data", required=True, metavar="train.csv", help="labelled training CSV (header row)")
    p.add_argument("--eval", required=True, metavar="eval.csv",
                   help="labelled evaluation CSV: accuracy and macro-F1 are measured on it")
    p.add_argument("--text-column", default="text", help="CSV column with the text (default: text)")
    p.add_argument("--label-column", default="label", help=f"CSV column with the label (default: label); {classes}")
    p.add_argument("--out", required=True, metavar="DIR", help="output classifier folder")


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
    who.add_argument("--classifier", metavar="DIR",
                     help="a classifier that is already fine-tuned (what `mbd finetune` wrote): keep it as it is "
                          "and train only its early exits (with --early-exit; the texts of --data, unlabelled)")
    add_labelled_data(p, "classes are its distinct values")
    p.add_argument("--epochs", type=T.positive_int,
                   help="passes over the training CSV (default: 3; --arch bilstm: 3 over the augmented set)")
    p.add_argument("--batch-size", type=T.positive_int, help="texts per step (default: 32)")
    p.add_argument("--learning-rate", type=T.positive_float,
                   help="peak learning rate (default: 5e-4; 1e-4 from 192-d and 5e-5 from 384-d, which stay at chance "
                        "or diverge at 5e-4)")
    p.add_argument("--seq-len", type=T.positive_int, help="tokens per text (default: 64)")
    p.add_argument("--teacher-classifier", metavar="DIR", help="fine-tuned teacher classifier for soft targets")
    p.add_argument("--temperature", type=T.positive_float, help="soft-target temperature (default: 2.0)")
    p.add_argument("--alpha", type=T.unit_interval, help="weight of the hard-label loss (default: 0.5)")
    p.add_argument("--kd-loss", choices=("kl", "mse"),
                   help="soft-target loss: kl on tempered probabilities, or mse on logits (default: kl)")
    p.add_argument("--seed", type=T.seed, help="seed of the shuffling and the new layers (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    from mobile_bert_distill.downstream.bilstm_augment import Augmentation

    a = Augmentation()
    ee = p.add_argument_group("early exit (FastBERT self-distillation)")
    ee.add_argument("--early-exit", action="store_true",
                    help="after fine-tuning (or on --classifier), freeze the model and train a classifier after "
                         "every layer on the main classifier's outputs (KL), saved beside the preset; `mbd export` "
                         "then writes a staged model that `mbd predict --speed` stops early")
    ee.add_argument("--exit-corpus", metavar="TEXT",
                    help="extra unlabelled text for the exits, one sentence per line (besides the training texts)")
    ee.add_argument("--exit-epochs", type=T.positive_int,
                    help="passes of the exits' self-distillation over their texts (default: 60; 10 with "
                         "--exit-augment)")
    ee.add_argument("--exit-augment", type=T.nonnegative_int, metavar="N",
                    help="add N augmented copies of each training text to the exits' texts (word masking and "
                         f"n-gram sampling as for the BiLSTM, at its rates {a.p_mask} and {a.p_ng}), labelled "
                         "by the classifier (default: 0, none)")
    _register_bilstm(p)
    p.set_defaults(func=run)


_OPTIONS = ("text_column", "label_column", "epochs", "batch_size", "learning_rate", "seq_len", "teacher_classifier",
            "temperature", "alpha", "kd_loss", "seed", "overwrite", "early_exit", "exit_corpus", "exit_epochs",
            "exit_augment", "lstm_units", "dense_units", "p_mask", "p_ng", "n_iter")


def run(args):
    from mobile_bert_distill.downstream.arch import add_exits_to, train_classifier

    options = {n: getattr(args, n) for n in _OPTIONS + ("arch",)}
    if args.classifier:
        add_exits_to(args.classifier, args.data, args.eval, args.out, **options)
    else:
        train_classifier(args.student or args.teacher, args.data, args.eval, args.out, **options)
    return 0


def _register_bilstm(p):
    """``--arch`` and the BiLSTM student's options (Tang et al. 2019); which options each
    architecture takes is :mod:`~mobile_bert_distill.downstream.arch`'s rule."""
    from mobile_bert_distill.downstream.arch import ARCHS
    from mobile_bert_distill.downstream.bilstm import DEFAULT_DENSE_UNITS, DEFAULT_LSTM_UNITS
    from mobile_bert_distill.downstream.bilstm_augment import Augmentation

    a = Augmentation()
    p.add_argument("--arch", choices=ARCHS,
                   help="bert: fine-tune the preset itself (default); bilstm: distil --teacher-classifier into a "
                        "BiLSTM over the preset's vocabulary (Tang et al. 2019: MSE on the teacher's logits over "
                        "the training texts and augmented copies; embedding initialised from the preset's)")
    g = p.add_argument_group("BiLSTM student (--arch bilstm; --alpha, --temperature, --kd-loss do not apply)")
    g.add_argument("--lstm-units", type=T.positive_int,
                   help=f"LSTM units per direction (default: {DEFAULT_LSTM_UNITS})")
    g.add_argument("--dense-units", type=T.positive_int, help=f"ReLU layer width (default: {DEFAULT_DENSE_UNITS})")
    g.add_argument("--p-mask", type=T.unit_interval, help=f"augmentation: word masking rate (default: {a.p_mask})")
    g.add_argument("--p-ng", type=T.unit_interval,
                   help=f"augmentation: share of draws cut to an n-gram of 1-5 words (default: {a.p_ng})")
    g.add_argument("--n-iter", type=T.nonnegative_int,
                   help=f"augmentation: draws per training text, duplicates dropped (default: {a.n_iter})")
