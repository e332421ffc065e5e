"""Vocabularies: read and check a ``vocab.txt``; learn the small student WordPiece vocabulary and compare it
with the teacher's.

The paper's student uses 4,928 WordPieces learned on the pre-training corpus,
93.9% of which are also in BERT's 30,522-piece vocabulary. We learn it with
Hugging Face ``tokenizers`` (exact size, seconds) on words produced by the
training pre-tokenizer (:func:`mobile_bert_distill.text.segment.pretokenize`), so the
learned pieces fit the words the student will see.

Example:
>>> lines = ["the cat sat on the mat", "a dog sat on a log"] * 50
>>> tokens = learn_vocab(lines, size=40)
>>> tokens[:5]
['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
"""

import os

import numpy as np

from mobile_bert_distill.atomic import atomic_dir, atomic_write_json, atomic_write_text, locked_output
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text.corpus import read_corpus
from mobile_bert_distill.text.rows import SPECIAL_TOKENS
from mobile_bert_distill.text.segment import pretokenize, wordpiece_ids


def validate_vocab(tokens, source="vocabulary"):
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise UserError(f"{source} lacks the special token(s) {' '.join(missing)}")
    seen, dups = set(), []
    for t in tokens:
        if t in seen:
            dups.append(t)
        seen.add(t)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:5])
        raise UserError(f"{source} has {len(dups)} duplicate token(s): {shown}")
    if any(t == "" for t in tokens):
        raise UserError(f"{source} has an empty line (token ids would shift)")
    return tokens


def load_vocab(path):
    """Read a WordPiece ``vocab.txt`` (one token per line) and validate it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"vocabulary file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        raise UserError(f"vocabulary file is not UTF-8: {path}") from None
    while tokens and tokens[-1] == "":
        tokens.pop()
    return validate_vocab(tokens, source=path)


def learn_vocab(lines, size=4928, words=None, min_frequency=2, limit_alphabet=1000):
    """Learn a WordPiece vocabulary of (at most) ``size`` tokens, specials first."""
    from tokenizers import BertWordPieceTokenizer

    if size < len(SPECIAL_TOKENS) + 1:
        raise UserError(f"the vocabulary size must be larger than {len(SPECIAL_TOKENS)} (its special tokens), "
                        f"got {size}")
    if words is None:
        words = pretokenize(lines)
    # The text is already case-folded, accent-stripped and split: make the
    # trainer split on the same boundaries and change nothing else.
    trainer_tok = BertWordPieceTokenizer(
        clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    trainer_tok.train_from_iterator(
        (" ".join(w) for w in words),
        vocab_size=size,
        min_frequency=min_frequency,
        limit_alphabet=limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
        wordpieces_prefix="##",
    )
    vocab = trainer_tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    # The trainer numbers its alphabet in hash-set order, so the same corpus gave the same
    # pieces under different ids from run to run. Ids carry no meaning for WordPiece: sort
    # everything after the specials so a rerun of the same corpus gives the same vocab.txt.
    n = len(SPECIAL_TOKENS)
    if tuple(tokens[:n]) == SPECIAL_TOKENS:
        tokens = tokens[:n] + sorted(tokens[n:])
    return validate_vocab(tokens, source="learned vocabulary")


def segmentation_stats(words, vocab):
    """[UNK] rate and pieces per word of ``vocab`` on pre-tokenized ``words``."""
    uniq, counts = np.unique(np.array([w for row in words for w in row], dtype=object), return_counts=True)
    offsets, flat = wordpiece_ids(list(uniq), vocab)
    lens = np.diff(offsets)
    unk = vocab.index("[UNK]")
    unk_per_word = np.add.reduceat((flat == unk).astype(np.int64), offsets[:-1]) if len(flat) else lens * 0
    unk_per_word = np.where(lens > 0, unk_per_word, 0)
    total_words = int(counts.sum())
    total_pieces = int((lens * counts).sum())
    return {
        "pieces_per_word": total_pieces / max(total_words, 1),
        "unk_rate": float((unk_per_word * counts).sum() / max(total_pieces, 1)),
        "words": total_words,
        "pieces": total_pieces,
    }


def vocab_stats(student_vocab, teacher_vocab, words):
    """Overlap of the two vocabularies and how each segments the corpus."""
    teacher_set = set(teacher_vocab) if teacher_vocab is not None else set()
    normal = [t for t in student_vocab if t not in SPECIAL_TOKENS]
    stats = {"size": len(student_vocab)}
    if teacher_vocab is not None:
        shared = sum(1 for t in normal if t in teacher_set)
        stats["teacher_size"] = len(teacher_vocab)
        stats["overlap_with_teacher"] = shared / max(len(normal), 1)
        stats["overlap_note"] = "share of the student's non-special pieces that are also teacher pieces (paper: 0.939)"
    stats["student_on_corpus"] = segmentation_stats(words, student_vocab)
    if teacher_vocab is not None:
        stats["teacher_on_corpus"] = segmentation_stats(words, teacher_vocab)
    return stats


def build_vocab(corpus, out_dir, size=4928, teacher_vocab_path=None, skip_bad_lines=False,
                overwrite=False, log=print):
    """Learn the vocabulary and write ``out_dir/vocab.txt`` and ``vocab_stats.json`` atomically."""
    teacher_vocab = load_vocab(teacher_vocab_path) if teacher_vocab_path else None
    with locked_output(out_dir, overwrite, "vocabulary folder"):
        return _locked_build_vocab(corpus, out_dir, size, teacher_vocab, skip_bad_lines, log)


def _locked_build_vocab(corpus, out_dir, size, teacher_vocab, skip_bad_lines, log):
    lines = read_corpus(corpus, skip_bad_lines=skip_bad_lines, warn=log)
    log(f"read {len(lines):,} lines; pre-tokenizing")
    words = pretokenize(lines, progress=True)
    log(f"learning a {size}-piece WordPiece vocabulary")
    tokens = learn_vocab(lines, size=size, words=words)
    stats = vocab_stats(tokens, teacher_vocab, words)
    stats["requested_size"] = size
    stats["corpus"] = [os.fspath(p) for p in corpus]
    with atomic_dir(out_dir, overwrite=True) as tmp:
        atomic_write_text(os.path.join(tmp, "vocab.txt"), "\n".join(tokens) + "\n")
        atomic_write_json(os.path.join(tmp, "vocab_stats.json"), stats)
    return tokens, stats
