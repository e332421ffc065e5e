"""`mbd eval`: held-out masked-token accuracy of a student or a teacher."""

import json

from mobile_bert_distill.commands import _types as T
from mobile_bert_distill.commands.distill import add_backend_argument


def register(sub):
    p = sub.add_parser(
        "eval", help="masked-token top-1 accuracy on held-out text (fixed masking seed)",
        description="Score a student preset (over the student vocabulary) or a teacher checkpoint "
                    "(both heads) on held-out text. Masked positions depend only on the text, the "
                    "vocabulary, the sequence length and the seed, so students with the same vocabulary "
                    "are compared on exactly the same positions.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="DIR", help="student preset (OUT/student)")
    who.add_argument("--teacher", metavar="DIR", help="teacher checkpoint (OUT/teacher)")
    p.add_argument("--litert", metavar="FILE",
                   help="with --student: also score this masked-LM export of it (mbd export) on the same "
                        "positions, at the file's sequence length, and print the accuracy drop")
    p.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="held-out text files")
    p.add_argument("--seq-len", type=T.positive_int, help="sequence length (default: the student's; 128 for a teacher)")
    p.add_argument("--batch-size", type=T.positive_int, default=32, help="sequences per batch (default: 32)")
    p.add_argument("--max-batches", type=T.positive_int, help="stop after this many batches (default: all)")
    p.add_argument("--seed", type=T.seed, default=12345, help="masking seed (default: 12345)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_backend_argument(p)
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.distill.evaluation import evaluate_export, evaluate_student, evaluate_teacher

    if args.seq_len is not None and args.seq_len < 3:
        raise UserError("--seq-len must be at least 3")
    if args.litert and not args.student:
        raise UserError("--litert needs --student: the preset the file was exported from")
    if args.litert and args.seq_len is not None:
        raise UserError("--seq-len does not apply with --litert: the file's sequence length is used")
    if args.litert:
        res = evaluate_export(args.student, args.litert, args.corpus, batch_size=args.batch_size,
                              max_batches=args.max_batches, seed=args.seed)
        lines = [f"student masked-token accuracy: {res['student_accuracy']:.4f} float, "
                 f"{res['file_accuracy']:.4f} {args.litert} ({res['drop_points']:+.2f} points lost; "
                 f"{res['masked_tokens']} masked pieces, {res['sequences']} sequences of {res['seq_len']}, "
                 f"seed {res['seed']})"]
    elif args.student:
        res = evaluate_student(args.student, args.corpus, seq_len=args.seq_len, batch_size=args.batch_size,
                               max_batches=args.max_batches, seed=args.seed)
        lines = [f"student masked-token accuracy: {res['student_accuracy']:.4f} "
                 f"({res['masked_tokens']} masked pieces, {res['sequences']} sequences, seed {res['seed']})"]
    else:
        res = evaluate_teacher(args.teacher, args.corpus, seq_len=args.seq_len or 128,
                               batch_size=args.batch_size, max_batches=args.max_batches, seed=args.seed)
        lines = [f"teacher-vocabulary head accuracy: {res['teacher_vocab_head_accuracy']:.4f} "
                 f"({res['teacher_vocab_head_masked_tokens']} masked pieces)",
                 f"student-vocabulary head accuracy: {res['student_vocab_head_accuracy']:.4f} "
                 f"({res['student_vocab_head_masked_tokens']} masked pieces)"]
    print(json.dumps(res, indent=2) if args.json else "\n".join(lines))
    return 0
