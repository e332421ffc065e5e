"""`mbd theseus`: compress a fine-tuned BERT classifier to K layers by progressive module replacing."""

from mobile_bert_distill.commands import _types as T
from mobile_bert_distill.commands.finetune import add_labelled_data


def register(sub):
    p = sub.add_parser(
        "theseus", help="compress a fine-tuned BERT classifier to K layers (BERT-of-Theseus module replacing)",
        description="BERT-of-Theseus (Xu et al. 2020): the teacher classifier's n layers are split into K modules "
                    "of n/K layers, each with a one-layer successor (a copy of teacher layer i to start). While "
                    "training on the labelled CSV, each module is replaced by its successor with probability "
                    "p_t = min(1, slope*t + start_rate) per batch; only the successor layers train (teacher layers, "
                    "embeddings and head frozen). Then the K successor layers are fine-tuned alone. Prints eval "
                    "accuracy and macro-F1 and writes a K-layer classifier preset with labels.json, like `mbd "
                    "finetune`.")
    p.add_argument("--teacher-classifier", required=True, metavar="DIR",
                   help="fine-tuned BERT classifier folder (`mbd finetune` output): the predecessor")
    p.add_argument("--layers", required=True, type=T.positive_int, metavar="K",
                   help="successor depth K: divides the teacher's depth and is smaller")
    add_labelled_data(p, "its classes must be the teacher's")
    p.add_argument("--compress-epochs", type=T.positive_int, default=3,
                   help="epochs of module replacing (default: 3)")
    p.add_argument("--finetune-epochs", type=T.nonnegative_int, default=2,
                   help="epochs of successor fine-tuning afterwards, 0 for none (default: 2)")
    p.add_argument("--start-rate", type=T.unit_interval, default=0.3,
                   help="replacement rate at the first step, b (default: 0.3)")
    p.add_argument("--slope", type=T.positive_float, default=None,
                   help="growth of the replacement rate per step, theta (default: reach 1 as compression ends)")
    p.add_argument("--batch-size", type=T.positive_int, default=32, help="texts per step (default: 32)")
    p.add_argument("--learning-rate", type=T.positive_float, default=1e-4,
                   help="peak learning rate of each phase (default: 1e-4)")
    p.add_argument("--seq-len", type=T.positive_int, default=64, help="tokens per text (default: 64)")
    p.add_argument("--seed", type=T.seed, default=0,
                   help="seed of the shuffling and the replacement draws (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.downstream.theseus import theseus

    theseus(args.teacher_classifier, args.data, args.eval, args.out, layers=args.layers,
            text_column=args.text_column, label_column=args.label_column, compress_epochs=args.compress_epochs,
            finetune_epochs=args.finetune_epochs, start_rate=args.start_rate, slope=args.slope,
            batch_size=args.batch_size, learning_rate=args.learning_rate, seq_len=args.seq_len, seed=args.seed,
            overwrite=args.overwrite)
    return 0
