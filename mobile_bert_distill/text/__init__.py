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

from mobile_bert_distill.text.corpus import heldout_bucket, read_corpus, split_corpus
from mobile_bert_distill.text.rows import KIT_SPECIAL_IDS, SPECIAL_TOKENS, pack_rows, special_ids
from mobile_bert_distill.text.segment import IMPLEMENTATIONS, pretokenize, wordpiece_ids
from mobile_bert_distill.text.vocab import load_vocab, validate_vocab

__all__ = ["IMPLEMENTATIONS", "KIT_SPECIAL_IDS", "SPECIAL_TOKENS", "heldout_bucket", "load_vocab", "pack_rows",
           "pretokenize", "read_corpus", "special_ids", "split_corpus", "validate_vocab", "wordpiece_ids"]
