"""The ``gcide`` source: senses, notes and quotations of the GNU Collaborative International Dictionary of English.

Debian ``dict-gcide`` ships it as a dictd database: ``gcide.dict.dz`` (the
entries, gzipped) and ``gcide.index`` (headword, offset, length in dictd's
base 64).

>>> gcide_text("A small {caf['e]}; an [ae]on. [Obs.] [1913 Webster]")
'A small café; an æon.'
"""

import gzip
import re
import unicodedata

from mobile_bert_distill.demo.sources.text import clean_line, find_files, read_text, tidy_punct

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
_GCIDE_NAMED = {"ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "eth": "ð", "thorn": "þ", "deg": "°",
                "sect": "§", "root": "√", "imac": "i", "aum": "a", "frac12": "½", "frac14": "¼",
                "frac34": "¾", "pound": "£", "cent": "¢", "times": "×", "divide": "÷", "para": "¶"}
_GCIDE_CODE = re.compile(r"\[(?:([`'^\"~,=\-.*])([A-Za-z]{1,2})|([A-Za-z])\^|([A-Za-z]+\d*))\]")
_GCIDE_BLOCK_DROP = re.compile(r"^(Syn|Ant|See also|See|Syn\.|Pron)\s*[:.]|^Syn\.\s*--", re.I)
_GCIDE_LABEL = re.compile(r"^(Note|Usage)\s*:\s*")
_GCIDE_SOURCE_TAG = re.compile(r"\[[^\[\]]*\]")  # a line such as "[1913 Webster]" or "[WordNet 1.5 +PJC]"
_GCIDE_FORM = re.compile(r"\\[^\\\s][^\\]*\\")  # \\Ab"a*tis\\: a headword form with syllable marks
_GCIDE_SENSE = re.compile(r"^\d{1,2}\.\s+")
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
    return tidy_punct(clean_line(s))


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


def read_gcide(root):
    """Paragraphs of the GCIDE database (``gcide.dict.dz`` + ``gcide.index``) under an unpacked package ``root``."""
    data = find_files(root, "**/gcide.dict.dz") or find_files(root, "**/gcide.dict")
    index = find_files(root, "**/gcide.index")
    if not data or not index:
        raise FileNotFoundError("no gcide.dict.dz + gcide.index under " + root)
    opener = gzip.open if data[0].endswith(".dz") else open
    with opener(data[0], "rb") as f:
        raw = f.read()
    return parse_gcide(raw, read_text(index[0]))
