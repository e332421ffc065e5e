"""What every corpus parser shares: cleaning a line, telling prose from the rest, reading package files.

>>> clean_line("  Tabs\\tand   runs   of spaces\\u00a0collapse ")
'Tabs and runs of spaces collapse'
>>> is_prose("Plain paragraphs of prose are kept."), is_prose("see also")
(True, False)
"""

import glob
import gzip
import os
import re
import unicodedata

MIN_CHARS = 20
MIN_WORDS = 4

_WS = re.compile(r"\s+")
# control characters become spaces; invisible format characters (soft hyphen, zero-width, bidi marks) go
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\xad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ufffe\uffff]")


def clean_line(text):
    """NFC-normalise, drop control characters and collapse all whitespace to single spaces.

    >>> clean_line("caf\\u0065\\u0301\\x00 ok")
    'café ok'
    """
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        text = _INVISIBLE.sub("", text)
    return _WS.sub(" ", _CONTROL.sub(" ", text)).strip()


_RULE = re.compile(r"([-=_*#~+])\1{7,}")  # a ruled line: part of a table or a drawing


def is_prose(line, min_chars=MIN_CHARS, min_words=MIN_WORDS):
    """True for a cleaned line long enough and wordy enough to keep.

    A line must have ``min_chars`` characters, ``min_words`` words and mostly
    letters among its non-space characters (tables, code and numbers fail).

    >>> is_prose("a plant or animal that is atypically small"), is_prose("see also"), is_prose("0x1f 0x20 0x7e == []")
    (True, False, False)
    """
    if len(line) < min_chars or len(line.split()) < min_words or _RULE.search(line):
        return False
    chars = [c for c in line if not c.isspace()]
    return sum(c.isalpha() for c in chars) >= 0.6 * len(chars)


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.!?])(?=\s|$)")


def tidy_punct(text):
    """Remove the space that markup removal can leave before a punctuation mark.

    >>> tidy_punct("a word , and more .")
    'a word, and more.'
    """
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text) if " " in text else text


def find_files(root, pattern):
    """Files under ``root`` matching ``pattern``, each once (packages link directories to each other)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        if os.path.isfile(path):
            found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def read_text(path):
    """A file's text, gunzipped when it ends in ``.gz`` or ``.dz``; undecodable bytes become U+FFFD."""
    opener = gzip.open if path.endswith((".gz", ".dz")) else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")
