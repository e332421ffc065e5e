"""The exact pre-tokenization and WordPiece segmentation of training, over a whole corpus.

The student's keras-hub tokenizer is ``BertTokenizer(lowercase=True,
strip_accents=True)``. Every word the kit trains on is produced by the same
keras-hub ``pretokenize`` op (CJK spacing, accent stripping, split on
whitespace and punctuation, Unicode case folding), and every word is cut into
pieces by the same tf-text ``FastWordpieceTokenizer``; so the pieces seen in
training are the pieces the saved preset produces at inference. Without
TensorFlow (the JAX backend) the same rules run in pure Python
(:mod:`mobile_bert_distill.text.wordpiece`), with the same results.

Example:
>>> words = pretokenize(["Héllo, World!"], implementation="python")
>>> words
[['hello', ',', 'world', '!']]
"""

import numpy as np

# Two implementations of the same rules: tf-text (the TensorFlow backend: the
# ops of the saved preset's tokenizer) and pure Python (every other backend:
# mobile_bert_distill.text.wordpiece, no TensorFlow import). tests/test_backends.py
# checks that they give the same words, the same pieces and the same batches.
IMPLEMENTATIONS = ("tf-text", "python")


def _implementation(name):
    if name is None:
        from mobile_bert_distill.distill import backends

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
        from mobile_bert_distill.text.wordpiece import pretokenize as py_pretokenize

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
    from mobile_bert_distill.text.wordpiece import WordPiece

    tok = WordPiece(vocab)
    ids = [[tok.token_to_id[p] for p in tok.word_pieces(w)] for w in words]
    lens = np.fromiter((len(x) for x in ids), np.int64, count=len(ids))
    flat = np.fromiter((i for x in ids for i in x), np.int32, count=int(lens.sum()))
    return [lens], [flat]


def wordpiece_ids(words, vocab, implementation=None):
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
