"""Corpus reading, vocabulary files and the exact pre-tokenization of training.

The student's keras-hub tokenizer is ``BertTokenizer(lowercase=True,
strip_accents=True)``. Every word the kit trains on is produced by the same
keras-hub ``pretokenize`` op (CJK spacing, accent stripping, split on
whitespace and punctuation, Unicode case folding), and every word is cut into
pieces by the same tf-text ``FastWordpieceTokenizer``; so the pieces seen in
training are the pieces the saved preset produces at inference. Without
TensorFlow (the JAX backend) the same rules run in pure Python
(:mod:`mobile_bert_distill.wordpiece`), with the same results.

Example:
>>> words = pretokenize(["Héllo, World!"])
>>> words
[['hello', ',', 'world', '!']]
"""

import os

import numpy as np

from mobile_bert_distill.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: their ids in the kit's own vocabularies, which list them first (a teacher's vocabulary may not)
KIT_SPECIAL_IDS = {token: i for i, token in enumerate(SPECIAL_TOKENS)}


# --------------------------------------------------------------------- corpus
def _decode_error_message(path, data, err):
    line = data.count(b"\n", 0, err.start) + 1
    return f"{path}: not UTF-8 at byte offset {err.start} (line {line}); fix the file or skip such lines"


def read_corpus(paths, skip_bad_lines=False, warn=print):
    """Read text files into a list of non-empty, stripped lines (one paragraph each).

    Raises :class:`UserError` for a missing file, a file that is not UTF-8
    (naming the byte offset) unless ``skip_bad_lines`` (then bad lines are
    dropped and counted), and a corpus with no text at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UserError("no corpus file given")
    lines, skipped = [], 0
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"corpus file not found: {path}")
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
            file_lines = text.splitlines()
        except UnicodeDecodeError as err:
            if not skip_bad_lines:
                raise UserError(_decode_error_message(path, data, err), option="skip_bad_lines",
                                purpose="to skip them with a warning") from None
            file_lines = []
            for raw in data.split(b"\n"):
                try:
                    file_lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    skipped += 1
        lines.extend(s for s in (line.strip() for line in file_lines) if s)
    if skipped and warn:
        warn(f"warning: skipped {skipped} line(s) that are not UTF-8")
    if not lines:
        raise UserError(f"corpus is empty (no non-blank line in {', '.join(map(str, paths))})")
    return lines


# ---------------------------------------------------------------- vocabulary
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


def pack_rows(bodies, seq_len, cls_id, sep_id):
    """The model input of single texts, in one place: each body becomes ``[CLS] body [SEP] [PAD]..``.

    Args:
        bodies: token-id sequences, each at most ``seq_len - 2`` long (cut them first).
        seq_len: the static length of a row.
        cls_id, sep_id: the ids of ``[CLS]`` and ``[SEP]`` in the model's vocabulary.

    Returns:
        int32 ``input_ids``, ``segment_ids`` (zeros: one segment) and ``padding_mask``,
        each ``[len(bodies), seq_len]``.

    Example:
    >>> pack_rows([[7, 8], [9]], 5, 2, 3)["input_ids"].tolist()
    [[2, 7, 8, 3, 0], [2, 9, 3, 0, 0]]
    """
    ids = np.zeros((len(bodies), seq_len), np.int32)
    mask = np.zeros_like(ids)
    for i, body in enumerate(bodies):
        if len(body) > seq_len - 2:
            raise ValueError(f"a body of {len(body)} tokens does not fit {seq_len} with [CLS] and [SEP]")
        row = [cls_id, *body, sep_id]
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def special_ids(tokens):
    index = {t: i for i, t in enumerate(tokens)}
    return {t.strip("[]").lower(): index[t] for t in SPECIAL_TOKENS}


# ------------------------------------------------------------ pretokenization
# Two implementations of the same rules: tf-text (the TensorFlow backend: the
# ops of the saved preset's tokenizer) and pure Python (every other backend:
# mobile_bert_distill.wordpiece, no TensorFlow import). tests/test_backends.py
# checks that they give the same words, the same pieces and the same batches.
IMPLEMENTATIONS = ("tf-text", "python")


def _implementation(name):
    if name is None:
        from mobile_bert_distill import backends

        return "tf-text" if backends.is_tensorflow() else "python"
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS} (got {name!r})")
    return name


def _progress_bar(progress, total):
    if progress is True:
        if total <= 20000:
            return None, None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="pre-tokenizing", unit="line", leave=False)
        return bar, bar
    return progress, None


def pretokenize(lines, batch_size=4096, progress=None, implementation=None):
    """Split lines into words exactly as the student's keras-hub tokenizer does.

    ``progress``: a tqdm-like object to update, or ``True`` for a bar of its
    own on corpora of more than 20,000 lines. ``implementation``: ``tf-text``,
    ``python`` or ``None`` (tf-text on the TensorFlow backend, else Python).
    """
    progress, own_bar = _progress_bar(progress, len(lines))
    impl = _implementation(implementation)
    out = []
    if impl == "python":
        from mobile_bert_distill.wordpiece import pretokenize as py_pretokenize

        for start in range(0, len(lines), batch_size):
            out.extend(py_pretokenize(line) for line in lines[start : start + batch_size])
            if progress is not None:
                progress.update(len(lines[start : start + batch_size]))
    else:
        import tensorflow as tf
        from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize as kh_pretokenize

        for start in range(0, len(lines), batch_size):
            chunk = tf.constant(lines[start : start + batch_size])
            words = kh_pretokenize(chunk, lowercase=True, strip_accents=True, split=True, split_on_cjk=True)
            out.extend([[w.decode("utf-8") for w in row] for row in words.to_list()])
            if progress is not None:
                progress.update(len(lines[start : start + batch_size]))
    if own_bar is not None:
        own_bar.close()
    return out


def _wordpiece_lengths_tf(words, vocab):
    import tensorflow as tf
    import tensorflow_text as tf_text

    tokenizer = tf_text.FastWordpieceTokenizer(
        vocab=list(vocab),
        token_out_type=tf.int32,
        suffix_indicator="##",
        unknown_token="[UNK]",
        no_pretokenization=True,
        support_detokenization=False,
    )
    lens, flats = [], []
    for start in range(0, len(words), 65536):
        ragged = tokenizer.tokenize(tf.constant(words[start : start + 65536]))
        lens.append(ragged.row_lengths().numpy())
        flats.append(ragged.flat_values.numpy())
    return lens, flats


def _wordpiece_lengths_python(words, vocab):
    from mobile_bert_distill.wordpiece import WordPiece

    tok = WordPiece(vocab)
    ids = [[tok.token_to_id[p] for p in tok.word_pieces(w)] for w in words]
    lens = np.fromiter((len(x) for x in ids), np.int64, count=len(ids))
    flat = np.fromiter((i for x in ids for i in x), np.int32, count=int(lens.sum()))
    return [lens], [flat]


def wordpiece(words, vocab, implementation=None):
    """Cut each word into WordPiece ids of ``vocab``; returns (offsets, flat ids).

    ``flat[offsets[i]:offsets[i+1]]`` are the pieces of ``words[i]``.
    ``implementation`` as in :func:`pretokenize`.
    """
    if _implementation(implementation) == "python":
        lens, flats = _wordpiece_lengths_python(words, vocab)
    else:
        lens, flats = _wordpiece_lengths_tf(words, vocab)
    lens = np.concatenate(lens) if lens else np.zeros([0], np.int64)
    flat = np.concatenate(flats).astype(np.int32) if flats else np.zeros([0], np.int32)
    offsets = np.zeros(len(words) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    return offsets, flat
