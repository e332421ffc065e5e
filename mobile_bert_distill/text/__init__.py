"""Text in: corpus reading, special tokens and row packing, pre-tokenization, WordPiece, vocabularies.

Modules, in the order text flows:

- :mod:`~mobile_bert_distill.text.corpus`: ``read_corpus`` (one stripped line per paragraph) and the
  split rules (``heldout_bucket``: the demo's held-out set; ``split_corpus``: calibration / parity).
- :mod:`~mobile_bert_distill.text.rows`: the special tokens and ``pack_rows``, the one home of
  ``[CLS] body [SEP] [PAD]..``.
- :mod:`~mobile_bert_distill.text.segment`: ``pretokenize`` and ``wordpiece_ids`` over a corpus,
  with tf-text (TensorFlow backend) or pure Python (every other backend).
- :mod:`~mobile_bert_distill.text.wordpiece`: the pure-Python WordPiece tokenizer (no TensorFlow).
- :mod:`~mobile_bert_distill.text.vocab`: vocabulary files, learning the student vocabulary.

The names below are the package's public API.

Example:
>>> from mobile_bert_distill import text
>>> text.pretokenize(["Héllo, World!"], implementation="python")
[['hello', ',', 'world', '!']]
"""

import os

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text.corpus import heldout_bucket, read_corpus, split_corpus
from mobile_bert_distill.text.rows import KIT_SPECIAL_IDS, SPECIAL_TOKENS, pack_rows, special_ids
from mobile_bert_distill.text.segment import IMPLEMENTATIONS, pretokenize, wordpiece_ids

__all__ = ["IMPLEMENTATIONS", "KIT_SPECIAL_IDS", "SPECIAL_TOKENS", "heldout_bucket", "load_vocab", "pack_rows",
           "pretokenize", "read_corpus", "special_ids", "split_corpus", "validate_vocab", "wordpiece_ids"]


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
