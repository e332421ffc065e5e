"""Input sequences for calibration and parity: random valid ids, or text tokenized like training.

:func:`random_sequences` draws valid random ids (special ids: :func:`model_special_ids`);
:func:`read_calibration_text`,
:func:`~mobile_bert_distill.text.corpus.split_corpus` and :func:`corpus_sequences` turn a text file into masked
MLM sequences (calibration lines and held-out parity lines);
:func:`text_sequences` packs one text per sequence, as a classifier sees it.
:func:`as_feeds` / :func:`check_feeds` normalise and validate given sequences.
All return dicts of int32 ``[N, S]`` arrays keyed by
:data:`~mobile_bert_distill.export.recipes.INPUT_NAMES`.
"""

from __future__ import annotations

import numpy as np

from mobile_bert_distill import text
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.recipes import INPUT_NAMES
from mobile_bert_distill.text import KIT_SPECIAL_IDS, pack_rows


def model_special_ids(model):
    """``{token: id}`` of the special tokens in ``model``'s own vocabulary: its keras-hub
    tokenizer's, or the kit vocabularies' (``text.KIT_SPECIAL_IDS``) for a model without one
    (a bare backbone). A teacher's vocabulary (bert-base-uncased: ``[MASK]`` is 103) differs."""
    import keras_hub

    if not isinstance(model, keras_hub.models.Task) or model.preprocessor is None:
        return dict(KIT_SPECIAL_IDS)
    tokenizer = model.preprocessor.tokenizer
    return {token: int(tokenizer.token_to_id(token)) for token in text.SPECIAL_TOKENS}


def random_sequences(n, seq_len, vocab_size, *, batch=None, seed=0, num_special=5, mask_rate=0.15,
                     special_ids=None):
    """``n`` valid random sequences: ``[CLS] ids.. [SEP] [PAD]..`` with varied lengths.

    Token ids are drawn from ``[num_special, vocab_size)`` (never out of range),
    and a ``mask_rate`` share of them is replaced by ``[MASK]``; special ids are
    ``special_ids`` (default: the kit vocabularies', ``text.KIT_SPECIAL_IDS``).
    Returns a dict of int32 arrays ``[n, seq_len]``.
    """
    ids = special_ids or KIT_SPECIAL_IDS
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n):
        length = int(rng.integers(min(8, seq_len), seq_len + 1))
        body = rng.integers(num_special, vocab_size, size=length - 2)
        bodies.append(np.where(rng.random(length - 2) < mask_rate, ids["[MASK]"], body))
    return pack_rows(bodies, seq_len, ids["[CLS]"], ids["[SEP]"])


def as_feeds(sequences):
    """Accept a dict of ``[N, S]`` arrays or a list of dicts of ``[S]``/``[1, S]`` arrays."""
    if isinstance(sequences, dict):
        return {k: np.asarray(sequences[k], np.int32) for k in INPUT_NAMES}
    rows = list(sequences)
    if not rows:
        raise ValueError("no sequences given")
    return {
        k: np.concatenate([np.asarray(r[k], np.int32).reshape(-1, np.shape(r[k])[-1]) for r in rows])
        for k in INPUT_NAMES
    }


def check_feeds(feeds, seq_len, vocab_size):
    for k in INPUT_NAMES:
        if feeds[k].ndim != 2 or feeds[k].shape[1] != seq_len:
            raise ValueError(f"{k} must have shape [N, {seq_len}], got {feeds[k].shape}")
    ids = feeds["input_ids"]
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"input_ids outside [0, {vocab_size}): min {ids.min()}, max {ids.max()}")


def read_calibration_text(path, max_lines=200_000):
    """The first ``max_lines`` non-empty lines of a calibration text file.

    The training corpus's rules (:func:`mobile_bert_distill.text.read_corpus`): a missing,
    empty or not-UTF-8 file (a binary one too) is a :class:`UserError`, never calibrated on.
    """
    return text.read_corpus([path])[:max_lines]


def corpus_sequences(lines, tokenizer, seq_len, n, *, seed=0, mask_rate=0.15, min_len=12):
    """``n`` packed, masked sequences from text, tokenized exactly like training.

    Each sequence is ``[CLS] tokens [SEP]`` of a random length in
    ``[min_len, seq_len]`` (consecutive lines packed until full, so padding
    patterns vary like real inputs); ``mask_rate`` of its tokens (at least
    one) become ``[MASK]``. Returns ``(feeds, labels)``: int32 ``[n, S]``
    arrays, ``labels`` holding the original ids.
    """
    rng = np.random.default_rng(seed)
    cls_id, sep_id, mask_id = (tokenizer.special_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    encoded = [ids for ids in (tokenizer.encode(line) for line in lines) if ids]
    if not encoded:
        raise UserError("the corpus produced no tokens")
    bodies, masked = [], []
    cursor = int(rng.integers(len(encoded)))
    for _ in range(n):
        target = int(rng.integers(min(min_len, seq_len), seq_len + 1)) - 2
        body = []
        while len(body) < target:
            body.extend(encoded[cursor % len(encoded)])
            cursor += 1
        body = body[:max(target, 1)]
        k = max(1, int(round(mask_rate * len(body))))
        bodies.append(body)
        masked.append(1 + rng.choice(len(body), size=min(k, len(body)), replace=False))
    feeds = pack_rows(bodies, seq_len, cls_id, sep_id)
    labels = feeds["input_ids"].copy()
    for i, where in enumerate(masked):
        feeds["input_ids"][i, where] = mask_id
    return feeds, labels


def text_sequences(lines, tokenizer, seq_len, n=None, *, seed=0):
    """One text per sequence, ``[CLS] tokens [SEP] [PAD]..`` (truncated to ``seq_len``), as a
    classifier sees its input. ``n=None`` encodes every line in order; otherwise ``n``
    sequences are drawn from a seeded shuffle of the lines (cycling when ``n`` exceeds them).
    Returns ``(feeds, kept, truncated)``: int32 ``[N, S]`` arrays, the index of
    each row's line, and how many rows were cut to fit ``seq_len``.
    """
    cls_id, sep_id = tokenizer.special_id("[CLS]"), tokenizer.special_id("[SEP]")
    encoded = [(i, ids) for i, ids in enumerate(tokenizer.encode(line) for line in lines) if ids]
    if not encoded:
        raise UserError("the text produced no tokens")
    if n is not None:
        order = np.random.default_rng(seed).permutation(len(encoded))
        encoded = [encoded[order[k % len(order)]] for k in range(n)]
    truncated = sum(len(body) > seq_len - 2 for _, body in encoded)
    feeds = pack_rows([body[: seq_len - 2] for _, body in encoded], seq_len, cls_id, sep_id)
    return feeds, [i for i, _ in encoded], int(truncated)
