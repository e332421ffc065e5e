"""The tokenized corpus: a stream of word ids plus per-vocabulary piece tables.

Words are found once (see :func:`mobile_bert_distill.text.pretokenize`), made
unique, and each unique word is cut into pieces once per vocabulary. A training
window is then a run of consecutive word ids, and segmenting it with either
vocabulary, or with a per-word mix of both, is a vectorised gather.

Word id 0 is a line break; both vocabularies segment it as ``[SEP]``.

Example:
>>> corpus = TokenizedCorpus.from_lines(["the cat sat", "a dog"])
>>> corpus.stream.tolist()
[1, 2, 3, 0, 4, 5, 0]
"""

import hashlib
import os
import zipfile

import numpy as np

from mobile_bert_distill import text
from mobile_bert_distill.atomic import atomic_file

LINE_BREAK = "\n"


class TokenizedCorpus:
    """Word-id stream of a corpus; lines are separated by word id 0."""

    def __init__(self, words, stream, line_starts):
        self.words = list(words)
        self.stream = np.asarray(stream, np.int32)
        self.line_starts = np.asarray(line_starts, np.int64)

    @classmethod
    def from_lines(cls, lines, word_lists=None):
        if word_lists is None:
            word_lists = text.pretokenize(list(lines), progress=True)
        index = {LINE_BREAK: 0}
        words = [LINE_BREAK]
        stream, starts = [], []
        for row in word_lists:
            if not row:
                continue
            starts.append(len(stream))
            for w in row:
                i = index.get(w)
                if i is None:
                    i = index[w] = len(words)
                    words.append(w)
                stream.append(i)
            stream.append(0)
        return cls(words, stream, starts)

    @property
    def num_lines(self):
        return len(self.line_starts)

    def save(self, path):
        """Write plain arrays only (the words as one UTF-8 blob and their end offsets): no pickle."""
        encoded = [w.encode("utf-8") for w in self.words]
        with atomic_file(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, words_utf8=np.frombuffer(b"".join(encoded), np.uint8),
                     word_ends=np.cumsum([len(e) for e in encoded], dtype=np.int64),
                     stream=self.stream, line_starts=self.line_starts)

    @classmethod
    def load(cls, path):
        """Read a file :meth:`save` wrote; ``None`` when it is not one (a cache then rebuilds it).

        Loads with ``allow_pickle=False``: a planted file cannot run code.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                blob, ends = z["words_utf8"].tobytes(), z["word_ends"]
                stream, starts = z["stream"], z["line_starts"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        begins = np.concatenate([[0], ends[:-1]])
        try:
            words = [blob[b:e].decode("utf-8") for b, e in zip(begins.tolist(), ends.tolist())]
        except UnicodeDecodeError:
            return None
        return cls(words, stream, starts)


class PieceTable:
    """The pieces of every unique word of a corpus under one vocabulary."""

    def __init__(self, vocab, words):
        self.vocab = list(vocab)
        self.special = text.special_ids(self.vocab)
        offsets, flat = text.wordpiece_ids(list(words[1:]), self.vocab)
        # Word 0 (line break) is one [SEP] piece.
        self.offsets = np.concatenate([[0], offsets + 1]).astype(np.int64)
        self.flat = np.concatenate([[self.special["sep"]], flat]).astype(np.int32)
        self.lengths = np.diff(self.offsets)
        special_set = set(self.special.values())
        self.is_special = np.array([i in special_set for i in range(len(self.vocab))])
        # Random replacements (the 10% of BERT masking) draw ordinary tokens only,
        # never specials nor BERT's [unusedN] slots.
        self.ordinary_ids = np.array(
            [i for i, t in enumerate(self.vocab)
             if i not in special_set and not (t.startswith("[") and t.endswith("]"))],
            np.int32,
        )

    @property
    def size(self):
        return len(self.vocab)


def corpus_fingerprint(lines, *vocabs):
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    for v in vocabs:
        h.update(b"\0vocab\0")
        h.update("\n".join(v or []).encode("utf-8"))
    return h.hexdigest()[:16]


def load_or_build_corpus(lines, cache_dir=None):
    """Tokenize ``lines`` once; reuse ``cache_dir/corpus-<hash>.npz`` when present."""
    path = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"corpus-{corpus_fingerprint(lines)}.npz")
        cached = TokenizedCorpus.load(path) if os.path.exists(path) else None
        if cached is not None:
            return cached
    corpus = TokenizedCorpus.from_lines(lines)
    if path:
        corpus.save(path)
    return corpus


def gather_pieces(offsets, flat, word_ids):
    """Concatenate the pieces of ``word_ids`` (vectorised ragged gather)."""
    starts = offsets[word_ids]
    lens = offsets[word_ids + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return flat[:0], lens
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return flat[shift + np.arange(total)], lens
