"""Pure-Python WordPiece that reproduces the student's training tokenizer.

The student is trained with keras-hub's ``BertTokenizer(lowercase=True,
strip_accents=True)``: keras-hub ``pretokenize`` followed by tf-text's
``FastWordpieceTokenizer``. This module does the same without TensorFlow
(so that :mod:`mobile_bert_distill.litert.inference` runs on the LiteRT wheel alone):

1. put spaces around CJK ideographs;
2. NFD-normalize and drop every combining mark (category ``Mn``);
3. split on whitespace (RE2's ``\\s`` = ``[ \\t\\n\\f\\r]``), control (``Cc``)
   and format (``Cf``) characters, and on punctuation (ASCII
   ``!-/ :-@ [-` {-~`` and every ``P*`` category), keeping punctuation and CJK
   ideographs as words;
4. case-fold each word with NFKC_Casefold (NFKC, full case folding, NFKC,
   drop default-ignorable code points), like ``tf_text.case_fold_utf8``;
5. greedy longest-match-first WordPiece with the ``##`` suffix marker; a word
   that cannot be segmented, or is longer than 100 UTF-8 bytes, is ``[UNK]``.

Where it differs from Hugging Face ``BertWordPieceTokenizer(lowercase=True,
strip_accents=True)`` (both are tested): HF lowercases with ``str.lower``
(not case folding: ``ß`` stays ``ß``, ``ﬁ`` stays one character), deletes
control characters and U+FFFD, splits on every Unicode space separator (e.g.
U+00A0, U+3000), and has no NFKC step (``…``, ``①``, full-width letters are
kept as is). On ASCII and Latin-with-accents text they agree exactly.

Example:
>>> tok = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cafe", "run", "##ning", "."])
>>> tok.tokenize("The Café running.")
['the', 'cafe', 'run', '##ning', '.']
>>> tok.encode("The Café running.")
[5, 6, 7, 8, 9]
"""

from __future__ import annotations

import os
import re
import unicodedata

MAX_BYTES_PER_WORD = 100
SUFFIX = "##"

_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
# Default_Ignorable_Code_Point, which NFKC_Casefold maps to nothing.
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_ASCII_SPACE = frozenset(" \t\n\r\f")
# ASCII text: the rules below reduce to runs of letters and digits, and single
# punctuation characters (every other ASCII character is a delimiter).
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")


def _in(ranges, cp):
    return any(lo <= cp <= hi for lo, hi in ranges)


def is_cjk(ch):
    return _in(_CJK_RANGES, ord(ch))


def is_delimiter(ch):
    """Whitespace, control or format character: splits words and is dropped."""
    return ch in _ASCII_SPACE or unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch):
    """ASCII symbol ranges or any Unicode ``P*`` category: its own word."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def casefold(text):
    """NFKC_Casefold, as ``tf_text.case_fold_utf8`` applies it."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _in(_IGNORABLE_RANGES, ord(c)))


def strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def pretokenize(text, *, lowercase=True, accents=True):
    """Split ``text`` into the words the WordPiece step sees."""
    if text.isascii():
        words = _ASCII_WORDS.findall(text)
        return [w.lower() for w in words] if lowercase else words
    if accents:
        text = strip_accents(text)
    words, current = [], []
    for ch in text:
        if is_delimiter(ch):
            if current:
                words.append("".join(current))
                current = []
        elif is_punctuation(ch) or is_cjk(ch):
            if current:
                words.append("".join(current))
                current = []
            words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    if lowercase:
        words = [casefold(w) for w in words]
    return [w for w in words if w]


def read_vocab(path):
    """Read a one-token-per-line vocabulary file (keeps empty-token lines' ranks)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f]


class WordPiece:
    """Greedy longest-match-first WordPiece over a fixed vocabulary.

    ``vocab`` is a list of tokens (id = position) or a path to ``vocab.txt``.
    """

    def __init__(self, vocab, *, lowercase=True, strip_accents=True, unk_token="[UNK]"):
        if isinstance(vocab, (str, os.PathLike)):
            vocab = read_vocab(vocab)
        self.vocab = list(vocab)
        self.token_to_id = {}
        for i, t in enumerate(self.vocab):
            self.token_to_id.setdefault(t, i)
        if unk_token not in self.token_to_id:
            raise ValueError(f"the vocabulary has no {unk_token} token")
        self.unk_token = unk_token
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self._cache = {}

    def __len__(self):
        return len(self.vocab)

    def special_id(self, token):
        return self.token_to_id[token]

    def word_pieces(self, word):
        """WordPiece segmentation of one pre-tokenized word."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            pieces = [self.unk_token]
        else:
            pieces, start = [], 0
            while start < len(word):
                end, found = len(word), None
                while start < end:
                    sub = word[start:end] if start == 0 else SUFFIX + word[start:end]
                    if sub in self.token_to_id:
                        found = sub
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk_token]
                    break
                pieces.append(found)
                start = end
        if len(self._cache) < 100_000:
            self._cache[word] = pieces
        return pieces

    def tokenize(self, text):
        """Text to WordPiece strings (no special tokens added)."""
        out = []
        for word in pretokenize(text, lowercase=self.lowercase, accents=self.strip_accents):
            out.extend(self.word_pieces(word))
        return out

    def encode(self, text, *, specials=()):
        """Text to ids. Literal occurrences of the tokens in ``specials``
        (e.g. ``("[MASK]",)``) are kept as those tokens, not split."""
        ids = []
        for piece, is_special in _split_specials(text, specials):
            if is_special:
                ids.append(self.token_to_id[piece])
            else:
                ids.extend(self.token_to_id[t] for t in self.tokenize(piece))
        return ids

    def decode(self, ids):
        """Join pieces back into words (``##`` pieces glued to the previous one)."""
        words = []
        for i in ids:
            tok = self.vocab[int(i)]
            if tok.startswith(SUFFIX) and words:
                words[-1] += tok[len(SUFFIX):]
            else:
                words.append(tok)
        return " ".join(words)


def _split_specials(text, specials):
    if not specials:
        return [(text, False)]
    parts = [(text, False)]
    for special in specials:
        new = []
        for piece, is_special in parts:
            if is_special:
                new.append((piece, True))
                continue
            chunks = piece.split(special)
            for j, chunk in enumerate(chunks):
                if chunk:
                    new.append((chunk, False))
                if j < len(chunks) - 1:
                    new.append((special, True))
        parts = new
    return parts
