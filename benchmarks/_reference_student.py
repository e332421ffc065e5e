"""The 12x48 reference student of ``export_modes.py`` and the sequences every export
benchmark draws from its corpus (the same ones ``export_student`` draws)."""

from __future__ import annotations

import os
import sys


def missing_inputs(script, *paths):
    """Print a one-line error for the first missing path; ``True`` when one is missing."""
    for path in paths:
        if not os.path.exists(path):
            print(f"{script}: error: {path} not found (run benchmarks/export_modes.py first)", file=sys.stderr)
            return True
    return False


def load_reference(student, corpus, *, seq_len, calibration, parity):
    """``(model, tokenizer, calib_lines, calib_feeds, parity_feeds, parity_labels, float_outputs)``:
    calibration sequences from the calibration lines (seed 0), parity sequences from the
    held-out lines (seed 1) and the float Keras student's outputs on them."""
    from mobile_bert_distill import export as E
    from mobile_bert_distill.text.corpus import split_corpus
    from mobile_bert_distill.text.wordpiece import WordPiece

    model, vocab_path = E.load_student(student)
    tokenizer = WordPiece(vocab_path)
    calib_lines, heldout = split_corpus(E.read_calibration_text(corpus))
    calib, _ = E.corpus_sequences(calib_lines, tokenizer, seq_len, calibration, seed=0)
    feeds, labels = E.corpus_sequences(heldout, tokenizer, seq_len, parity, seed=1)
    return model, tokenizer, calib_lines, calib, feeds, labels, E.keras_outputs(model, "mlm", feeds)
