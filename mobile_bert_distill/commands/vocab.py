"""`mbd vocab`: learn the student WordPiece vocabulary."""

from mobile_bert_distill.commands import _types as T


def register(sub):
    p = sub.add_parser(
        "vocab", help="learn the student WordPiece vocabulary from a corpus",
        description="Learn a small uncased WordPiece vocabulary (BERT special tokens first) and write "
                    "DIR/vocab.txt and DIR/vocab_stats.json (size, overlap with the teacher vocabulary, "
                    "[UNK] rate and pieces per word of both vocabularies on the corpus).")
    p.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="UTF-8 text files, one paragraph per line")
    p.add_argument("--size", type=T.positive_int, default=4928, help="vocabulary size (default: 4928, as in the paper)")
    p.add_argument("--teacher-vocab", metavar="VOCAB.txt", help="teacher vocab.txt, for the overlap statistics")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--skip-bad-lines", action="store_true", help="drop lines that are not UTF-8 instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty DIR")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.text.vocab import build_vocab

    tokens, stats = build_vocab(args.corpus, args.out, size=args.size, teacher_vocab_path=args.teacher_vocab,
                                skip_bad_lines=args.skip_bad_lines, overwrite=args.overwrite)
    s = stats["student_on_corpus"]
    print(f"vocabulary: {len(tokens)} pieces (asked {args.size}); pieces/word {s['pieces_per_word']:.3f}, "
          f"[UNK] rate {s['unk_rate']:.4%}")
    if "overlap_with_teacher" in stats:
        t = stats["teacher_on_corpus"]
        print(f"overlap with the teacher vocabulary: {stats['overlap_with_teacher']:.1%} (paper: 93.9%); "
              f"teacher pieces/word {t['pieces_per_word']:.3f}, [UNK] rate {t['unk_rate']:.4%}")
    print(f"wrote {args.out}/vocab.txt and {args.out}/vocab_stats.json")
    return 0
